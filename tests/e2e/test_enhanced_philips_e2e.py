"""End to end: the Philips-style native MOLLI series as one Enhanced MR Image (issue 19).

The scanner's "enhanced" export (:mod:`models.phantoms.enhanced_mr`): one multi-frame
instance holding the inversion-recovery source frames (inversion time in the per-frame MR
Modifier InversionTimes) and the scanner's T1-map frames, BodyPartExamined "ABDOMEN".  Sent
over the node's listener, the native T1 must be analysed on the scanner's map frames, give the
same T1 per slice as the same maps sent the tidy way, and its results must reach the PACS as
valid DICOM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.phantoms.enhanced_mr import write_enhanced_molli_study
from tests.e2e.test_philips_style_e2e import assert_same_t1_as_tidy_maps
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, send_files, wait_for

pytestmark = pytest.mark.e2e

RESULT_TIMEOUT_S = 240.0


@pytest.mark.timeout(600)
def test_enhanced_philips_molli_is_analysed_on_the_map_frames(
    tmp_path: Path, pacs: PacsScp,
) -> None:
    study = write_enhanced_molli_study(tmp_path / "study", seed=19)
    assert dciodvfy_errors(study["path"]) == []
    uid = study["series_instance_uid"]
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start()
    try:
        assert send_files([Path(study["path"])], node.port) == [0]

        def t1map_done() -> dict | None:
            rows = node.query("SELECT * FROM jobs WHERE series_instance_uid = ? AND analysis = ?",
                              (uid, "t1map"))
            latest = max(rows, key=lambda r: r["id"]) if rows else None
            return latest if latest is not None and latest["state"] == "done" else None

        job = wait_for(t1map_done, RESULT_TIMEOUT_S, interval=0.5)
        t1 = json.loads((Path(job["result_dir"]) / "results.json").read_text())
        assert t1["frames"] == 3
        assert any("took the 3 T1-map image(s)" in n for n in t1["image_selection"])
        assert t1["acquisition"]["vendor"] == "philips"
        assert t1["acquisition"]["sequence_family"] == "molli"
        assert_same_t1_as_tidy_maps(study, t1, tmp_path / "tidy")

        def delivered() -> bool:
            rows = node.query("SELECT state FROM outbox WHERE job_id = ?", (job["id"],))
            return bool(rows) and all(r["state"] == "sent" for r in rows)

        wait_for(delivered, RESULT_TIMEOUT_S, interval=0.5)
        received = pacs.received()
        assert received
        for receipt in received:
            assert dciodvfy_errors(receipt.path) == [], receipt.path
    finally:
        node.stop()
