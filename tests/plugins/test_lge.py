"""LGE analysis: quantification, classification, QC and outputs on phantom stacks.

The segmentation step is given the phantoms' exact labels (a segmenter that looks them up by
image), so these tests check the quantification, not the network (tests/models does that):
with exact labels the network method must reproduce the phantom's %scar, and the classical
methods must land near it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from models.phantoms.dicom_lge import lge_series_datasets
from models.phantoms.lge import LgeSlice, lge_case_truth, make_lge_stack
from node.inputs.loader import load_series
from node.outputs.writers import OutputKind, WriterSettings, build_outputs
from plugins import get_plugin
from plugins.api import (
    AnalysisError,
    AnalysisResult,
    FloatImage,
    Label,
    LoadedSeries,
    SegmentationOutput,
    Severity,
)
from plugins.lge import LgeContrast, Location, Pattern, QCCode, analyse, detect_contrast
from plugins.lge.quantify import fill_mvo, signal_zero
from plugins.lib import codes
from plugins.lib.cardiac.regions import merged_wall, slice_segment_maps


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


class KnownLabels:
    """A segmenter that returns the phantom's exact labels for each of its images."""

    name = "phantom labels"
    version = "test"
    weights_sha256 = None

    def __init__(self, table: dict[str, np.ndarray], uncertainty: float = 0.02) -> None:
        self.table = table
        self.uncertainty = uncertainty
        self.contrasts: list[LgeContrast] = []

    def segment(
        self,
        image: FloatImage,
        pixel_spacing: tuple[float, float],
        contrast: LgeContrast,
        cine: FloatImage | None = None,
    ) -> SegmentationOutput:
        self.contrasts.append(contrast)
        labels = self.table.get(_key(image))
        if labels is None:
            return SegmentationOutput(np.zeros(image.shape, np.uint8), 1.0, "unknown image")
        return SegmentationOutput(labels.copy(), self.uncertainty)


@dataclass
class Stack:
    slices: list[LgeSlice]
    datasets: list[pydicom.Dataset]
    series: LoadedSeries
    segmenter: KnownLabels
    truth: dict[str, float | str]


def make_stack(seed: int, pattern: str, *, vendor: str = "siemens", contrast: str = "psir",
               n_slices: int = 8) -> Stack:
    rng = np.random.default_rng(seed)
    _case, slices = make_lge_stack(rng, n_slices=n_slices, field_strength_t=1.5,
                                   scar_pattern=pattern, contrast=contrast)
    return stack_of(slices, vendor=vendor, contrast=contrast)


def stack_of(slices: list[LgeSlice], *, vendor: str = "siemens", contrast: str = "psir"
             ) -> Stack:
    datasets = lge_series_datasets(slices, vendor=vendor, contrast=contrast)
    series = load_series(datasets)
    by_uid = {str(ds.SOPInstanceUID): s.labels for ds, s in zip(datasets, slices, strict=True)}
    table = {_key(f.pixels): by_uid[f.sop_instance_uid] for f in series.frames}
    return Stack(slices, datasets, series, KnownLabels(table), lge_case_truth(slices))


@pytest.fixture(scope="module")
def lad() -> Stack:
    return make_stack(2, "ischaemic_lad")


@pytest.fixture(scope="module")
def lad_result(lad: Stack) -> AnalysisResult:
    return analyse(lad.series, {"segmenter": lad.segmenter})


def _measurement(result: AnalysisResult, key: str) -> float:
    for m in result.measurements:
        if m.key == key:
            assert m.value is not None, m.reason
            return float(m.value)
    raise AssertionError(f"no measurement {key}")


def test_plugin_is_registered() -> None:
    plugin = get_plugin("lge")
    assert plugin.NAME == "lge"
    assert plugin.analyse is analyse


def test_network_scar_percent_matches_the_phantom_with_exact_labels(
    lad: Stack, lad_result: AnalysisResult
) -> None:
    truth = float(lad.truth["scar_percent"])
    assert truth > 5.0
    assert _measurement(lad_result, "scar_percent_lv_mass") == pytest.approx(truth, abs=0.1)
    # Volumes: slice areas x 10 mm spacing, mass at 1.05 g/ml.
    assert _measurement(lad_result, "lv_myocardium_volume_ml") == pytest.approx(
        float(lad.truth["myocardium_volume_ml"]), rel=0.01)
    assert _measurement(lad_result, "lv_myocardium_mass_g") == pytest.approx(
        1.05 * _measurement(lad_result, "lv_myocardium_volume_ml"), rel=0.01)
    mvo_truth = float(lad.truth["mvo_percent"])
    assert _measurement(lad_result, "mvo_percent_lv_mass") == pytest.approx(mvo_truth, abs=0.1)


def test_classical_methods_bracket_the_truth(lad: Stack, lad_result: AnalysisResult) -> None:
    truth = float(lad.truth["scar_percent"])
    fwhm = _measurement(lad_result, "scar_percent_lv_mass_fwhm")
    nsd = _measurement(lad_result, "scar_percent_lv_mass_nsd")
    assert abs(fwhm - truth) < 0.25 * truth
    # n-SD with 5 SD counts partial-volume borders: never far below the truth here.
    assert nsd > 0.7 * truth
    lower_n = analyse(lad.series, {"segmenter": lad.segmenter, "n_sd": 2})
    assert _measurement(lower_n, "scar_percent_lv_mass_nsd") > nsd


def test_lad_infarct_is_classified(lad_result: AnalysisResult) -> None:
    lge = lad_result.extra["lge"]
    assert lge["present"] is True
    assert lge["location"] in (Location.BOTH, Location.SEPTAL)
    assert lge["pattern"] in (Pattern.TRANSMURAL, Pattern.SUBENDOCARDIAL, Pattern.MULTIPLE)
    assert lge["septal_midwall"] is False


@pytest.mark.parametrize(
    ("seed", "pattern", "location", "wall_pattern", "septal_midwall"),
    [
        (0, "midwall_septal", Location.SEPTAL, Pattern.MID_WALL, True),
        (4, "subepicardial", Location.NON_SEPTAL, Pattern.SUBEPICARDIAL, False),
        (3, "none", Location.ABSENT, Pattern.NONE, False),
    ],
)
def test_location_and_pattern_of_known_scars(
    seed: int, pattern: str, location: Location, wall_pattern: Pattern, septal_midwall: bool
) -> None:
    stack = make_stack(seed, pattern, vendor="philips")
    lge = analyse(stack.series, {"segmenter": stack.segmenter}).extra["lge"]
    assert lge["location"] == location
    assert lge["pattern"] == wall_pattern
    assert lge["septal_midwall"] is septal_midwall


def test_aha_segments_carry_scar_and_transmurality(
    lad: Stack, lad_result: AnalysisResult
) -> None:
    segments = lad_result.extra["aha"]["segments"]
    assert len(segments) == 16
    total_myo = sum(s["myocardium_area_mm2"] for s in segments.values())
    total_scar = sum(s["myocardium_area_mm2"] * s["scar_percent"] / 100 for s in segments.values())
    # Segments partition the wall of the divided slices: their scar adds up to the stack's.
    assert 100 * total_scar / total_myo == pytest.approx(
        float(lad.truth["scar_percent"]), abs=1.0)
    for s in segments.values():
        if s["scar_percent"] > 0:
            assert s["max_transmurality_percent"] > 0
        else:
            assert not s["max_transmurality_percent"]
    sites = {m.site for m in lad_result.measurements if m.site is not None}
    assert sites == {codes.AHA_SEGMENT_SITES[int(n)] for n in segments}


@pytest.mark.parametrize(("seed", "pattern"), [(2, "ischaemic_lad"), (11, "ischaemic_lcx")])
def test_segments_match_the_phantom_at_every_level(seed: int, pattern: str) -> None:
    # The phantom's truth follows the analysis' convention (60-degree sectors from the
    # anterior RV insertion point); the analysis finds the insertion points itself.
    stack = make_stack(seed, pattern)
    by_uid = {str(ds.SOPInstanceUID): s for ds, s in zip(stack.datasets, stack.slices,
                                                          strict=True)}
    result = analyse(stack.series, {"segmenter": stack.segmenter})
    maps, _flags = slice_segment_maps(stack.series, [
        (s.frame_index, s.level, merged_wall(s.labels)) for s in result.slices])
    agreement: dict[str, list[float]] = {}
    for m in maps:
        truth_slice = by_uid[stack.series.frames[m.frame_index].sop_instance_uid]
        if truth_slice.level != m.level:
            continue
        both = (truth_slice.aha_segments > 0) & (m.segments > 0)
        same = float(np.mean(truth_slice.aha_segments[both] == m.segments[both]))
        agreement.setdefault(m.level, []).append(same)
    assert set(agreement) == {"basal", "mid", "apical"}
    for level, values in agreement.items():
        assert min(values) > 0.8, (level, values)
        assert float(np.mean(values)) > 0.85, (level, values)


def test_contrast_and_zero_signal_of_vendor_encodings(lad: Stack) -> None:
    contrast, evidence = detect_contrast(lad.series)
    assert contrast is LgeContrast.PSIR and "ImageType" in evidence
    assert set(lad.segmenter.contrasts) <= {LgeContrast.PSIR}
    # Siemens stores PSIR with zero signal at 4096.
    assert signal_zero(lad.series.frames[0].pixels, contrast) == 4096.0
    magnitude = make_stack(5, "none", vendor="ge", contrast="magnitude", n_slices=3)
    assert detect_contrast(magnitude.series)[0] is LgeContrast.MAGNITUDE
    assert signal_zero(magnitude.series.frames[0].pixels, LgeContrast.MAGNITUDE) == 0.0


def test_unsegmentable_slice_is_flagged_and_not_counted(lad: Stack) -> None:
    table = dict(lad.segmenter.table)
    dropped = _key(lad.series.frames[3].pixels)
    del table[dropped]
    result = analyse(lad.series, {"segmenter": KnownLabels(table)})
    flags = [f for f in result.qc_flags if f.code == QCCode.SLICE_NOT_SEGMENTED]
    assert [f.frame_index for f in flags] == [3]
    assert len(result.slices) == len(lad.series.frames) - 1
    full = analyse(lad.series, {"segmenter": lad.segmenter})
    assert _measurement(result, "lv_myocardium_volume_ml") < _measurement(
        full, "lv_myocardium_volume_ml")


def test_uncertain_segmentation_and_bad_options_are_reported(lad: Stack) -> None:
    unsure = KnownLabels(lad.segmenter.table, uncertainty=0.8)
    result = analyse(lad.series, {"segmenter": unsure})
    assert sum(f.code == QCCode.SEGMENTATION_UNCERTAIN for f in result.qc_flags) == len(
        lad.series.frames)
    with pytest.raises(AnalysisError, match="n_sd"):
        analyse(lad.series, {"segmenter": lad.segmenter, "n_sd": 8})


def test_nothing_segmented_gives_a_failure_result(lad: Stack) -> None:
    result = analyse(lad.series, {"segmenter": KnownLabels({})})
    assert result.slices == ()
    assert result.has_failure
    assert any(f.code == QCCode.NO_SLICE_ANALYSED for f in result.qc_flags)


def test_mvo_core_enclosed_by_scar_is_filled() -> None:
    myo = np.zeros((20, 20), bool)
    myo[2:18, 2:18] = True
    scar = np.zeros_like(myo)
    scar[5:15, 5:15] = True
    scar[8:12, 8:12] = False
    mvo = fill_mvo(scar, myo)
    assert mvo.sum() == 16 and mvo[9, 9]
    open_core = scar.copy()
    open_core[8:12, 8:15] = False  # opened to the right: not enclosed
    assert not fill_mvo(open_core, myo).any()


def test_outputs_are_valid_dicom_with_scar_segments(lad: Stack, lad_result: AnalysisResult,
                                                    tmp_path: Path) -> None:
    outputs = build_outputs(lad_result, lad.series, lad.datasets, settings=WriterSettings())
    kinds = {o.kind: o.dataset for o in outputs}
    seg = kinds[OutputKind.SEG]
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert "LV myocardium" in labels and "LV myocardial scar (LGE)" in labels
    scar_item = next(s for s in seg.SegmentSequence if s.SegmentLabel.endswith("(LGE)"))
    assert scar_item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "12402003"
    # The myocardium segment covers the whole wall, scar included (segments overlap).
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns).astype(bool)
    numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
               for f in seg.PerFrameFunctionalGroupsSequence]
    by_number = {s.SegmentLabel: int(s.SegmentNumber) for s in seg.SegmentSequence}
    myo = sum(int(f.sum()) for f, n in zip(frames, numbers, strict=True)
              if n == by_number["LV myocardium"])
    scar = sum(int(f.sum()) for f, n in zip(frames, numbers, strict=True)
               if n == scar_item.SegmentNumber)
    wall_pixels = sum(int(np.isin(s.labels, (Label.MYOCARDIUM, Label.SCAR, Label.MVO)).sum())
                      for s in lad_result.slices)
    assert myo == wall_pixels and 0 < scar < myo
    sites = {
        item.ConceptCodeSequence[0].CodeValue
        for item in _content_items(_reread(kinds[OutputKind.SR_SUMMARY], tmp_path))
        if "ConceptCodeSequence" in item
        and item.ConceptNameCodeSequence[0].get("CodeValue") == "363698007"  # Finding Site
    }
    assert codes.AHA_SEGMENT_SITES[1].value in sites
    if shutil.which("dciodvfy") is None:
        pytest.skip("dicom3tools not installed")
    for output in outputs:
        path = tmp_path / f"{output.kind}.dcm"
        output.dataset.save_as(path, enforce_file_format=True)
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in run.stderr.splitlines() if line.startswith("Error")]
        assert not errors, (output.kind, errors)


def _reread(ds: pydicom.Dataset, tmp_path: Path) -> pydicom.Dataset:
    path = tmp_path / "reread.dcm"
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def _content_items(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    found = []
    for item in getattr(ds, "ContentSequence", []):
        found.append(item)
        found.extend(_content_items(item))
    return found


def test_series_with_both_reconstructions_and_a_long_axis_view(lad: Stack) -> None:
    """Philips may store PSIR and magnitude in one series; scanners add long-axis views."""
    rng = np.random.default_rng(2)
    _case, slices = make_lge_stack(rng, n_slices=8, field_strength_t=1.5,
                                   scar_pattern="ischaemic_lad", contrast="psir")
    magnitude = lge_series_datasets(slices, vendor="siemens", contrast="magnitude")
    psir = [copy.deepcopy(ds) for ds in lad.datasets]
    for ds in magnitude:
        ds.SeriesInstanceUID = psir[0].SeriesInstanceUID
        ds.InstanceNumber = int(ds.InstanceNumber) + 100
    long_axis = copy.deepcopy(psir[0])
    long_axis.SOPInstanceUID = generate_uid()
    long_axis.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    combined = load_series([*psir, *magnitude, long_axis])
    assert len(combined.frames) == 2 * len(psir) + 1
    mixed = analyse(combined, {"segmenter": lad.segmenter, "contrast": "psir"})
    codes_raised = {f.code for f in mixed.qc_flags}
    assert {QCCode.BOTH_RECONSTRUCTIONS, QCCode.NOT_PARALLEL_STACK} <= codes_raised
    analysed_uids = {combined.frames[s.frame_index].sop_instance_uid for s in mixed.slices}
    assert analysed_uids == {str(ds.SOPInstanceUID) for ds in psir}
    alone = analyse(lad.series, {"segmenter": lad.segmenter})
    assert _measurement(mixed, "lv_myocardium_volume_ml") == pytest.approx(
        _measurement(alone, "lv_myocardium_volume_ml"), rel=1e-6)


def test_scar_is_not_reported_when_the_myocardium_is_brighter_than_blood(
    lad_result: AnalysisResult,
) -> None:
    # A magnitude LGE whose inversion time was far too short: remote myocardium brighter
    # than the blood pool, so scar has no contrast against it.
    rng = np.random.default_rng(4)
    _case, slices = make_lge_stack(rng, n_slices=6, field_strength_t=1.5,
                                   scar_pattern="ischaemic_lad", contrast="magnitude")
    inverted = []
    for item in slices:
        image = item.image.copy()
        blood = float(np.median(image[item.labels == Label.LV_BLOOD_POOL]))
        remote = item.labels == Label.MYOCARDIUM
        image[remote] = 1.5 * blood + rng.normal(0.0, 0.05 * blood, int(remote.sum()))
        image = image.astype(item.image.dtype)
        inverted.append(dataclasses.replace(item, image=image, magnitude=image))
    stack = stack_of(inverted, contrast="magnitude")
    result = analyse(stack.series, {"segmenter": stack.segmenter})

    failures = [f for f in result.qc_flags if f.code == QCCode.INVERTED_NULLING]
    assert [f.severity for f in failures] == [Severity.FAILURE]
    by_key = {m.key: m for m in result.measurements}
    for key in ("scar_percent_lv_mass", "scar_mass_g", "scar_percent_lv_mass_nsd",
                "scar_percent_lv_mass_fwhm", "mvo_percent_lv_mass"):
        assert by_key[key].value is None
        assert by_key[key].reason is not None and "brighter than the blood" in by_key[key].reason
    assert by_key["lv_myocardium_mass_g"].value is not None
    assert all(m.value is None for m in by_key.values() if m.key.startswith("segment_"))
    assert all(m.value is None for s in result.slices for m in s.measurements
               if m.region == Label.SCAR)
    assert result.extra["lge"]["present"] is None
    # The outputs still carry the contours and say why there is no scar value.
    outputs = build_outputs(result, stack.series, stack.datasets, settings=WriterSettings())
    kinds = {o.kind: o.dataset for o in outputs}
    assert OutputKind.SEG in kinds and OutputKind.SR_SUMMARY in kinds
    # A well-nulled stack is quantified.
    assert not [f for f in lad_result.qc_flags if f.code == QCCode.INVERTED_NULLING]
    assert {m.key: m for m in lad_result.measurements}["scar_percent_lv_mass"].value
