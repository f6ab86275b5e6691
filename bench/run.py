"""Run the node's benchmark once: ``python -m bench.run`` (``make bench``).

Measures the ingest rate of the node's listener beside dcmtk storescp and Orthanc, the time
from the last acknowledged instance of a T1 map series to the last output at PACS, and the
peak resident memory of the node processes. Prints a table and writes ``build/bench.json``.

Exit status: 0 when every figure was measured (whether or not it meets its target), 1 when a
part of the benchmark could not run (its error is in the table and the JSON file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from bench.ingest import (
    RATIO_PAIRS,
    SENDER_DESCRIPTIONS,
    BenchError,
    CheckoutNodeProcess,
    IngestResult,
    IngestTarget,
    OrthancNodeProcess,
    OrthancProcess,
    Sender,
    StorescpProcess,
    make_template,
    measure_ingest,
    write_instance_set,
)
from bench.latency import (
    EXPECTED_OUTPUTS,
    LGE_SLICES,
    RESULT_TIMEOUT_S,
    Completeness,
    LatencyResult,
    ResultRun,
    measure_latency,
    measure_result,
    wait_warmed_up,
    write_lge_study,
    write_t1map_study,
)
from tests.netutil import REPO, NodeProcess, PacsScp

logger = logging.getLogger(__name__)

SCHEMA = "cmr-node/bench/1"
DEFAULT_OUTPUT = REPO / "build" / "bench.json"
#: Targets from the issue.
TIME_TO_RESULT_TARGET_S = 1.5
"""3-slice T1 map, count in the headers (issue 16)."""
RELEASED_TIME_TO_RESULT_TARGET_S = 3.0
"""3-slice T1 map, no count in the headers, completed by the association's release."""
LGE_TIME_TO_RESULT_TARGET_S = 2.5
FIRST_SERIES_EXCESS_TARGET_S = 1.0
"""First series after start against the median of the others."""
PEAK_RSS_TARGET_BYTES = 10**9
#: Bound on starting a node process (imports of torch and the models included).
NODE_START_TIMEOUT_S = 180.0
#: stable_age of the ingest node: longer than the benchmark, so no series completes.
INGEST_STABLE_AGE_S = 3600.0
NO_ANALYSIS_CONFIG = "[analysis.t1map]\nenabled = false\n[analysis.lge]\nenabled = false\n"
WARMUP_INSTANCES = 10
SEED = 20240601


@dataclass(frozen=True)
class Target:
    """One target of the issue and whether this run meets it (None: not measured)."""

    name: str
    target: str
    value: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        """PASS, FAIL or n/a."""
        return "n/a" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "target": self.target, "value": self.value,
                "verdict": self.verdict}  # fmt: skip


def read_memory(pid: int) -> dict[str, int]:
    """Peak (VmHWM) and current (VmRSS) resident set size of a process, in bytes.

    Raises
    ------
    OSError
        When the process's status cannot be read (it has exited).
    """
    wanted = {"VmHWM": "peak_rss_bytes", "VmRSS": "rss_bytes"}
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            number, _, unit = value.strip().partition(" ")
            if unit.strip() != "kB":
                raise OSError(f"unexpected unit in /proc/{pid}/status: {line!r}")
            out[wanted[key]] = int(number) * 1024
    return out


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def _s(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _start_node(node: NodeProcess) -> None:
    """Start a node process with a fresh data folder and configuration (ports of this run)."""
    shutil.rmtree(node.workdir, ignore_errors=True)
    node.write_config()
    node.start(timeout=NODE_START_TIMEOUT_S)


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so every started process is cleaned up."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Benchmark:
    """One benchmark run: prepares data, runs the sections, keeps every figure and error.

    Parameters
    ----------
    workdir
        Scratch folder for instances, receivers' storage and node data.
    args
        Parsed command line.
    """

    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.sender = Sender(args.sender)
        self.ingest: IngestResult | None = None
        self.latency: LatencyResult | None = None
        self.lge_runs: list[ResultRun] = []
        self.molli_fit: dict[str, Any] | None = None
        self.radiomics_time: dict[str, Any] | None = None
        self.load: dict[str, Any] | None = None
        self.lge_cold: ResultRun | None = None
        self.lge_warm_up_s: float | None = None
        self.memory: dict[str, dict[str, int]] = {}
        self.errors: dict[str, str] = {}
        self.started = datetime.now(UTC)
        self.load_start = os.getloadavg()

    def section(self, name: str, body: Callable[[], None]) -> None:
        """Run one part; an exception is recorded (and logged) instead of ending the run."""
        t0 = time.perf_counter()
        try:
            body()
        except Exception as exc:
            logger.error("%s failed: %s", name, exc, exc_info=self.args.verbose)
            self.errors[name] = f"{type(exc).__name__}: {exc}"
        logger.info("%s took %.0f s", name, time.perf_counter() - t0)

    def record_memory(self, key: str, node: NodeProcess) -> None:
        """Keep a running node process's peak and current RSS (before it is stopped)."""
        if node.proc is None or node.proc.poll() is not None:
            logger.warning("%s: node process not running, no memory figure", key)
            return
        try:
            self.memory[key] = read_memory(node.proc.pid)
        except OSError as exc:
            logger.warning("%s: cannot read memory: %s", key, exc)

    # ------------------------------------------------------------------ ingest

    def run_ingest(self) -> None:
        """Ingest rate of the node, storescp and Orthanc (round-robin, same sender)."""
        args = self.args
        data = self.workdir / "ingest-data"
        template = make_template(np.random.default_rng(SEED))
        sets = [
            write_instance_set(template, args.instances, data / f"set-{i + 1}")
            for i in range(args.ingest_repeats)
        ]
        warmup = write_instance_set(template, WARMUP_INSTANCES, data / "warmup")
        concurrent_sets = {
            k: [
                [
                    write_instance_set(
                        template, args.concurrent_instances, data / f"k{k}-r{r + 1}-a{a + 1}"
                    )
                    for a in range(k)
                ]
                for r in range(args.ingest_repeats)
            ]
            for k in args.associations
            if k > 1
        }
        with contextlib.ExitStack() as stack:
            node = NodeProcess(
                self.workdir / "ingest-node",
                None,
                warm_up="rehearse",
                stable_age_s=INGEST_STABLE_AGE_S,
                extra_config=NO_ANALYSIS_CONFIG,
            )
            stack.callback(node.stop)
            _start_node(node)
            targets = [IngestTarget("node", node.port, node.ae_title)]
            if args.baseline_checkout is not None:
                baseline = CheckoutNodeProcess(
                    self.workdir / "ingest-node-baseline", None,
                    stable_age_s=INGEST_STABLE_AGE_S, extra_config=NO_ANALYSIS_CONFIG,
                    checkout=args.baseline_checkout.resolve(),
                )  # fmt: skip
                stack.callback(baseline.stop)
                _start_node(baseline)
                targets.append(IngestTarget("baseline", baseline.port, baseline.ae_title))
            for other in (
                StorescpProcess(self.workdir / "storescp"),
                OrthancProcess(self.workdir / "orthanc"),
                OrthancNodeProcess(self.workdir / "orthanc-node", node_settings=NO_ANALYSIS_CONFIG),
            ):
                stack.callback(other.stop)
                try:
                    other.start()
                except (BenchError, OSError) as exc:  # measure the others all the same
                    logger.error("%s not measured: %s", other.name, exc)
                    self.errors[f"ingest {other.name}"] = f"{type(exc).__name__}: {exc}"
                    continue
                targets.append(IngestTarget(other.name, other.port, other.ae_title))
            try:
                self.ingest = IngestResult(self.sender, args.instances, 0)
                measure_ingest(
                    targets, sets, warmup=warmup, into=self.ingest,
                    concurrent_sets=concurrent_sets,
                )  # fmt: skip
            finally:
                self.record_memory("ingest_node", node)

    # ------------------------------------------------------------------ time to result

    def run_latency(self) -> None:
        """Time to result with completeness known and unknown, and the node's peak RSS."""
        args = self.args
        data = self.workdir / "latency-data"
        studies: dict[Completeness, list[list[Path]]] = {c: [] for c in Completeness}
        seed = SEED + 1
        cold = write_t1map_study(seed, data / "cold", Completeness.KNOWN)
        for i in range(args.latency_runs):
            for case in Completeness:
                seed += 1
                studies[case].append(write_t1map_study(seed, data / f"{case}-{i + 1}", case))
        with contextlib.ExitStack() as stack:
            pacs = PacsScp(self.workdir / "pacs").start()
            stack.callback(pacs.stop)
            node = NodeProcess(
                self.workdir / "result-node", pacs.port, stable_age_s=args.stable_age,
                warm_up="rehearse",
            )
            stack.callback(node.stop)
            _start_node(node)
            try:
                self.latency = LatencyResult(args.stable_age)
                measure_latency(
                    node, pacs, studies, stable_age_s=args.stable_age, cold=cold,
                    into=self.latency,
                )  # fmt: skip
            finally:
                self.record_memory("result_node", node)
        for case in Completeness:
            if self.latency.median(case) is None:
                raise BenchError(f"no successful time-to-result run with completeness {case}")

    def run_lge_latency(self) -> None:
        """Time to result of 12-slice LGE series (completeness known from the headers)."""
        args = self.args
        data = self.workdir / "lge-data"
        seeds = [SEED + 100 + i for i in range(args.latency_runs + 1)]
        studies = [write_lge_study(seed, data / f"lge-{seed}") for seed in seeds]
        with contextlib.ExitStack() as stack:
            pacs = PacsScp(self.workdir / "lge-pacs").start()
            stack.callback(pacs.stop)
            node = NodeProcess(self.workdir / "lge-node", pacs.port, stable_age_s=args.stable_age,
                               warm_up="rehearse")
            stack.callback(node.stop)
            _start_node(node)
            timeout = args.stable_age + RESULT_TIMEOUT_S
            try:
                self.lge_warm_up_s = wait_warmed_up(node, RESULT_TIMEOUT_S)
                self.lge_cold = measure_result(node, pacs, studies[0], Completeness.KNOWN,
                                               timeout_s=timeout)
                for paths in studies[1:]:
                    self.lge_runs.append(
                        measure_result(node, pacs, paths, Completeness.KNOWN, timeout_s=timeout)
                    )
            finally:
                self.record_memory("lge_node", node)
        if self.lge_median() is None:
            raise BenchError("no successful LGE time-to-result run")

    def run_molli_fit(self) -> None:
        """Time of the MOLLI T1 fit of one 256 x 256 x 8 slice on one thread."""
        from bench.molli_fit import time_fit

        self.molli_fit = time_fit(7)

    def run_load(self) -> None:
        """8 concurrent associations, 2,000 instances: stored, analysed, delivered once."""
        from dataclasses import asdict

        from bench.load import run_load

        report = run_load(self.workdir / "load")
        self.load = asdict(report)
        if report.problems:
            raise BenchError("; ".join(report.problems))

    def run_radiomics_time(self) -> None:
        """Time to extract the 869 features of one T1-map slice, preprocessing included."""
        from bench.radiomics_time import time_extraction

        self.radiomics_time = time_extraction(5)

    def lge_median(self) -> float | None:
        """Median LGE time to result of the successful (warm) runs."""
        times = [r.seconds for r in self.lge_runs if r.seconds is not None]
        return statistics.median(times) if times else None

    # ------------------------------------------------------------------ report

    def targets(self) -> list[Target]:
        """The issue's targets against this run's figures."""
        out = []
        known = self.latency.median(Completeness.KNOWN) if self.latency else None
        out.append(Target(
            "time to result, completeness from headers (median)",
            f"<= {TIME_TO_RESULT_TARGET_S:.1f} s", _s(known, unit=" s"),
            None if known is None else known <= TIME_TO_RESULT_TARGET_S,
        ))  # fmt: skip
        unknown = self.latency.median(Completeness.UNKNOWN) if self.latency else None
        out.append(Target(
            "time to result, no count, association released (median)",
            f"<= {RELEASED_TIME_TO_RESULT_TARGET_S:.1f} s", _s(unknown, unit=" s"),
            None if unknown is None else unknown <= RELEASED_TIME_TO_RESULT_TARGET_S,
        ))  # fmt: skip
        first = self.latency.first_excess() if self.latency else None
        out.append(Target(
            "first T1 series after start minus the others' median",
            f"<= {FIRST_SERIES_EXCESS_TARGET_S:.1f} s", _s(first, unit=" s"),
            None if first is None else first <= FIRST_SERIES_EXCESS_TARGET_S,
        ))  # fmt: skip
        lge = self.lge_median()
        out.append(Target(
            f"LGE time to result, {LGE_SLICES} slices (median)",
            f"<= {LGE_TIME_TO_RESULT_TARGET_S:.1f} s", _s(lge, unit=" s"),
            None if lge is None else lge <= LGE_TIME_TO_RESULT_TARGET_S,
        ))  # fmt: skip
        lge_first = (None if lge is None or self.lge_cold is None or self.lge_cold.seconds is None
                     else self.lge_cold.seconds - lge)
        out.append(Target(
            "first LGE series after start minus the others' median",
            f"<= {FIRST_SERIES_EXCESS_TARGET_S:.1f} s", _s(lge_first, unit=" s"),
            None if lge_first is None else lge_first <= FIRST_SERIES_EXCESS_TARGET_S,
        ))  # fmt: skip
        fit = self.molli_fit
        out.append(Target(
            "MOLLI fit 256x256x8, every pixel, one thread (median)", "<= 1 s",
            "n/a" if fit is None else f"{fit['all_pixels']['median_s']:.2f} s",
            None if fit is None else bool(fit["passed"]),
        ))  # fmt: skip
        rt = self.radiomics_time
        out.append(Target(
            "T1 radiomics, 869 features of one slice incl. preprocessing (median)", "<= 1 s",
            "n/a" if rt is None else f"{rt['median_s']:.2f} s",
            None if rt is None else bool(rt["passed"]),
        ))  # fmt: skip
        node_rate = self.ingest.median_rate("node") if self.ingest else None
        orthanc_rate = self.ingest.median_rate("orthanc") if self.ingest else None
        out.append(Target(
            "node ingest rate (median)",
            f">= Orthanc's ({_s(orthanc_rate, 0, '/s')})",
            _s(node_rate, 0, "/s"),
            None if node_rate is None or orthanc_rate is None else node_rate >= orthanc_rate,
        ))  # fmt: skip
        peaks = [m["peak_rss_bytes"] for m in self.memory.values() if "peak_rss_bytes" in m]
        peak = max(peaks) if peaks else None
        out.append(Target(
            "peak RSS of the node (largest node process)",
            f"<= 1 GB ({_mb(PEAK_RSS_TARGET_BYTES)})",
            "n/a" if peak is None else _mb(peak),
            # Only meaningful once the node has analysed series (the result node).
            None if peak is None or "result_node" not in self.memory
            else peak <= PEAK_RSS_TARGET_BYTES,
        ))  # fmt: skip
        return out

    def report(self) -> dict[str, Any]:
        """Everything measured, as written to the JSON file."""
        return {
            "schema": SCHEMA,
            "started_at": self.started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_average_start": [round(x, 2) for x in self.load_start],
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            },
            "settings": {
                "sender": str(self.sender),
                "instances": self.args.instances,
                "ingest_repeats": self.args.ingest_repeats,
                "associations": self.args.associations,
                "concurrent_instances": self.args.concurrent_instances,
                "latency_runs": self.args.latency_runs,
                "stable_age_s": self.args.stable_age,
                "tcp_nodelay": "all sides (sender, node listener, storescp, Orthanc, test PACS)",
            },
            "ingest": None if self.ingest is None else self.ingest.as_dict(),
            "time_to_result": None if self.latency is None else self.latency.as_dict(),
            "lge_time_to_result": {
                "slices": LGE_SLICES,
                "median_s": self.lge_median(),
                "warm_up_s": self.lge_warm_up_s,
                "cold_first_run": None if self.lge_cold is None else self.lge_cold.as_dict(),
                "runs": [r.as_dict() for r in self.lge_runs],
            },
            "molli_fit": self.molli_fit,
            "radiomics_time": self.radiomics_time,
            "load": self.load,
            "memory": self.memory,
            "targets": [t.as_dict() for t in self.targets()],
            "errors": self.errors,
        }

    def table(self) -> str:
        """The human-readable report."""
        lines = [
            f"cmr-node benchmark, {self.started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs,"
            f" load average at start {self.load_start[0]:.2f}",
            "",
        ]
        if self.ingest is not None:
            ing = self.ingest
            lines += [
                f"Ingest: {ing.instances} MR instances of {ing.instance_bytes / 1000:.0f} kB in one"
                f" association, median of {self.args.ingest_repeats}",
                f"  sender: {SENDER_DESCRIPTIONS[ing.sender]}",
                f"  {'receiver':<12} {'median/s':>9}   runs (instances/s)",
            ]
            for name, runs in ing.runs.items():
                rates = ", ".join(f"{r.rate_per_s:.0f}" for r in runs)
                failures = sum(r.failures for r in runs)
                note = f"  ({failures} refused)" if failures else ""
                lines.append(
                    f"  {name:<12} {_s(ing.median_rate(name), 1):>9}   {rates}{note}"
                )
            lines += _ratio_line(ing, 1)
            for k, table in sorted(ing.concurrent.items()):
                lines += [
                    f"  {k} associations at once, {ing.instances_per_association} instances"
                    f" each ({k * ing.instances_per_association} per send):",
                ]
                for name, runs in table.items():
                    rates = ", ".join(f"{r.rate_per_s:.0f}" for r in runs)
                    failures = sum(r.failures for r in runs)
                    note = f"  ({failures} refused)" if failures else ""
                    lines.append(
                        f"  {name:<12} {_s(ing.median_rate(name, k), 1):>9}   {rates}{note}"
                    )
                lines += _ratio_line(ing, k)
            lines.append("")
        if self.latency is not None:
            lat = self.latency
            lines += [
                "Time to result: last instance acknowledged -> last output received by PACS"
                f" (3-slice T1 map; {EXPECTED_OUTPUTS} outputs expected), median of"
                f" {self.args.latency_runs}",
                f"  {'case':<34} {'median s':>8} {'min':>6} {'max':>6}  outputs  runs ok",
            ]
            for case, label in (
                (Completeness.KNOWN, "known from headers"),
                (Completeness.UNKNOWN, f"no count, released (stable_age {lat.stable_age_s:g})"),
            ):
                case_runs = lat.runs[case]
                times = [r.seconds for r in case_runs if r.seconds is not None]
                counts = sorted({r.output_count for r in case_runs if r.seconds is not None})
                lines.append(
                    f"  {label:<34} {_s(lat.median(case)):>8}"
                    f" {_s(min(times) if times else None):>6}"
                    f" {_s(max(times) if times else None):>6}"
                    f"  {'/'.join(map(str, counts)) or '-':>7}  {len(times)}/{len(case_runs)}"
                )
                steps = lat.median_breakdown(case)
                if steps:
                    lines.append(
                        "    median steps after the ack: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
                    )
                for r in case_runs:
                    if r.error:
                        lines.append(f"    run failed: {r.error}")
            if lat.cold is not None:
                cold = lat.cold
                lines.append(
                    f"  first run after node start (sent after the warm-up of"
                    f" {_s(lat.warm_up_s, unit=' s')}, not in the medians):"
                    f" {_s(cold.seconds, unit=' s')}" + (f" ({cold.error})" if cold.error else "")
                )
            lines.append("")
        if self.lge_runs:
            times = [r.seconds for r in self.lge_runs if r.seconds is not None]
            lines += [
                f"LGE time to result ({LGE_SLICES}-slice PSIR stack, completeness from headers):"
                f" median {_s(self.lge_median(), unit=' s')} of {len(times)}/{len(self.lge_runs)}"
                f" runs, min {_s(min(times) if times else None)}, max"
                f" {_s(max(times) if times else None)}",
            ]
            done = [r for r in self.lge_runs if r.seconds is not None]
            if done:
                keys = sorted({k for r in done for k in r.job_timings})
                medians = {
                    k: statistics.median(r.job_timings[k] for r in done if k in r.job_timings)
                    for k in keys
                }
                lines.append(
                    "  median job timings: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items())
                )
            for r in self.lge_runs:
                if r.error:
                    lines.append(f"  run failed: {r.error}")
            if self.lge_cold is not None:
                lines.append(f"  first LGE run after node start (after the warm-up of"
                             f" {_s(self.lge_warm_up_s, unit=' s')}):"
                             f" {_s(self.lge_cold.seconds, unit=' s')}")
            lines.append("")
        if self.memory:
            lines.append("Peak RSS (VmHWM, read before stopping each node process):")
            labels = {"ingest_node": "node used for ingest (analyses off)",
                      "result_node": "node used for time to result (analyses on)",
                      "lge_node": "node used for LGE time to result"}  # fmt: skip
            for key, mem in self.memory.items():
                lines.append(f"  {labels.get(key, key):<44} {_mb(mem['peak_rss_bytes'])}")
            lines.append("")
        lines.append(f"  {'target':<52} {'goal':<34} {'value':<12} verdict")
        for t in self.targets():
            lines.append(f"  {t.name:<52} {t.target:<34} {t.value:<12} {t.verdict}")
        if self.errors:
            lines += ["", "Errors:"] + [f"  {k}: {v}" for k, v in self.errors.items()]
        return "\n".join(lines)


def _ratio_line(ingest: IngestResult, associations: int) -> list[str]:
    """Rate ratios of each round (same load), as median and per round."""
    lines = []
    for target, reference in RATIO_PAIRS:
        ratios = ingest.ratios(target, reference, associations)
        if ratios:
            lines.append(
                f"  {target + '/' + reference:<16} {statistics.median(ratios):>5.2f}   "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + f"  (range {min(ratios):.2f}-{max(ratios):.2f}, each from one round)"
            )
    return lines


def _associations(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description="Benchmark the cmr-node on this machine."
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help="JSON report path")
    parser.add_argument("--instances", type=int, default=200, help="instances per ingest send")
    parser.add_argument("--ingest-repeats", type=int, default=3, help="sends per receiver")
    parser.add_argument(
        "--associations", type=_associations, default=[1, 4, 8],
        help="numbers of associations sending at once, comma-separated (default 1,4,8)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrent-instances", type=int, default=100,
        help="instances per association when several send at once",
    )  # fmt: skip
    parser.add_argument("--latency-runs", type=int, default=5, help="runs per completeness case")
    parser.add_argument(
        "--stable-age", type=float, default=30.0,
        help="stable_age_s of the node measured for time to result (s)",
    )  # fmt: skip
    parser.add_argument(
        "--sender", choices=[s.value for s in Sender], default=Sender.STORESCU.value,
        help="C-STORE SCU of the ingest measurement (time to result always uses pynetdicom)",
    )  # fmt: skip
    parser.add_argument(
        "--skip", action="append", default=[],
        choices=["ingest", "latency", "lge", "molli", "radiomics", "load"],
        help="leave out a part (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-checkout", type=Path,
        help="another checkout of the project whose node is measured beside this one's"
        " (target 'baseline', same rounds)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    if args.instances < 1 or args.ingest_repeats < 1 or args.latency_runs < 1:
        parser.error("--instances, --ingest-repeats and --latency-runs must be positive")
    if args.stable_age <= 0:
        parser.error("--stable-age must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Readiness probes log refused connections as errors; failures are reported by the bench.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    if args.workdir is not None:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="cmr-bench-"))
    bench = Benchmark(workdir, args)
    status = 0
    try:
        try:
            with _terminate_as_exit():
                if "ingest" not in args.skip:
                    bench.section("ingest", bench.run_ingest)
                if "latency" not in args.skip:
                    bench.section("time to result", bench.run_latency)
                if "load" not in args.skip:
                    bench.section("load", bench.run_load)
                if "radiomics" not in args.skip:
                    bench.section("T1 radiomics", bench.run_radiomics_time)
                if "molli" not in args.skip:
                    bench.section("MOLLI fit", bench.run_molli_fit)
                if "lge" not in args.skip:
                    bench.section("LGE time to result", bench.run_lge_latency)
        except (KeyboardInterrupt, SystemExit) as exc:  # processes are stopped by now
            status = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
            bench.errors["interrupted"] = f"stopped by {type(exc).__name__} before the end"
        report = bench.report()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(bench.table())
        print(f"\nwritten: {args.out}")
    finally:
        if bench.errors or args.keep or args.workdir is not None:
            print(f"scratch folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status or (1 if bench.errors else 0)


if __name__ == "__main__":
    sys.exit(main())
