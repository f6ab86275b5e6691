"""Analysis workers: take queued jobs from the catalog, run the pipeline, queue the outputs.

A job whose series cannot be analysed (``AnalysisError``: unsupported or implausible input)
fails at once with its reason; an unexpected error is retried with backoff up to
``max_job_attempts`` times. A job interrupted by a crash is put back in the queue at start.

Several processes may take jobs from one catalog (PostgreSQL: ``cmr-node run`` and any number
of ``cmr-node worker`` processes, on any machines sharing the data folder).  Each process has a
name (``host/name``, unique: held by an advisory lock while it runs); its threads claim jobs
as ``host/name#i`` and send a heartbeat for their running jobs every quarter lease.  A job whose
worker fell silent for ``job_lease_s`` and whose process is gone (killed, machine lost: its
catalog session, which holds the name, has closed) is queued again by any process, and the
silent worker's late result, if it ever comes, is discarded.  A live worker keeps its job when
its heartbeat is late (an analysis can hold the interpreter for seconds under CPU load), unless
it stays silent for ten leases (hung; :meth:`node.catalog.catalog.Catalog.requeue_stale`).

A job's options are assembled by :func:`node.analyses.assemble_options` from what the catalog
knows of its study (:meth:`WorkerPool.study_facts`: sidecar values, the study's LGE results,
its other series as companion candidates); which analyses a finished job queues again is
declared by each analysis (:mod:`node.analyses`).  A T1-map job writes its full radiomic
feature vector (``features.json``, ``features.csv``) next to its outputs.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydicom import dcmread

from node.analyses import StudyFacts, assemble_options, descriptor, requeues_after
from node.catalog.audit import withhold_values
from node.catalog.catalog import Catalog
from node.catalog.job_queue import Job
from node.inputs.companions import Candidate, CompanionSpec
from node.inputs.covariates import CovariateFolder, SuppliedCovariates, lge_results_covariates
from node.jobs.lineage import job_lineage
from node.jobs.pipeline import (
    result_summary,
    run_analysis,
    write_json,
    write_outputs,
    writer_settings,
)
from node.outputs.radiomics_export import write_series_features
from node.settings import Settings
from plugins.api import AnalysisError

logger = logging.getLogger(__name__)

RETRY_BASE_S = 5.0
IDLE_POLL_S = 1.0


class WorkerNameInUseError(RuntimeError):
    """Another live process holds this worker name on the shared catalog."""


class WorkerPool:
    """Threads that run analysis jobs.

    Parameters
    ----------
    settings
        Worker count, attempts, destinations, analysis options.
    catalog
        The job queue and outbox.
    on_outputs
        Called after a job queued outputs (wakes the sender).
    role
        This process's part of the worker name: ``node`` for ``cmr-node run``, the
        ``--name`` of ``cmr-node worker``.
    threads
        Worker threads (default: ``settings.worker_count``; 0: this process only watches
        the leases).
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        on_outputs: Callable[[], None],
        *,
        role: str = "node",
        threads: int | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._on_outputs = on_outputs
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread_count = settings.worker_count if threads is None else threads
        self._writer = writer_settings(settings.manufacturer, settings.institution_name,
                                       probability_seg=settings.probability_seg,
                                       uncertainty_map=settings.uncertainty_map)
        self.name = f"{settings.worker_name}/{role}"
        self._running: set[int] = set()
        self._running_lock = threading.Lock()
        self.jobs_done = 0

    def start(self, ready: threading.Event | None = None) -> None:
        """Hold the worker name, resume this worker's interrupted jobs, start the threads.

        Parameters
        ----------
        ready
            Set once the analyses are loaded (:mod:`node.jobs.warmup`); the threads claim
            no job before.  Warming up imports torch and loads weights, which holds the GIL
            for seconds at a time under CPU load (7 s measured at a load of 18): a job
            claimed meanwhile could not be heartbeated and would lose its lease to another
            worker although this one is alive.  None: claim at once.

        Raises
        ------
        WorkerNameInUseError
            When another live process holds the same name on the catalog.
        """
        if not self._catalog.register_worker(self.name):
            raise WorkerNameInUseError(
                f"worker name {self.name!r} is held by another running process on the catalog:"
                " give each process its own name (node.worker_name, cmr-node worker --name)"
            )
        # An SQLite catalog has this one process: whatever ran before was ours (whatever
        # the host was called then, e.g. a container restarted under a new host name).
        resumed = self._catalog.requeue_interrupted(
            None if self._catalog.engine == "sqlite" else self.name
        )
        if resumed:
            logger.info("re-queued %d jobs interrupted by the previous stop", resumed)
        for i in range(self._thread_count):
            thread = threading.Thread(
                target=self._loop, args=(f"{self.name}#{i}", ready), name=f"worker-{i}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        leases = threading.Thread(target=self._lease_loop, name="job-leases", daemon=True)
        leases.start()
        self._threads.append(leases)
        logger.info("worker %s: %d analysis threads on the %s catalog", self.name,
                    self._thread_count, self._catalog.engine)

    def wake(self) -> None:
        """Tell idle workers that a job was queued."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current jobs and stop."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads.clear()

    def _loop(self, worker: str, ready: threading.Event | None = None) -> None:
        while ready is not None and not ready.is_set() and not self._stop.is_set():
            ready.wait(IDLE_POLL_S)
        while not self._stop.is_set():
            try:
                job = self._catalog.claim_job(worker=worker)
            except Exception:  # catalog unreachable: the job queue waits, the thread lives
                logger.exception("worker %s: cannot claim a job; retrying", worker)
                self._stop.wait(IDLE_POLL_S)
                continue
            if job is None:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            with self._running_lock:
                self._running.add(job.id)
            try:
                self.run_job(job)
            except Exception:  # its result could not be recorded: the lease returns it
                logger.exception("job %d: result not recorded; the job is queued again"
                                 " once its lease expires", job.id)
            finally:
                with self._running_lock:
                    self._running.discard(job.id)

    def _lease_loop(self) -> None:
        """Heartbeat this process's running jobs; re-queue jobs of silent workers."""
        period = self._settings.job_lease_s / 4
        last = time.monotonic()
        while not self._stop.wait(period):
            try:
                with self._running_lock:
                    running = sorted(self._running)
                self._catalog.heartbeat(running, self.name)
                now = time.monotonic()
                if running and now - last > self._settings.job_lease_s / 2:
                    logger.warning("worker %s: heartbeat of jobs %s %.1f s after the previous"
                                   " one (lease %.0f s)", self.name, running, now - last,
                                   self._settings.job_lease_s)
                last = now
                requeued = self._catalog.requeue_stale(self._settings.job_lease_s)
            except Exception:
                logger.exception("worker %s: heartbeat failed; retrying", self.name)
                continue
            if requeued:
                logger.warning("jobs %s had a silent worker for %.0f s: queued again",
                               requeued, self._settings.job_lease_s)
                self._wake.set()

    def run_job(self, job: Job) -> None:
        """Run one claimed job to done, retry or failure."""
        started = time.perf_counter()
        logger.info(
            "job %d: %s of series %s (generation %d, attempt %d)",
            job.id,
            job.analysis,
            job.series_instance_uid,
            job.generation,
            job.attempts,
        )
        try:
            paths = self._catalog.instance_paths(job.series_instance_uid)
            options = assemble_options(
                job.analysis, self._settings.analysis_options.get(job.analysis, {}), paths,
                self.study_facts(job, paths),
            )
            run = run_analysis(paths, job.analysis, options, self._writer,
                               job_lineage(self._catalog, job))
            out_dir = self._settings.results_dir / job.series_instance_uid / f"job-{job.id}"
            files = write_outputs(run, out_dir)
            summary = result_summary(run, files)
            write_json(out_dir / "results.json", summary)
            self._export_features(job, summary, out_dir, run.result.extra.get("radiomics"))
            run.timings["total_s"] = time.perf_counter() - started
            destinations = [d.name for d in self._settings.destinations]
            queued = self._catalog.finish_job(
                job,
                files,
                destinations,
                result_dir=out_dir,
                timings=run.timings,
                summary=_short_summary(summary),
            )
        except AnalysisError as exc:
            logger.warning("job %d failed: %s", job.id, withhold_values(str(exc)))
            self._catalog.fail_job(job, f"cannot analyse: {exc}", retry_at=None)
            self._catalog.record_event("job_failed", job.series_instance_uid, str(exc))
            self._keep_previous(job)
            return
        except Exception as exc:
            logger.exception("job %d: unexpected error", job.id)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if job.attempts < self._settings.max_job_attempts:
                retry_at = time.time() + RETRY_BASE_S * 2 ** (job.attempts - 1)
                self._catalog.fail_job(job, f"attempt {job.attempts}: {detail}", retry_at)
            else:
                self._catalog.fail_job(job, f"gave up after {job.attempts}: {detail}", None)
                self._catalog.record_event("job_failed", job.series_instance_uid, detail)
                self._keep_previous(job)
            return
        if queued:
            self.jobs_done += 1
            logger.info("job %d done in %.2f s", job.id, time.perf_counter() - started)
            self._on_outputs()
            self.requeue_after(job, summary)
        else:
            logger.info("job %d superseded by a newer generation of its series", job.id)

    def _keep_previous(self, job: Job) -> None:
        """After a job failed for good: an older generation's result stays the current one
        (its outputs, delivered or not, are not superseded by a failure)."""
        kept = self._catalog.kept_result(job)
        if kept is not None:
            logger.info("job %d failed; job %d (generation %d) stays the result of series %s",
                        job.id, kept["id"], kept["generation"], job.series_instance_uid)

    def _export_features(
        self, job: Job, summary: dict[str, Any], out_dir: Path, block: Any
    ) -> None:
        """Write the research export of a T1 map's features; a failure only is logged."""
        try:
            write_series_features(summary, out_dir, block)
        except (OSError, ValueError) as exc:
            logger.warning("job %d: features not exported: %s", job.id, exc)
            self._catalog.record_event(
                "export_failed", job.series_instance_uid, f"features not exported: {exc}"
            )

    def study_facts(self, job: Job, paths: Sequence[Path]) -> StudyFacts:
        """What the catalog knows of a job's study, for its options (:mod:`node.analyses`).

        Supplied values come from the study's sidecar (by StudyInstanceUID, then
        AccessionNumber); LGE covariates from the latest done LGE job of the study;
        companion candidates from the study's other series (:meth:`candidates`).
        """
        study_uid = self._catalog.series_study(job.series_instance_uid)

        def report(kind: str, message: str) -> None:
            self._catalog.record_event(kind, job.series_instance_uid, message)

        return StudyFacts(
            study_uid=study_uid,
            accession=_accession_number(paths) if study_uid is not None else None,
            sources=(CovariateFolder(self._settings.covariates_folder),),
            lge_covariates=lambda: self._lge_covariates(study_uid),
            candidates=lambda specs: self.candidates(job, study_uid, specs),
            report=report,
        )

    def _lge_covariates(self, study_uid: str | None) -> SuppliedCovariates | None:
        """LVRR covariates from the latest done LGE job of the study that gives them."""
        if study_uid is None:
            return None
        for lge_job in self._catalog.study_jobs(study_uid, "lge"):
            path = results_file(lge_job.get("result_dir"))
            found = (lge_results_covariates(path, f"LGE analysis job {lge_job['id']}")
                     if path is not None else None)
            if found is not None:
                return found
        return None

    def candidates(
        self, job: Job, study_uid: str | None, specs: Sequence[CompanionSpec]
    ) -> list[Candidate]:
        """The study's other series that may fill ``specs`` (:mod:`node.inputs.companions`).

        For a role filled from routed series: the series routed to the analyses it names, in
        any job state (the newest job's creation orders them).  For a role filled by a
        header test (cine): every complete series of the study, routed or not.
        """
        if study_uid is None:
            return []
        candidates: dict[str, Candidate] = {}
        analyses = {a for spec in specs for a in spec.analyses}
        for analysis in sorted(analyses):
            for state in ("done", "running", "queued", "failed"):
                for row in self._catalog.study_jobs(study_uid, analysis, state):
                    uid = str(row["series_instance_uid"])
                    received = float(row.get("created_at") or 0.0)
                    known = candidates.get(uid)
                    if uid == job.series_instance_uid or (
                        known is not None and known.received >= received
                    ):
                        continue
                    candidates[uid] = Candidate(
                        uid, analysis, self._catalog.instance_paths(uid), received
                    )
        if any(spec.by_header for spec in specs):
            for row in self._catalog.query(
                "SELECT series_instance_uid, description, first_received FROM series"
                " WHERE study_instance_uid=? AND state IN ('unrouted', 'routed')",
                (study_uid,),
            ):
                uid = str(row["series_instance_uid"])
                if uid == job.series_instance_uid or uid in candidates:
                    continue
                candidates[uid] = Candidate(
                    uid, None, self._catalog.instance_paths(uid),
                    float(row["first_received"] or 0.0), str(row["description"] or ""),
                )
        return list(candidates.values())

    def requeue_after(self, job: Job, summary: Mapping[str, Any]) -> list[int]:
        """Queue again the study's analyses that use a finished job's results.

        Which ones is declared by each analysis (``requeues`` of its descriptor, e.g. the
        study's ECV after its native T1 map).  Returns the ids of the new jobs.
        """
        study_uid = self._catalog.series_study(job.series_instance_uid)
        if study_uid is None:
            return []
        requeued: list[int] = []
        for analysis, rule in requeues_after(job.analysis, summary):
            reason = rule.reason.format(job=job.id, series=job.series_instance_uid)
            ids = self._catalog.reanalyse_study(study_uid, analysis, reason, states=rule.states)
            if ids:
                logger.info("job %d: %s jobs %s of study %s queued again", job.id, analysis,
                            ids, study_uid)
            requeued += ids
        if requeued:
            self.wake()
        return requeued


def _accession_number(paths: Sequence[Path]) -> str | None:
    """AccessionNumber of a series (from its first readable instance header)."""
    for path in paths[:3]:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["AccessionNumber"])
        except Exception as exc:  # unreadable file: the analysis reports it
            logger.debug("no header in %s: %s", path, exc)
            continue
        value = str(ds.get("AccessionNumber", "") or "").strip()
        return value or None
    return None


#: QC severities from the mildest to the worst (plugins.api.Severity).
SEVERITY_ORDER = ("info", "warning", "failure")


def worst_flag(flags: Sequence[object]) -> str | None:
    """``code (severity)`` of the most severe QC flag (the first of equals), or None."""
    worst: tuple[int, str] | None = None
    for flag in flags:
        if not isinstance(flag, dict):
            continue
        severity = str(flag.get("severity", ""))
        rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else -1
        if worst is None or rank > worst[0]:
            worst = (rank, f"{flag.get('code')} ({severity})")
    return None if worst is None else worst[1]


def _short_summary(summary: dict[str, object]) -> dict[str, object]:
    """Numbers kept in the catalog for the status views: all global values, and the key
    numbers and worst QC flag the views show."""
    global_values = summary.get("global", {})
    values = {}
    if isinstance(global_values, dict):
        values = {k: v.get("value") for k, v in global_values.items() if isinstance(v, dict)}
    flags = summary.get("qc_flags", [])
    flags = flags if isinstance(flags, list) else []
    wanted = descriptor(str(summary.get("analysis", ""))).key_numbers
    return {
        "values": values,
        "key_numbers": {k: values[k] for k in wanted if k in values},
        "worst_flag": worst_flag(flags),
        "qc_flags": [f["code"] for f in flags if isinstance(f, dict)],
        "qc_failure": summary.get("qc_failure"),
        "outputs": summary.get("outputs"),
    }


def results_file(result_dir: str | None) -> Path | None:
    """Path of a job's results.json, if the job wrote one."""
    return Path(result_dir) / "results.json" if result_dir else None
