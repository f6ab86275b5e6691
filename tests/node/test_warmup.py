"""The warm-up at start rehearses an analysis quietly and reports itself in one line; it loads
the networks through the analyses' descriptors and rehearses on committed series that the
phantom generator reproduces."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian

import node.jobs.warmup
from node.jobs.pipeline import writer_settings
from node.jobs.warmup import REHEARSAL_SERIES, load_analyses, rehearsal_series, warm_up_analyses
from node.settings import WarmUp
from tests.importutil import imports_of

NODE = Path(node.jobs.warmup.__file__).parents[1]


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


def test_the_committed_rehearsal_series_are_what_the_phantom_generator_writes(
    tmp_path: Path,
) -> None:
    """``make warmup-series`` would write the same data sets (pixel data and every
    attribute, file meta included) as those committed in node/defaults/warmup."""
    warmup = pytest.importorskip("models.phantoms.warmup")
    written = warmup.write_warmup_series(tmp_path)
    analyses = sorted(p.name for p in REHEARSAL_SERIES.iterdir() if p.is_dir())
    assert analyses == sorted(warmup.warmup_datasets()) == ["lge", "t1map"]
    assert [len(rehearsal_series(a)) for a in ("t1map", "lge")] == [3,
                                                                   warmup.LGE_WARM_UP_SLICES]
    for analysis in analyses:
        fresh = sorted(p for p in written if p.parent.name == analysis)
        committed = rehearsal_series(analysis)
        assert [p.name for p in committed] == [p.name for p in fresh]
        for path, again in zip(committed, fresh, strict=True):
            stored, expected = dcmread(path), dcmread(again)
            assert stored.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
            assert stored.file_meta == expected.file_meta
            assert stored == expected, path.name
            assert np.array_equal(stored.pixel_array, expected.pixel_array)


def test_the_node_imports_no_phantom_generator() -> None:
    assert imports_of(NODE, "models.phantoms") == []


def test_loading_the_lge_analysis_preloads_the_two_stage_segmenter() -> None:
    pytest.importorskip("torch")
    from models.runtime.lgeseg.two_stage import DEFAULT_LOCATOR, DEFAULT_SEGMENTER, cached_default

    if not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()):
        pytest.skip("two-stage weights not committed")
    cached_default.cache_clear()
    load_analyses(["lge"])
    assert cached_default.cache_info().currsize == 1
