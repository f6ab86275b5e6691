"""The listener's C-STORE and C-ECHO handlers: what it stores, and what it answers.

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
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread

from node.catalog.audit import AuditLog, withhold_values
from node.catalog.catalog import Catalog
from node.catalog.series import InstanceRecord, SeriesState
from node.catalog.spool import FreeSpaceGauge, instance_path, write_new_or_replace
from node.network.dimse import StoreError, StoreStatus
from node.receive.instance import (
    content_sha256,
    file_meta_bytes,
    instance_record,
    parse_header,
    validate_instance,
)
from node.settings import DuplicatePolicy, Settings

logger = logging.getLogger(__name__)

ERROR_COMMENT_MAX = 64
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


class InstanceStorage:
    """The C-STORE and C-ECHO handlers of the listener.

    Parameters
    ----------
    settings
        Spool folder, free-space limit, duplicate policy.
    catalog
        Where each stored instance is recorded.
    on_stored
        Called with the association, the series' state and the header once an instance is
        stored and recorded (from the association thread).
    audit
        The audit trail of refusals and replaced instances.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        on_stored: Callable[[Any, SeriesState, Dataset], None],
        audit: AuditLog | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._on_stored = on_stored
        self._audit = audit
        self._identities: OrderedDict[str, SeriesIdentity] = OrderedDict()
        self._identities_lock = threading.Lock()
        self._free_space = FreeSpaceGauge(settings.spool_dir, FREE_SPACE_REFRESH_S)

    def handle_echo(self, event: Any) -> int:
        """C-ECHO: 0x0000 Success."""
        return 0x0000

    def handle_store(self, event: Any) -> Dataset:
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
        logger.debug(
            "stored %s series %s (%d/%s)",
            record.sop_instance_uid,
            record.series_instance_uid,
            state.instance_count,
            state.expected_count,
        )
        self._on_stored(event.assoc, state, ds)

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
