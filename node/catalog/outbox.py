"""Outputs in the catalog: the outbox that delivers them to each destination, and the reader
corrections that answer a delivered segmentation."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.catalog.store import CatalogStore


@dataclass(frozen=True)
class OutboxItem:
    """One output object to deliver to one destination."""

    id: int
    job_id: int
    destination: str
    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    kind: str
    attempts: int


class Outbox(CatalogStore):
    """Deliveries of the written outputs, and reader corrections of them."""

    def due_outbox(self, now: float | None = None, limit: int = 200) -> list[OutboxItem]:
        """Pending deliveries whose retry time has come, oldest first."""
        now = time.time() if now is None else now
        rows = self._query(
            "SELECT id, job_id, destination, path, sop_instance_uid, sop_class_uid, kind,"
            " attempts FROM outbox WHERE state='pending' AND next_attempt_at<=?"
            " ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [
            OutboxItem(
                int(r["id"]),
                int(r["job_id"]),
                r["destination"],
                Path(r["path"]),
                r["sop_instance_uid"],
                r["sop_class_uid"],
                r["kind"],
                int(r["attempts"]),
            )
            for r in rows
        ]

    def next_outbox_due(self) -> float | None:
        """Earliest retry time among pending deliveries."""
        rows = self._query("SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state='pending'")
        value = rows[0]["t"]
        return float(value) if value is not None else None

    def mark_send_attempt(self, item_id: int, now: float | None = None) -> None:
        """A delivery is about to start: counted and timed before anything is sent.

        A process killed after the destination stored the object but before its answer was
        recorded leaves this trace: the row shows the attempt (``attempt_started_at``, and
        ``last_error`` says no answer was recorded) and is sent again.
        """
        now = time.time() if now is None else now
        with self._tx() as cur:
            cur.execute(
                "UPDATE outbox SET attempts=attempts+1, attempt_started_at=?, last_error=?"
                " WHERE id=? AND state='pending'",
                (now, "delivery started; no answer recorded (interrupted?)", item_id),
            )

    _COUNT_ATTEMPT = (
        "attempts=attempts+CASE WHEN attempt_started_at IS NULL THEN 1 ELSE 0 END,"
        " attempt_started_at=NULL"
    )
    """An answer ends the attempt :meth:`mark_send_attempt` counted (or counts its own)."""

    def mark_sent(self, item_id: int, status: int, warning: str | None = None) -> None:
        """The destination accepted the object."""
        with self._tx() as cur:
            cur.execute(
                f"UPDATE outbox SET state='sent', sent_at=?, {self._COUNT_ATTEMPT},"
                " last_status=?, last_error=? WHERE id=? AND state='pending'",
                (time.time(), status, warning, item_id),
            )

    def mark_send_failed(
        self, item_id: int, error: str, status: int | None, next_attempt_at: float | None
    ) -> None:
        """The delivery failed; retry at ``next_attempt_at`` or give up when None."""
        with self._tx() as cur:
            cur.execute(
                f"UPDATE outbox SET {self._COUNT_ATTEMPT}, last_error=?, last_status=?,"
                " next_attempt_at=COALESCE(?, next_attempt_at), state=?"
                " WHERE id=? AND state='pending'",
                (error, status, next_attempt_at,
                 "failed" if next_attempt_at is None else "pending", item_id),
            )

    def delivered_outputs(
        self, series_uid: str, analysis: str, before_generation: int, kinds: Sequence[str]
    ) -> dict[str, Path]:
        """The newest output of each kind that an older generation delivered.

        Parameters
        ----------
        series_uid, analysis
            The analysed series and analysis.
        before_generation
            Only jobs of a lower generation count.
        kinds
            Output kinds to look for (``"sr"``, ``"sr-summary"``, ...).

        Returns
        -------
        dict of str to Path
            By kind, the file of the newest older generation's output that at least one
            destination accepted (outbox state ``sent``); kinds never delivered are absent.
        """
        found: dict[str, Path] = {}
        for kind in kinds:
            rows = self._query(
                "SELECT o.path FROM outbox o JOIN jobs j ON j.id=o.job_id"
                " WHERE j.series_instance_uid=? AND j.analysis=? AND j.generation<?"
                " AND o.kind=? AND o.state='sent'"
                " ORDER BY j.generation DESC, o.id DESC LIMIT 1",
                (series_uid, analysis, before_generation, kind),
            )
            if rows:
                found[kind] = Path(rows[0]["path"])
        return found

    # ---------------------------------------------------------------- reader corrections

    def own_output(self, sop_instance_uid: str) -> bool:
        """Whether an instance is one of the node's outputs (queued in the outbox)."""
        return bool(self._query("SELECT 1 FROM outbox WHERE sop_instance_uid=? LIMIT 1",
                                (sop_instance_uid,)))

    def latest_segmentation(self, source_series_uid: str) -> dict[str, Any] | None:
        """The newest done job of a series that wrote a SEG, with the SEG's file and UID."""
        rows = self._query(
            "SELECT j.id AS job_id, j.analysis, j.generation, j.result_dir, o.path,"
            " o.sop_instance_uid FROM jobs j JOIN outbox o ON o.job_id=j.id"
            " WHERE j.series_instance_uid=? AND j.state='done' AND o.kind='seg'"
            " ORDER BY j.generation DESC, j.id DESC, o.id LIMIT 1",
            (source_series_uid,),
        )
        return dict(rows[0]) if rows else None

    def record_correction(self, record: dict[str, Any]) -> bool:
        """Record a reader correction and its agreement; False if that SEG was recorded.

        ``record`` holds the columns of the ``corrections`` table; ``agreement`` is a
        JSON-ready mapping.
        """
        columns = ("sop_instance_uid", "series_instance_uid", "path", "job_id",
                   "source_series_uid", "analysis", "station", "calling_ae", "reader_ae",
                   "creator", "received_at")
        values = [record.get(c) for c in columns] + [json.dumps(record["agreement"])]
        with self._tx() as cur:
            cur.execute(
                f"INSERT INTO corrections({', '.join(columns)}, agreement)"
                f" VALUES ({', '.join('?' * (len(columns) + 1))}) ON CONFLICT DO NOTHING",
                values,
            )
            return bool(cur.rowcount == 1)

    def corrections(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded corrections, oldest first (the latest ``limit`` when given)."""
        if limit is None:
            rows = self._query("SELECT * FROM corrections ORDER BY received_at, id")
        else:
            rows = self._query(
                "SELECT * FROM (SELECT * FROM corrections ORDER BY received_at DESC, id DESC"
                " LIMIT ?) AS latest ORDER BY received_at, id", (limit,))
        found = []
        for row in rows:
            item = dict(row)
            item["agreement"] = json.loads(item["agreement"])
            found.append(item)
        return found
