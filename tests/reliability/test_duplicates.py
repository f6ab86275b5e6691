"""Re-sent and conflicting instances: no silent replacement, no series of two patients.

Over real associations to the node run as a process; the audit log and the catalog are read
as an administrator would.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

from node.network.dimse import StoreStatus
from tests.hardening.util import write_brain_series
from tests.netutil import NodeProcess, send_files, wait_for

pytestmark = pytest.mark.e2e


def _variant(source: Path, target: Path, **changes: object) -> Path:
    """A copy of ``source`` with attributes changed (``PixelData``: pixels inverted)."""
    ds = dcmread(source)
    for keyword, value in changes.items():
        if keyword == "PixelData":
            ds.PixelData = bytes(255 - b for b in ds.PixelData)
        else:
            setattr(ds, keyword, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


def _audit(node: NodeProcess, event: str) -> list[dict[str, object]]:
    path = node.data_dir / "logs" / "audit.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["event"] == event]


def _spool_copy(node: NodeProcess, sop_uid: str) -> Path:
    [row] = node.query("SELECT path FROM instances WHERE sop_instance_uid=?", (sop_uid,))
    return Path(row["path"])


def _pixels_hash(path: Path) -> str:
    return hashlib.sha256(dcmread(path).PixelData).hexdigest()


def test_other_content_under_a_stored_uid_is_refused_and_audited(tmp_path: Path) -> None:
    [first] = write_brain_series(tmp_path / "in", 31, 1)
    other = _variant(first, tmp_path / "other.dcm", PatientName="Other^Patient",
                     PixelData=None)
    uid = str(dcmread(first).SOPInstanceUID)
    node = NodeProcess(tmp_path / "node", None).start(timeout=120)
    try:
        assert send_files([first], node.port) == [0]
        assert send_files([first], node.port) == [0]  # an identical re-send is fine
        assert send_files([other], node.port) == [StoreStatus.DUPLICATE_SOP_INSTANCE]
        kept = _spool_copy(node, uid)
        assert str(dcmread(kept).PatientName) == str(dcmread(first).PatientName)
        assert _pixels_hash(kept) == _pixels_hash(first)
        [refused] = _audit(node, "instance_duplicate_refused")
        assert refused["sop_instance_uid"] == uid
        assert refused["previous_sha256"] != refused["new_sha256"]
        assert len(str(refused["new_sha256"])) == 64
        assert "Other^Patient" not in (node.data_dir / "logs" / "audit.jsonl").read_text()
        assert "Other^Patient" not in node.log_tail(100000)
    finally:
        node.stop()


def test_replace_policy_replaces_and_audits_both_hashes(tmp_path: Path) -> None:
    [first] = write_brain_series(tmp_path / "in", 32, 1)
    other = _variant(first, tmp_path / "other.dcm", PixelData=None)
    uid = str(dcmread(first).SOPInstanceUID)
    node = NodeProcess(tmp_path / "node", None,
                       extra_config='[listener]\nduplicate_policy = "replace"\n')
    node.start(timeout=120)
    try:
        assert send_files([first], node.port) == [0]
        assert send_files([other], node.port) == [0]
        assert _pixels_hash(_spool_copy(node, uid)) == _pixels_hash(other)
        [replaced] = _audit(node, "instance_replaced")
        assert replaced["sop_instance_uid"] == uid
        assert replaced["previous_sha256"] != replaced["new_sha256"]
        assert node.query("SELECT 1 FROM events WHERE kind='instance_replaced'")
    finally:
        node.stop()


def test_a_series_never_mixes_two_patients(tmp_path: Path) -> None:
    first, second = write_brain_series(tmp_path / "in", 33, 2)
    intruder = _variant(second, tmp_path / "intruder.dcm", PatientID="OTHER-ID",
                        SOPInstanceUID=generate_uid())
    for policy in ("keep_first", "replace"):
        node = NodeProcess(tmp_path / f"node-{policy}", None,
                           extra_config=f'[listener]\nduplicate_policy = "{policy}"\n')
        node.start(timeout=120)
        try:
            assert send_files([first], node.port) == [0]
            assert send_files([intruder], node.port) == [StoreStatus.SERIES_CONFLICT]
            assert send_files([second], node.port) == [0]
            rows = node.query("SELECT path FROM instances")
            assert {str(dcmread(r["path"]).PatientID) for r in rows} == {
                str(dcmread(first).PatientID)
            }
            [event] = node.query("SELECT message FROM events WHERE kind='store_refused'")
            assert "another patient" in event["message"]
            assert "OTHER-ID" not in event["message"] and "OTHER-ID" not in node.log_tail(100000)
        finally:
            node.stop()


def test_a_ct_instance_with_the_series_uid_leaves_the_finished_series_alone(
    tmp_path: Path,
) -> None:
    paths = write_brain_series(tmp_path / "in", 34, 3)
    ct = _variant(paths[0], tmp_path / "ct.dcm", Modality="CT", SOPClassUID=CTImageStorage,
                  SOPInstanceUID=generate_uid())
    node = NodeProcess(tmp_path / "node", None, stable_age_s=1.0).start(timeout=120)
    try:
        assert send_files(paths, node.port) == [0, 0, 0]
        series_uid = str(dcmread(paths[0]).SeriesInstanceUID)

        def finished() -> bool:
            rows = node.query("SELECT state FROM series WHERE series_instance_uid=?",
                              (series_uid,))
            return bool(rows) and rows[0]["state"] not in ("receiving", "complete")

        wait_for(finished, 30)
        before = dict(node.query("SELECT state, generation FROM series")[0])
        assert send_files([ct], node.port) == [StoreStatus.SERIES_CONFLICT]
        after = dict(node.query("SELECT state, generation FROM series")[0])
        assert after == before
        assert node.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 3
    finally:
        node.stop()


def test_the_same_instance_in_another_transfer_syntax_is_no_conflict(tmp_path: Path) -> None:
    [first] = write_brain_series(tmp_path / "in", 35, 1)
    ds = dcmread(first)
    assert str(ds.file_meta.TransferSyntaxUID) != ImplicitVRLittleEndian
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = tmp_path / "implicit.dcm"
    ds.save_as(implicit, implicit_vr=True, little_endian=True, enforce_file_format=True)
    node = NodeProcess(tmp_path / "node", None).start(timeout=120)
    try:
        assert send_files([first], node.port) == [0]
        assert send_files([implicit], node.port) == [0]
        assert not _audit(node, "instance_duplicate_refused")
    finally:
        node.stop()
