"""Load: concurrent associations send a mixed workload; every promise is checked and timed.

``python -m bench.load`` sends 2,000 instances over 8 associations at once: many small
non-cardiac series (stored, recorded as not routed) and a few MOLLI T1 map series (analysed,
outputs sent to a test PACS). It then checks that every instance is stored once, every T1
series analysed once and every output delivered once, and prints the timings as JSON.
``--burners N`` runs N CPU-burning processes (at ``--burner-nice``) while it sends: CPU
starvation is what exposed pynetdicom's lost C-STORE responses (node.network.dimse).  The CI
variants are ``tests/hardening/test_load.py`` and ``tests/reliability/test_load_burners.py``.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydicom import dcmread

from tests.hardening.util import (
    OUTPUTS_PER_T1_SERIES,
    StreamResult,
    send_stream,
    sop_uid,
    spool_files,
    write_brain_series,
    write_t1_series,
)
from tests.netutil import NodeProcess, PacsScp, wait_for

logger = logging.getLogger(__name__)

DEFAULT_INSTANCES = 2000
DEFAULT_ASSOCIATIONS = 8
DEFAULT_T1_SERIES = 4
BRAIN_SERIES_SIZE = 40
DRAIN_TIMEOUT_S = 900.0
#: Longer than any gap between two instances of one series while 8 associations share the
#: node: a series whose count is known completes on its count, never on a pause (a pause
#: longer than ``stable_age_s`` completes it early and its late instances re-open it, so it
#: would be analysed again, by design).
STABLE_AGE_S = 120.0
#: A response not received within this long is lost (the node answers within milliseconds).
SENDER_DIMSE_TIMEOUT_S = 20.0
BURNER_NICE = 10
#: No response on any association for this long while sending is a stall: the node's and
#: the sender's threads are dumped once (node log, stderr) to show who waits for what.
STALL_DUMP_S = 5.0


@dataclass
class Workload:
    """Files to send and what the node must make of them."""

    paths: list[Path]
    t1_series: list[str]
    """Series Instance UIDs of the series the node must analyse."""


@dataclass
class LoadReport:
    """Figures and checks of one load run."""

    instances: int
    associations: int
    t1_series: int
    send_s: float
    instances_per_s: float
    drain_s: float
    stored_rows: int
    spool_files: int
    done_jobs: int
    outputs_received: int
    lost_responses: int = 0
    """Associations whose sender waited in vain for a C-STORE response."""
    stored_after_timeout: int = 0
    """Of ``lost_responses``: the instance is in the catalog, so the node answered (or was
    about to) after the sender's timeout: a late response, not a lost one."""
    stalls: int = 0
    """Times no association got a response for ``STALL_DUMP_S`` (threads dumped)."""
    burners: int = 0
    problems: list[str] = field(default_factory=list)


def _burn(niceness: int) -> None:  # pragma: no cover - runs in a child process
    os.nice(niceness)
    while True:
        pass


@contextmanager
def cpu_burners(count: int, niceness: int = BURNER_NICE) -> Iterator[None]:
    """``count`` processes that keep a core busy each, for the duration of the block."""
    context = multiprocessing.get_context("fork")  # the burners only spin
    procs = [context.Process(target=_burn, args=(niceness,), daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(timeout=10)


def _dump_threads(node: NodeProcess) -> None:
    """Stacks of every thread of the node (into its log, ``kill -USR2``) and of this process."""
    if node.proc is not None:
        node.proc.send_signal(signal.SIGUSR2)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def watch_for_stalls(
    results: Sequence[StreamResult], threads: Sequence[threading.Thread], node: NodeProcess
) -> int:
    """Until the senders end: dump threads whenever no response came for ``STALL_DUMP_S``.

    Returns the number of stalls seen.
    """
    stalls = 0
    last_count, last_change = -1, time.monotonic()
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        count = sum(len(r.statuses) for r in results)
        now = time.monotonic()
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change >= STALL_DUMP_S:
            stalls += 1
            logger.warning("no C-STORE response for %.0f s after %d: dumping threads",
                           STALL_DUMP_S, count)
            _dump_threads(node)
            last_change = float("inf")  # once per stall: re-armed by the next response
    return stalls


def send_concurrently(
    chunks: Sequence[Sequence[Path]],
    port: int,
    dimse_timeout: float = SENDER_DIMSE_TIMEOUT_S,
    node: NodeProcess | None = None,
) -> tuple[list[StreamResult], int]:
    """One association per chunk, all at once; returns each association's statuses and the
    number of stalls (with ``node``, threads are dumped at each, see :func:`watch_for_stalls`)."""
    results = [StreamResult() for _ in chunks]
    threads = [
        threading.Thread(
            target=send_stream,
            args=(chunk, port, result),
            kwargs={"dimse_timeout": dimse_timeout},
            daemon=True,
        )
        for chunk, result in zip(chunks, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    stalls = watch_for_stalls(results, threads, node) if node is not None else 0
    for thread in threads:
        thread.join(timeout=600)
    return results, stalls


def make_workload(
    folder: Path, n_instances: int, n_t1_series: int, seed: int = 2026
) -> Workload:
    """``n_instances`` files: ``n_t1_series`` T1 map series, the rest non-cardiac series."""
    paths: list[Path] = []
    t1_series: list[str] = []
    for k in range(n_t1_series):
        series = write_t1_series(folder, seed + 1000 + k)
        paths += series
        t1_series.append(str(dcmread(series[0], stop_before_pixels=True).SeriesInstanceUID))
    remaining = n_instances - len(paths)
    k = 0
    while remaining > 0:
        n = min(BRAIN_SERIES_SIZE, remaining)
        paths += write_brain_series(folder, seed + k, n)
        remaining -= n
        k += 1
    return Workload(paths, t1_series)


def split(paths: Sequence[Path], n: int, seed: int = 7) -> list[list[Path]]:
    """Shuffle and deal the files to ``n`` associations (a series spans several)."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    return [shuffled[i::n] for i in range(n)]


def check(
    node: NodeProcess, pacs: PacsScp, workload: Workload, results: Sequence[StreamResult]
) -> list[str]:
    """Every promise of the load test that does not hold, as text (empty: all hold)."""
    problems: list[str] = []
    for i, result in enumerate(results):
        bad = [(p.name, s) for p, s in result.statuses if s != 0]
        if result.error or bad or len(result.statuses) == 0:
            problems.append(f"association {i}: error={result.error} refused={bad[:5]}")
    sent = {sop_uid(p) for p in workload.paths}
    rows = [r["sop_instance_uid"] for r in node.query("SELECT sop_instance_uid FROM instances")]
    if Counter(rows) != Counter(sent):
        problems.append(f"catalog holds {len(rows)} rows for {len(sent)} sent instances")
    files = spool_files(node)
    if len(files) != len(sent):
        problems.append(f"spool holds {len(files)} files for {len(sent)} sent instances")
    jobs = node.query("SELECT series_instance_uid, state, attempts FROM jobs")
    per_series = Counter(j["series_instance_uid"] for j in jobs)
    for uid in workload.t1_series:
        if per_series[uid] != 1:
            problems.append(f"series {uid} has {per_series[uid]} jobs")
    if any(j["state"] != "done" for j in jobs) or set(per_series) - set(workload.t1_series):
        problems.append(f"jobs not as expected: {[dict(j) for j in jobs]}")
    counts = pacs.count_by_uid()
    duplicates = {u: n for u, n in counts.items() if n != 1}
    if duplicates:
        problems.append(f"delivered more than once: {duplicates}")
    outbox = node.query("SELECT sop_instance_uid, state FROM outbox")
    if any(r["state"] != "sent" for r in outbox):
        problems.append("outbox rows not sent")
    if {r["sop_instance_uid"] for r in outbox} != set(counts):
        problems.append("PACS holds other objects than the outbox sent")
    unrouted = node.query("SELECT COUNT(*) AS n FROM series WHERE state != 'routed'")[0]["n"]
    routed = node.query("SELECT COUNT(*) AS n FROM series WHERE state = 'routed'")[0]["n"]
    if routed != len(workload.t1_series):
        problems.append(f"{routed} series routed, {unrouted} not, expected "
                        f"{len(workload.t1_series)} routed")
    return problems


def stored_after_timeout(node: NodeProcess, results: Sequence[StreamResult]) -> int:
    """Associations whose unanswered instance the node nevertheless stored."""
    pending = [sop_uid(r.statuses[-1][0]) for r in results
               if r.error == "no response" and r.statuses]
    if not pending:
        return 0
    marks = ",".join("?" * len(pending))
    return int(node.query(
        f"SELECT COUNT(*) AS n FROM instances WHERE sop_instance_uid IN ({marks})",
        tuple(pending))[0]["n"])


def settled(node: NodeProcess, pacs: PacsScp, workload: Workload) -> bool:
    """True once every T1 job is done and every output acknowledged by the PACS."""
    done = node.query("SELECT COUNT(*) AS n FROM jobs WHERE state = 'done'")[0]["n"]
    busy = node.query(
        "SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running')"
    )[0]["n"]
    pending = node.query("SELECT COUNT(*) AS n FROM outbox WHERE state != 'sent'")[0]["n"]
    series = node.query("SELECT COUNT(*) AS n FROM series WHERE state = 'receiving'")[0]["n"]
    expected = OUTPUTS_PER_T1_SERIES * len(workload.t1_series)
    return (
        done >= len(workload.t1_series)
        and busy == 0
        and pending == 0
        and series == 0
        and len(pacs.count_by_uid()) >= expected
    )


def run_load(
    workdir: Path,
    n_instances: int = DEFAULT_INSTANCES,
    n_associations: int = DEFAULT_ASSOCIATIONS,
    n_t1_series: int = DEFAULT_T1_SERIES,
    drain_timeout_s: float = DRAIN_TIMEOUT_S,
    stable_age_s: float = STABLE_AGE_S,
    burners: int = 0,
    burner_nice: int = BURNER_NICE,
) -> LoadReport:
    """Run the load once in ``workdir``; return timings and every broken promise.

    ``burners`` CPU-burning processes run while the associations send.
    """
    workload = make_workload(workdir / "input", n_instances, n_t1_series)
    pacs = PacsScp(workdir / "pacs").start()
    node = NodeProcess(workdir / "node", pacs.port, stable_age_s=stable_age_s,
                       warm_up="rehearse").start(timeout=120)
    try:
        with cpu_burners(burners, burner_nice):
            started = time.monotonic()
            results, stalls = send_concurrently(
                split(workload.paths, n_associations), node.port, node=node
            )
            send_s = time.monotonic() - started
        if not any(r.error for r in results):  # else the workload never completes: report
            wait_for(lambda: settled(node, pacs, workload), drain_timeout_s, interval=0.5)
        drain_s = time.monotonic() - started
        time.sleep(1.0)  # a late duplicate would show now
        problems = check(node, pacs, workload, results)
        return LoadReport(
            instances=len(workload.paths),
            associations=n_associations,
            t1_series=n_t1_series,
            send_s=round(send_s, 2),
            instances_per_s=round(len(workload.paths) / send_s, 1),
            drain_s=round(drain_s, 2),
            stored_rows=node.query("SELECT COUNT(*) AS n FROM instances")[0]["n"],
            spool_files=len(spool_files(node)),
            done_jobs=node.query("SELECT COUNT(*) AS n FROM jobs WHERE state='done'")[0]["n"],
            outputs_received=len(pacs.received()),
            lost_responses=sum(1 for r in results if r.error == "no response"),
            stored_after_timeout=stored_after_timeout(node, results),
            stalls=stalls,
            burners=burners,
            problems=problems,
        )
    finally:
        node.stop()
        pacs.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the full load and print its report as JSON; exit 1 when a promise is broken."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--instances", type=int, default=DEFAULT_INSTANCES)
    parser.add_argument("--associations", type=int, default=DEFAULT_ASSOCIATIONS)
    parser.add_argument("--t1-series", type=int, default=DEFAULT_T1_SERIES)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--burners", type=int, default=0,
                        help="CPU-burning processes while sending (default 0)")
    parser.add_argument("--burner-nice", type=int, default=BURNER_NICE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="cmr-load-") as tmp:
        workdir = args.workdir or Path(tmp)
        report = run_load(workdir, args.instances, args.associations, args.t1_series,
                          burners=args.burners, burner_nice=args.burner_nice)
    print(json.dumps(asdict(report), indent=2))
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
