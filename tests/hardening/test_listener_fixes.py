"""Listener defects the hardening suite found, each with the test that failed before its fix."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from pydicom.dataelem import DataElement

from node.network.dimse import StoreStatus
from node.receive.dul import CONNECTION_CHECK_S
from tests.node.test_listener import Harness, _mr


@pytest.fixture()
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    h.listener.start()
    yield h
    h.listener.stop()
    h.catalog.close()


def _spool_files(h: Harness) -> list[Path]:
    spool = h.settings.spool_dir
    return [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []


@pytest.mark.parametrize(
    ("keyword", "tag", "vr", "value"),
    [
        ("Rows", 0x00280010, "LO", "sixty-four"),
        ("Columns", 0x00280011, "DS", "1\\2"),
        ("BitsAllocated", 0x00280100, "US", 0),
    ],
)
def test_image_size_with_wrong_vr_cannot_be_understood(
    harness: Harness, keyword: str, tag: int, vr: str, value: object
) -> None:
    # Before: the size check was skipped and the instance stored; its series then failed
    # in the loader with an unexpected ValueError (retried as if transient).
    ds = _mr()
    ds[keyword] = DataElement(tag, vr, value)
    status = harness.send(ds)
    assert status.Status == StoreStatus.CANNOT_UNDERSTAND
    assert "malformed" in str(status.ErrorComment)
    assert harness.catalog.counts()["instances"].get("stored", 0) == 0
    assert _spool_files(harness) == []


def test_catalog_failure_leaves_no_spool_file(harness: Harness) -> None:
    # Before: the spool file stayed without a catalog row, so the next start's reconciliation
    # recorded an instance whose C-STORE had been refused.
    def locked(*_: object, **__: object) -> NoReturn:
        raise sqlite3.OperationalError("database is locked")

    harness.catalog.record_instance = locked  # type: ignore[method-assign]
    status = harness.send(_mr())
    assert status.Status == StoreStatus.OUT_OF_RESOURCES
    assert "catalog unavailable" in str(status.ErrorComment)
    assert _spool_files(harness) == []


def test_catalog_failure_keeps_the_acknowledged_copy_of_a_resent_instance(
    harness: Harness,
) -> None:
    ds = _mr()
    assert harness.send(ds).Status == StoreStatus.SUCCESS
    [path] = harness.catalog.instance_paths(str(ds.SeriesInstanceUID))

    def locked(*_: object, **__: object) -> NoReturn:
        raise sqlite3.OperationalError("database is locked")

    harness.catalog.record_instance = locked  # type: ignore[method-assign]
    assert harness.send(ds).Status == StoreStatus.OUT_OF_RESOURCES
    assert path.exists(), "the acknowledged instance was deleted"


@pytest.mark.parametrize("payload", [b"", b"GET / HTTP/1.1\r\n\r\n", b"\x01\x00\xff\xff"])
def test_dead_connections_do_not_hold_association_slots(
    harness: Harness, payload: bytes
) -> None:
    # Before: each connection closed (or sent a non-PDU) before its A-ASSOCIATE-RQ held one
    # of the 16 association slots for the whole ACSE timeout (30 s), so 16 port probes
    # locked every scanner out.
    import socket
    import time

    port = harness.settings.listen_port
    for _ in range(harness.listener.ae.maximum_associations + 4):
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            if payload:
                sock.sendall(payload)
    time.sleep(2 * CONNECTION_CHECK_S + 0.3)
    ds = _mr()
    assert harness.send(ds).Status == StoreStatus.SUCCESS


def test_unknown_vr_cannot_be_understood() -> None:
    # Before: pydicom's NotImplementedError escaped parse_header, so the listener answered
    # 0x0110 Processing failure (and logged a traceback) instead of 0xC000.
    import struct

    from node.network.dimse import StoreError
    from node.receive.instance import file_meta_bytes, parse_header

    syntax = "1.2.840.10008.1.2.1"
    element = struct.pack("<HH", 0x0008, 0x0060) + b"CS" + struct.pack("<H", 2) + b"MR"
    raw = file_meta_bytes("1.2.840.10008.5.1.4.1.1.4", "1.2.3", syntax, "FUZZ") + element
    transfer_syntax_tag = struct.pack("<HH", 0x0002, 0x0010)
    raw = raw.replace(transfer_syntax_tag + b"UI", transfer_syntax_tag + b"\x55\x00")
    with pytest.raises(StoreError) as caught:
        parse_header(raw, syntax)
    assert caught.value.status == StoreStatus.CANNOT_UNDERSTAND


def test_malformed_header_element_is_refused_by_the_parser() -> None:
    # Before: the element was decoded only when the catalog record was built, so its
    # NotImplementedError surfaced as 0x0110 Processing failure instead of 0xC000.
    import struct

    from node.network.dimse import StoreError
    from node.receive.instance import file_meta_bytes, parse_header

    syntax = "1.2.840.10008.1.2.1"
    images_in_acquisition = struct.pack("<HH", 0x0020, 0x1002) + b"I\x00" + struct.pack("<H", 2)
    modality = struct.pack("<HH", 0x0008, 0x0060) + b"CS" + struct.pack("<H", 2) + b"MR"
    raw = file_meta_bytes("1.2.840.10008.5.1.4.1.1.4", "1.2.3", syntax, "FUZZ")
    raw += modality + images_in_acquisition + b"3 "  # after a valid element: explicit VR
    with pytest.raises(StoreError) as caught:
        parse_header(raw, syntax)
    assert caught.value.status == StoreStatus.CANNOT_UNDERSTAND
