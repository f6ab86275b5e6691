"""End to end: scanner -> node listener -> analysis -> test PACS, over real associations.

The node runs as its own process (``python -m node run``) exactly as in production; the
"scanner" is dcmtk's storescu or pynetdicom; the PACS is a pynetdicom Storage SCP that keeps
what it receives. Tolerances for T1 values are justified in ``T1_TOLERANCE_MS``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_noncardiac import non_cardiac_mr_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import PhantomSlice, make_heart_case, make_t1map_stack
from tests.netutil import (
    NodeProcess,
    PacsScp,
    dciodvfy_errors,
    send_files,
    storescu,
    wait_for,
)
from tests.srutil import sr_numbers

pytestmark = pytest.mark.e2e

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SC_CLASSES = {"1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.4"}
SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
}
#: Per-slice tolerance on mean myocardial T1 against the phantom's noise-free tissue T1.
#: The core of a 1.5 T slice holds >= ~150 pixels with ~30-40 ms pixel noise (SE ~3 ms);
#: what remains is partial volume at the borders the core trims. 25 ms is well inside the
#: test-retest limits of agreement of MOLLI itself (about -39 to +34 ms, METHODS.md).
T1_TOLERANCE_MS = 25.0
RESULT_TIMEOUT_S = 90.0


def _study(
    tmp: Path,
    seed: int,
    *,
    vendor: str = "siemens",
    field: float = 1.5,
    n_slices: int = 3,
    expected_count: bool = True,
) -> tuple[list[Path], list[PhantomSlice], list]:
    rng = np.random.default_rng(seed)
    levels = (
        ("basal", "mid", "apical")
        if n_slices == 3
        else tuple(
            ["basal"] * (n_slices // 3)
            + ["mid"] * (n_slices - 2 * (n_slices // 3))
            + ["apical"] * (n_slices // 3)
        )
    )
    # Lesion-free hearts: the e2e tests check the path, so the truth is the tissue T1 itself
    # (accuracy with focal lesions is the plugin tests' business).
    heart = make_heart_case(rng, field_strength_t=field, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=field, levels=levels, heart=heart)
    datasets = t1map_series_datasets(
        slices, vendor=vendor, field_strength_t=field, rng=rng, study=StudyInfo.synthetic(seed)
    )
    if not expected_count:
        for ds in datasets:
            if "ImagesInAcquisition" in ds:
                del ds.ImagesInAcquisition
    paths = write_series(datasets, tmp / f"study-{seed}")
    return paths, slices, datasets


def _outputs_for(pacs: PacsScp, minimum: int = 3) -> dict[str, list]:
    def ready() -> dict[str, list] | None:
        latest = pacs.latest_by_uid()
        kinds: dict[str, list] = {"seg": [], "sr": [], "sc": []}
        for ds in latest.values():
            cls = str(ds.SOPClassUID)
            if cls == SEG_CLASS:
                kinds["seg"].append(ds)
            elif cls in SR_CLASSES:
                kinds["sr"].append(ds)
            elif cls in SC_CLASSES:
                kinds["sc"].append(ds)
        if len(latest) >= minimum and all(kinds.values()):
            return kinds
        return None

    return wait_for(ready, RESULT_TIMEOUT_S, interval=0.1)


def _check_t1_values(srs: list, datasets: list, slices: list[PhantomSlice]) -> None:
    """Per-slice mean myocardial T1 in the SR matches the phantom truth."""
    by_uid = {str(ds.SOPInstanceUID): s for ds, s in zip(datasets, slices, strict=True)}
    checked = 0
    for sr in srs:
        for num in sr_numbers(sr):
            if num.unit != "ms" or num.derivation != "Mean" or len(num.referenced_sop_uids) != 1:
                continue
            truth = by_uid.get(num.referenced_sop_uids[0])
            if truth is None or not (num.finding or "").lower().startswith("myocard"):
                continue
            # What an expert's mid-wall region reads on the noise-free map (the map's own
            # partial volume included; see plugins.t1map.analysis).
            expected = truth.truth["myocardium_t1_midwall_map_ms"]
            assert abs(num.value - expected) <= T1_TOLERANCE_MS, (num, expected)
            checked += 1
    assert checked == len(slices), f"expected a myocardial mean T1 per slice, found {checked}"


def test_storescu_series_comes_back_as_seg_sr_and_summary(
    tmp_path: Path, node: NodeProcess, pacs: PacsScp
) -> None:
    paths, slices, datasets = _study(tmp_path, seed=101, vendor="siemens")
    started = time.time()
    proc = storescu(paths, node.port)
    assert proc.returncode == 0, proc.stderr
    kinds = _outputs_for(pacs)
    elapsed = time.time() - started
    # Completeness is known from ImagesInAcquisition: no stable_age wait is needed.
    assert elapsed < node.stable_age_s + 30
    _check_t1_values(kinds["sr"], datasets, slices)
    for receipt in pacs.received():
        assert dciodvfy_errors(receipt.path) == [], receipt.path
    seg = kinds["seg"][0]
    assert str(seg.StudyInstanceUID) == str(datasets[0].StudyInstanceUID)
    labels = {str(s.SegmentLabel).lower() for s in seg.SegmentSequence}
    assert any("myocard" in label for label in labels)
    assert any("blood" in label or "cavity" in label for label in labels)
    # Provenance: algorithm and version named in the SEG.
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName and algo.AlgorithmVersion
    rows = node.query("SELECT state, attempts FROM jobs")
    assert [(r["state"], r["attempts"]) for r in rows] == [("done", 1)]


def test_pynetdicom_series_without_count_completes_after_stable_age(
    tmp_path: Path, pacs: PacsScp
) -> None:
    # Releases ignored (release_grace_s = 0): the quiet-time fallback alone completes it.
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=4.0,
                       node_config="release_grace_s = 0").start()
    try:
        paths, slices, datasets = _study(tmp_path, seed=202, vendor="philips",
                                         expected_count=False)
        assert send_files(paths, node.port) == [0, 0, 0]
        time.sleep(node.stable_age_s * 0.75)
        assert pacs.received() == [], "analysed before stable_age without a known count"
        kinds = _outputs_for(pacs)
        _check_t1_values(kinds["sr"], datasets, slices)
    finally:
        node.stop()


def test_late_instance_replaces_outputs(tmp_path: Path, node: NodeProcess, pacs: PacsScp) -> None:
    paths, _, datasets = _study(tmp_path, seed=303, vendor="ge", expected_count=False)
    assert send_files(paths[:2], node.port) == [0, 0]
    first = _outputs_for(pacs)
    first_uids = set(pacs.count_by_uid())
    n_first = len(pacs.received())
    assert send_files(paths[2:], node.port) == [0]
    wait_for(lambda: len(pacs.received()) >= 2 * n_first, RESULT_TIMEOUT_S)
    time.sleep(1.0)
    # A re-analysis is a new generation with new UIDs (node.outputs.uids: a PACS keeping the first
    # copy of a UID would keep the stale objects); the earlier ones stay.
    new_uids = set(pacs.count_by_uid()) - first_uids
    assert len(new_uids) == len(first_uids), "re-analysis did not send a new set of objects"
    latest = pacs.latest_by_uid()
    seg = next(ds for uid, ds in latest.items()
               if str(ds.SOPClassUID) == SEG_CLASS and uid in new_uids)
    referenced = {
        str(ref.ReferencedSOPInstanceUID)
        for fr in seg.PerFrameFunctionalGroupsSequence
        for item in fr.DerivationImageSequence
        for ref in item.SourceImageSequence
    }
    assert str(datasets[2].SOPInstanceUID) in referenced
    assert len(first["seg"]) == 1
    jobs = node.query("SELECT generation, state FROM jobs ORDER BY id")
    assert [(r["generation"], r["state"]) for r in jobs] == [(0, "done"), (1, "done")]


def test_kill_during_analysis_resumes_after_restart(tmp_path: Path, pacs: PacsScp) -> None:
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=1.0).start()
    try:
        paths, _, _ = _study(tmp_path, seed=404, n_slices=12)
        assert send_files(paths, node.port) == [0] * len(paths)
        wait_for(lambda: node.query("SELECT 1 FROM jobs WHERE state='running'"), 30, interval=0.01)
        node.kill()
        assert node.query("SELECT state FROM jobs")[0]["state"] == "running"
        assert pacs.received() == []
        node.start()
        _outputs_for(pacs)
        rows = node.query("SELECT state, attempts FROM jobs")
        assert [(r["state"], r["attempts"]) for r in rows] == [("done", 2)]
        stored = node.query("SELECT COUNT(*) AS n FROM instances")[0]["n"]
        assert stored == len(paths)
    finally:
        node.stop()


def test_pacs_down_at_first_gets_results_when_up(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs")  # not started: the port refuses connections
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=1.0).start()
    try:
        paths, _, _ = _study(tmp_path, seed=505)
        assert send_files(paths, node.port) == [0, 0, 0]
        wait_for(
            lambda: node.query("SELECT 1 FROM outbox WHERE attempts >= 2 AND state='pending'"),
            RESULT_TIMEOUT_S,
        )
        node.kill()  # and the node dies meanwhile: the outbox is on disk
        node.start()
        pacs.start()
        _outputs_for(pacs)
        counts = pacs.count_by_uid()
        assert all(n == 1 for n in counts.values()), counts
        wait_for(lambda: not node.query("SELECT 1 FROM outbox WHERE state!='sent'"), 30)
    finally:
        node.stop()
        pacs.stop()


def test_calling_ae_allowlist(tmp_path: Path, pacs: PacsScp) -> None:
    node = NodeProcess(
        tmp_path / "node", pacs.port, extra_config='allowed_calling_aets = ["SCANNER"]'
    ).start()
    try:
        paths, _, _ = _study(tmp_path, seed=606)
        with pytest.raises(AssertionError, match="association"):
            send_files(paths[:1], node.port, calling="INTRUDER")
        assert send_files(paths[:1], node.port, calling="SCANNER") == [0]
        events = node.query("SELECT message FROM events WHERE kind='association_rejected'")
        assert any("INTRUDER" in e["message"] for e in events)
    finally:
        node.stop()


def test_bad_input_gets_clear_answers_and_node_keeps_serving(
    tmp_path: Path, node: NodeProcess, pacs: PacsScp
) -> None:
    rng = np.random.default_rng(707)
    bad = tmp_path / "bad"
    bad.mkdir()
    # 1. Truncated file: Pixel Data shorter than its header says.
    paths, _, datasets = _study(tmp_path, seed=708)
    blob = paths[0].read_bytes()
    truncated = bad / "truncated.dcm"
    truncated.write_bytes(blob[: len(blob) - 5000])
    assert send_files([truncated], node.port, raw=True) == [0xC000]

    # 2. MR T1 map without PixelSpacing: stored, routed, job fails with the reason.
    no_spacing = [dcmread(p) for p in paths]
    no_spacing_series = generate_uid()
    for ds in no_spacing:
        del ds.PixelSpacing
        ds.SeriesInstanceUID = no_spacing_series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ns_paths = write_series(no_spacing, bad / "nospacing")
    assert send_files(ns_paths, node.port) == [0, 0, 0]

    # 3. A non-cardiac MR series: stored, recorded as not routed with a reason.
    brain = non_cardiac_mr_series_datasets(rng=rng, study=StudyInfo.synthetic(707))
    brain_paths = write_series(brain, bad / "brain")
    assert set(send_files(brain_paths, node.port)) == {0}

    # 4. A non-image SOP class (Basic Text SR from another system): stored, not analysed.
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    text_sr = Dataset()
    text_sr.file_meta = FileMetaDataset()
    text_sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    text_sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    text_sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    text_sr.SOPInstanceUID = generate_uid()
    text_sr.file_meta.MediaStorageSOPInstanceUID = text_sr.SOPInstanceUID
    text_sr.StudyInstanceUID = datasets[0].StudyInstanceUID
    text_sr.SeriesInstanceUID = generate_uid()
    text_sr.Modality = "SR"
    text_sr.ValueType = "CONTAINER"
    sr_path = bad / "text-sr.dcm"
    text_sr.save_as(sr_path, enforce_file_format=True)
    assert send_files([sr_path], node.port) == [0]

    # 5. Compressed transfer syntax the node cannot decode (JPEG 2000 with a broken codestream).
    from pydicom.encaps import encapsulate

    j2k = dcmread(paths[1])
    j2k.SeriesInstanceUID = generate_uid()
    j2k.SOPInstanceUID = generate_uid()
    j2k.file_meta.MediaStorageSOPInstanceUID = j2k.SOPInstanceUID
    j2k.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    j2k.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
    j2k["PixelData"].VR = "OB"
    j2k_path = bad / "j2k.dcm"
    j2k.save_as(j2k_path, enforce_file_format=False)
    assert send_files([j2k_path], node.port) == [0]

    def settled() -> bool:
        rows = node.query("SELECT state FROM series")
        jobs = node.query("SELECT state FROM jobs")
        return (
            len(rows) >= 4
            and all(r["state"] in ("routed", "unrouted") for r in rows)
            and all(j["state"] in ("done", "failed") for j in jobs)
        )

    wait_for(settled, RESULT_TIMEOUT_S)
    series = {r["series_instance_uid"]: r for r in node.query("SELECT * FROM series")}
    assert series[str(brain[0].SeriesInstanceUID)]["state"] == "unrouted"
    assert series[str(brain[0].SeriesInstanceUID)]["route_reason"]
    assert series[str(text_sr.SeriesInstanceUID)]["state"] == "unrouted"
    jobs = {
        r["series_instance_uid"]: r
        for r in node.query("SELECT series_instance_uid, state, error FROM jobs")
    }
    failed = jobs[str(no_spacing[0].SeriesInstanceUID)]
    assert failed["state"] == "failed" and "PixelSpacing" in failed["error"]
    if str(j2k.SeriesInstanceUID) in jobs:
        j2k_job = jobs[str(j2k.SeriesInstanceUID)]
        assert j2k_job["state"] == "failed" and j2k_job["error"]
    else:
        assert series[str(j2k.SeriesInstanceUID)]["state"] == "unrouted"
    refused = node.query("SELECT message FROM events WHERE kind='store_refused'")
    assert any("truncated" in e["message"].lower() for e in refused)
    assert node.echo_ok()
    assert pacs.received() == []


def test_status_endpoint_reports_series_jobs_and_deliveries(tmp_path: Path, pacs: PacsScp) -> None:
    import json
    import urllib.request

    from tests.netutil import free_port

    http_port = free_port()
    node = NodeProcess(tmp_path / "node", pacs.port, http_port=http_port).start()
    base = f"http://127.0.0.1:{http_port}"

    def get(path: str) -> dict:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return json.loads(response.read())

    try:
        assert get("/healthz")["status"] == "ok"
        paths, _, datasets = _study(tmp_path, seed=808)
        assert send_files(paths, node.port) == [0, 0, 0]
        _outputs_for(pacs)
        wait_for(lambda: get("/status")["counts"]["outbox"].get("sent", 0) >= 3, 30)
        report = get("/status")
        [series] = report["series"]
        assert series["series_instance_uid"] == str(datasets[0].SeriesInstanceUID)
        assert series["state"] == "routed" and series["analysis"] == "t1map"
        [job] = report["jobs"]
        assert job["state"] == "done" and job["timings"]["total_s"] > 0
        assert "global_myocardium_t1_mean_ms" in job["summary"]["values"]
        detail = get(f"/jobs/{job['id']}")
        assert detail["results"]["analysis"] == "t1map"
        assert {o["state"] for o in detail["outbox"]} == {"sent"}
        with pytest.raises(urllib.error.HTTPError):
            get("/jobs/999")
    finally:
        node.stop()
