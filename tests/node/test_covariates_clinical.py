"""EMIDEC's clinical variables through the covariates channel to the LGE analysis.

Validation (types, units, ranges: a bad value is refused with its reason and nothing is
stored), the REST route (an LGE result of the study is analysed again), the LGE descriptor
(typed input to the plugin) and ``cmr-node analyse --covariates`` with a site model trained
by ``cmr-node classify train`` on a synthetic cohort (no coefficient is written here).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread

from node.analyses import StudyFacts, assemble_options
from node.catalog.catalog import Catalog
from node.inputs.covariates import CovariateFolder, CovariatesError, parse_supplied
from node.settings import Settings
from plugins.lge.clinical import ClinicalVariables, Sex, Tobacco, parse_clinical
from plugins.lge.infarct_model import (
    CLINICAL_FEATURES,
    combined_probability,
    load_infarct_model,
)
from tests.node.test_covariates import STUDY, _finish, _post, _routed_series

VARIABLES: dict[str, Any] = {
    "sex": "M", "age": 61, "tobacco": "current", "overweight": "Y",
    "arterial_hypertension": False, "diabetes": "no", "family_history": 1,
    "ecg_st_elevation": True, "troponin": {"value": 0.06, "unit": "ng/mL"}, "killip": "II",
    "lvef_percent": 42, "ntprobnp": {"value": 880, "unit": "pg/mL"},
}
"""One study's twelve variables, in several of the accepted spellings."""


def synthetic_cohort(path: Path, n: int = 300, seed: int = 5) -> None:
    """A cohort table in the node's coding (:mod:`plugins.lge.clinical`) whose outcome
    depends on troponin and ST elevation only: signal planted for the training tool."""
    rng = np.random.default_rng(seed)
    columns = {
        "sex": rng.integers(0, 2, n).astype(float),
        "age": rng.normal(60.0, 12.0, n),
        "tobacco": rng.integers(0, 3, n).astype(float),
        **{name: rng.integers(0, 2, n).astype(float) for name in (
            "overweight", "arterial_hypertension", "diabetes", "family_history",
            "ecg_st_elevation")},
        "troponin": np.exp(rng.normal(4.0, 1.5, n)),
        "killip": rng.integers(1, 5, n).astype(float),
        "lvef": rng.uniform(25.0, 70.0, n),
        "ntprobnp": np.exp(rng.normal(6.0, 1.0, n)),
    }
    eta = 1.1 * (np.log(columns["troponin"]) - 4.0) + 1.5 * (columns["ecg_st_elevation"] - 0.5)
    outcome = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", *CLINICAL_FEATURES, "infarct"])
        for i in range(n):
            writer.writerow([f"S{i:03d}", *(f"{columns[c][i]:.6f}" for c in CLINICAL_FEATURES),
                             int(outcome[i])])


def train_model(folder: Path) -> Path:
    """A site infarct model trained by ``cmr-node classify train`` on :func:`synthetic_cohort`."""
    from node.cli.main import main

    folder.mkdir(parents=True, exist_ok=True)
    table, model = folder / "cohort.csv", folder / "infarct-model.json"
    synthetic_cohort(table)
    assert main(["classify", "train", "--table", str(table), "--outcome", "infarct",
                 "--out", str(model), "--bootstrap", "100"]) == 0
    return model


# ----------------------------------------------------------------------------- validation


def test_the_twelve_variables_are_typed_and_coded() -> None:
    clinical = parse_clinical(VARIABLES)
    assert clinical.sex is Sex.MALE and clinical.tobacco is Tobacco.CURRENT
    assert clinical.troponin_ng_per_l == pytest.approx(60.0)  # 0.06 ng/mL
    assert clinical.killip_class == 2 and clinical.family_history is True
    features = clinical.features()
    assert tuple(features) == CLINICAL_FEATURES and clinical.missing() == ()
    assert features == {
        "sex": 1.0, "age": 61.0, "tobacco": 2.0, "overweight": 1.0,
        "arterial_hypertension": 0.0, "diabetes": 0.0, "family_history": 1.0,
        "ecg_st_elevation": 1.0, "troponin": pytest.approx(60.0), "killip": 2.0,
        "lvef": 42.0, "ntprobnp": 880.0,
    }
    # The canonical form reads back to the same variables (the sidecar round trip).
    assert parse_clinical(clinical.as_json()) == clinical
    partial = parse_clinical({"sex": "female", "troponin": None, "killip": 1})
    assert partial.features() == {"sex": 0.0, "killip": 1.0}
    assert "troponin" in partial.missing()


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("troponin", 130, "needs a unit"),
    ("troponin", {"value": 130, "unit": "pmol/L"}, "'pmol/L'"),
    ("ntprobnp", {"value": -3, "unit": "pg/mL"}, "outside the plausible range"),
    ("tobacco", 1, "numeric code is refused"),
    ("sex", "X", "M or F"),
    ("age", 150, "outside the plausible range 0..120"),
    ("killip", 5, "class 1-4"),
    ("diabetes", "maybe", "yes or no"),
    ("lvef_percent", 0.35, "outside the plausible range"),
    ("troponine", {"value": 1, "unit": "ng/L"}, "Unknown covariate 'troponine'"),
])
def test_a_bad_value_is_refused_with_its_reason(
    tmp_path: Path, key: str, value: Any, reason: str
) -> None:
    folder = CovariateFolder(tmp_path / "cov")
    with pytest.raises(CovariatesError, match=None) as refused:
        folder.write_supplied(STUDY, {**VARIABLES, key: value})
    assert reason in str(refused.value)
    assert not (tmp_path / "cov" / f"{STUDY}.json").exists()


def test_lvef_alone_stays_an_lvrr_covariate_and_is_shared() -> None:
    values, clinical = parse_supplied({"sbp_mmhg": 120, "lvef_percent": 30})
    assert values == {"sbp_mmhg": 120.0, "lvef_percent": 30.0} and clinical is None
    values, clinical = parse_supplied({"lvef_percent": 30, "killip": 3, "haematocrit": 40})
    assert clinical is not None and clinical.features() == {"killip": 3.0, "lvef": 30.0}
    assert values == {"lvef_percent": 30.0, "haematocrit": 0.4}


# ----------------------------------------------------------------------------- node paths


def test_lge_descriptor_passes_typed_variables_or_the_refusal(tmp_path: Path) -> None:
    folder = CovariateFolder(tmp_path / "cov")
    facts = StudyFacts(study_uid=STUDY, sources=(folder,))
    assert "clinical" not in assemble_options("lge", {}, [], facts)
    folder.write(STUDY, {"sbp_mmhg": 120})  # LVRR covariates only: nothing for the LGE
    assert "clinical" not in assemble_options("lge", {}, [], facts)
    path, _ = folder.write(STUDY, VARIABLES)
    options = assemble_options("lge", {"infarct_model": "m.json"}, [], facts)
    assert isinstance(options["clinical"], ClinicalVariables)
    assert options["clinical"] == parse_clinical(VARIABLES)
    assert options["clinical_source"] == f"sidecar {path.name}"
    assert options["infarct_model"] == "m.json"
    path.write_text(json.dumps({"killip": 7}))
    reported: list[tuple[str, str]] = []
    options = assemble_options("lge", {}, [], dataclasses.replace(
        facts, report=lambda kind, text: reported.append((kind, text))))
    assert "killip" in options["clinical_error"] and "clinical" not in options
    assert reported and reported[0][0] == "covariates_invalid"


def test_posting_variables_requeues_the_lge_and_refuses_bad_ones(tmp_path: Path) -> None:
    from node.status.report import StatusServer

    catalog = Catalog(tmp_path / "catalog.sqlite3")
    _routed_series(catalog, tmp_path, "2.25.60", "lge")
    _finish(catalog, tmp_path / "lge-0")
    _routed_series(catalog, tmp_path, "2.25.61", "t1map")
    _finish(catalog, tmp_path / "t1-0")
    folder = CovariateFolder(tmp_path / "covariates")
    server = StatusServer(catalog, "127.0.0.1", 0, lambda: None, covariates=folder)
    server.start()
    port = server.address[1]
    try:
        bad = {**VARIABLES, "troponin": 130}
        status, answer = _post(port, STUDY, json.dumps(bad).encode(), server.write_token)
        assert status == 400 and "troponin needs a unit" in answer["error"]
        assert not (tmp_path / "covariates" / f"{STUDY}.json").exists()
        assert catalog.counts()["jobs"] == {"done": 2}
        clinical_only = {k: v for k, v in VARIABLES.items() if k != "lvef_percent"}
        status, answer = _post(port, STUDY, json.dumps(clinical_only).encode(),
                               server.write_token)
        assert status == 200, answer
        [job_id] = answer["requeued_jobs"]  # the LGE; no LVRR covariate for the T1 map
        job = catalog.job(job_id)
        assert job is not None and (job["analysis"], job["generation"]) == ("lge", 1)
        assert answer["clinical"]["troponin"] == {"value": pytest.approx(60.0), "unit": "ng/L"}
        [event] = [e for e in catalog.recent_events() if e["kind"] == "reanalysis"]
        assert "clinical variables posted" in event["message"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/studies/{STUDY}/covariates", timeout=10
        ) as reply:
            stored = json.loads(reply.read())
        assert parse_clinical(stored["covariates"]) == parse_clinical(clinical_only)
    finally:
        server.stop()
        catalog.close()


def test_posts_from_different_systems_merge_into_one_sidecar(tmp_path: Path) -> None:
    """Clinical variables, then a haematocrit, then an LVRR covariate, each posted alone
    over HTTP: the sidecar keeps all of them (a JSON merge patch), each post re-queues only
    the analyses its keys concern, and ``null`` removes a key."""
    from node.status.report import StatusServer

    catalog = Catalog(tmp_path / "catalog.sqlite3")
    _routed_series(catalog, tmp_path, "2.25.70", "lge")
    _finish(catalog, tmp_path / "lge-0")
    _routed_series(catalog, tmp_path, "2.25.71", "t1map")
    _finish(catalog, tmp_path / "t1-0")
    folder = CovariateFolder(tmp_path / "covariates")
    server = StatusServer(catalog, "127.0.0.1", 0, lambda: None, covariates=folder)
    server.start()
    port = server.address[1]

    def post(body: dict[str, Any]) -> dict[str, Any]:
        status, answer = _post(port, STUDY, json.dumps(body).encode(), server.write_token)
        assert status == 200, answer
        return answer

    def analyses(answer: dict[str, Any]) -> list[str]:
        jobs = [catalog.job(job_id) for job_id in answer["requeued_jobs"]]
        return sorted(str(job["analysis"]) for job in jobs if job is not None)

    try:
        clinical_only = {k: v for k, v in VARIABLES.items() if k != "lvef_percent"}
        assert analyses(post(clinical_only)) == ["lge"]
        assert analyses(post({"haematocrit": {"value": 41, "unit": "%"}})) == []  # no ECV
        answer = post({"sbp_mmhg": 131})
        assert analyses(answer) == ["t1map"]
        stored = json.loads((tmp_path / "covariates" / f"{STUDY}.json").read_text())
        assert parse_supplied(stored)[1] == parse_clinical(clinical_only)
        assert stored["haematocrit"] == pytest.approx(0.41)
        assert stored["sbp_mmhg"] == 131
        assert answer["covariates"]["haematocrit"] == pytest.approx(0.41)
        post({"hct": 0.38, "sbp_mmhg": None})  # another spelling replaces; null removes
        stored = json.loads((tmp_path / "covariates" / f"{STUDY}.json").read_text())
        assert stored["haematocrit"] == pytest.approx(0.38)
        assert "sbp_mmhg" not in stored and "hct" not in stored
        assert parse_supplied(stored)[1] == parse_clinical(clinical_only)
        status, answer = _post(port, STUDY, json.dumps({"killip": 9}).encode(),
                               server.write_token)
        assert status == 400 and "killip" in answer["error"].lower()
        after = json.loads((tmp_path / "covariates" / f"{STUDY}.json").read_text())
        assert after == stored  # a refused patch changes nothing
    finally:
        server.stop()
        catalog.close()


def test_analyse_reports_the_combined_probability_or_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from node.cli import main as cli
    from node.cli.main import main
    from tests.node.test_covariates import _lge_study

    model_path = train_model(tmp_path / "site")
    segmenter = _lge_study(77, tmp_path / "in" / "lge")
    first = next((tmp_path / "in" / "lge").iterdir())
    study_uid = str(dcmread(first, stop_before_pixels=True).StudyInstanceUID)
    load_settings = cli.load_settings

    def with_lge(path: Path | None) -> Settings:
        settings = load_settings(path)
        options = {**settings.analysis_options}
        options["lge"] = {**options.get("lge", {}), "segmenter": segmenter,
                          "infarct_model": str(model_path)}
        return dataclasses.replace(settings, analysis_options=options)

    monkeypatch.setattr(cli, "load_settings", with_lge)

    def combined(covariates: dict[str, Any] | None) -> dict[str, Any]:
        args = ["analyse", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                "--data-dir", str(tmp_path / "data")]
        if covariates is not None:
            (tmp_path / "cov.json").write_text(json.dumps({study_uid: covariates}))
            args += ["--covariates", str(tmp_path / "cov.json")]
        assert main(args) == 0
        [entry] = json.loads((tmp_path / "out" / "results.json").read_text())["series"]
        return dict(entry["extra"]["infarct"]["combined"]), entry

    block, _ = combined(None)
    assert block["available"] is False and "No clinical variables" in block["reason"]
    block, entry = combined(VARIABLES)
    expected = combined_probability(load_infarct_model(model_path),
                                    parse_clinical(VARIABLES).features())
    assert block["available"] is True
    # results.json keeps 3 decimals
    assert block["log_odds"] == pytest.approx(expected.log_odds, abs=1e-3)
    assert block["probability"] == pytest.approx(expected.probability, abs=1e-3)
    assert 0.05 < expected.probability < 0.95
    assert block["clinical_source"] == "command line file cov.json [" + study_uid + "]"
    assert {c["feature"] for c in block["top_contributions"][:2]} == {
        "troponin", "ecg_st_elevation"}
    # Variables missing for the model: said so, never a silent mix with the image call.
    block, entry = combined({"sex": "F", "killip": 1})
    assert block["available"] is False and "needs" in block["reason"]
    assert "probability" not in block
    assert any(f["code"] == "infarct_model_unusable" for f in entry["qc_flags"])
