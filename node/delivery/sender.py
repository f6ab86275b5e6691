"""The outbox sender: delivers output objects to each destination by C-STORE.

A row leaves the ``pending`` state only when the destination answered Success or a Warning
status (the object was kept). Failures are retried with exponential backoff; nothing is
removed before acceptance. A destination that is down does not delay the others.

Destinations of another kind than DICOM (e.g. the Orthanc hosting the node as a plugin) are
delivered by a :data:`DeliveryHandler` given for that kind, under the same retry policy.

An output file is sent as stored (its bytes after the File Meta Information, pynetdicom's
``STORE_SEND_CHUNKED_DATASET``) when the destination accepted its transfer syntax: decoding a
report of a few thousand content items and encoding it again took about as long as building
it. A destination that accepted its SOP class only in another transfer syntax gets the
decoded data set, converted by pynetdicom.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import _config as pynetdicom_config

from node.catalog.audit import AuditLog
from node.catalog.catalog import Catalog
from node.catalog.outbox import OutboxItem
from node.network.dimse import NoDelayAE, is_accepted
from node.network.tls import client_context
from node.settings import Destination, DestinationKind, Settings

logger = logging.getLogger(__name__)

IDLE_POLL_S = 1.0
STATUS_SUCCESS = 0x0000


class DeliveryError(Exception):
    """A destination did not take an object; the message says why (the row is retried).

    Parameters
    ----------
    message
        Human-readable reason.
    status
        Status code the destination answered, if any.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


DeliveryHandler = Callable[[Destination, OutboxItem], str | None]
"""Delivers one outbox row to a non-DICOM destination; returns a warning text or None, raises
:class:`DeliveryError` when the destination did not accept the object."""


class OutboxSender:
    """Background thread that drains the outbox.

    Parameters
    ----------
    settings
        Destinations, retry policy and the node's AE title.
    catalog
        The durable outbox.
    handlers
        Delivery function per destination kind other than DICOM.
    audit
        Where every delivery is recorded, if anywhere.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        handlers: Mapping[DestinationKind, DeliveryHandler] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._audit = audit
        self._handlers = dict(handlers or {})
        self._destinations = {d.name: d for d in settings.destinations}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the sender thread."""
        self._thread = threading.Thread(target=self._loop, name="outbox-sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tell the sender that new rows are due."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current association."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                due = self._catalog.due_outbox()
                if due:
                    self.deliver(due)
                    continue
            except Exception:
                logger.exception("outbox pass failed")
            self._wake.wait(IDLE_POLL_S)
            self._wake.clear()

    def _backoff(self, attempts: int) -> float:
        policy = self._settings.sender
        return float(min(policy.retry_max_s, policy.retry_initial_s * 2 ** max(0, attempts)))

    def _failed(self, item: OutboxItem, error: str, status: int | None) -> None:
        policy = self._settings.sender
        attempts = item.attempts + 1
        give_up = policy.max_attempts and attempts >= policy.max_attempts
        next_at = None if give_up else time.time() + self._backoff(item.attempts)
        self._catalog.mark_send_failed(item.id, error, status, next_at)
        logger.warning(
            "delivery of %s to %s failed (attempt %d): %s%s",
            item.sop_instance_uid,
            item.destination,
            attempts,
            error,
            "; giving up" if give_up else "",
        )

    def deliver(self, items: Sequence[OutboxItem]) -> None:
        """Send due rows, one association per destination."""
        by_destination: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in items:
            by_destination[item.destination].append(item)
        for name, batch in by_destination.items():
            destination = self._destinations.get(name)
            if destination is None:
                for item in batch:
                    self._failed(item, f"destination {name!r} is no longer configured", None)
                continue
            if destination.kind != DestinationKind.DICOM:
                self._deliver_with_handler(destination, batch)
                continue
            self._send_batch(destination, batch)

    def _deliver_with_handler(self, destination: Destination, batch: list[OutboxItem]) -> None:
        handler = self._handlers.get(destination.kind)
        for item in batch:
            if self._stop.is_set():
                break
            if handler is None:
                self._failed(item, f"no delivery handler for {destination.kind} destinations", None)
                continue
            self._catalog.mark_send_attempt(item.id)
            try:
                warning = handler(destination, item)
            except DeliveryError as exc:
                self._failed(item, str(exc), exc.status)
                continue
            except Exception as exc:
                logger.exception(
                    "delivery of %s to %s failed", item.sop_instance_uid, item.destination
                )
                self._failed(item, f"unexpected error: {exc}", None)
                continue
            self._catalog.mark_sent(item.id, STATUS_SUCCESS, warning)
            self._delivered(destination, item, STATUS_SUCCESS)
            logger.info("delivered %s %s to %s", item.kind, item.sop_instance_uid, item.destination)

    def _send_batch(self, destination: Destination, batch: list[OutboxItem]) -> None:
        ae = NoDelayAE(ae_title=self._settings.ae_title)
        ae.network_timeout = self._settings.sender.network_timeout_s
        ae.acse_timeout = self._settings.sender.network_timeout_s
        ae.dimse_timeout = self._settings.sender.network_timeout_s
        ae.connection_timeout = min(10.0, self._settings.sender.network_timeout_s)
        for sop_class in sorted({item.sop_class_uid for item in batch}):
            # One context per transfer syntax: an acceptor chooses one syntax per context, in
            # its own order of preference (pynetdicom's default puts Implicit VR first), and
            # the outputs, written in Explicit VR Little Endian, go as stored only in theirs.
            ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
            ae.add_requested_context(sop_class, ImplicitVRLittleEndian)
        tls_args = (
            (client_context(self._settings.tls), destination.server_name or destination.host)
            if destination.tls
            else None
        )
        assoc = ae.associate(
            destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args
        )
        if not assoc.is_established:
            if assoc.is_rejected:
                reason = "association rejected"
            elif assoc.rejected_contexts and not assoc.accepted_contexts:
                reason = "association aborted: the peer accepts none of the SOP classes"
            else:
                reason = "cannot connect"
            for item in batch:
                self._failed(
                    item,
                    f"{reason} ({destination.ae_title}@{destination.host}:{destination.port})",
                    None,
                )
            return
        try:
            for item in batch:
                if self._stop.is_set() or not assoc.is_established:
                    break
                self._send_one(assoc, item)
        finally:
            if assoc.is_established:
                assoc.release()

    def _delivered(self, destination: Destination, item: OutboxItem, status: int) -> None:
        if self._audit is not None:
            self._audit.record(
                "delivered",
                destination=destination.name,
                kind=str(destination.kind),
                ae_title=destination.ae_title,
                address=f"{destination.host}:{destination.port}",
                tls=destination.tls,
                job_id=item.job_id,
                output=item.kind,
                sop_instance_uid=item.sop_instance_uid,
                status=f"0x{status:04X}",
            )

    def _send_one(self, assoc: object, item: OutboxItem) -> None:
        accepted: dict[str, set[str]] = defaultdict(set)
        for cx in assoc.accepted_contexts:  # type: ignore[attr-defined]
            accepted[str(cx.abstract_syntax)].update(str(ts) for ts in cx.transfer_syntax)
        if item.sop_class_uid not in accepted:
            # The peer refused this SOP class at association: record it for this item only,
            # so one unsupported object never blocks the rest of the outbox.
            self._failed(
                item,
                f"{item.destination} accepts no presentation context for "
                f"{UID(item.sop_class_uid).name}",
                None,
            )
            return
        try:
            syntax = str(read_file_meta_info(item.path).TransferSyntaxUID)
            payload = (
                item.path if syntax in accepted[item.sop_class_uid] else dcmread(item.path)
            )
        except (OSError, ValueError, AttributeError, InvalidDicomError) as exc:
            self._failed(item, f"output file unreadable: {exc}", None)
            return
        self._catalog.mark_send_attempt(item.id)  # recorded before the object leaves
        try:
            status = send_c_store(assoc, payload)
        except (ValueError, AttributeError, RuntimeError, OSError) as exc:
            self._failed(item, f"not sent: {exc}", None)
            return
        code = int(status.Status) if "Status" in status else None
        if code is not None and is_accepted(code):
            warning = None
            if code != 0:
                warning = f"warning 0x{code:04X} {status.get('ErrorComment', '')}".strip()
            self._catalog.mark_sent(item.id, code, warning)
            self._delivered(self._destinations[item.destination], item, code)
            logger.info(
                "delivered %s %s to %s (0x%04X)",
                item.kind,
                item.sop_instance_uid,
                item.destination,
                code,
            )
        elif code is None:
            self._failed(item, "no response (association aborted or timed out)", None)
        else:
            comment = status.get("ErrorComment", "")
            self._failed(item, f"refused 0x{code:04X} {comment}".strip(), code)


def send_c_store(assoc: object, payload: Path | Dataset) -> Dataset:
    """C-STORE a data set, or a DICOM file's stored bytes without decoding them.

    A file is sent as stored (pynetdicom's documented ``STORE_SEND_CHUNKED_DATASET`` option,
    set for this call only: the outbox sender is the node's only C-STORE SCU thread), so the
    association must have accepted its SOP class in the file's transfer syntax.

    Returns
    -------
    pydicom.Dataset
        The response's status data set (empty when the association ended without one).
    """
    if isinstance(payload, Dataset):
        return assoc.send_c_store(payload)  # type: ignore[attr-defined]
    previous = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return assoc.send_c_store(payload)  # type: ignore[attr-defined]
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = previous
