"""The status endpoint refuses what a foreign web page could send it, over real HTTP.

A page opened in a browser on the node's host can post to ``127.0.0.1:8089`` (cross-site
request forgery: a form or ``text/plain`` body, a foreign ``Origin``) or read it under its own
host name resolved to 127.0.0.1 (DNS rebinding: a foreign ``Host``).
"""

from __future__ import annotations

import http.client
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.catalog.catalog import Catalog
from node.inputs.covariates import CovariateFolder
from node.status.report import StatusServer, host_name, write_token_file

STUDY = "1.2.826.0.1.3680043.8.498.1"
BODY = json.dumps({"sbp_mmhg": 120}).encode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StatusServer]:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    server = StatusServer(catalog, "127.0.0.1", 0, lambda: None,
                          covariates=CovariateFolder(tmp_path / "covariates"),
                          allowed_origins=["https://viewer.example.org"])
    server.start()
    try:
        yield server
    finally:
        server.stop()
        catalog.close()


def _request(server: StatusServer, method: str, path: str, headers: dict[str, str],
             body: bytes | None = None) -> tuple[int, dict[str, object]]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def _good(server: StatusServer) -> dict[str, str]:
    return {"Host": f"127.0.0.1:{server.address[1]}", "Content-Type": "application/json",
            "Authorization": f"Bearer {server.write_token}"}


def _stored(tmp_path: Path) -> bool:
    return (tmp_path / "covariates" / f"{STUDY}.json").exists()


def test_a_write_without_the_token_is_refused(server: StatusServer, tmp_path: Path) -> None:
    headers = {k: v for k, v in _good(server).items() if k != "Authorization"}
    code, answer = _request(server, "POST", f"/studies/{STUDY}/covariates", headers, BODY)
    assert code == 401 and answer["error"] == "authentication required"
    code, _ = _request(server, "POST", "/jobs/1/retry", headers, b"{}")
    assert code == 401
    wrong = {**headers, "Authorization": "Bearer " + "x" * 43}
    assert _request(server, "POST", f"/studies/{STUDY}/covariates", wrong, BODY)[0] == 401
    assert not _stored(tmp_path)


def test_a_write_that_is_not_json_is_refused(server: StatusServer, tmp_path: Path) -> None:
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        headers = {**_good(server), "Content-Type": kind}
        code, answer = _request(server, "POST", f"/studies/{STUDY}/covariates", headers, BODY)
        assert code == 415, kind
        assert "application/json" in str(answer["error"])
    no_type = {k: v for k, v in _good(server).items() if k != "Content-Type"}
    assert _request(server, "POST", f"/studies/{STUDY}/covariates", no_type, BODY)[0] == 415
    assert not _stored(tmp_path)


def test_a_foreign_host_name_is_refused(server: StatusServer, tmp_path: Path) -> None:
    for host in ("evil.example", f"evil.example:{server.address[1]}", "127.0.0.1.evil.example"):
        headers = {**_good(server), "Host": host}
        assert _request(server, "POST", f"/studies/{STUDY}/covariates", headers, BODY)[0] == 421
        assert _request(server, "GET", "/status", {"Host": host})[0] == 421
    assert not _stored(tmp_path)
    assert _request(server, "GET", "/healthz", {"Host": "evil.example"})[0] == 200


def test_a_foreign_origin_is_refused(server: StatusServer, tmp_path: Path) -> None:
    for origin in ("http://evil.example", "null", f"http://localhost:{server.address[1]}0"):
        headers = {**_good(server), "Origin": origin}
        code, answer = _request(server, "POST", f"/studies/{STUDY}/covariates", headers, BODY)
        assert code == 403 and "origin" in str(answer["error"])
    assert not _stored(tmp_path)


def test_the_all_foreign_request_of_the_issue_is_refused(server: StatusServer) -> None:
    headers = {"Host": "evil.example", "Origin": "http://evil.example",
               "Content-Type": "text/plain"}
    assert _request(server, "POST", "/jobs/1/retry", headers, b"{}")[0] in (401, 403, 415, 421)
    assert _request(server, "POST", f"/studies/{STUDY}/covariates", headers, BODY)[0] != 200


def test_an_authorised_json_write_from_an_allowed_origin_goes_through(
    server: StatusServer, tmp_path: Path
) -> None:
    code, answer = _request(server, "POST", f"/studies/{STUDY}/covariates", _good(server), BODY)
    assert code == 200, answer
    assert _stored(tmp_path)
    headers = {**_good(server), "Origin": "https://viewer.example.org",
               "Host": f"localhost:{server.address[1]}",
               "Content-Type": "application/json; charset=utf-8"}
    assert _request(server, "POST", f"/studies/{STUDY}/covariates", headers, BODY)[0] == 200
    assert _request(server, "GET", "/status", {"Host": "[::1]"})[0] == 200


def test_host_names_and_the_token_file(tmp_path: Path) -> None:
    assert host_name("[::1]:8089") == "::1"
    assert host_name("LocalHost:8089") == "localhost"
    assert host_name("127.0.0.1") == "127.0.0.1"
    path = tmp_path / "data" / "http-token"
    token = write_token_file(path)
    assert path.read_text().strip() == token and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
