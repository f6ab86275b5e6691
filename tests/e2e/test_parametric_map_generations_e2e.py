"""End to end: a re-analysed MOLLI series sends new Parametric Maps, a restart the same ones.

MOLLI source images are sent to the node, which fits T1 and delivers the T1 and R² Parametric
Maps with the SEG, SRs and summary image.  One source image sent again re-opens the series
(generation 1): the new maps must carry new Series and SOP Instance UIDs, as the SEG and SRs
do (a PACS keeping the first copy of a UID, as Orthanc does by default, would otherwise keep
the stale maps), and the new SEG must reference the new T1 map.  A node restarted on the same
data sends nothing again, and the first generation's maps keep their UIDs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom import dcmread

from models.phantoms.dicom_build import write_series
from node.outputs.writers.parametric_map import KIND_FIT, KIND_T1
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, send_files, wait_for

pytestmark = pytest.mark.e2e

molli_tests = pytest.importorskip("tests.plugins.test_molli")
RESULT_TIMEOUT_S = 180.0


def _settled(node: NodeProcess, after: int) -> tuple[int, dict[str, dict[str, str]]] | None:
    """The newest molli generation (> ``after``) once it is done, nothing newer waits and all
    its outputs were sent: the generation and its outputs by kind."""
    jobs = node.query("SELECT id, generation, state FROM jobs WHERE analysis='molli'"
                      " ORDER BY generation DESC LIMIT 1")
    if not jobs or jobs[0]["state"] != "done" or jobs[0]["generation"] <= after:
        return None
    rows = node.query("SELECT kind, state, path, sop_instance_uid FROM outbox WHERE job_id=?",
                      (jobs[0]["id"],))
    if not rows or any(r["state"] != "sent" for r in rows):
        return None
    return int(jobs[0]["generation"]), {str(r["kind"]): dict(r) for r in rows}


def test_reanalysis_sends_new_parametric_maps_and_a_restart_none(
    tmp_path: Path, pacs: PacsScp
) -> None:
    datasets, _ = molli_tests.molli_datasets(23, levels=("mid", "apical"))
    paths = write_series(datasets, tmp_path / "molli")
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start()
    try:
        assert set(send_files(paths, node.port)) == {0}
        # (The series may complete early, its count taken from one slice's header, and be
        # analysed again as the other slice arrives: wait until it settles.)
        wait_for(lambda: _settled(node, -1), RESULT_TIMEOUT_S, interval=0.5)
        time.sleep(4.0)
        generation, first = wait_for(lambda: _settled(node, -1), RESULT_TIMEOUT_S,
                                     interval=0.5)
        assert {KIND_T1, KIND_FIT, "seg"} <= set(first)
        assert set(send_files(paths[:1], node.port)) == {0}  # re-opens the series
        _, second = wait_for(lambda: _settled(node, generation), RESULT_TIMEOUT_S,
                             interval=0.5)
        node.stop()
        sent = len(pacs.received())
        node.start()
        time.sleep(3.0)
        again = node.query(
            "SELECT o.kind, o.sop_instance_uid FROM outbox o JOIN jobs j ON j.id=o.job_id"
            " WHERE j.analysis='molli' AND j.generation=?", (generation,))
    finally:
        node.stop()

    assert len(pacs.received()) == sent  # the restart sent nothing again
    assert {str(r["kind"]): str(r["sop_instance_uid"]) for r in again} == {
        kind: row["sop_instance_uid"] for kind, row in first.items()}
    received = pacs.latest_by_uid()
    for kind in (KIND_T1, KIND_FIT):
        old = received[first[kind]["sop_instance_uid"]]
        new = received[second[kind]["sop_instance_uid"]]
        assert old.SOPInstanceUID != new.SOPInstanceUID, kind
        assert old.SeriesInstanceUID != new.SeriesInstanceUID, kind
        assert str(new.SeriesDescription).endswith(")") and "(rev " in new.SeriesDescription
        assert dciodvfy_errors(Path(second[kind]["path"])) == [], kind
    for outputs in (first, second):
        seg = dcmread(outputs["seg"]["path"])
        referenced = {str(item.ReferencedSOPInstanceUID)
                      for series in seg.ReferencedSeriesSequence
                      for item in series.ReferencedInstanceSequence}
        assert referenced == {outputs[KIND_T1]["sop_instance_uid"]}
