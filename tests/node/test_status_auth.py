"""The status endpoint's bearer token: every route but /healthz needs it when configured."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from node.catalog.catalog import Catalog
from node.settings import SettingsError, http_token, settings_from_mapping
from node.status.report import StatusServer

TOKEN = "s3cret-token-for-the-status-endpoint"


def _call(url: str, method: str = "GET", token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if method == "POST":
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_routes_need_the_token_but_health_does_not(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    server = StatusServer(catalog, "127.0.0.1", 0, lambda: None, token=TOKEN)
    server.start()
    base = "http://{}:{}".format(*server.address)
    try:
        assert _call(f"{base}/healthz")[0] == 200
        assert _call(f"{base}/status")[0] == 401
        assert _call(f"{base}/status", token="wrong-token-of-the-right-length")[0] == 401
        assert _call(f"{base}/jobs/1/retry", "POST")[0] == 401
        code, body = _call(f"{base}/status", token=TOKEN)
        assert code == 200 and "counts" in body
        assert _call(f"{base}/jobs/1/retry", "POST", token=TOKEN)[0] == 409  # no such job
    finally:
        server.stop()
        catalog.close()


def test_endpoint_beyond_loopback_needs_a_token(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="http_token_env"):
        settings_from_mapping({"node": {"http_host": "0.0.0.0"}}, tmp_path)
    settings = settings_from_mapping(
        {"node": {"http_host": "0.0.0.0", "http_token_env": "CMR_TEST_TOKEN"}}, tmp_path
    )
    monkeypatch.setenv("CMR_TEST_TOKEN", "short")
    with pytest.raises(SettingsError, match="at least"):
        http_token(settings)
    monkeypatch.setenv("CMR_TEST_TOKEN", TOKEN)
    assert http_token(settings) == TOKEN
    loopback = settings_from_mapping({"node": {"http_host": "127.0.0.1"}}, tmp_path)
    assert http_token(loopback) is None
