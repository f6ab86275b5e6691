"""Instances and series in the catalog: what arrived, series completion, routing decisions
and the series a study holds."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.catalog.store import CatalogStore


@dataclass(frozen=True)
class InstanceRecord:
    """An instance stored in the spool, as recorded in the catalog."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str | None
    path: Path
    size_bytes: int
    calling_aet: str | None
    modality: str | None
    series_description: str | None
    expected_count: int | None


@dataclass(frozen=True)
class SeriesState:
    """Where a series stands after an instance arrived."""

    series_instance_uid: str
    instance_count: int
    expected_count: int | None
    generation: int
    last_received: float
    reopened: bool


class SeriesRecords(CatalogStore):
    """Received instances and the state of their series."""

    def record_instance(self, rec: InstanceRecord, now: float | None = None) -> SeriesState:
        """Record a stored instance and update its series; re-opens a completed series.

        A re-sent instance (same SOP Instance UID) replaces the earlier record and counts as
        news for its series (the series is analysed again once complete).
        """
        now = time.time() if now is None else now
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO instances(sop_instance_uid, series_instance_uid, study_instance_uid,"
                " sop_class_uid, transfer_syntax_uid, path, size_bytes, calling_aet, received_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(sop_instance_uid) DO UPDATE SET"
                " series_instance_uid=excluded.series_instance_uid,"
                " study_instance_uid=excluded.study_instance_uid,"
                " sop_class_uid=excluded.sop_class_uid,"
                " transfer_syntax_uid=excluded.transfer_syntax_uid, path=excluded.path,"
                " size_bytes=excluded.size_bytes, calling_aet=excluded.calling_aet,"
                " received_at=excluded.received_at",
                (
                    rec.sop_instance_uid,
                    rec.series_instance_uid,
                    rec.study_instance_uid,
                    rec.sop_class_uid,
                    rec.transfer_syntax_uid,
                    str(rec.path),
                    rec.size_bytes,
                    rec.calling_aet,
                    now,
                ),
            )
            count = int(cur.execute(
                "SELECT COUNT(*) AS n FROM instances WHERE series_instance_uid=?",
                (rec.series_instance_uid,),
            ).fetchone()["n"])
            row = cur.execute(
                "SELECT state, generation, expected_count FROM series WHERE series_instance_uid=?",
                (rec.series_instance_uid,),
            ).fetchone()
            reopened = False
            if row is None:
                generation = 0
                expected = rec.expected_count
                cur.execute(
                    "INSERT INTO series(series_instance_uid, study_instance_uid, modality,"
                    " description, expected_count, instance_count, first_received,"
                    " last_received) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        rec.series_instance_uid,
                        rec.study_instance_uid,
                        rec.modality,
                        rec.series_description,
                        expected,
                        count,
                        now,
                        now,
                    ),
                )
            else:
                generation = int(row["generation"])
                expected = rec.expected_count or row["expected_count"]
                if row["state"] != "receiving":
                    generation += 1
                    reopened = True
                cur.execute(
                    "UPDATE series SET instance_count=?, last_received=?, generation=?,"
                    " state='receiving', expected_count=?, completed_at=NULL"
                    " WHERE series_instance_uid=?",
                    (count, now, generation, expected, rec.series_instance_uid),
                )
        if reopened:
            self.record_event(
                "series_reopened",
                rec.series_instance_uid,
                f"instance {rec.sop_instance_uid} arrived after completion;"
                f" generation {generation}",
            )
        return SeriesState(rec.series_instance_uid, count, expected, generation, now, reopened)

    def receiving_series(self) -> list[SeriesState]:
        """Series still waiting for completion (to reschedule after a restart)."""
        rows = self._query(
            "SELECT series_instance_uid, instance_count, expected_count, generation,"
            " last_received FROM series WHERE state='receiving'"
        )
        return [
            SeriesState(
                r["series_instance_uid"],
                r["instance_count"],
                r["expected_count"],
                r["generation"],
                r["last_received"],
                False,
            )
            for r in rows
        ]

    def completed_unrouted(self) -> list[tuple[str, int]]:
        """Series marked complete whose routing did not happen (crash in between)."""
        rows = self._query(
            "SELECT series_instance_uid, generation FROM series WHERE state='complete'"
        )
        return [(r["series_instance_uid"], int(r["generation"])) for r in rows]

    def complete_series(self, series_uid: str, generation: int) -> bool:
        """Mark a series complete if it is still at ``generation``; False if it moved on."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE series SET state='complete', completed_at=? WHERE series_instance_uid=?"
                " AND generation=? AND state='receiving'",
                (time.time(), series_uid, generation),
            )
            return cur.rowcount == 1

    def series_state(self, series_uid: str) -> tuple[str, SeriesState] | None:
        """(state, counts and timing) of a series, or None if unknown."""
        rows = self._query(
            "SELECT state, instance_count, expected_count, generation, last_received"
            " FROM series WHERE series_instance_uid=?",
            (series_uid,),
        )
        if not rows:
            return None
        r = rows[0]
        return r["state"], SeriesState(
            series_uid,
            int(r["instance_count"]),
            r["expected_count"],
            int(r["generation"]),
            float(r["last_received"]),
            False,
        )

    def series_generation(self, series_uid: str) -> tuple[str, int] | None:
        """(state, generation) of a series, or None if unknown."""
        rows = self._query(
            "SELECT state, generation FROM series WHERE series_instance_uid=?", (series_uid,)
        )
        return (rows[0]["state"], int(rows[0]["generation"])) if rows else None

    def known_paths(self) -> set[str]:
        """Spool paths of every recorded instance."""
        return {r["path"] for r in self._query("SELECT path FROM instances")}

    def instance_location(self, sop_uid: str) -> tuple[Path, str] | None:
        """(spool path, Series Instance UID) of a recorded instance, or None."""
        rows = self._query(
            "SELECT path, series_instance_uid FROM instances WHERE sop_instance_uid=?",
            (sop_uid,),
        )
        return (Path(rows[0]["path"]), str(rows[0]["series_instance_uid"])) if rows else None

    def instance_paths(self, series_uid: str) -> list[Path]:
        """Spool paths of a series' instances, in arrival order."""
        rows = self._query(
            "SELECT path FROM instances WHERE series_instance_uid=? ORDER BY received_at",
            (series_uid,),
        )
        return [Path(r["path"]) for r in rows]

    def route_series(
        self,
        series_uid: str,
        generation: int,
        analyses: Sequence[str],
        reason: str,
        *,
        not_before: float = 0.0,
    ) -> list[int]:
        """Record the routing decision and queue one job per analysis; returns the job ids.

        Queued jobs of older generations of the same series and analysis are superseded.
        Outputs of older generations not yet delivered are still delivered until a newer
        generation has its own (:meth:`finish_job`): a newer analysis that fails never takes
        a good result's place.  ``not_before`` (epoch seconds) holds the new jobs back until
        then.
        """
        reason = self._shown(reason)
        now = time.time()
        job_ids: list[int] = []
        with self._tx() as cur:
            cur.execute(
                "UPDATE series SET state=?, analysis=?, route_reason=?"
                " WHERE series_instance_uid=? AND generation=?",
                (
                    "routed" if analyses else "unrouted",
                    ",".join(analyses) or None,
                    reason,
                    series_uid,
                    generation,
                ),
            )
            for analysis in analyses:
                cur.execute(
                    "UPDATE jobs SET state='superseded', finished_at=?"
                    " WHERE series_instance_uid=? AND analysis=? AND generation<?"
                    " AND state IN ('queued', 'failed')",
                    (now, series_uid, analysis, generation),
                )
                cur.execute(
                    "INSERT INTO jobs(series_instance_uid, analysis, generation,"
                    " created_at, not_before) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (series_uid, analysis, generation, now, not_before),
                )
                row = cur.execute(
                    "SELECT id FROM jobs WHERE series_instance_uid=? AND analysis=?"
                    " AND generation=?",
                    (series_uid, analysis, generation),
                ).fetchone()
                job_ids.append(int(row["id"]))
            cur.execute(
                "INSERT INTO events(at, kind, series_instance_uid, message) VALUES (?,?,?,?)",
                (now, "routed" if analyses else "unrouted", series_uid, reason),
            )
        return job_ids

    def mark_correction(self, series_uid: str, generation: int, reason: str,
                        *, matched: bool) -> None:
        """Record that a complete series is a reader's corrected SEG, not routed.

        The series' state becomes ``correction`` with ``reason`` (matched to which result,
        or why not), and a ``correction`` or ``correction_unmatched`` event is recorded.
        """
        reason = self._shown(reason)
        with self._tx() as cur:
            cur.execute(
                "UPDATE series SET state='correction', analysis=NULL, route_reason=?"
                " WHERE series_instance_uid=? AND generation=?",
                (reason, series_uid, generation),
            )
            cur.execute(
                "INSERT INTO events(at, kind, series_instance_uid, message) VALUES (?,?,?,?)",
                (time.time(), "correction" if matched else "correction_unmatched",
                 series_uid, reason),
            )

    def series_receipt(self, series_uid: str) -> dict[str, Any] | None:
        """Study, instance count and calling AE titles of a series (for the audit trail)."""
        rows = self._query(
            "SELECT study_instance_uid, calling_aet, COUNT(*) AS n FROM instances"
            " WHERE series_instance_uid=? GROUP BY study_instance_uid, calling_aet",
            (series_uid,),
        )
        if not rows:
            return None
        return {
            "study_instance_uid": str(rows[0]["study_instance_uid"]),
            "instances": sum(int(r["n"]) for r in rows),
            "calling_aets": sorted({str(r["calling_aet"]) for r in rows if r["calling_aet"]}),
        }

    def study_series(self, study_uid: str) -> list[str]:
        """SeriesInstanceUIDs of the series of a study the node holds."""
        rows = self._query(
            "SELECT series_instance_uid FROM series WHERE study_instance_uid=?"
            " ORDER BY first_received",
            (study_uid,),
        )
        return [str(r["series_instance_uid"]) for r in rows]

    def series_study(self, series_uid: str) -> str | None:
        """StudyInstanceUID of a series, if the node holds it."""
        rows = self._query(
            "SELECT study_instance_uid FROM series WHERE series_instance_uid=?", (series_uid,)
        )
        return str(rows[0]["study_instance_uid"]) if rows else None

    def supersede_queued(self, series_uid: str, analysis: str, reason: str) -> int:
        """Supersede the queued (not yet started) jobs of a series' analysis, with a reason."""
        reason = self._shown(reason)
        now = time.time()
        with self._tx() as cur:
            cur.execute(
                "UPDATE jobs SET state='superseded', finished_at=?, error=?"
                " WHERE series_instance_uid=? AND analysis=? AND state='queued'",
                (now, reason, series_uid, analysis),
            )
            count = cur.rowcount
            if count:
                cur.execute(
                    "INSERT INTO events(at, kind, series_instance_uid, message)"
                    " VALUES (?,?,?,?)",
                    (now, "superseded", series_uid, reason),
                )
        return count
