"""The job queue in the catalog: claiming jobs, worker identity and heartbeats, finishing,
failing and retrying them, and re-analysing a study."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.catalog.pgdb import PostgresDatabase
from node.catalog.store import CatalogStore

logger = logging.getLogger(__name__)

WORKER_LOCK_CLASS = 0x434D5257  # "CMRW"
"""First key of the PostgreSQL advisory locks that hold worker names."""
HUNG_WORKER_LEASES = 10
"""Leases without heartbeat after which a job is re-queued although its worker process still
holds its name (hung, not merely starved of CPU; see :meth:`Catalog.requeue_stale`)."""


@dataclass(frozen=True)
class Job:
    """One analysis of one generation of one series."""

    id: int
    series_instance_uid: str
    analysis: str
    generation: int
    attempts: int
    worker: str | None = None
    """The worker that claimed it (``host/name#thread``)."""


@dataclass(frozen=True)
class OutputFile:
    """A written output file the outbox must deliver."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    kind: str


class JobQueue(CatalogStore):
    """Analysis jobs: queued, claimed by a worker, done, failed or superseded."""

    def register_worker(self, worker: str) -> bool:
        """Hold ``worker`` (``host/name``) as this process's identity while it is connected.

        On PostgreSQL a session advisory lock on the name: False when another live process
        holds it (two processes with one name would re-queue each other's jobs at start).
        An SQLite catalog has one process: always True.
        """
        if not isinstance(self._db, PostgresDatabase):
            return True
        return self._db.hold_lock(WORKER_LOCK_CLASS, worker)

    def requeue_interrupted(self, worker: str | None = None) -> int:
        """Put jobs that were running when their worker stopped back in the queue.

        Parameters
        ----------
        worker
            Only the jobs this worker (``host/name``, any of its threads) had claimed, and
            jobs with no recorded worker; None: every running job (the only process of an
            SQLite catalog).
        """
        sql = (
            "UPDATE jobs SET state='queued', error=COALESCE(error || '; ', '') ||"
            " 'interrupted by node restart' WHERE state='running'"
        )
        params: tuple[Any, ...] = ()
        if worker is not None:
            sql += " AND (worker IS NULL OR " + _WORKER_MATCH + ")"
            params = _worker_params(worker)
        with self._tx() as cur:
            return cur.execute(sql, params).rowcount

    def requeue_stale(self, lease_s: float, now: float | None = None) -> list[int]:
        """Re-queue running jobs whose worker sent no heartbeat for ``lease_s`` seconds.

        A worker that died (``kill -9``, a lost machine) stops its heartbeat; any other
        process returns its jobs to the queue.  On PostgreSQL a job whose worker process
        still holds its name (:meth:`register_worker`: a session lock the server drops as
        soon as the process's connection closes) is left running until its heartbeat is
        :data:`HUNG_WORKER_LEASES` leases old: a live worker whose heartbeat thread is starved
        by its analysis (libraries that hold the interpreter lock for seconds under CPU
        load) keeps its job; a hung one loses it.  Returns the ids re-queued.
        """
        now = time.time() if now is None else now
        seen = "COALESCE(heartbeat_at, started_at, 0)"
        alive = ""
        params: tuple[Any, ...] = (now - lease_s,)
        if self.engine == "postgresql":
            # A two-key advisory lock is (classid, objid) = (key1, key2) in pg_locks, key2
            # as an unsigned oid; the job's worker is host/name#thread, the lock's host/name.
            alive = (
                f" AND ({seen} < ? OR worker IS NULL OR NOT EXISTS (SELECT 1 FROM pg_locks"
                " WHERE locktype='advisory' AND granted AND objsubid=2 AND classid::bigint=?"
                " AND objid::bigint=(hashtext(split_part(worker, '#', 1))::bigint"
                " & 4294967295)))"
            )
            params += (now - HUNG_WORKER_LEASES * lease_s, WORKER_LOCK_CLASS)
        with self._tx() as cur:
            rows = cur.execute(
                "UPDATE jobs SET state='queued', error=COALESCE(error || '; ', '') ||"
                " 'worker ' || COALESCE(worker, 'unknown') || ' stopped responding'"
                f" WHERE state='running' AND {seen} < ?{alive} RETURNING id, {seen} AS seen",
                params,
            ).fetchall()
            stale = sorted((int(r["id"]), float(r["seen"])) for r in rows)
            for job_id, last in stale:
                cur.execute(
                    "INSERT INTO events(at, kind, series_instance_uid, message)"
                    " SELECT ?, 'job_requeued', series_instance_uid, ? FROM jobs WHERE id=?",
                    (now, f"job {job_id}: no heartbeat for {now - last:.0f} s (lease"
                          f" {lease_s:g} s), queued again", job_id),
                )
        return [job_id for job_id, _ in stale]

    def heartbeat(self, job_ids: Sequence[int], worker: str, now: float | None = None) -> int:
        """Record that ``worker`` is still running these jobs; returns how many it still owns."""
        if not job_ids:
            return 0
        now = time.time() if now is None else now
        marks = ",".join("?" * len(job_ids))
        with self._tx(serialized=False) as cur:
            return cur.execute(
                f"UPDATE jobs SET heartbeat_at=? WHERE state='running' AND id IN ({marks})"
                " AND " + _WORKER_MATCH,
                (now, *job_ids, *_worker_params(worker)),
            ).rowcount

    def claim_job(self, now: float | None = None, *, worker: str = "local") -> Job | None:
        """Take the oldest due queued job and mark it running, owned by ``worker``.

        One statement: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (concurrent workers skip
        each other's rows; no two claim the same job); SQLite serialises it.
        """
        now = time.time() if now is None else now
        lock = " FOR UPDATE SKIP LOCKED" if self.engine == "postgresql" else ""
        with self._tx(serialized=False) as cur:
            row = cur.execute(
                "UPDATE jobs SET state='running', attempts=attempts+1, started_at=?,"
                " heartbeat_at=?, worker=? WHERE id=(SELECT id FROM jobs"
                " WHERE state='queued' AND not_before<=? ORDER BY id LIMIT 1" + lock + ")"
                " RETURNING id, series_instance_uid, analysis, generation, attempts",
                (now, now, worker, now),
            ).fetchone()
        if row is None:
            return None
        return Job(
            int(row["id"]),
            row["series_instance_uid"],
            row["analysis"],
            int(row["generation"]),
            int(row["attempts"]),
            worker,
        )

    def _owned(self, cur: Any, job: Job) -> bool:
        """Whether ``job`` is still running under the worker that claimed it."""
        row = cur.execute("SELECT state, worker FROM jobs WHERE id=?", (job.id,)).fetchone()
        owned = (
            row is not None and row["state"] == "running"
            and (job.worker is None or row["worker"] == job.worker)
        )
        if not owned:
            logger.warning(
                "job %d: result of worker %s discarded: the job is now %s by %s",
                job.id, job.worker, row["state"] if row else "gone",
                row["worker"] if row else "nobody",
            )
        return owned

    def next_job_due(self) -> float | None:
        """Earliest ``not_before`` of queued jobs, or None when the queue is empty."""
        rows = self._query("SELECT MIN(not_before) AS t FROM jobs WHERE state='queued'")
        value = rows[0]["t"]
        return float(value) if value is not None else None

    def finish_job(
        self,
        job: Job,
        outputs: Sequence[OutputFile],
        destinations: Sequence[str],
        *,
        result_dir: Path,
        timings: dict[str, float],
        summary: dict[str, Any],
    ) -> bool:
        """Mark a job done and queue its outputs for every destination, atomically.

        Outputs of older generations of the series' analysis not yet delivered are
        superseded by these.  Returns False (and queues nothing) when a newer generation of
        the series superseded the job while it ran, or when the job was taken from its worker
        (no heartbeat: see :meth:`requeue_stale`).
        """
        now = time.time()
        with self._tx() as cur:
            if not self._owned(cur, job):
                return False
            newer = cur.execute(
                "SELECT 1 FROM jobs WHERE series_instance_uid=? AND analysis=? AND generation>?",
                (job.series_instance_uid, job.analysis, job.generation),
            ).fetchone()
            state = "superseded" if newer else "done"
            cur.execute(
                "UPDATE jobs SET state=?, finished_at=?, timings=?, result_dir=?, summary=?,"
                " error=NULL WHERE id=?",
                (state, now, json.dumps(timings), str(result_dir), json.dumps(summary), job.id),
            )
            if newer:
                return False
            cur.execute(
                "UPDATE outbox SET state='superseded' WHERE state='pending' AND job_id IN"
                " (SELECT id FROM jobs WHERE series_instance_uid=? AND analysis=?"
                " AND generation<?)",
                (job.series_instance_uid, job.analysis, job.generation),
            )
            for out in outputs:
                for dest in destinations:
                    cur.execute(
                        "INSERT INTO outbox(job_id, destination, path,"
                        " sop_instance_uid, sop_class_uid, kind, created_at)"
                        " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                        (
                            job.id,
                            dest,
                            str(out.path),
                            out.sop_instance_uid,
                            out.sop_class_uid,
                            out.kind,
                            now,
                        ),
                    )
        return True

    def fail_job(self, job: Job, error: str, retry_at: float | None) -> None:
        """Record a failure; re-queue at ``retry_at`` or mark failed for good."""
        error = self._shown(error)
        with self._tx() as cur:
            if not self._owned(cur, job):
                return
            if retry_at is None:
                cur.execute(
                    "UPDATE jobs SET state='failed', finished_at=?, error=? WHERE id=?",
                    (time.time(), error, job.id),
                )
            else:
                cur.execute(
                    "UPDATE jobs SET state='queued', not_before=?, error=? WHERE id=?",
                    (retry_at, error, job.id),
                )

    def kept_result(self, job: Job) -> dict[str, Any] | None:
        """The done job of an older generation whose result stays current after ``job``
        failed (None: there is none); recorded as a ``result_kept`` event."""
        rows = self._query(
            "SELECT id, generation FROM jobs WHERE series_instance_uid=? AND analysis=?"
            " AND generation<? AND state='done' ORDER BY generation DESC, id DESC LIMIT 1",
            (job.series_instance_uid, job.analysis, job.generation),
        )
        if not rows:
            return None
        kept = dict(rows[0])
        self.record_event(
            "result_kept",
            job.series_instance_uid,
            f"{job.analysis} job {job.id} (generation {job.generation}) failed; the result of"
            f" job {kept['id']} (generation {kept['generation']}) stays current",
        )
        return kept

    def retry_job(self, job_id: int) -> bool:
        """Queue a failed job again (an operator's retry)."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE jobs SET state='queued', not_before=0, attempts=0 WHERE id=?"
                " AND state='failed'",
                (job_id,),
            )
            return cur.rowcount == 1

    def reanalyse_study(
        self,
        study_uid: str,
        analysis: str,
        reason: str,
        *,
        states: Sequence[str] = ("done", "running"),
        done_with_flag: str | None = None,
    ) -> list[int]:
        """Queue a new generation of ``analysis`` for the routed series of a study.

        A series is re-queued when its latest job of ``analysis`` is in one of ``states``
        (a queued job will see the new inputs when it runs; a failed one is left to the
        operator).  With ``done_with_flag``, a done job is re-queued only if its result
        carries that QC flag code (e.g. it found no companion series then); a running job
        started before the new inputs and is re-queued anyway.  The series' generation goes
        up by one, as for a late instance: a running job of the old generation finishes as
        superseded, undelivered outputs of older generations are superseded, and the new
        job writes new objects (new UIDs: :mod:`node.outputs.uids`) whose SRs reference the
        delivered SRs they replace (:mod:`node.jobs.lineage`).  Each re-queue is recorded as a
        ``reanalysis`` event with ``reason``.

        Returns
        -------
        list of int
            The ids of the new jobs.
        """
        reason = self._shown(reason)
        now = time.time()
        job_ids: list[int] = []
        with self._tx() as cur:
            series_rows = cur.execute(
                "SELECT series_instance_uid, generation FROM series"
                " WHERE study_instance_uid=? AND state='routed'",
                (study_uid,),
            ).fetchall()
            for series in series_rows:
                series_uid = series["series_instance_uid"]
                latest = cur.execute(
                    "SELECT state, summary FROM jobs WHERE series_instance_uid=? AND analysis=?"
                    " ORDER BY generation DESC LIMIT 1",
                    (series_uid, analysis),
                ).fetchone()
                if latest is None or latest["state"] not in states:
                    continue
                if (done_with_flag is not None and latest["state"] == "done"
                        and done_with_flag not in _flag_codes(latest["summary"])):
                    continue
                generation = int(series["generation"]) + 1
                cur.execute(
                    "UPDATE series SET generation=? WHERE series_instance_uid=?",
                    (generation, series_uid),
                )
                cur.execute(
                    "UPDATE outbox SET state='superseded' WHERE state='pending' AND job_id IN"
                    " (SELECT id FROM jobs WHERE series_instance_uid=? AND analysis=?"
                    " AND generation<?)",
                    (series_uid, analysis, generation),
                )
                job_id = int(cur.execute(
                    "INSERT INTO jobs(series_instance_uid, analysis, generation, created_at)"
                    " VALUES (?,?,?,?) RETURNING id",
                    (series_uid, analysis, generation, now),
                ).fetchone()["id"])
                job_ids.append(job_id)
                cur.execute(
                    "INSERT INTO events(at, kind, series_instance_uid, message) VALUES (?,?,?,?)",
                    (now, "reanalysis", series_uid,
                     f"{analysis} queued again (job {job_id}, generation {generation}): {reason}"),
                )
        return job_ids


def _flag_codes(summary: str | None) -> list[str]:
    """QC flag codes of a job's stored summary (none if it has no readable summary)."""
    try:
        codes = json.loads(summary or "{}").get("qc_flags", [])
    except (ValueError, AttributeError):
        return []
    return [str(code) for code in codes] if isinstance(codes, list) else []


_WORKER_MATCH = "(worker=? OR substr(worker, 1, ?)=?)"
"""SQL: a job's worker is a process (``host/name``) or one of its threads (``host/name#i``)."""


def _worker_params(worker: str) -> tuple[str, int, str]:
    return worker, len(worker) + 1, worker + "#"
