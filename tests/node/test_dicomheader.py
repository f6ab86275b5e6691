"""The listener's fast header scan answers exactly as pydicom does, or leaves the bytes to it."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from models.phantoms.dicom_series import StudyInfo, t1map_series_datasets
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from node.dicomheader import UnsupportedEncoding, scan_header
from node.dimse import StoreError
from node.listener import _WANTED_TAGS, HEADER_KEYWORDS, file_meta_bytes, parse_header
from tests.hardening.corpus import build_corpus

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
FAST_ERRORS = (UnsupportedEncoding, struct.error, UnicodeDecodeError)


def _as_received(ds: Dataset, transfer_syntax: str) -> tuple[bytes, int]:
    """The bytes the listener builds for a received data set, and the data set's offset."""
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = transfer_syntax == IMPLICIT
    write_dataset(out, ds)
    meta = file_meta_bytes(str(ds.get("SOPClassUID", MR)), str(ds.get("SOPInstanceUID", "1.2")),
                           transfer_syntax, "TEST")
    return meta + out.getvalue(), len(meta)


def _values(ds: Dataset) -> dict[str, str]:
    return {kw: str(ds[kw].value) for kw in HEADER_KEYWORDS if kw in ds}


def _both(raw: bytes, offset: int, transfer_syntax: str) -> tuple[object, object]:
    """(pydicom's answer, the fast path's answer): values and pixel bytes, or the error."""
    answers = []
    for dataset_offset in (None, offset):
        try:
            header = parse_header(raw, transfer_syntax, dataset_offset)
        except StoreError as exc:
            answers.append(("refused", int(exc.status)))
        else:
            answers.append((_values(header.dataset), header.pixel_bytes))
    return answers[0], answers[1]


def _t1_slices(seed: int, vendor: str) -> list[Dataset]:
    rng = np.random.default_rng(seed)
    heart = make_heart_case(rng, field_strength_t=3.0, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=3.0, levels=("mid",), heart=heart)
    return t1map_series_datasets(slices, vendor=vendor, field_strength_t=3.0, rng=rng,
                                 study=StudyInfo.synthetic(seed))


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
@pytest.mark.parametrize("transfer_syntax", [EXPLICIT, IMPLICIT])
def test_phantom_headers_are_scanned_and_agree_with_pydicom(
    vendor: str, transfer_syntax: str
) -> None:
    [ds] = _t1_slices(31, vendor)
    raw, offset = _as_received(ds, transfer_syntax)
    scan = scan_header(raw, offset, transfer_syntax, _WANTED_TAGS)  # not left to pydicom
    assert scan.pixel_data_offset is not None and scan.values["Rows"] == ds.Rows
    slow, fast = _both(raw, offset, transfer_syntax)
    assert fast == slow
    assert slow[1] == (len(ds.PixelData), len(ds.PixelData))  # type: ignore[index]


def test_sequences_of_every_length_encoding_are_skipped() -> None:
    [ds] = _t1_slices(32, "philips")  # Real World Value Mapping: a sequence before the pixels
    item = Dataset()
    item.CodeValue = "X"
    item.CodingSchemeDesignator = "99TEST"
    undefined = Dataset()
    undefined.CodeValue = "Y"
    undefined.is_undefined_length_sequence_item = True
    ds.add_new(0x00400260, "SQ", [item, undefined])  # defined length, mixed items
    ds.add_new(0x00400275, "SQ", [undefined, undefined])
    ds[0x00400275].is_undefined_length = True  # undefined length
    ds.add_new(0x00291010, "UN", b"\0" * 10)  # vendor blob, defined length
    raw, offset = _as_received(ds, EXPLICIT)
    assert b"\xfe\xff\xdd\xe0" in raw and b"\xfe\xff\x0d\xe0" in raw
    slow, fast = _both(raw, offset, EXPLICIT)
    assert fast == slow and slow[1] is not None  # type: ignore[index]
    assert scan_header(raw, offset, EXPLICIT, _WANTED_TAGS).pixel_data_offset is not None


def test_encodings_it_does_not_read_go_to_pydicom() -> None:
    [ds] = _t1_slices(33, "siemens")
    raw, offset = _as_received(ds, EXPLICIT)
    with pytest.raises(UnsupportedEncoding, match="transfer syntax"):
        scan_header(raw, offset, "1.2.840.10008.1.2.2", _WANTED_TAGS)  # big endian
    ds.SeriesDescription = "T1 MAP\\NATIVE"  # several values: pydicom decides
    raw, offset = _as_received(ds, EXPLICIT)
    with pytest.raises(UnsupportedEncoding, match="several values"):
        scan_header(raw, offset, EXPLICIT, _WANTED_TAGS)
    assert _both(raw, offset, EXPLICIT)[0] == _both(raw, offset, EXPLICIT)[1]
    ds.SeriesDescription = "T1 Karte für Ärzte"
    ds.SpecificCharacterSet = "ISO_IR 100"
    raw, offset = _as_received(ds, EXPLICIT)
    slow, fast = _both(raw, offset, EXPLICIT)
    assert fast == slow and slow[0]["SeriesDescription"] == "T1 Karte für Ärzte"  # type: ignore[index]


def test_bad_input_corpus_gets_the_same_answer_on_both_paths(tmp_path: Path) -> None:
    compared = 0
    for case in build_corpus(tmp_path):
        for path in case.paths:
            raw_file = path.read_bytes()
            try:
                meta_ds = dcmread(path, stop_before_pixels=True, force=True)
                transfer_syntax = str(meta_ds.file_meta.TransferSyntaxUID)
                start = 132 + 12 + struct.unpack("<I", raw_file[140:144])[0]
            except Exception:
                continue  # no usable file meta: the listener never sees such bytes
            meta = file_meta_bytes(MR, "1.2.3", transfer_syntax, "TEST")
            raw = meta + raw_file[start:]
            slow, fast = _both(raw, len(meta), transfer_syntax)
            if slow[0] != "refused":
                assert fast == slow, case.name
            compared += 1
    assert compared >= 10


_RAW_TEMPLATE = [
    (0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.4\0"),
    (0x00080018, "UI", b"1.2.3.4\0"),
    (0x00080060, "CS", b"MR"),
    (0x0008103E, "LO", b"T1 MAP"),
    (0x0020000D, "UI", b"1.2.3\0"),
    (0x0020000E, "UI", b"1.2.3.5\0"),
    (0x00201002, "IS", b"3 "),
    (0x00280002, "US", b"\x01\x00"),
    (0x00280010, "US", b"\x04\x00"),
    (0x00280011, "US", b"\x04\x00"),
    (0x00280100, "US", b"\x10\x00"),
    (0x7FE00010, "OW", b"\x00" * 32),
]


def _template_bytes(implicit: bool) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = implicit
    ds = Dataset()
    for tag, vr, value in _RAW_TEMPLATE:
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, implicit, True)
    write_dataset(out, ds)
    return out.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    implicit=st.booleans(),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
def test_corrupted_headers_never_get_a_different_answer(
    implicit: bool, edits: list[tuple[int, int]], cut: int | None
) -> None:
    body = bytearray(_template_bytes(implicit))
    for position, value in edits:
        body[position % len(body)] = value
    if cut is not None:
        del body[cut:]
    transfer_syntax = IMPLICIT if implicit else EXPLICIT
    meta = file_meta_bytes(MR, "1.2.3.4", transfer_syntax, "TEST")
    raw = meta + bytes(body)
    slow, fast = _both(raw, len(meta), transfer_syntax)
    if slow[0] != "refused" and fast[0] != "refused":
        assert fast == slow
