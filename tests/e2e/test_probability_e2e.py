"""End to end: with ``[outputs]`` enabled, the network's uncertainty reaches PACS as DICOM.

A scanner sends an LGE short-axis stack (PSIR); the node analyses it with the two-stage
network and delivers, besides SEG, SRs and summary image, a FRACTIONAL SEG of the myocardium
and scar probabilities and a Parametric Map of the per-pixel uncertainty.  Both must reach
the test PACS, reference the images the binary SEG references, and pass dciodvfy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from models.phantoms.dicom_lge import write_lge_study_series
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, send_files, wait_for

pytestmark = pytest.mark.e2e

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
PARAMETRIC_MAP_CLASS = "1.2.840.10008.5.1.4.1.1.30"
RESULT_TIMEOUT_S = 180.0
OUTPUTS = "[outputs]\nprobability_seg = true\nuncertainty_map = true\n"


def _referenced(ds: object) -> set[str]:
    return {
        str(item.ReferencedSOPInstanceUID)
        for series in ds.ReferencedSeriesSequence  # type: ignore[attr-defined]
        for item in series.ReferencedInstanceSequence
    }


def test_lge_uncertainty_reaches_pacs_as_fractional_seg_and_parametric_map(
    tmp_path: Path, pacs: PacsScp
) -> None:
    truth = write_lge_study_series(tmp_path / "study", seed=5, scar_pattern="ischaemic_lad",
                                   n_slices=6)
    psir = next(s for s in truth["series"] if s["kind"] == "lge_psir")
    files = [tmp_path / "study" / i["file"] for i in psir["instances"]]
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0,
                       extra_config=OUTPUTS).start()
    try:
        assert set(send_files(files, node.port)) == {0}

        def delivered() -> list | None:
            rows = node.query(
                "SELECT o.state, o.kind FROM outbox o JOIN jobs j ON j.id = o.job_id"
                " WHERE j.series_instance_uid=?", (psir["series_instance_uid"],)
            )
            return rows if rows and all(r["state"] == "sent" for r in rows) else None

        rows = wait_for(delivered, RESULT_TIMEOUT_S, interval=0.2)
    finally:
        node.stop()

    kinds = sorted(r["kind"] for r in rows)
    assert "seg-probability" in kinds and "parametric-map-uncertainty" in kinds, kinds
    received = list(pacs.latest_by_uid().values())
    segs = [ds for ds in received if str(ds.SOPClassUID) == SEG_CLASS]
    binary = next(ds for ds in segs if ds.SegmentationType == "BINARY")
    fractional = next(ds for ds in segs if ds.SegmentationType == "FRACTIONAL")
    assert fractional.SegmentationFractionalType == "PROBABILITY"
    assert {s.SegmentLabel for s in fractional.SegmentSequence} == {
        "myocardium probability", "scar probability"
    }
    weights = binary.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    for segment in fractional.SegmentSequence:
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == weights.AlgorithmName
        assert algorithm.AlgorithmParameters == weights.AlgorithmParameters
        assert "weights_sha256" in algorithm.AlgorithmParameters
    assert _referenced(fractional) == _referenced(binary)
    # The probabilities are the network's: high on the binary myocardium, low far from it.
    assert int(fractional.MaximumFractionalValue) == 255
    values = fractional.pixel_array.reshape(-1, fractional.Rows, fractional.Columns)
    assert values.max() > 200 and np.median(values) < 10

    pm = next(ds for ds in received if str(ds.SOPClassUID) == PARAMETRIC_MAP_CLASS)
    assert _referenced(pm) == {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                               for f in files}
    uncertainty = pm.pixel_array
    assert float(uncertainty.min()) >= 0.0 and float(uncertainty.max()) <= 1.0
    assert float(uncertainty.max()) > 0.5
    for ds in (fractional, pm):
        assert "not for diagnostic use" in ds.ContentDescription
        assert "not for diagnostic use" in ds.ImageComments
    for path in sorted(pacs.folder.glob("*.dcm")):
        assert dciodvfy_errors(path) == [], path
