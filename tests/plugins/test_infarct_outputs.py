"""The infarct call and "why this number" in the summary SR and the summary image."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset

from models.training.classify.train import CohortTable, train_infarct_model
from node.outputs.writers import OutputKind, WriterSettings, build_outputs
from node.outputs.writers.explain import PER_UNIT, STANDARDISED, model_explanations
from node.outputs.writers.summary import render_summary
from plugins.api import AnalysisResult
from plugins.lge import analyse
from plugins.lib.radiomics.lvrr import PUBLISHED_MODELS
from plugins.t1map.texture import lvrr_assessment
from tests.netutil import dciodvfy_errors
from tests.plugins.test_lge import Stack, make_stack


def _items(ds: Dataset) -> list[Dataset]:
    found = []

    def walk(items: list[Dataset]) -> None:
        for item in items:
            found.append(item)
            walk(list(item.get("ContentSequence", [])))

    walk(list(ds.ContentSequence))
    return found


def _code(code: Dataset) -> str:
    return str(code.get("CodeValue") or code.get("LongCodeValue"))


def _concept(item: Dataset) -> str:
    return _code(item.ConceptNameCodeSequence[0])


@pytest.fixture(scope="module")
def stack() -> Stack:
    return make_stack(2, "ischaemic_lad")


@pytest.fixture(scope="module")
def combined(stack: Stack) -> AnalysisResult:
    rng = np.random.default_rng(1)
    features = ("troponin", "killip", "scar_percent")
    x = rng.standard_normal((100, 3)) * [1.0, 1.0, 10.0] + [0.0, 2.0, 10.0]
    y = (rng.random(100) < 1 / (1 + np.exp(-(x[:, 0] + 0.1 * (x[:, 2] - 10))))).astype(int)
    model = train_infarct_model(CohortTable(features, x, y, "0" * 64),
                                outcome_definition="infarct", bootstrap=20).model
    return analyse(stack.series, {"segmenter": stack.segmenter, "infarct_model": model,
                                  "clinical": {"troponin": 1.0, "killip": 2}})


def test_summary_sr_codes_the_infarct_call(stack: Stack, combined: AnalysisResult) -> None:
    outputs = build_outputs(combined, stack.series, stack.datasets, settings=WriterSettings())
    sr = {o.kind: o.dataset for o in outputs}[OutputKind.SR_SUMMARY]
    items = _items(sr)
    calls = [i for i in items if i.ValueType == "CODE" and _concept(i) == "22298006"]
    assert [_code(i.ConceptCodeSequence[0]) for i in calls] == ["52101004"]  # Present
    coded = {_concept(i): _code(i.ConceptCodeSequence[0])
             for i in items if i.ValueType == "CODE"}
    expected = {"ischaemic": "414545008",  # Ischemic heart disease
                "ischaemic and non-ischaemic": "mixed-lge"}
    assert coded["lge-pattern"] == expected[combined.extra["infarct"]["aetiology"]]
    assert coded["coronary-territory"] == "59438005"  # LAD
    assert coded["111012"] in ("75540009", "255508009", "62482003")  # High / Medium / Low
    numbers = {_concept(i): float(i.MeasuredValueSequence[0].NumericValue)
               for i in items if i.ValueType == "NUM"}
    assert numbers["infarct-probability"] == pytest.approx(
        100 * combined.extra["infarct"]["combined"]["probability"], abs=0.1)
    why = [str(i.TextValue) for i in items if i.ValueType == "TEXT" and _concept(i) == "CONTRIB"]
    assert len(why) == 1 and why[0].startswith("infarct probability")
    # Contributions are listed largest first.
    terms = combined.extra["infarct"]["combined"]["top_contributions"]
    order = [why[0].index(f" {t['feature']} ") for t in terms]
    assert order == sorted(order)
    assert [abs(t["contribution"]) for t in terms] == sorted(
        (abs(t["contribution"]) for t in terms), reverse=True)


def test_summary_image_grows_with_the_finding_and_explanation(
        stack: Stack, combined: AnalysisResult) -> None:
    bare = dataclasses.replace(combined, findings=(), extra={
        k: v for k, v in combined.extra.items() if k != "infarct"})
    with_call = render_summary(combined, stack.series)
    without = render_summary(bare, stack.series)
    assert with_call.height > without.height


def test_why_this_number_for_radscore_and_lvrr(combined: AnalysisResult) -> None:
    radscore = {
        "available": True, "radscore": 0.8, "model_sha256": "ab" * 32,
        "top_contributions": [
            {"feature": "f_small", "coefficient": 0.1, "value": 3.0,
             "standardised_value": 1.0, "contribution": 0.1},
            {"feature": "f_large", "coefficient": -0.5, "value": 9.0,
             "standardised_value": 2.0, "contribution": -1.0},
        ],
    }
    covariates = {"sbp_mmhg": 120, "lvef_percent": 30, "lveddi_mm_per_m2": 35, "smoking": 1}
    lvrr, _ = lvrr_assessment(covariates, "test", {"available": False, "reason": "none"})
    assert lvrr["available"]
    result = dataclasses.replace(combined, extra={
        **combined.extra, "radiomics": {"radscore": radscore, "lvrr": lvrr}})
    items = {e.quantity: e for e in model_explanations(result)}
    assert set(items) == {"rad-score", "LVRR probability", "infarct probability"}
    assert [c.feature for c in items["rad-score"].contributions] == ["f_large", "f_small"]
    assert items["rad-score"].basis == STANDARDISED
    lvrr_terms = items["LVRR probability"]
    assert lvrr_terms.basis == PER_UNIT
    model = PUBLISHED_MODELS[lvrr["model"]]
    # The terms and the intercept rebuild the published model's log-odds.
    total = model.intercept + sum(c.contribution for c in lvrr_terms.contributions)
    assert total == pytest.approx(lvrr["log_odds"], abs=1e-6)
    sizes = [abs(c.contribution) for c in lvrr_terms.contributions]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="no dciodvfy")
def test_summary_sr_with_the_finding_passes_dciodvfy(stack: Stack, combined: AnalysisResult,
                                                     tmp_path: Path) -> None:
    outputs = build_outputs(combined, stack.series, stack.datasets, settings=WriterSettings())
    path = tmp_path / "sr.dcm"
    {o.kind: o.dataset for o in outputs}[OutputKind.SR_SUMMARY].save_as(path)
    assert dciodvfy_errors(path) == []
