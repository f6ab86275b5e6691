"""The Storage SCP's answers, over real associations on loopback (listener in-process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from node.catalog.catalog import Catalog
from node.catalog.series import SeriesState
from node.network.dimse import StoreStatus
from node.receive.listener import StorageListener
from node.settings import Settings
from tests.netutil import free_port

MR = "1.2.840.10008.5.1.4.1.1.4"


def _mr(series: str | None = None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1"
    ds.SeriesInstanceUID = series or generate_uid()
    ds.Modality = "MR"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.ImagesInAcquisition = 2
    ds.PixelData = np.arange(256, dtype=np.uint16).tobytes()
    return ds


class Harness:
    def __init__(self, tmp: Path, **overrides: object) -> None:
        self.settings = Settings(
            data_dir=tmp / "data", listen_port=free_port(), min_free_disk_mb=1
        ).with_overrides(**overrides)
        self.catalog = Catalog(self.settings.catalog_path)
        self.stored: list[SeriesState] = []
        self.lock = threading.Lock()
        self.listener = StorageListener(self.settings, self.catalog, self._on_stored)

    def _on_stored(self, state: SeriesState, _ds: Dataset) -> None:
        with self.lock:
            self.stored.append(state)

    def send(self, ds: Dataset, calling: str = "SCANNER") -> Dataset:
        ae = AE(ae_title=calling)
        ae.add_requested_context(str(ds.SOPClassUID), ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", self.settings.listen_port, ae_title="CMRNODE")
        assert assoc.is_established
        try:
            return assoc.send_c_store(ds)
        finally:
            assoc.release()


@pytest.fixture()
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    h.listener.start()
    yield h
    h.listener.stop()
    h.catalog.close()


def test_stored_before_success_and_counted(harness: Harness) -> None:
    series = generate_uid()
    a, b = _mr(series), _mr(series)
    assert harness.send(a).Status == StoreStatus.SUCCESS
    paths = harness.catalog.instance_paths(series)
    assert len(paths) == 1 and paths[0].exists()
    assert harness.send(b).Status == StoreStatus.SUCCESS
    assert [s.instance_count for s in harness.stored] == [1, 2]
    assert harness.stored[-1].expected_count == 2


def test_truncated_pixel_data_cannot_be_understood(harness: Harness) -> None:
    ds = _mr()
    ds.PixelData = ds.PixelData[:100]
    status = harness.send(ds)
    assert status.Status == StoreStatus.CANNOT_UNDERSTAND
    assert "truncated" in str(status.ErrorComment)
    assert harness.catalog.counts()["instances"]["stored"] == 0


def test_missing_series_uid_cannot_be_understood(harness: Harness) -> None:
    ds = _mr()
    del ds.SeriesInstanceUID
    status = harness.send(ds)
    assert status.Status == StoreStatus.CANNOT_UNDERSTAND
    assert "SeriesInstanceUID" in str(status.ErrorComment)


def test_malformed_uid_is_refused_not_used_as_path(harness: Harness) -> None:
    ds = _mr()
    ds.SeriesInstanceUID = "../../etc"
    status = harness.send(ds)
    assert status.Status == StoreStatus.CANNOT_UNDERSTAND
    assert not (harness.settings.data_dir / "etc").exists()


def test_out_of_resources_when_disk_below_limit(tmp_path: Path) -> None:
    h = Harness(tmp_path, min_free_disk_mb=10**12)
    h.listener.start()
    try:
        status = h.send(_mr())
        assert status.Status == StoreStatus.OUT_OF_RESOURCES
        events = h.catalog.recent_events()
        assert events and "disk" in events[0]["message"]
    finally:
        h.listener.stop()
        h.catalog.close()


def test_spool_reconciliation_records_orphans_and_quarantines_partial_files(
    tmp_path: Path,
) -> None:
    """A spool file whose catalog row was lost (power loss) is recorded again at start."""
    from node.catalog.spool import instance_path
    from node.receive.spool_recovery import reconcile_spool

    h = Harness(tmp_path)
    ds = _mr()
    orphan = instance_path(
        h.settings.spool_dir, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    orphan.parent.mkdir(parents=True)
    ds.save_as(orphan, enforce_file_format=True)
    partial = orphan.with_name("1.2.3.4.dcm")
    partial.write_bytes(orphan.read_bytes()[:300])
    assert reconcile_spool(h.settings.spool_dir, h.catalog) == (1, 1)
    assert h.catalog.instance_paths(str(ds.SeriesInstanceUID)) == [orphan]
    assert not partial.exists()
    assert (h.settings.data_dir / "quarantine" / "1.2.3.4.dcm").exists()
    assert reconcile_spool(h.settings.spool_dir, h.catalog) == (0, 0)
    h.catalog.close()
