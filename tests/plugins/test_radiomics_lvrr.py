"""T1-map radiomics outputs: rad-score with a site model, LVRR probability, feature export."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("radiomics")

from models.phantoms.t1map import PhantomSlice, make_t1map_slice
from models.training.radscore.train import save_model
from node.outputs import radiomics_export as rcli
from plugins.api import Label, LoadedSeries, Severity, SliceResult, SourceFrame
from plugins.lib import codes
from plugins.lib.radiomics.features import EXPECTED_FEATURE_COUNT
from plugins.lib.radiomics.lvrr import DERIVATION_CAVEAT
from plugins.lib.radiomics.model import (
    NO_MODEL_MESSAGE,
    RadScoreModel,
    TrainingSummary,
)
from plugins.t1map.texture import (
    LVRR_KEY,
    RADSCORE_KEY,
    TextureCode,
    lvrr_assessment,
    mid_slice_radiomics,
    radiomics_measurements,
)

CLINICAL = {"sbp_mmhg": 120, "lvef_percent": 30, "lveddi_mm_per_m2": 35, "smoking": 1}
LGE = {"lge_percent_lv_mass": 5.0, "septal_midwall_lge": 1}
NO_RADSCORE: dict[str, Any] = {"available": False, "configured": False, "reason": NO_MODEL_MESSAGE}
MODEL_FEATURES = (
    "original_firstorder_Mean",
    "original_firstorder_Variance",
    "original_glcm_Contrast",
    "original_glrlm_RunEntropy",
    "wavelet-LL_firstorder_Median",
    "square_glszm_ZoneEntropy",
    "original_ngtdm_Busyness",
)


def _logistic(log_odds: float) -> float:
    return 1.0 / (1.0 + math.exp(-log_odds))


@pytest.fixture(scope="module")
def phantom() -> PhantomSlice:
    return make_t1map_slice(np.random.default_rng(21), level="mid")


def _series(phantom: PhantomSlice) -> tuple[LoadedSeries, list[SliceResult]]:
    frame = SourceFrame(
        pixels=np.asarray(phantom.t1_ms, dtype=np.float32),
        sop_instance_uid="2.25.77",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        frame_number=None,
        image_position=(0.0, 0.0, 0.0),
        image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        pixel_spacing=phantom.pixel_spacing,
        slice_thickness=8.0,
        units="ms",
    )
    series = LoadedSeries("2.25.1", "2.25.2", (frame,), {"Modality": "MR"})
    return series, [SliceResult(0, phantom.labels, (), level="mid")]


@pytest.fixture(scope="module")
def plain_block(phantom: PhantomSlice) -> tuple[dict[str, Any], list[Any]]:
    """Features without a model or covariates."""
    series, slices = _series(phantom)
    block, flags = mid_slice_radiomics(series, slices, set(), 1.0, {})
    assert block is not None
    return block, flags


def _site_model(features: dict[str, float]) -> RadScoreModel:
    """A model standardised around this slice's values so each z is known by construction."""
    zs = (1.5, -0.5, 0.25, 2.0, -1.0, 0.1, 0.75)
    coefficients = (0.6, -0.4, 0.3, 0.2, -0.9, 1.1, 0.05)
    sds = tuple(max(abs(features[f]) * 0.1, 1e-3) for f in MODEL_FEATURES)
    means = tuple(features[f] - z * sd for f, z, sd in zip(MODEL_FEATURES, zs, sds, strict=True))
    return RadScoreModel(
        features=MODEL_FEATURES,
        coefficients=coefficients,
        intercept=-0.2,
        means=means,
        sds=sds,
        training=TrainingSummary(180, 80, "LVRR at 180 days", 10, 0.03, 0.77, 0.83, 0.75,
                                 (0.69, 0.81), 1000, 7),
        created="2026-03-01T12:00:00Z",
        software={"cmr-node": "test"},
    )


# ----------------------------------------------------------------------------- published models


def test_clinical_probability_from_covariates_matches_hand_computation() -> None:
    block, flags = lvrr_assessment(CLINICAL, "sidecar 1.2.3.json", NO_RADSCORE)
    # -4.145 + 0.032*120 - 0.075*30 + 0.054*35 + 0.408*1 = -0.257
    assert block["available"] and block["model"] == "clinical"
    assert block["probability"] == pytest.approx(_logistic(-0.257), abs=1e-12)
    assert block["published_auc"] == pytest.approx(0.676)
    assert DERIVATION_CAVEAT in block["caveats"]
    # The models that need the rad-score are unavailable, with the reason.
    assert block["unavailable_models"]["clinical_radiomics"] == NO_MODEL_MESSAGE
    assert "sbp_mmhg" not in block["unavailable_models"]["radiomics"]
    [flag] = flags
    assert flag.code == TextureCode.LVRR and flag.severity is Severity.INFO
    assert "0.676" in flag.message and "sidecar 1.2.3.json" in flag.message
    assert NO_MODEL_MESSAGE in flag.message


def test_lge_and_radscore_models_match_hand_computation() -> None:
    block, _ = lvrr_assessment({**CLINICAL, **LGE}, "x", NO_RADSCORE)
    # -4.621 + 0.030*120 - 0.073*30 + 0.078*35 + 0.531 - 0.052*5 - 0.233 = -0.443
    assert block["model"] == "clinical_lge"
    assert block["probability"] == pytest.approx(_logistic(-0.443), abs=1e-12)
    radscore = {"available": True, "configured": True, RADSCORE_KEY: 0.4}
    block, _ = lvrr_assessment({**CLINICAL, **LGE}, "x", radscore)
    # -0.969 + 1.2 - 2.55 + 2.065 + 0.421 - 0.22 - 0.139 + 1.825*0.4 = 0.538
    assert block["model"] == "clinical_lge_radiomics"
    assert block["probability"] == pytest.approx(_logistic(0.538), abs=1e-12)
    # Every model with complete inputs is reported too: radiomics only 0.164 + 1.758*0.4.
    assert block["all_models"]["radiomics"] == pytest.approx(_logistic(0.164 + 0.7032))
    assert set(block["all_models"]) == {
        "clinical", "clinical_lge", "radiomics", "clinical_radiomics", "clinical_lge_radiomics"
    }


def test_a_radscore_supplied_with_covariates_is_not_used() -> None:
    block, _ = lvrr_assessment({**CLINICAL, "radscore": 3.0}, "x", NO_RADSCORE)
    assert block["model"] == "clinical"
    assert "radscore" not in block["covariates"]
    assert any("ignored" in note for note in block["notes"])


def test_without_covariates_lvrr_is_unavailable_and_not_measured() -> None:
    block, flags = lvrr_assessment(None, None, NO_RADSCORE)
    assert block == {"available": False, "covariates_supplied": False,
                     "reason": block["reason"]}
    assert "No clinical covariates" in block["reason"]
    assert flags == []
    assert radiomics_measurements({"radscore": NO_RADSCORE, "lvrr": block}) == ()


def test_invalid_or_incomplete_covariates_give_a_reason() -> None:
    block, flags = lvrr_assessment({**CLINICAL, "lvef_percent": 300}, "REST", NO_RADSCORE)
    assert not block["available"]
    assert flags[0].code == TextureCode.COVARIATES_INVALID
    assert flags[0].severity is Severity.WARNING
    [m] = radiomics_measurements({"radscore": NO_RADSCORE, "lvrr": block})
    assert m.key == LVRR_KEY and m.value is None and "lvef_percent" in (m.reason or "")
    block, flags = lvrr_assessment({"sbp_mmhg": 120}, "REST", NO_RADSCORE)
    assert not block["available"] and flags[0].code == TextureCode.LVRR_UNAVAILABLE
    assert "lvef_percent" in block["unavailable_models"]["clinical"]


# ----------------------------------------------------------------------------- in the result


def test_features_without_model_or_covariates(plain_block: tuple[dict[str, Any], list]) -> None:
    block, flags = plain_block
    assert block["available"] and len(block["features"]) == EXPECTED_FEATURE_COUNT
    assert block["radscore"] == NO_RADSCORE
    assert not block["lvrr"]["available"]
    assert not [f for f in flags if f.severity is not Severity.INFO]
    assert radiomics_measurements(block) == ()


def test_site_model_gives_radscore_top_contributions_and_lvrr(
    phantom: PhantomSlice, plain_block: tuple[dict[str, Any], list], tmp_path: Path
) -> None:
    features = plain_block[0]["features"]
    model = _site_model(features)
    path = tmp_path / "radscore.json"
    sha = save_model(model, path)
    series, slices = _series(phantom)
    options = {"radscore_model": str(path), "covariates": {**CLINICAL, **LGE},
               "covariates_source": "sidecar 2.25.1.json"}
    block, flags = mid_slice_radiomics(series, slices, set(), 1.0, options)
    assert block is not None
    entry = block["radscore"]
    contributions = [c * z for c, z in zip(model.coefficients,
                                           (1.5, -0.5, 0.25, 2.0, -1.0, 0.1, 0.75), strict=True)]
    assert entry["available"]
    assert entry[RADSCORE_KEY] == pytest.approx(-0.2 + sum(contributions), abs=1e-9)
    assert entry["model_sha256"] == sha
    top = entry["top_contributions"]
    assert len(top) == 5
    expected_order = sorted(range(7), key=lambda i: -abs(contributions[i]))[:5]
    assert [t["feature"] for t in top] == [MODEL_FEATURES[i] for i in expected_order]
    assert top[0]["contribution"] == pytest.approx(contributions[expected_order[0]], abs=1e-9)

    lvrr = block["lvrr"]
    assert lvrr["model"] == "clinical_lge_radiomics"
    log_odds = (-0.969 + 0.010 * 120 - 0.085 * 30 + 0.059 * 35 + 0.421 * 1 - 0.044 * 5
                - 0.139 * 1 + 1.825 * entry[RADSCORE_KEY])
    assert lvrr["probability"] == pytest.approx(_logistic(log_odds), abs=1e-12)

    by_code = {f.code: f for f in flags}
    assert sha[:12] in by_code[TextureCode.RADSCORE_MODEL].message
    assert "180 patients" in by_code[TextureCode.RADSCORE_MODEL].message
    assert top[0]["feature"] in by_code[TextureCode.RADSCORE_MODEL].message
    assert "Clinical + LGE + radiomics" in by_code[TextureCode.LVRR].message

    radscore_m, lvrr_m = radiomics_measurements(block)
    assert (radscore_m.name, radscore_m.unit) == (codes.RADSCORE, codes.UCUM_NO_UNITS)
    assert radscore_m.value == pytest.approx(entry[RADSCORE_KEY])
    assert (lvrr_m.name, lvrr_m.unit) == (codes.LVRR_PROBABILITY, codes.UCUM_PERCENT)
    assert lvrr_m.value == pytest.approx(100 * lvrr["probability"])
    assert radscore_m.region is Label.MYOCARDIUM and radscore_m.site is None


def test_a_broken_model_file_is_reported_not_invented(
    plain_block: tuple[dict[str, Any], list], phantom: PhantomSlice, tmp_path: Path
) -> None:
    path = tmp_path / "radscore.json"
    save_model(_site_model(plain_block[0]["features"]), path)
    document = json.loads(path.read_text())
    document["model"]["intercept"] = 5.0  # edited after training: the digest no longer matches
    path.write_text(json.dumps(document))
    series, slices = _series(phantom)
    block, flags = mid_slice_radiomics(series, slices, set(), 1.0,
                                       {"radscore_model": str(path), "covariates": CLINICAL})
    assert block is not None and not block["radscore"]["available"]
    assert TextureCode.MODEL_INVALID in {f.code for f in flags}
    assert block["lvrr"]["model"] == "clinical"  # the rad-score models are left out
    radscore_m, lvrr_m = radiomics_measurements(block)
    assert radscore_m.value is None and "sha256" in (radscore_m.reason or "")
    assert lvrr_m.value == pytest.approx(100 * _logistic(-0.257))


# ----------------------------------------------------------------------------- export


def test_series_feature_export_and_cohort_export(
    plain_block: tuple[dict[str, Any], list], tmp_path: Path
) -> None:
    block = plain_block[0]
    entry = {"analysis": "t1map", "study_instance_uid": "2.25.1",
             "series_instance_uid": "2.25.2", "extra": {"radiomics": block}}
    folder = tmp_path / "2.25.2"
    files = rcli.write_series_features(entry, folder, block)
    assert [f.name for f in files] == ["features.json", "features.csv"]
    document = json.loads(files[0].read_text())
    assert len(document["features"]) == EXPECTED_FEATURE_COUNT
    assert list(document["features"]) == list(block["features"])
    for key, value in block["features"].items():
        assert (document["features"][key] is None) if value is None else (
            document["features"][key] == pytest.approx(value, rel=1e-12)
        )
    with files[1].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["series_instance_uid"] == "2.25.2"
    name = "original_firstorder_Mean"
    assert float(rows[0][name]) == pytest.approx(block["features"][name])
    (folder / "results.json").write_text(json.dumps(entry))
    out = tmp_path / "cohort.csv"
    assert rcli.export_features([str(tmp_path)], out) == 1
    assert rcli.write_series_features({"analysis": "lge"}, folder) == []


# ----------------------------------------------------------------------------- analysis, SR


def test_t1map_result_sr_and_summary_carry_radscore_and_lvrr(tmp_path: Path) -> None:
    """Through ``plugins.t1map.analyse`` and the writers (needs the measurements hook in
    ``plugins/t1map/analysis.py``)."""
    from models.phantoms.dicom_maps import t1map_series_datasets
    from models.phantoms.dicom_study import StudyInfo
    from models.phantoms.t1map import make_t1map_stack
    from node.inputs.loader import load_series
    from node.jobs.pipeline import writer_settings
    from node.outputs.writers import build_outputs
    from node.outputs.writers.page_text import format_number, measurement_lines
    from plugins.t1map import analyse
    from plugins.t1map.segmenter import ClassicalSegmenter
    from tests.srutil import sr_numbers

    rng = np.random.default_rng(5150)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5)
    datasets = t1map_series_datasets(slices, study=StudyInfo.synthetic(5150), rng=rng)
    series = load_series(datasets)
    first, _ = _plain_result(series)
    model_path = tmp_path / "radscore.json"
    save_model(_site_model(first.extra["radiomics"]["features"]), model_path)
    result = analyse(series, {"segmenter": ClassicalSegmenter(), "radscore_model": str(model_path),
                              "covariates": CLINICAL, "covariates_source": "test"})
    by_key = {m.key: m for m in result.measurements}
    block = result.extra["radiomics"]
    assert by_key[RADSCORE_KEY].value == pytest.approx(block["radscore"][RADSCORE_KEY])
    assert block["lvrr"]["model"] == "clinical_radiomics"
    assert by_key[LVRR_KEY].value == pytest.approx(100 * block["lvrr"]["probability"])
    assert {TextureCode.RADSCORE_MODEL, TextureCode.LVRR} <= {f.code for f in result.qc_flags}

    outputs = build_outputs(result, series, datasets,
                            settings=writer_settings("cmr-node test", None))
    srs = [o.dataset for o in outputs if o.dataset.Modality == "SR"]
    numbers = [n for sr in srs for n in sr_numbers(sr)]
    lvrr = [n for n in numbers if n.concept == codes.LVRR_PROBABILITY.meaning]
    radscore = [n for n in numbers if n.concept == codes.RADSCORE.meaning]
    assert len(lvrr) == 1 and lvrr[0].unit == "%"
    assert lvrr[0].value == pytest.approx(by_key[LVRR_KEY].value, rel=1e-3)
    assert len(radscore) == 1 and radscore[0].unit == "1"
    lines = measurement_lines(result.measurements)  # the summary image's "All slices" text
    percent = format_number(by_key[LVRR_KEY].value or 0.0)
    assert f"{codes.LVRR_PROBABILITY.meaning} {percent} %" in lines
    texts = [str(item.TextValue) for sr in srs for item in _items(sr) if "TextValue" in item]
    assert any("Clinical + radiomics" in t and "0.794" in t and "one centre" in t for t in texts)
    assert any(block["radscore"]["model_sha256"][:12] in t for t in texts)


def _plain_result(series: LoadedSeries) -> tuple[Any, None]:
    from plugins.t1map import analyse
    from plugins.t1map.segmenter import ClassicalSegmenter

    return analyse(series, {"segmenter": ClassicalSegmenter()}), None


def _items(ds: Any) -> list[Any]:
    found = []
    for item in ds.get("ContentSequence", []):
        found.append(item)
        found.extend(_items(item))
    return found
