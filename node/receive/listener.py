"""The node's DICOM listener: a Storage SCP (C-STORE) and Verification SCP (C-ECHO).

An instance is written to the spool atomically and recorded in the catalog *before* the
response is sent, so a Success status means the instance survives a crash.

C-STORE statuses answered (PS3.4 B.2.3)
---------------------------------------
0x0000 Success
    Stored and recorded.
0xA700 Refused: Out of Resources
    Free disk space below ``min_free_disk_mb``, disk full while writing, or catalog
    unavailable. Nothing is kept; the sender may retry later.
0xA900 Error: Data Set does not match SOP Class
    The data set's SOP Class/Instance UID differs from the request's Affected SOP Class/
    Instance UID.
0xC000 Error: Cannot understand
    The data set cannot be parsed, lacks Study/Series/SOP Instance UIDs, has malformed UIDs,
    or its Pixel Data is shorter than its Rows x Columns x Frames x Samples x Bits.
0x0111 Duplicate SOP Instance (PS3.7 Annex C)
    The SOP Instance UID is stored with other content and ``[listener] duplicate_policy`` is
    ``keep_first`` (the default, as Orthanc's ``OverwriteInstances = false``): the first
    instance stays.  With ``replace`` the new one is stored in its place.  Either way the
    audit log records both content hashes (SHA-256 of the data set as received, file meta
    excluded).  An identical re-send is answered Success.
0xC001 Error: Cannot understand (series conflict)
    The instance names a series the node holds for another patient (Patient ID or Patient's
    Name differ) or of another modality: one series never mixes two patients or modalities.
0x0110 Processing failure
    Any other unexpected failure while storing.

Every refusal is logged and recorded in the catalog's event log with its reason.  Reasons and
log lines name UIDs, statuses and attribute keywords, never attribute values that can carry
patient information (names, IDs, free text such as Image Comments or descriptions).

Associations: the called AE title must be the node's (``[listener] require_called_aet``); a
TCP connection takes an association slot only once it has spoken
(node.network.dimse.AdmittingServer).
The series each association stored are kept (node.receive.associations); when it is released
(A-RELEASE), those no other open association carries are passed to ``on_released``, a signal
that the scanner has finished sending them. An aborted or lost association signals nothing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import queue
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node.catalog.audit import AuditLog, withhold_values, withhold_values_in_logs
from node.catalog.catalog import Catalog, InstanceRecord, SeriesState
from node.catalog.spool import FreeSpaceGauge, instance_path, safe_uid, write_new_or_replace
from node.network.dimse import (
    AdmissionPolicy,
    AdmittingServer,
    NoDelayAE,
    SharedSocketServer,
    StoreError,
    StoreStatus,
)
from node.network.tls import server_context
from node.receive.associations import AssociationLedger
from node.receive.header import scan_header, tags_of
from node.receive.presentation import cheap_copy_contexts
from node.settings import DuplicatePolicy, Settings

logger = logging.getLogger(__name__)

ERROR_COMMENT_MAX = 64
IMPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})
UNDEFINED_LENGTH = 0xFFFFFFFF
ENHANCED_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
    }
)


#: Name-based UUID UID (PS3.5 B.2) of uuid5(NAMESPACE_URL, "cmr-node/implementation-class").
IMPLEMENTATION_CLASS_UID = "2.25.198608845599657441212316513581251893134"
IMPLEMENTATION_VERSION = "CMRNODE_010"


def _element(group_elem: int, vr: bytes, value: bytes) -> bytes:
    """One explicit-VR little-endian element of the file meta group."""
    tag = struct.pack("<HH", 0x0002, group_elem)
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
        return tag + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    value = text.encode("ascii")
    return value + pad if len(value) % 2 else value


def file_meta_bytes(
    sop_class: str, sop_instance: str, transfer_syntax: str, source_aet: str
) -> bytes:
    """Preamble, prefix and File Meta Information (PS3.10 7.1) for a received data set.

    Built directly rather than through pydicom's writer: this runs once per received
    instance and is a tenth of the cost.
    """
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _padded(sop_class, b"\0")),
            _element(0x0003, b"UI", _padded(sop_instance, b"\0")),
            _element(0x0010, b"UI", _padded(transfer_syntax, b"\0")),
            _element(0x0012, b"UI", _padded(IMPLEMENTATION_CLASS_UID, b"\0")),
            _element(0x0013, b"SH", _padded(IMPLEMENTATION_VERSION, b" ")),
            _element(0x0016, b"AE", _padded(source_aet.strip() or "UNKNOWN", b" ")),
        )
    )
    return b"\0" * 128 + b"DICM" + _element(0x0000, b"UL", struct.pack("<I", len(body))) + body


#: What the listener reads of a received header (the rest is read when a series is analysed).
HEADER_KEYWORDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "PatientID",
    "PatientName",
    "SeriesDescription",
    "ImagesInAcquisition",
    "Rows",
    "Columns",
    "BitsAllocated",
    "SamplesPerPixel",
    "NumberOfFrames",
)
#: Poll interval of an association's DUL thread while idle (pynetdicom's default: 1 ms).
#: Each C-STORE response waits for this thread's next poll; 0.2 ms raises a single
#: association's throughput by about 40 % for ~3 % of a core while an association is open.
DUL_POLL_S = 0.0002
HEADER_TAGS = tags_of(HEADER_KEYWORDS)
REQUIRED_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
#: How often an association waiting for the peer checks that the connection is still open.
CONNECTION_CHECK_S = 0.1
#: Longest time between two readings of the spool's free space (bytes written in between
#: are subtracted from the last reading).
FREE_SPACE_REFRESH_S = 1.0
#: Series whose patient and modality the listener remembers (older ones are read again).
SERIES_IDENTITY_CACHE = 1024


@dataclass(frozen=True)
class SeriesIdentity:
    """What every instance of one series must share: the patient and the modality."""

    patient_id: str
    patient_name: str
    modality: str

    @classmethod
    def of(cls, ds: Dataset) -> SeriesIdentity:
        """The identity a data set claims (empty strings for absent attributes)."""
        return cls(
            str(ds.get("PatientID", "") or "").strip(),
            str(ds.get("PatientName", "") or "").strip(),
            str(ds.get("Modality", "") or "").strip().upper(),
        )

    def conflict(self, other: SeriesIdentity) -> str | None:
        """Why ``other`` cannot join a series of this identity (no values named), or None."""
        if (self.patient_id, self.patient_name) != (other.patient_id, other.patient_name):
            return "another patient (Patient ID or Patient's Name differ)"
        if self.modality and other.modality and self.modality != other.modality:
            return "another modality"
        return None


def _same_in_another_syntax(stored: Path, raw: bytes, record: InstanceRecord) -> bool:
    """Whether a re-sent data set equals the stored one, decoded, when the two were sent in
    different transfer syntaxes (their bytes differ; their elements may not)."""
    try:
        old = dcmread(stored)
        if str(old.file_meta.TransferSyntaxUID) == record.transfer_syntax_uid:
            return False
        return bool(old == dcmread(io.BytesIO(raw)))
    except Exception:  # unreadable either way: not shown to be the same
        return False


def content_sha256(raw: bytes) -> str:
    """SHA-256 of a spool file's data set (preamble and file meta information excluded).

    Spool files are written by :func:`file_meta_bytes`: the meta group's length is at byte
    140 (after preamble, prefix and the group-length element's tag, VR and length).
    """
    if len(raw) >= 144 and raw[128:132] == b"DICM":
        start = 144 + struct.unpack("<I", raw[140:144])[0]
        return hashlib.sha256(raw[start:]).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def _dataset_offset(raw: bytes) -> int | None:
    """Offset of the data set after a well-formed file meta group (explicit VR little endian,
    group 0002 only, lengths adding up), or None: then pydicom's reader judges the file."""
    if len(raw) < 144 or raw[128:132] != b"DICM" or raw[132:138] != b"\x02\x00\x00\x00UL":
        return None
    end = 144 + int(struct.unpack("<I", raw[140:144])[0])
    position = 144
    while position < end:
        if position + 8 > len(raw) or raw[position : position + 2] != b"\x02\x00":
            return None
        vr = raw[position + 4 : position + 6]
        if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ"):
            if position + 12 > len(raw):
                return None
            position += 12 + int(struct.unpack("<I", raw[position + 8 : position + 12])[0])
        elif len(vr) == 2 and vr.isalpha() and vr.isupper():
            position += 8 + int(struct.unpack("<H", raw[position + 6 : position + 8])[0])
        else:
            return None
    return end if position == end else None


class ConnectionAwareQueue(queue.Queue[Any]):
    """The queue from an association's DUL to its ACSE that stops waiting once the
    connection is gone.

    pynetdicom's acceptor waits the whole ACSE timeout for an A-ASSOCIATE-RQ even after the
    peer closed the connection or sent bytes that are not a PDU, and holds one of the
    listener's ``maximum_associations`` slots meanwhile: a handful of port probes or
    malformed requests would lock every scanner out for that long. Here a blocking ``get``
    raises :class:`queue.Empty` as soon as the transport is closed or the DUL thread has
    ended (pynetdicom ends it on an undecodable PDU) and nothing is queued.

    Parameters
    ----------
    dul
        The association's DUL service provider.
    previous
        The queue this one replaces (its items are taken over).
    """

    def __init__(self, dul: Any, previous: queue.Queue[Any]) -> None:
        super().__init__()
        self._dul = dul
        while True:
            try:
                self.put(previous.get_nowait())
            except queue.Empty:
                break

    def _closed(self) -> bool:
        """Whether nothing more can arrive: transport closed, or the DUL thread ended."""
        transport = self._dul.socket
        if transport is not None and transport.socket is None:
            return True
        return bool(self._dul._kill_thread) or not self._dul.is_alive()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """As :meth:`queue.Queue.get`; a wait also ends once the connection is closed."""
        if not block:
            return super().get(block=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = CONNECTION_CHECK_S
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            try:
                return super().get(block=True, timeout=step)
            except queue.Empty:
                if self._closed() or (deadline is not None and time.monotonic() >= deadline):
                    return super().get(block=False)


def _expected_pixel_bytes(ds: Dataset) -> int | None:
    """Length uncompressed Pixel Data must have, or None when the image size is not stated.

    Raises
    ------
    StoreError
        0xC000 when Rows, Columns, Bits Allocated, Samples per Pixel or Number of Frames is
        present but not a number (e.g. sent with a wrong VR): the pixels cannot be read.
    """
    if any(kw not in ds for kw in ("Rows", "Columns", "BitsAllocated")):
        return None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise StoreError(
            StoreStatus.CANNOT_UNDERSTAND, f"image size attributes malformed: {exc}"
        ) from exc
    if min(rows, cols, bits, samples, frames) <= 0:
        raise StoreError(
            StoreStatus.CANNOT_UNDERSTAND,
            f"image size attributes malformed: {rows} x {cols} x {frames} frames,"
            f" {samples} samples of {bits} bits",
        )
    pixels = rows * cols * samples * frames
    return (pixels + 7) // 8 if bits == 1 else pixels * (bits // 8)


@dataclass(frozen=True)
class ReceivedHeader:
    """A received instance parsed up to its Pixel Data.

    Attributes
    ----------
    dataset
        Every element before Pixel Data.
    pixel_bytes
        (bytes present, bytes declared) of a native Pixel Data element; ``None`` when there
        is none, or it is encapsulated (compressed), or the transfer syntax is deflated.
    """

    dataset: Dataset
    pixel_bytes: tuple[int, int] | None


def parse_header(raw: bytes, transfer_syntax: str) -> ReceivedHeader:
    """Parse a received file up to its Pixel Data and measure the Pixel Data element.

    Parsing stops before the pixels.  The elements of :data:`HEADER_KEYWORDS` are found by
    walking the element headers (:func:`node.receive.header.scan_header`, a tenth of pydicom's
    reader); a data set the walk does not handle is read by pydicom.  Either way the
    elements kept are decoded here, so a malformed one is refused now.

    Raises
    ------
    StoreError
        0xC000 when the bytes are not a parsable DICOM data set.
    """
    start = _dataset_offset(raw)
    scanned = None if start is None else scan_header(raw, start, transfer_syntax, HEADER_TAGS)
    if scanned is not None:
        try:
            for _ in scanned[0]:  # decode the few elements kept: a malformed one fails here
                pass
        except Exception:  # pydicom's reader below gives the reason
            scanned = None
    if scanned is not None:
        return ReceivedHeader(*scanned)
    return read_header_with_pydicom(raw, transfer_syntax)


def read_header_with_pydicom(raw: bytes, transfer_syntax: str) -> ReceivedHeader:
    """:func:`parse_header` by pydicom's reader (any transfer syntax, the judge of malformed
    input).

    Raises
    ------
    StoreError
        0xC000 when the bytes are not a parsable DICOM data set.
    """
    stream = io.BytesIO(raw)
    try:
        ds = dcmread(stream, stop_before_pixels=True, specific_tags=list(HEADER_KEYWORDS))
        for _ in ds:  # decode the few elements read now: a malformed one fails here
            pass
    except Exception as exc:  # pydicom raises many types on malformed input (e.g. bad VRs)
        raise StoreError(
            StoreStatus.CANNOT_UNDERSTAND, withhold_values(f"data set cannot be parsed: {exc}")
        ) from exc
    measured: tuple[int, int] | None = None
    position = stream.tell()
    header = raw[position : position + 12]
    if transfer_syntax not in DEFLATED_SYNTAXES and len(header) >= 8:
        little = transfer_syntax != EXPLICIT_BIG_ENDIAN
        order = "<" if little else ">"
        group, element = struct.unpack(order + "HH", header[:4])
        if (group, element) == (0x7FE0, 0x0010):
            if transfer_syntax == IMPLICIT_LITTLE_ENDIAN:
                length, header_size = struct.unpack("<I", header[4:8])[0], 8
            else:
                length, header_size = (
                    struct.unpack(order + "I", header[8:12].rjust(4, b"\0"))[0],
                    12,
                )
            if length != UNDEFINED_LENGTH:
                measured = (len(raw) - position - header_size, length)
    return ReceivedHeader(ds, measured)


def validate_instance(
    received: ReceivedHeader, affected_sop_class: str, affected_sop_instance: str
) -> None:
    """Check that a received data set can be stored and analysed later.

    Raises
    ------
    StoreError
        With the status to answer and the reason.
    """
    ds = received.dataset
    missing = [kw for kw in REQUIRED_KEYWORDS if kw not in ds]
    if missing:
        raise StoreError(StoreStatus.CANNOT_UNDERSTAND, f"missing {', '.join(missing)}")
    try:
        sop_class = str(ds.SOPClassUID)
        sop_uid = str(ds.SOPInstanceUID)
        safe_uid(str(ds.StudyInstanceUID))
        safe_uid(str(ds.SeriesInstanceUID))
        safe_uid(sop_uid)
    except AttributeError as exc:
        raise StoreError(
            StoreStatus.CANNOT_UNDERSTAND, f"missing required attribute: {exc}"
        ) from exc
    except ValueError as exc:
        raise StoreError(StoreStatus.CANNOT_UNDERSTAND, str(exc)) from exc
    except Exception as exc:  # pydicom raises many types on malformed input
        raise StoreError(
            StoreStatus.CANNOT_UNDERSTAND, withhold_values(f"data set cannot be parsed: {exc}")
        ) from exc
    if sop_class != affected_sop_class:
        raise StoreError(
            StoreStatus.DATASET_MISMATCH,
            f"SOP Class {sop_class} differs from request {affected_sop_class}",
        )
    if sop_uid != affected_sop_instance:
        raise StoreError(StoreStatus.DATASET_MISMATCH, "SOP Instance UID differs from the request")
    if received.pixel_bytes is not None:
        expected = _expected_pixel_bytes(ds)
        available, declared = received.pixel_bytes
        if expected is not None and declared < expected:
            raise StoreError(
                StoreStatus.CANNOT_UNDERSTAND,
                f"Pixel Data truncated: {declared} bytes for an image of {expected}",
            )
        if available < declared:
            raise StoreError(
                StoreStatus.CANNOT_UNDERSTAND,
                f"Pixel Data truncated: {available} of {declared} bytes",
            )


def _expected_count(ds: Dataset) -> int | None:
    """Number of instances the series will hold, when the header states it reliably."""
    if str(ds.SOPClassUID) in ENHANCED_SOP_CLASSES:
        return None
    value = ds.get("ImagesInAcquisition")
    try:
        count = int(value) if value not in (None, "") else 0
    except (TypeError, ValueError):
        return None
    return count if 0 < count <= 10000 else None


def instance_record(
    ds: Dataset, path: Path, size_bytes: int, calling_aet: str | None, transfer_syntax: str
) -> InstanceRecord:
    """The catalog record of a stored instance, from its header."""
    return InstanceRecord(
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.SeriesInstanceUID),
        study_instance_uid=str(ds.StudyInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax_uid=transfer_syntax,
        path=path,
        size_bytes=size_bytes,
        calling_aet=calling_aet,
        modality=str(ds.get("Modality", "")) or None,
        series_description=str(ds.get("SeriesDescription", "")) or None,
        expected_count=_expected_count(ds),
    )


def reconcile_spool(spool_dir: Path, catalog: Catalog) -> tuple[int, int]:
    """Record spool files the catalog does not know; set aside unreadable ones.

    The spool file is fsynced before a C-STORE is acknowledged, the catalog row after it
    with ``synchronous=NORMAL``: a power loss can lose the row, never the file. This runs at
    start, before the listener accepts associations. A partial file left by a crash during
    a write (never acknowledged) fails to parse and is moved to ``spool/../quarantine``.

    Returns
    -------
    tuple of int
        (files recovered, files quarantined).
    """
    known = catalog.known_paths()
    recovered = quarantined = 0
    for path in sorted(spool_dir.rglob("*.dcm")) if spool_dir.exists() else []:
        if str(path) in known:
            continue
        try:
            raw = path.read_bytes()
            meta = dcmread(path, stop_before_pixels=True).file_meta
            transfer_syntax = str(meta.TransferSyntaxUID)
            received = parse_header(raw, transfer_syntax)
            ds = received.dataset
            validate_instance(received, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
            calling = str(meta.get("SourceApplicationEntityTitle", "")).strip() or None
            record = instance_record(ds, path, len(raw), calling, transfer_syntax)
        except Exception as exc:
            target = spool_dir.parent / "quarantine" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
            quarantined += 1
            catalog.record_event("spool_quarantined", None, f"{path.name}: {exc}")
            continue
        catalog.record_instance(record, now=path.stat().st_mtime)
        catalog.record_event(
            "spool_recovered", record.series_instance_uid, f"{path.name} recorded at start"
        )
        recovered += 1
    if recovered or quarantined:
        logger.warning(
            "spool reconciliation: %d files recorded, %d quarantined", recovered, quarantined
        )
    return recovered, quarantined


class StorageListener:
    """The node's Storage and Verification SCP.

    Parameters
    ----------
    settings
        AE title, address, allowed calling AE titles, spool folder, free-space limit.
    catalog
        Where each stored instance is recorded.
    on_stored
        Called after an instance is stored and recorded (from the association thread).
    audit
        The audit trail of associations and refusals.
    on_released
        Called with the series UIDs an association carried, once it is released (A-RELEASE)
        and no other open association carries them (from the association thread; must not
        block).
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        on_stored: Callable[[SeriesState, Dataset], None],
        audit: AuditLog | None = None,
        on_released: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._on_stored = on_stored
        self._audit = audit
        self._on_released = on_released
        self.associations = AssociationLedger()
        withhold_values_in_logs()
        self._server: AdmittingServer | None = None
        self._thread: threading.Thread | None = None
        self.ae = NoDelayAE(ae_title=settings.ae_title)
        self.ae.maximum_pdu_size = 0  # no limit: fewer, larger P-DATA PDUs
        self.ae.network_timeout = 60
        self.ae.acse_timeout = 30
        self.ae.dimse_timeout = 60
        self.ae.maximum_associations = settings.listener.max_associations
        self.ae.require_called_aet = settings.listener.require_called_aet
        self._identities: OrderedDict[str, SeriesIdentity] = OrderedDict()
        self._identities_lock = threading.Lock()
        self._free_space = FreeSpaceGauge(settings.spool_dir, FREE_SPACE_REFRESH_S)
        if settings.allowed_calling_aets:
            self.ae.require_calling_aet = list(settings.allowed_calling_aets)
        self.ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the listener is bound to."""
        if self._server is None:
            raise RuntimeError("listener not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self, shared_socket: socket.socket | None = None) -> tuple[str, int]:
        """Start accepting associations in a background thread; returns the bound address.

        Parameters
        ----------
        shared_socket
            A listening socket to accept on (shared with other receiver processes,
            node.receive.receivers) instead of binding ``listen_host:listen_port``.
        """
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, self._handle_echo),
            (evt.EVT_CONN_OPEN, self._tune_association),
            (evt.EVT_ACCEPTED, self._log_association, ["accepted"]),
            (evt.EVT_REJECTED, self._log_association, ["rejected"]),
            (evt.EVT_RELEASED, self._association_released),
            (evt.EVT_ABORTED, self._association_broken, ["aborted"]),
            (evt.EVT_CONN_CLOSE, self._association_broken, ["connection closed"]),
        ]
        address = (self._settings.listen_host, self._settings.listen_port)
        tls = self._settings.tls
        server_class: type[AdmittingServer] = AdmittingServer
        if shared_socket is not None:
            server_class = type("SharedSocket", (SharedSocketServer,),
                                {"shared_socket": shared_socket})
        server = self.ae.make_server(
            address,
            evt_handlers=handlers,
            server_class=server_class,
            ssl_context=server_context(tls) if tls.listener else None,
        )
        assert isinstance(server, AdmittingServer)
        server.contexts = cheap_copy_contexts(server.contexts)  # copied per association
        listener = self._settings.listener
        server.policy = AdmissionPolicy(
            request_timeout_s=listener.request_timeout_s,
            max_waiting_per_address=listener.max_waiting_per_address,
            max_associations_per_address=listener.max_associations_per_address,
        )
        server.on_refused = self._refused_by_admission
        self._server = server
        self.ae._servers.append(server)  # pynetdicom's shutdown() expects its own bookkeeping
        self._thread = threading.Thread(
            target=server.serve_forever, name="dicom-listener", daemon=True
        )
        self._thread.start()
        logger.info(
            "DICOM listener %s on %s:%d%s",
            self._settings.ae_title,
            *self.address,
            " (TLS" + (", client certificate required)" if tls.require_client_certificate
                       else ")") if tls.listener else "",
        )
        return self.address

    def stop(self) -> None:
        """Stop accepting associations and close the socket."""
        if self._server is not None:
            self._server.shutdown()  # also closes the socket
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ------------------------------------------------------------------ handlers

    def _log_association(self, event: Any, outcome: str) -> None:
        requestor = event.assoc.requestor
        # The title the peer asked for (A-ASSOCIATE-RQ); the acceptor's own title when absent.
        called = str(getattr(requestor.primitive, "called_ae_title", None)
                     or event.assoc.acceptor.ae_title).strip()
        logger.info(
            "association %s: calling AE %s from %s:%s",
            outcome,
            requestor.ae_title,
            requestor.address,
            requestor.port,
        )
        if self._audit is not None:
            self._audit.record(
                "association",
                outcome=outcome,
                calling_ae=requestor.ae_title,
                called_ae=called,
                address=requestor.address,
                port=requestor.port,
            )
        if outcome == "rejected":
            self._catalog.record_event(
                "association_rejected",
                None,
                # AE titles name devices, not patients: shown unquoted so they stay readable.
                f"calling AE {requestor.ae_title.strip() or '(blank)'} to called AE"
                f" {called or '(blank)'}"
                f" from {requestor.address} rejected",
            )

    def _refused_by_admission(self, address: str, reason: str) -> None:
        """A request the admission rejected before it became an association (per-address
        limit): recorded like pynetdicom's rejections."""
        if self._audit is not None:
            self._audit.record("association", outcome="rejected", address=address,
                               reason=reason)
        self._catalog.record_event(
            "association_rejected", None, f"association from {address} rejected: {reason}"
        )

    def _association_released(self, event: Any) -> None:
        """A-RELEASE: the series the association carried that no other one carries are done."""
        released = self.associations.close(event.assoc)
        if released and self._on_released is not None:
            logger.debug("association from %s released series %s",
                         event.assoc.requestor.ae_title, released)
            self._on_released(released)

    def _association_broken(self, event: Any, how: str) -> None:
        """A-ABORT or connection lost (also after a release): forget the association; its
        series are left to the quiet-time fallback."""
        broken = self.associations.close(event.assoc)
        if broken:
            logger.info("association from %s ended without release (%s) after storing %d"
                        " series: their completion waits for the quiet time",
                        event.assoc.requestor.ae_title, how, len(broken))

    def _tune_association(self, event: Any) -> None:
        """Shorten the DUL's idle poll and make its ACSE queue notice a closed connection.

        Both are private internals of pynetdicom 3.0 (``DULServiceProvider._run_loop_delay``
        and ``.to_user_queue``, pinned in deploy/constraints.txt);
        tests/node/test_pynetdicom_internals.py fails when an upgrade changes them or
        what the listener assumes of them.
        """
        dul = event.assoc.dul
        dul._run_loop_delay = DUL_POLL_S
        dul.to_user_queue = ConnectionAwareQueue(dul, dul.to_user_queue)

    def _handle_echo(self, event: Any) -> int:
        """C-ECHO: 0x0000 Success."""
        return 0x0000

    def _handle_store(self, event: Any) -> Dataset:
        """C-STORE: store durably, record, then answer (see module docstring for statuses)."""
        calling = str(event.assoc.requestor.ae_title)
        request = event.request
        status = Dataset()
        try:
            self._store(event, calling)
            status.Status = StoreStatus.SUCCESS
            return status
        except StoreError as exc:
            rejected = exc
        except Exception as exc:
            logger.exception("unexpected failure storing %s", request.AffectedSOPInstanceUID)
            rejected = StoreError(StoreStatus.PROCESSING_FAILURE,
                                  withhold_values(f"processing failure: {exc}"))
        logger.warning(
            "C-STORE of %s from %s refused (0x%04X): %s",
            request.AffectedSOPInstanceUID,
            calling,
            rejected.status,
            rejected.reason,
        )
        try:
            self._catalog.record_event(
                "store_refused",
                None,
                f"0x{int(rejected.status):04X} {request.AffectedSOPInstanceUID} from {calling}:"
                f" {rejected.reason}",
            )
        except Exception:  # the catalog itself may be what failed
            logger.exception("could not record refusal")
        if self._audit is not None:
            self._audit.record(
                "instance_refused",
                sop_instance_uid=str(request.AffectedSOPInstanceUID),
                calling_ae=calling,
                status=f"0x{int(rejected.status):04X}",
                reason=rejected.reason,
            )
        status.Status = int(rejected.status)
        status.ErrorComment = rejected.reason[:ERROR_COMMENT_MAX]
        return status

    def _store(self, event: Any, calling: str) -> None:
        settings = self._settings
        if self._free_space.below(settings.min_free_disk_mb):
            raise StoreError(StoreStatus.OUT_OF_RESOURCES, "node disk space below limit")
        request = event.request
        transfer_syntax = str(event.context.transfer_syntax)
        raw = file_meta_bytes(
            str(request.AffectedSOPClassUID),
            str(request.AffectedSOPInstanceUID),
            transfer_syntax,
            calling,
        ) + event.encoded_dataset(include_meta=False)
        received = parse_header(raw, transfer_syntax)
        validate_instance(
            received, str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID)
        )
        ds = received.dataset
        path = instance_path(
            settings.spool_dir,
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.SOPInstanceUID),
        )
        # Everything that reads the header happens before the write: a refusal leaves no file.
        record = instance_record(ds, path, len(raw), calling, transfer_syntax)
        identity = SeriesIdentity.of(ds)
        replaced = self._check_duplicate(record, raw, calling)
        self._check_series(record, identity, replaced)
        replacing = path.exists()
        try:
            write_new_or_replace(path, raw)
            self._free_space.consumed(len(raw))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(StoreStatus.OUT_OF_RESOURCES, "node disk full") from exc
            raise StoreError(
                StoreStatus.OUT_OF_RESOURCES, f"cannot write spool: {exc.strerror}"
            ) from exc
        try:
            state = self._catalog.record_instance(record)
        except Exception as exc:
            if not replacing:  # else the file is the re-sent copy of a recorded instance
                with contextlib.suppress(OSError):
                    path.unlink()
            raise StoreError(StoreStatus.OUT_OF_RESOURCES, f"catalog unavailable: {exc}") from exc
        if replaced is not None and replaced != path:
            with contextlib.suppress(OSError):
                replaced.unlink()  # the replaced copy was filed under another series
        self._remember(record.series_instance_uid, identity)
        self.associations.carry(event.assoc, record.series_instance_uid)
        logger.debug(
            "stored %s series %s (%d/%s)",
            record.sop_instance_uid,
            record.series_instance_uid,
            state.instance_count,
            state.expected_count,
        )
        self._on_stored(state, ds)

    def _check_duplicate(self, record: InstanceRecord, raw: bytes, calling: str) -> Path | None:
        """Apply the duplicate policy to an instance whose SOP Instance UID is stored.

        Returns the spool path of the stored copy the new one replaces (None: not a
        replacement, or an identical re-send).

        Raises
        ------
        StoreError
            0x0111 when the content differs and the policy keeps the first.
        """
        found = self._catalog.instance_location(record.sop_instance_uid)
        if found is None:
            return None
        old_path, old_series = found
        new_hash = content_sha256(raw)
        try:
            old_hash = content_sha256(old_path.read_bytes())
        except OSError as exc:  # the stored copy is gone: the re-sent one takes its place
            logger.warning("instance %s re-sent; its stored copy is unreadable (%s)",
                           record.sop_instance_uid, exc.strerror)
            return None
        if old_hash == new_hash or _same_in_another_syntax(old_path, raw, record):
            return None
        policy = self._settings.listener.duplicate_policy
        fields = {
            "sop_instance_uid": record.sop_instance_uid,
            "series_instance_uid": record.series_instance_uid,
            "previous_series_instance_uid": old_series,
            "calling_ae": calling,
            "previous_sha256": old_hash,
            "new_sha256": new_hash,
            "policy": str(policy),
        }
        if policy == DuplicatePolicy.KEEP_FIRST:
            if self._audit is not None:
                self._audit.record("instance_duplicate_refused", **fields)
            raise StoreError(
                StoreStatus.DUPLICATE_SOP_INSTANCE,
                "SOP Instance UID already stored with other content; first kept",
            )
        if self._audit is not None:
            self._audit.record("instance_replaced", **fields)
        self._catalog.record_event(
            "instance_replaced",
            record.series_instance_uid,
            f"{record.sop_instance_uid} from {calling} replaced the stored instance"
            f" (sha256 {old_hash[:12]} -> {new_hash[:12]})",
        )
        logger.warning("instance %s replaced by other content from %s (policy replace)",
                       record.sop_instance_uid, calling)
        return old_path

    def _series_identity(self, series_uid: str, exclude: Path | None) -> SeriesIdentity | None:
        """The patient and modality of a stored series (None: the series holds nothing else)."""
        with self._identities_lock:
            cached = self._identities.get(series_uid)
        if cached is not None and exclude is None:
            return cached
        for path in self._catalog.instance_paths(series_uid):
            if exclude is not None and path == exclude:
                continue
            try:
                ds = dcmread(path, stop_before_pixels=True,
                             specific_tags=["PatientID", "PatientName", "Modality"])
            except Exception:  # a spool file that cannot be read judges nothing
                continue
            return SeriesIdentity.of(ds)
        return None

    def _check_series(
        self, record: InstanceRecord, identity: SeriesIdentity, replaced: Path | None
    ) -> None:
        """Refuse an instance that would mix two patients or modalities in one series."""
        known = self._series_identity(record.series_instance_uid, replaced)
        if known is None:
            return
        reason = known.conflict(identity)
        if reason is not None:
            raise StoreError(
                StoreStatus.SERIES_CONFLICT,
                f"series already holds {reason}"[:ERROR_COMMENT_MAX],
            )

    def _remember(self, series_uid: str, identity: SeriesIdentity) -> None:
        with self._identities_lock:
            self._identities[series_uid] = identity  # it passed _check_series
            self._identities.move_to_end(series_uid)
            while len(self._identities) > SERIES_IDENTITY_CACHE:
                self._identities.popitem(last=False)
