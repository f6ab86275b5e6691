"""Time to result: from the last acknowledged instance of a T1 map series to its last output.

The node runs as its own process with one destination, a test PACS (``tests.netutil.PacsScp``)
in the benchmark's process. A run sends a 3-slice MOLLI T1 map series in one association,
releases it, and records the wall-clock time at which the node acknowledged the last
instance. The run ends when the PACS holds every object the node queued for the job (its
outbox rows); the time to result is the arrival of the last of them minus that
acknowledgement.

The first series after the node's start is sent once the node logged the end of its warm-up
(node.jobs.warmup), as a scanner's first series after a restart would arrive, and is reported
apart; the warm-up's own duration is reported too.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread

from bench.ingest import BenchError, Sender, StoreRun, send_timed
from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_lge import lge_series_datasets
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.lge import make_lge_stack
from models.phantoms.lge_scar import ISCHAEMIC_PATTERNS
from models.phantoms.t1map import make_t1map_stack
from tests.netutil import NodeProcess, PacsScp

logger = logging.getLogger(__name__)

LEVELS = ("basal", "mid", "apical")
FIELD_STRENGTH_T = 1.5
#: Objects the node sends per analysed T1 map series: SEG, SR, summary SR, summary image.
EXPECTED_OUTPUTS = 4
#: Bound on one run beyond the node's stable_age (analysis and delivery included).
RESULT_TIMEOUT_S = 180.0
#: Catalog polling interval (arrival times come from the PACS's own clock, not from polling).
POLL_S = 0.1
#: Job states after which a job does no more work.
FINAL_JOB_STATES = frozenset({"done", "failed", "superseded"})
#: Steps of a run, in the order they happen, timed from the acknowledgement of the last instance.
BREAKDOWN_STEPS = ("complete", "job_started", "job_finished", "delivered")
#: Order in which the node's job timings are reported (others follow alphabetically).
JOB_TIMING_ORDER = ("load_s", "analyse_s", "write_s", "total_s")


def _timing_order(key: str) -> tuple[int, str]:
    return (JOB_TIMING_ORDER.index(key) if key in JOB_TIMING_ORDER else len(JOB_TIMING_ORDER), key)


class Completeness(enum.StrEnum):
    """How the node learns that a series is complete."""

    #: ImagesInAcquisition in every header: complete when the last instance arrives.
    KNOWN = "known"
    #: No count in the headers: complete release_grace_s after the association's release
    #: (stable_age seconds without a new instance when the release signal is off).
    UNKNOWN = "unknown"


def write_t1map_study(seed: int, out_dir: Path, completeness: Completeness) -> list[Path]:
    """Write a synthetic 3-slice MOLLI T1 map series (Siemens-like, 1.5 T) to ``out_dir``.

    With :attr:`Completeness.UNKNOWN`, ImagesInAcquisition is removed from every instance.
    """
    rng = np.random.default_rng(seed)
    _, slices = make_t1map_stack(rng, field_strength_t=FIELD_STRENGTH_T, levels=LEVELS)
    datasets = t1map_series_datasets(
        slices,
        vendor="siemens",
        study=StudyInfo.synthetic(seed),  # UIDs derive from the study's seed: one per run
        field_strength_t=FIELD_STRENGTH_T,
        rng=rng,
    )
    if completeness is Completeness.UNKNOWN:
        for ds in datasets:
            if "ImagesInAcquisition" in ds:
                del ds.ImagesInAcquisition
    return list(write_series(datasets, out_dir))


LGE_SLICES = 12
"""Slices of the LGE stack of the LGE time-to-result benchmark (the issue's figure)."""


def write_lge_study(seed: int, out_dir: Path, n_slices: int = LGE_SLICES) -> list[Path]:
    """Write a synthetic short-axis PSIR LGE series (Siemens-like, 1.5 T, ischaemic scar).

    ImagesInAcquisition is set, so the node knows the series is complete at its last instance.
    """
    rng = np.random.default_rng(seed)
    pattern = ISCHAEMIC_PATTERNS[seed % len(ISCHAEMIC_PATTERNS)]
    _, slices = make_lge_stack(rng, n_slices=n_slices, field_strength_t=FIELD_STRENGTH_T,
                               scar_pattern=pattern)
    datasets = lge_series_datasets(slices, vendor="siemens", study=StudyInfo.synthetic(seed))
    for ds in datasets:
        ds.ImagesInAcquisition = len(datasets)
    return list(write_series(datasets, out_dir))


@dataclass
class ResultRun:
    """One time-to-result measurement.

    Attributes
    ----------
    case
        How completeness was known.
    series_instance_uid
        The input series.
    sent
        The timed send of the series.
    seconds
        Last instance acknowledged -> last output received by the PACS; None on error.
    outputs
        Objects received by the PACS per output kind (``seg``, ``sr``, ...).
    breakdown
        Seconds from the acknowledgement to: ``complete`` (series marked complete),
        ``job_started``, ``job_finished`` (outputs written and queued), ``delivered``.
    job_timings
        The node's own timings of the job (load, analyse, write, total).
    error
        Why the run has no time, if it has none.
    """

    case: Completeness
    series_instance_uid: str
    sent: StoreRun
    seconds: float | None = None
    outputs: dict[str, int] = field(default_factory=dict)
    breakdown: dict[str, float] = field(default_factory=dict)
    job_timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def output_count(self) -> int:
        """Objects received for this run."""
        return sum(self.outputs.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "case": str(self.case),
            "series_instance_uid": self.series_instance_uid,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "outputs": dict(self.outputs),
            "output_count": self.output_count,
            "breakdown_s": {k: round(v, 3) for k, v in self.breakdown.items()},
            "job_timings_s": {k: round(v, 3) for k, v in self.job_timings.items()},
            "send_s": round(self.sent.total_s, 3),
            "error": self.error,
        }


#: The node's log line at the end of its warm-up (node.jobs.warmup.warm_up_analyses).
WARMED_UP = re.compile(r"analyses warmed up in ([0-9.]+) s")


def wait_warmed_up(node: NodeProcess, timeout_s: float) -> float | None:
    """Wait for the node's warm-up to end; its duration (s) as logged, None after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = WARMED_UP.search(node.log_tail(1_000_000))
        if found:
            return float(found.group(1))
        time.sleep(POLL_S)
    logger.warning("node did not log the end of its warm-up within %.0f s", timeout_s)
    return None


def _wait_for_job(node: NodeProcess, series_uid: str, deadline: float) -> dict[str, Any]:
    """The series' latest job once it reached a final state (raises BenchError otherwise)."""
    while True:
        if node.proc is None or node.proc.poll() is not None:
            raise BenchError(f"node process ended: {node.log_tail(1000)}")
        rows = node.query(
            "SELECT id, state, started_at, finished_at, timings, error FROM jobs"
            " WHERE series_instance_uid=? ORDER BY id DESC LIMIT 1",
            (series_uid,),
        )
        if rows and rows[0]["state"] in FINAL_JOB_STATES:
            return dict(rows[0])
        if not rows:
            series = node.query(
                "SELECT state, route_reason FROM series WHERE series_instance_uid=?",
                (series_uid,),
            )
            if series and series[0]["state"] == "unrouted":
                raise BenchError(f"series not routed to an analysis: {series[0]['route_reason']}")
        if time.monotonic() > deadline:
            state = rows[0]["state"] if rows else "no job"
            raise BenchError(f"no finished job within the time limit (state: {state})")
        time.sleep(POLL_S)


def _wait_for_delivery(
    node: NodeProcess, pacs: PacsScp, job_id: int, deadline: float
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Outbox rows of a job once all are delivered, and the first arrival time of each UID."""
    while True:
        rows = [
            dict(r)
            for r in node.query(
                "SELECT sop_instance_uid, kind, state, sent_at, last_error FROM outbox"
                " WHERE job_id=?",
                (job_id,),
            )
        ]
        if not rows:
            raise BenchError(f"job {job_id} is done but queued no output")
        failed = [r for r in rows if r["state"] in ("failed", "superseded")]
        if failed:
            raise BenchError(f"delivery {failed[0]['state']}: {failed[0]['last_error']}")
        arrivals: dict[str, float] = {}
        for receipt in pacs.received():
            if receipt.sop_instance_uid not in arrivals:
                arrivals[receipt.sop_instance_uid] = receipt.at
        wanted = {r["sop_instance_uid"] for r in rows}
        if all(r["state"] == "sent" for r in rows) and wanted <= arrivals.keys():
            return rows, {uid: arrivals[uid] for uid in wanted}
        if time.monotonic() > deadline:
            raise BenchError(
                f"{len(wanted & arrivals.keys())} of {len(rows)} outputs arrived within the"
                " time limit"
            )
        time.sleep(POLL_S)


def measure_result(
    node: NodeProcess,
    pacs: PacsScp,
    paths: Sequence[Path],
    case: Completeness,
    *,
    timeout_s: float,
) -> ResultRun:
    """Send one series to the node and time its result at the PACS.

    Parameters
    ----------
    node
        The running node, with ``pacs`` as its only destination.
    pacs
        The running test PACS.
    paths
        The series' files.
    case
        How the series' completeness can be known (for the record).
    timeout_s
        Bound on the whole run after the send.

    Returns
    -------
    ResultRun
        With ``error`` set (and no time) when the node did not deliver in time.
    """
    series_uid = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    sent = send_timed(paths, node.port, node.ae_title, sender=Sender.PYNETDICOM, target="node")
    run = ResultRun(case, series_uid, sent)
    if sent.failures:
        run.error = f"{sent.failures} instances refused by the node"
        return run
    t_ack = sent.last_ack_at
    deadline = time.monotonic() + timeout_s
    try:
        job = _wait_for_job(node, series_uid, deadline)
        if job["state"] != "done":
            raise BenchError(f"job {job['id']} {job['state']}: {job['error']}")
        rows, arrivals = _wait_for_delivery(node, pacs, int(job["id"]), deadline)
    except BenchError as exc:
        run.error = str(exc)
        logger.warning("time-to-result run of %s: %s", series_uid, exc)
        return run
    last = max(arrivals.values())
    run.seconds = last - t_ack
    for row in rows:
        run.outputs[row["kind"]] = run.outputs.get(row["kind"], 0) + 1
    series = node.query(
        "SELECT completed_at FROM series WHERE series_instance_uid=?", (series_uid,)
    )
    if series and series[0]["completed_at"] is not None:
        run.breakdown["complete"] = float(series[0]["completed_at"]) - t_ack
    if job["started_at"] is not None:
        run.breakdown["job_started"] = float(job["started_at"]) - t_ack
    if job["finished_at"] is not None:
        run.breakdown["job_finished"] = float(job["finished_at"]) - t_ack
    run.breakdown["delivered"] = run.seconds
    if job["timings"]:
        run.job_timings = {k: float(v) for k, v in json.loads(job["timings"]).items()}
    if run.output_count != EXPECTED_OUTPUTS:
        logger.warning(
            "series %s: %d outputs delivered, %d expected",
            series_uid, run.output_count, EXPECTED_OUTPUTS,
        )  # fmt: skip
    logger.info(
        "time to result (%s) of %s: %.2f s, outputs %s", case, series_uid, run.seconds, run.outputs
    )
    return run


@dataclass
class LatencyResult:
    """All time-to-result runs of one benchmark."""

    stable_age_s: float
    cold: ResultRun | None = None
    warm_up_s: float | None = None
    runs: dict[Completeness, list[ResultRun]] = field(
        default_factory=lambda: {c: [] for c in Completeness}
    )

    def median(self, case: Completeness) -> float | None:
        """Median time to result of the successful runs of a case."""
        times = [r.seconds for r in self.runs[case] if r.seconds is not None]
        return statistics.median(times) if times else None

    def median_breakdown(self, case: Completeness) -> dict[str, float]:
        """Median of each breakdown step and job timing over the successful runs."""
        done = [r for r in self.runs[case] if r.seconds is not None]
        keys = [k for k in BREAKDOWN_STEPS if any(k in r.breakdown for r in done)]
        timing_keys = sorted({k for r in done for k in r.job_timings}, key=_timing_order)
        out = {k: statistics.median(r.breakdown[k] for r in done if k in r.breakdown) for k in keys}
        for key in timing_keys:
            out[f"job.{key}"] = statistics.median(
                r.job_timings[key] for r in done if key in r.job_timings
            )
        return out

    def first_excess(self) -> float | None:
        """First series after start minus the median of the others (completeness known)."""
        known = self.median(Completeness.KNOWN)
        if self.cold is None or self.cold.seconds is None or known is None:
            return None
        return self.cold.seconds - known

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        cases: dict[str, Any] = {}
        for case, runs in self.runs.items():
            median = self.median(case)
            entry: dict[str, Any] = {
                "median_s": None if median is None else round(median, 3),
                "successful_runs": sum(r.seconds is not None for r in runs),
                "median_breakdown_s": {
                    k: round(v, 3) for k, v in self.median_breakdown(case).items()
                },
                "runs": [r.as_dict() for r in runs],
            }
            if case is Completeness.UNKNOWN:
                entry["median_excess_over_stable_age_s"] = (
                    None if median is None else round(median - self.stable_age_s, 3)
                )
            cases[str(case)] = entry
        return {
            "stable_age_s": self.stable_age_s,
            "expected_outputs": EXPECTED_OUTPUTS,
            "warm_up_s": self.warm_up_s,
            "cold_first_run": None if self.cold is None else self.cold.as_dict(),
            "first_minus_median_known_s": self.first_excess(),
            "cases": cases,
        }


def measure_latency(
    node: NodeProcess,
    pacs: PacsScp,
    studies: Mapping[Completeness, Sequence[Sequence[Path]]],
    *,
    stable_age_s: float,
    cold: Sequence[Path] | None = None,
    into: LatencyResult | None = None,
) -> LatencyResult:
    """Run every time-to-result measurement, alternating the two cases.

    Parameters
    ----------
    node, pacs
        The running node and its destination.
    studies
        The series to send per case, one per run.
    stable_age_s
        The node's stable_age (bounds the waits, and is reported).
    cold
        A series with known completeness sent first, once the node's warm-up ended, reported
        apart: the node's first analysis after start.
    into
        Filled run by run (so an interrupted benchmark keeps the runs done); a new one if
        None.
    """
    result = into if into is not None else LatencyResult(stable_age_s)
    timeout = stable_age_s + RESULT_TIMEOUT_S
    if cold is not None:
        result.warm_up_s = wait_warmed_up(node, RESULT_TIMEOUT_S)
        result.cold = measure_result(node, pacs, cold, Completeness.KNOWN, timeout_s=timeout)
    count = max(len(v) for v in studies.values())
    for i in range(count):
        for case in Completeness:
            if i < len(studies.get(case, ())):
                run = measure_result(node, pacs, studies[case][i], case, timeout_s=timeout)
                result.runs[case].append(run)
    return result
