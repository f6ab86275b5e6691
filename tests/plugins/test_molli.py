"""Tests of the MOLLI source-image plugin: T1 fit, inversion times, analysis of the fitted maps.

Tolerances and why:

* Synthetic pixels (known A, B, T1*, Rician noise of SD sigma): the per-pixel SD of the fitted
  T1 must lie within 0.8-1.3x the Cramer-Rao lower bound for that TI set and noise (the fit
  is efficient, but Rician noise near the null and the finite sample add a little), and the
  mean error within 1 % of T1 plus 4 standard errors (Rician bias near the null is a known,
  small, negative bias of magnitude fits).
* Noise-free signals: the Look-Locker inversion is exact, so T1 within 0.01 %.
* Phantom slices: pure (partial-volume-free) myocardium and blood pixels, mean error within
  1.5 % of the true T1 plus 4 standard errors of the mean (pixel SD 20-50 ms at SNR 40-90);
  the whole analysis (segmentation included) within 25 ms of the true myocardial T1, the
  bound of the t1map tests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset
from scipy import ndimage

from node.inputs.loader import load_series, load_series_files
from plugins.api import (
    UNWRITTEN_SOP_INSTANCE_UID,
    AnalysisError,
    LoadedSeries,
    Severity,
    SourceFrame,
)
from plugins.molli import NAME, VERSION, analyse, extract_source, parse_ti_text
from plugins.molli.analysis import (
    MAX_SCANNER_DIFFERENCE_MS,
    PARAMETRIC_MAP_SOP_CLASS_UID,
    FittedMaps,
    QCCode,
)
from plugins.molli.fit import fit_molli, look_locker_signal
from plugins.molli.source import MIN_DISTINCT_TIS, TiSource
from plugins.t1map import ClassicalSegmenter
from tests.networks import node_options

molli_source = pytest.importorskip("models.phantoms.molli_source")
t1map = pytest.importorskip("models.phantoms.t1map")
dicom_build = pytest.importorskip("models.phantoms.dicom_build")
dicom_maps = pytest.importorskip("models.phantoms.dicom_maps")
dicom_study = pytest.importorskip("models.phantoms.dicom_study")
anatomy = pytest.importorskip("models.phantoms.anatomy")
TIS_5_3_3 = np.array([110.0, 1110.0, 2110.0, 3110.0, 4110.0, 190.0, 1190.0, 2190.0])
"""MOLLI 5(3)3 at 60 bpm, acquisition order."""
OPTIONS = {"segmenter": ClassicalSegmenter()}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a signed signal with complex Gaussian noise."""
    return np.hypot(signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma, signal.shape))


def crlb_t1_sd(tis: np.ndarray, a: float, b: float, t1_star: float, sigma: float) -> float:
    """Cramer-Rao bound of the SD of T1 = T1* (B/A - 1) for Gaussian noise of SD sigma."""
    e = np.exp(-tis / t1_star)
    jac = np.stack([np.ones_like(tis), -e, -b * e * tis / t1_star**2], axis=1)
    cov = np.linalg.inv(jac.T @ jac) * sigma**2
    grad = np.array([-t1_star * b / a**2, t1_star / a, b / a - 1.0])
    return float(np.sqrt(grad @ cov @ grad))


def molli_datasets(
    seed: int,
    *,
    vendor: str = "siemens",
    levels: Sequence[str] = ("mid",),
    heart_rate_bpm: float | None = None,
    field_strength_t: float = 1.5,
) -> tuple[list[Dataset], list[Any]]:
    """MOLLI source images of one or more slice positions as one series (phantom writer).

    The phantom slices are returned in the order of their position along the slice normal,
    the order of the fitted slices.
    """
    rng = np.random.default_rng(seed)
    _, slices = t1map.make_t1map_stack(
        rng, field_strength_t=field_strength_t, levels=tuple(levels), shape=(192, 192)
    )
    study = dicom_study.StudyInfo.synthetic(seed)
    if heart_rate_bpm is not None:
        study = dataclasses.replace(study, heart_rate_bpm=heart_rate_bpm)
    datasets: list[Dataset] = []
    located: list[tuple[float, Any]] = []
    series_uid = None
    for index, phantom in enumerate(slices):
        part = dicom_maps.molli_source_series_datasets(
            phantom,
            vendor=vendor,
            study=study,
            series_number=9 + index,
            slice_index=index,
            rng=np.random.default_rng([seed, index]),
        )
        series_uid = series_uid or str(part[0].SeriesInstanceUID)
        orientation = np.asarray([float(v) for v in part[0].ImageOrientationPatient])
        normal = np.cross(orientation[:3], orientation[3:])
        position = np.asarray([float(v) for v in part[0].ImagePositionPatient])
        located.append((float(normal @ position), phantom))
        for ds in part:
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = 9
            ds.InstanceNumber = len(datasets) + 1
            datasets.append(ds)
    return datasets, [phantom for _, phantom in sorted(located, key=lambda item: item[0])]


def pure_pixels(phantom: Any, structure: Any) -> np.ndarray:
    fractions = phantom.rendered.fractions
    pure = fractions[int(structure)] >= 0.999
    return pure & ~(fractions[int(anatomy.Structure.LV_LESION)] > 0)


def with_attributes(
    series: LoadedSeries, change: Mapping[int, Mapping[str, Any]], drop: Sequence[str] = ()
) -> LoadedSeries:
    """A copy of ``series`` with per-frame attributes changed or dropped."""
    frames = []
    for index, frame in enumerate(series.frames):
        attributes = {k: v for k, v in frame.attributes.items() if k not in drop}
        attributes.update(change.get(index, {}))
        frames.append(dataclasses.replace(frame, attributes=attributes))
    return dataclasses.replace(series, frames=tuple(frames))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedSeries, list[Any]]:
    """A two-slice Siemens MOLLI source series written to files and loaded by node.inputs.loader."""
    datasets, slices = molli_datasets(11, levels=("basal", "mid"))
    paths = dicom_build.write_series(datasets, tmp_path_factory.mktemp("molli"))
    series, _ = load_series_files(paths)
    return series, slices


@pytest.fixture(scope="module")
def result(written: tuple[LoadedSeries, list[Any]]):
    return analyse(written[0], OPTIONS)


# --------------------------------------------------------------------------------------------
# Fit
# --------------------------------------------------------------------------------------------


def test_noise_free_fit_is_exact_for_magnitude_and_signed_data() -> None:
    t1 = np.linspace(250.0, 3000.0, 40).reshape(5, 8)
    a = np.full(t1.shape, 400.0)
    ratio = np.linspace(1.1, 1.6, t1.size).reshape(t1.shape)
    signed = look_locker_signal(TIS_5_3_3, a, a * (1.0 + ratio), t1 / ratio)
    everything = np.ones(t1.shape, bool)
    for images, magnitude in ((np.abs(signed), True), (signed, False)):
        fit = fit_molli(images, TIS_5_3_3, magnitude=magnitude, mask=everything)
        assert fit.valid.all()
        np.testing.assert_allclose(fit.t1_ms, t1, rtol=1e-4)
        np.testing.assert_allclose(fit.a, a, rtol=1e-4)
        assert np.all(fit.r_squared > 0.9999)


def test_polarity_restoration_finds_the_null() -> None:
    tis = np.sort(TIS_5_3_3)
    t1_star = np.array([150.0, 400.0, 900.0, 1500.0])
    signed = look_locker_signal(tis, 300.0, 700.0, t1_star)
    expected_flips = (signed < 0).sum(axis=0)
    assert len(set(expected_flips.tolist())) > 2  # the null moves across the samples
    fit = fit_molli(np.abs(signed), tis, mask=np.ones(t1_star.shape, bool))
    np.testing.assert_array_equal(fit.flip_index, expected_flips)
    np.testing.assert_allclose(fit.t1_star_ms, t1_star, rtol=1e-4)
    # Without restoration the magnitude curve cannot be fitted by the model.
    naive = fit_molli(np.abs(signed), tis, magnitude=False, mask=np.ones(t1_star.shape, bool))
    assert np.all(np.abs(naive.t1_ms - t1_star * (700.0 / 300.0 - 1.0)) > 20.0)


@pytest.mark.parametrize(("t1_ms", "sigma"), [(1000.0, 12.0), (1600.0, 20.0), (450.0, 8.0)])
def test_noisy_fit_is_unbiased_and_efficient(t1_ms: float, sigma: float) -> None:
    rng = np.random.default_rng(int(t1_ms))
    a, ratio = 500.0, 1.35
    b, t1_star = a * (1 + ratio), t1_ms / ratio
    signal = look_locker_signal(TIS_5_3_3, np.full((64, 64), a), b, t1_star)
    fit = fit_molli(rician(signal, sigma, rng), TIS_5_3_3)
    assert fit.valid.mean() > 0.999
    errors = fit.t1_ms[fit.valid] - t1_ms
    bound = crlb_t1_sd(TIS_5_3_3, a, b, t1_star, sigma)
    assert 0.8 * bound <= errors.std() <= 1.3 * bound
    assert abs(errors.mean()) <= 0.01 * t1_ms + 4 * errors.std() / np.sqrt(errors.size)


def test_background_is_not_fitted() -> None:
    rng = np.random.default_rng(3)
    signal = look_locker_signal(TIS_5_3_3, np.full((32, 32), 500.0), 1150.0, 800.0)
    signal[:, :, :10] = 0.0  # air: noise only
    fit = fit_molli(rician(signal, 10.0, rng), TIS_5_3_3)
    assert not fit.fitted[:, :10].any()
    assert np.all(fit.t1_ms[:, :10] == 0) and np.all(fit.r_squared[:, :10] == 0)
    assert fit.valid[:, 10:].all()


def test_fit_rejects_bad_input() -> None:
    images = np.ones((8, 4, 4))
    with pytest.raises(ValueError, match="first axis"):
        fit_molli(images, TIS_5_3_3[:7])
    with pytest.raises(ValueError, match="at least"):
        fit_molli(images[:3], TIS_5_3_3[:3])
    with pytest.raises(ValueError, match="finite and non-negative"):
        fit_molli(images, np.r_[TIS_5_3_3[:7], np.nan])


def test_phantom_source_fit_matches_truth() -> None:
    rng = np.random.default_rng(21)
    structure = anatomy.Structure
    for field in (1.5, 3.0):
        phantom = t1map.make_t1map_slice(rng, field_strength_t=field, level="mid")
        images, tis = molli_source.make_molli_source(rng, phantom, snr=50.0)
        fit = fit_molli(images, tis)
        for tissue, truth in (
            (structure.LV_MYOCARDIUM, phantom.truth["myocardium_t1_true_ms"]),
            (structure.LV_BLOOD, phantom.truth["blood_t1_true_ms"]),
        ):
            pure = pure_pixels(phantom, tissue)
            errors = fit.t1_ms[pure] - truth
            assert pure.sum() > 50 and fit.valid[pure].all()
            assert abs(errors.mean()) <= 0.015 * truth + 4 * errors.std() / np.sqrt(pure.sum())


# --------------------------------------------------------------------------------------------
# Source images: inversion times, slices, heart rate
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TI 123", 123.0),
        ("TI: 123.5 ms", 123.5),
        ("TI=80ms", 80.0),
        ("MOLLI_TI_1150", 1150.0),
        ("T1 MAP", None),
        ("tissue 5", None),
        ("TI 100 TI 200", None),
        ("Synthetic phantom", None),
        (None, None),
    ],
)
def test_parse_ti_text(text: str | None, expected: float | None) -> None:
    assert parse_ti_text(text) == expected


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_vendor_series_give_the_written_inversion_times(vendor: str) -> None:
    datasets, _ = molli_datasets(5, vendor=vendor)
    source = extract_source(load_series(datasets))
    assert source.ti_source == TiSource.INVERSION_TIME
    assert len(source.slices) == 1 and not source.problems
    written = [float(ds.InversionTime) for ds in datasets]
    assert list(source.slices[0].inversion_times_ms) == written  # acquisition order kept
    assert source.heart_rate_bpm == pytest.approx(
        dicom_study.StudyInfo.synthetic(5).heart_rate_bpm, abs=0.5
    )
    # The phantom writes HeartRate; the loader passes it on, and it wins over the TI spacing.
    assert source.heart_rate_source == "HeartRate"
    header = {k: v for k, v in source_series_header(datasets).items()
              if k not in ("HeartRate", "NominalInterval")}
    spaced = extract_source(dataclasses.replace(load_series(datasets), header=header))
    assert spaced.heart_rate_source == "inversion time spacing"
    assert spaced.heart_rate_bpm == pytest.approx(source.heart_rate_bpm, abs=2.0)


def source_series_header(datasets: list[Any]) -> dict[str, Any]:
    """The series header the loader builds for these datasets."""
    return dict(load_series(datasets).header)


def test_multi_frame_source_is_ordered_by_frame_number(
    written: tuple[LoadedSeries, list[Any]],
) -> None:
    """Enhanced MR (Philips multi-frame): one instance, TIs per frame, frames in any order."""
    series = written[0]
    expected = [s.inversion_times_ms for s in extract_source(series).slices]
    frames = [
        dataclasses.replace(
            frame,
            sop_instance_uid="1.2.3",
            frame_number=number,
            attributes={**frame.attributes, "InstanceNumber": 1},
        )
        for number, frame in enumerate(series.frames, 1)
    ]
    shuffled = dataclasses.replace(series, frames=tuple(reversed(frames)))
    assert [s.inversion_times_ms for s in extract_source(shuffled).slices] == expected


def test_inversion_times_from_image_comments(written: tuple[LoadedSeries, list[Any]]) -> None:
    series = written[0]
    nominal = {
        i: {"InversionTime": 110.0, "ImageComments": f"TI {f.attributes['InversionTime']:g}"}
        for i, f in enumerate(series.frames)
    }
    source = extract_source(with_attributes(series, nominal))
    assert source.ti_source == TiSource.IMAGE_COMMENTS
    assert [s.inversion_times_ms for s in source.slices] == [
        s.inversion_times_ms for s in extract_source(series).slices
    ]


def test_heart_rate_from_header_wins(written: tuple[LoadedSeries, list[Any]]) -> None:
    series = written[0]
    source = extract_source(dataclasses.replace(series, header={**series.header, "HeartRate": 72}))
    assert (source.heart_rate_bpm, source.heart_rate_source) == (72.0, "HeartRate")
    without_rate = {k: v for k, v in series.header.items() if k != "HeartRate"}
    source = extract_source(
        dataclasses.replace(series, header={**without_rate, "NominalInterval": 750})
    )
    assert (source.heart_rate_bpm, source.heart_rate_source) == (80.0, "NominalInterval")


def test_slices_are_grouped_by_position(written: tuple[LoadedSeries, list[Any]]) -> None:
    series = written[0]
    source = extract_source(series)
    assert len(source.slices) == 2
    assert source.slices[0].location_mm < source.slices[1].location_mm
    assert sorted(i for s in source.slices for i in s.frame_indices) == list(
        range(len(series.frames))
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"InversionTime": None}, "no inversion time"),
        ({"InversionTime": 7000.0}, "outside the plausible range"),
        ({"InversionTime": -5.0}, "outside the plausible range"),
        ("duplicate", "occur more than once"),
        ("too_few", f"at least {MIN_DISTINCT_TIS}"),
    ],
)
def test_implausible_inversion_times_are_refused(
    written: tuple[LoadedSeries, list[Any]], change: Any, message: str
) -> None:
    # The phantom writer also stores the TI as TriggerTime, the last fallback: drop it.
    series = with_attributes(written[0], {}, drop=("TriggerTime",))
    first = extract_source(series).slices[0].frame_indices
    if change == "duplicate":
        same = series.frames[first[1]].attributes["InversionTime"]
        edits = {first[2]: {"InversionTime": same}}
    elif change == "too_few":  # only four images at the first position
        kept = [f for i, f in enumerate(series.frames) if i not in first[4:]]
        series, edits = dataclasses.replace(series, frames=tuple(kept)), {}
    else:
        edits = {first[3]: dict(change)}
    source = extract_source(with_attributes(series, edits))
    assert len(source.slices) == 1  # the other slice is still fitted
    assert len(source.problems) == 1 and message in source.problems[0].reason
    if change in ("duplicate", "too_few"):
        everywhere = {i: {"InversionTime": 500.0} for i in range(len(series.frames))}
    else:
        everywhere = {i: edits[first[3]] for i in range(len(series.frames))}
    with pytest.raises(AnalysisError):
        extract_source(with_attributes(series, everywhere))


def test_trigger_time_is_the_last_fallback(written: tuple[LoadedSeries, list[Any]]) -> None:
    series = written[0]
    source = extract_source(with_attributes(series, {}, drop=("InversionTime",)))
    assert source.ti_source == TiSource.TRIGGER_TIME
    assert [s.inversion_times_ms for s in source.slices] == [
        s.inversion_times_ms for s in extract_source(series).slices
    ]


def test_no_inversion_time_anywhere_is_a_clear_error(
    written: tuple[LoadedSeries, list[Any]],
) -> None:
    series = with_attributes(written[0], {}, drop=("InversionTime", "TriggerTime"))
    with pytest.raises(AnalysisError, match="No inversion times"):
        extract_source(series)


def test_map_only_series_is_refused(written: tuple[LoadedSeries, list[Any]]) -> None:
    maps = {
        i: {"ImageType": ["DERIVED", "PRIMARY", "T1 MAP"]} for i in range(len(written[0].frames))
    }
    with pytest.raises(AnalysisError, match="no source images"):
        extract_source(with_attributes(written[0], maps))


# --------------------------------------------------------------------------------------------
# analyse()
# --------------------------------------------------------------------------------------------


def test_analyse_phantom_source_series(written, result) -> None:
    series, slices = written
    assert result.analysis == NAME and result.series_instance_uid == series.series_instance_uid
    assert result.provenance.algorithm_version == VERSION
    assert "Look-Locker" in result.provenance.method
    maps = result.extra["molli"]["maps"]
    assert isinstance(maps, FittedMaps) and len(maps.t1_ms) == 2
    # The node gives the Parametric Maps their identity; the plugin proposes none.
    assert "uids" not in result.extra["molli"]
    frames = maps.series.frames
    for frame in frames:
        assert frame.sop_instance_uid == UNWRITTEN_SOP_INSTANCE_UID
        assert frame.sop_class_uid == PARAMETRIC_MAP_SOP_CLASS_UID
        assert frame.units == "ms"
    # Loader order (ascending location); frame numbers in the Parametric Map's plane order.
    assert frames[0].slice_location < frames[1].slice_location
    assert [f.frame_number for f in frames] == [2, 1]
    assert not any(f.severity is Severity.FAILURE for f in result.qc_flags)
    assert not any(f.code == QCCode.FIT_RESIDUAL_HIGH for f in result.qc_flags)
    truth = slices[0].truth["myocardium_t1_true_ms"]
    for slice_result in result.slices:
        mean = next(m.value for m in slice_result.measurements if m.key == "myocardium_t1_mean_ms")
        assert abs(mean - truth) <= 25.0
    for fitted, phantom in zip(maps.t1_ms, slices, strict=True):
        pure = pure_pixels(phantom, anatomy.Structure.LV_MYOCARDIUM)
        errors = fitted[pure] - truth
        assert abs(errors.mean()) <= 0.015 * truth + 4 * errors.std() / np.sqrt(pure.sum())
    rows = result.extra["molli"]["slices"]
    assert all(r["myocardium"]["residual_ratio"] < 1.5 for r in rows)


def test_results_json_stays_small(result) -> None:
    from node.jobs.pipeline import _jsonable

    text = json.dumps(_jsonable(dict(result.extra)))
    assert "fitted MOLLI maps" in text and len(text) < 200_000


def test_heart_rate_outside_range_is_flagged() -> None:
    datasets, _ = molli_datasets(7, heart_rate_bpm=110.0)
    outcome = analyse(load_series(datasets), OPTIONS)
    flags = [f for f in outcome.qc_flags if f.code == QCCode.HEART_RATE_OUT_OF_RANGE]
    assert len(flags) == 1 and "110 bpm" in flags[0].message
    assert outcome.extra["molli"]["heart_rate_bpm"] == pytest.approx(110.0, abs=0.5)


def test_scanner_map_is_compared(written, result) -> None:
    series, slices = written
    source = extract_source(series)
    reference = series.frames[source.slices[1].frame_indices[0]]

    def with_map(offset_ms: float) -> LoadedSeries:
        scanner = SourceFrame(
            pixels=(slices[1].t1_ms + offset_ms).astype(np.float32),
            sop_instance_uid="1.2.3.4",
            sop_class_uid=reference.sop_class_uid,
            frame_number=None,
            image_position=reference.image_position,
            image_orientation=reference.image_orientation,
            pixel_spacing=reference.pixel_spacing,
            slice_thickness=reference.slice_thickness,
            units="ms",
            attributes={"ImageType": ["DERIVED", "PRIMARY", "T1 MAP"], "InstanceNumber": 99},
        )
        return dataclasses.replace(series, frames=(*series.frames, scanner))

    agreeing = analyse(with_map(0.0), OPTIONS)
    comparison = agreeing.extra["molli"]["scanner_map_comparison"]
    assert len(comparison) == 1 and comparison[0]["frame_index"] == 1
    difference = comparison[0]["difference_ms"]
    assert abs(difference) < MAX_SCANNER_DIFFERENCE_MS
    assert not any(f.code == QCCode.SCANNER_MAP_DIFFERS for f in agreeing.qc_flags)
    keys = {m.key for s in agreeing.slices for m in s.measurements}
    assert "myocardium_t1_fit_minus_scanner_ms" in keys

    differing = analyse(with_map(-80.0), OPTIONS)
    shifted = differing.extra["molli"]["scanner_map_comparison"][0]["difference_ms"]
    assert shifted == pytest.approx(difference + 80.0, abs=1.0)
    flags = [f for f in differing.qc_flags if f.code == QCCode.SCANNER_MAP_DIFFERS]
    assert len(flags) == 1 and flags[0].frame_index == 1


def test_wrong_inversion_times_give_a_high_residual_flag(written) -> None:
    series = written[0]
    first = extract_source(series).slices[0].frame_indices
    tis = [series.frames[i].attributes["InversionTime"] for i in first]
    # Two images' inversion times exchanged: every tissue's curve becomes non-monotonic.
    swapped = {first[1]: {"InversionTime": tis[2]}, first[2]: {"InversionTime": tis[1]}}
    outcome = analyse(with_attributes(series, swapped), OPTIONS)
    flags = [f for f in outcome.qc_flags if f.code == QCCode.FIT_RESIDUAL_HIGH]
    assert [f.frame_index for f in flags] == [0]
    assert outcome.extra["molli"]["slices"][0]["myocardium"]["median_nrmse"] > 0.1


def test_heart_motion_gives_a_high_residual_flag(written) -> None:
    series, slices = written
    first = extract_source(series).slices[0].frame_indices
    rows, columns = np.nonzero(slices[0].labels > 0)
    heart = np.zeros(slices[0].labels.shape, bool)
    heart[rows.min() - 10 : rows.max() + 10, columns.min() - 10 : columns.max() + 10] = True
    shift_px = 6.0 / series.frames[0].pixel_spacing[0]  # 6 mm against the chest wall
    frames = list(series.frames)
    for index in first[1:5]:  # four of the eight images, as in a failed breath-hold
        image = frames[index].pixels
        moved = ndimage.shift(image, (shift_px, shift_px), order=1)
        frames[index] = dataclasses.replace(
            frames[index], pixels=np.where(heart, moved, image).astype(np.float32)
        )
    outcome = analyse(dataclasses.replace(series, frames=tuple(frames)), OPTIONS)
    flags = [f for f in outcome.qc_flags if f.code == QCCode.FIT_RESIDUAL_HIGH]
    assert [f.frame_index for f in flags] == [0]
    assert outcome.extra["molli"]["slices"][0]["myocardium"]["residual_ratio"] > 2.0


def test_unfittable_slice_is_flagged_not_fatal(written) -> None:
    series = with_attributes(written[0], {}, drop=("TriggerTime",))
    first = extract_source(series).slices[0].frame_indices
    outcome = analyse(with_attributes(series, {first[0]: {"InversionTime": None}}), OPTIONS)
    assert len(outcome.extra["molli"]["maps"].t1_ms) == 1
    flags = [f for f in outcome.qc_flags if f.code == QCCode.INVERSION_TIMES_IMPLAUSIBLE]
    assert len(flags) == 1 and "no inversion time" in flags[0].message


def test_default_segmenter_on_fitted_maps() -> None:
    """The production path: the trained U-Net segments the node's fitted maps."""
    datasets, slices = molli_datasets(13, levels=("basal", "mid", "apical"))
    outcome = analyse(load_series(datasets), node_options("molli"))
    assert outcome.provenance.model_sha256 is not None  # the trained model was used
    assert len(outcome.slices) == 3
    truth = slices[0].truth["myocardium_t1_true_ms"]
    for slice_result in outcome.slices:
        doubtful = any(
            f.frame_index == slice_result.frame_index and f.severity is not Severity.INFO
            for f in outcome.qc_flags
        )
        mean = next(m.value for m in slice_result.measurements if m.key == "myocardium_t1_mean_ms")
        assert doubtful or abs(mean - truth) <= 25.0
