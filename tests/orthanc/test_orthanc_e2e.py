"""End to end with a real Orthanc (Debian's 1.10 with orthanc-python) running the plugin.

A "scanner" (dcmtk's storescu) sends a phantom T1-map series to Orthanc's DICOM port; the
plugin analyses it and the SEG, SRs and summary image must appear in Orthanc and at a test
PACS (a pynetdicom Storage SCP named in the node's settings). Orthanc runs with HTTP
authentication, so the REST routes are checked to inherit it. Where Chromium is installed,
Orthanc Explorer and the dashboard are rendered headless: the DOM must show the node's
panels and screenshots are kept in ``build/screenshots/orthanc``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from tests.netutil import REPO, PacsScp, storescu
from tests.orthanc.conftest import brain_files, t1map_files
from tests.orthanc.orthancutil import (
    ORTHANC_AVAILABLE,
    PASSWORD,
    USER,
    OrthancProcess,
    wait_until,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ORTHANC_AVAILABLE, reason="Debian's orthanc and orthanc-python"),
]

OUTPUT_KINDS = {"seg", "sr", "sr-summary", "summary-image"}
RESULT_TIMEOUT_S = 120.0
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT_DIR = REPO / "build" / "screenshots" / "orthanc"
WINDOW = (1400, 1300)


def _send(orthanc: OrthancProcess, paths: list[Path]) -> None:
    proc = storescu(paths, orthanc.dicom_port, called=orthanc.aet)
    assert proc.returncode == 0, proc.stderr


def _done_jobs(orthanc: OrthancProcess) -> list[Any]:
    return orthanc.query("SELECT * FROM jobs WHERE state='done' ORDER BY id")


def _output_uids(job_row: Any) -> dict[str, str]:
    summary = json.loads(job_row["summary"])
    return {kind: out["sop_instance_uid"] for kind, out in summary["outputs"].items()}


def _orthanc_instance(orthanc: OrthancProcess, sop_uid: str) -> str | None:
    status, body = orthanc.request("POST", "/tools/lookup", sop_uid.encode())
    assert status == 200
    found = [item["ID"] for item in json.loads(body) if item["Type"] == "Instance"]
    return found[0] if found else None


@dataclass
class Analysed:
    """An Orthanc that analysed one T1-map series (and saw a brain series it leaves alone)."""

    orthanc: OrthancProcess
    pacs: PacsScp
    paths: list[Path]
    input_uid: str
    job: Any
    outputs: dict[str, str]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Analysed]:
    tmp = tmp_path_factory.mktemp("orthanc-e2e")
    pacs = PacsScp(tmp / "pacs").start()
    orthanc = OrthancProcess(tmp / "orthanc", pacs.port).start()
    try:
        paths = t1map_files(tmp, seed=31)
        _send(orthanc, brain_files(tmp, seed=32))
        _send(orthanc, paths)
        [job] = wait_until(lambda: _done_jobs(orthanc), RESULT_TIMEOUT_S)
        input_uid = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
        yield Analysed(orthanc, pacs, paths, input_uid, job, _output_uids(job))
    except BaseException:
        print(orthanc.log_tail())
        raise
    finally:
        orthanc.stop()
        pacs.stop()


def test_outputs_arrive_in_orthanc_and_at_pacs(analysed: Analysed) -> None:
    orthanc, outputs = analysed.orthanc, analysed.outputs
    assert set(outputs) == OUTPUT_KINDS
    wait_until(lambda: set(analysed.pacs.count_by_uid()) >= set(outputs.values()), 60)
    assert set(analysed.pacs.count_by_uid()) == set(outputs.values())
    wait_until(lambda: all(_orthanc_instance(orthanc, uid) for uid in outputs.values()), 30)
    seg_id = _orthanc_instance(orthanc, outputs["seg"])
    seg_tags = orthanc.get(f"/instances/{seg_id}/simplified-tags")
    assert seg_tags["Modality"] == "SEG"
    source = dcmread(analysed.paths[0], stop_before_pixels=True)
    assert seg_tags["StudyInstanceUID"] == str(source.StudyInstanceUID)
    received = {r.sop_instance_uid: r for r in analysed.pacs.received()}
    sr = dcmread(received[outputs["sr"]].path)
    assert str(sr.StudyInstanceUID) == str(source.StudyInstanceUID)
    assert {r.calling_aet for r in analysed.pacs.received()} == {"CMRNODE"}


def test_outputs_do_not_trigger_analysis(analysed: Analysed) -> None:
    orthanc, outputs = analysed.orthanc, analysed.outputs
    wait_until(
        lambda: (
            len(orthanc.query("SELECT 1 FROM orthanc_intake WHERE state='skipped'")) >= len(outputs)
        ),
        30,
    )
    time.sleep(orthanc.stable_age_s + 1.0)  # anything else Orthanc might still hand over
    intake = orthanc.query("SELECT state, series_instance_uid FROM orthanc_intake")
    assert sorted(r["state"] for r in intake) == ["done"] * 2 + ["skipped"] * len(outputs)
    assert len(orthanc.query("SELECT 1 FROM jobs")) == 1
    series = {r["state"] for r in orthanc.query("SELECT state FROM series")}
    assert series == {"routed", "unrouted"}


def test_rest_routes_answer_and_inherit_authentication(analysed: Analysed) -> None:
    orthanc, job = analysed.orthanc, analysed.job
    assert orthanc.request("GET", "/cmr-node/health", auth=False)[0] == 401
    assert orthanc.request("GET", "/cmr-node/jobs", auth=False)[0] == 401
    health = orthanc.get("/cmr-node/health")
    assert health["status"] == "ok" and "t1map" in health["analyses"]
    assert [d["name"] for d in health["destinations"]] == ["orthanc", "pacs"]
    assert orthanc.get("/cmr-node/version")["version"] == health["version"]

    [listed] = orthanc.get("/cmr-node/jobs?state=done")["jobs"]
    assert listed["id"] == job["id"] and listed["series_instance_uid"] == analysed.input_uid
    assert orthanc.get("/cmr-node/jobs?state=failed")["jobs"] == []
    assert orthanc.request("GET", "/cmr-node/jobs?state=nonsense")[0] == 400
    by_series = orthanc.get(f"/cmr-node/jobs?series={analysed.input_uid}")["jobs"]
    assert [j["id"] for j in by_series] == [job["id"]]

    wait_until(lambda: orthanc.get("/cmr-node/health")["queue"]["outbox_pending"] == 0, 60)
    detail = orthanc.get(f"/cmr-node/jobs/{job['id']}")
    assert detail["timings"]["total_s"] > 0
    assert detail["results"]["analysis"] == "t1map"
    assert {(o["destination"], o["state"]) for o in detail["outbox"]} == {
        ("orthanc", "sent"),
        ("pacs", "sent"),
    }
    log = [e["message"] for e in detail["log"]]
    assert any("delivered to pacs" in m for m in log), log
    assert orthanc.request("GET", "/cmr-node/jobs/9999")[0] == 404

    series_id = listed["orthanc_series_id"]
    view = orthanc.get(f"/cmr-node/series/{series_id}")
    assert view["analysed"] is True
    assert {o["kind"] for o in view["outputs"]} == OUTPUT_KINDS
    assert "global_myocardium_t1_mean_ms" in view["result_job"]["summary"]["values"]
    seg_series = next(o["orthanc_series_id"] for o in view["outputs"] if o["kind"] == "seg")
    output_view = orthanc.get(f"/cmr-node/series/{seg_series}")
    assert output_view["role"] == "output" and output_view["input_orthanc_series_id"] == series_id
    study_id = orthanc.get(f"/series/{series_id}")["ParentStudy"]
    study = orthanc.get(f"/cmr-node/studies/{study_id}")
    roles = sorted(v["role"] for v in study["series"])
    assert roles == ["input"] + ["output"] * len(analysed.outputs)

    dashboard = orthanc.get("/cmr-node/dashboard")
    assert dashboard["processing"]["n"] == 1 and dashboard["queue"]["jobs_queued"] == 0
    assert dashboard["processing"]["max_s"] == pytest.approx(detail["timings"]["total_s"], 0.01)
    status, page = orthanc.request("GET", "/cmr-node/ui")
    assert status == 200 and b"cmr-node dashboard" in page
    status, js = orthanc.request("GET", "/plugins/explorer.js")
    assert status == 200 and b"cmr-node-series" in js
    assert orthanc.post(f"/cmr-node/jobs/{job['id']}/retry")[0] == 409


def _chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--virtual-time-budget=8000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium renders Orthanc Explorer")
def test_explorer_and_dashboard_render_in_chromium(analysed: Analysed, tmp_path: Path) -> None:
    orthanc = analysed.orthanc
    [job] = orthanc.get("/cmr-node/jobs?state=done")["jobs"]
    series_id = job["orthanc_series_id"]
    study_id = orthanc.get(f"/series/{series_id}")["ParentStudy"]
    t1 = job["summary"]["values"]["global_myocardium_t1_mean_ms"]
    origin = f"http://{USER}:{PASSWORD}@127.0.0.1:{orthanc.http_port}"
    pages = {
        "series": (f"{origin}/app/explorer.html#series?uuid={series_id}", "cmr-node-series"),
        "study": (f"{origin}/app/explorer.html#study?uuid={study_id}", "cmr-node-study"),
        "lookup": (f"{origin}/app/explorer.html#lookup", "cmr-node-lookup"),
        "dashboard": (f"{origin}/cmr-node/ui", "cmr-node in Orthanc"),
    }
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for name, (url, marker) in pages.items():
        dom = _chromium(url, tmp_path / f"profile-{name}", "--dump-dom").stdout
        assert marker in dom, (name, dom[-2000:])
        if name in ("series", "study"):
            assert 'data-state="analysed"' in dom, name
            assert f"<b>{math.floor(t1 + 0.5)}</b> ms" in dom, name  # mean myocardial T1
            assert 'data-kind="seg"' in dom and 'data-kind="summary-image"' in dom
        if name == "dashboard":
            assert f'<tr data-job="{job["id"]}">' in dom and ">done<" in dom
        shot = SCREENSHOT_DIR / f"{name}.png"
        shot.unlink(missing_ok=True)
        _chromium(url, tmp_path / f"profile-{name}-shot", f"--screenshot={shot}")
        with Image.open(shot) as image:
            assert image.size == WINDOW
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
        assert pixels.std() > 10, f"{name} screenshot is blank"


def test_rerun_sends_new_outputs_naming_their_predecessors(analysed: Analysed) -> None:
    orthanc = analysed.orthanc
    series_id = orthanc.get("/cmr-node/jobs?state=done")["jobs"][0]["orthanc_series_id"]
    status, answer = orthanc.post(f"/cmr-node/series/{series_id}/rerun")
    assert status == 200 and answer["queued"] is True
    wait_until(lambda: len(_done_jobs(orthanc)) == 2, RESULT_TIMEOUT_S)
    # A re-analysis is a new generation with new UIDs (node.outputs.uids: Orthanc keeps the first
    # copy of a UID by default); its SRs name the SRs they replace.
    again = _output_uids(_done_jobs(orthanc)[1])
    assert again.keys() == analysed.outputs.keys()
    assert not set(again.values()) & set(analysed.outputs.values())
    everything = set(again.values()) | set(analysed.outputs.values())
    wait_until(lambda: set(analysed.pacs.count_by_uid()) == everything, 60)
    assert set(analysed.pacs.count_by_uid().values()) == {1}
    for uid in everything:  # both generations stay in Orthanc
        assert _orthanc_instance(orthanc, uid)
    latest = analysed.pacs.latest_by_uid()
    for kind in ("sr", "sr-summary"):
        predecessors = latest[again[kind]].PredecessorDocumentsSequence
        referenced = predecessors[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
        assert referenced.ReferencedSOPInstanceUID == analysed.outputs[kind]
    assert len(orthanc.query("SELECT 1 FROM jobs WHERE state='done'")) == 2


def test_job_interrupted_by_kill_is_done_after_restart(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs").start()
    orthanc = OrthancProcess(tmp_path / "orthanc", pacs.port).start()
    try:
        _send(orthanc, t1map_files(tmp_path, seed=42))
        wait_until(
            lambda: orthanc.query("SELECT 1 FROM jobs WHERE state IN ('queued', 'running')"),
            60,
            interval=0.01,
        )
        orthanc.kill()
        [job] = orthanc.query("SELECT state, attempts FROM jobs")
        assert job["state"] in ("queued", "running")
        assert pacs.received() == []
        orthanc.start()
        [done] = wait_until(lambda: _done_jobs(orthanc), RESULT_TIMEOUT_S)
        assert done["attempts"] == (2 if job["state"] == "running" else 1)
        outputs = _output_uids(done)
        wait_until(lambda: set(pacs.count_by_uid()) >= set(outputs.values()), 60)
        assert all(n == 1 for n in pacs.count_by_uid().values())
    except BaseException:
        print(orthanc.log_tail())
        raise
    finally:
        orthanc.stop()
        pacs.stop()
