"""Analysis workers: take queued jobs from the catalog, run the pipeline, queue the outputs.

A job whose series cannot be analysed (``AnalysisError``: unsupported or implausible input)
fails at once with its reason; an unexpected error is retried with backoff up to
``max_job_attempts`` times. A job interrupted by a crash is put back in the queue at start.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from node.catalog import Catalog, Job
from node.pipeline import result_summary, run_analysis, write_json, write_outputs, writer_settings
from node.settings import Settings
from plugins.api import AnalysisError

logger = logging.getLogger(__name__)

RETRY_BASE_S = 5.0
IDLE_POLL_S = 1.0


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
    """

    def __init__(
        self, settings: Settings, catalog: Catalog, on_outputs: Callable[[], None]
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._on_outputs = on_outputs
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._writer = writer_settings(settings.manufacturer, settings.institution_name)

    def start(self) -> None:
        """Resume interrupted jobs and start the worker threads."""
        resumed = self._catalog.requeue_interrupted()
        if resumed:
            logger.info("re-queued %d jobs interrupted by the previous stop", resumed)
        for i in range(self._settings.worker_count):
            thread = threading.Thread(target=self._loop, name=f"worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

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

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self._catalog.claim_job()
            if job is None:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            self.run_job(job)

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
            run = run_analysis(paths, job.analysis, options, self._writer)
            out_dir = self._settings.results_dir / job.series_instance_uid / f"job-{job.id}"
            files = write_outputs(run, out_dir)
            summary = result_summary(run, files)
            write_json(out_dir / "results.json", summary)
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
            logger.warning("job %d failed: %s", job.id, exc)
            self._catalog.fail_job(job, f"cannot analyse: {exc}", retry_at=None)
            self._catalog.record_event("job_failed", job.series_instance_uid, str(exc))
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
            return
        if queued:
            logger.info("job %d done in %.2f s", job.id, time.perf_counter() - started)
            self._on_outputs()
        else:
            logger.info("job %d superseded by a newer generation of its series", job.id)


def _short_summary(summary: dict[str, object]) -> dict[str, object]:
    """Key numbers kept in the catalog for the status views."""
    global_values = summary.get("global", {})
    values = {}
    if isinstance(global_values, dict):
        values = {k: v.get("value") for k, v in global_values.items() if isinstance(v, dict)}
    flags = summary.get("qc_flags", [])
    return {
        "values": values,
        "qc_flags": [f["code"] for f in flags if isinstance(f, dict)]
        if isinstance(flags, list)
        else [],
        "qc_failure": summary.get("qc_failure"),
        "outputs": summary.get("outputs"),
    }


def results_file(result_dir: str | None) -> Path | None:
    """Path of a job's results.json, if the job wrote one."""
    return Path(result_dir) / "results.json" if result_dir else None
