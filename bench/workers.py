"""Throughput of one and of two ``cmr-node worker`` processes on a shared PostgreSQL catalog.

For each worker count: a fresh PostgreSQL database, the node (``--workers 0`` equivalent:
``worker_count = 0``) and that many worker processes; the same T1-map series (3 slices,
complete from their headers) are sent at once over one association each, and the clock runs
from the first C-STORE to the test PACS acknowledging the last output.  Reported: wall time,
series per minute, jobs per worker, and whether any series was analysed or delivered twice.
Torch threads per worker: cores / workers (2 cores: 2 threads for one worker, 1 for two).

    python -m bench.workers [--series 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from tests.netutil import NodeProcess, PacsScp, WorkerProcess, send_files, wait_for
from tests.pgutil import PostgresServer

logger = logging.getLogger(__name__)

SEED = 8100
TIMEOUT_S = 900.0


def _series(folder: Path, count: int) -> list[list[Path]]:
    out = []
    for i in range(count):
        rng = np.random.default_rng(SEED + i)
        heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
        _, slices = make_t1map_stack(rng, field_strength_t=1.5,
                                     levels=("basal", "mid", "apical"), heart=heart)
        datasets = t1map_series_datasets(slices, vendor="siemens", field_strength_t=1.5,
                                         rng=rng, study=StudyInfo.synthetic(SEED + i))
        out.append(write_series(datasets, folder / f"series-{i}"))
    return out


def run_once(workdir: Path, server: PostgresServer, series: list[list[Path]],
             workers: int) -> dict[str, Any]:
    """One timed run with ``workers`` worker processes."""
    url = server.create_database()

    def rows(sql: str) -> list[dict[str, Any]]:
        with psycopg.connect(url, row_factory=dict_row) as conn:
            return conn.execute(sql).fetchall()

    pacs = PacsScp(workdir / "pacs").start()
    node = NodeProcess(workdir / "node", pacs.port, stable_age_s=5.0,
                       node_config="worker_count = 0", warm_up="rehearse",
                       extra_config=f'[catalog]\nurl = "{url}"\n').start()
    threads = str(max(1, (os.cpu_count() or 2) // workers))
    procs = [WorkerProcess(node.config_path, f"w{i + 1}") for i in range(workers)]
    try:
        for proc in procs:
            proc.start(env={"OMP_NUM_THREADS": threads})
        time.sleep(5.0)  # the workers load their networks (warm-up) before the clock starts
        started = time.perf_counter()
        for paths in series:
            statuses = send_files(paths, node.port)
            if statuses != [0] * len(paths):
                raise RuntimeError(f"C-STORE failed: {statuses}")
        wait_for(lambda: len(rows("SELECT 1 FROM jobs WHERE state='done'")) == len(series),
                 TIMEOUT_S, interval=0.2)
        wait_for(lambda: not rows("SELECT 1 FROM outbox WHERE state != 'sent'"),
                 TIMEOUT_S, interval=0.2)
        elapsed = time.perf_counter() - started
        jobs = rows("SELECT worker, attempts FROM jobs")
        outputs = rows("SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        received = pacs.count_by_uid()
        return {
            "workers": workers,
            "torch_threads_per_worker": int(threads),
            "series": len(series),
            "wall_s": round(elapsed, 2),
            "series_per_min": round(60.0 * len(series) / elapsed, 1),
            "jobs_per_worker": dict(Counter(str(j["worker"]).split("#")[0] for j in jobs)),
            "jobs_with_more_than_one_attempt": sum(1 for j in jobs if j["attempts"] != 1),
            "outputs": outputs,
            "outputs_received_twice": sum(1 for n in received.values() if n > 1),
            "outputs_missing": outputs - len(received),
        }
    finally:
        for proc in procs:
            proc.stop()
        node.stop()
        pacs.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = PostgresServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="cmr-bench-workers-") as tmp:
            root = Path(tmp)
            series = _series(root / "input", args.series)
            results = [run_once(root / f"run-{n}", server, series, n) for n in (1, 2)]
    finally:
        server.stop()
    speedup = results[0]["wall_s"] / results[1]["wall_s"]
    report = {"runs": results, "speedup_two_workers": round(speedup, 2)}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
