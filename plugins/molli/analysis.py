"""MOLLI source images: pixel-wise T1 fit, then the T1-map analysis of the fitted maps.

When a scanner sends the MOLLI inversion-recovery source images (with or without its own
map), :func:`analyse` fits T1 on every slice (:mod:`plugins.molli.fit`), builds a
:class:`~plugins.api.LoadedSeries` of the fitted maps and runs the unchanged
:func:`plugins.t1map.analysis.analyse` on it.  The result is that analysis's result with
MOLLI-specific quality control, provenance naming the fit, and the fitted maps.

Frames of the result
--------------------
``SliceResult.frame_index`` and ``QCFlag.frame_index`` index the frames of the *fitted*
series, one per fitted slice position, in slice order (``extra["molli"]["maps"].series``).
Those frames are the frames of one T1 Parametric Map instance the node writes; their
``frame_number`` is the frame's number in that map.  The plugin does not know the map's
identity: the node gives every output object its UIDs (new ones for each analysis
generation), so the frames carry :data:`plugins.api.UNWRITTEN_SOP_INSTANCE_UID`, and the node
names the written map wherever the result refers to them (the SEG, the SRs,
``results.json``).  The fitted series keeps the *source* series' instance UID (it is the
analysed input), from which the node derives its output UIDs.

Quality control
---------------
* ``fit_residual_high`` (WARNING, per slice): the fit residual in the myocardial core is
  more than :data:`MAX_RESIDUAL_RATIO` times that of the whole slice, or above
  :data:`MAX_MYOCARDIAL_NRMSE` of the signal, or more than :data:`MAX_INVALID_FIT_FRACTION`
  of the core failed to fit (motion between the source images, arrhythmia, wrong TIs).
* ``inversion_times_implausible`` (WARNING): a slice position could not be fitted; the
  message says why (missing, duplicate, out-of-range or too few TIs).  No slice at all
  raises :class:`~plugins.api.AnalysisError`.
* ``inversion_times_fallback`` (INFO): TIs were read from ImageComments, a description or
  TriggerTime rather than InversionTime.
* ``heart_rate_out_of_range`` (WARNING) / ``heart_rate_unknown`` (INFO): see
  :data:`HEART_RATE_RANGE_BPM`.
* ``scanner_map_differs`` (WARNING, per slice): the node's fit and the scanner's own map
  differ by more than :data:`MAX_SCANNER_DIFFERENCE_MS` in the myocardial core.

The scanner's map is taken from the source series itself when it holds map frames, else from
``options["companions"]["scanner_map"]`` (the scanner's T1 map series of the same study, found
by the node): a frame of it on the same pixel grid as the fitted slice (same orientation,
spacing and matrix, plane within :data:`SCANNER_MAP_MAX_DISTANCE_MM`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from plugins.api import (
    UNWRITTEN_SOP_INSTANCE_UID,
    AnalysisError,
    AnalysisResult,
    Code,
    Label,
    LoadedSeries,
    Measurement,
    Provenance,
    QCFlag,
    Severity,
    SliceResult,
    SourceFrame,
)
from plugins.lib import codes
from plugins.molli.fit import ALGORITHM, MIN_RELATIVE_SIGNAL, FitResult, fit_molli
from plugins.molli.source import MolliSlice, MolliSource, TiSource, extract_source
from plugins.t1map import analysis as t1map_analysis

logger = logging.getLogger(__name__)

__all__ = [
    "ALGORITHM_NAME",
    "HEART_RATE_RANGE_BPM",
    "MAX_INVALID_FIT_FRACTION",
    "MAX_MYOCARDIAL_NRMSE",
    "MAX_RESIDUAL_RATIO",
    "MAX_SCANNER_DIFFERENCE_MS",
    "NAME",
    "PARAMETRIC_MAP_SOP_CLASS_UID",
    "VERSION",
    "FittedMaps",
    "QCCode",
    "analyse",
]

NAME: Final = "molli"
VERSION: Final = "0.1.0"
ALGORITHM_NAME: Final = "cmr-node molli"

PARAMETRIC_MAP_SOP_CLASS_UID: Final = "1.2.840.10008.5.1.4.1.1.30"
"""Parametric Map Storage."""
FITTED_IMAGE_TYPE: Final = ("DERIVED", "PRIMARY", "VOLUME", "QUANTITY")
"""ImageType of the fitted maps (that of a Parametric Map, as highdicom writes it)."""

MAX_RESIDUAL_RATIO: Final = 2.0
"""Largest accepted ratio of the median RMS fit residual in the myocardial core to the median
over all fitted pixels of the slice.  With noise alone the residual is about the noise SD
everywhere: the ratio was 0.92-1.03 on 16 phantom slices (SNR 40-90, 1.5 and 3 T), and
parallel-imaging noise amplification, higher in the centre of the body where the heart
lies, rarely exceeds 1.3 at the accelerations used for MOLLI.  A 3-6 mm misregistration of
half the source images raised it to 1.4-5 where the heart moved against its surroundings."""
MAX_MYOCARDIAL_NRMSE: Final = 0.10
"""Median RMS residual over the myocardial core, relative to the pixel's largest signal,
above which the fit is flagged whatever the rest of the image does.  Noise alone gives about
1/SNR of the myocardial signal range, 0.02-0.045 on the phantoms (SNR 40-90); at 0.10 the
residual is as large as the noise of a myocardial SNR of 10, where MOLLI's T1 precision is
worse than +-100 ms."""
MAX_INVALID_FIT_FRACTION: Final = 0.10
"""Fraction of core pixels without a physical fit (B <= A, T1 out of range) above which the
slice is flagged; noise alone leaves none on the phantoms."""
HEART_RATE_RANGE_BPM: Final = (40.0, 90.0)
"""Heart rates for which MOLLI 5(3)3 is trustworthy.  Above ~90 bpm the three recovery
beats last < 2 s, so magnetisation has not recovered before the second inversion and MOLLI
underestimates T1 increasingly with heart rate (Kellman & Hansen, JCMR 2014;16:2; the
seconds-based 5s(3s)3s scheme exists for this reason, Messroghli et al., JCMR
2017;19:75).  Below 40 bpm the 11-beat acquisition exceeds a comfortable breath-hold
(~17 s) and motion between source images becomes likely."""
MAX_SCANNER_DIFFERENCE_MS: Final = 30.0
"""Largest accepted difference of myocardial core T1 between the node's fit and the
scanner's map: within MOLLI's test-retest limits of agreement (about -39 to +34 ms), the same
bound as the t1map segmenter cross-check.  Vendors fit motion-corrected images, so larger
differences mean motion or a different fit model, not noise."""

SCANNER_MAP_MAX_DISTANCE_MM: Final = 2.0
"""Largest distance between a fitted slice and a companion scanner-map frame compared with it
(a quarter of a usual 8 mm slice)."""
COMPANION_SCANNER_MAP: Final = "scanner_map"
"""Role of the scanner's T1 map series in ``options["companions"]``."""

_SCANNER_DIFFERENCE: Final = Code(
    "t1-fit-minus-scanner", codes.PRIVATE_SCHEME, "T1 difference, node fit minus scanner map"
)


class QCCode:
    """Stable codes of the quality-control flags this analysis adds to the t1map ones."""

    FIT_RESIDUAL_HIGH = "fit_residual_high"
    INVERSION_TIMES_IMPLAUSIBLE = "inversion_times_implausible"
    INVERSION_TIMES_FALLBACK = "inversion_times_fallback"
    HEART_RATE_OUT_OF_RANGE = "heart_rate_out_of_range"
    HEART_RATE_UNKNOWN = "heart_rate_unknown"
    SCANNER_MAP_DIFFERS = "scanner_map_differs"
    SCANNER_MAP_NOT_COMPARED = "scanner_map_not_compared"


@dataclass(frozen=True)
class FittedMaps:
    """The fitted maps of a source series, for the Parametric Map writer.

    Attributes
    ----------
    series
        The fitted T1 maps as a series (frames in ms, one per slice, with their frame
        numbers in the T1 Parametric Map and :data:`plugins.api.UNWRITTEN_SOP_INSTANCE_UID`
        for the map's SOP Instance UID, which the node gives); the series the t1map
        analysis ran on.
    t1_ms, r_squared, nrmse, valid
        Per slice (same order as ``series.frames``): T1 (ms, 0 where not fitted), R^2,
        normalised RMS residual and validity mask.
    source_frame_indices
        Per slice, the indices into the *source* series' frames that were fitted.
    source_sop_instance_uids
        Per slice, the SOP Instance UIDs of those source frames.
    """

    series: LoadedSeries
    t1_ms: tuple[npt.NDArray[np.float32], ...]
    r_squared: tuple[npt.NDArray[np.float32], ...]
    nrmse: tuple[npt.NDArray[np.float32], ...]
    valid: tuple[npt.NDArray[np.bool_], ...]
    source_frame_indices: tuple[tuple[int, ...], ...]
    source_sop_instance_uids: tuple[tuple[str, ...], ...]

    def __str__(self) -> str:
        """Short description (what ``results.json`` shows instead of the arrays)."""
        rows, columns = self.t1_ms[0].shape if self.t1_ms else (0, 0)
        return f"<fitted MOLLI maps: {len(self.t1_ms)} slice(s) of {rows}x{columns}>"


def analyse(series: LoadedSeries, options: Mapping[str, Any]) -> AnalysisResult:
    """Fit T1 to MOLLI source images and analyse the fitted maps as a T1-map series.

    Parameters
    ----------
    series
        A loaded MOLLI source series (magnitude or phase-sensitive images, one per TI and
        slice position), possibly with the scanner's T1 map frames mixed in.
    options
        Passed on to :func:`plugins.t1map.analysis.analyse` (``segmenter``,
        ``field_strength_t``, ...), plus ``min_relative_signal`` (background threshold of
        the fit, default :data:`plugins.molli.fit.MIN_RELATIVE_SIGNAL`).

    Returns
    -------
    plugins.api.AnalysisResult
        The t1map result on the fitted maps, with MOLLI QC flags, provenance naming the fit,
        and ``extra["molli"]``: inversion times, heart rate, per-slice fit quality, scanner
        comparison and ``maps`` (a :class:`FittedMaps`).

    Raises
    ------
    plugins.api.AnalysisError
        If no slice position has usable inversion times, or the t1map analysis raises.
    """
    source = extract_source(series)
    min_signal = float(options.get("min_relative_signal", MIN_RELATIVE_SIGNAL))
    fits: list[FitResult] = []
    for molli_slice in source.slices:
        try:
            fits.append(
                fit_molli(
                    molli_slice.images(series),
                    molli_slice.inversion_times_ms,
                    min_relative_signal=min_signal,
                )
            )
        except ValueError as exc:
            raise AnalysisError(
                f"The T1 fit failed on the slice at {molli_slice.location_mm:.1f} mm: {exc}"
            ) from exc
    maps = _fitted_maps(series, source, fits)
    base = t1map_analysis.analyse(maps.series, options)

    flags = list(base.qc_flags)
    flags.extend(_source_flags(source))
    slices = list(base.slices)
    fit_rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    position = {s.frame_index: i for i, s in enumerate(slices)}
    companion = _companion_scanner_map(options)
    for index, (molli_slice, fit) in enumerate(zip(source.slices, fits, strict=True)):
        slice_result = slices[position[index]] if index in position else None
        row, slice_flags = _fit_quality(index, molli_slice, fit, slice_result)
        fit_rows.append(row)
        flags.extend(slice_flags)
        if molli_slice.map_frame_index is not None:
            scanner_frame = series.frames[molli_slice.map_frame_index]
        elif companion is not None:
            found = _scanner_frame(companion, molli_slice.reference(series), fit.t1_ms.shape)
            if found is None:
                continue
            scanner_frame = found
        else:
            continue
        comparison, comparison_flags = _compare_with_scanner(
            index, scanner_frame, fit, slice_result
        )
        if molli_slice.map_frame_index is None and companion is not None:
            comparison["scanner_series_instance_uid"] = companion.series_instance_uid
        comparisons.append(comparison)
        flags.extend(comparison_flags)
        value = comparison.get("difference_ms")
        if slice_result is not None and value is not None:
            slices[position[index]] = dataclasses.replace(
                slice_result,
                measurements=(*slice_result.measurements, _difference_measurement(value)),
            )

    measurements = list(base.measurements)
    differences = [c["difference_ms"] for c in comparisons if c.get("difference_ms") is not None]
    if differences:
        measurements.append(
            _difference_measurement(float(np.mean(differences)), key_prefix="global_")
        )
    extra = dict(base.extra)
    extra["display_name"] = "MOLLI fit"
    extra["molli"] = {
        "algorithm": ALGORITHM,
        "inversion_time_source": source.ti_source,
        "heart_rate_bpm": _round(source.heart_rate_bpm, 1),
        "heart_rate_source": source.heart_rate_source,
        "slices": fit_rows,
        "not_fitted": [
            {"location_mm": round(p.location_mm, 2), "reason": p.reason} for p in source.problems
        ],
        "scanner_map_comparison": comparisons,
        "scanner_map_threshold_ms": MAX_SCANNER_DIFFERENCE_MS,
        "notes": list(source.notes),
        "maps": maps,
    }
    logger.info(
        "molli %s: %d slice(s) fitted (TIs from %s), %d flag(s)",
        series.series_instance_uid,
        len(fits),
        source.ti_source,
        len(flags),
    )
    return AnalysisResult(
        analysis=NAME,
        series_instance_uid=series.series_instance_uid,
        segments=base.segments,
        slices=tuple(slices),
        measurements=tuple(measurements),
        qc_flags=tuple(flags),
        provenance=_provenance(base.provenance),
        extra=extra,
    )


# --------------------------------------------------------------------------------------------
# Fitted series
# --------------------------------------------------------------------------------------------


def _frame_numbers(slices: Sequence[MolliSlice]) -> list[int]:
    """Frame number of each slice in the Parametric Map.

    A Parametric Map (as highdicom writes it, and as DICOM volume conventions order it) stores
    its planes in ascending order along column x row direction cosines, i.e. *descending*
    along the row x column normal used for ``slice_location``.  The fitted series keeps the
    loader's ascending order; its frame numbers follow the map's, which the writer checks.
    """
    order = sorted(range(len(slices)), key=lambda i: -slices[i].location_mm)
    numbers = [0] * len(slices)
    for number, index in enumerate(order, 1):
        numbers[index] = number
    return numbers


def _fitted_maps(
    series: LoadedSeries, source: MolliSource, fits: Sequence[FitResult]
) -> FittedMaps:
    frames: list[SourceFrame] = []
    numbers = _frame_numbers(source.slices)
    for number, molli_slice, fit in zip(numbers, source.slices, fits, strict=True):
        reference = molli_slice.reference(series)
        frames.append(
            SourceFrame(
                pixels=fit.t1_ms.astype(np.float32),
                sop_instance_uid=UNWRITTEN_SOP_INSTANCE_UID,
                sop_class_uid=PARAMETRIC_MAP_SOP_CLASS_UID,
                frame_number=number,
                image_position=reference.image_position,
                image_orientation=reference.image_orientation,
                pixel_spacing=reference.pixel_spacing,
                slice_thickness=reference.slice_thickness,
                units="ms",
                attributes={
                    "ImageType": list(FITTED_IMAGE_TYPE),
                    "InstanceNumber": 1,
                    "SourceFrameIndices": list(molli_slice.frame_indices),
                    "InversionTimes": list(molli_slice.inversion_times_ms),
                },
            )
        )
    header = dict(series.header)
    description = str(header.get("SeriesDescription", "MOLLI")).strip() or "MOLLI"
    header.update(
        {
            "SeriesDescription": f"{description} T1 map (cmr-node fit)",
            "ImageType": list(FITTED_IMAGE_TYPE),
            "SOPClassUID": PARAMETRIC_MAP_SOP_CLASS_UID,
            "SourceSeriesInstanceUID": series.series_instance_uid,
            "NumberOfSeriesRelatedInstances": 1,
        }
    )
    fitted_series = LoadedSeries(
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        frames=tuple(frames),
        header=header,
    )
    return FittedMaps(
        series=fitted_series,
        t1_ms=tuple(f.t1_ms for f in fits),
        r_squared=tuple(f.r_squared for f in fits),
        nrmse=tuple(f.nrmse for f in fits),
        valid=tuple(f.valid for f in fits),
        source_frame_indices=tuple(s.frame_indices for s in source.slices),
        source_sop_instance_uids=tuple(
            tuple(series.frames[i].sop_instance_uid for i in s.frame_indices) for s in source.slices
        ),
    )


# --------------------------------------------------------------------------------------------
# Quality control
# --------------------------------------------------------------------------------------------


def _source_flags(source: MolliSource) -> list[QCFlag]:
    flags: list[QCFlag] = []
    for problem in source.problems:
        flags.append(
            QCFlag(
                QCCode.INVERSION_TIMES_IMPLAUSIBLE,
                Severity.WARNING,
                f"The slice at {problem.location_mm:.1f} mm was not fitted: {problem.reason}.",
            )
        )
    if source.ti_source != TiSource.INVERSION_TIME:
        flags.append(
            QCFlag(
                QCCode.INVERSION_TIMES_FALLBACK,
                Severity.INFO,
                f"Inversion times were read from {source.ti_source}, not from InversionTime; "
                "check that they are the effective TIs of the images.",
            )
        )
    rate = source.heart_rate_bpm
    low, high = HEART_RATE_RANGE_BPM
    if rate is None:
        flags.append(
            QCFlag(
                QCCode.HEART_RATE_UNKNOWN,
                Severity.INFO,
                "The heart rate is unknown (no HeartRate, no R-R interval, TIs not one "
                "heartbeat apart): MOLLI's heart-rate dependence could not be checked.",
            )
        )
    elif not low <= rate <= high:
        why = (
            "the recovery heartbeats are too short, so MOLLI underestimates T1"
            if rate > high
            else "the acquisition outlasts a comfortable breath-hold, so motion between "
            "source images is likely"
        )
        flags.append(
            QCFlag(
                QCCode.HEART_RATE_OUT_OF_RANGE,
                Severity.WARNING,
                f"Heart rate {rate:.0f} bpm (from {source.heart_rate_source}) is outside "
                f"{low:.0f}-{high:.0f} bpm: {why}.",
            )
        )
    return flags


def _core(fit: FitResult, slice_result: SliceResult | None) -> npt.NDArray[np.bool_] | None:
    if slice_result is None:
        return None
    if slice_result.analysed_region is not None and slice_result.analysed_region.any():
        return slice_result.analysed_region
    myocardium = slice_result.labels == Label.MYOCARDIUM
    return myocardium if myocardium.any() else None


def _fit_quality(
    index: int, molli_slice: MolliSlice, fit: FitResult, slice_result: SliceResult | None
) -> tuple[dict[str, Any], list[QCFlag]]:
    row: dict[str, Any] = {
        "frame_index": index,
        "location_mm": round(molli_slice.location_mm, 2),
        "inversion_times_ms": [round(t, 2) for t in molli_slice.inversion_times_ms],
        "fitted_pixels": int(fit.fitted.sum()),
        "valid_pixels": int(fit.valid.sum()),
    }
    core = _core(fit, slice_result)
    if core is None:
        row["myocardium"] = None
        return row, []
    in_core = core & fit.fitted
    invalid_fraction = 1.0 - float(fit.valid[core].mean()) if core.any() else 0.0
    nrmse = float(np.median(fit.nrmse[in_core])) if in_core.any() else None
    r2 = float(np.median(fit.r_squared[in_core])) if in_core.any() else None
    ratio = None
    if in_core.any() and fit.valid.any():
        reference = float(np.median(fit.rmse[fit.valid]))
        if reference > 0:
            ratio = float(np.median(fit.rmse[in_core])) / reference
    row["myocardium"] = {
        "pixels": int(core.sum()),
        "median_nrmse": _round(nrmse, 4),
        "median_r_squared": _round(r2, 4),
        "residual_ratio": _round(ratio, 3),
        "invalid_fraction": round(invalid_fraction, 4),
    }
    flags: list[QCFlag] = []
    problems = []
    if ratio is not None and ratio > MAX_RESIDUAL_RATIO:
        problems.append(
            f"residual {ratio:.1f} times that of the whole slice (limit {MAX_RESIDUAL_RATIO:g})"
        )
    if nrmse is not None and nrmse > MAX_MYOCARDIAL_NRMSE:
        problems.append(
            f"median residual {nrmse:.1%} of the signal (limit {MAX_MYOCARDIAL_NRMSE:.0%})"
        )
    if invalid_fraction > MAX_INVALID_FIT_FRACTION:
        problems.append(f"{invalid_fraction:.0%} of the myocardial pixels have no valid fit")
    if problems:
        flags.append(
            QCFlag(
                QCCode.FIT_RESIDUAL_HIGH,
                Severity.WARNING,
                "The T1 fit is poor in the myocardium (" + "; ".join(problems) + "): motion "
                "between source images, arrhythmia or wrong inversion times.",
                frame_index=index,
            )
        )
    return row, flags


def _compare_with_scanner(
    index: int, scanner: SourceFrame, fit: FitResult, slice_result: SliceResult | None
) -> tuple[dict[str, Any], list[QCFlag]]:
    comparison: dict[str, Any] = {"frame_index": index, "difference_ms": None}
    core = _core(fit, slice_result)
    reason = None
    if scanner.pixels.shape != fit.t1_ms.shape:
        reason = (
            f"the scanner map is {scanner.pixels.shape[0]}x{scanner.pixels.shape[1]}, the "
            f"source images {fit.t1_ms.shape[0]}x{fit.t1_ms.shape[1]}"
        )
    elif core is None:
        reason = "no myocardium was segmented on this slice"
    else:
        both = core & fit.valid & (scanner.pixels > 0)
        if not both.any():
            reason = "no myocardial pixel has a value in both maps"
    if reason is not None:
        comparison["reason"] = reason
        return comparison, [
            QCFlag(
                QCCode.SCANNER_MAP_NOT_COMPARED,
                Severity.INFO,
                f"The fitted T1 was not compared with the scanner's map: {reason}.",
                frame_index=index,
            )
        ]
    assert core is not None
    both = core & fit.valid & (scanner.pixels > 0)
    node_mean = float(np.mean(fit.t1_ms[both]))
    scanner_mean = float(np.mean(scanner.pixels[both]))
    difference = node_mean - scanner_mean
    comparison.update(
        {
            "pixels": int(both.sum()),
            "node_t1_mean_ms": round(node_mean, 1),
            "scanner_t1_mean_ms": round(scanner_mean, 1),
            "difference_ms": round(difference, 1),
        }
    )
    flags = []
    if abs(difference) > MAX_SCANNER_DIFFERENCE_MS:
        flags.append(
            QCFlag(
                QCCode.SCANNER_MAP_DIFFERS,
                Severity.WARNING,
                f"Myocardial T1 of the node's fit ({node_mean:.0f} ms) differs from the "
                f"scanner's map ({scanner_mean:.0f} ms) by {difference:+.0f} ms (limit "
                f"{MAX_SCANNER_DIFFERENCE_MS:.0f} ms): motion between source images or a "
                "different fit; compare both maps.",
                frame_index=index,
            )
        )
    return comparison, flags


def _companion_scanner_map(options: Mapping[str, Any]) -> LoadedSeries | None:
    companions = options.get("companions")
    found = companions.get(COMPANION_SCANNER_MAP) if isinstance(companions, Mapping) else None
    return found if isinstance(found, LoadedSeries) and found.frames else None


def _scanner_frame(
    companion: LoadedSeries, reference: SourceFrame, shape: tuple[int, ...]
) -> SourceFrame | None:
    """The companion map frame on the fitted slice's pixel grid, in ms, if there is one."""
    best: tuple[float, SourceFrame] | None = None
    for frame in companion.frames:
        if frame.units not in ("ms", "s") or frame.pixels.shape != shape:
            continue
        if abs(float(np.dot(frame.normal, reference.normal))) < 0.99 or not np.allclose(
            frame.pixel_spacing, reference.pixel_spacing, atol=1e-3
        ):
            continue
        offset = np.asarray(frame.image_position) - np.asarray(reference.image_position)
        along = float(np.dot(reference.normal, offset))
        distance = abs(along)
        in_plane = float(np.linalg.norm(offset - along * reference.normal))
        if distance > SCANNER_MAP_MAX_DISTANCE_MM or in_plane > min(reference.pixel_spacing):
            continue
        if best is None or distance < best[0]:
            best = (distance, frame)
    if best is None:
        return None
    frame = best[1]
    if frame.units == "s":
        frame = dataclasses.replace(
            frame, pixels=(frame.pixels * np.float32(1000.0)).astype(np.float32), units="ms"
        )
    return frame


def _difference_measurement(value: float, key_prefix: str = "") -> Measurement:
    return Measurement(
        key=f"{key_prefix}myocardium_t1_fit_minus_scanner_ms",
        name=_SCANNER_DIFFERENCE,
        value=float(value),
        unit=codes.UCUM_MILLISECOND,
        region=Label.MYOCARDIUM,
        derivation=codes.MEAN,
    )


def _provenance(base: Provenance) -> Provenance:
    return Provenance(
        algorithm_name=ALGORITHM_NAME,
        algorithm_version=VERSION,
        method=(
            f"T1 fitted pixel-wise by cmr-node {NAME} {VERSION} ({ALGORITHM}); then "
            f"{base.algorithm_name} {base.algorithm_version}: {base.method}"
        ),
        model_name=base.model_name,
        model_version=base.model_version,
        model_sha256=base.model_sha256,
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)
