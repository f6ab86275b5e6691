"""Orthanc mode: a T2-map series stored in a real Orthanc is analysed by the plugin through the
registry, and its SEG, SRs and summary image are stored back into Orthanc and sent to PACS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t2map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from tests.netutil import PacsScp, storescu
from tests.orthanc.orthancutil import ORTHANC_AVAILABLE, OrthancProcess, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ORTHANC_AVAILABLE, reason="Debian's orthanc and orthanc-python"),
]

OUTPUT_KINDS = {"seg", "sr", "sr-summary", "summary-image"}
RESULT_TIMEOUT_S = 240.0


def test_t2_map_in_orthanc_mode(tmp_path: Path) -> None:
    rng = np.random.default_rng(77)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, heart=heart)
    paths = write_series(
        t2map_series_datasets(slices, vendor="siemens", rng=rng, study=StudyInfo.synthetic(77)),
        tmp_path / "t2")
    pacs = PacsScp(tmp_path / "pacs").start()
    orthanc = OrthancProcess(tmp_path / "orthanc", pacs.port).start()
    try:
        proc = storescu(paths, orthanc.dicom_port, called=orthanc.aet)
        assert proc.returncode == 0, proc.stderr
        [job] = wait_until(
            lambda: orthanc.query("SELECT * FROM jobs WHERE state='done'"), RESULT_TIMEOUT_S)
        assert job["analysis"] == "t2map"
        summary = json.loads(job["summary"])
        assert summary["key_numbers"]["global_myocardium_t2_mean_ms"] is not None
        outputs = {kind: out["sop_instance_uid"] for kind, out in summary["outputs"].items()}
        assert set(outputs) == OUTPUT_KINDS

        def stored(uid: str) -> bool:
            status, body = orthanc.request("POST", "/tools/lookup", uid.encode())
            assert status == 200
            return any(item["Type"] == "Instance" for item in json.loads(body))

        # The outbox stores the outputs back into Orthanc after the job is done.
        wait_until(lambda: all(stored(uid) for uid in outputs.values()) or None,
                   RESULT_TIMEOUT_S)
        wait_until(lambda: set(outputs.values()) <= set(pacs.latest_by_uid()) or None,
                   RESULT_TIMEOUT_S)
    except BaseException:
        print(orthanc.log_tail())
        raise
    finally:
        orthanc.stop()
        pacs.stop()
