"""Companion series and haematocrit at the node: lookup, sidecar, REST, worker and analyse.

The study is a phantom written to disk (native T1 map, post-contrast T1 map, the scanner's
ECV map and other series).  The truth ECV of the CLI test is the phantom's myocardial ECV
(``truth.json`` does not hold it), rebuilt from the same seed exactly as
:func:`models.phantoms.study.write_synthetic_study` draws it; the haematocrit drawn on the
way must equal the one in ``truth.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.phantoms.dicom_lge import write_lge_study_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.maps import ContrastState
from models.phantoms.study import write_synthetic_study
from models.phantoms.t1map import make_t1map_stack
from node.analyses import assemble_options, descriptor
from node.analyses.ecv import study_haematocrit
from node.catalog.catalog import Catalog
from node.catalog.job_queue import OutputFile
from node.catalog.series import InstanceRecord
from node.cli import main as cli
from node.inputs.companions import (
    Candidate,
    CompanionRole,
    cine_of_slices,
    companion_options,
    find_companions,
    looks_like_cine,
)
from node.inputs.covariates import (
    HAEMATOCRIT_KEY,
    CovariateFolder,
    CovariatesError,
    SuppliedCovariates,
    analysis_covariate_options,
    haematocrit_options,
    normalise_covariates,
    read_covariates_table,
)
from node.inputs.loader import load_series_files
from node.jobs.worker import WorkerPool
from node.settings import Settings
from tests.netutil import dciodvfy_errors

ECV_ROLES = descriptor("ecv").companions
LGE_ROLES = descriptor("lge").companions
SEED = 0
"""A lesion-free subject: its remote myocardial ECV is the ECV of every segment."""
ECV_TOLERANCE_POINTS = 1.0
"""Global ECV vs truth: see tests/plugins/test_ecv.py (largest phantom error 0.3 points)."""
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="no dciodvfy")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("study")
    truth = write_synthetic_study(root, seed=SEED, with_negatives=True)
    by_kind = {s["kind"]: s for s in truth["series"]}
    paths = {
        kind: sorted((root / record["directory"]).glob("*.dcm")) for kind, record in by_kind.items()
    }
    return {"root": root, "truth": truth, "series": by_kind, "paths": paths}


def _truth_ecv(seed: int, field: float) -> tuple[float, float]:
    """The phantom study's myocardial ECV and haematocrit, drawn as write_synthetic_study
    draws them."""
    rng = np.random.default_rng([seed, 1])
    info = StudyInfo.synthetic(seed)
    case, slices = make_t1map_stack(rng, field_strength_t=field)
    t1map_series_datasets(slices, study=info, rng=rng, field_strength_t=field)
    state = ContrastState.sample(rng, case.tissues.diffuse_rise_ms)
    return state.myocardial_ecv, case.tissues.haematocrit


def _candidate(study: dict[str, Any], kind: str, analysis: str | None, received: float = 1.0,
               ) -> Candidate:
    return Candidate(study["series"][kind]["series_instance_uid"], analysis,
                     study["paths"][kind], received, study["series"][kind]["series_description"])


# ----------------------------------------------------------------------------- lookup


def test_native_t1_map_found_for_the_post_contrast_map(study):
    post, _ = load_series_files(study["paths"]["t1map_post"])
    found = find_companions(ECV_ROLES, post, [
        _candidate(study, "t1map", "t1map"),
        _candidate(study, "ecv", None),
        _candidate(study, "t1map_post", "ecv"),
    ])
    native = found.series[CompanionRole.NATIVE_T1MAP]
    assert native.series_instance_uid == study["series"]["t1map"]["series_instance_uid"]
    assert found.reasons == {}
    options = found.options()
    assert options["companions"]["native_t1map"] is native
    assert options["companion_series"]["native_t1map"] == native.series_instance_uid


def test_missing_or_unfit_native_map_gives_a_reason(study):
    post, _ = load_series_files(study["paths"]["t1map_post"])
    none = find_companions(ECV_ROLES, post, [_candidate(study, "ecv", None)])
    assert none.series == {}
    assert "no series routed to t1map" in none.reasons["native_t1map"]
    # A "native map" of another orientation (the brain series, pretended routed to t1map).
    other = find_companions(ECV_ROLES, post, [_candidate(study, "brain_t2", "t1map")])
    assert "another orientation" in other.reasons["native_t1map"]
    assert other.options()["companions"] == {}


def test_newest_fitting_candidate_wins(study, tmp_path):
    post, _ = load_series_files(study["paths"]["t1map_post"])
    newer = _candidate(study, "t2map", "t1map", received=5.0)  # same slices: fits geometry
    older = _candidate(study, "t1map", "t1map", received=2.0)
    found = find_companions(ECV_ROLES, post, [older, newer])
    assert found.sources["native_t1map"] == newer.series_instance_uid
    # A newer candidate that cannot be loaded is skipped with its reason kept for the log.
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not dicom")
    found = find_companions(ECV_ROLES, post, [
        older, Candidate("2.25.1", "t1map", [broken], received=9.0),
    ])
    assert found.sources["native_t1map"] == older.series_instance_uid


def test_analyses_without_roles_get_no_options(study):
    assert companion_options(descriptor("t1map").companions, study["paths"]["t1map"], []) == {}
    # LGE asks for the cine: without candidates it gets the reason, not a companion.
    lge = companion_options(LGE_ROLES, study["paths"]["t1map"], [])
    assert lge["companions"] == {} and "short-axis cine" in lge["companion_reasons"]["cine"]


# ----------------------------------------------------------------------------- cine of LGE


@pytest.fixture(scope="module")
def lge_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("lge")
    truth = write_lge_study_series(root, seed=3, n_slices=4, scar_pattern="ischaemic_rca")
    by_kind = {s["kind"]: s for s in truth["series"]}
    paths = {kind: [root / i["file"] for i in record["instances"]]
             for kind, record in by_kind.items()}
    return {"series": by_kind, "paths": paths}


def _lge_candidate(lge_study: dict[str, Any], kind: str, analysis: str | None,
                   received: float = 1.0) -> Candidate:
    record = lge_study["series"][kind]
    return Candidate(record["series_instance_uid"], analysis, lge_study["paths"][kind],
                     received, record["series_description"])


def test_lge_finds_the_unrouted_cine_of_its_study(lge_study):
    assert all(spec.by_header for spec in LGE_ROLES)
    assert not any(spec.by_header for spec in ECV_ROLES)
    assert looks_like_cine(_lge_candidate(lge_study, "cine", None))
    assert not looks_like_cine(_lge_candidate(lge_study, "ti_scout", None))  # inversion times
    assert not looks_like_cine(_lge_candidate(lge_study, "lge_magnitude", None))
    psir, _ = load_series_files(lge_study["paths"]["lge_psir"])
    found = find_companions(LGE_ROLES, psir, [
        _lge_candidate(lge_study, "lge_magnitude", "lge", received=3.0),
        _lge_candidate(lge_study, "ti_scout", None, received=2.0),
        _lge_candidate(lge_study, "cine", None),
    ])
    cine_uid = lge_study["series"]["cine"]["series_instance_uid"]
    assert found.sources == {"cine": cine_uid} and found.reasons == {}
    assert found.series[CompanionRole.CINE].series_instance_uid == cine_uid
    # A cine that a site rule routes to an analysis is still the LGE's companion: routing
    # must not switch the LGE-cine fusion off.
    routed = find_companions(LGE_ROLES, psir, [_lge_candidate(lge_study, "cine", "t1map")])
    assert routed.sources == {"cine": cine_uid} and routed.reasons == {}
    # A series that does not look like a cine is refused, routed or not.
    other = find_companions(LGE_ROLES, psir, [_lge_candidate(lge_study, "ti_scout", "t1map")])
    assert other.series == {} and "looks like one" in other.reasons["cine"]


def test_single_phase_or_distant_series_is_not_a_cine(lge_study):
    psir, _ = load_series_files(lge_study["paths"]["lge_psir"])
    magnitude, _ = load_series_files(lge_study["paths"]["lge_magnitude"])
    assert "not a cine" in str(cine_of_slices(psir, magnitude))
    cine, _ = load_series_files(lge_study["paths"]["cine"])
    assert cine_of_slices(psir, cine) is None
    step = 25.0 * cine.frames[0].normal

    def moved(position: tuple[float, float, float]) -> tuple[float, float, float]:
        return (position[0] + float(step[0]), position[1] + float(step[1]),
                position[2] + float(step[2]))

    far = dataclasses.replace(cine, frames=tuple(
        dataclasses.replace(f, image_position=moved(f.image_position)) for f in cine.frames))
    # 25 mm moves every cine plane 5 mm from an LGE plane (10 mm apart): more than 4 mm.
    assert "half a slice thickness" in str(cine_of_slices(psir, far))


# ----------------------------------------------------------------------------- haematocrit


def test_haematocrit_is_kept_apart_from_lvrr_covariates():
    values = normalise_covariates({"sbp_mmhg": 120, "haematocrit": 42})
    assert values == {"sbp_mmhg": 120.0, HAEMATOCRIT_KEY: 0.42}
    supplied = SuppliedCovariates(values, "sidecar x.json")
    assert analysis_covariate_options(supplied) == {
        "covariates": {"sbp_mmhg": 120.0}, "covariates_source": "sidecar x.json",
    }
    assert haematocrit_options(supplied) == {
        "haematocrit": 0.42, "haematocrit_source": "sidecar x.json",
    }
    only = SuppliedCovariates(normalise_covariates({"Hct": {"value": 0.39, "unit": "1"}}), "s")
    assert analysis_covariate_options(only) == {}
    assert haematocrit_options(only)["haematocrit"] == pytest.approx(0.39)
    assert normalise_covariates({"hematocrit": {"value": 45, "unit": "%"}}) == {
        HAEMATOCRIT_KEY: 0.45
    }
    assert haematocrit_options(SuppliedCovariates({"sbp_mmhg": 1.0}, "s")) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"haematocrit": 5}, "outside"),
        ({"haematocrit": {"value": 42, "unit": "g/dl"}}, "unit"),
        ({"haematocrit": 0.4, "hct": 0.4}, "given 2 times"),
        ({"haematokrit": 0.4}, "Unknown covariate"),
    ],
)
def test_invalid_haematocrit_is_refused(raw, message):
    with pytest.raises(CovariatesError, match=message):
        normalise_covariates(raw)


def test_covariates_file_with_only_a_haematocrit(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"haematocrit": 44}))
    table = read_covariates_table(flat)
    found = table.lookup("1.2.3")
    assert found is not None and haematocrit_options(found)["haematocrit"] == 0.44
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"1.2.3": {"hct": 0.41, "smoking": 0}}))
    found = read_covariates_table(keyed).lookup("1.2.3")
    assert found is not None and found.values == {"smoking": 0.0, HAEMATOCRIT_KEY: 0.41}


# ----------------------------------------------------------------------------- node


def _record(catalog: Catalog, study_uid: str, series_uid: str, paths: list[Path],
            description: str) -> None:
    for number, path in enumerate(paths, 1):
        catalog.record_instance(InstanceRecord(
            f"{series_uid}.{number}", series_uid, study_uid, "1.2.840.10008.5.1.4.1.1.4", None,
            path, path.stat().st_size, "SCANNER", "MR", description, len(paths),
        ))
    assert catalog.complete_series(series_uid, 0)


def test_worker_gives_ecv_jobs_the_native_map_and_haematocrit(study, tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    settings = Settings(data_dir=tmp_path)
    pool = WorkerPool(settings, catalog, on_outputs=lambda: None)
    study_uid = study["truth"]["study_instance_uid"]
    native_uid = study["series"]["t1map"]["series_instance_uid"]
    post_uid = study["series"]["t1map_post"]["series_instance_uid"]
    _record(catalog, study_uid, native_uid, study["paths"]["t1map"], "native")
    catalog.route_series(native_uid, 0, ["t1map"], "test")
    _record(catalog, study_uid, post_uid, study["paths"]["t1map_post"], "post")
    catalog.route_series(post_uid, 0, ["ecv"], "test")
    first = catalog.claim_job()
    assert first is not None and first.analysis == "t1map"
    job = catalog.claim_job()
    assert job is not None and job.analysis == "ecv"
    paths = catalog.instance_paths(post_uid)
    options = assemble_options("ecv", {}, paths, pool.study_facts(job, paths))
    # the native job is still running
    assert options["companions"]["native_t1map"].series_instance_uid == native_uid
    assert study_haematocrit(pool.study_facts(job, paths)) == {}
    CovariateFolder(settings.covariates_folder).write(study_uid, {"haematocrit": 40})
    assert study_haematocrit(pool.study_facts(job, paths)) == {
        "haematocrit": 0.40, "haematocrit_source": f"sidecar {study_uid}.json",
    }
    (settings.covariates_folder / f"{study_uid}.json").write_text('{"haematocrit": 90}')
    assert "outside" in study_haematocrit(pool.study_facts(job, paths))["haematocrit_error"]
    # An ECV job that failed (e.g. before the native map arrived) is queued again when the
    # study's native map has been analysed.
    catalog.fail_job(job, "cannot analyse: no native map", retry_at=None)
    out = OutputFile(tmp_path / "sr.dcm", "2.25.77", "1.2.840.10008.5.1.4.1.1.88.33", "sr")
    assert catalog.finish_job(first, [out], [], result_dir=tmp_path, timings={}, summary={})
    [requeued] = pool.requeue_after(first, {"analysis": "t1map"})
    again = catalog.job(requeued)
    assert again is not None and again["analysis"] == "ecv" and again["state"] == "queued"
    catalog.close()


def test_rest_haematocrit_is_stored_and_requeues_ecv(study, tmp_path):
    from node.status.report import StatusServer

    catalog = Catalog(tmp_path / "catalog.sqlite3")
    study_uid = study["truth"]["study_instance_uid"]
    post_uid = study["series"]["t1map_post"]["series_instance_uid"]
    _record(catalog, study_uid, post_uid, study["paths"]["t1map_post"], "post")
    catalog.route_series(post_uid, 0, ["ecv"], "test")
    job = catalog.claim_job()
    assert job is not None
    catalog.fail_job(job, "cannot analyse: no haematocrit", retry_at=None)
    folder = CovariateFolder(tmp_path / "covariates")
    woken: list[bool] = []
    server = StatusServer(catalog, "127.0.0.1", 0, lambda: woken.append(True), covariates=folder)
    server.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.address[1]}/studies/{study_uid}/covariates",
            data=json.dumps({"haematocrit": 43.5}).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {server.write_token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            answer = json.loads(reply.read())
        assert answer["covariates"] == {HAEMATOCRIT_KEY: 0.435}
        assert len(answer["requeued_jobs"]) == 1 and woken == [True]
        stored = folder.lookup(study_uid)
        assert stored is not None and haematocrit_options(stored)["haematocrit"] == 0.435
    finally:
        server.stop()
        catalog.close()


# ----------------------------------------------------------------------------- analyse


@needs_dciodvfy
def test_analyse_gives_ecv_near_truth_and_valid_outputs(study, tmp_path, capsys):
    covariates = tmp_path / "covariates.json"
    hct = study["truth"]["subject"]["haematocrit"]
    covariates.write_text(json.dumps({study["truth"]["study_instance_uid"]: {"haematocrit": hct}}))
    out = tmp_path / "out"
    code = cli.main([
        "analyse", str(study["root"]), "--out", str(out), "--data-dir", str(tmp_path / "data"),
        "--covariates", str(covariates),
    ])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    by_uid = {e["series_instance_uid"]: e for e in results["series"]}
    post = by_uid[study["series"]["t1map_post"]["series_instance_uid"]]
    assert post["status"] == "analysed" and post["analysis"] == "ecv", post.get("reason")
    scanner_ecv = by_uid[study["series"]["ecv"]["series_instance_uid"]]
    assert scanner_ecv["status"] == "skipped" and "ecv-map" in scanner_ecv["reason"]
    assert study["truth"]["subject"]["n_lesions"] == 0
    ecv, drawn_hct = _truth_ecv(SEED, study["truth"]["field_strength_t"])
    assert drawn_hct == hct  # the same random draws as the written study
    truth = 100 * ecv
    value = post["global"]["global_myocardium_ecv_percent"]["value"]
    assert abs(value - truth) <= ECV_TOLERANCE_POINTS, (value, truth)
    assert post["extra"]["ecv"]["native_series_instance_uid"] == (
        study["series"]["t1map"]["series_instance_uid"]
    )
    assert post["extra"]["ecv"]["haematocrit_source"].startswith("command line file")
    assert set(post["outputs"]) >= {"seg", "sr", "summary-image", "parametric-map-ecv"}
    for item in post["outputs"].values():
        path = out / item["file"]
        assert dciodvfy_errors(path) == [], path
    ecv_map, _ = load_series_files([out / post["outputs"]["parametric-map-ecv"]["file"]])
    assert {f.units for f in ecv_map.frames} == {"%"}
    assert len(ecv_map.frames) == len(post["slices"])
    # The MOLLI source series was compared with the scanner's map of the study (companion).
    molli = by_uid[study["series"]["molli_source"]["series_instance_uid"]]
    [comparison] = molli["extra"]["molli"]["scanner_map_comparison"]
    assert comparison["scanner_series_instance_uid"] == (
        study["series"]["t1map"]["series_instance_uid"]
    )
    assert abs(comparison["difference_ms"]) < 30


def test_worker_offers_a_routed_cine_to_the_lge(lge_study, tmp_path):
    """A site rule routing cines to an analysis leaves the cine a candidate of the LGE."""
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    pool = WorkerPool(Settings(data_dir=tmp_path), catalog, on_outputs=lambda: None)
    study_uid = "2.25.555"
    psir = lge_study["series"]["lge_psir"]["series_instance_uid"]
    cine = lge_study["series"]["cine"]["series_instance_uid"]
    _record(catalog, study_uid, psir, lge_study["paths"]["lge_psir"], "psir")
    catalog.route_series(psir, 0, ["lge"], "test")
    _record(catalog, study_uid, cine, lge_study["paths"]["cine"], "cine")
    catalog.route_series(cine, 0, ["t1map"], "a site rule routes cines")
    job = catalog.claim_job()
    assert job is not None and job.analysis == "lge"
    paths = catalog.instance_paths(psir)
    options = assemble_options("lge", {}, paths, pool.study_facts(job, paths))
    assert options["companion_series"] == {"cine": cine}
    catalog.close()
