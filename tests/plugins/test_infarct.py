"""The image-only infarct call: rule on constructed lesions, then on LGE phantoms."""

from __future__ import annotations

import pytest

from plugins.api import AnalysisResult
from plugins.lge import analyse
from plugins.lge.infarct import (
    Aetiology,
    Confidence,
    InfarctCall,
    assess_infarct,
    infarct_finding,
)
from plugins.lge.quantify import Layer, Lesion
from plugins.lib import codes
from tests.plugins.test_lge import KnownLabels, Stack, _key, make_stack

SLAB_MM = 10.0
MYO_ML = 100.0


def lesion(area_mm2: float, layer: Layer, segments: dict[int, int] | None = None,
           at_insertion: bool = False) -> Lesion:
    return Lesion(frame_index=0, area_mm2=area_mm2, layer=layer, segments=segments or {},
                  septal_fraction=None, at_insertion=at_insertion)


def call(found: list[Lesion], **kwargs: object):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {
        "slab_mm": SLAB_MM, "myocardium_volume_ml": MYO_ML,
        "enhanced_volume_ml": sum(x.area_mm2 for x in found) * SLAB_MM / 1000.0,
        "presence_percent": 1.0, "slices_analysed": 8, "slices_not_segmented": 0,
    }
    options.update(kwargs)
    return assess_infarct(found, **options)  # type: ignore[arg-type]


def test_subendocardial_enhancement_in_one_territory_is_an_ischaemic_infarct() -> None:
    # 500 mm2 x 10 mm = 5 ml = 5 % of 100 ml, all in LAD segments 1 and 7.
    result = call([lesion(300.0, Layer.SUBENDOCARDIAL, {1: 30, 7: 10}),
                   lesion(200.0, Layer.TRANSMURAL, {7: 25})])
    assert result.call is InfarctCall.PRESENT
    assert result.aetiology is Aetiology.ISCHAEMIC
    assert result.territory == "LAD"
    assert result.confidence is Confidence.HIGH
    assert result.evidence is not None
    assert result.evidence.ischaemic_volume_ml == pytest.approx(5.0)
    assert result.evidence.ischaemic_percent == pytest.approx(5.0)
    assert result.evidence.segments == (7, 1)


@pytest.mark.parametrize("layer", [Layer.MID_WALL, Layer.SUBEPICARDIAL])
def test_non_ischaemic_layers_are_not_an_infarct(layer: Layer) -> None:
    result = call([lesion(800.0, layer, {3: 40})])
    assert result.call is InfarctCall.ABSENT
    assert result.aetiology is Aetiology.NON_ISCHAEMIC
    assert result.evidence is not None and result.evidence.non_ischaemic_percent == \
        pytest.approx(8.0)


def test_transmural_enhancement_confined_to_the_insertion_point_is_not_an_infarct() -> None:
    result = call([lesion(400.0, Layer.TRANSMURAL, {2: 10}, at_insertion=True)])
    assert result.call is InfarctCall.ABSENT
    assert result.aetiology is Aetiology.NON_ISCHAEMIC


def test_enhancement_below_the_rule_is_absent_with_lowered_confidence() -> None:
    # 0.6 % < 1 %: absent, but within a factor 2 of the rule.
    result = call([lesion(60.0, Layer.SUBENDOCARDIAL, {4: 5})])
    assert result.call is InfarctCall.ABSENT
    assert result.confidence is Confidence.MEDIUM
    assert any("factor" in r for r in result.confidence_reasons)


def test_failed_slices_make_a_negative_study_indeterminate_never_absent() -> None:
    result = call([], slices_not_segmented=2)
    assert result.call is InfarctCall.INDETERMINATE
    assert result.qc_state == "partial"
    assert result.confidence is Confidence.LOW


def test_failed_slices_do_not_remove_an_infarct_seen_elsewhere() -> None:
    result = call([lesion(500.0, Layer.TRANSMURAL, {4: 30})], slices_not_segmented=1)
    assert result.call is InfarctCall.PRESENT
    assert result.territory == "RCA"
    assert result.confidence is Confidence.MEDIUM


def test_nothing_segmented_or_scar_withheld_is_indeterminate() -> None:
    assert call([], slices_analysed=0, myocardium_volume_ml=0.0).call is \
        InfarctCall.INDETERMINATE
    withheld = call([lesion(900.0, Layer.TRANSMURAL)], withheld_reason="myocardium bright")
    assert withheld.call is InfarctCall.INDETERMINATE
    assert withheld.qc_state == "failed"


def test_disagreeing_methods_and_spread_territories_lower_the_confidence() -> None:
    result = call([lesion(300.0, Layer.TRANSMURAL, {1: 10, 4: 10, 5: 10})],
                  method_percents={"network": 3.0, "n-SD": 0.2, "FWHM": 2.5})
    assert result.call is InfarctCall.PRESENT
    assert result.confidence is Confidence.LOW
    assert len(result.confidence_reasons) == 2


def test_finding_is_coded() -> None:
    finding = infarct_finding(call([lesion(500.0, Layer.TRANSMURAL, {10: 5})]))
    assert finding.concept == codes.MYOCARDIAL_INFARCTION
    assert finding.value == codes.PRESENT
    qualifiers = dict(finding.qualifiers)
    assert qualifiers[codes.LGE_PATTERN] == codes.ISCHEMIC_HEART_DISEASE
    assert qualifiers[codes.CORONARY_TERRITORY] == codes.RIGHT_CORONARY_ARTERY
    assert qualifiers[codes.CERTAINTY_OF_FINDING] == codes.HIGH
    assert infarct_finding(call([], slices_not_segmented=1)).value == codes.UNDETERMINED


# ------------------------------------------------------------------------------ phantoms


def _analysed(stack: Stack, segmenter: KnownLabels | None = None) -> AnalysisResult:
    return analyse(stack.series, {"segmenter": segmenter or stack.segmenter})


@pytest.mark.parametrize(("seed", "pattern", "territory"),
                         [(2, "ischaemic_lad", "LAD"), (5, "ischaemic_rca", "RCA")])
def test_phantom_infarcts_are_called_in_their_territory(seed: int, pattern: str,
                                                        territory: str) -> None:
    result = _analysed(make_stack(seed, pattern))
    infarct = result.extra["infarct"]
    assert infarct["call"] == InfarctCall.PRESENT
    assert infarct["aetiology"] in (Aetiology.ISCHAEMIC, Aetiology.MIXED)
    assert infarct["territory"] == territory
    assert infarct["basis"] == "image only"
    assert result.findings[0].value == codes.PRESENT


@pytest.mark.parametrize(("seed", "pattern"),
                         [(0, "midwall_septal"), (4, "subepicardial"), (3, "none")])
def test_phantoms_without_infarct_are_called_absent(seed: int, pattern: str) -> None:
    infarct = _analysed(make_stack(seed, pattern)).extra["infarct"]
    assert infarct["call"] == InfarctCall.ABSENT
    expected = Aetiology.NONE if pattern == "none" else Aetiology.NON_ISCHAEMIC
    assert infarct["aetiology"] == expected


def test_phantom_with_an_unsegmentable_slice_is_indeterminate() -> None:
    stack = make_stack(3, "none")
    table = dict(stack.segmenter.table)
    del table[_key(stack.series.frames[4].pixels)]
    result = _analysed(stack, KnownLabels(table))
    assert result.extra["infarct"]["call"] == InfarctCall.INDETERMINATE
    assert result.extra["infarct"]["qc_state"] == "partial"
    assert result.findings[0].value == codes.UNDETERMINED


def test_site_model_combines_clinical_variables_with_the_image_features() -> None:
    import numpy as np

    from models.training.classify.train import CohortTable, train_infarct_model
    from plugins.lge.infarct_model import NO_MODEL_MESSAGE

    rng = np.random.default_rng(5)
    features = ("troponin", "age", "scar_percent", "lv_volume_ml")
    x = rng.standard_normal((120, 4)) * [1.0, 10.0, 5.0, 30.0] + [0.0, 60.0, 5.0, 150.0]
    eta = 1.5 * (x[:, 0]) + 0.3 * (x[:, 2] - 5.0)
    y = (rng.random(120) < 1 / (1 + np.exp(-eta))).astype(int)
    model = train_infarct_model(CohortTable(features, x, y, "0" * 64),
                                outcome_definition="infarct", bootstrap=20).model
    stack = make_stack(2, "ischaemic_lad")
    result = analyse(stack.series, {"segmenter": stack.segmenter, "infarct_model": model,
                                    "clinical": {"troponin": 2.0, "age": 70},
                                    "clinical_source": "test"})
    combined = result.extra["infarct"]["combined"]
    assert combined["available"] is True
    contributions = combined["top_contributions"]
    assert combined["log_odds"] == pytest.approx(
        model.intercept + sum(c["contribution"] for c in contributions), abs=1e-3)
    assert combined["probability"] == pytest.approx(1 / (1 + np.exp(-combined["log_odds"])),
                                                    abs=1e-4)
    assert {c["feature"] for c in contributions} == set(features)
    sizes = [abs(c["contribution"]) for c in contributions]
    assert sizes == sorted(sizes, reverse=True)
    scar = next(c for c in contributions if c["feature"] == "scar_percent")
    assert scar["value"] == pytest.approx(result.extra["lge"]["methods"]["network"]["percent"],
                                          abs=0.01)
    probability = [m for m in result.findings[0].measurements
                   if m.name == codes.INFARCT_PROBABILITY]
    assert probability and probability[0].value == pytest.approx(
        100 * combined["probability"], abs=0.1)
    # The image-only call is unchanged by the model and says so.
    assert result.extra["infarct"]["basis"] == "image only"
    alone = analyse(stack.series, {"segmenter": stack.segmenter})
    assert alone.extra["infarct"]["combined"] == {
        "available": False, "configured": False, "reason": NO_MODEL_MESSAGE}
    assert alone.extra["infarct"]["call"] == result.extra["infarct"]["call"]
    no_clinical = analyse(stack.series, {"segmenter": stack.segmenter, "infarct_model": model})
    assert "No clinical variables" in no_clinical.extra["infarct"]["combined"]["reason"]
    # A clinical value may not stand in for an image feature.
    spoofed = analyse(stack.series, {"segmenter": stack.segmenter, "infarct_model": model,
                                     "clinical": {"troponin": 2.0, "scar_percent": 0.0}})
    assert spoofed.extra["infarct"]["combined"]["available"] is False
    assert any(f.code == "infarct_model_unusable" for f in spoofed.qc_flags)


def test_real_data_evaluation_calls_each_case_from_its_slices() -> None:
    from models.evaluation.lgeseg.evaluate_real import call_scores, case_call
    from models.training.lgeseg.real_scores import RealSlice

    def row(index: int, segmented: bool, lesions: tuple[tuple[str, float], ...],
            scar: int) -> RealSlice:
        return RealSlice("Case_P001", index, segmented, None, 0.8, None, 0.1, False, 1000, 50,
                         1000 if segmented else 0, scar, 5.0, lesions, lesions)

    infarct = [row(0, True, (("subendocardial", 40.0),), 40), row(1, False, (), 0)]
    assert case_call(infarct) is InfarctCall.PRESENT
    hidden = [row(0, True, (), 0), row(1, False, (), 0)]
    assert case_call(hidden) is InfarctCall.INDETERMINATE
    midwall = [row(0, True, (("mid-wall", 40.0),), 40)]
    assert case_call(midwall) is InfarctCall.ABSENT
    scores = call_scores([(True, InfarctCall.PRESENT), (True, InfarctCall.INDETERMINATE),
                          (False, InfarctCall.ABSENT), (False, InfarctCall.PRESENT)])
    assert scores == {"accuracy": 0.5, "sensitivity": 0.5, "specificity": 0.5,
                      "indeterminate": 1, "accuracy_of_decided": 0.6667}
