"""When a series counts as complete: announced count reached, or quiet long enough."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from node.catalog import Catalog, InstanceRecord
from node.tracker import INCOMPLETE_COUNT_FACTOR, SeriesTracker
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
