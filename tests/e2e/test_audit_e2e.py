"""The audit trail and UID hashing of a running node: who sent what, where results went."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from node.catalog.audit import UidHashingFilter, hash_uid
from tests.netutil import NodeProcess, PacsScp, send_files, wait_for

pytestmark = pytest.mark.e2e


def test_uid_filter_hashes_uids_and_nothing_else() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "series %s from %s:%d (0x%04X)",
        ("1.2.826.0.1.3680043.8.498.123", "127.0.0.1", 11112, 0xA700), None,
    )
    UidHashingFilter().filter(record)
    message = record.getMessage()
    assert "1.2.826.0.1.3680043.8.498.123" not in message
    assert hash_uid("1.2.826.0.1.3680043.8.498.123") in message
    assert "127.0.0.1:11112 (0xA700)" in message


def test_audit_trail_and_hashed_log_of_one_series(tmp_path: Path) -> None:
    rng = np.random.default_rng(77)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, heart=heart)
    datasets = t1map_series_datasets(slices, rng=rng, study=StudyInfo.synthetic(77))
    paths = write_series(datasets, tmp_path / "study")
    series_uid = str(datasets[0].SeriesInstanceUID)
    patient_name = str(datasets[0].PatientName)
    pacs = PacsScp(tmp_path / "pacs").start()
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0,
                       node_config='log_uids = "hashed"')
    node.start()
    try:
        assert set(send_files(paths, node.port)) == {0}
        wait_for(lambda: len(pacs.received()) >= 4
                 and not node.query("SELECT 1 FROM outbox WHERE state != 'sent'"), 120)
    finally:
        node.stop()
        pacs.stop()

    audit = [json.loads(line) for line in
             (node.data_dir / "logs" / "audit.jsonl").read_text().splitlines()]
    events = [a["event"] for a in audit]
    assert "association" in events
    received = [a for a in audit if a["event"] == "series_received"]
    assert received and received[0]["series_instance_uid"] == series_uid
    assert received[0]["calling_aets"] == ["SCANNER"]
    assert received[0]["instances"] == len(paths)
    assert received[0]["study_instance_uid"] == str(datasets[0].StudyInstanceUID)
    delivered = [a for a in audit if a["event"] == "delivered"]
    sent = {str(dcmread(r.path, stop_before_pixels=True).SOPInstanceUID)
            for r in pacs.received()}
    assert {a["sop_instance_uid"] for a in delivered} == sent
    assert all(a["destination"] == "pacs" and a["status"] == "0x0000" for a in delivered)

    log = (node.data_dir / "logs" / "node.log").read_text()
    assert series_uid not in log and hash_uid(series_uid) in log
    audit_text = (node.data_dir / "logs" / "audit.jsonl").read_text()
    for text in (log, audit_text):
        assert patient_name not in text
