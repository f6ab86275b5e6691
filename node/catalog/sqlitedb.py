"""One SQLite database file shared by the node's stores: connection, locking, transactions.

WAL journal (readers never block the writer), ``synchronous=NORMAL`` (a commit survives a
crash of the process; a power loss may lose the last commits, which the spool reconciliation
at start redoes), a 30 s busy timeout for the other connections to the same file, and one
re-entrant lock per connection so threads share it safely.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["SqliteDatabase"]

BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another writer of the same file."""


class SqliteDatabase:
    """A thread-safe connection to an SQLite file with the given schema applied.

    Parameters
    ----------
    path
        The database file (its folder is created).
    schema
        SQL script run at open (``CREATE TABLE IF NOT EXISTS ...``).
    """

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        self._conn.executescript(schema)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self, *, serialized: bool = True) -> Iterator[sqlite3.Cursor]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on error.

        SQLite serialises every write transaction; ``serialized`` is accepted for the
        interface :class:`node.catalog.pgdb.PostgresDatabase` shares.
        """
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query as dictionaries."""
        return [dict(r) for r in self._query(sql, params)]
