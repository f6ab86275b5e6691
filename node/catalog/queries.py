"""Read-only views of the catalog: recent series, jobs, outbox rows and events, counts by
state, and the jobs of a study (for the status endpoint, the CLI and the worker)."""

from __future__ import annotations

import json
from typing import Any

from node.catalog.store import CatalogStore


def _job_dict(row: Any) -> dict[str, Any]:
    item = dict(row)
    for key in ("timings", "summary"):
        item[key] = json.loads(item[key]) if item[key] else None
    return item


class StatusQueries(CatalogStore):
    """What the catalog holds, as dictionaries of its rows."""

    def recent_series(self, limit: int = 20) -> list[dict[str, Any]]:
        """Most recently received series with their state and routing reason."""
        return [
            dict(r)
            for r in self._query(
                "SELECT * FROM series ORDER BY last_received DESC LIMIT ?", (limit,)
            )
        ]

    def recent_jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Most recent jobs with state, attempts, error and timings."""
        rows = self._query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [_job_dict(r) for r in rows]

    def job(self, job_id: int) -> dict[str, Any] | None:
        """One job by id, or None."""
        rows = self._query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job_dict(rows[0]) if rows else None

    def outbox_items(self, job_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Outbox rows (all, or of one job), newest first."""
        if job_id is None:
            rows = self._query("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._query(
                "SELECT * FROM outbox WHERE job_id=? ORDER BY id DESC LIMIT ?", (job_id, limit)
            )
        return [dict(r) for r in rows]

    def recent_events(self, limit: int = 20) -> list[dict[str, Any]]:
        """Most recent events."""
        return [
            dict(r) for r in self._query("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        """Row counts by state for series, jobs and outbox."""
        result: dict[str, dict[str, int]] = {}
        for table in ("series", "jobs", "outbox"):
            rows = self._query(f"SELECT state, COUNT(*) AS n FROM {table} GROUP BY state")
            result[table] = {r["state"]: int(r["n"]) for r in rows}
        result["instances"] = {
            "stored": int(self._query("SELECT COUNT(*) AS n FROM instances")[0]["n"])
        }
        return result

    # ---------------------------------------------------------------- studies and re-analysis

    def study_jobs(
        self, study_uid: str, analysis: str, state: str = "done"
    ) -> list[dict[str, Any]]:
        """Jobs of one analysis of the series of a study, in one state, newest first."""
        rows = self._query(
            "SELECT j.* FROM jobs j JOIN series s ON s.series_instance_uid=j.series_instance_uid"
            " WHERE s.study_instance_uid=? AND j.analysis=? AND j.state=?"
            " ORDER BY COALESCE(j.finished_at, j.created_at) DESC, j.id DESC",
            (study_uid, analysis, state),
        )
        return [_job_dict(r) for r in rows]
