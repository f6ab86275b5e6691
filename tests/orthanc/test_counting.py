"""Completion by the announced count inside Orthanc (node.orthanc.counting), driven through the
registered change callback with a fake ``orthanc`` module (no Orthanc, no analysis run)."""

from __future__ import annotations

import io
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from node.completion.tracker import CountState
from node.orthanc.app import Registration
from node.orthanc.counting import THREAD_NAME
from node.orthanc.node import IntakeOutcome, IntakeReason, IntakeState, OrthancNode
from tests.netutil import wait_for
from tests.orthanc.conftest import write_node_config
from tests.orthanc.fake_orthanc import ChangeType, FakeOrthanc, OrthancException

GRACE_S = 0.4
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


@pytest.fixture()
def fake(tmp_path: Path) -> FakeOrthanc:
    config = write_node_config(tmp_path, node=f"count_grace_s = {GRACE_S}\n")
    return FakeOrthanc(config={"CmrNode": {"Config": str(config)}})


@pytest.fixture()
def registered(registered: Registration) -> Registration:
    """The conftest's registration with the count completer running (the node's other
    threads are not needed here)."""
    registered.node.counter.start()
    return registered


def _arrive(fake: FakeOrthanc, raw: bytes) -> tuple[str, str]:
    """Orthanc stores an instance and reports it (NEW_INSTANCE); returns (instance, series)."""
    instance_id, series_id, _ = fake.add(raw)
    fake.change(ChangeType.NEW_INSTANCE, instance_id)
    return instance_id, series_id


def _arrive_series(fake: FakeOrthanc, paths: list[Path]) -> str:
    """Every instance of a series arrives in order; returns the Orthanc series."""
    series_id = ""
    for path in paths:
        _, series_id = _arrive(fake, path.read_bytes())
    return series_id


def _intake(node: OrthancNode) -> list[tuple[str, str]]:
    conn = sqlite3.connect(str(node.settings.catalog_path))
    try:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT orthanc_series_id, reason FROM orthanc_intake ORDER BY id")]
    finally:
        conn.close()


def _edited(path: Path, **changes: object) -> bytes:
    ds = dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if "SOPInstanceUID" in changes:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in changes:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _run_next(node: OrthancNode) -> IntakeOutcome:
    item = node.store.claim()
    assert item is not None
    outcome = node.run_intake(item)
    assert outcome is not None
    return outcome


def test_series_is_handed_over_once_its_count_arrived_and_the_grace_passed(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="node.orthanc.counting")
    assert len(t1_paths) == 3
    assert dcmread(t1_paths[0], stop_before_pixels=True).ImagesInAcquisition == 3
    series_id = _arrive_series(fake, t1_paths)
    last = time.monotonic()
    assert node.counter.count_state(series_id) is CountState.REACHED
    assert _intake(node) == []  # the grace has not passed yet
    wait_for(lambda: _intake(node), 5 * GRACE_S + 2.0, interval=0.02)
    assert time.monotonic() - last >= GRACE_S * 0.9
    assert _intake(node) == [(series_id, IntakeReason.COUNT)]
    uid = str(dcmread(t1_paths[0], stop_before_pixels=True).SeriesInstanceUID)
    assert f"series {uid} complete: count 3 reached" in caplog.messages

    # Orthanc declares it stable later: the series is not handed over twice.
    fake.calls.clear()
    fake.change(ChangeType.STABLE_SERIES, series_id)
    assert fake.calls == [], "the STABLE_SERIES callback must not call Orthanc"
    assert _intake(node) == [(series_id, IntakeReason.COUNT)]
    outcome = _run_next(node)  # the same intake as a stable series: fetched, routed, a job
    assert outcome.state == IntakeState.DONE and len(outcome.job_ids) == 1
    assert node.catalog.series_generation(uid) == ("routed", 0)


def test_instance_after_the_count_completion_leads_to_a_new_generation(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path]
) -> None:
    series_id = _arrive_series(fake, t1_paths)
    wait_for(lambda: _intake(node), 5 * GRACE_S + 2.0, interval=0.02)
    first = _run_next(node)
    uid = str(dcmread(t1_paths[0], stop_before_pixels=True).SeriesInstanceUID)
    generation = node.catalog.series_generation(uid)
    assert generation is not None and generation[1] == 0

    # A fourth instance: more than announced (one acquisition's count), so the count no longer
    # completes the series; Orthanc's STABLE_SERIES hands it over again.
    _arrive(fake, _edited(t1_paths[0], SOPInstanceUID=generate_uid(), InstanceNumber=4))
    assert node.counter.count_state(series_id) is CountState.OVERRUN
    time.sleep(GRACE_S * 2.5)
    assert [r for _, r in _intake(node)] == [IntakeReason.COUNT]
    assert node.series_stable(series_id) is not None
    assert [r for _, r in _intake(node)] == [IntakeReason.COUNT, IntakeReason.STABLE]
    second = _run_next(node)
    assert second.state == IntakeState.DONE
    generation = node.catalog.series_generation(uid)
    assert generation is not None and generation[1] == 1
    assert second.job_ids and set(second.job_ids).isdisjoint(first.job_ids)
    assert len(node.catalog.instance_paths(uid)) == 4


def test_stable_series_before_the_grace_ends_is_handed_over_once(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path]
) -> None:
    series_id = _arrive_series(fake, t1_paths)
    fake.change(ChangeType.STABLE_SERIES, series_id)  # StableAge shorter than count_grace_s
    time.sleep(GRACE_S * 2.5)
    assert _intake(node) == [(series_id, IntakeReason.STABLE)]


def test_series_short_of_or_without_a_count_waits_for_stable_series(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path]
) -> None:
    short = ""
    for path in t1_paths[:2]:
        _, short = _arrive(fake, path.read_bytes())
    no_count = ""
    for path in t1_paths:
        _, no_count = _arrive(fake, _edited(path, SeriesInstanceUID="1.2.826.0.1.3680043.8.498.7",
                                            ImagesInAcquisition=None))
    enhanced = ""
    for path in t1_paths:  # an enhanced object's count is of frames, not instances
        _, enhanced = _arrive(fake, _edited(path, SeriesInstanceUID="1.2.826.0.1.3680043.8.498.8",
                                            SOPClassUID=ENHANCED_MR))
    assert node.counter.count_state(short) is CountState.SHORT
    assert node.counter.count_state(no_count) is CountState.UNKNOWN
    assert node.counter.count_state(enhanced) is CountState.UNKNOWN
    time.sleep(GRACE_S * 2.5)
    assert _intake(node) == []
    for series_id in (short, no_count, enhanced):
        fake.change(ChangeType.STABLE_SERIES, series_id)
    assert _intake(node) == [(s, IntakeReason.STABLE) for s in (short, no_count, enhanced)]

    # The missing instance arrives after the short series was handed over (and fetched): the
    # count is reached now (the instances Orthanc holds seed it) and the series is handed over
    # anew.
    for _ in range(3):
        _run_next(node)
    _arrive(fake, t1_paths[2].read_bytes())
    assert node.counter.count_state(short) is CountState.REACHED
    wait_for(lambda: len(_intake(node)) == 4, 5 * GRACE_S + 2.0, interval=0.02)
    assert _intake(node)[-1] == (short, IntakeReason.COUNT)


def test_counting_never_raises_into_orthanc_and_stop_ends_its_thread(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path]
) -> None:
    fake.change(ChangeType.NEW_INSTANCE, "0000-gone")  # deleted before its change was handled
    instance_id, series_id, _ = fake.add(t1_paths[0].read_bytes())
    fake.fail_next.append(OrthancException(13, "Database locked"))
    fake.change(ChangeType.NEW_INSTANCE, instance_id)
    assert node.counter.count_state(series_id) is None  # not counted: left to STABLE_SERIES
    fake.change(ChangeType.NEW_INSTANCE, instance_id)
    assert node.counter.count_state(series_id) is CountState.SHORT

    assert any(t.name == THREAD_NAME for t in threading.enumerate())
    assert node.stop(timeout=5)
    assert not node.counter.running
    assert not any(t.name == THREAD_NAME for t in threading.enumerate())
