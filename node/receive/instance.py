"""A received instance as bytes: the file meta information written before it, its header
parsed up to the Pixel Data, the checks it must pass before it is stored, and its catalog
record.

Pure functions of the received bytes (no network, no spool, no catalog): the listener's
C-STORE handler (:mod:`node.receive.storage`) and the spool recovery at start
(:mod:`node.receive.spool_recovery`) both judge an instance through them.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread

from node.catalog.audit import withhold_values
from node.catalog.series import InstanceRecord
from node.catalog.spool import safe_uid
from node.network.dimse import StoreError, StoreStatus
from node.receive.header import scan_header, tags_of

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
HEADER_TAGS = tags_of(HEADER_KEYWORDS)
REQUIRED_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


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
    return expected_count(str(ds.SOPClassUID), ds.get("ImagesInAcquisition"))


def expected_count(sop_class_uid: str, value: str | int | None) -> int | None:
    """The instance count an ImagesInAcquisition ``value`` announces, when it is a reliable one.

    None for enhanced (multi-frame) objects, whose count is of frames, and for a missing,
    unreadable or implausible value (the Orthanc plugin reads the same attribute through
    Orthanc's REST API: node.orthanc.counting).
    """
    if sop_class_uid in ENHANCED_SOP_CLASSES:
        return None
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
