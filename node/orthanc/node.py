"""The node inside Orthanc: complete series go through the node's queue.

Orthanc runs ``orthanc/plugin.py``, which calls :func:`node.orthanc.app.register` with the
``orthanc`` module (injected, so this module never imports it and is testable with a fake).
The path of a series::

    count reached or STABLE_SERIES ──▶ intake row (SQLite, in the node's catalog file)
        ──▶ intake thread: fetch instances (REST, in-process) into the spool ──▶ catalog
        ──▶ router ──▶ job queue
        ──▶ worker pool (node pipeline and writers) ──▶ outbox ──▶ local Orthanc (POST /instances)
                                                               └─▶ DICOM peers (C-STORE)

Orthanc's change callback does little and returns: a new instance is counted from Orthanc's
index (no file is read), a stable series gets its intake row; fetching, routing and analysis
run in the node's threads. Every step is durable: intake rows, jobs and outbox rows
live in SQLite, so an Orthanc restart (even ``kill -9``) resumes where it stopped.

Outputs are delivered through the node's own outbox rather than Orthanc's
``/modalities/{m}/store`` jobs: the outbox retries with backoff until each destination accepts
each object, keeps its state across restarts and shows it in the same status views, whereas a
failed Orthanc store job is not retried by Orthanc.

The node's own outputs come back as new series (the outbox stores them into Orthanc) and
Orthanc declares them stable in turn; they are recognised and skipped (:func:`own_output_reason`).

A series is complete, and handed to the intake, when the instance count its headers announce
(ImagesInAcquisition) has arrived and ``[node] count_grace_s`` passed without another
(:mod:`node.orthanc.counting`, the listener's rule: node.completion.tracker.CountState), or
else when Orthanc declares it stable (``StableAge`` seconds without a new instance); a series
completed by its count and unchanged since is not handed over again at its ``STABLE_SERIES``.
The stand-alone listener also completes a series when the scanner releases its association
(node.receive.associations); Orthanc gives plugins no such event (its change callbacks report
new and stable resources, ``OnStoredInstance`` one instance, jobs their own progress), and
``OrthancPluginSetStableStatus`` (plugin SDK, 2025) only lets a plugin declare stability it must
learn elsewhere (Orthanc Book, "Changing the Stable status of a resource").  A late instance
after a completion makes Orthanc declare the series stable again, and the intake then records it
as a new generation of the series (node.catalog), analysed anew as with the listener.
"""

from __future__ import annotations

import enum
import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from node import __version__
from node.catalog.audit import withhold_values, withhold_values_in_logs
from node.catalog.catalog import Catalog
from node.catalog.outbox import OutboxItem
from node.catalog.series import InstanceRecord, SeriesState
from node.catalog.spool import instance_path, safe_uid, write_new_or_replace
from node.catalog.sqlitedb import SqliteDatabase
from node.delivery.dicomweb import StowDelivery
from node.delivery.sender import DeliveryError, OutboxSender
from node.jobs.pipeline import writer_settings
from node.jobs.warmup import start_warm_up
from node.jobs.worker import WorkerPool
from node.orthanc.counting import THREAD_NAME as COUNT_THREAD_NAME
from node.orthanc.counting import CountCompletion
from node.routing import RuleSet, load_rules
from node.service import route_complete_series
from node.settings import Destination, DestinationKind, Settings
from plugins import PLUGIN_NAMES

logger = logging.getLogger(__name__)

#: ManufacturerModelName the node writes into every output (node.jobs.pipeline.writer_settings).
OUTPUT_MODEL_NAME = "cmr-node"
#: Every output SeriesDescription starts with this (node.outputs.writers.output_identity).
OUTPUT_DESCRIPTION_PREFIX = "cmr-node "
#: Calling AE title recorded for instances fetched from Orthanc.
ORTHANC_SOURCE_AET = "ORTHANC"
INTAKE_IDLE_POLL_S = 1.0
INTAKE_RETRY_BASE_S = 2.0
STOP_TIMEOUT_S = 5.0
#: Names of the node's threads that use the catalog (workers: node.jobs.worker; outbox:
#: node.delivery.sender; intake; completion by count: node.orthanc.counting).
THREAD_PREFIXES = ("worker-", "outbox-sender", "orthanc-intake", COUNT_THREAD_NAME)
HEADER_KEYWORDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "Manufacturer",
    "ManufacturerModelName",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orthanc_intake (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    orthanc_series_id   TEXT NOT NULL,
    reason              TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'pending',
    attempts            INTEGER NOT NULL DEFAULT 0,
    not_before          REAL NOT NULL DEFAULT 0,
    created_at          REAL NOT NULL,
    finished_at         REAL,
    series_instance_uid TEXT,
    series_description  TEXT,
    study_instance_uid  TEXT,
    orthanc_study_id    TEXT,
    instance_count      INTEGER,
    message             TEXT
);
CREATE INDEX IF NOT EXISTS orthanc_intake_state ON orthanc_intake(state, not_before);
CREATE INDEX IF NOT EXISTS orthanc_intake_series ON orthanc_intake(series_instance_uid);
CREATE TABLE IF NOT EXISTS orthanc_outputs (
    sop_instance_uid    TEXT PRIMARY KEY,
    series_instance_uid TEXT NOT NULL,
    input_series_uid    TEXT NOT NULL,
    job_id              INTEGER NOT NULL,
    kind                TEXT NOT NULL,
    orthanc_id          TEXT,
    orthanc_series_id   TEXT,
    stored_at           REAL
);
CREATE INDEX IF NOT EXISTS orthanc_outputs_series ON orthanc_outputs(series_instance_uid);
CREATE INDEX IF NOT EXISTS orthanc_outputs_input ON orthanc_outputs(input_series_uid);
"""


class OrthancApi(Protocol):
    """The part of Orthanc's ``orthanc`` module the node uses (injected)."""

    OrthancException: type[Exception]

    def RestApiGet(self, uri: str) -> bytes: ...  # noqa: N802 (Orthanc's names)

    def RestApiPost(self, uri: str, body: bytes | str) -> bytes: ...  # noqa: N802

    def RestApiDelete(self, uri: str) -> None: ...  # noqa: N802


class IntakeState(enum.StrEnum):
    """States of an intake row (a series Orthanc handed to the node)."""

    PENDING = "pending"
    """Waiting to be fetched (or being fetched: rows stay pending until finished)."""
    DONE = "done"
    """Fetched into the spool and routed (jobs queued, or recorded as not analysed)."""
    SKIPPED = "skipped"
    """Not fetched: the series is one of the node's own outputs."""
    FAILED = "failed"
    """Could not be fetched after every attempt; ``message`` says why."""


class IntakeReason(enum.StrEnum):
    """Why a series was handed to the node."""

    STABLE = "stable"
    """Orthanc declared it stable."""
    COUNT = "count"
    """The instance count its headers announce arrived (node.orthanc.counting)."""
    RERUN = "rerun"
    """An operator asked for it."""


class IntakeError(Exception):
    """A series cannot be fetched from Orthanc; the message says why.

    Parameters
    ----------
    message
        Human-readable reason.
    permanent
        True when retrying cannot help (the series is gone, an instance is not DICOM).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class IntakeItem:
    """One claimed intake row."""

    id: int
    orthanc_series_id: str
    reason: str
    attempts: int


@dataclass(frozen=True)
class IntakeOutcome:
    """What became of an intake row."""

    state: IntakeState
    message: str
    series_instance_uid: str | None = None
    job_ids: tuple[int, ...] = ()
    series_description: str | None = None


def own_output_reason(
    header: Mapping[str, str], *, known_output_series: bool, manufacturer: str
) -> str | None:
    """Why a series is one of the node's own outputs, or None when it is not.

    Parameters
    ----------
    header
        ManufacturerModelName, Manufacturer and SeriesDescription of one of its instances.
    known_output_series
        The node stored an output with this SeriesInstanceUID.
    manufacturer
        The Manufacturer the node writes (``[writer] manufacturer``).
    """
    if known_output_series:
        return "series of an output the node stored"
    model = header.get("ManufacturerModelName", "").strip()
    description = header.get("SeriesDescription", "").strip()
    if model == OUTPUT_MODEL_NAME and (
        description.startswith(OUTPUT_DESCRIPTION_PREFIX)
        or header.get("Manufacturer", "").strip() == manufacturer
    ):
        return f"written by {model} ({description or 'no description'})"
    return None


def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None


class OrthancStore(SqliteDatabase):
    """The Orthanc-specific tables (intake queue and stored outputs) in the node's catalog file.

    A connection of its own beside :class:`~node.catalog.catalog.Catalog` (WAL: readers and one
    writer at a time, ``busy_timeout`` waits for the other); it also answers the read-only queries
    of the REST routes over the catalog's tables.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    # ------------------------------------------------------------------ intake

    def enqueue(self, orthanc_series_id: str, reason: IntakeReason) -> int:
        """Record that a series must be fetched.

        A series already waiting (not yet claimed, or waiting for a retry, either of which
        lists its instances afresh) is not queued twice; one being fetched right now is, as it
        may have listed its instances before the newest arrived.
        """
        with self._tx() as cur:
            row = cur.execute(
                "SELECT id FROM orthanc_intake WHERE orthanc_series_id=? AND state='pending'"
                " AND (attempts=0 OR not_before>?)",
                (orthanc_series_id, time.time()),
            ).fetchone()
            if row is not None:
                return int(row["id"])
            cur.execute(
                "INSERT INTO orthanc_intake(orthanc_series_id, reason, created_at) VALUES (?,?,?)",
                (orthanc_series_id, str(reason), time.time()),
            )
            return int(cur.lastrowid or 0)

    def claim(self, now: float | None = None) -> IntakeItem | None:
        """The oldest due pending row, its attempt counted (it stays pending until finished)."""
        now = time.time() if now is None else now
        with self._tx() as cur:
            row = cur.execute(
                "SELECT id, orthanc_series_id, reason, attempts FROM orthanc_intake"
                " WHERE state='pending' AND not_before<=? ORDER BY id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            cur.execute("UPDATE orthanc_intake SET attempts=attempts+1 WHERE id=?", (row["id"],))
        return IntakeItem(
            int(row["id"]), row["orthanc_series_id"], row["reason"], int(row["attempts"]) + 1
        )

    def finish(
        self,
        intake_id: int,
        outcome: IntakeOutcome,
        *,
        study_uid: str | None = None,
        orthanc_study_id: str | None = None,
        instance_count: int | None = None,
    ) -> None:
        """Record the final state of an intake row."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE orthanc_intake SET state=?, finished_at=?, message=?,"
                " series_instance_uid=COALESCE(?, series_instance_uid),"
                " series_description=COALESCE(?, series_description),"
                " study_instance_uid=COALESCE(?, study_instance_uid),"
                " orthanc_study_id=COALESCE(?, orthanc_study_id),"
                " instance_count=COALESCE(?, instance_count) WHERE id=?",
                (
                    str(outcome.state),
                    time.time(),
                    outcome.message,
                    outcome.series_instance_uid,
                    outcome.series_description,
                    study_uid,
                    orthanc_study_id,
                    instance_count,
                    intake_id,
                ),
            )

    def retry_later(self, intake_id: int, message: str, at: float) -> None:
        """Keep a row pending until ``at`` after a transient failure."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE orthanc_intake SET not_before=?, message=? WHERE id=?",
                (at, message, intake_id),
            )

    def next_due(self) -> float | None:
        """Earliest ``not_before`` of pending rows."""
        rows = self.query("SELECT MIN(not_before) AS t FROM orthanc_intake WHERE state='pending'")
        value = rows[0]["t"]
        return float(value) if value is not None else None

    def intake_rows(self, limit: int = 50) -> list[dict[str, Any]]:
        """Most recent intake rows."""
        return self.query("SELECT * FROM orthanc_intake ORDER BY id DESC LIMIT ?", (limit,))

    def intake_counts(self) -> dict[str, int]:
        """Intake rows by state."""
        rows = self.query("SELECT state, COUNT(*) AS n FROM orthanc_intake GROUP BY state")
        return {r["state"]: int(r["n"]) for r in rows}

    def series_uid_of(self, orthanc_series_id: str) -> str | None:
        """SeriesInstanceUID of an Orthanc series the node fetched (or skipped) before."""
        rows = self.query(
            "SELECT series_instance_uid FROM orthanc_intake WHERE orthanc_series_id=?"
            " AND series_instance_uid IS NOT NULL ORDER BY id DESC LIMIT 1",
            (orthanc_series_id,),
        )
        return str(rows[0]["series_instance_uid"]) if rows else None

    def orthanc_series_of(self, series_uid: str) -> str | None:
        """Orthanc ID of a series the node fetched (or skipped) before."""
        rows = self.query(
            "SELECT orthanc_series_id FROM orthanc_intake WHERE series_instance_uid=?"
            " ORDER BY id DESC LIMIT 1",
            (series_uid,),
        )
        return str(rows[0]["orthanc_series_id"]) if rows else None

    # ------------------------------------------------------------------ outputs

    def record_output(
        self, sop_uid: str, series_uid: str, input_series_uid: str, job_id: int, kind: str
    ) -> None:
        """Remember an output before it is stored, so its series is recognised as the node's."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO orthanc_outputs(sop_instance_uid, series_instance_uid,"
                " input_series_uid, job_id, kind) VALUES (?,?,?,?,?)"
                " ON CONFLICT(sop_instance_uid) DO UPDATE SET job_id=excluded.job_id,"
                " series_instance_uid=excluded.series_instance_uid, kind=excluded.kind",
                (sop_uid, series_uid, input_series_uid, job_id, kind),
            )

    def output_stored(self, sop_uid: str, orthanc_id: str, orthanc_series_id: str | None) -> None:
        """Orthanc accepted an output: keep its Orthanc IDs for links."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE orthanc_outputs SET orthanc_id=?, orthanc_series_id=?, stored_at=?"
                " WHERE sop_instance_uid=?",
                (orthanc_id, orthanc_series_id, time.time(), sop_uid),
            )

    def is_output_series(self, series_uid: str) -> bool:
        """The node stored an output in this series."""
        rows = self.query(
            "SELECT 1 AS x FROM orthanc_outputs WHERE series_instance_uid=? LIMIT 1", (series_uid,)
        )
        return bool(rows)

    def outputs_of(self, input_series_uid: str) -> list[dict[str, Any]]:
        """Outputs stored for an input series (latest job first)."""
        return self.query(
            "SELECT * FROM orthanc_outputs WHERE input_series_uid=? ORDER BY job_id DESC, kind",
            (input_series_uid,),
        )

    def output_row(self, series_uid: str) -> dict[str, Any] | None:
        """The output stored in a given output series, if any."""
        rows = self.query(
            "SELECT * FROM orthanc_outputs WHERE series_instance_uid=? LIMIT 1", (series_uid,)
        )
        return rows[0] if rows else None


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class OrthancNode:
    """The node's parts, driven by Orthanc instead of the DICOM listener.

    Parameters
    ----------
    api
        The ``orthanc`` module (or a stand-in with the same functions).
    settings
        The node's settings; when ``settings.orthanc.store_results`` a destination of kind
        :attr:`~node.settings.DestinationKind.ORTHANC` is added in front of the DICOM peers.
    """

    def __init__(self, api: OrthancApi, settings: Settings) -> None:
        self.api = api
        destinations = tuple(settings.destinations)
        if settings.orthanc.store_results:
            local = Destination(
                name=settings.orthanc.destination_name,
                ae_title="",
                host="",
                port=0,
                kind=DestinationKind.ORTHANC,
            )
            destinations = (local, *destinations)
        self.settings = replace(settings, destinations=destinations)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Quoted header values stay out of logs, and out of the reasons and events recorded
        # unless [node] values_in_reasons, as in the listener's mode (node.catalog.audit).
        withhold_values_in_logs()
        self.catalog = Catalog(self.settings.catalog_location,
                               keep_values=self.settings.values_in_reasons)
        self.store = OrthancStore(self.settings.catalog_path)
        self.rules: RuleSet = load_rules(self.settings.rules_file)
        self.available = frozenset(PLUGIN_NAMES) & self.settings.enabled_analyses()
        self.sender = OutboxSender(
            self.settings,
            self.catalog,
            handlers={
                DestinationKind.ORTHANC: self.store_in_orthanc,
                DestinationKind.DICOMWEB: StowDelivery(),
            },
        )
        self.workers = WorkerPool(self.settings, self.catalog, on_outputs=self.sender.wake)
        self.counter = CountCompletion(api, self.settings.count_grace_s, self._count_reached)
        self.started_at: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._intake_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self, *, warm: bool = True) -> None:
        """Start the intake thread, workers, sender and the completion by count; resume what a
        previous run left."""
        self._stop.clear()
        self.sender.start()
        self.workers.start()  # re-queues jobs left running
        for series_uid, generation in self.catalog.completed_unrouted():
            logger.info("routing series %s left complete but unrouted", series_uid)
            self._route(series_uid, generation)
        pending = self.store.intake_counts().get(IntakeState.PENDING, 0)
        if pending:
            logger.info("resuming %d series waiting to be fetched from Orthanc", pending)
        self._intake_thread = threading.Thread(
            target=self._intake_loop, name="orthanc-intake", daemon=True
        )
        self._intake_thread.start()
        self.counter.start()
        if warm:
            start_warm_up(sorted(self.available),
                          writer_settings(self.settings.manufacturer,
                                          self.settings.institution_name),
                          mode=self.settings.warm_up)
        self.started_at = time.time()
        logger.info(
            "cmr-node %s in Orthanc: analyses %s, destinations %s",
            __version__,
            sorted(self.available),
            [d.name for d in self.settings.destinations] or "none",
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the threads; unfinished work resumes at the next start.

        Returns
        -------
        bool
            True when every thread ended within ``timeout``; False when one is still busy
            (an analysis in progress), which is then left to end with the process.
        """
        self._stop.set()
        self._wake.set()
        threads = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIXES)]
        self.counter.stop(timeout=timeout)
        if self._intake_thread is not None:
            self._intake_thread.join(timeout=timeout)
            self._intake_thread = None
        self.workers.stop(timeout=timeout)
        self.sender.stop(timeout=timeout)
        self.started_at = None
        busy = [t.name for t in threads if t.is_alive()]
        if busy:
            logger.warning("threads still busy at stop: %s (work resumes at next start)", busy)
        return not busy

    def close(self) -> None:
        """Close the database connections (after :meth:`stop`)."""
        self.store.close()
        self.catalog.close()

    @property
    def running(self) -> bool:
        """The intake thread is alive."""
        return self._intake_thread is not None and self._intake_thread.is_alive()

    # ------------------------------------------------------------------ Orthanc events

    def instance_stored(self, orthanc_instance_id: str) -> None:
        """Orthanc stored an instance: count it towards its series' announced count."""
        self.counter.instance_stored(orthanc_instance_id)

    def series_stable(self, orthanc_series_id: str) -> int | None:
        """Orthanc declared a series stable: record it durably and return at once.

        Returns
        -------
        int or None
            The intake row; None when the series was handed over by its count and no instance
            arrived since.
        """
        if self.counter.series_stable(orthanc_series_id):
            logger.debug("Orthanc series %s stable: already complete by its count",
                         orthanc_series_id)
            return None
        intake_id = self.store.enqueue(orthanc_series_id, IntakeReason.STABLE)
        self._wake.set()
        return intake_id

    def _count_reached(self, orthanc_series_id: str) -> None:
        """The instances a series announces arrived (node.orthanc.counting): hand it over as
        :meth:`series_stable` does."""
        self.store.enqueue(orthanc_series_id, IntakeReason.COUNT)
        self._wake.set()

    def rerun(self, orthanc_series_id: str) -> int:
        """Fetch and analyse a series again (an operator's request)."""
        intake_id = self.store.enqueue(orthanc_series_id, IntakeReason.RERUN)
        self._wake.set()
        return intake_id

    # ------------------------------------------------------------------ intake

    def _intake_loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.store.claim()
            except sqlite3.Error:
                logger.exception("cannot read the intake queue")
                item = None
            if item is None:
                self._wake.wait(INTAKE_IDLE_POLL_S)
                self._wake.clear()
                continue
            self.run_intake(item)

    def _reason(self, text: str) -> str:
        """A reason as the intake table keeps it: quoted values withheld unless
        ``[node] values_in_reasons`` (the catalog does the same to its events)."""
        return text if self.settings.values_in_reasons else withhold_values(text)

    def run_intake(self, item: IntakeItem) -> IntakeOutcome | None:
        """Fetch, record and route one series; returns its outcome (None: retried later)."""
        try:
            outcome, study_uid, study_id, count = self._fetch_and_route(item)
            outcome = replace(outcome, message=self._reason(outcome.message))
        except IntakeError as exc:
            max_attempts = self.settings.orthanc.intake_max_attempts
            if exc.permanent or item.attempts >= max_attempts:
                outcome = IntakeOutcome(IntakeState.FAILED,
                                        self._reason(f"attempt {item.attempts}: {exc}"))
                logger.warning(
                    "intake of Orthanc series %s failed: %s", item.orthanc_series_id, exc
                )
                self.store.finish(item.id, outcome)
                self.catalog.record_event(
                    "orthanc_intake_failed", None, f"Orthanc series {item.orthanc_series_id}: {exc}"
                )
                return outcome
            delay = INTAKE_RETRY_BASE_S * 2 ** (item.attempts - 1)
            logger.warning(
                "intake of Orthanc series %s: %s; retry in %.0f s",
                item.orthanc_series_id,
                exc,
                delay,
            )
            self.store.retry_later(item.id, self._reason(f"attempt {item.attempts}: {exc}"),
                                   time.time() + delay)
            return None
        except Exception as exc:  # a bug must not stop the intake thread
            logger.exception("intake of Orthanc series %s failed", item.orthanc_series_id)
            outcome = IntakeOutcome(IntakeState.FAILED, self._reason(f"unexpected error: {exc}"))
            self.store.finish(item.id, outcome)
            return outcome
        self.store.finish(
            item.id, outcome, study_uid=study_uid, orthanc_study_id=study_id, instance_count=count
        )
        if outcome.job_ids:
            self.workers.wake()
        return outcome

    def _get_json(self, uri: str) -> Any:
        try:
            return json.loads(self.api.RestApiGet(uri))
        except self.api.OrthancException as exc:
            raise IntakeError(f"GET {uri}: {_orthanc_error(exc)}",
                              permanent=_unknown(exc)) from exc

    def _get_bytes(self, uri: str) -> bytes:
        try:
            return bytes(self.api.RestApiGet(uri))
        except self.api.OrthancException as exc:
            raise IntakeError(f"GET {uri}: {_orthanc_error(exc)}",
                              permanent=_unknown(exc)) from exc

    def _fetch_and_route(
        self, item: IntakeItem
    ) -> tuple[IntakeOutcome, str | None, str | None, int | None]:
        series = self._get_json(f"/series/{item.orthanc_series_id}")
        instance_ids = list(series.get("Instances") or [])
        study_id = series.get("ParentStudy")
        tags = series.get("MainDicomTags") or {}
        series_uid = str(tags.get("SeriesInstanceUID", "")) or None
        if not instance_ids:
            raise IntakeError("the series has no instance in Orthanc", permanent=True)
        state: SeriesState | None = None
        study_uid: str | None = None
        unreadable: list[str] = []
        for instance_id in instance_ids:
            raw = self._get_bytes(f"/instances/{instance_id}/file")
            try:
                header = _parse_header(raw, f"instance {instance_id}")
            except IntakeError as exc:  # Orthanc kept it; the node cannot use it
                unreadable.append(str(exc))
                continue
            series_uid = header["SeriesInstanceUID"]
            study_uid = header["StudyInstanceUID"]
            if state is None:
                reason = own_output_reason(
                    header,
                    known_output_series=self.store.is_output_series(series_uid),
                    manufacturer=self.settings.manufacturer,
                )
                if reason is not None:
                    logger.info("Orthanc series %s skipped: %s", item.orthanc_series_id, reason)
                    outcome = IntakeOutcome(
                        IntakeState.SKIPPED,
                        f"own output: {reason}",
                        series_uid,
                        series_description=header["SeriesDescription"] or None,
                    )
                    return outcome, study_uid, study_id, len(instance_ids)
            state = self._record(header, raw)
        if state is None or series_uid is None:
            raise IntakeError(f"no readable instance: {'; '.join(unreadable[:3])}", permanent=True)
        if unreadable:
            self.catalog.record_event(
                "orthanc_instances_skipped",
                series_uid,
                f"{len(unreadable)} of {len(instance_ids)} instances unreadable:"
                f" {'; '.join(unreadable[:3])}",
            )
        if not self.catalog.complete_series(series_uid, state.generation):
            # Cannot happen with one intake thread; keep the state visible if it ever does.
            message = f"series moved past generation {state.generation} while fetched"
            raise IntakeError(message)
        job_ids = self._route(series_uid, state.generation)
        routed = self.catalog.series_generation(series_uid)
        message = f"{len(instance_ids)} instances fetched (generation {state.generation}); " + (
            f"jobs {job_ids}" if job_ids else "not analysed"
        )
        if routed is not None and not job_ids:
            rows = self.store.query(
                "SELECT route_reason FROM series WHERE series_instance_uid=?", (series_uid,)
            )
            if rows and rows[0]["route_reason"]:
                reason = str(rows[0]["route_reason"])
                # A reader's SEG was not meant for analysis: its reason says what it is.
                message = (message.removesuffix("not analysed") + reason
                           if routed[0] == "correction" else f"{message}: {reason}")
        outcome = IntakeOutcome(
            IntakeState.DONE,
            message,
            series_uid,
            tuple(job_ids),
            series_description=str(tags.get("SeriesDescription") or "") or None,
        )
        return outcome, study_uid, study_id, len(instance_ids)

    def _record(self, header: Mapping[str, str], raw: bytes) -> SeriesState:
        path = instance_path(
            self.settings.spool_dir,
            header["StudyInstanceUID"],
            header["SeriesInstanceUID"],
            header["SOPInstanceUID"],
        )
        try:
            write_new_or_replace(path, raw)
        except OSError as exc:
            raise IntakeError(f"cannot write {path}: {exc}") from exc
        return self.catalog.record_instance(
            InstanceRecord(
                sop_instance_uid=header["SOPInstanceUID"],
                series_instance_uid=header["SeriesInstanceUID"],
                study_instance_uid=header["StudyInstanceUID"],
                sop_class_uid=header["SOPClassUID"],
                transfer_syntax_uid=header.get("TransferSyntaxUID") or None,
                path=path,
                size_bytes=len(raw),
                calling_aet=ORTHANC_SOURCE_AET,
                modality=header.get("Modality") or None,
                series_description=header.get("SeriesDescription") or None,
                expected_count=None,
            )
        )

    def _route(self, series_uid: str, generation: int) -> list[int]:
        return route_complete_series(
            self.catalog, self.rules, self.available, series_uid, generation,
            self.settings.analysis_options,
        )

    # ------------------------------------------------------------------ delivery

    def store_in_orthanc(self, destination: Destination, item: OutboxItem) -> str | None:
        """Outbox handler of the local Orthanc: ``POST /instances`` (replacing an older copy).

        Raises
        ------
        node.delivery.sender.DeliveryError
            When the file cannot be read or Orthanc refuses it (the outbox retries).
        """
        try:
            raw = item.path.read_bytes()
            header = _parse_header(raw, str(item.path))
        except (OSError, IntakeError) as exc:
            raise DeliveryError(f"output file unreadable: {exc}") from exc
        job = self.catalog.job(item.job_id)
        input_uid = str(job["series_instance_uid"]) if job else ""
        self.store.record_output(
            item.sop_instance_uid, header["SeriesInstanceUID"], input_uid, item.job_id, item.kind
        )
        answer = self._post_instance(raw)
        warning = None
        if answer.get("Status") == "AlreadyStored":
            # Same deterministic UID as an earlier run: replace it with this version.
            try:
                self.api.RestApiDelete(f"/instances/{answer['ID']}")
            except self.api.OrthancException as exc:
                raise DeliveryError(f"cannot replace the stored copy: {exc}") from exc
            answer = self._post_instance(raw)
            warning = "replaced an earlier copy"
        self.store.output_stored(item.sop_instance_uid, answer["ID"], answer.get("ParentSeries"))
        return warning

    def _post_instance(self, raw: bytes) -> dict[str, Any]:
        try:
            answer = json.loads(self.api.RestApiPost("/instances", raw))
        except self.api.OrthancException as exc:
            raise DeliveryError(f"Orthanc refused the object: {exc}") from exc
        if not isinstance(answer, dict) or "ID" not in answer:
            raise DeliveryError(f"unexpected answer from POST /instances: {answer!r}")
        return answer


def _orthanc_error(exc: BaseException) -> str:
    """An ``OrthancException`` as text: its description and code, unquoted (its ``str`` is
    the tuple ``(17, 'Unknown resource')``, whose quoted description the withholding of
    quoted values would hide; Orthanc's error descriptions are fixed texts, not header
    values)."""
    if len(exc.args) == 2 and isinstance(exc.args[0], int):
        return f"{exc.args[1]} (Orthanc error {exc.args[0]})"
    return str(exc)


def _unknown(exc: BaseException) -> bool:
    """The OrthancException says the resource does not exist (retrying cannot help)."""
    return "unknown resource" in str(exc).lower() or "inexistent" in str(exc).lower()


def _parse_header(raw: bytes, source: str) -> dict[str, str]:
    """UIDs and descriptive attributes of a DICOM file's header.

    Raises
    ------
    IntakeError
        (permanent) When the bytes are not DICOM or lack a UID the node needs.
    """
    try:
        ds = dcmread(io.BytesIO(raw), stop_before_pixels=True, specific_tags=list(HEADER_KEYWORDS))
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError) as exc:
        raise IntakeError(f"{source} is not a readable DICOM file: {exc}", permanent=True) from exc
    header = {k: str(ds.get(k, "") or "") for k in HEADER_KEYWORDS}
    meta = getattr(ds, "file_meta", None)
    header["TransferSyntaxUID"] = str(getattr(meta, "TransferSyntaxUID", "") or "")
    for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        try:
            safe_uid(header[key])
        except ValueError as exc:
            raise IntakeError(f"{source}: {key} {exc}", permanent=True) from exc
    return header
