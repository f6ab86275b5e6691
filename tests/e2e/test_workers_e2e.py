"""Two worker processes share one durable queue on PostgreSQL, without double-processing.

The node (listener, tracker, router, sender; ``worker_count = 0``) and two ``cmr-node worker``
processes run as separate processes on one PostgreSQL catalog (Debian's server, a fresh
cluster).  Series are sent over real associations; a test SCP stands in for PACS.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from tests.netutil import NodeProcess, PacsScp, WorkerProcess, send_files, wait_for
from tests.pgutil import PostgresServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
LEASE_S = 6.0
"""Short job lease so that the killed worker's job is taken over within seconds."""
RESULT_TIMEOUT_S = 180.0
SERIES_AT_ONCE = 4
"""Series queued together: more than the two workers, so both take jobs while others wait."""


def _t1_series(tmp: Path, seed: int, levels: tuple[str, ...]) -> list[Path]:
    rng = np.random.default_rng(seed)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, levels=levels, heart=heart)
    datasets = t1map_series_datasets(
        slices, vendor="siemens", field_strength_t=1.5, rng=rng, study=StudyInfo.synthetic(seed)
    )
    return write_series(datasets, tmp / f"series-{seed}")


def test_two_workers_share_the_queue_and_take_over_a_killed_workers_job(
    tmp_path: Path, pacs: PacsScp, postgres: PostgresServer
) -> None:
    url = postgres.create_database()

    def rows(sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(url, row_factory=dict_row) as conn:
            return conn.execute(sql, params).fetchall()

    node = NodeProcess(
        tmp_path / "node", pacs.port, stable_age_s=1.0, node_config="worker_count = 0",
        warm_up="load",  # the workers read this file: they claim jobs once loaded
        extra_config=f'[catalog]\nurl = "{url}"\njob_lease_s = {LEASE_S}\n',
    ).start()
    workers = [WorkerProcess(node.config_path, name) for name in ("w1", "w2")]
    try:
        with ThreadPoolExecutor(len(workers)) as pool:  # each start takes seconds of imports
            list(pool.map(WorkerProcess.start, workers))
        duplicate = WorkerProcess(node.config_path, "w1")
        with duplicate.log.open("ab") as out:
            refused = subprocess.Popen(  # waited for after the first series
                [sys.executable, "-m", "node", "worker", "--config", str(node.config_path),
                 "--name", "w1"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            )

        # 1. Several series at once: every series analysed once, by both workers.
        series = [_t1_series(tmp_path, 7100 + i, ("basal", "mid", "apical"))
                  for i in range(SERIES_AT_ONCE)]
        for paths in series:
            assert send_files(paths, node.port) == [0, 0, 0]
        wait_for(lambda: len(rows("SELECT 1 FROM jobs WHERE state='done'")) == SERIES_AT_ONCE,
                 RESULT_TIMEOUT_S, interval=0.5)
        assert refused.wait(timeout=120) == 3, "a second process named w1 must be refused"
        jobs = rows("SELECT series_instance_uid, state, attempts, worker FROM jobs")
        assert len(jobs) == SERIES_AT_ONCE
        assert len({j["series_instance_uid"] for j in jobs}) == SERIES_AT_ONCE
        assert all(j["attempts"] == 1 for j in jobs), jobs
        by_worker = {j["worker"] for j in jobs}
        assert by_worker == {f"{HOST}/w1#0", f"{HOST}/w2#0"}, "both workers must take jobs"
        wait_for(lambda: not rows("SELECT 1 FROM outbox WHERE state != 'sent'"),
                 RESULT_TIMEOUT_S, interval=0.5)
        outputs = rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        wait_for(lambda: len(pacs.received()) >= outputs, 30)
        assert all(n == 1 for n in pacs.count_by_uid().values()), "an output arrived twice"
        assert len(pacs.count_by_uid()) == outputs

        # 2. A worker killed mid-job: its job is taken over by the other one after the lease.
        # (Killed as soon as it runs: a few slices make a job long enough.)
        long_series = _t1_series(tmp_path, 7200, ("basal",) * 2 + ("mid",) * 2 + ("apical",) * 2)
        assert send_files(long_series, node.port) == [0] * 6
        running = wait_for(
            lambda: rows("SELECT id, worker FROM jobs WHERE state='running'"), 60, interval=0.02
        )
        [job] = running
        victim = next(w for w in workers if job["worker"].startswith(f"{HOST}/{w.name}#"))
        survivor = next(w for w in workers if w is not victim)
        victim.kill()
        wait_for(lambda: rows("SELECT 1 FROM jobs WHERE id=%s AND state='done'", (job["id"],)),
                 RESULT_TIMEOUT_S, interval=0.5)
        [done] = rows("SELECT attempts, worker FROM jobs WHERE id=%s", (job["id"],))
        assert done["attempts"] == 2 and done["worker"] == f"{HOST}/{survivor.name}#0"
        requeued = rows("SELECT message FROM events WHERE kind='job_requeued'")
        assert [e["message"].split(":")[0] for e in requeued] == [f"job {job['id']}"]
        wait_for(lambda: not rows("SELECT 1 FROM outbox WHERE state != 'sent'"),
                 RESULT_TIMEOUT_S, interval=0.5)
        total = rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        wait_for(lambda: len(pacs.received()) >= total, 30)
        assert all(n == 1 for n in pacs.count_by_uid().values()), "an output arrived twice"
        assert len(pacs.count_by_uid()) == total
        assert rows("SELECT COUNT(*) AS n FROM jobs")[0]["n"] == SERIES_AT_ONCE + 1
    finally:
        for worker in workers:
            worker.stop()
        node.stop()
