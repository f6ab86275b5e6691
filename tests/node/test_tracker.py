"""When a series counts as complete: announced count reached, or quiet long enough."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from node.catalog.catalog import Catalog
from node.catalog.series import InstanceRecord
from node.completion.tracker import INCOMPLETE_COUNT_FACTOR, SeriesTracker
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
    # Count reached: at once; no count: after stable_age; count announced but not reached:
    # only after INCOMPLETE_COUNT_FACTOR x stable_age.
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
