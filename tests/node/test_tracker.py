"""When a series counts as complete: announced count reached, released, or quiet long enough."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from node.catalog.catalog import Catalog
from node.catalog.series import InstanceRecord
from node.completion.tracker import INCOMPLETE_COUNT_FACTOR, CountState, SeriesTracker
from tests.netutil import wait_for

STABLE_AGE_S = 0.3


def _record(catalog: Catalog, series: str, n: int, expected: int | None) -> None:
    state = None
    for i in range(n):
        state = catalog.record_instance(InstanceRecord(
            f"{series}.{i + 1}", series, "1.2.3", "1.2.840.10008.5.1.4.1.1.4", None,
            Path(f"/nonexistent/{series}.{i}.dcm"), 1, "SCANNER", "MR", None, expected,
        ))
    assert state is not None


def test_quiet_series_completes_after_stable_age_and_short_one_waits_longer(
    tmp_path: Path,
) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    completed: dict[str, float] = {}
    lock = threading.Lock()

    def on_complete(series_uid: str, _generation: int) -> None:
        with lock:
            completed[series_uid] = time.monotonic()

    tracker = SeriesTracker(catalog, STABLE_AGE_S, on_complete)
    tracker.start()
    try:
        start = time.monotonic()
        for series, n, expected in (("1.9.1", 3, None), ("1.9.2", 2, 5), ("1.9.3", 4, 4)):
            _record(catalog, series, n, expected)
            found = catalog.series_state(series)
            assert found is not None
            tracker.instance_stored(found[1])
        wait_for(lambda: len(completed) == 3, 10 * STABLE_AGE_S * INCOMPLETE_COUNT_FACTOR,
                 interval=0.02)
    finally:
        tracker.stop()
        catalog.close()
    # Count reached (no count grace): at once; no count: after stable_age; count announced but
    # not reached: only after INCOMPLETE_COUNT_FACTOR x stable_age.
    assert completed["1.9.3"] - start < STABLE_AGE_S
    assert completed["1.9.1"] - start >= STABLE_AGE_S * 0.9
    assert completed["1.9.2"] - start >= STABLE_AGE_S * INCOMPLETE_COUNT_FACTOR * 0.9
    assert completed["1.9.2"] > completed["1.9.1"]


def test_released_series_completes_after_grace_unless_still_carried_or_short(
    tmp_path: Path,
) -> None:
    from node.receive.associations import AssociationLedger

    catalog = Catalog(tmp_path / "catalog.sqlite3")
    ledger = AssociationLedger()
    completed: dict[str, float] = {}
    lock = threading.Lock()

    def on_complete(series_uid: str, _generation: int) -> None:
        with lock:
            completed[series_uid] = time.monotonic()

    grace = 0.2
    tracker = SeriesTracker(catalog, 60.0, on_complete, release_grace_s=grace,
                            is_carried=ledger.carries)
    tracker.start()
    try:
        # "a" and "b" in one association; "b" also in a second, still open; "c" announces 5
        # instances and has 2.
        for series, n, expected in (("1.8.1", 2, None), ("1.8.2", 2, None), ("1.8.3", 2, 5)):
            _record(catalog, series, n, expected)
            ledger.carry("first", series)
        ledger.carry("second", "1.8.2")
        start = time.monotonic()
        released = ledger.close("first")
        assert released == ["1.8.1", "1.8.3"]
        tracker.series_released(released)
        wait_for(lambda: "1.8.1" in completed, 20 * grace, interval=0.02)
        time.sleep(2 * grace)
        assert set(completed) == {"1.8.1"}
        assert completed["1.8.1"] - start >= grace * 0.9
        tracker.series_released(ledger.close("second"))
        wait_for(lambda: "1.8.2" in completed, 20 * grace, interval=0.02)
    finally:
        tracker.stop()
        catalog.close()
    assert "1.8.3" not in completed


def test_association_ledger_releases_a_series_with_its_last_association() -> None:
    from node.receive.associations import AssociationLedger

    ledger = AssociationLedger()
    ledger.carry(1, "s")
    ledger.carry(1, "s")
    ledger.carry(2, "s")
    ledger.carry(2, "t")
    assert ledger.open_associations() == 2
    assert ledger.close(1) == []
    assert ledger.carries("s")
    assert ledger.close(2) == ["s", "t"]
    assert not ledger.carries("s")
    assert ledger.close(2) == []  # closed twice (released, then connection closed)


def _store(catalog: Catalog, tracker: SeriesTracker, series: str, first: int, n: int,
           expected: int | None) -> None:
    for i in range(first, first + n):
        state = catalog.record_instance(InstanceRecord(
            f"{series}.{i}", series, "1.2.3", "1.2.840.10008.5.1.4.1.1.4", None,
            Path(f"/nonexistent/{series}.{i}.dcm"), 1, "SCANNER", "MR", None, expected,
        ))
        tracker.instance_stored(state)


def test_count_of_one_acquisition_does_not_complete_a_series_of_several(tmp_path: Path) -> None:
    """A series of three breath-hold acquisitions, each announcing its own 4 images: the count
    is reached after the first acquisition, but the next image within ``count_grace_s`` shows
    it was one acquisition's; the series completes once, with all 12, at its release."""
    from node.receive.associations import AssociationLedger

    catalog = Catalog(tmp_path / "catalog.sqlite3")
    ledger = AssociationLedger()
    completed: list[tuple[str, int, float]] = []

    def on_complete(series_uid: str, generation: int) -> None:
        completed.append((series_uid, generation, time.monotonic()))

    grace = 0.3
    tracker = SeriesTracker(catalog, 60.0, on_complete, release_grace_s=0.2,
                            is_carried=ledger.carries, count_grace_s=grace)
    tracker.start()
    try:
        ledger.carry("scanner", "1.7.1")
        for acquisition in range(3):
            _store(catalog, tracker, "1.7.1", 4 * acquisition + 1, 4, expected=4)
            time.sleep(grace / 6)  # the next acquisition follows well within the grace
        found = catalog.series_state("1.7.1")
        assert found is not None and CountState.of(found[1]) is CountState.OVERRUN
        time.sleep(2 * grace)
        assert completed == [], "completed by one acquisition's count"
        start = time.monotonic()
        tracker.series_released(ledger.close("scanner"))
        wait_for(lambda: completed, 20 * grace, interval=0.02)
        time.sleep(grace)
    finally:
        tracker.stop()
        found = catalog.series_state("1.7.1")
        catalog.close()
    assert [(uid, generation) for uid, generation, _ in completed] == [("1.7.1", 0)]
    assert completed[0][2] - start >= 0.2 * 0.9  # an overrun count completes like no count
    assert found is not None and found[1].instance_count == 12


def test_reached_count_completes_after_count_grace_or_at_release(tmp_path: Path) -> None:
    """The announced count arrived: complete ``count_grace_s`` after the last instance while
    the association stays open, and at the release itself (no release grace) when released."""
    from node.receive.associations import AssociationLedger

    catalog = Catalog(tmp_path / "catalog.sqlite3")
    ledger = AssociationLedger()
    completed: dict[str, float] = {}

    def on_complete(series_uid: str, _generation: int) -> None:
        completed[series_uid] = time.monotonic()

    grace = 0.4
    release_grace = 5.0
    tracker = SeriesTracker(catalog, 60.0, on_complete, release_grace_s=release_grace,
                            is_carried=ledger.carries, count_grace_s=grace)
    tracker.start()
    try:
        ledger.carry("open", "1.6.1")
        ledger.carry("released", "1.6.2")
        start = time.monotonic()
        _store(catalog, tracker, "1.6.1", 1, 3, expected=3)
        _store(catalog, tracker, "1.6.2", 1, 3, expected=3)
        released_at = time.monotonic()
        tracker.series_released(ledger.close("released"))
        wait_for(lambda: len(completed) == 2, 20 * grace, interval=0.02)
    finally:
        tracker.stop()
        catalog.close()
    assert completed["1.6.2"] - released_at < grace  # at the release, not after release_grace_s
    assert completed["1.6.1"] - start >= grace * 0.9  # after the count grace
    assert completed["1.6.1"] - start < release_grace
