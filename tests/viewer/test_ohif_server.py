"""The OHIF server on its own: static files, its configuration and the proxy to Orthanc."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.netutil import free_port
from tests.viewer.ohif_server import ISOLATION_HEADERS, OhifServer, OhifServerError

INDEX = b"<!doctype html><title>OHIF</title>"
BUNDLE = b"console.log('bundle');"


@dataclass
class Upstream:
    """A stand-in for Orthanc that records what it is asked."""

    server: ThreadingHTTPServer
    requests: list[dict[str, object]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _upstream_handler(upstream: list[dict[str, object]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            upstream.append(
                {"method": self.command, "path": self.path, "host": self.headers["Host"],
                 "body": body}
            )
            status = 404 if self.path.endswith("/missing") else 200
            answer = b'[{"00100010": {"vr": "PN"}}]'
            self.send_response(status)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = _reply  # noqa: N815 (http.server's naming)
        do_POST = _reply  # noqa: N815

    return Handler


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    records: list[dict[str, object]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _upstream_handler(records))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield Upstream(server, records)
    server.shutdown()
    server.server_close()


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "index.html").write_bytes(INDEX)
    (folder / "app.bundle.js").write_bytes(BUNDLE)
    (tmp_path / "secret.txt").write_text("outside the app")
    return folder


@pytest.fixture
def viewer(dist: Path, upstream: Upstream) -> Iterator[OhifServer]:
    with OhifServer(dist, upstream.url) as server:
        yield server


def _get(
    server: OhifServer, path: str, method: str = "GET", body: bytes | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def test_serves_files_and_falls_back_to_index(viewer: OhifServer) -> None:
    response, body = _get(viewer, "/app.bundle.js")
    assert (response.status, body) == (200, BUNDLE)
    assert response.getheader("Content-Type", "").startswith("text/javascript")
    for route in ("/", "/viewer?StudyInstanceUIDs=1.2.3", "/segmentation/deep/link"):
        response, body = _get(viewer, route)
        assert (response.status, body) == (200, INDEX), route
        assert response.getheader("Content-Type", "").startswith("text/html")


def test_never_serves_files_outside_the_app(viewer: OhifServer) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"):
        _, body = _get(viewer, path)
        assert body == INDEX, path


def test_config_points_at_the_same_origin(viewer: OhifServer) -> None:
    response, body = _get(viewer, "/app-config.js")
    text = body.decode()
    assert response.status == 200
    assert "window.location.origin + '/dicom-web'" in text
    assert "@ohif/extension-default.dataSourcesModule.dicomweb" in text
    assert "defaultDataSourceName: 'dicomweb'" in text


def test_every_answer_is_cross_origin_isolated(viewer: OhifServer) -> None:
    for path in ("/", "/app.bundle.js", "/app-config.js", "/dicom-web/studies"):
        response, _ = _get(viewer, path)
        for name, value in ISOLATION_HEADERS.items():
            assert response.getheader(name) == value, (path, name)


def test_proxies_dicomweb_and_wado_keeping_host(viewer: OhifServer, upstream: Upstream) -> None:
    response, body = _get(viewer, "/dicom-web/studies?PatientID=X&limit=5")
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/dicom+json"
    assert body == b'[{"00100010": {"vr": "PN"}}]'
    _get(viewer, "/wado?requestType=WADO&studyUID=1")
    _get(viewer, "/dicom-web/studies", method="POST", body=b"multipart body")
    missing, _ = _get(viewer, "/dicom-web/studies/missing")
    assert missing.status == 404
    assert [(r["method"], r["path"]) for r in upstream.requests] == [
        ("GET", "/dicom-web/studies?PatientID=X&limit=5"),
        ("GET", "/wado?requestType=WADO&studyUID=1"),
        ("POST", "/dicom-web/studies"),
        ("GET", "/dicom-web/studies/missing"),
    ]
    assert upstream.requests[2]["body"] == b"multipart body"
    assert {r["host"] for r in upstream.requests} == {f"{viewer.host}:{viewer.port}"}


def test_paths_that_only_start_like_dicomweb_are_not_proxied(
    viewer: OhifServer, upstream: Upstream
) -> None:
    _, body = _get(viewer, "/dicom-webby")
    assert body == INDEX
    assert upstream.requests == []


def test_orthanc_down_is_a_bad_gateway(dist: Path) -> None:
    with OhifServer(dist, f"http://127.0.0.1:{free_port()}") as server:
        response, body = _get(server, "/dicom-web/studies")
    assert response.status == 502
    assert b"Orthanc did not answer" in body


def test_refuses_a_folder_without_ohif(tmp_path: Path) -> None:
    with pytest.raises(OhifServerError, match="No OHIF build"):
        OhifServer(tmp_path, "http://127.0.0.1:8042").start()
    (tmp_path / "index.html").write_bytes(INDEX)
    with pytest.raises(OhifServerError, match="not http"):
        OhifServer(tmp_path, "https://pacs.example").start()
