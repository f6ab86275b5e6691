"""Tests of the FRACTIONAL (probability) SEG: values, references, identification, validity.

The synthetic T1-map case of :mod:`tests.node.test_writers` is given per-pixel myocardium
and scar probabilities (soft rings around its label rings); the probability SEG must store
them within one quantisation step, on the same source images as the binary SEG, name the
algorithm and its weights, say it is not for diagnostic use, and pass dciodvfy.  The binary
SEG must not change when the probability SEG is enabled.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from node.outputs.uids import derived_object_identity
from node.outputs.writers import OptionalKind, WriterSettings, build_outputs
from node.outputs.writers.seg import MAX_FRACTIONAL_VALUE, build_probability_segmentation
from node.settings import SettingsError, settings_from_mapping
from plugins.api import Label
from plugins.lib.codes import SEGMENT_SCAR
from tests.netutil import dciodvfy_errors
from tests.node.test_writers import Case, make_case

needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="no dciodvfy")

ENABLED = WriterSettings(probability_seg=True)
STEP = 1.0 / MAX_FRACTIONAL_VALUE


def soft_ring(labels: np.ndarray, seed: int) -> dict[Label, np.ndarray]:
    """Myocardium and scar probabilities: the ring blurred, scar on one quadrant, noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    ring = (labels == Label.MYOCARDIUM).astype(np.float32)
    myocardium = np.clip(ndimage.gaussian_filter(ring, 1.5) + rng.normal(0, 0.02, ring.shape),
                         0.0, 1.0).astype(np.float32)
    rows, columns = np.nonzero(ring)
    quadrant = np.zeros_like(ring)
    quadrant[: int(rows.mean()), int(columns.mean()):] = 1.0
    scar = np.clip(0.8 * ndimage.gaussian_filter(ring * quadrant, 1.0), 0.0, 1.0)
    return {Label.MYOCARDIUM: myocardium, Label.SCAR: scar.astype(np.float32)}


def with_probabilities(case: Case) -> Case:
    """The case with probabilities on every analysed slice."""
    slices = tuple(
        replace(s, probabilities=soft_ring(s.labels, s.frame_index)) for s in case.result.slices
    )
    result = replace(case.result, slices=slices, segments=(*case.result.segments, SEGMENT_SCAR))
    return replace(case, result=result)


@pytest.fixture(scope="module")
def case() -> Case:
    return with_probabilities(make_case())


def outputs_of(case: Case, settings: WriterSettings) -> dict[str, pydicom.Dataset]:
    built = build_outputs(case.result, case.series, case.sources, settings=settings)
    return {o.kind: o.dataset for o in built}


def stored_probabilities(seg: pydicom.Dataset) -> dict[tuple[str, int], np.ndarray]:
    """Probabilities per (source SOP Instance UID, segment number) as a reader decodes them."""
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    found = {}
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        key = (str(source.ReferencedSOPInstanceUID), number)
        found[key] = pixels[index].astype(np.float64) / float(seg.MaximumFractionalValue)
    return found


def test_probability_seg_stores_the_probabilities_on_the_source_images(case: Case) -> None:
    seg = outputs_of(case, ENABLED)[OptionalKind.SEG_PROBABILITY.value]
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.SegmentationType == "FRACTIONAL"
    assert seg.SegmentationFractionalType == "PROBABILITY"
    assert int(seg.MaximumFractionalValue) == MAX_FRACTIONAL_VALUE
    assert int(seg.BitsAllocated) == 8
    names = {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
    assert names == {1: "myocardium probability", 2: "scar probability"}
    number = {label: n for n, label in ((1, Label.MYOCARDIUM), (2, Label.SCAR))}
    stored = stored_probabilities(seg)
    for s in case.result.slices:
        uid = case.series.frames[s.frame_index].sop_instance_uid
        for label, expected in s.probabilities.items():
            got = stored[(uid, number[label])]
            assert np.abs(got - expected).max() <= STEP / 2 + 1e-6, (s.frame_index, label)


def test_probability_seg_references_the_binary_segs_images_and_names_the_weights(
    case: Case,
) -> None:
    outputs = outputs_of(case, ENABLED)
    binary, fractional = outputs["seg"], outputs[OptionalKind.SEG_PROBABILITY.value]

    def referenced(ds: pydicom.Dataset) -> set[str]:
        return {str(i.ReferencedSOPInstanceUID)
                for s in ds.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}

    assert referenced(fractional) == referenced(binary)
    assert fractional.StudyInstanceUID == binary.StudyInstanceUID
    assert fractional.FrameOfReferenceUID == binary.FrameOfReferenceUID
    assert fractional.SeriesInstanceUID != binary.SeriesInstanceUID
    provenance = case.result.provenance
    for segment in fractional.SegmentSequence:
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == provenance.algorithm_name
        assert algorithm.AlgorithmVersion == provenance.algorithm_version
        assert provenance.model_sha256 in algorithm.AlgorithmParameters
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert "not for diagnostic use" in fractional.ContentDescription
    assert "not for diagnostic use" in fractional.ImageComments


def test_binary_seg_is_the_same_with_the_probability_seg_enabled(case: Case) -> None:
    plain = outputs_of(case, WriterSettings())
    enabled = outputs_of(case, ENABLED)
    assert OptionalKind.SEG_PROBABILITY.value not in plain
    assert plain["seg"].PixelData == enabled["seg"].PixelData
    assert plain["seg"].SOPInstanceUID == enabled["seg"].SOPInstanceUID
    assert [o for o in enabled if o != OptionalKind.SEG_PROBABILITY.value] == list(plain)


def test_no_probability_seg_without_probabilities() -> None:
    plain = make_case()
    assert OptionalKind.SEG_PROBABILITY.value not in outputs_of(plain, ENABLED)
    identity = derived_object_identity(plain.series.series_instance_uid, "t1map", "0.1.0",
                                       "seg-probability", series_number=7012,
                                       series_description="probability SEG")
    assert build_probability_segmentation(plain.result, plain.series, plain.sources,
                                          settings=ENABLED, identity=identity) is None


@needs_dciodvfy
def test_probability_seg_passes_dciodvfy(case: Case, tmp_path: Path) -> None:
    seg = outputs_of(case, ENABLED)[OptionalKind.SEG_PROBABILITY.value]
    path = tmp_path / "seg-probability.dcm"
    seg.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []


def test_outputs_probability_seg_setting(tmp_path: Path) -> None:
    assert settings_from_mapping({}, tmp_path).probability_seg is False
    on = settings_from_mapping({"outputs": {"probability_seg": True}}, tmp_path)
    assert on.probability_seg is True
    with pytest.raises(SettingsError, match=r"outputs\.probability_seg"):
        settings_from_mapping({"outputs": {"probability_seg": "yes"}}, tmp_path)
    both = settings_from_mapping({"outputs": {"uncertainty_map": True}}, tmp_path)
    assert both.uncertainty_map is True and both.probability_seg is False


# --------------------------------------------------------------------------------------------
# Summary image: uncertainty shading and caption
# --------------------------------------------------------------------------------------------


def test_summary_tile_shades_exactly_the_uncertain_pixels(case: Case) -> None:
    from PIL import Image

    from node.outputs.writers.tiles import paste_uncertainty
    from plugins.lib.uncertainty import UNCERTAIN_ENTROPY_BITS, uncertainty_image

    s = case.result.slices[0]
    rows, columns = s.labels.shape
    box = (0, rows, 0, columns)
    size = max(rows, columns)
    plain = Image.new("RGB", (size, size), (100, 100, 100))
    shaded = plain.copy()
    paste_uncertainty(shaded, s.probabilities, box, (columns, rows), (255, 140, 0))
    changed = np.any(np.asarray(shaded) != np.asarray(plain), axis=2)
    entropy = uncertainty_image(s.probabilities)
    assert entropy is not None
    top = (size - rows) // 2
    inside = changed[top : top + rows, :columns]
    sure = entropy < UNCERTAIN_ENTROPY_BITS - 0.1
    unsure = entropy > UNCERTAIN_ENTROPY_BITS + 0.1
    assert unsure.sum() > 50 and sure.sum() > 50
    assert inside[unsure].mean() > 0.95
    assert inside[sure].mean() < 0.02
    tinted = np.asarray(shaded)[top : top + rows, :columns][unsure]
    assert (tinted[:, 0] > tinted[:, 2]).all()  # orange: more red than blue


def test_summary_caption_gives_the_uncertain_area(case: Case) -> None:
    from node.outputs.writers.tiles import uncertainty_caption
    from plugins.lib.uncertainty import uncertain_area_ratio

    s = case.result.slices[1]
    ratio = uncertain_area_ratio(s.probabilities, s.labels)
    assert ratio is not None and ratio > 0
    assert uncertainty_caption(s) == f"uncertain pixels: {100 * ratio:.0f} % of the myocardial area"
    assert uncertainty_caption(make_case().result.slices[1]) is None


def test_uncertain_area_ratio_counts_entropy_against_myocardium() -> None:
    from plugins.lib.uncertainty import binary_entropy, uncertain_area_ratio

    assert binary_entropy(np.array([0.0, 0.5, 1.0])).tolist() == pytest.approx([0, 1, 0], abs=1e-5)
    labels = np.zeros((10, 10), np.uint8)
    labels[2:6, 2:6] = Label.MYOCARDIUM  # 16 myocardial pixels
    p = np.zeros((10, 10), np.float32)
    p[0, :8] = 0.5  # 8 uncertain pixels
    p[2:6, 2:6] = 0.95  # sure: entropy 0.29 bit
    assert uncertain_area_ratio({Label.MYOCARDIUM: p}, labels) == pytest.approx(0.5)
    assert uncertain_area_ratio({}, labels) is None
    assert uncertain_area_ratio({Label.MYOCARDIUM: p}, np.zeros_like(labels)) is None


# --------------------------------------------------------------------------------------------
# Uncertainty Parametric Map (for OHIF 3.13, which refuses FRACTIONAL SEGs)
# --------------------------------------------------------------------------------------------

BOTH = WriterSettings(probability_seg=True, uncertainty_map=True)


def test_uncertainty_map_holds_the_entropy_on_every_source_image(case: Case) -> None:
    from plugins.lib.uncertainty import uncertainty_image

    pm = outputs_of(case, BOTH)[OptionalKind.UNCERTAINTY_MAP.value]
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert "FloatPixelData" in pm and "PixelData" not in pm
    assert int(pm.NumberOfFrames) == len(case.series.frames)
    values = pm.pixel_array.reshape(int(pm.NumberOfFrames), pm.Rows, pm.Columns)
    by_position = {
        tuple(round(float(v), 3) for v in item.PlanePositionSequence[0].ImagePositionPatient):
            values[k]
        for k, item in enumerate(pm.PerFrameFunctionalGroupsSequence)
    }
    for s in case.result.slices:
        frame = case.series.frames[s.frame_index]
        got = by_position[tuple(round(v, 3) for v in frame.image_position)]
        expected = uncertainty_image(s.probabilities)
        assert expected is not None
        np.testing.assert_allclose(got, expected, atol=1e-6)
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "bit"
    assert "not for diagnostic use" in pm.ImageComments


def test_uncertainty_map_is_zero_on_frames_without_probabilities(case: Case) -> None:
    first = case.result.slices[0]
    rest = tuple(replace(s, probabilities={}) for s in case.result.slices[1:])
    partial = replace(case, result=replace(case.result, slices=(first, *rest)))
    pm = outputs_of(partial, BOTH)[OptionalKind.UNCERTAINTY_MAP.value]
    values = pm.pixel_array.reshape(int(pm.NumberOfFrames), pm.Rows, pm.Columns)
    assert int(pm.NumberOfFrames) == 3
    assert sum(bool(v.any()) for v in values) == 1


@needs_dciodvfy
def test_uncertainty_map_passes_dciodvfy(case: Case, tmp_path: Path) -> None:
    pm = outputs_of(case, BOTH)[OptionalKind.UNCERTAINTY_MAP.value]
    path = tmp_path / "uncertainty-map.dcm"
    pm.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []


# --------------------------------------------------------------------------------------------
# LGE analysis: probabilities carried to the result, slices flagged by their uncertain area
# --------------------------------------------------------------------------------------------


def test_lge_carries_probabilities_and_flags_the_slice_the_network_was_unsure_of() -> None:
    from scipy import ndimage

    from plugins.api import FloatImage, SegmentationOutput
    from plugins.lge import LgeContrast, QCCode, analyse
    from plugins.lib.uncertainty import MYOCARDIAL_LABELS
    from tests.plugins.test_lge import KnownLabels, _key, make_stack

    stack = make_stack(2, "ischaemic_lad", n_slices=4)
    unsure_key = _key(stack.series.frames[2].pixels)

    class WithProbabilities(KnownLabels):
        def segment(self, image: FloatImage, pixel_spacing: tuple[float, float],
                    contrast: LgeContrast, cine: FloatImage | None = None,
                    ) -> SegmentationOutput:
            output = super().segment(image, pixel_spacing, contrast, cine)
            myocardium = np.isin(output.labels, MYOCARDIAL_LABELS)
            scar = np.isin(output.labels, (int(Label.SCAR), int(Label.MVO)))
            p_myo = myocardium.astype(np.float32)
            if _key(image) == unsure_key:  # a wide band of p = 0.5 around the wall
                band = ndimage.binary_dilation(myocardium, iterations=4)
                p_myo = np.where(band, 0.5, 0.0).astype(np.float32)
            probabilities = {Label.MYOCARDIUM: p_myo, Label.SCAR: scar.astype(np.float32)}
            return replace(output, probabilities=probabilities)

    result = analyse(stack.series, {"segmenter": WithProbabilities(stack.segmenter.table)})
    flagged = [f.frame_index for f in result.qc_flags if f.code == QCCode.PIXEL_UNCERTAINTY_HIGH]
    assert flagged == [2]
    assert all(set(s.probabilities) == {Label.MYOCARDIUM, Label.SCAR} for s in result.slices)
    plain = analyse(stack.series, {"segmenter": stack.segmenter})
    assert not [f for f in plain.qc_flags if f.code == QCCode.PIXEL_UNCERTAINTY_HIGH]

    sources = stack.datasets
    outputs = {o.kind: o.dataset for o in build_outputs(result, stack.series, sources,
                                                         settings=ENABLED)}
    fractional = outputs[OptionalKind.SEG_PROBABILITY.value]
    assert [s.SegmentLabel for s in fractional.SegmentSequence] == [
        "myocardium probability", "scar probability"]
    binary = outputs["seg"]
    names = {s.SegmentLabel: s for s in binary.SegmentSequence}
    for segment in fractional.SegmentSequence:
        source = names["LV myocardium" if segment.SegmentNumber == 1
                       else "LV myocardial scar (LGE)"]
        assert (segment.SegmentedPropertyTypeCodeSequence[0].CodeValue
                == source.SegmentedPropertyTypeCodeSequence[0].CodeValue)
