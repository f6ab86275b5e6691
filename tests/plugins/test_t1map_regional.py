"""T1 per AHA segment and mid-slice radiomics, as part of the T1-map analysis."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.t1map import make_t1map_stack
from node.inputs.loader import load_series
from plugins.api import Acquisition, AnalysisError, AnalysisResult, Label, LoadedSeries
from plugins.lib import codes
from plugins.lib.cardiac.regions import slice_segment_maps
from plugins.t1map import analyse
from plugins.t1map.segmenter import ClassicalSegmenter

#: A segment mean over the mid-wall core of >= 10 pixels with ~30-40 ms spatially correlated
#: pixel noise has SE <= ~12 ms, plus what noise-free partial volume leaves in the core: 30 ms
#: bounds every segment of a correctly divided heart against the noise-free map.
SEGMENT_TOLERANCE_MS = 30.0


@dataclasses.dataclass(frozen=True)
class Analysed:
    """An analysed phantom series with its truth."""

    result: AnalysisResult
    series: LoadedSeries
    tissue_t1_ms: float
    clean: dict[int, np.ndarray]
    """Noise-free map of each frame (by frame index)."""


def _result(seed: int, **options: object) -> Analysed:
    """The analysis, the tissue T1, and the noise-free map of each analysed frame."""
    rng = np.random.default_rng(seed)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, heart=heart)
    datasets = t1map_series_datasets(slices, study=StudyInfo.synthetic(seed), rng=rng)
    series = load_series(datasets)
    result = analyse(series, {"segmenter": ClassicalSegmenter(), **options})
    by_uid = {str(ds.SOPInstanceUID): s for ds, s in zip(datasets, slices, strict=True)}
    clean = {index: np.asarray(by_uid[frame.sop_instance_uid].t1_clean_ms)
             for index, frame in enumerate(series.frames)}
    return Analysed(result, series, slices[0].truth["myocardium_t1_true_ms"], clean)


@pytest.fixture(scope="module")
def analysed() -> Analysed:
    return _result(4242)


def test_every_segment_has_t1_close_to_the_noise_free_map(
    analysed: Analysed,
) -> None:
    # The phantom's tissue T1 varies around the ring (septal-lateral gradient, texture, a
    # smooth bias of up to 2 %): each segment is compared with the noise-free map over the
    # same core pixels of the same segment.
    result, clean = analysed.result, analysed.clean
    block = result.extra["aha"]
    assert block["unit"] == "ms" and len(block["segments"]) == 16
    divided, _ = slice_segment_maps(
        analysed.series, [(s.frame_index, s.level, s.labels) for s in result.slices])
    regions = {s.frame_index: s.analysed_region for s in result.slices}
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for item in divided:
        region = regions[item.frame_index]
        assert region is not None
        for number in range(1, 17):
            pixels = (item.segments == number) & region
            sums[number] = sums.get(number, 0.0) + float(clean[item.frame_index][pixels].sum())
            counts[number] = counts.get(number, 0) + int(pixels.sum())
    means = {int(k): v["mean"] for k, v in block["segments"].items()}
    measured = {k: v for k, v in means.items() if v is not None}
    assert len(measured) >= 14, means
    for number, mean in measured.items():
        noise_free = sums[number] / counts[number]
        assert abs(mean - noise_free) <= SEGMENT_TOLERANCE_MS, (number, mean, noise_free)
    assert block["insertion_points"], "insertion points are reported for audit"
    # A fixed colour scale (normal centre +/- 150 ms at 1.5 T), not the data's own range.
    assert tuple(block["display_range"]) == (850.0, 1150.0)


def test_radiomics_of_the_mid_slice_without_a_model(
    analysed: Analysed,
) -> None:
    result = analysed.result
    block = result.extra["radiomics"]
    assert block["available"] is True
    assert block["slice"]["level"] == "mid"
    assert len(block["features"]) == 869
    assert block["radscore"]["available"] is False
    assert "no rad-score model" in block["radscore"]["reason"].lower()


def test_a_broken_model_file_is_flagged_not_used(tmp_path: Path) -> None:
    bad = tmp_path / "model.json"
    bad.write_text('{"format": "nonsense"}')
    result = _result(4243, radscore_model=str(bad)).result
    radscore = result.extra["radiomics"]["radscore"]
    assert radscore["available"] is False
    assert any(f.code == "radscore_model_invalid" for f in result.qc_flags)


def test_radiomics_can_be_turned_off() -> None:
    result = _result(4244, radiomics=False).result
    assert "radiomics" not in result.extra
    assert all(s.labels.max() <= Label.RV_BLOOD_POOL for s in result.slices)


def test_source_images_stored_with_the_map_are_not_analysed() -> None:
    """Philips may store MOLLI source images and the map in one series."""
    from models.phantoms.dicom_maps import molli_source_series_datasets

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
    # The node loads the series for the analysis it was routed to: the loader takes the maps
    # and says which images it left out (node.inputs.selection).
    series = load_series([*maps, *sources], "t1map")
    assert len(series.frames) == len(maps)
    assert any("left out 8 magnitude" in line for line in series.header["ImageSelection"])
    result = analyse(series, {"segmenter": ClassicalSegmenter(), "radiomics": False})
    map_uids = {str(ds.SOPInstanceUID) for ds in maps}
    analysed = {series.frames[s.frame_index].sop_instance_uid for s in result.slices}
    assert analysed == map_uids


def test_no_z_score_without_a_range_for_the_sequence(
    analysed: Analysed,
) -> None:
    # The loader here fills no Acquisition: vendor and sequence unknown, so no range applies.
    result = analysed.result
    block = result.extra["aha"]
    assert block["normal_range"] is None
    assert all(item["z_score"] is None for item in block["segments"].values())
    assert not [m for m in result.measurements if m.name == codes.T1_Z_SCORE]
    reference = result.extra["reference_range"]
    assert reference["available"] is False
    assert reference["text"].startswith("no reference range for this sequence")
    assert block["septal_midwall"]["segments"] == [8, 9]
    septal = [block["segments"][str(n)] for n in (8, 9)]
    assert min(s["mean"] for s in septal) <= block["septal_midwall"]["mean"] <= max(
        s["mean"] for s in septal)


def _acquired(seed: int, acquisition: Acquisition, **options: object) -> AnalysisResult:
    rng = np.random.default_rng(seed)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, heart=heart)
    datasets = t1map_series_datasets(slices, study=StudyInfo.synthetic(seed), rng=rng)
    series = dataclasses.replace(load_series(datasets), acquisition=acquisition)
    return analyse(series, {"segmenter": ClassicalSegmenter(), "radiomics": False, **options})


def test_segment_z_scores_use_the_published_range_of_the_same_vendor_and_sequence() -> None:
    result = _acquired(4242, Acquisition(vendor="philips", sequence_family="molli"))
    block = result.extra["aha"]
    normal = block["normal_range"]
    assert normal["field_strength_t"] == 1.5 and "Dabir" in normal["source"]
    assert result.extra["reference_range"]["available"] is True
    for item in block["segments"].values():
        if item["mean"] is not None:
            expected = (item["mean"] - normal["mean_ms"]) / normal["sd_ms"]
            assert item["z_score"] == pytest.approx(expected, abs=0.01)
    sited = [m for m in result.measurements if m.site is not None]
    assert {m.site for m in sited} == {
        codes.AHA_SEGMENT_SITES[int(n)] for n in block["segments"]
    }
    assert {m.name for m in sited} >= {codes.T1, codes.T1_Z_SCORE}


def test_site_range_gives_z_scores_only_to_its_own_sequence() -> None:
    site = {"ours": {"vendor": "siemens", "sequence_family": "molli", "field_strength_t": 1.5,
                     "mean_ms": 1000.0, "sd_ms": 40.0, "source": "our 2025 volunteers"}}
    result = _acquired(4242, Acquisition(vendor="siemens", sequence_family="molli"),
                       normal_ranges=site)
    block = result.extra["aha"]
    assert block["normal_range"]["source"] == "our 2025 volunteers"
    item = next(i for i in block["segments"].values() if i["mean"] is not None)
    assert item["z_score"] == pytest.approx((item["mean"] - 1000.0) / 40.0, abs=0.01)
    other = _acquired(4242, Acquisition(vendor="siemens", sequence_family="shmolli"),
                      normal_ranges=site)
    assert other.extra["aha"]["normal_range"] is None
    assert "shmolli" in other.extra["reference_range"]["text"]
    with pytest.raises(AnalysisError, match="normal T1 ranges"):
        _acquired(4242, Acquisition(vendor="siemens", sequence_family="molli"),
                  normal_ranges={"1.5": {"mean_ms": 1000.0, "sd_ms": 40.0, "source": "x"}})
