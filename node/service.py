"""The running node: listener -> catalog -> tracker -> router -> queue -> workers -> outbox."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread

from node.analyses import arrivals
from node.catalog.audit import AuditLog, withhold_values
from node.catalog.catalog import Catalog
from node.catalog.series import SeriesState
from node.completion.pairing import lge_reconstruction, preferred_partner, skip_reason
from node.completion.tracker import SeriesTracker
from node.corrections.intake import take_correction
from node.delivery.dicomweb import StowDelivery
from node.delivery.sender import OutboxSender
from node.inputs.companions import Candidate
from node.inputs.covariates import CovariateFolder
from node.jobs.pipeline import writer_settings
from node.jobs.warmup import start_warm_up
from node.jobs.worker import WorkerPool
from node.receive.receivers import storage_receiver
from node.receive.spool_recovery import reconcile_spool
from node.routing import RouteDecision, RuleSet, load_rules, route
from node.settings import DestinationKind, Settings, http_token
from node.status.report import StatusServer
from plugins import PLUGIN_NAMES
from plugins.lge import LgeContrast

logger = logging.getLogger(__name__)


def route_reason(decision: RouteDecision) -> str:
    """One line per analysis: matched, or the deciding reasons it was not.

    Analysis names, rule names and condition ids, which come from the routing rules, are
    given unquoted: the catalog withholds every quoted text (header values such as a
    description or Image Comments, see :class:`node.catalog.catalog.Catalog`), and these must stay
    readable in the status.
    """
    reasons = [trace.summary() for trace in decision.traces]
    reasons.extend(decision.warnings)
    text = "; ".join(reasons) or "; ".join(decision.explanation)
    names: set[str] = set()
    for trace in decision.traces:
        names.add(trace.analysis)
        if trace.matched_rule:
            names.add(trace.matched_rule)
        names.update(r.condition_id for r in (*trace.require, *trace.identify, *trace.reject))
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(f"'{name}'", name)
    return text


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
    analysis_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[int]:
    """Route a complete series and queue its jobs; returns the ids of the queued jobs.

    The decision (analysis or the reasons for none) is recorded in the catalog either way.
    A reader's corrected SEG is taken as a correction instead (:mod:`node.corrections.intake`).
    An LGE series is first paired with the other reconstruction of its acquisition
    (:mod:`node.completion.pairing`): only the preferred one (PSIR by default) is analysed.
    """
    if take_correction(catalog, series_uid, generation) is not None:
        return []
    headers = read_headers(catalog.instance_paths(series_uid))
    if not headers:
        catalog.route_series(series_uid, generation, [], "no readable instance")
        return []
    decision = route(rules, rules.facts(headers), available)
    reason = route_reason(decision)
    analyses = list(decision.analyses)
    not_before = 0.0
    if decision.analysis == LGE_ANALYSIS:
        options = (analysis_options or {}).get(LGE_ANALYSIS, {})
        pairing = _pair_lge(catalog, series_uid, headers, options)
        if pairing.skip_reason is not None:
            analyses, reason = [], pairing.skip_reason
        not_before = pairing.not_before
    job_ids = catalog.route_series(series_uid, generation, analyses, reason,
                                   not_before=not_before)
    if job_ids:
        logger.info("series %s routed: %s (jobs %s)", series_uid, decision.headline(), job_ids)
    else:
        short = decision.headline() if decision.analysis is None else reason
        logger.info("series %s not analysed: %s", series_uid, withhold_values(short))
    return job_ids + requeue_on_arrival(catalog, series_uid, headers[0])


def requeue_on_arrival(catalog: Catalog, series_uid: str, header: Dataset) -> list[int]:
    """A completed series may fill a companion role of analyses already run: queue them again.

    Which series re-queue which analyses is declared by each analysis (``arrivals`` of its
    descriptor, :mod:`node.analyses`: a cine re-queues the study's LGE jobs that found no
    cine).  The series may be routed or not.  Returns the new job ids.
    """
    study = catalog.series_study(series_uid)
    if study is None:
        return []
    candidate = Candidate(series_uid, None, catalog.instance_paths(series_uid)[:1],
                          description=str(header.get("SeriesDescription", "") or ""))
    job_ids: list[int] = []
    for analysis, rule in arrivals():
        if not rule.spec.accepts(candidate):
            continue
        ids = catalog.reanalyse_study(study, analysis, rule.reason.format(series=series_uid),
                                      done_with_flag=rule.done_with_flag)
        if ids:
            logger.info("series %s is a %s: %s jobs %s of study %s queued again", series_uid,
                        rule.spec.role, analysis, ids, study)
        job_ids += ids
    return job_ids


AUDIT_FILE = "audit.jsonl"
"""The audit trail under ``<data_dir>/logs`` (see node.catalog.audit)."""
LGE_ANALYSIS = "lge"
DEFAULT_PARTNER_WAIT_S = 15.0
"""How long the analysis of a non-preferred LGE reconstruction (magnitude) waits for the
preferred one (PSIR) of the same acquisition, which scanners send right after it."""


@dataclass(frozen=True)
class _Pairing:
    skip_reason: str | None = None
    not_before: float = 0.0


def _pair_lge(
    catalog: Catalog, series_uid: str, headers: list[Dataset], options: Mapping[str, Any]
) -> _Pairing:
    """Skip, hold back or supersede LGE reconstructions of one acquisition.

    See :mod:`node.completion.pairing`.
    """
    prefer = LgeContrast(str(options.get("prefer", LgeContrast.PSIR)).lower())
    candidate = lge_reconstruction(series_uid, headers)
    study = catalog.series_study(series_uid)
    if candidate is None or candidate.contrast is None or study is None:
        return _Pairing()
    others = []
    for other_uid in catalog.study_series(study):
        if other_uid == series_uid:
            continue
        other = lge_reconstruction(other_uid, read_headers(catalog.instance_paths(other_uid)))
        if other is not None and other.acquisition == candidate.acquisition:
            others.append(other)
    partner = preferred_partner(candidate, others, prefer)
    if partner is not None:
        return _Pairing(skip_reason=skip_reason(partner, prefer))
    if candidate.contrast is prefer:
        for other in others:
            if other.contrast is not prefer and catalog.supersede_queued(
                other.series_uid, LGE_ANALYSIS, skip_reason(candidate, prefer)
            ):
                logger.info("series %s: %s reconstruction superseded by %s", other.series_uid,
                            other.contrast, series_uid)
        return _Pairing()
    wait = float(options.get("partner_wait_s", DEFAULT_PARTNER_WAIT_S))
    return _Pairing(not_before=time.time() + wait)


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
        self.catalog = Catalog(settings.catalog_location,
                               keep_values=settings.values_in_reasons)
        self.rules: RuleSet = load_rules(settings.rules_file)
        self.available = frozenset(PLUGIN_NAMES) & settings.enabled_analyses()
        self.audit = AuditLog(settings.data_dir / "logs" / AUDIT_FILE)
        self.sender = OutboxSender(
            settings, self.catalog, handlers={DestinationKind.DICOMWEB: StowDelivery()},
            audit=self.audit,
        )
        self.workers = WorkerPool(settings, self.catalog, on_outputs=self.sender.wake)
        self.tracker = SeriesTracker(
            self.catalog, settings.stable_age_s, self._series_complete,
            release_grace_s=settings.release_grace_s, is_carried=self._carried,
            count_grace_s=settings.count_grace_s,
        )
        self.listener = storage_receiver(
            settings, self.catalog, self._instance_stored, audit=self.audit,
            on_released=self.tracker.series_released,
        )
        self.status: StatusServer | None = None
        if settings.http_port:
            self.status = StatusServer(
                self.catalog, settings.http_host, settings.http_port, self.workers.wake,
                covariates=CovariateFolder(settings.covariates_folder),
                token=http_token(settings),
                allowed_hosts=(*settings.http.allowed_hosts, settings.http_host),
                allowed_origins=settings.http.allowed_origins,
                token_file=settings.data_dir / "http-token",
            )
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start every part; work left by a previous run resumes."""
        reconcile_spool(self.settings.spool_dir, self.catalog)
        warmed_up = threading.Event()  # workers claim jobs once the analyses are loaded
        self.sender.start()
        self.workers.start(ready=warmed_up)
        self.tracker.start()
        self.listener.start()
        if self.settings.worker_count > 0:  # after the listener: accepting is not delayed
            start_warm_up(sorted(self.available), writer_settings(
                self.settings.manufacturer, self.settings.institution_name), loaded=warmed_up,
                mode=self.settings.warm_up)
        if self.status is not None:
            self.status.start()
        if self.settings.worker_count == 0:
            logger.warning(
                "node.worker_count = 0: this process runs no analyses; `cmr-node worker`"
                " processes on the %s catalog must", self.catalog.engine,
            )
        logger.info(
            "node %s ready: analyses %s, destinations %s",
            self.settings.ae_title,
            # joined, not quoted: the log filter withholds quoted values
            ", ".join(sorted(self.available)) or "none",
            ", ".join(d.name for d in self.settings.destinations) or "none",
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
        self.audit.close()
        self._stopped.set()

    def wait(self) -> None:
        """Block until ``stop`` is called."""
        self._stopped.wait()

    def _instance_stored(self, state: SeriesState, _ds: Dataset) -> None:
        self.tracker.instance_stored(state)

    def _carried(self, series_uid: str) -> bool:
        return self.listener.associations.carries(series_uid)

    def _series_complete(self, series_uid: str, generation: int) -> None:
        receipt = self.catalog.series_receipt(series_uid)
        if receipt is not None:
            self.audit.record("series_received", series_instance_uid=series_uid,
                              generation=generation, **receipt)
        job_ids = route_complete_series(
            self.catalog, self.rules, self.available, series_uid, generation,
            self.settings.analysis_options,
        )
        if job_ids:
            self.workers.wake()
