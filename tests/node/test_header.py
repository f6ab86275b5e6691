"""The listener's header walk (node.receive.header) gives what pydicom's reader gives, or steps
aside."""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_files
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.t1map import make_t1map_stack
from node.network.dimse import StoreError
from node.receive.header import scan_header
from node.receive.instance import (
    HEADER_KEYWORDS,
    HEADER_TAGS,
    ReceivedHeader,
    file_meta_bytes,
    parse_header,
    read_header_with_pydicom,
)


def _received(ds: Dataset, transfer_syntax: str) -> bytes:
    """The bytes the listener stores for a data set received in ``transfer_syntax``."""
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = transfer_syntax == str(ImplicitVRLittleEndian)
    write_dataset(buffer, ds)
    meta = file_meta_bytes(str(ds.SOPClassUID), str(ds.SOPInstanceUID), transfer_syntax, "SCU")
    return meta + buffer.getvalue()


def _same(raw: bytes, transfer_syntax: str) -> None:
    start = 144 + struct.unpack("<I", raw[140:144])[0]
    scanned = scan_header(raw, start, transfer_syntax, HEADER_TAGS)
    assert scanned is not None
    reference = read_header_with_pydicom(raw, transfer_syntax)
    for keyword in HEADER_KEYWORDS:
        assert scanned[0].get(keyword) == reference.dataset.get(keyword), keyword
    assert scanned[1] == reference.pixel_bytes


@pytest.fixture(scope="module")
def instance() -> Dataset:
    rng = np.random.default_rng(3)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, levels=("mid",), shape=(64, 64))
    return t1map_series_datasets(slices, vendor="siemens", field_strength_t=1.5, rng=rng)[0]


@pytest.mark.parametrize(
    "syntax", ["1.2.840.10008.1.2.1", str(ImplicitVRLittleEndian)]
)
def test_walk_matches_pydicom_with_nested_undefined_length_sequences(
    instance: Dataset, syntax: str
) -> None:
    ds = copy.deepcopy(instance)
    inner = Dataset()
    inner.CodeValue = "T1"
    inner.CodingSchemeDesignator = "99TEST"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, copy.deepcopy(item)])
    ds["ReferencedImageSequence"].is_undefined_length = True
    for it in ds.ReferencedImageSequence:
        it.is_undefined_length_sequence_item = True
    ds.PatientName = "Doe^Jane"
    raw = _received(ds, syntax)
    _same(raw, syntax)
    received = parse_header(raw, syntax)
    assert str(received.dataset.PatientName) == "Doe^Jane"
    assert received.pixel_bytes == (64 * 64 * 2, 64 * 64 * 2)


def test_walk_steps_aside_for_big_endian_and_truncation(instance: Dataset) -> None:
    raw = _received(instance, "1.2.840.10008.1.2.1")
    start = 144 + struct.unpack("<I", raw[140:144])[0]
    assert scan_header(raw, start, str(ExplicitVRBigEndian), HEADER_TAGS) is None
    cut = raw[: start + 40]  # inside an element's value
    assert scan_header(cut, start, "1.2.840.10008.1.2.1", HEADER_TAGS) is None

    def outcome(read: Callable[[bytes, str], ReceivedHeader], data: bytes) -> object:
        try:
            got = read(data, "1.2.840.10008.1.2.1")
        except StoreError as exc:
            return ("refused", exc.status)
        return ([got.dataset.get(k) for k in HEADER_KEYWORDS], got.pixel_bytes)

    for length in (5, 40, 200):  # pydicom judges what the walk cannot, as before the walk
        cut = raw[: start + length]
        assert outcome(parse_header, cut) == outcome(read_header_with_pydicom, cut)


def test_walk_matches_pydicom_on_its_test_files() -> None:
    """Real-world files of every kind shipped with pydicom (vendors, syntaxes, oddities)."""
    walked = 0
    for name in get_testdata_files("*.dcm"):
        path = Path(name)
        try:
            meta = dcmread(path, stop_before_pixels=True).file_meta
            syntax = str(meta.TransferSyntaxUID)
        except Exception:  # no meta, or not readable by pydicom: nothing to compare
            continue
        data = path.read_bytes()
        if data[128:132] != b"DICM":
            continue
        body = data[144 + struct.unpack("<I", data[140:144])[0] :]
        raw = file_meta_bytes("1.2.3", "1.2.3.4", syntax, "SCU") + body
        start = 144 + struct.unpack("<I", raw[140:144])[0]
        scanned = scan_header(raw, start, syntax, HEADER_TAGS)
        if scanned is None:
            continue
        try:
            reference = read_header_with_pydicom(raw, syntax)
        except StoreError:
            continue  # pydicom refuses it: parse_header falls back to pydicom and refuses
        for keyword in HEADER_KEYWORDS:
            try:
                expected = reference.dataset.get(keyword)
            except Exception:
                continue
            assert scanned[0].get(keyword) == expected, (path.name, keyword)
        assert scanned[1] == reference.pixel_bytes, path.name
        walked += 1
    assert walked >= 50
