"""End to end for LGE with cine: the node finds the study's cine and segments with both.

A scanner sends the short-axis cine of a study and then its PSIR LGE series.  The cine is not
analysed (it stays unrouted), but the LGE job finds it as its ``cine`` companion; every LGE
slice has a cine image at its position, so every slice must be segmented by the two-channel
LGE + cine network.  PACS must receive SEG, SRs and summary image of the LGE series whose SR
says the cine was used and names the network, all valid DICOM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread

from models.phantoms.dicom_lge import write_lge_study_series
from models.runtime.lgeseg.fusion_segmenter import DEFAULT_FUSION_WEIGHTS, FUSION_MODEL_NAME
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, send_files, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not DEFAULT_FUSION_WEIGHTS.exists(), reason="no LGE + cine weights"),
]

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_CLASSES = ("1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.22")
RESULT_TIMEOUT_S = 120.0


def _texts(ds: object) -> list[str]:
    found = []
    for item in getattr(ds, "ContentSequence", []):
        if "TextValue" in item:
            found.append(str(item.TextValue))
        found.extend(_texts(item))
    return found


def _study(tmp_path: Path) -> tuple[dict[str, list[Path]], str, str]:
    """A six-slice LCX study written as DICOM: files by kind, PSIR and cine series UIDs."""
    truth = write_lge_study_series(tmp_path / "study", seed=7, scar_pattern="ischaemic_lcx",
                                   n_slices=6)
    by_kind = {s["kind"]: s for s in truth["series"]}
    root = tmp_path / "study"
    files = {kind: [root / i["file"] for i in s["instances"]] for kind, s in by_kind.items()}
    return (files, by_kind["lge_psir"]["series_instance_uid"],
            by_kind["cine"]["series_instance_uid"])


def test_lge_series_is_segmented_with_the_cine_of_its_study(
    tmp_path: Path, pacs: PacsScp
) -> None:
    files, psir_uid, cine_uid = _study(tmp_path)
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start()
    try:
        # The cine is acquired (and sent) first; the LGE job looks for it when it runs.
        assert set(send_files(files["cine"], node.port)) == {0}

        def cine_settled() -> bool:
            rows = node.query("SELECT state FROM series WHERE series_instance_uid=?",
                              (cine_uid,))
            return bool(rows) and rows[0]["state"] == "unrouted"

        wait_for(cine_settled, RESULT_TIMEOUT_S, interval=0.2)
        assert set(send_files(files["lge_psir"], node.port)) == {0}

        def delivered() -> list | None:
            rows = node.query(
                "SELECT o.state FROM outbox o JOIN jobs j ON j.id = o.job_id"
                " WHERE j.series_instance_uid=?", (psir_uid,)
            )
            return rows if rows and all(r["state"] == "sent" for r in rows) else None

        wait_for(delivered, RESULT_TIMEOUT_S, interval=0.2)
        jobs = node.query("SELECT * FROM jobs")
        assert {r["series_instance_uid"] for r in jobs} == {psir_uid}  # cine not analysed
        job = jobs[0]
        assert job["state"] == "done" and job["analysis"] == "lge"
        summary = json.loads((Path(job["result_dir"]) / "results.json").read_text())
    finally:
        node.stop()

    rows = summary["extra"]["slices"]
    assert len(rows) == 6
    assert {row["mode"] for row in rows} == {"lge+cine"}, (
        "the LGE job got no cine: does node/jobs/worker.py offer the study's series as companion "
        f"candidates (WorkerPool.candidates, roles found by header)? {rows[0]['cine']}")
    assert {row["cine"]["series_instance_uid"] for row in rows} == {cine_uid}
    assert summary["extra"]["lge"]["cine"]["series_instance_uid"] == cine_uid
    assert summary["provenance"]["model_name"] == FUSION_MODEL_NAME
    assert any(f["code"] == "cine_fusion" for f in summary["qc_flags"])

    received = pacs.latest_by_uid()
    assert len(received) == 4, sorted(str(ds.SOPClassUID) for ds in received.values())
    seg = next(ds for ds in received.values() if str(ds.SOPClassUID) == SEG_CLASS)
    assert {ref.SeriesInstanceUID for ref in seg.ReferencedSeriesSequence} == {psir_uid}
    srs = [ds for ds in received.values() if str(ds.SOPClassUID) in SR_CLASSES]
    texts = " ".join(t for ds in srs for t in _texts(ds))
    assert "used the matched cine" in texts and cine_uid in texts
    assert FUSION_MODEL_NAME in texts
    for path in sorted(pacs.folder.glob("*.dcm")):
        assert dciodvfy_errors(path) == [], path
        assert dcmread(path, stop_before_pixels=True).SeriesDescription.startswith("cmr-node")


def test_lge_is_analysed_again_when_its_cine_arrives_late(
    tmp_path: Path, pacs: PacsScp
) -> None:
    files, psir_uid, cine_uid = _study(tmp_path)
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start()

    def delivered(generation: int) -> list | None:
        rows = node.query(
            "SELECT o.state FROM outbox o JOIN jobs j ON j.id = o.job_id"
            " WHERE j.series_instance_uid=? AND j.generation=? AND j.state='done'",
            (psir_uid, generation))
        return rows if rows and all(r["state"] == "sent" for r in rows) else None

    def summary_of(generation: int) -> dict:
        job = node.query("SELECT * FROM jobs WHERE series_instance_uid=? AND generation=?",
                         (psir_uid, generation))[0]
        return json.loads((Path(job["result_dir"]) / "results.json").read_text())

    try:
        # The LGE arrives alone and is analysed without a cine ...
        assert set(send_files(files["lge_psir"], node.port)) == {0}
        wait_for(lambda: delivered(0), RESULT_TIMEOUT_S, interval=0.2)
        first = summary_of(0)
        # ... then the cine completes: the LGE is queued again and now uses it.
        assert set(send_files(files["cine"], node.port)) == {0}
        wait_for(lambda: delivered(1), RESULT_TIMEOUT_S, interval=0.2)
        second = summary_of(1)
        events = node.query("SELECT message FROM events WHERE kind='reanalysis'")
        jobs = node.query("SELECT series_instance_uid, generation, state FROM jobs")
    finally:
        node.stop()

    assert {row["mode"] for row in first["extra"]["slices"]} == {"lge"}
    assert any(f["code"] == "cine_not_used" for f in first["qc_flags"])
    assert {row["mode"] for row in second["extra"]["slices"]} == {"lge+cine"}
    assert any(f["code"] == "cine_fusion" for f in second["qc_flags"])
    assert len(events) == 1 and cine_uid in events[0]["message"]
    assert sorted((r["generation"], r["state"]) for r in jobs
                  if r["series_instance_uid"] == psir_uid) == [(0, "done"), (1, "done")]
    assert {r["series_instance_uid"] for r in jobs} == {psir_uid}  # the cine is not analysed
    # The second outputs are a new generation with new UIDs (node.outputs.uids: a PACS keeping the
    # first copy of a UID would keep the stale ones): a second set of four, in "(rev 1)" series.
    received = pacs.latest_by_uid()
    assert len(received) == 8, sorted(str(ds.SOPClassUID) for ds in received.values())
    revised = [ds for ds in received.values() if ds.SeriesDescription.endswith("(rev 1)")]
    assert len(revised) == 4
    srs = [ds for ds in revised if str(ds.SOPClassUID) in SR_CLASSES]
    assert all("PredecessorDocumentsSequence" in ds for ds in srs)
    assert "used the matched cine" in " ".join(t for ds in srs for t in _texts(ds))
