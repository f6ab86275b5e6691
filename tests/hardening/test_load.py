"""Load: 8 concurrent associations, mixed studies; every promise kept (CI size of bench.load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import run_load

pytestmark = pytest.mark.e2e

CI_INSTANCES = 400  # 8 associations x 50 instances
CI_T1_SERIES = 2


def test_concurrent_mixed_load_stores_analyses_and_delivers_once(tmp_path: Path) -> None:
    report = run_load(tmp_path, n_instances=CI_INSTANCES, n_associations=8,
                      n_t1_series=CI_T1_SERIES, drain_timeout_s=180)
    assert report.problems == []
    assert report.instances == CI_INSTANCES
    assert report.stored_rows == report.spool_files == CI_INSTANCES
    assert report.done_jobs == CI_T1_SERIES
