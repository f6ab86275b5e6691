"""Fixtures shared by the suites: a private PostgreSQL server and catalog locations on both
engines (the node's catalog runs the same SQL on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgutil import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test session (Debian's server, loopback, fresh)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """An empty catalog location: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "catalog.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()
