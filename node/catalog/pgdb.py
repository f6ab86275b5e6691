"""The catalog on PostgreSQL: one durable queue shared by the node and worker processes.

:class:`PostgresDatabase` offers :class:`node.catalog.sqlitedb.SqliteDatabase`'s interface
(``_tx``, ``_query``, ``query``, ``close``) so that :class:`node.catalog.catalog.Catalog` runs its
SQL unchanged on either engine.  The catalog writes ``?`` placeholders; they become psycopg's
``%s`` here.

Concurrency is the engine's, not the node's:

- every write transaction takes one transaction-level advisory lock
  (``pg_advisory_xact_lock``), so writes are serialised exactly as SQLite's ``BEGIN
  IMMEDIATE`` serialises them, across every process on every machine, and readers are never
  blocked (MVCC).  Catalog writes last milliseconds; analyses last seconds, and they run
  outside any transaction.
- claiming a job does not take that lock: it is one ``UPDATE ... WHERE id = (SELECT ...
  FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``, so concurrent workers never claim the same job
  and never wait for each other.

Connection details come from the URL (``postgresql://user@host:port/dbname``) and libpq's
own environment (``PGPASSWORD``, ``~/.pgpass``, ``PGSSLMODE`` ...): no password is stored in
the node's configuration.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

__all__ = ["CATALOG_LOCK_KEY", "PostgresDatabase", "is_postgres_url", "pg_schema", "redact_url"]

logger = logging.getLogger(__name__)

CATALOG_LOCK_KEY = 0x434D524E  # "CMRN"
"""Advisory lock key that serialises the catalog's write transactions."""

CONNECT_TIMEOUT_S = 10
"""How long opening a connection may take before the node reports the database down."""
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
"""TCP keepalive of catalog connections (client and server side): a peer silent at the TCP
level for idle + count x interval = 25 s is dead (a live process's kernel answers the probes
however busy the process is)."""

_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(location: str) -> bool:
    """Whether a catalog location names a PostgreSQL database (``postgresql://...``)."""
    return urlsplit(location).scheme in _SCHEMES


def redact_url(url: str) -> str:
    """The URL without a password, for logs and status pages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


_TYPE_MAP = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
)


def pg_schema(sqlite_schema: str) -> str:
    """The PostgreSQL form of a schema written for SQLite.

    Auto-increment keys become ``BIGSERIAL``, ``REAL`` (epoch seconds) becomes ``DOUBLE
    PRECISION`` (PostgreSQL's ``REAL`` is single precision: it would round timestamps to
    minutes) and integers become 64-bit.
    """
    schema = sqlite_schema
    for pattern, replacement in _TYPE_MAP:
        schema = pattern.sub(replacement, schema)
    return schema


def _placeholders(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled; the catalog
    writes no literal ``?``)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Cursor:
    """A psycopg cursor that accepts the catalog's ``?`` placeholders."""

    def __init__(self, cursor: psycopg.Cursor[dict[str, Any]]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        self._cursor.execute(_placeholders(sql), tuple(params))
        return self

    def fetchone(self) -> dict[str, Any] | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[dict[str, Any]]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class PostgresDatabase:
    """A thread-safe connection to a PostgreSQL database with the given schema applied.

    Parameters
    ----------
    url
        ``postgresql://user@host:port/dbname`` (libpq's environment fills in the rest).
    schema
        SQL script written for SQLite (``CREATE TABLE IF NOT EXISTS ...``); translated by
        :func:`pg_schema` and applied under the write lock, so several processes may start
        at once.

    Raises
    ------
    psycopg.OperationalError
        When the database cannot be reached.
    """

    dialect = "postgresql"

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._held: set[tuple[int, str]] = set()
        self._conn = self._connect()
        with self._tx() as cur:
            for statement in pg_schema(schema).split(";"):
                if statement.strip():
                    cur.execute(statement)
        logger.info("catalog on PostgreSQL %s", redact_url(url))

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        # TCP keepalives both ways: the server ends the session of a lost machine (and drops
        # the worker-name lock its jobs' lease depends on, JobQueue.requeue_stale of
        # node.catalog.job_queue) within about idle + count x interval seconds, not the
        # operating system's two hours.
        return psycopg.connect(
            self.url, row_factory=dict_row, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
            application_name="cmr-node", keepalives=1, keepalives_idle=KEEPALIVE_IDLE_S,
            keepalives_interval=KEEPALIVE_INTERVAL_S, keepalives_count=KEEPALIVE_COUNT,
            options=f"-c tcp_keepalives_idle={KEEPALIVE_IDLE_S}"
                    f" -c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S}"
                    f" -c tcp_keepalives_count={KEEPALIVE_COUNT}",
        )

    def _live(self) -> psycopg.Connection[dict[str, Any]]:
        """The connection, opened again if the server closed it (restart, fail-over).

        Session locks held through :meth:`hold_lock` are taken again on the new session; one
        that another process took meanwhile is reported and dropped.
        """
        if not (self._conn.closed or self._conn.broken):
            return self._conn
        logger.warning("catalog connection to %s lost: reconnecting", redact_url(self.url))
        self._conn = self._connect()
        for key, name in sorted(self._held):
            if not self._try_lock(key, name):
                logger.error("lock %s was taken by another process while disconnected", name)
                self._held.discard((key, name))
        return self._conn

    def _try_lock(self, key: int, name: str) -> bool:
        row = self._conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS ok", (key, name)
        ).fetchone()
        return bool(row and row["ok"])

    def hold_lock(self, key: int, name: str) -> bool:
        """Take the session advisory lock ``(key, hashtext(name))`` for as long as this
        database object lives; False when another session holds it."""
        with self._lock:
            self._live()
            if not self._try_lock(key, name):
                return False
            self._held.add((key, name))
            return True

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self, *, serialized: bool = True) -> Iterator[_Cursor]:
        """A write transaction, rolled back on error.

        ``serialized`` (the default) takes the catalog's advisory lock first, so that the
        transaction sees and changes the catalog alone, as under SQLite; a job claim passes
        False and relies on ``FOR UPDATE SKIP LOCKED`` instead.
        """
        with self._lock, self._live().transaction():
            cur = _Cursor(self._conn.cursor())
            if serialized:
                cur.execute("SELECT pg_advisory_xact_lock(?)", (CATALOG_LOCK_KEY,))
            yield cur

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._live().execute(_placeholders(sql), tuple(params)).fetchall()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query as dictionaries."""
        return [dict(r) for r in self._query(sql, params)]
