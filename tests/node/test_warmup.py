"""The warm-up at start rehearses an analysis quietly and reports itself in one line."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import node.jobs.warmup
from node.jobs.pipeline import writer_settings
from node.jobs.warmup import warm_up_analyses
from node.settings import WarmUp


def test_warm_up_rehearses_t1map_without_warnings_in_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    elapsed = warm_up_analyses(["t1map"], writer_settings("test", None))
    assert elapsed > 0
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert [r for r in records if r[1] >= logging.WARNING] == []
    assert records == [("node.jobs.warmup", logging.INFO, f"analyses warmed up in {elapsed:.1f} s:"
                        " t1map")]
    # The filter is gone: the thread's INFO lines pass again.
    logging.getLogger("node.jobs.pipeline").info("after")
    assert caplog.records[-1].getMessage() == "after"


def test_load_only_loads_and_releases_the_workers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    rehearsed: list[Any] = []
    monkeypatch.setattr(node.jobs.warmup, "run_analysis", lambda *a, **k: rehearsed.append(a))
    caplog.set_level(logging.INFO)
    loaded = threading.Event()
    elapsed = warm_up_analyses(["t1map"], writer_settings("test", None), loaded, WarmUp.LOAD)
    assert loaded.is_set() and rehearsed == []
    assert [r.getMessage() for r in caplog.records] == [
        f"analyses loaded in {elapsed:.1f} s: t1map"]


def test_off_releases_the_workers_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    loaded = threading.Event()
    assert warm_up_analyses(["t1map"], writer_settings("test", None), loaded, WarmUp.OFF) == 0.0
    assert loaded.is_set()
    assert [r.getMessage() for r in caplog.records] == [
        "analyses not warmed up (node.warm_up = off): the first job loads them"]
