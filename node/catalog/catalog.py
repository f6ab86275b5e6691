"""The durable catalog (SQLite): instances, series, jobs, outbox and an event log.

Every state change is committed here before the node acknowledges it to a peer (WAL journal).
With ``synchronous=NORMAL`` a committed transaction survives a crash of the process
(``kill -9``); a power loss may undo the last transactions, which is safe because each of
them can be redone: received instances are rebuilt from the fsynced spool at start
(``node.receive.listener.reconcile_spool``), a job that loses its "done" runs again, and an output
that loses its "sent" is sent again with the same UIDs.

States
------
series:  receiving -> complete -> routed | unrouted | correction   (a late instance re-opens
         it: receiving, generation + 1; correction: a reader's SEG, node.corrections.intake)
jobs:    queued -> running -> done | failed            (superseded when a newer generation of the
         same series is queued; running -> queued again after a crash)
outbox:  pending -> sent | failed | superseded
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from node.catalog.audit import withhold_values
from node.catalog.pgdb import PostgresDatabase, is_postgres_url, redact_url
from node.catalog.sqlitedb import SqliteDatabase

logger = logging.getLogger(__name__)

WORKER_LOCK_CLASS = 0x434D5257  # "CMRW"
"""First key of the PostgreSQL advisory locks that hold worker names."""
HUNG_WORKER_LEASES = 10
"""Leases without heartbeat after which a job is re-queued although its worker process still
holds its name (hung, not merely starved of CPU; see :meth:`Catalog.requeue_stale`)."""

SCHEMA_VERSION = 2
"""2: jobs record the worker that claimed them and its last heartbeat.  (Outbox rows also
record when a delivery attempt started, ``attempt_started_at``: a column added in place to
catalogs that lack it, whatever their version.)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid    TEXT PRIMARY KEY,
    series_instance_uid TEXT NOT NULL,
    study_instance_uid  TEXT NOT NULL,
    sop_class_uid       TEXT NOT NULL,
    transfer_syntax_uid TEXT,
    path                TEXT NOT NULL,
    size_bytes          INTEGER NOT NULL,
    calling_aet         TEXT,
    received_at         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_instance_uid);
CREATE TABLE IF NOT EXISTS series (
    series_instance_uid TEXT PRIMARY KEY,
    study_instance_uid  TEXT NOT NULL,
    modality            TEXT,
    description         TEXT,
    expected_count      INTEGER,
    instance_count      INTEGER NOT NULL DEFAULT 0,
    first_received      REAL NOT NULL,
    last_received       REAL NOT NULL,
    generation          INTEGER NOT NULL DEFAULT 0,
    state               TEXT NOT NULL DEFAULT 'receiving',
    completed_at        REAL,
    analysis            TEXT,
    route_reason        TEXT
);
CREATE INDEX IF NOT EXISTS series_state ON series(state);
CREATE TABLE IF NOT EXISTS jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    series_instance_uid TEXT NOT NULL,
    analysis            TEXT NOT NULL,
    generation          INTEGER NOT NULL,
    state               TEXT NOT NULL DEFAULT 'queued',
    attempts            INTEGER NOT NULL DEFAULT 0,
    not_before          REAL NOT NULL DEFAULT 0,
    created_at          REAL NOT NULL,
    started_at          REAL,
    finished_at         REAL,
    error               TEXT,
    timings             TEXT,
    result_dir          TEXT,
    summary             TEXT,
    worker              TEXT,
    heartbeat_at        REAL,
    UNIQUE (series_instance_uid, analysis, generation)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, not_before);
CREATE TABLE IF NOT EXISTS outbox (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id              INTEGER NOT NULL REFERENCES jobs(id),
    destination         TEXT NOT NULL,
    path                TEXT NOT NULL,
    sop_instance_uid    TEXT NOT NULL,
    sop_class_uid       TEXT NOT NULL,
    kind                TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'pending',
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     REAL NOT NULL DEFAULT 0,
    last_status         INTEGER,
    last_error          TEXT,
    created_at          REAL NOT NULL,
    sent_at             REAL,
    attempt_started_at  REAL,
    UNIQUE (job_id, destination, sop_instance_uid)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS corrections (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    sop_instance_uid    TEXT NOT NULL UNIQUE,
    series_instance_uid TEXT NOT NULL,
    path                TEXT NOT NULL,
    job_id              INTEGER NOT NULL REFERENCES jobs(id),
    source_series_uid   TEXT NOT NULL,
    analysis            TEXT NOT NULL,
    station             TEXT,
    calling_ae          TEXT,
    reader_ae           TEXT,
    creator             TEXT,
    received_at         REAL NOT NULL,
    agreement           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    at                  REAL NOT NULL,
    kind                TEXT NOT NULL,
    series_instance_uid TEXT,
    message             TEXT NOT NULL
);
"""


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


@dataclass(frozen=True)
class OutputFile:
    """A written output file the outbox must deliver."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    kind: str


def _job_dict(row: Any) -> dict[str, Any]:
    item = dict(row)
    for key in ("timings", "summary"):
        item[key] = json.loads(item[key]) if item[key] else None
    return item


class CatalogError(RuntimeError):
    """The catalog cannot be opened (database unreachable, refused, unreadable)."""


CatalogLocation = Path | str
"""An SQLite file, or a ``postgresql://`` URL (:mod:`node.catalog.pgdb`)."""


def _added_columns(db: SqliteDatabase) -> None:
    """Bring an SQLite catalog of schema 1 to schema 2 (columns added, nothing lost)."""
    have = {r["name"] for r in db._query("PRAGMA table_info(jobs)")}
    outbox = {r["name"] for r in db._query("PRAGMA table_info(outbox)")}
    with db._tx() as cur:
        for column, kind in (("worker", "TEXT"), ("heartbeat_at", "REAL")):
            if column not in have:
                cur.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        if "attempt_started_at" not in outbox:
            cur.execute("ALTER TABLE outbox ADD COLUMN attempt_started_at REAL")


class Catalog:
    """Thread-safe access to the catalog, on SQLite (default) or PostgreSQL.

    Parameters
    ----------
    location
        An SQLite file (one node process, or processes of one machine), or a
        ``postgresql://`` URL: one durable queue for a node and any number of worker
        processes on any machines (:mod:`node.catalog.pgdb`).  The SQL is the same on both engines;
        writes are serialised on both.
    keep_values
        Keep quoted header values in routing reasons, job errors and events (a debug
        setting); by default they are withheld as in the logs
        (:func:`node.catalog.audit.withhold_values`).
    """

    def __init__(self, location: CatalogLocation, *, keep_values: bool = False) -> None:
        self.location = str(location)
        self._keep_values = keep_values
        self._db: Any
        try:
            if isinstance(location, str) and is_postgres_url(location):
                self._db = PostgresDatabase(location, _SCHEMA)
                with self._db._tx() as cur:  # added in place, see SCHEMA_VERSION
                    have = cur.execute(
                        "SELECT 1 FROM information_schema.columns WHERE table_name='outbox'"
                        " AND column_name='attempt_started_at' AND table_schema=current_schema()"
                    ).fetchone()
                    if have is None:  # an older catalog: ALTER locks the table, so only then
                        cur.execute("ALTER TABLE outbox ADD COLUMN IF NOT EXISTS"
                                    " attempt_started_at DOUBLE PRECISION")
            else:
                self._db = SqliteDatabase(Path(location), _SCHEMA)
                _added_columns(self._db)
        except (sqlite3.Error, psycopg.Error, OSError) as exc:
            where = redact_url(location) if isinstance(location, str) else location
            raise CatalogError(f"cannot open the catalog {where}: {exc}") from exc
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (str(SCHEMA_VERSION),),
            )

    @property
    def engine(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "postgresql" if not isinstance(self._db, SqliteDatabase) else "sqlite"

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _tx(self, *, serialized: bool = True) -> Any:
        return self._db._tx(serialized=serialized)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._db._query(sql, params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query as dictionaries."""
        return [dict(r) for r in self._query(sql, params)]

    # ---------------------------------------------------------------- instances and series

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

    # ---------------------------------------------------------------- jobs

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

    # ---------------------------------------------------------------- outbox

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

    # ---------------------------------------------------------------- events and status

    def _shown(self, text: str) -> str:
        """``text`` as the catalog keeps it for the status endpoint and ``cmr-node status``:
        quoted header values (descriptions, comments, names: free text that can hold patient
        information) withheld, unless the catalog was opened with ``keep_values`` (the
        ``[node] values_in_reasons`` debug setting)."""
        return text if self._keep_values else withhold_values(text)

    def record_event(self, kind: str, series_uid: str | None, message: str) -> None:
        """Append a human-readable event (rejections, routing decisions, failures)."""
        message = self._shown(message)
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO events(at, kind, series_instance_uid, message) VALUES (?,?,?,?)",
                (time.time(), kind, series_uid, message),
            )

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
