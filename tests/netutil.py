"""Real servers for end-to-end tests: a test PACS (Storage SCP) and the node as a process."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import ParametricMapStorage, Verification  # type: ignore[attr-defined]

from node.network.dimse import NoDelayServer

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Receipt:
    """One C-STORE the test PACS accepted."""

    at: float
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    calling_aet: str


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM a child process and wait for it; SIGKILL it after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class PacsScp:
    """A Storage SCP standing in for PACS: keeps every object it receives on disk."""

    folder: Path
    port: int = field(default_factory=free_port)
    ae_title: str = "TESTPACS"
    status: int = 0x0000
    receipts: list[Receipt] = field(default_factory=list)
    ssl_context: Any = None
    """An ``ssl.SSLContext`` to accept DICOM TLS associations only."""
    refused_sop_classes: tuple[str, ...] = ()
    """SOP classes this PACS does not accept at association (a PACS without SEG support)."""
    _server: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PacsScp:
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = StoragePresentationContexts
        # pynetdicom's default storage contexts lack Parametric Map Storage, which PACS such
        # as Orthanc store; the node sends it for MOLLI fits and ECV maps.
        ae.add_supported_context(ParametricMapStorage)
        ae.add_supported_context(Verification)
        for sop_class in self.refused_sop_classes:
            ae.remove_supported_context(sop_class)
        ae.maximum_pdu_size = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        server = ae.make_server(
            ("127.0.0.1", self.port),
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
            server_class=NoDelayServer,
            ssl_context=self.ssl_context,
        )
        ae._servers.append(server)  # pynetdicom's shutdown() expects its own bookkeeping
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_store(self, event: Any) -> int:
        if self.status != 0 and (self.status & 0xF000) != 0xB000:
            return self.status  # a failure: nothing kept
        raw = event.encoded_dataset()
        ds = event.dataset
        with self._lock:
            path = self.folder / f"{len(self.receipts):04d}-{ds.SOPInstanceUID}.dcm"
            path.write_bytes(raw)
            self.receipts.append(
                Receipt(
                    time.time(),
                    path,
                    str(ds.SOPClassUID),
                    str(ds.SOPInstanceUID),
                    str(ds.SeriesInstanceUID),
                    str(event.assoc.requestor.ae_title),
                )
            )
        return self.status

    def received(self) -> list[Receipt]:
        with self._lock:
            return list(self.receipts)

    def latest_by_uid(self) -> dict[str, Dataset]:
        """The most recent version of each SOP instance received."""
        latest: dict[str, Receipt] = {}
        for r in self.received():
            latest[r.sop_instance_uid] = r
        return {uid: dcmread(r.path) for uid, r in latest.items()}

    def count_by_uid(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for r in self.received():
            counts[r.sop_instance_uid] += 1
        return dict(counts)


LISTENER_PROCESSES_ENV = "CMRNODE_TEST_LISTENER_PROCESSES"
"""When set, every NodeProcess runs with ``[listener] processes`` = its value (else the
default)."""


@dataclass
class NodeProcess:
    """The node run as a separate process (``python -m node run``), as in production."""

    workdir: Path
    pacs_port: int | None
    port: int = field(default_factory=free_port)
    stable_age_s: float = 2.0
    extra_config: str = ""
    node_config: str = ""
    """Extra lines of the [node] table."""
    ae_title: str = "CMRNODE"
    http_port: int = 0
    tls_args: Any = None
    """``(ssl.SSLContext, server_hostname)`` of a client, when the listener speaks TLS."""
    warm_up: str = "off"
    """``[node] warm_up``: the suite's nodes skip the rehearsal (a full T1 and LGE analysis,
    minutes of CPU under load, running beside each test) and load analyses with their first
    job; tests of the warm-up ask for it."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def config_path(self) -> Path:
        return self.workdir / "node.toml"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        extra = self.extra_config
        processes = os.environ.get(LISTENER_PROCESSES_ENV)
        if processes:  # the suite run against several receiver processes (node.receive.receivers)
            line = f"processes = {int(processes)}\n"
            extra = (extra.replace("[listener]\n", "[listener]\n" + line, 1)
                     if "[listener]\n" in extra else f"{extra}\n[listener]\n{line}")
        dest = ""
        if self.pacs_port is not None:
            dest = (
                '[[destination]]\nname = "pacs"\nae_title = "TESTPACS"\n'
                f'host = "127.0.0.1"\nport = {self.pacs_port}\n'
            )
        self.config_path.write_text(
            "[node]\n"
            f'data_dir = "{self.data_dir}"\nae_title = "{self.ae_title}"\n'
            f"listen_port = {self.port}\nstable_age_s = {self.stable_age_s}\n"
            f"http_port = {self.http_port}\n"
            'min_free_disk_mb = 1\nlog_level = "INFO"\n'
            f'warm_up = "{self.warm_up}"\n'
            f"{self.node_config}\n"
            f"{extra}\n"
            "[sender]\nretry_initial_s = 0.5\nretry_max_s = 2.0\nnetwork_timeout_s = 10\n"
            f"{dest}"
        )

    def start(self, timeout: float = 60.0) -> NodeProcess:
        if not self.config_path.exists():
            self.write_config()
        log = (self.workdir / "node-stdout.log").open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node", "run", "--config", str(self.config_path)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_for(self._echo_ok, timeout, interval=0.2)
        return self

    def _echo_ok(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log_tail()}")
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        ae.acse_timeout = 2
        ae.connection_timeout = 1
        assoc = ae.associate("127.0.0.1", self.port, ae_title=self.ae_title,
                             tls_args=self.tls_args)
        if not assoc.is_established:
            return False
        status = assoc.send_c_echo()
        assoc.release()
        return "Status" in status and int(status.Status) == 0

    def echo_ok(self) -> bool:
        return self._echo_ok()

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
        path = self.workdir / "node-stdout.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Read the node's catalog (WAL allows reading while the node writes)."""
        conn = sqlite3.connect(str(self.data_dir / "catalog.sqlite3"), timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, params).fetchall())
        finally:
            conn.close()


@dataclass
class WorkerProcess:
    """``cmr-node worker --name NAME`` as a separate process."""

    config: Path
    name: str
    log: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.log = self.config.parent / f"worker-{self.name}.out"

    def start(self, env: dict[str, str] | None = None) -> WorkerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node", "worker", "--config", str(self.config),
                 "--name", self.name],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
            )
        wait_for(self._ready, 60, interval=0.2)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited: {self.log.read_text()[-3000:]}")
        return "analysis threads on the postgresql catalog" in self.log.read_text()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        terminate(self.proc)



def send_files(
    paths: list[Path],
    port: int,
    *,
    called: str = "CMRNODE",
    calling: str = "SCANNER",
    raw: bool = False,
) -> list[int | None]:
    """C-STORE files with pynetdicom (``raw``: send file bytes without decoding)."""
    from pynetdicom import _config

    from node.network.dimse import NoDelayAE

    datasets = [dcmread(p, stop_before_pixels=True) for p in paths]
    ae = NoDelayAE(ae_title=calling)
    for sop_class in sorted({str(d.SOPClassUID) for d in datasets}):
        syntaxes = sorted(
            {
                str(d.file_meta.TransferSyntaxUID)
                for d in datasets
                if str(d.SOPClassUID) == sop_class
            }
        )
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, "association with the node failed"
    statuses: list[int | None] = []
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = raw
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            statuses.append(int(status.Status) if "Status" in status else None)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        assoc.release()
    return statuses


def storescu(
    paths: list[Path], port: int, *, called: str = "CMRNODE"
) -> subprocess.CompletedProcess[str]:
    """Send files with dcmtk's storescu (a real scanner-like sender)."""
    return subprocess.run(
        ["storescu", "-aet", "SCANNER", "-aec", called, "127.0.0.1", str(port), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TCP_NODELAY="1"),
    )


def dciodvfy_errors(path: Path) -> list[str]:
    """Error lines dciodvfy reports for a file (empty: valid against its IOD)."""
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    text = proc.stdout + proc.stderr
    return [line for line in text.splitlines() if line.startswith("Error")]
