"""DICOMweb against a real Orthanc with its DICOMweb plugin: batch analysis and STOW delivery."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydicom import dcmread

from models.phantoms.study import write_synthetic_study
from node.cli.main import main
from node.delivery.dicomweb import DicomWebError, make_client, parse_filters, search_studies
from node.delivery.sender import OutboxSender
from node.settings import Destination, DestinationKind, SettingsError, settings_from_mapping
from tests.netutil import wait_for
from tests.node.test_sender import _queued, _settings
from tests.viewer.viewerutil import DicomWebOrthanc

ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Debian's Orthanc is not installed")


@pytest.fixture()
def archive(tmp_path: Path) -> Iterator[DicomWebOrthanc]:
    assert ORTHANC is not None
    server = DicomWebOrthanc(tmp_path / "orthanc", ORTHANC).start()
    yield server
    server.stop()


def _instances(archive: DicomWebOrthanc) -> set[str]:
    client = make_client(f"{archive.url}/dicom-web")
    return {
        str(item["00080018"]["Value"][0]) for item in client.search_for_instances()
    }


def test_batch_pulls_analyses_and_stores_back(
    archive: DicomWebOrthanc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = write_synthetic_study(tmp_path / "study", seed=21, vendor="siemens")
    root = tmp_path / "study"
    for series in truth["series"]:
        for instance in series["instances"]:
            archive.upload(root / instance["file"])
    before = _instances(archive)
    url = f"{archive.url}/dicom-web"
    assert search_studies(make_client(url)) == [truth["study_instance_uid"]]

    out = tmp_path / "out"
    assert main(["dicomweb", url, "--out", str(out), "--stow"]) == 0
    printed = capsys.readouterr().out
    assert f"retrieved study {truth['study_instance_uid']}" in printed
    results = json.loads((out / "results.json").read_text())
    analysed = {s["series_instance_uid"]: s for s in results["series"]
                if s["status"] == "analysed"}
    t1map = next(s for s in truth["series"] if s["expected_analysis"] == "t1map")
    assert analysed[t1map["series_instance_uid"]]["analysis"] == "t1map"
    # Every output file of every analysed series is now in the archive, nothing else new.
    outputs = {
        str(dcmread(out / item["file"], stop_before_pixels=True).SOPInstanceUID)
        for entry in analysed.values() for item in entry["outputs"].values()
    }
    assert outputs and _instances(archive) == before | outputs
    assert "by STOW-RS" in printed


def test_outbox_delivers_to_a_dicomweb_destination(
    archive: DicomWebOrthanc, tmp_path: Path
) -> None:
    destination = Destination("archive", "DICOMWEB", "127.0.0.1", archive.http_port,
                              kind=DestinationKind.DICOMWEB, url=f"{archive.url}/dicom-web")
    catalog = _queued(tmp_path, ["archive"])
    sender = OutboxSender(replace(_settings(tmp_path, (destination,))), catalog,
                          handlers={DestinationKind.DICOMWEB: _stow()})
    sender.start()
    try:
        wait_for(lambda: catalog.outbox_items()[0]["state"] == "sent", 30, interval=0.1)
    finally:
        sender.stop()
    item = catalog.outbox_items()[0]
    assert item["sop_instance_uid"] in _instances(archive)


def test_unreachable_dicomweb_destination_is_retried_not_lost(tmp_path: Path) -> None:
    destination = Destination("archive", "DICOMWEB", "127.0.0.1", 9,
                              kind=DestinationKind.DICOMWEB, url="http://127.0.0.1:9/dicom-web")
    catalog = _queued(tmp_path, ["archive"])
    sender = OutboxSender(_settings(tmp_path, (destination,)), catalog,
                          handlers={DestinationKind.DICOMWEB: _stow()})
    sender.start()
    try:
        wait_for(lambda: catalog.outbox_items()[0]["attempts"] >= 2, 30, interval=0.1)
    finally:
        sender.stop()
    item = catalog.outbox_items()[0]
    assert item["state"] == "pending" and "STOW-RS" in item["last_error"]


def test_dicomweb_destination_settings_and_filters(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {"destination": [{"name": "web", "kind": "dicomweb",
                          "url": "https://pacs.example.org/dicom-web/", "username": "node",
                          "password_env": "PACS_PASSWORD"}]},
        tmp_path,
    )
    web = settings.destinations[0]
    assert (web.kind, web.host, web.port, web.url) == (
        DestinationKind.DICOMWEB, "pacs.example.org", 443, "https://pacs.example.org/dicom-web")
    with pytest.raises(SettingsError, match="DICOMweb service root"):
        settings_from_mapping({"destination": [{"kind": "dicomweb", "url": "ftp://x"}]},
                              tmp_path)
    assert parse_filters(["StudyDate=20250101-20251231", "ModalitiesInStudy=MR"]) == {
        "StudyDate": "20250101-20251231", "ModalitiesInStudy": "MR"}
    with pytest.raises(DicomWebError):
        parse_filters(["no-equals-sign"])


def _stow() -> object:
    from node.delivery.dicomweb import StowDelivery

    return StowDelivery()
