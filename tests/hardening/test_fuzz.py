"""Fuzzing, bounded in time: the dataset handling raises only its documented errors, and
random or mutated PDUs on raw sockets neither crash the listener nor stop it storing."""

from __future__ import annotations

import contextlib
import copy
import io
import random
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from models.phantoms.dicom_noncardiac import non_cardiac_mr_series_datasets
from models.phantoms.dicom_study import StudyInfo
from node.inputs.loader import LoadError, load_series
from node.network.dimse import StoreError
from node.receive.instance import instance_record, parse_header, validate_instance
from tests.hardening.util import StreamResult, send_stream, sop_uid, write_brain_series
from tests.netutil import NodeProcess

# Hypothesis keeps a cache beside the working directory (the repository) unless told otherwise.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "cmr-node-hypothesis"))

FUZZ_EXAMPLES = 150
PDU_FUZZ_BUDGET_S = 15.0
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
VERIFICATION = "1.2.840.10008.1.1"


def _series() -> list[Dataset]:
    return non_cardiac_mr_series_datasets(study=StudyInfo.synthetic(5), n_slices=3,
                                          shape=(16, 16))


SERIES = _series()


def _encoded(ds: Dataset, implicit: bool) -> bytes:
    """The data set as a listener receives it, file meta included (as the listener builds)."""
    out = io.BytesIO()
    copy_ = copy.deepcopy(ds)
    copy_.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    )
    copy_.save_as(out, enforce_file_format=True)
    return out.getvalue()


ENCODED = {implicit: _encoded(SERIES[0], implicit) for implicit in (False, True)}


def _receive(raw: bytes, syntax: str) -> None:
    """What the listener does with received bytes before writing them."""
    received = parse_header(raw, syntax)
    ds = received.dataset
    validate_instance(received, MR_IMAGE_STORAGE, str(SERIES[0].SOPInstanceUID))
    instance_record(ds, Path("/nonexistent"), len(raw), "FUZZ", syntax)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    implicit=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    insert=st.one_of(st.none(), st.tuples(st.integers(0, 10**6), st.binary(max_size=16))),
)
def test_received_bytes_raise_only_store_errors(
    implicit: bool,
    flips: list[tuple[int, int]],
    cut: int | None,
    insert: tuple[int, bytes] | None,
) -> None:
    raw = bytearray(ENCODED[implicit])
    start = 132  # keep the preamble and DICM prefix: the listener writes those itself
    for position, value in flips:
        raw[start + position % (len(raw) - start)] = value
    if insert is not None:
        at = start + insert[0] % (len(raw) - start)
        raw[at:at] = insert[1]
    if cut is not None:
        del raw[start + cut % (len(raw) - start):]
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    try:
        _receive(bytes(raw), syntax)
    except StoreError as exc:
        assert exc.reason and 0 < int(exc.status) <= 0xFFFF


WEIRD_VALUES: list[Any] = [
    "", "abc", "-1", "0", "1e308", "nan", "1\\2\\3", "65535", "\x00\x01", "9" * 64,
    b"\x00" * 3, 0, -5, 2**31, [1.0, "x"],
]
MUTABLE = [
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "NumberOfFrames", "PixelSpacing", "ImagePositionPatient",
    "ImageOrientationPatient", "SliceThickness", "RescaleSlope", "RescaleIntercept",
    "PhotometricInterpretation", "SeriesInstanceUID", "SOPClassUID", "PixelData",
    "ImageType", "SeriesDescription", "InversionTime", "InstanceNumber",
]




@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          report_multiple_bugs=False, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(MUTABLE), st.sampled_from(WEIRD_VALUES),
                  st.booleans()),
        min_size=1, max_size=4,
    )
)
def test_load_series_raises_only_load_errors(edits: list[tuple[int, str, Any, bool]]) -> None:
    datasets = [copy.deepcopy(ds) for ds in SERIES]
    for index, keyword, value, delete in edits:
        ds = datasets[index]
        try:
            if delete:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        except (TypeError, ValueError, OverflowError, AttributeError, struct.error):
            continue  # pydicom itself refuses this value: nothing to load
    try:
        load_series(datasets)
    except LoadError as exc:
        assert str(exc)


# ---------------------------------------------------------------------------- raw PDUs


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def associate_rq(called: str = "CMRNODE", calling: str = "FUZZER") -> bytes:
    """A valid A-ASSOCIATE-RQ proposing Verification and MR Image Storage (PS3.8 9.3.2)."""

    def context(context_id: int, abstract: str) -> bytes:
        body = struct.pack(">BBBB", context_id, 0, 0, 0)
        body += _item(0x30, abstract.encode())
        body += _item(0x40, ImplicitVRLittleEndian.encode())
        return _item(0x20, body)

    variable = _item(0x10, b"1.2.840.10008.3.1.1.1")
    variable += context(1, VERIFICATION) + context(3, MR_IMAGE_STORAGE)
    variable += _item(0x50, _item(0x51, struct.pack(">I", 16384)))
    body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode()
    body += b"\0" * 32 + variable
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def p_data(context_id: int, control: int, fragment: bytes) -> bytes:
    """A P-DATA-TF PDU with one PDV."""
    pdv = struct.pack(">IBB", len(fragment) + 2, context_id, control) + fragment
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def _exchange(
    port: int, chunks: list[bytes], wait_s: float = 0.05, first_wait_s: float = 0.05
) -> bytes:
    """Send chunks on a fresh connection, read what comes back briefly, close.

    ``first_wait_s`` bounds the wait for the answer to the first chunk (an A-ASSOCIATE-AC
    takes longer than a reset).
    """
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        for index, chunk in enumerate(chunks):
            sock.settimeout(first_wait_s if index == 0 else wait_s)
            try:
                sock.sendall(chunk)
            except OSError:
                break
            with contextlib.suppress(TimeoutError, OSError):
                received += sock.recv(65536)
    return received


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        if choice < 0.5 and out:
            out[rng.randrange(len(out))] = rng.getrandbits(8)
        elif choice < 0.7:
            del out[rng.randrange(len(out) + 1):]
        else:
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.randbytes(rng.randint(1, 32))
    return bytes(out)


def _command_fragments(rng: random.Random) -> list[bytes]:
    """Random P-DATA PDUs after a valid association: commands, data, nonsense."""
    fragments = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        context_id = rng.choice([1, 3, 5, 255])
        if kind < 0.3:  # a command fragment with random bytes, last or not
            fragments.append(
                p_data(context_id, rng.choice([1, 3]), rng.randbytes(rng.randint(0, 200)))
            )
        elif kind < 0.5:  # a data fragment before any command
            fragments.append(
                p_data(context_id, rng.choice([0, 2]), rng.randbytes(rng.randint(0, 500)))
            )
        elif kind < 0.7:  # a PDU announcing far more than it carries
            fragments.append(struct.pack(">BBI", 0x04, 0, 0x7FFFFFFF) + rng.randbytes(64))
        elif kind < 0.85:  # unknown PDU type
            fragments.append(struct.pack(">BBI", rng.choice([0x00, 0x08, 0x7F, 0xFF]), 0, 4)
                             + rng.randbytes(4))
        else:  # a mutated well-formed P-DATA
            fragments.append(_mutate(rng, p_data(1, 3, rng.randbytes(40))))
    return fragments


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path / "node", None).start()
    yield proc
    proc.stop()


@pytest.mark.e2e
def test_random_pdus_do_not_stop_the_listener(tmp_path: Path, node: NodeProcess) -> None:
    rng = random.Random(20261122)
    valid = associate_rq()
    accepted = _exchange(node.port, [valid], first_wait_s=5.0)
    assert accepted[:1] == b"\x02", "the well-formed A-ASSOCIATE-RQ was not accepted"
    deadline = time.monotonic() + PDU_FUZZ_BUDGET_S
    rounds = 0
    while time.monotonic() < deadline:
        kind = rounds % 4
        if kind == 0:
            chunks = [rng.randbytes(rng.randint(1, 2048))]
        elif kind == 1:
            chunks = [_mutate(rng, valid)]
        elif kind == 2:
            chunks = [valid, *_command_fragments(rng)]
        else:
            chunks = [struct.pack(">BBI", 0x01, 0, rng.choice([0, 6, 0xFFFFFFFF]))
                      + rng.randbytes(rng.randint(0, 64))]
        with contextlib.suppress(OSError):  # a reset connection is an answer too
            _exchange(node.port, chunks, first_wait_s=1.0 if kind == 2 else 0.05)
        rounds += 1
        if rounds % 25 == 0:
            assert node.echo_ok(), f"no C-ECHO after {rounds} fuzz rounds"
    assert rounds >= 40
    assert node.proc is not None and node.proc.poll() is None, node.log_tail()
    assert node.echo_ok()
    good = write_brain_series(tmp_path / "in", seed=91, n_slices=2)
    assert [s for _, s in send_stream(good, node.port, StreamResult()).statuses] == [0, 0]
    stored = {r["sop_instance_uid"] for r in node.query("SELECT sop_instance_uid FROM instances")}
    assert {sop_uid(p) for p in good} <= stored
