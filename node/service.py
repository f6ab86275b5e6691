"""The running node: listener -> catalog -> tracker -> router -> queue -> workers -> outbox."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from pydicom import Dataset, dcmread

from node.catalog import Catalog, SeriesState
from node.listener import StorageListener, reconcile_spool
from node.router import RouteDecision, RuleSet, load_rules, route
from node.sender import OutboxSender
from node.settings import Settings
from node.status import StatusServer
from node.tracker import SeriesTracker
from node.worker import WorkerPool
from plugins import PLUGIN_NAMES, warm_up

logger = logging.getLogger(__name__)


def route_reason(decision: RouteDecision) -> str:
    """One line per analysis: matched, or the deciding reasons it was not."""
    reasons = [trace.summary() for trace in decision.traces]
    reasons.extend(decision.warnings)
    return "; ".join(reasons) or "; ".join(decision.explanation)


def read_headers(paths: list[Path]) -> list[Dataset]:
    """Headers (no pixel data) of the readable files among ``paths``."""
    headers: list[Dataset] = []
    for path in paths:
        try:
            headers.append(dcmread(path, stop_before_pixels=True))
        except Exception as exc:  # a spool file is unreadable: report, keep routing the rest
            logger.warning("cannot read header of %s: %s", path, exc)
    return headers


def route_complete_series(
    catalog: Catalog,
    rules: RuleSet,
    available: frozenset[str],
    series_uid: str,
    generation: int,
) -> list[int]:
    """Route a complete series and queue its jobs; returns the ids of the queued jobs.

    The decision (analysis or the reasons for none) is recorded in the catalog either way.
    """
    headers = read_headers(catalog.instance_paths(series_uid))
    if not headers:
        catalog.route_series(series_uid, generation, [], "no readable instance")
        return []
    decision = route(rules, rules.facts(headers), available)
    reason = route_reason(decision)
    analyses = [decision.analysis] if decision.analysis else []
    job_ids = catalog.route_series(series_uid, generation, analyses, reason)
    if job_ids:
        logger.info("series %s -> %s (jobs %s)", series_uid, analyses, job_ids)
    else:
        logger.info("series %s not analysed: %s", series_uid, reason)
    return job_ids


class Node:
    """All parts of the node, started and stopped together.

    Parameters
    ----------
    settings
        The node's validated settings.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(settings.catalog_path)
        self.rules: RuleSet = load_rules(settings.rules_file)
        self.available = frozenset(PLUGIN_NAMES) & settings.enabled_analyses()
        self.sender = OutboxSender(settings, self.catalog)
        self.workers = WorkerPool(settings, self.catalog, on_outputs=self.sender.wake)
        self.tracker = SeriesTracker(self.catalog, settings.stable_age_s, self._series_complete)
        self.listener = StorageListener(settings, self.catalog, self._instance_stored)
        self.status: StatusServer | None = None
        if settings.http_port:
            self.status = StatusServer(
                self.catalog, settings.http_host, settings.http_port, self.workers.wake
            )
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start every part; work left by a previous run resumes."""
        reconcile_spool(self.settings.spool_dir, self.catalog)
        threading.Thread(
            target=warm_up, args=(sorted(self.available),), name="warm-up", daemon=True
        ).start()
        self.sender.start()
        self.workers.start()
        self.tracker.start()
        self.listener.start()
        if self.status is not None:
            self.status.start()
        logger.info(
            "node %s ready: analyses %s, destinations %s",
            self.settings.ae_title,
            sorted(self.available),
            [d.name for d in self.settings.destinations] or "none",
        )

    def stop(self) -> None:
        """Stop accepting, then stop the parts in order."""
        self.listener.stop()
        self.tracker.stop()
        self.workers.stop()
        self.sender.stop()
        if self.status is not None:
            self.status.stop()
        self.catalog.close()
        self._stopped.set()

    def wait(self) -> None:
        """Block until ``stop`` is called."""
        self._stopped.wait()

    def _instance_stored(self, state: SeriesState, _ds: Dataset) -> None:
        self.tracker.instance_stored(state)

    def _series_complete(self, series_uid: str, generation: int) -> None:
        job_ids = route_complete_series(
            self.catalog, self.rules, self.available, series_uid, generation
        )
        if job_ids:
            self.workers.wake()
