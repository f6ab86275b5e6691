"""Load under CPU starvation: 8 concurrent associations while two processes burn the CPU.

Starved of CPU, pynetdicom 3.0.4's requestor lost C-STORE responses (node.network.dimse,
docs/pynetdicom-send-c-store-race.md): an association stalls and its sender times out, in
most runs of this size on the two-core CI machine before the fix.  Every promise of
bench.load must hold, and no response may be lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import run_load

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

INSTANCES = 1600  # 8 associations x 200 instances
T1_SERIES = 1
BURNERS = 2
BURNER_NICE = 0
"""The burners compete with the node and the senders as equals (bench.load's soak uses 10)."""


def test_load_with_cpu_burners_loses_no_response(tmp_path: Path) -> None:
    report = run_load(tmp_path, n_instances=INSTANCES, n_associations=8,
                      n_t1_series=T1_SERIES, drain_timeout_s=300, burners=BURNERS,
                      burner_nice=BURNER_NICE)
    assert report.lost_responses == 0, report.problems
    assert report.problems == []
    assert report.stored_rows == report.spool_files == INSTANCES
    assert report.done_jobs == T1_SERIES
