"""Memory: resident set size of the node process over a long stream of analysed series.

``python -m bench.memory`` starts the node as its own process, sends MOLLI T1 map series one
after another (30 by default), waits after each until its outputs are at the test PACS, and
samples the node's RSS. It prints the samples and start, max, end and slope per series, the
slope over all series and over the steady state (after the warm-up series, when models and
caches are loaded), as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tests.hardening.util import OUTPUTS_PER_T1_SERIES, write_t1_series
from tests.netutil import NodeProcess, PacsScp, wait_for

logger = logging.getLogger(__name__)

DEFAULT_SERIES = 30
WARM_UP_SERIES = 5
SERIES_TIMEOUT_S = 300.0
PAGE_KB = 1024
#: Seeds FIRST_SEED ... FIRST_SEED + 473 all give a valid synthetic study
#: (``StudyInfo.synthetic`` fails for a few seeds whose study day is 29 February).
FIRST_SEED = 7100


@dataclass
class MemoryReport:
    """RSS of the node process, in MiB, sampled after each series."""

    series: int
    start_mib: float
    """After start, before the first series."""
    max_mib: float
    end_mib: float
    slope_mib_per_series: float
    """Least-squares slope over all series."""
    steady_slope_mib_per_series: float
    """Least-squares slope after the first ``WARM_UP_SERIES`` series."""
    seconds_per_series: float
    samples_mib: list[float]


def rss_mib(pid: int) -> float:
    """Resident set size of a process (Linux ``/proc``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / PAGE_KB
    raise RuntimeError(f"no VmRSS for process {pid}")


def _slope(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    x = np.arange(len(values), dtype=float)
    return float(np.polyfit(x, np.asarray(values, dtype=float), 1)[0])


def _idle(node: NodeProcess) -> bool:
    busy = node.query("SELECT 1 FROM jobs WHERE state IN ('queued', 'running')")
    pending = node.query("SELECT 1 FROM outbox WHERE state != 'sent'")
    receiving = node.query("SELECT 1 FROM series WHERE state = 'receiving'")
    return not (busy or pending or receiving)


def run_memory(workdir: Path, n_series: int = DEFAULT_SERIES) -> MemoryReport:
    """Stream ``n_series`` T1 map series through a node process; sample its RSS."""
    from tests.netutil import send_files

    pacs = PacsScp(workdir / "pacs").start()
    node = NodeProcess(workdir / "node", pacs.port, stable_age_s=2.0,
                       warm_up="rehearse").start(timeout=120)
    assert node.proc is not None
    pid = node.proc.pid
    try:
        start = rss_mib(pid)
        samples: list[float] = []
        started = time.monotonic()
        for k in range(n_series):
            paths = write_t1_series(workdir / "input", seed=FIRST_SEED + k)
            statuses = send_files(paths, node.port)
            if statuses != [0] * len(paths):
                raise RuntimeError(f"series {k}: statuses {statuses}")
            expected = OUTPUTS_PER_T1_SERIES * (k + 1)
            wait_for(
                lambda e=expected: len(pacs.count_by_uid()) >= e and _idle(node),  # type: ignore[misc]
                SERIES_TIMEOUT_S,
                interval=0.2,
            )
            samples.append(rss_mib(pid))
            logger.info("series %d: RSS %.1f MiB", k + 1, samples[-1])
        elapsed = time.monotonic() - started
        return MemoryReport(
            series=n_series,
            start_mib=round(start, 1),
            max_mib=round(max(samples), 1),
            end_mib=round(samples[-1], 1),
            slope_mib_per_series=round(_slope(samples), 3),
            steady_slope_mib_per_series=round(_slope(samples[WARM_UP_SERIES:]), 3),
            seconds_per_series=round(elapsed / n_series, 2),
            samples_mib=[round(s, 1) for s in samples],
        )
    finally:
        node.stop()
        pacs.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the memory stream and print its report as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--series", type=int, default=DEFAULT_SERIES)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cmr-memory-") as tmp:
        report = run_memory(args.workdir or Path(tmp), args.series)
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
