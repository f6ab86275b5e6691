"""The warm-up at start rehearses an analysis quietly and reports itself in one line."""

from __future__ import annotations

import logging

import pytest

from node.pipeline import writer_settings
from node.warmup import warm_up_analyses


def test_warm_up_rehearses_t1map_without_warnings_in_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    elapsed = warm_up_analyses(["t1map"], writer_settings("test", None))
    assert elapsed > 0
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert [r for r in records if r[1] >= logging.WARNING] == []
    assert records == [("node.warmup", logging.INFO, f"analyses warmed up in {elapsed:.1f} s:"
                        " t1map")]
    # The filter is gone: the thread's INFO lines pass again.
    logging.getLogger("node.pipeline").info("after")
    assert caplog.records[-1].getMessage() == "after"
