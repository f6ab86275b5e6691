"""LVRR covariates at the node: sidecars, REST, command line, LGE results and re-analysis."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread

from node.analyses.t1map import covariate_options
from node.catalog.catalog import Catalog
from node.catalog.job_queue import OutputFile
from node.catalog.series import InstanceRecord
from node.inputs.covariates import (
    CovariateFolder,
    CovariatesError,
    SuppliedCovariates,
    lge_covariates,
    merge_covariates,
    read_covariates_table,
)
from node.jobs.worker import WorkerPool
from node.settings import Settings

CLINICAL = {"sbp_mmhg": 120, "lvef_percent": 30, "lveddi_mm_per_m2": 35, "smoking": 1}
STUDY = "1.2.826.0.1.3680043.8.498.1"


def _logistic(log_odds: float) -> float:
    return 1.0 / (1.0 + math.exp(-log_odds))


def _lge_results(percent: float, septal: bool, *, qc_failure: bool = False) -> dict[str, Any]:
    return {
        "analysis": "lge",
        "qc_failure": qc_failure,
        "extra": {"lge": {"methods": {"network": {"percent": percent, "ml": 3.0}},
                          "septal_midwall": septal}},
    }


# ----------------------------------------------------------------------------- sources


def test_sidecar_lookup_by_study_uid_then_accession(tmp_path: Path) -> None:
    folder = CovariateFolder(tmp_path / "cov")
    assert folder.lookup(STUDY, "ACC1") is None  # no folder yet
    (tmp_path / "cov").mkdir()
    (tmp_path / "cov" / "ACC1.json").write_text(json.dumps({**CLINICAL, "smoking": 0}))
    found = folder.lookup(STUDY, "ACC1")
    assert found is not None and found.values["smoking"] == 0.0
    assert found.source == "sidecar ACC1.json"
    path, values = folder.write(STUDY, {**CLINICAL, "sbp_mmhg": {"value": 140, "unit": "mmHg"}})
    assert path == tmp_path / "cov" / f"{STUDY}.json"
    assert values["sbp_mmhg"] == 140.0
    found = folder.lookup(STUDY, "ACC1")  # the study UID wins over the accession number
    assert found is not None and found.values["sbp_mmhg"] == 140.0 and found.values["smoking"] == 1
    assert not list((tmp_path / "cov").glob(".*"))  # no temporary file left


def test_invalid_sidecars_and_keys_are_refused(tmp_path: Path) -> None:
    folder = CovariateFolder(tmp_path)
    (tmp_path / "ACC2.json").write_text('{"sbp": 120}')
    with pytest.raises(CovariatesError, match="Unknown covariate 'sbp'"):
        folder.lookup("1.2.3", "ACC2")
    (tmp_path / "ACC3.json").write_text("{not json")
    with pytest.raises(CovariatesError, match="Cannot read"):
        folder.lookup(None, "ACC3")
    assert folder.path_for("../etc/passwd") is None
    assert folder.lookup("1.2.3", "../ACC2") is None
    with pytest.raises(CovariatesError, match="not a valid StudyInstanceUID"):
        folder.write("1.2.abc", CLINICAL)
    with pytest.raises(CovariatesError, match="outside the plausible range"):
        folder.write("1.2.3", {**CLINICAL, "lvef_percent": 0.3})
    assert not (tmp_path / "1.2.3.json").exists()


def test_command_line_table_keyed_or_flat(tmp_path: Path) -> None:
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({STUDY: CLINICAL, "ACC9": {**CLINICAL, "smoking": 0}}))
    table = read_covariates_table(keyed)
    by_uid, by_acc = table.lookup(STUDY, None), table.lookup("9.9", "ACC9")
    assert by_uid is not None and by_uid.values["smoking"] == 1.0 and STUDY in by_uid.source
    assert by_acc is not None and by_acc.values["smoking"] == 0.0
    assert table.lookup("9.9", "ACC0") is None
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(CLINICAL))
    found = read_covariates_table(flat).lookup("any", None)
    assert found is not None and found.values["lvef_percent"] == 30.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({STUDY: {"lvef_percent": "high"}}))
    with pytest.raises(CovariatesError, match=STUDY):
        read_covariates_table(bad)


def test_lge_covariates_complete_explicit_ones() -> None:
    assert lge_covariates(_lge_results(7.5, True)) == {
        "lge_percent_lv_mass": 7.5, "septal_midwall_lge": 1.0
    }
    assert lge_covariates(_lge_results(7.5, True, qc_failure=True)) == {}
    assert lge_covariates({"extra": {}}) == {}
    explicit = SuppliedCovariates({**CLINICAL, "septal_midwall_lge": 0.0}, "sidecar x.json")
    lge = SuppliedCovariates(lge_covariates(_lge_results(7.5, True)), "LGE analysis job 4")
    merged = merge_covariates(explicit, lge)
    assert merged is not None
    assert merged.values["septal_midwall_lge"] == 0.0  # explicit wins
    assert merged.values["lge_percent_lv_mass"] == 7.5
    assert merged.source == "sidecar x.json; LGE analysis job 4 (lge_percent_lv_mass)"
    assert merge_covariates(None, None) is None


# ----------------------------------------------------------------------------- catalog, worker


def _routed_series(catalog: Catalog, tmp_path: Path, series: str, analysis: str) -> int:
    catalog.record_instance(InstanceRecord(
        f"{series}.1", series, STUDY, "1.2.840.10008.5.1.4.1.1.4", None,
        tmp_path / f"{series}.dcm", 10, "SCANNER", "MR", analysis, 1,
    ))
    assert catalog.complete_series(series, 0)
    [job_id] = catalog.route_series(series, 0, [analysis], "test")
    return job_id


def _finish(catalog: Catalog, result_dir: Path, summary: dict[str, Any] | None = None) -> None:
    job = catalog.claim_job()
    assert job is not None
    result_dir.mkdir(parents=True, exist_ok=True)
    if summary is not None:
        (result_dir / "results.json").write_text(json.dumps(summary))
    out = OutputFile(result_dir / "sr.dcm", f"2.25.{job.id}", "1.2.840.10008.5.1.4.1.1.88.33",
                     "sr")
    assert catalog.finish_job(job, [out], ["pacs"], result_dir=result_dir, timings={},
                              summary={})


def test_reanalysis_queues_a_new_generation_once(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    _routed_series(catalog, tmp_path, "2.25.10", "t1map")
    # A queued job is left alone: it will read the new inputs when it runs.
    assert catalog.reanalyse_study(STUDY, "t1map", "covariates posted") == []
    _finish(catalog, tmp_path / "t1-0")
    [new_id] = catalog.reanalyse_study(STUDY, "t1map", "covariates posted")
    job = catalog.job(new_id)
    assert job is not None and (job["state"], job["generation"]) == ("queued", 1)
    assert catalog.series_generation("2.25.10") == ("routed", 1)
    assert catalog.reanalyse_study(STUDY, "t1map", "again") == []  # still queued
    assert catalog.reanalyse_study(STUDY, "lge", "no lge job") == []
    events = [e for e in catalog.recent_events() if e["kind"] == "reanalysis"]
    assert len(events) == 1 and "covariates posted" in events[0]["message"]
    # A late instance after the re-analysis opens yet another generation, not a clash.
    state = catalog.record_instance(InstanceRecord(
        "2.25.10.2", "2.25.10", STUDY, "1.2.840.10008.5.1.4.1.1.4", None,
        tmp_path / "late.dcm", 10, "SCANNER", "MR", "t1map", 2,
    ))
    assert state.generation == 2
    catalog.close()


def test_worker_gives_t1_jobs_sidecar_and_lge_covariates(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    settings = Settings(data_dir=tmp_path)
    _routed_series(catalog, tmp_path, "2.25.20", "lge")
    _finish(catalog, tmp_path / "lge-0", _lge_results(12.0, False))
    _routed_series(catalog, tmp_path, "2.25.21", "t1map")
    job = catalog.claim_job()
    assert job is not None and job.analysis == "t1map"
    pool = WorkerPool(settings, catalog, on_outputs=lambda: None)
    options = covariate_options(pool.study_facts(job, []))
    lge_job = catalog.study_jobs(STUDY, "lge")[0]["id"]
    assert options == {
        "covariates": {"lge_percent_lv_mass": 12.0, "septal_midwall_lge": 0.0},
        "covariates_source": f"LGE analysis job {lge_job} (lge_percent_lv_mass, "
        "septal_midwall_lge)",
    }
    CovariateFolder(settings.covariates_folder).write(STUDY, CLINICAL)
    options = covariate_options(pool.study_facts(job, []))
    assert options["covariates"] == {**{k: float(v) for k, v in CLINICAL.items()},
                                     "lge_percent_lv_mass": 12.0, "septal_midwall_lge": 0.0}
    assert options["covariates_source"].startswith(f"sidecar {STUDY}.json; LGE analysis job")
    (settings.covariates_folder / f"{STUDY}.json").write_text('{"smoking": 2}')
    options = covariate_options(pool.study_facts(job, []))
    assert "smoking" in options["covariates_error"]
    catalog.close()


def test_an_lge_job_finishing_later_requeues_the_t1_map(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    pool = WorkerPool(Settings(data_dir=tmp_path), catalog, on_outputs=lambda: None)
    _routed_series(catalog, tmp_path, "2.25.40", "lge")
    lge_job = catalog.claim_job()
    assert lge_job is not None
    lge_done = _lge_results(9.0, False)
    assert pool.requeue_after(lge_job, lge_done) == []  # no T1 map of the study yet
    _routed_series(catalog, tmp_path, "2.25.41", "t1map")
    _finish(catalog, tmp_path / "t1-0")
    # An LGE result without covariates (failed QC) gives the T1 map nothing new.
    assert pool.requeue_after(lge_job, _lge_results(9.0, False, qc_failure=True)) == []
    [t1_job] = pool.requeue_after(lge_job, lge_done)
    job = catalog.job(t1_job)
    assert job is not None and job["series_instance_uid"] == "2.25.41"
    assert job["generation"] == 1 and job["state"] == "queued"
    [event] = [e for e in catalog.recent_events() if e["kind"] == "reanalysis"]
    assert f"LGE analysis (job {lge_job.id}" in event["message"]
    catalog.close()


# ----------------------------------------------------------------------------- command line


def _lge_study(seed: int, folder: Path) -> Any:
    """A PSIR LGE series of the synthetic study ``seed``, and a segmenter that knows its
    labels (the analysis under test is the covariate path, not the LGE model)."""
    from models.phantoms.dicom_build import write_series
    from models.phantoms.dicom_lge import lge_series_datasets
    from models.phantoms.dicom_study import StudyInfo
    from models.phantoms.lge import make_lge_stack
    from node.inputs.loader import load_series
    from tests.plugins.test_lge import KnownLabels, _key

    rng = np.random.default_rng(seed)
    _, slices = make_lge_stack(rng, n_slices=6, field_strength_t=1.5,
                               scar_pattern="ischaemic_lad")
    datasets = lge_series_datasets(slices, vendor="siemens", study=StudyInfo.synthetic(seed))
    write_series(datasets, folder)
    by_uid = {str(ds.SOPInstanceUID): s.labels for ds, s in zip(datasets, slices, strict=True)}
    series = load_series(datasets)
    return KnownLabels({_key(f.pixels): by_uid[f.sop_instance_uid] for f in series.frames})


def test_analyse_with_covariates_file_and_lge_of_the_same_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from bench.latency import Completeness, write_t1map_study
    from node.cli import main as cli
    from node.cli.main import main

    seed = 4242  # one synthetic study: the T1 map and the LGE share its StudyInstanceUID
    t1_paths = write_t1map_study(seed, tmp_path / "in" / "t1", Completeness.KNOWN)
    segmenter = _lge_study(seed, tmp_path / "in" / "lge")
    load_settings = cli.load_settings

    def with_lge_segmenter(path: Path | None) -> Settings:
        settings = load_settings(path)
        options = {**settings.analysis_options}
        options["lge"] = {**options.get("lge", {}), "segmenter": segmenter}
        return dataclasses.replace(settings, analysis_options=options)

    monkeypatch.setattr(cli, "load_settings", with_lge_segmenter)
    study_uid = str(dcmread(t1_paths[0], stop_before_pixels=True).StudyInstanceUID)
    covariates = tmp_path / "covariates.json"
    covariates.write_text(json.dumps({study_uid: CLINICAL}))
    out = tmp_path / "out"
    code = main(["analyse", str(tmp_path / "in"), "--out", str(out), "--covariates",
                 str(covariates), "--data-dir", str(tmp_path / "data")])
    assert code == 0
    entries = {e["analysis"]: e for e in json.loads((out / "results.json").read_text())["series"]
               if e.get("status") == "analysed"}
    assert set(entries) == {"t1map", "lge"}
    lge = entries["lge"]["extra"]["lge"]
    lvrr = entries["t1map"]["extra"]["radiomics"]["lvrr"]
    assert lvrr["available"] and lvrr["model"] == "clinical_lge"
    assert lvrr["covariates"]["lge_percent_lv_mass"] == pytest.approx(
        lge["methods"]["network"]["percent"], abs=1e-3
    )
    septal = 1.0 if lge["septal_midwall"] else 0.0
    log_odds = (-4.621 + 0.030 * 120 - 0.073 * 30 + 0.078 * 35 + 0.531
                - 0.052 * lvrr["covariates"]["lge_percent_lv_mass"] - 0.233 * septal)
    assert lvrr["probability"] == pytest.approx(_logistic(log_odds), abs=1e-3)
    assert "command line file covariates.json" in lvrr["covariates_source"]
    assert "LGE analysis of series" in lvrr["covariates_source"]
    series_uid = entries["t1map"]["series_instance_uid"]
    assert entries["t1map"]["features_files"] == [f"{series_uid}/features.json",
                                                  f"{series_uid}/features.csv"]
    features = json.loads((out / series_uid / "features.json").read_text())["features"]
    assert len(features) == 869
    # A bad covariates file is a usage error, before anything is analysed.
    covariates.write_text(json.dumps({study_uid: {"lvef": 30}}))
    assert main(["analyse", str(tmp_path / "in"), "--out", str(tmp_path / "out2"),
                 "--covariates", str(covariates)]) == 2


# ----------------------------------------------------------------------------- running node


def _post(port: int, study: str, body: bytes, token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/studies/{study}/covariates", data=body, method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_status_server_stores_covariates_and_requeues(tmp_path: Path) -> None:
    from node.status.report import StatusServer

    catalog = Catalog(tmp_path / "catalog.sqlite3")
    _routed_series(catalog, tmp_path, "2.25.30", "t1map")
    _finish(catalog, tmp_path / "t1-0")
    woken: list[bool] = []
    folder = CovariateFolder(tmp_path / "covariates")
    server = StatusServer(catalog, "127.0.0.1", 0, lambda: woken.append(True), covariates=folder)
    server.start()
    port = server.address[1]
    try:
        status, answer = _post(port, STUDY, json.dumps({**CLINICAL, "smoking": 3}).encode(),
                               server.write_token)
        assert status == 400 and "smoking" in answer["error"] and not woken
        assert not (tmp_path / "covariates" / f"{STUDY}.json").exists()
        status, answer = _post(port, STUDY, json.dumps(CLINICAL).encode(), server.write_token)
        assert status == 200 and woken == [True]
        [job_id] = answer["requeued_jobs"]
        job = catalog.job(job_id)
        assert job is not None and (job["state"], job["generation"]) == ("queued", 1)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/studies/{STUDY}/covariates", timeout=10
        ) as reply:
            stored = json.loads(reply.read())
        assert stored["covariates"]["sbp_mmhg"] == 120.0
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/studies/1.2.3/covariates",
                                   timeout=10)
        assert missing.value.code == 404
    finally:
        server.stop()
        catalog.close()


@pytest.mark.e2e
def test_posted_covariates_reanalyse_with_new_uids(tmp_path: Path) -> None:
    from bench.latency import Completeness, write_t1map_study
    from tests.netutil import NodeProcess, PacsScp, free_port, send_files, wait_for

    paths = write_t1map_study(6060, tmp_path / "t1", Completeness.KNOWN)
    study_uid = str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    pacs = PacsScp(tmp_path / "pacs").start()
    node = NodeProcess(tmp_path / "node", pacs.port, http_port=free_port())
    try:
        node.start(timeout=120)
        assert send_files(paths, node.port) == [0] * len(paths)
        wait_for(lambda: node.query("SELECT 1 FROM outbox WHERE state='sent'") and not
                 node.query("SELECT 1 FROM outbox WHERE state!='sent'"), 120, interval=0.2)
        first = pacs.count_by_uid()
        assert len(first) >= 3 and set(first.values()) == {1}

        token = (node.data_dir / "http-token").read_text().strip()  # the node's write token
        status, answer = _post(node.http_port, study_uid, b'{"sbp_mmhg": 120, "lvef": 30}', token)
        assert status == 400 and "Unknown covariate 'lvef'" in answer["error"]
        status, answer = _post(node.http_port, study_uid, b"not json", token)
        assert status == 400 and "not JSON" in answer["error"]
        status, answer = _post(node.http_port, "1.2.x", json.dumps(CLINICAL).encode(), token)
        assert status == 400 and "StudyInstanceUID" in answer["error"]
        assert not (node.data_dir / "covariates" / f"{study_uid}.json").exists()

        status, answer = _post(node.http_port, study_uid, json.dumps(CLINICAL).encode(), token)
        assert status == 200, answer
        assert len(answer["requeued_jobs"]) == 1
        sidecar = json.loads((node.data_dir / "covariates" / f"{study_uid}.json").read_text())
        assert sidecar["lvef_percent"] == 30.0

        wait_for(lambda: len(pacs.received()) >= 2 * len(first), 120, interval=0.2)
        time.sleep(0.5)
        again = pacs.count_by_uid()
        # A re-analysis is a new generation with new UIDs (node.outputs.uids: a PACS keeping the
        # first copy of a UID, like Orthanc by default, would keep the stale objects).
        added = set(again) - set(first)
        assert len(added) == len(first), "re-analysis did not send a new set of objects"
        assert set(again.values()) == {1}
        jobs = node.query("SELECT id, generation, state, result_dir FROM jobs ORDER BY id")
        assert [(r["generation"], r["state"]) for r in jobs] == [(0, "done"), (1, "done")]
        results = json.loads((Path(jobs[1]["result_dir"]) / "results.json").read_text())
        lvrr = results["extra"]["radiomics"]["lvrr"]
        assert lvrr["model"] == "clinical"
        assert lvrr["probability"] == pytest.approx(_logistic(-0.257), abs=1e-3)
        assert results["global"]["lvrr_probability_percent"]["value"] == pytest.approx(
            100 * _logistic(-0.257), abs=0.01
        )
        assert (Path(jobs[1]["result_dir"]) / "features.csv").exists()
        events = node.query("SELECT message FROM events WHERE kind='reanalysis'")
        assert len(events) == 1 and "covariates posted" in events[0]["message"]
        # The replacement SR carries the probability (a NUM with the private concept).
        srs = [ds for ds in pacs.latest_by_uid().values() if ds.Modality == "SR"]
        values = _sr_values(srs, "lvrr-probability")
        assert values and np.allclose(values, 100 * _logistic(-0.257), atol=0.01)
    finally:
        node.stop()
        pacs.stop()


def _sr_values(srs: list[Any], code_value: str) -> list[float]:
    found: list[float] = []

    def walk(items: Any) -> None:
        for item in items:
            name = item.get("ConceptNameCodeSequence")
            if item.get("ValueType") == "NUM" and name and name[0].CodeValue == code_value:
                found.append(float(item.MeasuredValueSequence[0].NumericValue))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    for sr in srs:
        walk(sr.ContentSequence)
    return found
