"""End to end: a Philips-style study over the node's listener (issue 19).

The study is sent as a Philips scanner sends it (:mod:`models.phantoms.philips_style`): the
native MOLLI T1 maps stored in the series of their inversion-recovery source images, the
inversion times only in the private tag (2005,1572), the post-contrast maps in a series of
their own, an IR-TFE PSIR LGE stack without LGE naming, and BodyPartExamined "ABDOMEN" on
every series.  The node must analyse the scanner's native maps (t1map), fit MOLLI from the
source images and compare it with the scanner's map (molli), compute ECV or lambda from the
post-contrast series with the native maps as companion (ecv), and analyse the LGE (lge); every
delivered object must be valid DICOM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.philips_style import write_philips_style_study
from node.jobs.pipeline import run_analysis, writer_settings
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, send_files, wait_for
from tests.networks import node_options

pytestmark = pytest.mark.e2e

RESULT_TIMEOUT_S = 240.0


def _results(job: dict) -> dict:
    return json.loads((Path(job["result_dir"]) / "results.json").read_text())


@pytest.mark.timeout(900)
def assert_same_t1_as_tidy_maps(study: dict, t1: dict, folder: Path) -> None:
    """The conventions change nothing: the same maps sent the tidy way (one series of maps,
    standard attributes, BodyPartExamined HEART) give the same T1 per slice as ``t1``, the
    node's results of the study's native maps."""
    tidy = t1map_series_datasets(study["native_slices"], vendor="philips",
                                 study=study["study"], series_number=12, slice_gap_mm=8.0)
    for ds in tidy:
        ds.BodyPartExamined = "HEART"
    tidy_run = run_analysis(write_series(tidy, folder), "t1map", node_options("t1map"),
                            writer_settings("cmr-node", None))
    tidy_means = [m.value for sl in tidy_run.result.slices for m in sl.measurements
                  if m.key == "myocardium_t1_mean_ms"]
    means = [s["measurements"]["myocardium_t1_mean_ms"]["value"] for s in t1["slices"]
             if "myocardium_t1_mean_ms" in s["measurements"]]
    assert len(means) == 3 == len(tidy_means), t1["slices"]
    assert means == pytest.approx(tidy_means, abs=0.01)


def test_philips_style_study_is_analysed_end_to_end(tmp_path: Path, pacs: PacsScp) -> None:
    study = write_philips_style_study(tmp_path / "study", seed=19)
    series = {s["kind"]: s for s in study["series"]}
    # The inputs imitate Philips' conventions without breaking the standard.
    native_files = series["native_molli"]["files"]
    for path in (native_files[0], native_files[8], series["post_t1map"]["files"][0],
                 series["lge_psir"]["files"][0]):
        assert dciodvfy_errors(path) == [], path
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start()
    try:
        for kind in ("native_molli", "post_t1map", "lge_psir"):
            paths = [Path(p) for p in series[kind]["files"]]
            assert set(send_files(paths, node.port)) == {0}, kind
        expected = {(s["series_instance_uid"], a) for s in study["series"]
                    for a in s["expected_analyses"]}

        def finished() -> list[dict] | None:
            rows = node.query("SELECT * FROM jobs")
            got = {(r["series_instance_uid"], r["analysis"]) for r in rows}
            done = [r for r in rows if r["state"] in ("done", "failed")]
            if not expected <= got:
                return None
            latest = {}
            for r in rows:
                key = (r["series_instance_uid"], r["analysis"])
                if key not in latest or r["id"] > latest[key]["id"]:
                    latest[key] = r
            if all(latest[k]["state"] == "done" for k in expected) and len(done) >= len(expected):
                return list(latest.values())
            return None

        jobs = wait_for(finished, RESULT_TIMEOUT_S, interval=0.5)
        by_key = {(j["series_instance_uid"], j["analysis"]): j for j in jobs}
        native_uid = series["native_molli"]["series_instance_uid"]

        # Native T1 analysed on the scanner's maps: the map images were chosen, and why.
        t1 = _results(by_key[(native_uid, "t1map")])
        assert t1["frames"] == 3
        assert any("took the 3 T1-map image(s)" in n for n in t1["image_selection"])
        assert t1["acquisition"]["vendor"] == "philips"
        assert t1["acquisition"]["sequence_family"] == "molli"
        assert t1["acquisition"]["field_strength_t"] == 1.5
        assert_same_t1_as_tidy_maps(study, t1, tmp_path / "tidy")
        headers = [dcmread(p, stop_before_pixels=True) for p in series["native_molli"]["files"]]
        map_uids = {str(h.SOPInstanceUID) for h in headers if list(h.ImageType)[2] == "T1"}
        assert {s["sop_instance_uid"] for s in t1["slices"]} == map_uids

        # MOLLI fitted from the source images (TIs from the private tag), compared with the
        # scanner's map of the same series.
        molli = _results(by_key[(native_uid, "molli")])
        fit = molli["extra"]["molli"]
        assert fit["scanner_map_comparison"], fit
        assert len(fit["scanner_map_comparison"]) == 3

        # ECV or lambda from the post-contrast series, with the native maps as companion.
        ecv = _results(by_key[(series["post_t1map"]["series_instance_uid"], "ecv")])
        measured = set(ecv["global"]) | {k for s in ecv["slices"] for k in s["measurements"]}
        assert any("ecv" in k or "partition" in k or "lambda" in k for k in measured), measured

        # LGE recognised without LGE naming and analysed.
        lge = by_key[(series["lge_psir"]["series_instance_uid"], "lge")]
        assert _results(lge)["status"] == "analysed"

        def delivered() -> bool:
            # The latest job of each expected analysis (the ECV is analysed again once the
            # native map is done) has delivered everything; nothing is left pending.
            latest = finished()
            if latest is None:
                return False
            ids = {j["id"] for j in latest if (j["series_instance_uid"], j["analysis"]) in expected}
            rows = node.query("SELECT job_id, state FROM outbox")
            final = [r for r in rows if r["job_id"] in ids]
            return (
                {r["job_id"] for r in final} == ids
                and all(r["state"] == "sent" for r in final)
                and all(r["state"] in ("sent", "superseded") for r in rows)
            )

        try:
            wait_for(delivered, RESULT_TIMEOUT_S, interval=0.5)
        except TimeoutError as exc:
            rows = node.query(
                "SELECT o.job_id, o.state, o.kind, o.last_error, j.analysis, j.state AS job"
                " FROM outbox o JOIN jobs j ON j.id = o.job_id"
            )
            raise AssertionError(f"not delivered: {[dict(r) for r in rows]}") from exc
        for receipt in pacs.received():
            assert dciodvfy_errors(receipt.path) == [], receipt.path
    finally:
        node.stop()
