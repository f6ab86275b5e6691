"""Who gets an association: idle connections lock no scanner out; the called AE is checked.

Over real TCP to the node run as a process, as a port scanner, a misbehaving peer and a
scanner would reach it.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context
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


MAX_ASSOCIATIONS = 4
"""A small association limit, so that a few connections holding slots would show."""


def _associate_rq(called: str = "CMRNODE") -> bytes:
    """The bytes of an A-ASSOCIATE-RQ for Verification (as a scanner sends it)."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "SCANNER"
    primitive.called_ae_title = called
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    primitive.user_information = [max_length]
    context = build_context(Verification)
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def test_one_byte_stallers_hold_no_slot_and_are_closed(tmp_path: Path) -> None:
    """Peers that send the first byte of an A-ASSOCIATE-RQ and stall (more of them than
    association slots, from several addresses) keep no scanner out and are closed after the
    request timeout, not the ACSE timeout (30 s)."""
    [path] = write_brain_series(tmp_path / "in", 19, 1)
    node = _node(tmp_path, f"max_associations = {MAX_ASSOCIATIONS}\n").start(timeout=120)
    stallers: list[socket.socket] = []
    try:
        for k in range(3 * MAX_ASSOCIATIONS):  # 127.0.0.2.. : under the per-address limit
            sock = socket.socket()
            sock.bind((f"127.0.0.{2 + k % 3}", 0))
            sock.connect(("127.0.0.1", node.port))
            sock.sendall(_associate_rq()[:1])
            stallers.append(sock)
        time.sleep(0.5)  # every staller has sent its byte
        assert _store_one(node.port, path) == 0
        assert wait_for(lambda: all(_closed_by_peer(s) for s in stallers),
                        timeout=REQUEST_TIMEOUT_S * 3)
    finally:
        for sock in stallers:
            sock.close()
        node.stop()


def test_an_association_request_sent_in_pieces_is_answered(tmp_path: Path) -> None:
    """A request that arrives in parts within the request timeout becomes an association."""
    node = _node(tmp_path).start(timeout=120)
    raw = _associate_rq()
    try:
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
            sock.sendall(raw[:1])
            time.sleep(0.4)
            sock.sendall(raw[1:20])
            time.sleep(0.4)
            sock.sendall(raw[20:])
            answer = sock.recv(1)
            assert answer == b"\x02"  # A-ASSOCIATE-AC
    finally:
        node.stop()


def test_a_burst_of_connections_is_queued_while_the_listener_is_busy(tmp_path: Path) -> None:
    """Connections made while the node cannot accept (stopped here) are completed by the
    kernel, a scanner's among them: none waits for TCP to re-send its SYN (after 1 s)."""
    [path] = write_brain_series(tmp_path / "in", 20, 1)
    node = _node(tmp_path).start(timeout=120)
    assert node.proc is not None
    held: list[socket.socket] = []
    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(IDLE_CONNECTIONS):
            sock = socket.socket()
            sock.settimeout(2.0)  # longer than a retried SYN: a dropped one fails here
            sock.connect(("127.0.0.1", node.port))
            held.append(sock)
    finally:
        os.kill(node.proc.pid, signal.SIGCONT)
    try:
        assert len(held) == IDLE_CONNECTIONS
        assert _store_one(node.port, path) == 0
    finally:
        for sock in held:
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
        assert any("called AE WRONG" in e["message"] for e in rejected), rejected
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


PER_ADDRESS_ASSOCIATIONS = 2
"""A small per-address association limit, under the association limit (4)."""
LOCAL_LIMIT_RJ = bytes([0x03, 0, 0, 0, 0, 4, 0, 0x02, 0x03, 0x02])
"""A-ASSOCIATE-RJ, rejected-transient, service-provider (presentation), local-limit-exceeded
(PS3.8 Section 9.3.4)."""


def _verification_association(port: int, bind: str) -> Any:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = SCANNER_TIMEOUT_S
    return ae.associate("127.0.0.1", port, ae_title="CMRNODE", bind_address=(bind, 0))


def test_one_address_holds_at_most_its_share_of_associations(tmp_path: Path) -> None:
    """A peer holding its limit of associations has the next one rejected (transient, local
    limit exceeded) with an event naming its address; a scanner from another address still
    stores; once one of the peer's associations ends it may associate again."""
    [path] = write_brain_series(tmp_path / "in", 23, 1)
    node = _node(tmp_path, f"max_associations = {MAX_ASSOCIATIONS}\n"
                           f"max_associations_per_address = {PER_ADDRESS_ASSOCIATIONS}\n")
    node.start(timeout=120)
    held = [_verification_association(node.port, "127.0.0.1")
            for _ in range(PER_ADDRESS_ASSOCIATIONS)]
    try:
        assert all(a.is_established for a in held)
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
            sock.sendall(_associate_rq())
            answer = b""
            while len(answer) < len(LOCAL_LIMIT_RJ):
                chunk = sock.recv(64)
                if not chunk:
                    break
                answer += chunk
        assert answer == LOCAL_LIMIT_RJ
        refused = _verification_association(node.port, "127.0.0.1")
        assert refused.is_rejected and not refused.is_established
        events = [e["message"] for e in node.query(
            "SELECT message FROM events WHERE kind='association_rejected'")]
        assert len(events) == 2 and all(
            m.startswith("association from 127.0.0.1 rejected") and "local limit" in m
            for m in events), events
        scanner = _verification_association(node.port, "127.0.0.2")
        assert scanner.is_established
        scanner.release()
        ds = dcmread(path)
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = SCANNER_TIMEOUT_S
        other = ae.associate("127.0.0.1", node.port, ae_title="CMRNODE",
                             bind_address=("127.0.0.3", 0))
        assert other.is_established
        assert int(other.send_c_store(ds).Status) == 0
        other.release()
        held.pop().release()
        again = wait_for(
            lambda: (a := _verification_association(node.port, "127.0.0.1")).is_established
            and a, timeout=5)
        again.release()
    finally:
        for assoc in held:
            assoc.release()
        node.stop()
