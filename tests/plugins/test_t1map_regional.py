"""T1 per AHA segment and mid-slice radiomics, as part of the T1-map analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.phantoms.anatomy import make_heart_case
from models.phantoms.dicom_series import StudyInfo, t1map_series_datasets
from models.phantoms.t1map import make_t1map_stack
from node.loader import load_series
from plugins import codes
from plugins.api import AnalysisError, AnalysisResult, Label
from plugins.t1map import analyse
from plugins.t1map.segmenter import ClassicalSegmenter

#: Remote tissue T1 is uniform in a lesion-free phantom; a segment mean over the mid-wall
#: core of >= 10 pixels with ~30-40 ms pixel noise has SE <= ~12 ms, plus border partial
#: volume: 30 ms bounds every segment of a correctly divided heart.
SEGMENT_TOLERANCE_MS = 30.0


def _result(seed: int, **options: object) -> tuple[AnalysisResult, float]:
    rng = np.random.default_rng(seed)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, heart=heart)
    datasets = t1map_series_datasets(slices, study=StudyInfo.synthetic(seed), rng=rng)
    series = load_series(datasets)
    result = analyse(series, {"segmenter": ClassicalSegmenter(), **options})
    return result, slices[0].truth["myocardium_t1_true_ms"]


@pytest.fixture(scope="module")
def analysed() -> tuple[AnalysisResult, float]:
    return _result(4242)


def test_every_segment_has_t1_close_to_the_tissue_value(
    analysed: tuple[AnalysisResult, float],
) -> None:
    result, truth = analysed
    block = result.extra["aha"]
    assert block["unit"] == "ms" and len(block["segments"]) == 16
    means = {int(k): v["mean"] for k, v in block["segments"].items()}
    measured = {k: v for k, v in means.items() if v is not None}
    assert len(measured) >= 14, means
    for number, mean in measured.items():
        assert abs(mean - truth) <= SEGMENT_TOLERANCE_MS, (number, mean, truth)
    assert block["insertion_points"], "insertion points are reported for audit"
    # A fixed colour scale (normal centre +/- 150 ms at 1.5 T), not the data's own range.
    assert tuple(block["display_range"]) == (850.0, 1150.0)


def test_radiomics_of_the_mid_slice_without_a_model(
    analysed: tuple[AnalysisResult, float],
) -> None:
    result, _ = analysed
    block = result.extra["radiomics"]
    assert block["available"] is True
    assert block["slice"]["level"] == "mid"
    assert len(block["features"]) == 869
    assert block["radscore"]["available"] is False
    assert "no rad-score model" in block["radscore"]["reason"].lower()


def test_a_broken_model_file_is_flagged_not_used(tmp_path: Path) -> None:
    bad = tmp_path / "model.json"
    bad.write_text('{"format": "nonsense"}')
    result, _ = _result(4243, radscore_model=str(bad))
    radscore = result.extra["radiomics"]["radscore"]
    assert radscore["available"] is False
    assert any(f.code == "radscore_model_invalid" for f in result.qc_flags)


def test_radiomics_can_be_turned_off() -> None:
    result, _ = _result(4244, radiomics=False)
    assert "radiomics" not in result.extra
    assert all(s.labels.max() <= Label.RV_BLOOD_POOL for s in result.slices)


def test_source_images_stored_with_the_map_are_not_analysed() -> None:
    """Philips may store MOLLI source images and the map in one series."""
    from models.phantoms.dicom_series import molli_source_series_datasets

    rng = np.random.default_rng(4245)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, heart=heart)
    study = StudyInfo.synthetic(4245)
    maps = t1map_series_datasets(slices, vendor="philips", study=study, rng=rng)
    sources = molli_source_series_datasets(
        slices[1], vendor="philips", study=study, rng=rng, slice_index=2
    )
    for ds in sources:
        ds.SeriesInstanceUID = maps[0].SeriesInstanceUID
    series = load_series([*maps, *sources])
    assert len(series.frames) == len(maps) + len(sources)
    result = analyse(series, {"segmenter": ClassicalSegmenter(), "radiomics": False})
    map_uids = {str(ds.SOPInstanceUID) for ds in maps}
    analysed = {series.frames[s.frame_index].sop_instance_uid for s in result.slices}
    assert analysed and analysed <= map_uids
    assert any(f.code == "source_frames_excluded" for f in result.qc_flags)


def test_segment_z_scores_use_the_published_range_by_default(
    analysed: tuple[AnalysisResult, float],
) -> None:
    result, _tissue = analysed
    block = result.extra["aha"]
    normal = block["normal_range"]
    assert normal["field_strength_t"] == 1.5 and "Dabir" in normal["source"]
    for item in block["segments"].values():
        if item["mean"] is not None:
            expected = (item["mean"] - normal["mean_ms"]) / normal["sd_ms"]
            assert item["z_score"] == pytest.approx(expected, abs=0.01)
    sited = [m for m in result.measurements if m.site is not None]
    assert {m.site for m in sited} == {
        codes.AHA_SEGMENT_SITES[int(n)] for n in block["segments"]
    }
    assert {m.name for m in sited} >= {codes.T1, codes.T1_Z_SCORE}


def test_site_normal_range_replaces_the_published_one() -> None:
    site = {"1.5": {"mean_ms": 1000.0, "sd_ms": 40.0, "source": "our 2025 volunteers"}}
    result, _ = _result(4242, radiomics=False, normal_ranges=site)
    block = result.extra["aha"]
    assert block["normal_range"]["source"] == "our 2025 volunteers"
    item = next(i for i in block["segments"].values() if i["mean"] is not None)
    assert item["z_score"] == pytest.approx((item["mean"] - 1000.0) / 40.0, abs=0.01)
    with pytest.raises(AnalysisError, match="normal T1 ranges"):
        _result(4242, radiomics=False, normal_ranges={"1.5": {"mean_ms": 1000.0, "sd_ms": 0}})
