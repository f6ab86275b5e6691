"""End to end: a re-analysis sends new objects, and its SRs name the SRs they replace.

A T1 map is analysed and delivered; one of its instances is sent again, which re-opens the
series (generation 1) and analyses it again.  The second outputs must carry new UIDs (a PACS
that keeps the first copy of a UID, as Orthanc does by default, would otherwise keep the stale
objects), and each second SR must reference the delivered first SR of its kind in its
Predecessor Documents Sequence and pass dciodvfy.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from bench.latency import Completeness, write_t1map_study
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, send_files, wait_for

pytestmark = pytest.mark.e2e

RESULT_TIMEOUT_S = 120.0
SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."


def _delivered(node: NodeProcess, generation: int) -> list[dict[str, str]] | None:
    rows = node.query(
        "SELECT o.state, o.kind, o.path, o.sop_instance_uid FROM outbox o"
        " JOIN jobs j ON j.id=o.job_id WHERE j.generation=? AND j.state='done'",
        (generation,),
    )
    if rows and all(r["state"] == "sent" for r in rows):
        return [dict(r) for r in rows]
    return None


def _predecessors(ds: Dataset) -> set[tuple[str, str, str, str]]:
    refs = set()
    for study in ds.get("PredecessorDocumentsSequence", []):
        for series in study.ReferencedSeriesSequence:
            for sop in series.ReferencedSOPSequence:
                refs.add((str(study.StudyInstanceUID), str(series.SeriesInstanceUID),
                          str(sop.ReferencedSOPClassUID), str(sop.ReferencedSOPInstanceUID)))
    return refs


def test_reanalysis_sends_new_objects_whose_srs_name_their_predecessors(
    tmp_path: Path,
) -> None:
    paths = write_t1map_study(7070, tmp_path / "t1", Completeness.KNOWN)
    pacs = PacsScp(tmp_path / "pacs").start()
    node = NodeProcess(tmp_path / "node", pacs.port)
    try:
        node.start(timeout=120)
        assert send_files(paths, node.port) == [0] * len(paths)
        first = wait_for(lambda: _delivered(node, 0), RESULT_TIMEOUT_S, interval=0.2)
        assert send_files(paths[:1], node.port) == [0]  # re-sent: the series re-opens
        second = wait_for(lambda: _delivered(node, 1), RESULT_TIMEOUT_S, interval=0.2)
        time.sleep(0.5)
        counts = pacs.count_by_uid()
    finally:
        node.stop()
        pacs.stop()

    first_uids = {r["sop_instance_uid"] for r in first}
    second_uids = {r["sop_instance_uid"] for r in second}
    assert len(second_uids) == len(first_uids) >= 3
    assert not first_uids & second_uids, "a re-analysis re-used the UIDs of the first one"
    assert set(counts) == first_uids | second_uids
    assert set(counts.values()) == {1}, "an object was delivered twice"

    first_by_kind = {r["kind"]: dcmread(r["path"], stop_before_pixels=True) for r in first}
    srs = [r for r in second if r["kind"] in ("sr", "sr-summary")]
    assert {r["kind"] for r in srs} == {"sr", "sr-summary"}
    for row in srs:
        new = dcmread(row["path"])
        old = first_by_kind[row["kind"]]
        assert str(new.SOPClassUID).startswith(SR_CLASS_PREFIX)
        assert _predecessors(new) == {(str(old.StudyInstanceUID), str(old.SeriesInstanceUID),
                                       str(old.SOPClassUID), str(old.SOPInstanceUID))}
        assert new.SeriesInstanceUID != old.SeriesInstanceUID
        assert new.SeriesDescription == f"{old.SeriesDescription} (rev 1)"
        assert "PredecessorDocumentsSequence" not in old
        received = next(pacs.folder.glob(f"*-{new.SOPInstanceUID}.dcm"))
        assert dciodvfy_errors(received) == [], received
    for row in second:
        if row["kind"] not in ("sr", "sr-summary"):
            ds = dcmread(row["path"], stop_before_pixels=True)
            assert ds.SeriesInstanceUID != first_by_kind[row["kind"]].SeriesInstanceUID
            assert "PredecessorDocumentsSequence" not in ds
