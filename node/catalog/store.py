"""The catalog's database: its schema, opening it on SQLite or PostgreSQL, transactions, and
the event log that every part of the catalog writes to.

:class:`CatalogStore` is the base of the parts that make up :class:`node.catalog.catalog.Catalog`
(series records, the job queue, the outbox, the status queries).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from node.catalog.audit import withhold_values
from node.catalog.pgdb import PostgresDatabase, is_postgres_url, redact_url
from node.catalog.sqlitedb import SqliteDatabase

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


class CatalogStore:
    """The open catalog database (see :class:`node.catalog.catalog.Catalog` for the parameters)."""

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
