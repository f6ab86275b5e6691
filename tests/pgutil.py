"""A private PostgreSQL server for tests: Debian's PostgreSQL binaries, a fresh cluster in a
temporary folder, listening on a free loopback port.  Nothing is mocked and nothing touches the
machine's own clusters.

PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres`` system user
(created by Debian's package) and its commands run through ``runuser``.
"""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from tests.netutil import free_port

__all__ = ["PostgresServer", "postgres_bin_dir"]

_SYSTEM_USER = "postgres"


def postgres_bin_dir() -> Path:
    """The newest installed server binaries (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found: deploy/setup.sh installs Debian's postgresql"
        )
    return Path(found[-1]).parent


class PostgresServer:
    """Start a throw-away cluster; ``url(db)`` gives connection URLs, ``create_database``
    makes an empty database per test."""

    def __init__(self) -> None:
        self.bin = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="cmr-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        self.user = _SYSTEM_USER if self._as_root else getpass.getuser()

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [*argv]
        if self._as_root:
            command = ["runuser", "-u", _SYSTEM_USER, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        """initdb, then start on 127.0.0.1 with fsync on (the durability under test)."""
        self.socket_dir.mkdir(parents=True)
        if self._as_root:
            shutil.chown(self.root, _SYSTEM_USER)
            shutil.chown(self.socket_dir, _SYSTEM_USER)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                  self.user, "-E", "UTF8", "--no-locale")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.socket_dir} -c max_connections=50"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def url(self, database: str) -> str:
        """Connection URL of ``database`` over TCP on loopback."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "cmr") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster."""
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
