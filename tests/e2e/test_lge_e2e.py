"""End to end for LGE: a scanner sends an LGE study, PACS gets the scar results of one series.

The study is what a scanner sends around an LGE acquisition: the magnitude and the PSIR
reconstructions of the same short-axis stack (magnitude first, as Siemens numbers them), a
matched cine and a TI scout.  The node must analyse the PSIR series only (the magnitude is
superseded, with the reason recorded), leave cine and TI scout unanalysed with their reasons,
and deliver SEG, SRs and summary image of the PSIR series to PACS, all valid DICOM.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from models.phantoms.dicom_lge import write_lge_study_series
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, send_files, wait_for

pytestmark = pytest.mark.e2e

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RESULT_TIMEOUT_S = 120.0


def test_lge_study_comes_back_as_scar_results_of_the_psir_series(
    tmp_path: Path, pacs: PacsScp
) -> None:
    truth = write_lge_study_series(tmp_path / "study", seed=5, scar_pattern="ischaemic_lad",
                                   n_slices=8)
    by_kind = {s["kind"]: s for s in truth["series"]}
    root = tmp_path / "study"
    files = {kind: [root / i["file"] for i in s["instances"]] for kind, s in by_kind.items()}
    study_uid = str(dcmread(files["lge_psir"][0], stop_before_pixels=True).StudyInstanceUID)
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start()
    try:
        for kind in ("lge_magnitude", "lge_psir", "cine", "ti_scout"):
            assert set(send_files(files[kind], node.port)) == {0}, kind
        psir_uid = by_kind["lge_psir"]["series_instance_uid"]
        magnitude_uid = by_kind["lge_magnitude"]["series_instance_uid"]

        def delivered() -> list | None:
            rows = node.query(
                "SELECT o.state FROM outbox o JOIN jobs j ON j.id = o.job_id"
                " WHERE j.series_instance_uid=?", (psir_uid,)
            )
            return rows if rows and all(r["state"] == "sent" for r in rows) else None

        wait_for(delivered, RESULT_TIMEOUT_S, interval=0.2)
        jobs = {r["series_instance_uid"]: r for r in node.query("SELECT * FROM jobs")}
        assert jobs[psir_uid]["state"] == "done" and jobs[psir_uid]["analysis"] == "lge"
        # The magnitude reconstruction waited for its PSIR partner and was superseded by it.
        assert jobs[magnitude_uid]["state"] == "superseded"
        assert "another reconstruction of the same LGE acquisition" in jobs[magnitude_uid]["error"]
        series = {r["series_instance_uid"]: r for r in node.query("SELECT * FROM series")}
        for kind in ("cine", "ti_scout"):
            row = series[by_kind[kind]["series_instance_uid"]]
            assert row["state"] == "unrouted" and row["route_reason"], kind
    finally:
        node.stop()

    received = pacs.latest_by_uid()
    assert len(received) == 4, sorted(str(ds.SOPClassUID) for ds in received.values())
    for ds in received.values():
        assert str(ds.StudyInstanceUID) == study_uid
    seg = next(ds for ds in received.values() if str(ds.SOPClassUID) == SEG_CLASS)
    labels = {s.SegmentLabel for s in seg.SegmentSequence}
    assert "LV myocardium" in labels and "LV myocardial scar (LGE)" in labels
    assert {ref.SeriesInstanceUID for ref in seg.ReferencedSeriesSequence} == {psir_uid}
    for path in sorted(pacs.folder.glob("*.dcm")):
        assert dciodvfy_errors(path) == [], path
        assert dcmread(path, stop_before_pixels=True).SeriesDescription.startswith("cmr-node")
