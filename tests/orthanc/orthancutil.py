"""A real Orthanc (Debian's) with the cmr-node plugin, started on free loopback ports."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.netutil import REPO, free_port, terminate, wait_for

ORTHANC_BINARY = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
PYTHON_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPython.so")
ORTHANC_AVAILABLE = ORTHANC_BINARY is not None and PYTHON_PLUGIN.exists()
USER, PASSWORD = "admin", "cmr-test-password"


@dataclass
class OrthancProcess:
    """Orthanc started through ``python -m node.orthanc.launch`` (which execs Orthanc)."""

    workdir: Path
    pacs_port: int | None
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    stable_age_s: int = 1
    aet: str = "CMRORTHANC"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "node" / "catalog.sqlite3"

    def write_node_config(self) -> Path:
        path = self.workdir / "node.toml"
        dest = ""
        if self.pacs_port is not None:
            dest = (
                '[[destination]]\nname = "pacs"\nae_title = "TESTPACS"\n'
                f'host = "127.0.0.1"\nport = {self.pacs_port}\n'
            )
        path.write_text(
            '[node]\nlog_level = "INFO"\n'
            "[sender]\nretry_initial_s = 0.5\nretry_max_s = 2.0\nnetwork_timeout_s = 10\n" + dest
        )
        return path

    def start(self, timeout: float = 90.0) -> OrthancProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "node.toml"
        if not config.exists():
            self.write_node_config()
        log = (self.workdir / "orthanc-stdout.log").open("ab")
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node.orthanc.launch",
                "--data",
                str(self.data_dir),
                "--config",
                str(config),
                "--http-port",
                str(self.http_port),
                "--dicom-port",
                str(self.dicom_port),
                "--aet",
                self.aet,
                "--stable-age",
                str(self.stable_age_s),
                "--user",
                f"{USER}:{PASSWORD}",
                "--no-dicomweb",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for(self._ready, timeout, interval=0.2)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            return self.get("/cmr-node/health")["status"] == "ok"
        except (OSError, urllib.error.URLError):
            return False

    def request(
        self, method: str, path: str, body: bytes | None = None, *, auth: bool = True
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method
        )
        if auth:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=20) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise urllib.error.URLError(f"GET {path}: HTTP {status}")
        return json.loads(body)

    def post(self, path: str, body: bytes = b"") -> tuple[int, Any]:
        status, answer = self.request("POST", path, body)
        return status, json.loads(answer) if status == 200 and answer else None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        parts = []
        for path in (
            self.workdir / "orthanc-stdout.log",
            self.data_dir / "node" / "logs" / "cmr-node.log",
        ):
            if path.exists():
                parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-n:])
        return "\n".join(parts)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Read the node's catalog (WAL allows reading while the plugin writes)."""
        if not self.catalog_path.exists():
            return []
        conn = sqlite3.connect(str(self.catalog_path), timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, params).fetchall())
        except sqlite3.OperationalError:  # tables not created yet
            return []
        finally:
            conn.close()


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    """:func:`tests.netutil.wait_for` that also tolerates transient errors of the predicate."""

    def safe() -> Any:
        try:
            return predicate()
        except (OSError, urllib.error.URLError, sqlite3.Error):
            return None

    return wait_for(safe, timeout, interval)
