"""Who gets an association: idle connections lock no scanner out; the called AE is checked.

Over real TCP to the node run as a process, as a port scanner, a misbehaving peer and a
scanner would reach it.
"""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.hardening.util import write_brain_series
from tests.netutil import NodeProcess, wait_for

pytestmark = pytest.mark.e2e

IDLE_CONNECTIONS = 50
PER_ADDRESS = 8
REQUEST_TIMEOUT_S = 3.0
SCANNER_TIMEOUT_S = 5.0
"""The scanner's association, DIMSE and network timeouts (the time a store takes with 50 idle
connections open is measured by ``python -m bench.admission``: well under a second)."""


def _node(tmp_path: Path, listener: str = "") -> NodeProcess:
    return NodeProcess(
        tmp_path / "node", None,
        extra_config=f"[listener]\nrequest_timeout_s = {REQUEST_TIMEOUT_S}\n"
                     f"max_waiting_per_address = {PER_ADDRESS}\n{listener}",
    )


def _closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def _store_one(port: int, path: Path, called: str = "CMRNODE") -> int | None:
    ds = dcmread(path)
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = SCANNER_TIMEOUT_S
    ae.connection_timeout = SCANNER_TIMEOUT_S
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def test_fifty_idle_connections_do_not_keep_a_scanner_out(tmp_path: Path) -> None:
    [path] = write_brain_series(tmp_path / "in", 17, 1)
    node = _node(tmp_path).start(timeout=120)
    idle: list[socket.socket] = []
    try:
        idle = [socket.create_connection(("127.0.0.1", node.port), timeout=5)
                for _ in range(IDLE_CONNECTIONS)]
        assert _store_one(node.port, path) == 0
        # Silent connections of one address beyond the limit are closed at once...
        evicted = wait_for(
            lambda: sum(_closed_by_peer(s) for s in idle) >= IDLE_CONNECTIONS - PER_ADDRESS,
            timeout=REQUEST_TIMEOUT_S,
        )
        assert evicted
        # ... and the rest once they stayed silent for the request timeout.
        wait_for(lambda: all(_closed_by_peer(s) or s.fileno() < 0 for s in idle),
                 timeout=REQUEST_TIMEOUT_S * 3)
        assert node.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 1
    finally:
        for sock in idle:
            sock.close()
        node.stop()


def test_a_peer_reconnecting_every_few_seconds_keeps_no_one_out(tmp_path: Path) -> None:
    paths = write_brain_series(tmp_path / "in", 18, 3)
    node = _node(tmp_path).start(timeout=120)
    held: list[socket.socket] = []
    try:
        for path in paths:
            held += [socket.create_connection(("127.0.0.1", node.port), timeout=5)
                     for _ in range(20)]
            assert _store_one(node.port, path) == 0
            time.sleep(0.5)
    finally:
        for sock in held:
            sock.close()
        node.stop()


def test_a_wrong_called_ae_title_is_rejected(tmp_path: Path) -> None:
    node = _node(tmp_path).start(timeout=120)
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="WRONG")
        assert assoc.is_rejected and not assoc.is_established
        assert node.echo_ok()  # the right one is accepted
        rejected = node.query("SELECT message FROM events WHERE kind='association_rejected'")
        assert rejected
    finally:
        node.stop()


def test_any_called_ae_title_when_so_configured(tmp_path: Path) -> None:
    node = _node(tmp_path, "require_called_aet = false\n").start(timeout=120)
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="ANYTHING")
        assert assoc.is_established
        assoc.release()
    finally:
        node.stop()
