"""The Orthanc plugin's logic against a fake ``orthanc`` module (no Orthanc, no analysis run)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from node.catalog.job_queue import OutputFile
from node.catalog.outbox import OutboxItem
from node.delivery.sender import DeliveryError, OutboxSender
from node.orthanc.app import Registration, register
from node.orthanc.node import IntakeReason, IntakeState, OrthancNode, own_output_reason
from node.orthanc.rest import ASSETS_DIR, explorer_extension
from node.settings import DestinationKind, SettingsError, load_settings
from tests.netutil import wait_for
from tests.orthanc.conftest import as_output, write_node_config
from tests.orthanc.fake_orthanc import ChangeType, FakeOrthanc, OrthancException


def _store(fake: FakeOrthanc, paths: list[Path]) -> str:
    series = {fake.add(p.read_bytes())[1] for p in paths}
    assert len(series) == 1
    return series.pop()


def _intake_rows(node: OrthancNode) -> list[sqlite3.Row]:
    conn = sqlite3.connect(str(node.settings.catalog_path))
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute("SELECT * FROM orthanc_intake ORDER BY id"))
    finally:
        conn.close()


def _run_next(node: OrthancNode) -> Any:
    item = node.store.claim()
    assert item is not None
    return node.run_intake(item)


# ---------------------------------------------------------------------------- registration


def test_register_wires_callbacks_routes_explorer_and_local_destination(
    fake: FakeOrthanc, registered: Registration
) -> None:
    assert len(fake.change_callbacks) == 1
    prefixes = {p.pattern for p, _ in fake.routes}
    assert "/cmr-node/jobs/([0-9]+)/retry" in prefixes
    assert all(p.startswith("/cmr-node/") for p in prefixes)
    assert fake.explorer_js is not None and "../cmr-node/series/" in fake.explorer_js.replace(
        "API + '/series/'", "../cmr-node/series/"
    )
    kinds = [(d.name, d.kind) for d in registered.node.settings.destinations]
    assert kinds[0] == ("orthanc", DestinationKind.ORTHANC)


def test_stable_series_callback_only_records_durably(
    fake: FakeOrthanc, registered: Registration, t1_paths: list[Path]
) -> None:
    series_id = _store(fake, t1_paths)
    fake.calls.clear()
    started = time.perf_counter()
    fake.change(ChangeType.STABLE_SERIES, series_id)
    fake.change(ChangeType.STABLE_SERIES, series_id)  # fired again before it was fetched
    elapsed = time.perf_counter() - started
    assert fake.calls == [], "the callback must not call Orthanc"
    assert elapsed < 0.5
    rows = _intake_rows(registered.node)  # a fresh connection: committed to disk
    assert [(r["orthanc_series_id"], r["state"], r["reason"]) for r in rows] == [
        (series_id, "pending", "stable")
    ]


def test_series_stable_again_while_being_fetched_is_queued_again(
    fake: FakeOrthanc, node: OrthancNode, brain_paths: list[Path]
) -> None:
    series_id = _store(fake, brain_paths)
    first = node.series_stable(series_id)
    item = node.store.claim()  # the intake thread lists the instances now ...
    assert item is not None and item.id == first
    second = node.series_stable(series_id)  # ... while a late instance made it stable again
    assert second != first
    node.run_intake(item)
    assert node.series_stable(series_id) == second  # still waiting: not queued twice


def test_other_changes_are_ignored(fake: FakeOrthanc, registered: Registration) -> None:
    fake.change(ChangeType.NEW_INSTANCE, "abc")
    fake.change(ChangeType.NEW_SERIES, "abc")
    assert _intake_rows(registered.node) == []


# ---------------------------------------------------------------------------- intake


def test_intake_fetches_series_into_spool_and_queues_job(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path]
) -> None:
    series_id = _store(fake, t1_paths)
    node.series_stable(series_id)
    outcome = _run_next(node)
    assert outcome.state == IntakeState.DONE
    assert len(outcome.job_ids) == 1
    uid = str(dcmread(t1_paths[0], stop_before_pixels=True).SeriesInstanceUID)
    assert outcome.series_instance_uid == uid
    spooled = node.catalog.instance_paths(uid)
    assert sorted(p.read_bytes() for p in spooled) == sorted(p.read_bytes() for p in t1_paths)
    job = node.catalog.job(outcome.job_ids[0])
    assert job is not None and job["analysis"] == "t1map" and job["state"] == "queued"
    [row] = _intake_rows(node)
    assert row["state"] == "done" and row["instance_count"] == len(t1_paths)
    assert row["series_instance_uid"] == uid
    header = dcmread(t1_paths[0], stop_before_pixels=True)
    assert row["series_description"] == header.SeriesDescription


def test_non_cardiac_series_is_recorded_with_the_reason(
    fake: FakeOrthanc, node: OrthancNode, brain_paths: list[Path]
) -> None:
    series_id = _store(fake, brain_paths)
    node.series_stable(series_id)
    outcome = _run_next(node)
    assert outcome.state == IntakeState.DONE and outcome.job_ids == ()
    assert "not analysed" in outcome.message
    uid = str(dcmread(brain_paths[0], stop_before_pixels=True).SeriesInstanceUID)
    assert node.catalog.series_generation(uid) == ("unrouted", 0)


def test_own_output_is_skipped_by_its_tags(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path], tmp_path: Path
) -> None:
    ds = as_output(t1_paths[0], generate_uid())
    path = tmp_path / "output.dcm"
    ds.save_as(path, enforce_file_format=True)
    series_id = _store(fake, [path])
    node.series_stable(series_id)
    outcome = _run_next(node)
    assert outcome.state == IntakeState.SKIPPED
    assert "own output" in outcome.message
    assert _intake_rows(node)[0]["series_description"] == "cmr-node T1 map SEG"
    assert node.catalog.series_generation(str(ds.SeriesInstanceUID)) is None
    assert not node.settings.spool_dir.exists() or not any(node.settings.spool_dir.rglob("*.dcm"))


def test_own_output_reason_needs_the_model_name() -> None:
    header = {
        "ManufacturerModelName": "cmr-node",
        "Manufacturer": "cmr-node project",
        "SeriesDescription": "cmr-node T1 map SEG",
    }
    assert own_output_reason(header, known_output_series=False, manufacturer="x") is not None
    scanner = dict(header, ManufacturerModelName="MAGNETOM Aera")
    assert own_output_reason(scanner, known_output_series=False, manufacturer="x") is None
    renamed = dict(header, SeriesDescription="T1 map")
    assert own_output_reason(renamed, known_output_series=False, manufacturer="other") is None
    assert own_output_reason(renamed, known_output_series=False, manufacturer="cmr-node project")
    assert own_output_reason({}, known_output_series=True, manufacturer="x") is not None


def test_missing_series_fails_at_once_with_the_reason(node: OrthancNode) -> None:
    node.series_stable("0000-gone")
    outcome = _run_next(node)
    assert outcome.state == IntakeState.FAILED
    assert "Unknown resource" in outcome.message
    events = node.catalog.recent_events()
    assert any(e["kind"] == "orthanc_intake_failed" for e in events)


def test_unreadable_instances_are_skipped_with_an_event(
    fake: FakeOrthanc, node: OrthancNode, brain_paths: list[Path]
) -> None:
    series_id = _store(fake, brain_paths)
    fake.files["bad-instance"] = b"not DICOM at all"
    fake.instance_series["bad-instance"] = series_id
    node.series_stable(series_id)
    outcome = _run_next(node)
    assert outcome.state == IntakeState.DONE
    uid = outcome.series_instance_uid
    assert len(node.catalog.instance_paths(uid)) == len(brain_paths)
    [event] = [e for e in node.catalog.recent_events() if e["kind"] == "orthanc_instances_skipped"]
    assert event["series_instance_uid"] == uid
    assert f"1 of {len(brain_paths) + 1} instances unreadable" in event["message"]


def test_series_without_readable_instance_fails(fake: FakeOrthanc, node: OrthancNode) -> None:
    fake.files["bad"] = b"\0" * 300
    fake.instance_series["bad"] = "junk-series"
    fake.series_tags["junk-series"] = {"SeriesInstanceUID": "1.2.3"}
    fake.series_study["junk-series"] = "study"
    node.series_stable("junk-series")
    outcome = _run_next(node)
    assert outcome.state == IntakeState.FAILED
    assert "no readable instance" in outcome.message and "bad" in outcome.message


def test_transient_error_is_retried_later(
    fake: FakeOrthanc, node: OrthancNode, brain_paths: list[Path]
) -> None:
    series_id = _store(fake, brain_paths)
    node.series_stable(series_id)
    fake.fail_next.append(OrthancException(9, "Database locked"))
    assert _run_next(node) is None
    [row] = _intake_rows(node)
    assert row["state"] == "pending" and row["not_before"] > time.time()
    assert "Database locked" in row["message"]
    assert node.store.claim() is None  # not due yet
    item = node.store.claim(now=row["not_before"] + 0.1)
    assert item is not None and item.attempts == 2
    outcome = node.run_intake(item)
    assert outcome is not None and outcome.state == IntakeState.DONE


def test_rerun_analyses_a_new_generation(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path]
) -> None:
    series_id = _store(fake, t1_paths)
    node.series_stable(series_id)
    first = _run_next(node)
    node.rerun(series_id)
    second = _run_next(node)
    assert first.state == second.state == IntakeState.DONE
    jobs = {j["id"]: j for j in node.catalog.recent_jobs()}
    assert jobs[first.job_ids[0]]["generation"] == 0
    assert jobs[first.job_ids[0]]["state"] == "superseded"  # queued, not yet run
    assert jobs[second.job_ids[0]]["generation"] == 1
    assert jobs[second.job_ids[0]]["state"] == "queued"
    reasons = [r["reason"] for r in _intake_rows(node)]
    assert reasons == [IntakeReason.STABLE, IntakeReason.RERUN]


def test_pending_intake_resumes_after_restart(
    fake: FakeOrthanc, tmp_path: Path, brain_paths: list[Path]
) -> None:
    first = register(fake, configure_logging=False)
    series_id = _store(fake, brain_paths)
    fake.change(ChangeType.STABLE_SERIES, series_id)  # recorded, never started: "killed"
    first.node.close()
    again = FakeOrthanc(config=fake.config, files=fake.files)
    again.instance_series, again.series_tags = fake.instance_series, fake.series_tags
    again.series_study = fake.series_study
    second = register(again, configure_logging=False)
    again.change(ChangeType.ORTHANC_STARTED)
    try:
        wait_for(lambda: _intake_rows(second.node)[0]["state"] == "done", 30)
        assert second.node.running
    finally:
        again.change(ChangeType.ORTHANC_STOPPED)
    assert not second.node.running


# ---------------------------------------------------------------------------- delivery


def _output_file(t1_paths: list[Path], tmp_path: Path) -> tuple[Path, str, str]:
    series_uid = generate_uid()
    ds = as_output(t1_paths[0], series_uid)
    path = tmp_path / "seg.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, series_uid, str(ds.SOPInstanceUID)


def _done_job_with_output(node: OrthancNode, input_uid: str, out: OutputFile) -> int:
    node.catalog.route_series(input_uid, 0, ["t1map"], "test")
    job = node.catalog.claim_job()
    assert job is not None
    node.catalog.finish_job(
        job,
        [out],
        [d.name for d in node.settings.destinations],
        result_dir=out.path.parent,
        timings={"total_s": 1.5},
        summary={"values": {"global_myocardium_t1_mean_ms": 1001.2}, "qc_flags": ["x_flag"]},
    )
    return job.id


def test_store_in_orthanc_records_output_then_replaces_a_stored_copy(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path], tmp_path: Path
) -> None:
    path, series_uid, sop_uid = _output_file(t1_paths, tmp_path)
    input_uid = generate_uid()
    job_id = _done_job_with_output(node, input_uid, OutputFile(path, sop_uid, "1.2", "seg"))
    item = OutboxItem(1, job_id, "orthanc", path, sop_uid, "1.2", "seg", 0)
    local = node.settings.destinations[0]
    assert node.store_in_orthanc(local, item) is None
    assert node.store.is_output_series(series_uid)
    [output] = node.store.outputs_of(input_uid)
    assert output["orthanc_id"] in fake.files and output["kind"] == "seg"
    assert node.store_in_orthanc(local, item) == "replaced an earlier copy"
    assert ("DELETE", f"/instances/{output['orthanc_id']}") in fake.calls
    # Orthanc declares the output series stable in turn: skipped as the node's own.
    node.series_stable(fake.instance_series[output["orthanc_id"]])
    outcome = _run_next(node)
    assert outcome.state == IntakeState.SKIPPED
    assert "output the node stored" in outcome.message


def test_refused_store_is_retried_by_the_outbox(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path], tmp_path: Path
) -> None:
    path, _, sop_uid = _output_file(t1_paths, tmp_path)
    _done_job_with_output(node, generate_uid(), OutputFile(path, sop_uid, "1.2", "seg"))
    fake.refuse_posts = True
    with pytest.raises(DeliveryError, match="Bad file format"):
        node.store_in_orthanc(
            node.settings.destinations[0],
            OutboxItem(1, 1, "orthanc", path, sop_uid, "1.2", "seg", 0),
        )
    node.sender.deliver(node.catalog.due_outbox())
    [row] = node.catalog.outbox_items()
    assert row["state"] == "pending" and row["attempts"] == 1
    assert "Bad file format" in row["last_error"]
    fake.refuse_posts = False
    node.sender.deliver(node.catalog.due_outbox(now=time.time() + 60))
    [row] = node.catalog.outbox_items()
    assert row["state"] == "sent" and row["attempts"] == 2


def test_sender_without_a_handler_keeps_rows_pending(
    node: OrthancNode, t1_paths: list[Path], tmp_path: Path
) -> None:
    path, _, sop_uid = _output_file(t1_paths, tmp_path)
    _done_job_with_output(node, generate_uid(), OutputFile(path, sop_uid, "1.2", "seg"))
    bare = OutboxSender(node.settings, node.catalog)  # no handler for ORTHANC destinations
    bare.deliver(node.catalog.due_outbox())
    [row] = node.catalog.outbox_items()
    assert row["state"] == "pending" and row["attempts"] == 1
    assert "no delivery handler for orthanc" in row["last_error"]


# ---------------------------------------------------------------------------- REST


def test_rest_health_version_and_method_check(fake: FakeOrthanc, node: OrthancNode) -> None:
    health = fake.http("GET", "/cmr-node/health")
    assert health.status == 200 and health.content_type == "application/json"
    body = health.json()
    assert body["status"] == "stopped" and body["version"]
    assert body["queue"]["jobs_queued"] == 0
    assert [d["kind"] for d in body["destinations"]] == ["orthanc"]
    assert fake.http("POST", "/cmr-node/health").status == 405
    assert fake.http("GET", "/cmr-node/version").json()["name"] == "cmr-node"


def test_rest_jobs_filters_detail_and_retry(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path], tmp_path: Path
) -> None:
    path, _, sop_uid = _output_file(t1_paths, tmp_path)
    done_id = _done_job_with_output(node, generate_uid(), OutputFile(path, sop_uid, "1.2", "seg"))
    series_id = _store(fake, t1_paths)
    node.series_stable(series_id)
    queued = _run_next(node)
    # A failed job: run and fail the queued one.
    job = node.catalog.claim_job()
    assert job is not None and job.id == queued.job_ids[0]
    node.catalog.fail_job(job, "cannot analyse: no myocardium", retry_at=None)

    all_jobs = fake.http("GET", "/cmr-node/jobs").json()["jobs"]
    assert [j["id"] for j in all_jobs] == [job.id, done_id]
    failed = fake.http("GET", "/cmr-node/jobs", query={"state": "failed"}).json()["jobs"]
    assert [(j["id"], j["error"]) for j in failed] == [(job.id, "cannot analyse: no myocardium")]
    assert failed[0]["orthanc_series_id"] == series_id
    by_orthanc = fake.http("GET", "/cmr-node/jobs", query={"series": series_id}).json()["jobs"]
    by_uid = fake.http("GET", "/cmr-node/jobs", query={"series": queued.series_instance_uid})
    assert [j["id"] for j in by_orthanc] == [j["id"] for j in by_uid.json()["jobs"]] == [job.id]
    assert fake.http("GET", "/cmr-node/jobs", query={"state": "bogus"}).status == 400
    assert fake.http("GET", "/cmr-node/jobs", query={"limit": "x"}).status == 400

    detail = fake.http("GET", f"/cmr-node/jobs/{done_id}").json()
    assert detail["timings"] == {"total_s": 1.5}
    messages = [e["message"] for e in detail["log"]]
    assert any(m.startswith("queued") for m in messages)
    assert any("seg queued for orthanc" in m for m in messages)
    failed_detail = fake.http("GET", f"/cmr-node/jobs/{job.id}").json()
    sources = [e["source"] for e in failed_detail["log"]]
    assert sources[0] == "orthanc" and "intake" in sources
    assert fake.http("GET", "/cmr-node/jobs/999").status == 404

    assert fake.http("POST", f"/cmr-node/jobs/{done_id}/retry").status == 409
    assert fake.http("POST", "/cmr-node/jobs/999/retry").status == 404
    retried = fake.http("POST", f"/cmr-node/jobs/{job.id}/retry")
    assert retried.status == 200 and retried.json()["retried"] is True
    assert node.catalog.job(job.id)["state"] == "queued"  # type: ignore[index]


def test_rest_series_study_rerun_and_dashboard(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path], brain_paths: list[Path]
) -> None:
    t1_id = _store(fake, t1_paths)
    brain_id = _store(fake, brain_paths)
    assert fake.http("GET", f"/cmr-node/series/{t1_id}").json()["intake"] is None
    for series_id in (t1_id, brain_id):
        node.series_stable(series_id)
        _run_next(node)
    view = fake.http("GET", f"/cmr-node/series/{t1_id}").json()
    assert view["role"] == "input" and view["analysed"] is False
    assert view["job"]["state"] == "queued" and view["series"]["state"] == "routed"
    brain = fake.http("GET", f"/cmr-node/series/{brain_id}").json()
    assert brain["series"]["state"] == "unrouted" and brain["series"]["route_reason"]
    assert fake.http("GET", "/cmr-node/series/nope").status == 404

    study_id = fake.series_study[t1_id]
    study = fake.http("GET", f"/cmr-node/studies/{study_id}").json()
    assert [v["orthanc_series_id"] for v in study["series"]] == [t1_id]

    uid = view["series_instance_uid"]
    rerun = fake.http("POST", f"/cmr-node/series/{uid}/rerun")
    assert rerun.status == 200 and rerun.json()["orthanc_series_id"] == t1_id
    assert fake.http("POST", "/cmr-node/series/1.2.3.4/rerun").status == 404

    dashboard = fake.http("GET", "/cmr-node/dashboard").json()
    assert dashboard["queue"]["jobs_queued"] == 1 and dashboard["queue"]["intake_pending"] == 1
    assert dashboard["processing"]["n"] == 0
    assert [j["series_instance_uid"] for j in dashboard["recent_jobs"]] == [uid]
    assert {i["state"] for i in dashboard["intake"]} == {"done", "pending"}
    assert dashboard["corrections"] == []  # no reader correction received
    page = fake.http("GET", "/cmr-node/ui")
    assert page.status == 200 and str(page.content_type).startswith("text/html")
    assert b"api('dashboard'" in page.body


def test_rest_output_series_points_to_its_input(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path], tmp_path: Path
) -> None:
    path, series_uid, sop_uid = _output_file(t1_paths, tmp_path)
    input_uid = generate_uid()
    job_id = _done_job_with_output(node, input_uid, OutputFile(path, sop_uid, "1.2", "seg"))
    node.store_in_orthanc(
        node.settings.destinations[0],
        OutboxItem(1, job_id, "orthanc", path, sop_uid, "1.2", "seg", 0),
    )
    out_series = fake.instance_series[node.store.outputs_of(input_uid)[0]["orthanc_id"]]
    view = fake.http("GET", f"/cmr-node/series/{out_series}").json()
    assert view == {
        "role": "output",
        "series_instance_uid": series_uid,
        "orthanc_series_id": out_series,
        "kind": "seg",
        "job_id": job_id,
        "input_series_uid": input_uid,
        "input_orthanc_series_id": None,
    }
    input_view = fake.http("GET", f"/cmr-node/series/{input_uid}").json()
    assert input_view["analysed"] is True
    assert input_view["result_job"]["summary"]["values"] == {"global_myocardium_t1_mean_ms": 1001.2}
    assert [o["kind"] for o in input_view["outputs"]] == ["seg"]
    assert input_view["outputs"][0]["orthanc_series_id"] == out_series


# ---------------------------------------------------------------------------- settings


def test_orthanc_settings_from_toml(tmp_path: Path) -> None:
    path = write_node_config(
        tmp_path, '[orthanc]\nstore_results = false\ndestination_name = "local"\n'
    )
    settings = load_settings(path)
    assert settings.orthanc.store_results is False
    assert settings.orthanc.destination_name == "local"
    clash = write_node_config(
        tmp_path,
        '[orthanc]\ndestination_name = "pacs"\n[[destination]]\nname = "pacs"\n'
        'ae_title = "PACS"\nhost = "127.0.0.1"\nport = 104\n',
    )
    with pytest.raises(SettingsError, match="destination_name"):
        load_settings(clash)


def test_store_results_off_means_no_local_destination(tmp_path: Path) -> None:
    config = write_node_config(tmp_path, "[orthanc]\nstore_results = false\n")
    fake = FakeOrthanc(config={"CmrNode": {"Config": str(config)}})
    registration = register(fake, configure_logging=False)
    try:
        assert registration.node.settings.destinations == ()
    finally:
        registration.node.close()


def test_data_directory_from_orthanc_config_wins(tmp_path: Path) -> None:
    config = write_node_config(tmp_path)
    data = tmp_path / "elsewhere"
    fake = FakeOrthanc(config={"CmrNode": {"Config": str(config), "DataDirectory": str(data)}})
    registration = register(fake, configure_logging=False)
    try:
        assert registration.node.settings.data_dir == data.resolve()
        assert (data / "catalog.sqlite3").exists()
    finally:
        registration.node.close()


def test_results_json_is_served_with_the_job(
    fake: FakeOrthanc, node: OrthancNode, t1_paths: list[Path], tmp_path: Path
) -> None:
    path, _, sop_uid = _output_file(t1_paths, tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"analysis": "t1map", "status": "analysed"}))
    job_id = _done_job_with_output(node, generate_uid(), OutputFile(path, sop_uid, "1.2", "seg"))
    detail = fake.http("GET", f"/cmr-node/jobs/{job_id}").json()
    assert detail["results"] == {"analysis": "t1map", "status": "analysed"}


# ---------------------------------------------------------------------------- explorer assets


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js checks the scripts' syntax")
def test_explorer_scripts_parse(tmp_path: Path) -> None:
    extension = ASSETS_DIR / "extension.js"
    page = (ASSETS_DIR / "dashboard.html").read_text()
    inline = page.split("<script>", 1)[1].split("</script>", 1)[0]
    (tmp_path / "dashboard.js").write_text(inline)
    for script in (extension, tmp_path / "dashboard.js"):
        proc = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_explorer_and_dashboard_call_registered_routes(
    fake: FakeOrthanc, registered: Registration
) -> None:
    script = explorer_extension()
    page = (ASSETS_DIR / "dashboard.html").read_text()
    calls = {
        "/cmr-node/series/abc": "API + '/series/' + seriesId",
        "/cmr-node/studies/abc": "API + '/studies/' + studyId",
        "/cmr-node/series/abc/rerun": "'/series/' + seriesId + '/rerun'",
        "/cmr-node/jobs/7/retry": "'/jobs/' + $(this).data('job') + '/retry'",
    }
    page_calls = {
        "/cmr-node/dashboard": "api('dashboard'",
        "/cmr-node/jobs/7": "api('jobs/' + jobId,",
        "/cmr-node/jobs/8/retry": "api('jobs/' + jobId + '/retry'",
    }
    patterns = [p for p, _ in fake.routes]
    for uri, code in calls.items():
        assert code in script, code
        assert any(p.fullmatch(uri) for p in patterns), uri
    for uri, code in page_calls.items():
        assert code in page, code
        assert any(p.fullmatch(uri) for p in patterns), uri
    for page_id in ("#series", "#study", "#lookup"):
        assert f"$('{page_id}').live('pagebeforeshow'" in script
