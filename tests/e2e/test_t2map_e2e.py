"""End to end: a T2-map series sent to the node's listener comes back as SEG, SRs and a summary.

The node runs as its own process; the T2 analysis is reached only through the registry (its
routing rules, plugin and node descriptor), which is what this test proves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.phantoms.dicom_build import stored_to_physical, write_series
from models.phantoms.dicom_maps import t2map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from plugins.t1map.analysis import conservative_core
from tests.e2e.test_node_e2e import RESULT_TIMEOUT_S, SEG_CLASS, SR_CLASSES
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, storescu, wait_for
from tests.plugins.test_t2map import CORE_AGREEMENT_MS
from tests.srutil import sr_numbers

pytestmark = pytest.mark.e2e

T2_CODE_MEANING = "T2"
"""Meaning of DCM 113065, the concept of every T2 value in the SRs."""


def test_t2_map_over_the_listener(tmp_path: Path, node: NodeProcess, pacs: PacsScp) -> None:
    rng = np.random.default_rng(4242)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, heart=heart)
    datasets = t2map_series_datasets(slices, vendor="siemens", rng=rng,
                                     study=StudyInfo.synthetic(4242))
    proc = storescu(write_series(datasets, tmp_path / "t2"), node.port)
    assert proc.returncode == 0, proc.stderr

    def outputs() -> dict[str, list] | None:
        latest = list(pacs.latest_by_uid().values())
        srs = [ds for ds in latest if str(ds.SOPClassUID) in SR_CLASSES]
        segs = [ds for ds in latest if str(ds.SOPClassUID) == SEG_CLASS]
        return {"sr": srs, "seg": segs} if len(srs) >= 2 and segs else None

    found = wait_for(outputs, 3 * RESULT_TIMEOUT_S, interval=0.2)
    rows = node.query("SELECT analysis, state, summary FROM jobs")
    assert [(r["analysis"], r["state"]) for r in rows] == [("t2map", "done")]
    assert "global_myocardium_t2_mean_ms" in str(rows[0]["summary"])
    for receipt in pacs.received():
        assert dciodvfy_errors(receipt.path) == [], receipt.path
    truth = {str(ds.SOPInstanceUID): (ds, s) for ds, s in zip(datasets, slices, strict=True)}
    checked = 0
    for sr in found["sr"]:
        for num in sr_numbers(sr):
            if (num.concept != T2_CODE_MEANING or num.derivation != "Mean"
                    or len(num.referenced_sop_uids) != 1):
                continue
            ds, phantom = truth[num.referenced_sop_uids[0]]
            core = conservative_core(phantom.labels, phantom.pixel_spacing)
            exact = float(stored_to_physical(ds)[core].mean())
            assert num.unit == "ms" and abs(num.value - exact) <= CORE_AGREEMENT_MS
            checked += 1
    assert checked == len(slices), f"expected one mean T2 per slice, found {checked}"
