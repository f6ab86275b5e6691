"""A worker takes no job before its analyses are warmed up (the job's lease depends on it)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from node.catalog.catalog import Catalog
from node.catalog.series import InstanceRecord
from node.jobs.worker import IDLE_POLL_S, WorkerPool
from node.settings import Settings
from tests.netutil import wait_for

SERIES = "1.2.826.0.1.3680043.8.498.1"
STUDY = "1.2.826.0.1.3680043.8.498.2"


def _job_attempts(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT attempts FROM jobs").fetchone()[0])
    finally:
        conn.close()


def test_a_worker_claims_no_job_before_its_analyses_are_warmed_up(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite3"
    catalog = Catalog(path)
    catalog.record_instance(InstanceRecord(
        f"{SERIES}.1", SERIES, STUDY, "1.2.840.10008.5.1.4.1.1.4", None,
        tmp_path / "missing.dcm", 10, "SCANNER", "MR", "t1map", 1,
    ))
    assert catalog.complete_series(SERIES, 0)
    catalog.route_series(SERIES, 0, ["t1map"], "test")
    warmed_up = threading.Event()
    pool = WorkerPool(Settings(data_dir=tmp_path), catalog, on_outputs=lambda: None)
    pool.start(ready=warmed_up)
    try:
        pool.wake()
        time.sleep(2 * IDLE_POLL_S)  # two polls of an idle worker
        assert _job_attempts(path) == 0
        warmed_up.set()
        wait_for(lambda: _job_attempts(path) >= 1, timeout=30)
    finally:
        pool.stop()
        catalog.close()
