"""The outbox sender against a real Storage SCP that refuses, warns, then accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import SecondaryCaptureImageStorage  # type: ignore[attr-defined]

from node.catalog.catalog import Catalog
from node.catalog.job_queue import OutputFile
from node.catalog.series import InstanceRecord
from node.delivery.sender import OutboxSender
from node.settings import Destination, SenderSettings, Settings
from tests.netutil import PacsScp, free_port, wait_for

SC = "1.2.840.10008.5.1.4.1.1.7"
PM = "1.2.840.10008.5.1.4.1.1.30"


def _output(folder: Path, sop_class: str = SC) -> OutputFile:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.zeros(64, np.uint8).tobytes()
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return OutputFile(path, str(ds.SOPInstanceUID), sop_class, "summary-image")


def _queued(tmp: Path, destinations: list[str], sop_classes: tuple[str, ...] = (SC,)) -> Catalog:
    cat = Catalog(tmp / "catalog.sqlite3")
    cat.record_instance(
        InstanceRecord(
            "1.1",
            "1.2.3",
            "1.2",
            "1.2.840.10008.5.1.4.1.1.4",
            None,
            tmp / "x.dcm",
            1,
            None,
            "MR",
            None,
            None,
        )
    )
    cat.complete_series("1.2.3", 0)
    cat.route_series("1.2.3", 0, ["t1map"], "matched")
    job = cat.claim_job()
    assert job is not None
    cat.finish_job(
        job,
        [_output(tmp / "out", c) for c in sop_classes],
        destinations,
        result_dir=tmp,
        timings={},
        summary={},
    )
    return cat


def _settings(tmp: Path, destinations: tuple[Destination, ...]) -> Settings:
    return Settings(
        data_dir=tmp,
        destinations=destinations,
        sender=SenderSettings(retry_initial_s=0.1, retry_max_s=0.2, network_timeout_s=5),
    )


def test_refusal_is_retried_until_accepted(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs", status=0xA700).start()
    dest = Destination("pacs", "TESTPACS", "127.0.0.1", pacs.port)
    cat = _queued(tmp_path, ["pacs"])
    sender = OutboxSender(_settings(tmp_path, (dest,)), cat)
    sender.start()
    try:
        wait_for(lambda: cat.outbox_items()[0]["attempts"] >= 2, 20)
        row = cat.outbox_items()[0]
        assert row["state"] == "pending" and row["last_status"] == 0xA700
        assert pacs.received() == []
        pacs.status = 0x0000
        wait_for(lambda: cat.outbox_items()[0]["state"] == "sent", 20)
        assert len(pacs.received()) == 1
    finally:
        sender.stop()
        pacs.stop()


def test_warning_status_counts_as_delivered(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs", status=0xB000).start()
    dest = Destination("pacs", "TESTPACS", "127.0.0.1", pacs.port)
    cat = _queued(tmp_path, ["pacs"])
    sender = OutboxSender(_settings(tmp_path, (dest,)), cat)
    sender.start()
    try:
        wait_for(lambda: cat.outbox_items()[0]["state"] == "sent", 20)
        row = cat.outbox_items()[0]
        assert row["last_status"] == 0xB000 and "warning" in row["last_error"]
    finally:
        sender.stop()
        pacs.stop()


def test_a_down_destination_does_not_hold_back_another(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs").start()
    up = Destination("up", "TESTPACS", "127.0.0.1", pacs.port)
    down = Destination("down", "NOBODY", "127.0.0.1", free_port())
    cat = _queued(tmp_path, ["down", "up"])
    sender = OutboxSender(_settings(tmp_path, (down, up)), cat)
    sender.start()
    try:
        wait_for(
            lambda: {r["destination"]: r["state"] for r in cat.outbox_items()}.get("up") == "sent",
            20,
        )
        states = {r["destination"]: r for r in cat.outbox_items()}
        assert (
            states["down"]["state"] == "pending"
            and "cannot connect" in states["down"]["last_error"]
        )
    finally:
        sender.stop()
        pacs.stop()


def test_a_sop_class_the_pacs_refuses_fails_that_item_only(tmp_path: Path) -> None:
    # A PACS without Parametric Map support: the association carries the other outputs, the
    # map fails with a reason, and nothing blocks the rest of the outbox.
    picky = PacsScp(tmp_path / "picky", refused_sop_classes=(PM,)).start()
    pacs = PacsScp(tmp_path / "pacs").start()
    first = Destination("picky", "TESTPACS", "127.0.0.1", picky.port)
    second = Destination("up", "TESTPACS", "127.0.0.1", pacs.port)
    cat = _queued(tmp_path, ["picky", "up"], sop_classes=(PM, SC))
    sender = OutboxSender(_settings(tmp_path, (first, second)), cat)
    sender.start()

    def rows() -> dict[tuple[str, str], dict]:
        return {(r["destination"], r["sop_class_uid"]): r for r in cat.outbox_items()}

    try:
        wait_for(lambda: all(
            r["state"] == "sent" for (d, _), r in rows().items() if d == "up"
        ), 20)
        wait_for(lambda: rows()[("picky", PM)]["attempts"] >= 1, 20)
        refused = rows()[("picky", PM)]
        assert refused["state"] == "pending"
        assert "no presentation context for Parametric Map Storage" in refused["last_error"]
        wait_for(lambda: rows()[("picky", SC)]["state"] == "sent", 20)
        assert len(picky.received()) == 1 and len(pacs.received()) == 2
    finally:
        sender.stop()
        picky.stop()
        pacs.stop()


def _stored_data_set(path: Path) -> bytes:
    """The bytes of a DICOM file after its File Meta Information."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def test_an_output_arrives_as_stored(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs").start()
    dest = Destination("pacs", "TESTPACS", "127.0.0.1", pacs.port)
    cat = _queued(tmp_path, ["pacs"])
    sender = OutboxSender(_settings(tmp_path, (dest,)), cat)
    sender.start()
    try:
        wait_for(lambda: cat.outbox_items()[0]["state"] == "sent", 20)
        (receipt,) = pacs.received()
        sent = Path(cat.outbox_items()[0]["path"])
        assert _stored_data_set(receipt.path) == _stored_data_set(sent)
    finally:
        sender.stop()
        pacs.stop()


def test_a_pacs_without_the_files_transfer_syntax_gets_it_converted(tmp_path: Path) -> None:
    received: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="IMPLICIT")
    ae.add_supported_context(SecondaryCaptureImageStorage, ImplicitVRLittleEndian)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    cat = _queued(tmp_path, ["implicit"])
    dest = Destination("implicit", "IMPLICIT", "127.0.0.1", port)
    sender = OutboxSender(_settings(tmp_path, (dest,)), cat)
    sender.start()
    try:
        wait_for(lambda: cat.outbox_items()[0]["state"] == "sent", 20)
        (ds,) = received
        assert ds.SOPInstanceUID == cat.outbox_items()[0]["sop_instance_uid"]
        assert ds.Rows == 8 and len(ds.PixelData) == 64
    finally:
        sender.stop()
        server.shutdown()
