"""DICOM TLS: the listener with client certificates, and the sender to a TLS-only PACS.

Certificates are made for the test with openssl: a CA, a server certificate for
``localhost``/127.0.0.1 (the node's and the PACS's), and a client certificate (a scanner's).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from node.delivery.sender import OutboxSender
from node.network.tls import TlsError, TlsSettings, client_context, parse_tls, server_context
from node.settings import Destination, SettingsError, load_settings
from tests.netutil import NodeProcess, PacsScp, wait_for
from tests.node.test_sender import _queued, _settings

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=cmr-node test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn in (("server", "localhost"), ("client", "MRSCANNER1")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.cnf",
                 "-out", f"{name}.pem", cwd=d)
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key")


def _client(pki: Pki, *, certificate: bool) -> tuple[ssl.SSLContext, str]:
    tls = TlsSettings(
        certificate=pki.client_cert if certificate else None,
        private_key=pki.client_key if certificate else None,
        ca_certificates=pki.ca,
    )
    return client_context(tls), "localhost"


def _echo(port: int, tls_args: tuple[ssl.SSLContext, str] | None) -> bool:
    ae = AE(ae_title="MRSCANNER1")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.connection_timeout = ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title="CMRNODE", tls_args=tls_args)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return "Status" in status and int(status.Status) == 0


@pytest.fixture(scope="module")
def tls_node(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(
        tmp_path_factory.mktemp("tls-node"),
        None,
        extra_config=(
            "[tls]\n"
            f'certificate = "{pki.server_cert}"\nprivate_key = "{pki.server_key}"\n'
            f'ca_certificates = "{pki.ca}"\nlistener = true\n'
            "require_client_certificate = true\n"
        ),
        tls_args=_client(pki, certificate=True),
    ).start()
    yield node
    node.stop()


def test_listener_accepts_a_scanner_with_a_certificate(tls_node: NodeProcess, pki: Pki) -> None:
    assert _echo(tls_node.port, _client(pki, certificate=True))


def test_listener_refuses_plain_tcp_and_peers_without_certificate(
    tls_node: NodeProcess, pki: Pki
) -> None:
    assert not _echo(tls_node.port, None)
    assert not _echo(tls_node.port, _client(pki, certificate=False))
    assert tls_node.proc is not None and tls_node.proc.poll() is None  # still serving
    assert _echo(tls_node.port, _client(pki, certificate=True))


def test_sender_delivers_to_a_tls_pacs_and_verifies_it(tmp_path: Path, pki: Pki) -> None:
    server = server_context(TlsSettings(certificate=pki.server_cert, private_key=pki.server_key))
    pacs = PacsScp(tmp_path / "pacs", ssl_context=server).start()
    try:
        trusted = TlsSettings(ca_certificates=pki.ca)
        good = Destination("pacs", "TESTPACS", "127.0.0.1", pacs.port, tls=True,
                           server_name="localhost")
        cat = _queued(tmp_path / "a", ["pacs"])
        sender = OutboxSender(replace(_settings(tmp_path / "a", (good,)), tls=trusted), cat)
        sender.start()
        try:
            wait_for(lambda: cat.outbox_items()[0]["state"] == "sent", 20, interval=0.1)
        finally:
            sender.stop()
        assert len(pacs.received()) == 1

        # A server name the certificate does not carry: refused, kept for retry, not sent.
        wrong = replace(good, server_name="pacs.example.org")
        cat2 = _queued(tmp_path / "b", ["pacs"])
        sender2 = OutboxSender(replace(_settings(tmp_path / "b", (wrong,)), tls=trusted), cat2)
        sender2.start()
        try:
            wait_for(lambda: cat2.outbox_items()[0]["attempts"] >= 1, 20, interval=0.1)
        finally:
            sender2.stop()
        item = cat2.outbox_items()[0]
        assert item["state"] != "sent" and "cannot connect" in item["last_error"]
        assert len(pacs.received()) == 1
    finally:
        pacs.stop()


def test_incomplete_tls_configuration_is_refused(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(TlsError, match=r"needs tls\.certificate"):
        parse_tls({"listener": True}, Path)
    with pytest.raises(TlsError, match=r"needs tls\.ca_certificates"):
        parse_tls({"certificate": str(pki.server_cert), "private_key": str(pki.server_key),
                   "require_client_certificate": True}, Path)
    with pytest.raises(TlsError, match="is not a file"):
        parse_tls({"ca_certificates": str(tmp_path / "missing.pem")}, Path)
    site = tmp_path / "site.toml"
    site.write_text('[tls]\nlistener = true\n')
    with pytest.raises(SettingsError, match=r"tls\.listener"):
        load_settings(site)
