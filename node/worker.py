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
it stays silent for ten leases (hung; :meth:`node.catalog.Catalog.requeue_stale`).

A T1-map job gets its study's LVRR covariates (:mod:`node.covariates`) in its options and
writes its full radiomic feature vector (``features.json``, ``features.csv``) next to its
outputs.  When an LGE job of a study finishes, the study's analysed T1 maps are queued again
so that their LVRR probability uses the LGE values.

An analysis that needs other series of its study (ECV: the native T1 map) gets them as
``options["companions"]`` (:mod:`node.companions`), found among the study's series the
catalog routed; an ECV job also gets the study's haematocrit (sidecar or REST).  When a
native T1 map of a study is analysed, the study's ECV jobs that are done or failed (e.g. for
want of a native map) are queued again.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydicom import dcmread

from node.audit import withhold_values
from node.catalog import Catalog, Job
from node.companions import (
    Candidate,
    companion_options,
    needed_roles,
    needs_unrouted_candidates,
)
from node.covariates import (
    ECV_ANALYSIS,
    LGE_ANALYSIS,
    T1MAP_ANALYSIS,
    CovariateFolder,
    CovariatesError,
    analysis_covariate_options,
    haematocrit_options,
    lge_covariates,
    lge_results_covariates,
    merge_covariates,
)
from node.pipeline import result_summary, run_analysis, write_json, write_outputs, writer_settings
from node.radiomics_export import write_series_features
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
        self._writer = writer_settings(settings.manufacturer, settings.institution_name)
        self.name = f"{settings.worker_name}/{role}"
        self._running: set[int] = set()
        self._running_lock = threading.Lock()
        self.jobs_done = 0

    def start(self, ready: threading.Event | None = None) -> None:
        """Hold the worker name, resume this worker's interrupted jobs, start the threads.

        Parameters
        ----------
        ready
            Set once the analyses are warmed up (:func:`plugins.warm_up`); the threads claim
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
            options = self._settings.analysis_options.get(job.analysis, {})
            if job.analysis == T1MAP_ANALYSIS:
                options = {**options, **self.covariate_options(job, paths)}
            if job.analysis == ECV_ANALYSIS:
                options = {**options, **self.haematocrit_options(job, paths)}
            if needed_roles(job.analysis):
                options = {**options, **self.companion_options(job, paths)}
            run = run_analysis(paths, job.analysis, options, self._writer)
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
            if job.analysis == LGE_ANALYSIS and lge_covariates(summary):
                self.reanalyse_after_lge(job)
            if job.analysis == T1MAP_ANALYSIS:
                self.reanalyse_ecv(job)
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

    def covariate_options(self, job: Job, paths: Sequence[Path]) -> dict[str, Any]:
        """The LVRR covariates of a T1-map job's study, as plugin options.

        Explicit covariates come from the study's sidecar (by StudyInstanceUID, then
        AccessionNumber); the LGE values they lack come from the latest done LGE job of the
        same study.  An invalid sidecar is reported in the result (``covariates_error``).
        """
        study_uid = self._catalog.series_study(job.series_instance_uid)
        if study_uid is None:
            return {}
        folder = CovariateFolder(self._settings.covariates_folder)
        try:
            explicit = folder.lookup(study_uid, _accession_number(paths))
        except CovariatesError as exc:
            logger.warning("job %d: covariates of study %s refused: %s", job.id, study_uid, exc)
            self._catalog.record_event("covariates_invalid", job.series_instance_uid, str(exc))
            return {"covariates_error": str(exc), "covariates_source": "sidecar file"}
        lge = None
        for lge_job in self._catalog.study_jobs(study_uid, LGE_ANALYSIS):
            path = results_file(lge_job.get("result_dir"))
            if path is not None:
                lge = lge_results_covariates(path, f"LGE analysis job {lge_job['id']}")
            if lge is not None:
                break
        return analysis_covariate_options(merge_covariates(explicit, lge))

    def haematocrit_options(self, job: Job, paths: Sequence[Path]) -> dict[str, Any]:
        """The haematocrit of an ECV job's study from its sidecar, as plugin options.

        An invalid sidecar gives ``haematocrit_error`` (the plugin reports it); no sidecar or
        no haematocrit in it gives nothing (the configuration's value, if any, stays).
        """
        study_uid = self._catalog.series_study(job.series_instance_uid)
        if study_uid is None:
            return {}
        folder = CovariateFolder(self._settings.covariates_folder)
        try:
            supplied = folder.lookup(study_uid, _accession_number(paths))
        except CovariatesError as exc:
            logger.warning("job %d: haematocrit of study %s refused: %s", job.id, study_uid, exc)
            self._catalog.record_event("covariates_invalid", job.series_instance_uid, str(exc))
            return {"haematocrit_error": str(exc)}
        return haematocrit_options(supplied)

    def companion_options(self, job: Job, paths: Sequence[Path]) -> dict[str, Any]:
        """The companion series of a job (:mod:`node.companions`), as plugin options.

        Candidates are the study's other series routed to an analysis a role asks for, in
        any job state; the newest by job creation wins among those that fit.
        """
        study_uid = self._catalog.series_study(job.series_instance_uid)
        if study_uid is None:
            return {}
        candidates: dict[str, Candidate] = {}
        analyses = {a for spec in needed_roles(job.analysis) for a in spec.analyses}
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
        if needs_unrouted_candidates(job.analysis):
            # Roles such as the LGE's cine are filled from series the node does not analyse.
            for row in self._catalog.query(
                "SELECT series_instance_uid, description, first_received FROM series"
                " WHERE study_instance_uid=? AND state='unrouted'",
                (study_uid,),
            ):
                uid = str(row["series_instance_uid"])
                if uid == job.series_instance_uid or uid in candidates:
                    continue
                candidates[uid] = Candidate(
                    uid, None, self._catalog.instance_paths(uid),
                    float(row["first_received"] or 0.0), str(row["description"] or ""),
                )
        return companion_options(job.analysis, paths, list(candidates.values()))

    def reanalyse_ecv(self, job: Job) -> list[int]:
        """A native T1 map was analysed: analyse the study's post-contrast maps again.

        Returns the ids of the re-queued ECV jobs (done ones, which may now pair with a newer
        native map, and failed ones, which may have lacked one).
        """
        study_uid = self._catalog.series_study(job.series_instance_uid)
        if study_uid is None:
            return []
        reason = (
            f"native T1 map analysed (job {job.id}, series {job.series_instance_uid}): the "
            "ECV of the study's post-contrast maps uses it"
        )
        requeued = self._catalog.reanalyse_study(
            study_uid, ECV_ANALYSIS, reason, states=("done", "failed")
        )
        if requeued:
            logger.info("job %d: ECV jobs %s of study %s queued again", job.id, requeued,
                        study_uid)
            self.wake()
        return requeued

    def reanalyse_after_lge(self, job: Job) -> list[int]:
        """An LGE analysis with covariates finished: analyse the study's T1 maps again.

        Returns the ids of the re-queued T1-map jobs (none when the study's T1 maps are not
        analysed yet: they will read the LGE results when they run).
        """
        study_uid = self._catalog.series_study(job.series_instance_uid)
        if study_uid is None:
            return []
        reason = (
            f"LGE analysis (job {job.id}, series {job.series_instance_uid}) of the study "
            "finished after the T1 map was analysed: LVRR covariates from LGE now available"
        )
        requeued = self._catalog.reanalyse_study(study_uid, T1MAP_ANALYSIS, reason)
        if requeued:
            logger.info("job %d: T1-map jobs %s of study %s queued again", job.id, requeued,
                        study_uid)
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


#: The few numbers a reader of the status views looks for, per analysis (results.json keys of
#: the series' global measurements); the rest stays in results.json, the SR and `cmr-node
#: status --job`.
KEY_NUMBERS: dict[str, tuple[str, ...]] = {
    "t1map": ("global_myocardium_t1_mean_ms",),
    "molli": ("global_myocardium_t1_mean_ms",),
    "lge": ("scar_percent_lv_mass", "scar_mass_g"),
    "ecv": ("global_myocardium_ecv_percent",),
}
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
    wanted = KEY_NUMBERS.get(str(summary.get("analysis", "")), ())
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
