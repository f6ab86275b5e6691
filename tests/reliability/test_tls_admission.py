"""Over TLS as over plain TCP: a peer that completes the handshake and stalls (before or in
the middle of its A-ASSOCIATE-RQ) holds no association slot and is closed after the request
timeout.  Real TLS connections to the node run as a process."""

from __future__ import annotations

import select
import socket
import ssl
import time
from pathlib import Path

from tests.netutil import NodeProcess, wait_for
from tests.node.test_tls import Pki, _client, _echo, pki  # noqa: F401  (pki: fixture)
from tests.reliability.test_admission import _associate_rq

REQUEST_TIMEOUT_S = 3.0
MAX_ASSOCIATIONS = 2
"""Fewer slots than stallers of each kind: any staller holding a slot shows."""


def _closed(sock: ssl.SSLSocket | socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except (OSError, ValueError):
        return True


def test_tls_stallers_hold_no_slot_and_are_closed(tmp_path: Path, pki: Pki) -> None:  # noqa: F811
    scanner = _client(pki, certificate=True)
    node = NodeProcess(
        tmp_path / "node", None,
        extra_config=(
            f"[listener]\nrequest_timeout_s = {REQUEST_TIMEOUT_S}\n"
            f"max_associations = {MAX_ASSOCIATIONS}\n"
            "[tls]\n"
            f'certificate = "{pki.server_cert}"\nprivate_key = "{pki.server_key}"\n'
            f'ca_certificates = "{pki.ca}"\nlistener = true\n'
            "require_client_certificate = true\n"
        ),
        tls_args=scanner,
    ).start(timeout=120)
    stallers: list[ssl.SSLSocket | socket.socket] = []
    try:
        for k in range(3 * MAX_ASSOCIATIONS):  # 127.0.0.2.. : under the per-address limits
            raw = socket.socket()
            raw.bind((f"127.0.0.{2 + k % 3}", 0))
            raw.settimeout(10)
            raw.connect(("127.0.0.1", node.port))
            tls = scanner[0].wrap_socket(raw, server_hostname=scanner[1])  # handshake done
            if k % 2:
                tls.sendall(_associate_rq()[:7])  # a record with the start of a request
            stallers.append(tls)
        trickler = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        trickler.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        stallers.append(trickler)
        time.sleep(0.5)  # every staller has sent what it sends
        started = time.monotonic()
        assert _echo(node.port, scanner), "a staller holds an association slot"
        assert time.monotonic() - started < REQUEST_TIMEOUT_S
        assert wait_for(lambda: all(_closed(s) for s in stallers), timeout=REQUEST_TIMEOUT_S * 3)
        assert _echo(node.port, scanner)
    finally:
        for sock in stallers:
            sock.close()
        node.stop()
