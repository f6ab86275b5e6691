"""Native T1-map analysis: LV segmentation, myocardial and blood T1, quality control.

The analysis is a pure function of a :class:`~plugins.api.LoadedSeries`.  Segmentation is
delegated to a :class:`~plugins.t1map.segmenter.Segmenter`; everything below works on the
returned label images only, so a trained network can replace the classical segmenter.

Conservative myocardial core
----------------------------
Myocardial T1 is averaged over the *middle of the wall*, the way expert readers draw it, not
over the whole segmented myocardium.  Pixels near the endocardium mix myocardium with blood
(T1 ~60 % higher: ~1550 vs ~1000 ms at 1.5 T, ~1900 vs ~1200 ms at 3 T) through in-plane and
through-plane partial volume (6–8 mm slices cut the endocardium obliquely towards base and
apex), trabeculae, and endocardial motion between the images of one acquisition; pixels near
the epicardium mix it with epicardial fat, lung or liver (T1 40–70 % lower).  Partial volume
is the primary source of error of myocardial T1 (Piechnik SK et al., J Cardiovasc Magn Reson
2013;15:13) and a few per cent of such pixels move the mean by tens of ms, more than the
~20–30 ms that separate normal from diseased myocardium.  A pixel is kept in the core when
its centre is

* inside the middle of the local wall: at least ``CORE_FRACTION_ENDO`` of the local
  endocardium-to-epicardium depth from the endocardium and ``CORE_FRACTION_EPI`` from the
  epicardium (the SCMR/EACVI consensus draws T1 regions of interest in the mid-wall, about a
  third of the wall away from blood pool and epicardial borders: Messroghli DR et al., J
  Cardiovasc Magn Reson 2017;19:75); the endocardial side is the more contaminated one
  (blood's T1 contrast, trabeculae, and the endocardium moves more than the epicardium), so
  it loses slightly more; and
* deeper than ``CORE_MARGIN_ENDO_MM`` below the endocardial and ``CORE_MARGIN_EPI_MM`` below
  the epicardial border, and at least ``CORE_MARGIN_PX`` pixels.  The margins are in mm
  because the blur of a map is set by the acquired resolution and by motion, not by the
  reconstructed (often interpolated) pixel: a margin in pixels shrinks to nothing on a map
  interpolated to 0.7 mm.

The endocardial border the fractions are measured from is the segmenter's, moved outwards
over any blood-mixed rim (:func:`blood_mixed_rim`): a contour that looks right on a blurred
or trabeculated map typically runs ~2 mm inside the blood-mixed zone, and on thin walls that
alone put the whole core in contaminated pixels.  Beyond such a rim a core pixel must lie
``CORE_MARGIN_RIM_MM`` deep (and still ``CORE_MARGIN_ENDO_MM`` below the contour): adding the
full endocardial margin on top of the rim pushed the core of thin walls into epicardial fat
(a 4.6 mm apical 3 T wall drawn 1 mm too thick read 38 ms below an expert-style mid-wall
region, 21 ms with the rim margin).

This expert-style "midwall" core is the default (``options["core"]``, setting
``[analysis.t1map] core``); "conservative", the middle 60 % of the segmented wall at least
``CORE_MARGIN_PX`` pixels from either border (the default of versions 0.1–0.2), remains an
option.  Measured with ``python -m models.t1seg.core_bias`` on 40 held-out subjects with
realistic borders (seeds 900000–900039: 6–8 mm slices, 2–5 mm endocardial motion, a 2–4 mm
trabecular layer), reported minus the tissue T1 of the true mid-wall, median [5th, 95th
percentile] (SD) over 60 / 59 slices:

==========  =============================  ==============================
core rule   U-Net 1.5 T                    U-Net 3 T
==========  =============================  ==============================
midwall     -2.6 [-19.5, +9.6] (9.7)       +1.2 [-28.4, +23.1] (17.8)
former      +4.8 [-12.8, +24.1] (11.4)     +9.7 [-15.3, +59.7] (25.2)
==========  =============================  ==============================

With the classical segmenter: midwall -1.1 / +6.2 ms, former +14.6 / +32.6 ms.  The former
rule's error had the sign and size of the +24…+55 ms seen against expert mid-wall regions on
real 3 T MOLLI maps: on 3 T walls of 5–7 mm it read +47 ms (median of 19 slices), the midwall
core +11 ms; the network's endocardial contour runs ~2 mm inside the blood-mixed zone of thin
walls, and the middle 60 % of such a wall is partly blood.

Two end-to-end phantom slices read far from the nominal tissue T1 with this core; both are the
phantom map's own partial volume, not the core: on a 4.7 mm apical 1.5 T wall (-49 ms,
flagged) the noise-free map over the true mid-wall itself reads -62 ms; on the basal
slice of a dilated 3 T heart (+33 ms; ``tests/node/test_cli.py``, Philips seed 12) the wall is
5.6 mm (4 pixels) and the map acquired at 1.9 mm, so the acquired-resolution blur spreads LV
blood (+440 ms) into every mid-wall pixel: the noise-free map over the true mid-wall reads
+20 ms; the core read +7 ms more (its pixels, only in the thickest sector) and +6 ms of noise
(with the rim margin above: +28 ms in all, +8 ms above that region).  No region of such a map
reads the tissue T1; the phantom truth therefore also gives ``myocardium_t1_midwall_map_ms``,
what an expert's mid-wall region reads on the map.

The statistics are over the raw map; no outlier trimming, so focal disease stays in the mean
(the median is reported too).  ``extra["aha"]["septal_midwall"]`` also gives the T1 of the
mid-ventricular septal segments, the region the consensus recommends for native T1.

Reference ranges
----------------
Segment z-scores are computed only against a reference range whose vendor, sequence family
and field strength match the series (:mod:`plugins.t1map.reference`); otherwise
``extra["reference_range"]`` says "no reference range for this sequence" and only values are
reported.

Quality control
---------------
Every flag has a stable code (:class:`QCCode`).  Per slice: myocardium area, ring closure and
wall thickness implausible; wall thinner than 3.5 pixels (partial volume everywhere); few
core pixels; T1 outside the physiological range for the field strength; heterogeneous core
T1 (SD > 8 % of the mean) or one 60-degree sector deviating by > 10 % (focal disease or an
artefact such as an off-resonance band); implausible blood T1; segmentation uncertain;
slice not segmentable (FAILURE, no values).  Per series: unknown field strength, units not
ms (FAILURE when the values cannot be T1 in ms), missing levels, no slice analysed.

Slice levels
------------
Parallel slices are ordered along their normal.  With three or more slice positions the
first, middle and last thirds are basal, mid and apical; the end towards which the LV cavity
area grows (sign of the regression of cavity area on position over the segmented slices) is
basal, as the LV tapers towards the apex.  With fewer than three positions, or when fewer
than two slices were segmented, the level is "unknown".
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import (
    AnalysisError,
    AnalysisResult,
    Code,
    Label,
    LoadedSeries,
    Measurement,
    Provenance,
    QCFlag,
    SegmentDefinition,
    Severity,
    SliceResult,
    SourceFrame,
    injected,
)
from plugins.lib import codes
from plugins.t1map.long_axis import (
    LongAxisFrameResult,
    long_axis_frames,
    long_axis_segmenter,
    long_axis_series_measurements,
    measure_long_axis,
)
from plugins.t1map.reference import ReferenceRange, describe_missing, reference_range
from plugins.t1map.regional import aha_t1, segment_measurements
from plugins.t1map.segmenter import (
    ClassicalSegmenter,
    SegmentationOutput,
    Segmenter,
    TissueRanges,
    polar_sample,
    tissue_ranges,
)
from plugins.t1map.texture import mid_slice_radiomics, radiomics_measurements

logger = logging.getLogger(__name__)

__all__ = [
    "ALGORITHM_NAME",
    "NAME",
    "VERSION",
    "QCCode",
    "analyse",
]

NAME: Final = "t1map"
VERSION: Final = "0.3.0"
ALGORITHM_NAME: Final = "cmr-node t1map"

CORE_FRACTION_ENDO: Final = 0.4
"""Fraction of the local wall depth excluded at the endocardial border."""
CORE_FRACTION_EPI: Final = 1.0 / 3.0
"""Fraction of the local wall depth excluded at the epicardial border."""
CORE_MARGIN_ENDO_MM: Final = 2.5
"""Minimum depth (mm) of a core pixel centre below the endocardial border: about one acquired
MOLLI pixel (1.4–2.4 mm) plus residual endocardial motion."""
CORE_MARGIN_EPI_MM: Final = 1.5
"""Minimum depth (mm) of a core pixel centre below the epicardial border."""
CORE_MARGIN_RIM_MM: Final = 1.5
"""Minimum depth (mm) of a core pixel centre beyond a blood-mixed rim (:func:`measurement_core`):
the rim already holds the blood-mixed pixels, so the epicardial guard suffices there; stacking
``CORE_MARGIN_ENDO_MM`` on top of the rim pushed the core of thin walls into epicardial fat."""
CORE_MARGIN_PX: Final = 0.75
"""Minimum depth (pixels) of a core pixel centre below either border."""
RIM_REACH_MM: Final = 3.0
"""How far outside the LV pool label a blood-mixed endocardial rim is looked for."""
RIM_BLOOD_FRACTION: Final = 0.3
"""A rim pixel is blood-mixed when its lightly smoothed T1 lies more than this fraction of the
way from the slice's myocardial T1 to its blood T1 (about 30 % blood by volume)."""
RIM_SMOOTH_SIGMA_PX: Final = 0.6
"""Gaussian smoothing (pixels) of the map before the rim test, so noise alone rarely passes."""
CORE_RULES: Final = ("midwall", "conservative")
"""``options["core"]``: "midwall" (default; the expert-style mid-wall region of
:func:`measurement_core`) or "conservative" (the middle 60 % of the segmented wall, at least
``CORE_MARGIN_PX`` pixels from either border, the default of versions 0.1–0.2)."""
CONSERVATIVE_FRACTION: Final = 0.2
"""Fraction of the local wall depth the "conservative" core excludes at each border."""
MIN_CORE_PIXELS: Final = 20
"""Fewer core pixels than this makes a slice mean unreliable (SD/sqrt(n) > ~10 ms)."""
MYOCARDIUM_AREA_MM2: Final = (250.0, 5000.0)
"""Plausible short-axis myocardial area, apex to hypertrophied base."""
WALL_THICKNESS_MM: Final = (3.0, 18.0)
"""Plausible median LV wall thickness of a slice (thin apex to severe hypertrophy)."""
MIN_WALL_PIXELS: Final = 3.5
"""Median wall thickness, in pixels, below which no core pixel is free of partial volume:
one pixel clear of each border plus about one pixel of blur (acquired resolution is coarser
than the reconstructed pixel)."""
MIN_RING_CLOSURE: Final = 0.9
"""Fraction of rays from the LV centre that must cross myocardium."""
MAX_UNCERTAINTY: Final = 0.35
"""Segmenter uncertainty above which the contour is flagged as doubtful."""
MAX_CORE_SD_FRACTION: Final = 0.08
MAX_SECTOR_DEVIATION_FRACTION: Final = 0.10
"""Largest deviation of one 60-degree sector's core mean from the median sector, as a fraction
of the slice mean (~100 ms at 1.5 T).  Noise moves a sector mean by < 10 ms, the normal
septal-lateral difference is < 25 ms and partial volume in a thin or blurred sector adds up to
~60 ms on the phantoms; focal lesions and off-resonance bands exceed it."""
N_SECTORS: Final = 6
MIN_SECTOR_PIXELS: Final = 10
"""Core T1 SD above this fraction of the mean suggests artefact or contamination."""
PARALLEL_COSINE: Final = 0.99
"""Normals with |cos| above this are treated as parallel (same stack)."""

_S_TO_MS = 1000.0


class QCCode:
    """Stable codes of the quality-control flags this analysis raises."""

    UNITS_NOT_MS = "units_not_ms"
    SEGMENTERS_DISAGREE = "segmenters_disagree"
    SOURCE_FRAMES_EXCLUDED = "source_frames_excluded"
    UNITS_CONVERTED = "units_converted"
    FIELD_STRENGTH_UNKNOWN = "field_strength_unknown"
    SLICE_UNSEGMENTABLE = "slice_unsegmentable"
    MYOCARDIUM_AREA_IMPLAUSIBLE = "myocardium_area_implausible"
    MYOCARDIUM_RING_OPEN = "myocardium_ring_open"
    WALL_THICKNESS_IMPLAUSIBLE = "wall_thickness_implausible"
    THIN_WALL_PARTIAL_VOLUME = "thin_wall_partial_volume"
    SEGMENTATION_UNCERTAIN = "segmentation_uncertain"
    TOO_FEW_CORE_PIXELS = "too_few_core_pixels"
    T1_OUT_OF_RANGE = "t1_out_of_range"
    T1_HETEROGENEOUS = "t1_heterogeneous"
    T1_REGIONAL_VARIATION = "t1_regional_variation"
    BLOOD_T1_IMPLAUSIBLE = "blood_t1_implausible"
    SLICES_MISSING = "slices_missing"
    NOT_SHORT_AXIS_STACK = "not_short_axis_stack"
    NO_SLICE_ANALYSED = "no_slice_analysed"


SEGMENTS: Final[tuple[SegmentDefinition, ...]] = (
    codes.SEGMENT_LV_BLOOD_POOL,
    codes.SEGMENT_MYOCARDIUM,
    codes.SEGMENT_RV_BLOOD_POOL,
)


@dataclass
class _SliceStats:
    """Numbers measured on one slice (before turning them into Measurements)."""

    frame_index: int
    labels: npt.NDArray[np.uint8]
    core: npt.NDArray[np.bool_]
    core_values: npt.NDArray[np.float64]
    blood_values: npt.NDArray[np.float64]
    myocardium_area_mm2: float
    lv_area_mm2: float
    wall_thickness_mm: float | None
    ring_closure: float
    uncertainty: float | None
    details: Mapping[str, Any]
    pixel_mm: float
    sector_spread_ms: float | None


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


#: Independent cross-check of a trained segmenter: when the classical segmenter's core T1
#: differs from the trained one's by more than this, the slice is flagged for review. 30 ms
#: is just inside MOLLI's own test-retest limits of agreement (about -39 to +34 ms): a
#: disagreement larger than the measurement's reproducibility is a contour question.
CROSS_CHECK_T1_MS: Final = 30.0

_MAP_IMAGE_TYPE = re.compile(r"^T1[ _]?MAP$|^T1$", re.IGNORECASE)


def source_image_frames(frames: Sequence[SourceFrame]) -> set[int]:
    """Frames that are not T1 maps in a series that also holds T1-map frames.

    Philips may store the MOLLI source images and the fitted map in one series; only
    frames whose ImageType names a T1 map are analysed then. When no frame says it is a
    map, nothing is excluded (the router already decided the series is a map).
    """
    is_map = []
    for frame in frames:
        image_type = frame.attributes.get("ImageType") or ()
        values = [image_type] if isinstance(image_type, str) else list(image_type)
        is_map.append(any(_MAP_IMAGE_TYPE.match(str(v).strip()) for v in values))
    if not any(is_map) or all(is_map):
        return set()
    return {i for i, flag in enumerate(is_map) if not flag}


def analyse(series: LoadedSeries, options: Mapping[str, Any]) -> AnalysisResult:
    """Segment the LV and measure native myocardial and blood T1 on every slice.

    Parameters
    ----------
    series
        A loaded T1 map series (pixel values in ms, or seconds, which are converted).
    options
        Settings (``segmenter`` is required, the others optional):

        ``segmenter``
            Required: the :class:`~plugins.t1map.segmenter.Segmenter`.  The node gives the
            trained U-Net of :mod:`models.t1seg`, or the classical one when the U-Net is
            unavailable (:mod:`node.analyses.t1map`).
        ``segmenter_flag``
            A QC flag about the segmenter given (the trained model unavailable), reported
            first.
        ``field_strength_t``
            Field strength in tesla overriding the header's MagneticFieldStrength.
        ``min_core_pixels``
            Override of :data:`MIN_CORE_PIXELS`.
        ``core``
            Myocardial T1 region, one of :data:`CORE_RULES` (default "midwall").

    Returns
    -------
    plugins.api.AnalysisResult
        Per-slice labels, core masks and measurements; series-level global T1; QC flags.
        Slices that cannot be segmented are absent from ``slices`` and carry a FAILURE flag.

    Raises
    ------
    plugins.api.AnalysisError
        If the series has no frames, ``options["segmenter"]`` is missing, or
        ``options["core"]`` is not one of :data:`CORE_RULES`.
    """
    if not series.frames:
        raise AnalysisError(f"Series {series.series_instance_uid} has no frames to analyse.")

    segmenter: Segmenter = injected(options, "segmenter", "the LV segmenter")
    unavailable = options.get("segmenter_flag")
    flags: list[QCFlag] = [unavailable] if isinstance(unavailable, QCFlag) else []
    min_core = int(options.get("min_core_pixels", MIN_CORE_PIXELS))
    core_rule = str(options.get("core", CORE_RULES[0]))
    if core_rule not in CORE_RULES:
        raise AnalysisError(f"options['core'] must be one of {CORE_RULES}, not {core_rule!r}")

    field = _field_strength(series, options)
    if field is None:
        flags.append(
            QCFlag(
                QCCode.FIELD_STRENGTH_UNKNOWN,
                Severity.WARNING,
                "Field strength is unknown (no MagneticFieldStrength): T1 thresholds and "
                "plausibility ranges span both 1.5 T and 3 T, so out-of-range checks are "
                "weaker.",
            )
        )
    ranges = tissue_ranges(field)

    scale, unit_flag = _unit_scale(series.frames)
    if unit_flag is not None:
        flags.append(unit_flag)
    provenance = _provenance(segmenter, core_rule)
    if scale is None:
        return _empty_result(series, flags, provenance, "pixel values are not T1 in ms")

    stack = _stack_indices(series.frames)
    # Four-chamber long-axis frames get septal/lateral wall values instead of AHA segments.
    long_axis = long_axis_frames(series, stack)
    stack = [i for i in stack if i not in long_axis]
    off_stack = [i for i in range(len(series.frames))
                 if i not in set(stack) and i not in long_axis]
    if off_stack:
        flags.append(
            QCFlag(
                QCCode.NOT_SHORT_AXIS_STACK,
                Severity.INFO,
                f"{len(off_stack)} frame(s) are not parallel to the main slice stack; they "
                "are analysed but get no basal/mid/apical level.",
            )
        )

    excluded = source_image_frames(series.frames)
    if excluded:
        flags.append(
            QCFlag(
                QCCode.SOURCE_FRAMES_EXCLUDED,
                Severity.INFO,
                f"{len(excluded)} frame(s) of this series are not T1 maps by their ImageType "
                "(e.g. MOLLI source images stored with the map) and were not analysed.",
            )
        )
    cross_checker = (
        ClassicalSegmenter()
        if options.get("cross_check", True) and segmenter.weights_sha256 is not None
        else None
    )
    cross_checks: dict[int, dict[str, float]] = {}
    stats: dict[int, _SliceStats] = {}
    long_axis_results: dict[int, LongAxisFrameResult] = {}
    segmenter_4ch = long_axis_segmenter(segmenter) if long_axis else segmenter
    probabilities: dict[int, Mapping[Label, npt.NDArray[np.float32]]] = {}
    for index, frame in enumerate(series.frames):
        if index in excluded:
            continue
        t1 = np.asarray(frame.pixels, dtype=np.float32) * np.float32(scale)
        try:
            output = (segmenter_4ch if index in long_axis else segmenter).segment(
                t1, frame.pixel_spacing, field)
        except Exception as exc:  # a segmenter bug must not lose the other slices
            logger.exception("Segmenter %s failed on frame %d", segmenter.name, index)
            output = SegmentationOutput(
                np.zeros(t1.shape, np.uint8), 1.0, f"segmenter error: {exc}"
            )
        if index in long_axis:
            long_axis_results[index] = measure_long_axis(
                index, frame, t1, output, conservative_core(output.labels, frame.pixel_spacing),
                ranges, MAX_UNCERTAINTY)
            continue
        probabilities[index] = output.probabilities
        slice_stats = _measure_slice(index, frame, t1, output, core_rule)
        if slice_stats is not None and cross_checker is not None:
            check = _cross_check(index, frame, t1, slice_stats, cross_checker, field, core_rule)
            if check is not None:
                cross_checks[index] = check
        if slice_stats is None:
            flags.append(
                QCFlag(
                    QCCode.SLICE_UNSEGMENTABLE,
                    Severity.FAILURE,
                    "No LV myocardium found on this slice"
                    + (f": {output.reason}." if output.reason else ".")
                    + " No values are reported for it.",
                    frame_index=index,
                )
            )
            continue
        stats[index] = slice_stats

    levels = _levels(series.frames, stack, stats)
    slices: list[SliceResult] = []
    table: list[dict[str, Any]] = []
    failed_slices: set[int] = set()
    for index in range(len(series.frames)):
        if (found_long_axis := long_axis_results.get(index)) is not None:
            flags.extend(found_long_axis.flags)
            if found_long_axis.slice_result is not None:
                slices.append(found_long_axis.slice_result)
            table.append(found_long_axis.table_row)
            continue
        slice_stats = stats.get(index)
        if slice_stats is None:
            table.append(_table_row(series.frames[index], index, levels[index], None, []))
            continue
        slice_flags = _slice_flags(slice_stats, ranges, min_core)
        check = cross_checks.get(index)
        if check is not None and abs(check["t1_difference_ms"]) > CROSS_CHECK_T1_MS:
            slice_flags.append(
                QCFlag(
                    QCCode.SEGMENTERS_DISAGREE,
                    Severity.WARNING,
                    f"The classical segmenter's myocardial T1 differs by "
                    f"{check['t1_difference_ms']:+.0f} ms (myocardium overlap Dice "
                    f"{check['myocardium_dice']:.2f}): review the contour.",
                    frame_index=index,
                )
            )
        flags.extend(slice_flags)
        if any(flag.severity is Severity.FAILURE for flag in slice_flags):
            failed_slices.add(index)
        slices.append(
            SliceResult(
                frame_index=index,
                labels=slice_stats.labels,
                measurements=_slice_measurements(slice_stats),
                level=levels[index],
                analysed_region=slice_stats.core,
                probabilities=probabilities.get(index, {}),
            )
        )
        table.append(
            _table_row(series.frames[index], index, levels[index], slice_stats, slice_flags)
        )

    usable = [s for i, s in sorted(stats.items()) if i not in failed_slices]
    series_measurements = _series_measurements(usable)
    if stack or not long_axis:  # a long-axis-only series has no short-axis slice to miss
        flags.extend(_series_flags(stack, usable, levels, ranges))
    series_measurements = (*series_measurements,
                           *long_axis_series_measurements(list(long_axis_results.values())))

    extra: dict[str, Any] = {
        "slices": table,
        "method": _method_details(segmenter, field, ranges, scale, min_core, core_rule),
    }
    if cross_checks:
        extra["cross_check"] = {
            "method": "classical segmenter",
            "threshold_ms": CROSS_CHECK_T1_MS,
            "slices": {str(i): c for i, c in sorted(cross_checks.items())},
        }
    good = [s for s in slices if s.frame_index not in failed_slices]
    try:
        normal = reference_range(series.acquisition, field, options.get("normal_ranges"))
    except ValueError as exc:
        raise AnalysisError(f"Invalid normal T1 ranges in the analysis options: {exc}") from exc
    extra["reference_range"] = _reference_block(series, field, normal)
    aha_block, aha_flags = aha_t1(series, good, scale, field, normal)
    flags.extend(aha_flags)
    if aha_block is not None:
        extra["aha"] = aha_block
        series_measurements = (*series_measurements, *segment_measurements(aha_block))
    radiomics_block, radiomics_flags = mid_slice_radiomics(
        series, slices, failed_slices, scale, options
    )
    flags.extend(radiomics_flags)
    if radiomics_block is not None:
        extra["radiomics"] = radiomics_block
        series_measurements = (*series_measurements, *radiomics_measurements(radiomics_block))
    logger.info(
        "t1map %s: %d/%d slice(s) analysed, %d flag(s)",
        series.series_instance_uid,
        len(usable),
        len(series.frames),
        len(flags),
    )
    return AnalysisResult(
        analysis=NAME,
        series_instance_uid=series.series_instance_uid,
        segments=SEGMENTS,
        slices=tuple(slices),
        measurements=series_measurements,
        qc_flags=tuple(flags),
        provenance=provenance,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _field_strength(series: LoadedSeries, options: Mapping[str, Any]) -> float | None:
    value = options.get("field_strength_t")
    if value is not None:
        return float(value)
    field = series.field_strength_t
    if field is None or not math.isfinite(field) or field <= 0:
        return None
    # Some scanners store gauss or millitesla; tesla values lie between 0.1 and 11.7.
    if field > 1000:
        field = field / 10000.0
    elif field > 20:
        field = field / 1000.0
    return field


def _unit_scale(frames: Sequence[SourceFrame]) -> tuple[float | None, QCFlag | None]:
    """Factor from the frames' units to ms, and a flag describing any doubt."""
    units = {frame.units for frame in frames}
    if units == {"ms"}:
        return 1.0, None
    if units == {"s"}:
        return _S_TO_MS, QCFlag(
            QCCode.UNITS_CONVERTED,
            Severity.INFO,
            "The map is stored in seconds; values were converted to ms.",
        )
    if units <= {"1", ""}:
        sample = np.concatenate([np.ravel(frame.pixels) for frame in frames])
        high = float(np.percentile(sample, 99)) if sample.size else 0.0
        if high < 100.0:
            return None, QCFlag(
                QCCode.UNITS_NOT_MS,
                Severity.FAILURE,
                "The map declares no unit and its values (99th percentile "
                f"{high:.3g}) are far below T1 in ms; it is not analysed.",
            )
        return 1.0, QCFlag(
            QCCode.UNITS_NOT_MS,
            Severity.WARNING,
            "The map declares no unit (no real-world value mapping and not recognised as a "
            "T1 map); pixel values were assumed to be T1 in ms.",
        )
    return None, QCFlag(
        QCCode.UNITS_NOT_MS,
        Severity.FAILURE,
        f"The map's values are in {', '.join(sorted(units))}, not ms; it is not analysed.",
    )


def _stack_indices(frames: Sequence[SourceFrame]) -> list[int]:
    """Indices of the frames parallel to the most common slice orientation."""
    normals = [frame.normal for frame in frames]
    best: list[int] = []
    for reference in normals:
        members = [
            i for i, n in enumerate(normals) if abs(float(np.dot(n, reference))) > PARALLEL_COSINE
        ]
        if len(members) > len(best):
            best = members
    return best


# --------------------------------------------------------------------------------------------
# Per-slice measurement
# --------------------------------------------------------------------------------------------


def conservative_core(
    labels: npt.NDArray[np.uint8],
    spacing: tuple[float, float],
    *,
    fraction_endo: float = CORE_FRACTION_ENDO,
    fraction_epi: float = CORE_FRACTION_EPI,
    margin_endo_mm: float = CORE_MARGIN_ENDO_MM,
    margin_epi_mm: float = CORE_MARGIN_EPI_MM,
    margin_px: float = CORE_MARGIN_PX,
) -> npt.NDArray[np.bool_]:
    """Myocardial pixels in the middle of the wall (see module documentation).

    Parameters
    ----------
    labels
        Label image with ``Label.MYOCARDIUM`` and ``Label.LV_BLOOD_POOL``.
    spacing
        (row, column) pixel spacing in mm.
    fraction_endo, fraction_epi
        Fractions of the local wall depth excluded at the endocardial and epicardial border.
    margin_endo_mm, margin_epi_mm
        Minimum depth (mm) of a core pixel centre below the endocardial and epicardial border.
    margin_px
        Minimum depth, in pixels, of a core pixel centre below either border.

    Returns
    -------
    numpy.ndarray
        Boolean core mask.
    """
    myocardium = labels == Label.MYOCARDIUM
    if not myocardium.any():
        return myocardium
    lv = labels == Label.LV_BLOOD_POOL
    outside = ~(myocardium | lv)
    pixel = float(np.sqrt(spacing[0] * spacing[1]))
    # Distance from each pixel centre to the nearest centre of the neighbouring region, minus
    # half a pixel: the depth of the pixel centre below the border between them.
    d_epi = ndimage.distance_transform_edt(~outside, sampling=spacing) - 0.5 * pixel
    if lv.any():
        d_endo = ndimage.distance_transform_edt(~lv, sampling=spacing) - 0.5 * pixel
    else:
        d_endo = np.full(labels.shape, np.inf)
    total = d_endo + d_epi
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = np.where(np.isfinite(total), d_endo / total, 0.5)
    margin = margin_px * pixel
    return np.asarray(
        myocardium
        & (d_endo >= max(margin, margin_endo_mm))
        & (d_epi >= max(margin, margin_epi_mm))
        & (depth >= fraction_endo)
        & (depth <= 1.0 - fraction_epi),
        dtype=bool,
    )


def blood_mixed_rim(
    t1: npt.NDArray[np.float32],
    labels: npt.NDArray[np.uint8],
    spacing: tuple[float, float],
    blood_values: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Myocardium-labelled pixels of the endocardial rim whose T1 is mostly blood's.

    A contour drawn on a blurred map, or through trabeculae, leaves a rim of blood-mixed
    pixels inside the myocardium label; the core is measured from the border of the
    blood-dominated region instead, as a reader places a mid-wall region away from the bright
    rim.  A pixel belongs to the rim when it is myocardium within ``RIM_REACH_MM`` of the LV
    pool label, connected to the pool through such pixels, and its smoothed T1 exceeds the
    slice's myocardial T1 by more than ``RIM_BLOOD_FRACTION`` of the blood-myocardium
    difference.  Only the core definition uses it; contours and areas are unchanged.

    Returns
    -------
    numpy.ndarray
        Boolean rim mask (empty when blood T1 is not above myocardial T1).
    """
    myocardium = labels == Label.MYOCARDIUM
    lv = labels == Label.LV_BLOOD_POOL
    empty = np.zeros(labels.shape, dtype=bool)
    core = conservative_core(labels, spacing)
    if not lv.any() or not core.any() or blood_values.size == 0:
        return empty
    blood = float(np.median(blood_values))
    tissue = float(np.median(t1[core]))
    if blood <= tissue:
        return empty
    threshold = tissue + RIM_BLOOD_FRACTION * (blood - tissue)
    smooth = ndimage.gaussian_filter(np.asarray(t1, dtype=np.float64), RIM_SMOOTH_SIGMA_PX)
    near = ndimage.distance_transform_edt(~lv, sampling=spacing) <= RIM_REACH_MM
    candidates = myocardium & near & (smooth > threshold)
    connected = ndimage.binary_propagation(lv, mask=lv | candidates,
                                           structure=np.ones((3, 3), dtype=bool))
    return np.asarray(connected & myocardium, dtype=bool)


def measurement_core(
    t1: npt.NDArray[np.float32],
    labels: npt.NDArray[np.uint8],
    spacing: tuple[float, float],
    blood_values: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.bool_]:
    """The "midwall" core: :func:`conservative_core` with the endocardial border moved
    outwards over the :func:`blood_mixed_rim`, and its pixel centres at least
    ``CORE_MARGIN_RIM_MM`` beyond the rim and ``CORE_MARGIN_ENDO_MM`` below the contour.

    ``blood_values`` are the LV blood samples (computed from the pool label if ``None``).
    """
    if blood_values is None:
        blood_values = _blood_values(t1, labels == Label.LV_BLOOD_POOL, spacing)
    rim = blood_mixed_rim(t1, labels, spacing, blood_values)
    core_labels = np.where(rim, np.uint8(Label.LV_BLOOD_POOL), labels).astype(np.uint8)
    beyond_rim = conservative_core(core_labels, spacing, margin_endo_mm=CORE_MARGIN_RIM_MM)
    below_contour = conservative_core(labels, spacing, fraction_endo=0.0, fraction_epi=0.0,
                                      margin_epi_mm=0.0)
    return beyond_rim & below_contour


def _blood_values(
    t1: npt.NDArray[np.float32], lv: npt.NDArray[np.bool_], spacing: tuple[float, float]
) -> npt.NDArray[np.float64]:
    """LV blood T1 samples: at least 2 mm from the endocardium, papillary muscles removed."""
    if not lv.any():
        return np.empty(0)
    inner = ndimage.distance_transform_edt(lv, sampling=spacing) >= 2.0
    if np.count_nonzero(inner) < 5:
        inner = lv
    values = np.asarray(t1[inner], dtype=np.float64)
    median = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - median)))
    # Papillary muscles and trabeculae have myocardial T1, far below blood: drop the low tail.
    keep = values >= median - max(3.0 * mad, 0.05 * median)
    return values[keep]


def ray_wall_profile(
    labels: npt.NDArray[np.uint8],
    spacing: tuple[float, float],
    n_angles: int = 72,
) -> tuple[float, float | None]:
    """Ring closure and median wall thickness from rays cast from the LV centre.

    Returns
    -------
    tuple[float, float | None]
        Fraction of rays that cross myocardium, and the median myocardial thickness (mm)
        along those rays (``None`` when no ray does).
    """
    myocardium = labels == Label.MYOCARDIUM
    heart = myocardium | (labels == Label.LV_BLOOD_POOL)
    rr, cc = np.nonzero(heart)
    if rr.size == 0:
        return 0.0, None
    centre = (float(rr.mean() * spacing[0]), float(cc.mean() * spacing[1]))
    extent = float(np.hypot(np.ptp(rr) * spacing[0], np.ptp(cc) * spacing[1])) + 5.0
    step = 0.25 * min(spacing)
    radii = np.arange(0.0, extent, step)
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    hits = polar_sample(myocardium.astype(np.float64), centre, spacing, angles, radii, order=0)
    counts = (hits >= 0.5).sum(axis=1)
    crossed = counts > 0
    closure = float(np.mean(crossed))
    thickness = float(np.median(counts[crossed] * step)) if crossed.any() else None
    return closure, thickness


def _cross_check(
    index: int,
    frame: SourceFrame,
    t1: npt.NDArray[np.float32],
    primary: _SliceStats,
    checker: Segmenter,
    field: float | None,
    core_rule: str,
) -> dict[str, float] | None:
    """Core T1 and myocardium overlap of an independent segmenter on the same slice."""
    try:
        other = _measure_slice(
            index, frame, t1, checker.segment(t1, frame.pixel_spacing, field), core_rule
        )
    except Exception:  # the check must never cost the primary result
        logger.exception("cross-check segmenter failed on frame %d", index)
        return None
    if other is None or not other.core_values.size or not primary.core_values.size:
        return None
    a = primary.labels == Label.MYOCARDIUM
    b = other.labels == Label.MYOCARDIUM
    dice = 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())
    difference = float(primary.core_values.mean() - other.core_values.mean())
    return {
        "classical_t1_mean_ms": round(float(other.core_values.mean()), 1),
        "t1_difference_ms": round(difference, 1),
        "myocardium_dice": round(dice, 3),
    }


def _measure_slice(
    index: int,
    frame: SourceFrame,
    t1: npt.NDArray[np.float32],
    output: SegmentationOutput,
    core_rule: str = CORE_RULES[0],
) -> _SliceStats | None:
    labels = np.asarray(output.labels, dtype=np.uint8)
    if labels.shape != t1.shape:
        raise AnalysisError(
            f"Segmenter returned labels of shape {labels.shape} for a frame of shape {t1.shape}."
        )
    myocardium = labels == Label.MYOCARDIUM
    if not myocardium.any():
        return None
    spacing = frame.pixel_spacing
    pixel_area = spacing[0] * spacing[1]
    lv = labels == Label.LV_BLOOD_POOL
    blood_values = _blood_values(t1, lv, spacing)
    if core_rule == "midwall":
        core = measurement_core(t1, labels, spacing, blood_values)
    else:
        core = conservative_core(
            labels, spacing, fraction_endo=CONSERVATIVE_FRACTION,
            fraction_epi=CONSERVATIVE_FRACTION, margin_endo_mm=0.0, margin_epi_mm=0.0,
        )
    closure, thickness = ray_wall_profile(labels, spacing)
    return _SliceStats(
        frame_index=index,
        labels=labels,
        core=core,
        core_values=np.asarray(t1[core], dtype=np.float64),
        blood_values=blood_values,
        myocardium_area_mm2=float(np.count_nonzero(myocardium)) * pixel_area,
        lv_area_mm2=float(np.count_nonzero(lv)) * pixel_area,
        wall_thickness_mm=thickness,
        ring_closure=closure,
        uncertainty=output.uncertainty,
        details=dict(output.details),
        pixel_mm=float(np.sqrt(pixel_area)),
        sector_spread_ms=_sector_spread(t1, core, labels, spacing),
    )


def _sector_spread(
    t1: npt.NDArray[np.float32],
    core: npt.NDArray[np.bool_],
    labels: npt.NDArray[np.uint8],
    spacing: tuple[float, float],
) -> float | None:
    """Largest |sector mean - median sector mean| of the core over 60-degree sectors (ms)."""
    heart = (labels == Label.MYOCARDIUM) | (labels == Label.LV_BLOOD_POOL)
    rr, cc = np.nonzero(heart)
    if rr.size == 0 or not core.any():
        return None
    centre = (float(rr.mean() * spacing[0]), float(cc.mean() * spacing[1]))
    yy, xx = np.nonzero(core)
    angle = np.mod(np.arctan2(yy * spacing[0] - centre[0], xx * spacing[1] - centre[1]), 2 * np.pi)
    sector = np.minimum((angle / (2 * np.pi) * N_SECTORS).astype(int), N_SECTORS - 1)
    values = np.asarray(t1[yy, xx], dtype=np.float64)
    means = [
        float(values[sector == k].mean())
        for k in range(N_SECTORS)
        if np.count_nonzero(sector == k) >= MIN_SECTOR_PIXELS
    ]
    if len(means) < 3:
        return None
    middle = float(np.median(means))
    return max(abs(m - middle) for m in means)


def _stat(values: npt.NDArray[np.float64], kind: str) -> float | None:
    if values.size == 0:
        return None
    if kind == "mean":
        return float(np.mean(values))
    if kind == "median":
        return float(np.median(values))
    if kind == "sd":
        return float(np.std(values, ddof=1)) if values.size > 1 else None
    raise ValueError(kind)


def _t1_measurements(
    prefix: str,
    region: Label,
    values: npt.NDArray[np.float64],
    reason: str | None,
    statistics: Sequence[tuple[str, Code]] = (
        ("mean", codes.MEAN),
        ("median", codes.MEDIAN),
        ("sd", codes.STANDARD_DEVIATION),
    ),
) -> list[Measurement]:
    measurements: list[Measurement] = []
    for kind, derivation in statistics:
        value = _stat(values, kind) if reason is None else None
        measurements.append(
            Measurement(
                key=f"{prefix}_t1_{kind}_ms",
                name=codes.T1,
                value=None if value is None else round(value, 2),
                unit=codes.UCUM_MILLISECOND,
                region=region,
                derivation=derivation,
                reason=reason
                if reason is not None
                else (None if value is not None else "too few pixels"),
            )
        )
    return measurements


def _slice_measurements(stats: _SliceStats) -> tuple[Measurement, ...]:
    n_core = int(stats.core_values.size)
    core_reason = None if n_core > 0 else "no core pixels (wall too thin)"
    measurements = _t1_measurements("myocardium", Label.MYOCARDIUM, stats.core_values, core_reason)
    measurements.append(
        Measurement(
            key="myocardium_core_pixels",
            name=codes.NUMBER_OF_PIXELS,
            value=float(n_core),
            unit=codes.UCUM_PIXELS,
            region=Label.MYOCARDIUM,
        )
    )
    measurements.append(
        Measurement(
            key="myocardium_area_mm2",
            name=codes.AREA,
            value=round(stats.myocardium_area_mm2, 1),
            unit=codes.UCUM_SQUARE_MILLIMETER,
            region=Label.MYOCARDIUM,
        )
    )
    measurements.append(
        Measurement(
            key="myocardium_wall_thickness_median_mm",
            name=codes.WALL_THICKNESS,
            value=None if stats.wall_thickness_mm is None else round(stats.wall_thickness_mm, 2),
            unit=codes.UCUM_MILLIMETER,
            region=Label.MYOCARDIUM,
            derivation=codes.MEDIAN,
            reason=None if stats.wall_thickness_mm is not None else "no ray crosses the wall",
        )
    )
    measurements.append(
        Measurement(
            key="lv_blood_pool_area_mm2",
            name=codes.AREA,
            value=round(stats.lv_area_mm2, 1),
            unit=codes.UCUM_SQUARE_MILLIMETER,
            region=Label.LV_BLOOD_POOL,
        )
    )
    blood_reason = None if stats.blood_values.size else "no LV blood pool found"
    measurements.extend(
        _t1_measurements(
            "lv_blood",
            Label.LV_BLOOD_POOL,
            stats.blood_values,
            blood_reason,
            statistics=(("mean", codes.MEAN),),
        )
    )
    return tuple(measurements)


# --------------------------------------------------------------------------------------------
# Quality control
# --------------------------------------------------------------------------------------------


def _range_text(ranges: TissueRanges) -> str:
    if ranges.field_strength_t is None:
        return "for an unknown field strength (1.5 T and 3 T ranges combined)"
    return f"at {ranges.field_strength_t:g} T"


def _slice_flags(stats: _SliceStats, ranges: TissueRanges, min_core: int) -> list[QCFlag]:
    index = stats.frame_index
    flags: list[QCFlag] = []
    low_area, high_area = MYOCARDIUM_AREA_MM2
    if not low_area <= stats.myocardium_area_mm2 <= high_area:
        flags.append(
            QCFlag(
                QCCode.MYOCARDIUM_AREA_IMPLAUSIBLE,
                Severity.WARNING,
                f"Segmented myocardium area {stats.myocardium_area_mm2:.0f} mm2 is outside the "
                f"plausible {low_area:.0f}-{high_area:.0f} mm2.",
                index,
            )
        )
    if stats.ring_closure < MIN_RING_CLOSURE:
        flags.append(
            QCFlag(
                QCCode.MYOCARDIUM_RING_OPEN,
                Severity.WARNING,
                f"The myocardial ring is open: only {100 * stats.ring_closure:.0f} % of "
                "directions from the LV centre cross myocardium.",
                index,
            )
        )
    low_wall, high_wall = WALL_THICKNESS_MM
    if stats.wall_thickness_mm is None or not low_wall <= stats.wall_thickness_mm <= high_wall:
        shown = (
            "unknown" if stats.wall_thickness_mm is None else (f"{stats.wall_thickness_mm:.1f} mm")
        )
        flags.append(
            QCFlag(
                QCCode.WALL_THICKNESS_IMPLAUSIBLE,
                Severity.WARNING,
                f"Median wall thickness {shown} is outside the plausible "
                f"{low_wall:g}-{high_wall:g} mm.",
                index,
            )
        )
    if stats.wall_thickness_mm is not None:
        pixels_across = stats.wall_thickness_mm / stats.pixel_mm
        if pixels_across < MIN_WALL_PIXELS:
            flags.append(
                QCFlag(
                    QCCode.THIN_WALL_PARTIAL_VOLUME,
                    Severity.WARNING,
                    f"The wall is only {pixels_across:.1f} pixels thick: every pixel mixes "
                    "myocardium with blood or epicardial tissue, so T1 is biased.",
                    index,
                )
            )
    if stats.uncertainty is not None and stats.uncertainty > MAX_UNCERTAINTY:
        flags.append(
            QCFlag(
                QCCode.SEGMENTATION_UNCERTAIN,
                Severity.WARNING,
                f"The segmenter reports low confidence ({stats.uncertainty:.2f}) for this slice.",
                index,
            )
        )
    n_core = stats.core_values.size
    if n_core == 0:
        flags.append(
            QCFlag(
                QCCode.TOO_FEW_CORE_PIXELS,
                Severity.FAILURE,
                "No myocardial pixels lie far enough from both borders to measure T1 without "
                "partial volume.",
                index,
            )
        )
    elif n_core < min_core:
        flags.append(
            QCFlag(
                QCCode.TOO_FEW_CORE_PIXELS,
                Severity.WARNING,
                f"Only {n_core} core pixels (fewer than {min_core}): the slice mean is imprecise.",
                index,
            )
        )
    mean = _stat(stats.core_values, "mean")
    if mean is not None:
        low, high = ranges.myocardium
        if not low <= mean <= high:
            flags.append(
                QCFlag(
                    QCCode.T1_OUT_OF_RANGE,
                    Severity.WARNING,
                    f"Myocardial T1 {mean:.0f} ms is outside the physiological "
                    f"{low:.0f}-{high:.0f} ms {_range_text(ranges)}: check the map and the "
                    "contours.",
                    index,
                )
            )
        sd = _stat(stats.core_values, "sd")
        if sd is not None and sd > MAX_CORE_SD_FRACTION * mean:
            flags.append(
                QCFlag(
                    QCCode.T1_HETEROGENEOUS,
                    Severity.WARNING,
                    f"Myocardial T1 varies widely (SD {sd:.0f} ms): artefact, contour "
                    "contamination or focal disease; review the map.",
                    index,
                )
            )
        if stats.sector_spread_ms is not None and (
            stats.sector_spread_ms > MAX_SECTOR_DEVIATION_FRACTION * mean
        ):
            flags.append(
                QCFlag(
                    QCCode.T1_REGIONAL_VARIATION,
                    Severity.WARNING,
                    f"One wall region differs from the rest by {stats.sector_spread_ms:.0f} ms: "
                    "focal disease or an artefact (e.g. an off-resonance band); the slice mean "
                    "mixes them.",
                    index,
                )
            )
    blood = _stat(stats.blood_values, "mean")
    low_blood, high_blood = ranges.blood_plausible
    if blood is None or not low_blood <= blood <= high_blood:
        shown = "not measurable" if blood is None else f"{blood:.0f} ms"
        flags.append(
            QCFlag(
                QCCode.BLOOD_T1_IMPLAUSIBLE,
                Severity.WARNING,
                f"LV blood T1 {shown} is outside the plausible {low_blood:.0f}-"
                f"{high_blood:.0f} ms {_range_text(ranges)}.",
                index,
            )
        )
    return flags


def _series_flags(
    stack: Sequence[int],
    usable: Sequence[_SliceStats],
    levels: Sequence[str],
    ranges: TissueRanges,
) -> list[QCFlag]:
    flags: list[QCFlag] = []
    if not usable:
        flags.append(
            QCFlag(
                QCCode.NO_SLICE_ANALYSED,
                Severity.FAILURE,
                "No slice could be analysed: no global myocardial T1 is reported.",
            )
        )
        return flags
    present = {levels[s.frame_index] for s in usable}
    expected = {"basal", "mid", "apical"}
    missing = sorted(expected - present)
    if len(stack) >= 3 and missing:
        flags.append(
            QCFlag(
                QCCode.SLICES_MISSING,
                Severity.WARNING,
                f"No analysed slice at level(s) {', '.join(missing)}: the global value does "
                "not cover the whole ventricle.",
            )
        )
    elif len(stack) < 3:
        flags.append(
            QCFlag(
                QCCode.SLICES_MISSING,
                Severity.INFO,
                f"The series has {len(stack)} short-axis slice position(s), fewer than "
                "basal, mid and apical.",
            )
        )
    values = np.concatenate([s.core_values for s in usable])
    if values.size:
        mean = float(values.mean())
        low, high = ranges.myocardium
        if not low <= mean <= high:
            flags.append(
                QCFlag(
                    QCCode.T1_OUT_OF_RANGE,
                    Severity.WARNING,
                    f"Global myocardial T1 {mean:.0f} ms is outside the physiological "
                    f"{low:.0f}-{high:.0f} ms {_range_text(ranges)}.",
                )
            )
    return flags


# --------------------------------------------------------------------------------------------
# Series level
# --------------------------------------------------------------------------------------------


def _series_measurements(usable: Sequence[_SliceStats]) -> tuple[Measurement, ...]:
    reason = None if usable else "no slice could be analysed"
    core = np.concatenate([s.core_values for s in usable]) if usable else np.empty(0, np.float64)
    blood = np.concatenate([s.blood_values for s in usable]) if usable else np.empty(0, np.float64)
    if reason is None and core.size == 0:
        reason = "no core pixels on any slice"
    measurements = _t1_measurements("global_myocardium", Label.MYOCARDIUM, core, reason)
    measurements.append(
        Measurement(
            key="global_myocardium_core_pixels",
            name=codes.NUMBER_OF_PIXELS,
            value=float(core.size),
            unit=codes.UCUM_PIXELS,
            region=Label.MYOCARDIUM,
        )
    )
    blood_reason = None if blood.size else (reason or "no LV blood pool found")
    measurements.extend(
        _t1_measurements(
            "global_lv_blood",
            Label.LV_BLOOD_POOL,
            blood,
            blood_reason,
            statistics=(("mean", codes.MEAN),),
        )
    )
    return tuple(measurements)


def _levels(
    frames: Sequence[SourceFrame], stack: Sequence[int], stats: Mapping[int, _SliceStats]
) -> list[str]:
    """basal / mid / apical for the stack frames, "unknown" otherwise."""
    levels = ["unknown"] * len(frames)
    if not stack:
        return levels
    normal = frames[stack[0]].normal
    location = {i: float(np.dot(normal, np.asarray(frames[i].image_position))) for i in stack}
    positions = sorted({round(value, 1) for value in location.values()})
    if len(positions) < 3:
        return levels
    rank = {position: k for k, position in enumerate(positions)}
    third = {i: min(2, rank[round(location[i], 1)] * 3 // len(positions)) for i in stack}
    # Which end is basal: the LV cavity shrinks towards the apex, so the sign of the
    # regression of cavity area on position (over the segmented slices) tells the direction.
    measured = [(rank[round(location[i], 1)], stats[i].lv_area_mm2) for i in stack if i in stats]
    ranks = np.asarray([r for r, _ in measured], dtype=np.float64)
    areas = np.asarray([a for _, a in measured], dtype=np.float64)
    if ranks.size < 2 or np.ptp(ranks) == 0 or np.ptp(areas) == 0:
        return levels
    slope = float(np.polyfit(ranks, areas, 1)[0])
    names = ("basal", "mid", "apical") if slope < 0 else ("apical", "mid", "basal")
    for i in stack:
        levels[i] = names[third[i]]
    return levels


# --------------------------------------------------------------------------------------------
# Provenance and extra
# --------------------------------------------------------------------------------------------


def core_description(core_rule: str) -> str:
    """One sentence naming the myocardial T1 region of ``core_rule`` (provenance, SR, summary)."""
    if core_rule == "midwall":
        return (
            "T1 statistics over the mid-wall core (inner "
            f"{CORE_FRACTION_ENDO:.0%} and outer {CORE_FRACTION_EPI:.0%} of the wall, and pixels "
            f"within {CORE_MARGIN_ENDO_MM:g} mm of the endocardium or {CORE_MARGIN_EPI_MM:g} mm "
            "of the epicardium, excluded; the endocardium moved outwards over a blood-mixed rim, "
            f"at least {CORE_MARGIN_RIM_MM:g} mm beyond it)."
        )
    return (
        f"T1 statistics over the conservative core (inner and outer {CONSERVATIVE_FRACTION:.0%} "
        "of the segmented wall excluded)."
    )


def _provenance(segmenter: Segmenter, core_rule: str) -> Provenance:
    core_text = core_description(core_rule)
    if segmenter.weights_sha256 is None:
        method = (
            f"LV segmentation by {segmenter.name} {segmenter.version} (classical, no trained "
            "weights): field-strength-specific T1 thresholds, blood-pool detection and a polar "
            f"border search. {core_text}"
        )
        return Provenance(ALGORITHM_NAME, VERSION, method)
    method = (
        f"LV segmentation by the trained model {segmenter.name} {segmenter.version}. {core_text}"
    )
    return Provenance(
        ALGORITHM_NAME,
        VERSION,
        method,
        model_name=segmenter.name,
        model_version=segmenter.version,
        model_sha256=segmenter.weights_sha256,
    )


def _empty_result(
    series: LoadedSeries, flags: list[QCFlag], provenance: Provenance, reason: str
) -> AnalysisResult:
    flags = [
        *flags,
        QCFlag(
            QCCode.NO_SLICE_ANALYSED,
            Severity.FAILURE,
            f"No slice was analysed: {reason}.",
        ),
    ]
    measurements = (
        *_t1_measurements("global_myocardium", Label.MYOCARDIUM, np.empty(0), reason),
        *_t1_measurements(
            "global_lv_blood",
            Label.LV_BLOOD_POOL,
            np.empty(0),
            reason,
            statistics=(("mean", codes.MEAN),),
        ),
    )
    return AnalysisResult(
        analysis=NAME,
        series_instance_uid=series.series_instance_uid,
        segments=SEGMENTS,
        slices=(),
        measurements=tuple(measurements),
        qc_flags=tuple(flags),
        provenance=provenance,
        extra={"slices": [], "method": {"not_analysed_reason": reason}},
    )


def _reference_block(
    series: LoadedSeries, field: float | None, normal: ReferenceRange | None
) -> dict[str, Any]:
    """``extra["reference_range"]``: the matching range, or why there is none."""
    acquisition = series.acquisition
    if normal is None:
        return {
            "available": False,
            "text": describe_missing(acquisition, field),
            "acquisition": {
                "vendor": acquisition.vendor,
                "sequence_family": acquisition.sequence_family,
                "field_strength_t": field,
            },
        }
    return {
        "available": True,
        "text": (
            f"{normal.vendor} {normal.sequence_family} {normal.field_strength_t:g} T: "
            f"{normal.mean_ms:g} +/- {normal.sd_ms:g} ms ({normal.source})"
        ),
        "range": normal.as_dict(),
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def _table_row(
    frame: SourceFrame,
    index: int,
    level: str,
    stats: _SliceStats | None,
    flags: Sequence[QCFlag],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "frame_index": index,
        "sop_instance_uid": frame.sop_instance_uid,
        "frame_number": frame.frame_number,
        "slice_location_mm": round(frame.slice_location, 2),
        "level": level,
    }
    if stats is None:
        row["status"] = "not segmented"
        return row
    failed = any(flag.severity is Severity.FAILURE for flag in flags)
    row.update(
        {
            "status": "failed" if failed else "analysed",
            "myocardium_t1_mean_ms": _round(_stat(stats.core_values, "mean")),
            "myocardium_t1_median_ms": _round(_stat(stats.core_values, "median")),
            "myocardium_t1_sd_ms": _round(_stat(stats.core_values, "sd")),
            "myocardium_core_pixels": int(stats.core_values.size),
            "myocardium_area_mm2": _round(stats.myocardium_area_mm2, 1),
            "lv_blood_pool_area_mm2": _round(stats.lv_area_mm2, 1),
            "lv_blood_t1_mean_ms": _round(_stat(stats.blood_values, "mean")),
            "wall_thickness_median_mm": _round(stats.wall_thickness_mm),
            "ring_closure": _round(stats.ring_closure, 3),
            "segmentation_uncertainty": _round(stats.uncertainty, 3),
            "qc_flags": [flag.code for flag in flags],
            "segmenter": dict(stats.details),
        }
    )
    return row


def _method_details(
    segmenter: Segmenter,
    field: float | None,
    ranges: TissueRanges,
    scale: float,
    min_core: int,
    core_rule: str,
) -> dict[str, Any]:
    if core_rule == "midwall":
        core: dict[str, Any] = {
            "rule": core_rule,
            "fraction_excluded_endocardial": round(CORE_FRACTION_ENDO, 4),
            "fraction_excluded_epicardial": round(CORE_FRACTION_EPI, 4),
            "min_margin_endocardial_mm": CORE_MARGIN_ENDO_MM,
            "min_margin_epicardial_mm": CORE_MARGIN_EPI_MM,
            "min_margin_px": CORE_MARGIN_PX,
            "min_margin_beyond_rim_mm": CORE_MARGIN_RIM_MM,
            "blood_mixed_rim": {
                "reach_mm": RIM_REACH_MM,
                "blood_fraction": RIM_BLOOD_FRACTION,
                "smoothing_sigma_px": RIM_SMOOTH_SIGMA_PX,
            },
        }
    else:
        core = {
            "rule": core_rule,
            "fraction_excluded_endocardial": CONSERVATIVE_FRACTION,
            "fraction_excluded_epicardial": CONSERVATIVE_FRACTION,
            "min_margin_px": CORE_MARGIN_PX,
        }
    core["min_core_pixels"] = min_core
    core["description"] = core_description(core_rule)
    return {
        "algorithm": ALGORITHM_NAME,
        "version": VERSION,
        "segmenter": {
            "name": segmenter.name,
            "version": segmenter.version,
            "weights_sha256": segmenter.weights_sha256,
            "kind": "classical, no trained weights"
            if segmenter.weights_sha256 is None
            else "trained model",
        },
        "field_strength_t": field,
        "unit_scale_to_ms": scale,
        "ranges_ms": {
            "blood_search": list(ranges.blood),
            "myocardium_plausible": list(ranges.myocardium),
            "blood_plausible": list(ranges.blood_plausible),
        },
        "core": core,
        "blood": "LV blood pool at least 2 mm from the endocardium, papillary-muscle pixels "
        "(low tail) removed",
        "series_statistics": "pixel-weighted over the cores of all slices without FAILURE flags",
        "levels": "thirds of the ordered slice positions; the end with the larger LV cavity is "
        "basal; 'unknown' with fewer than three positions",
    }
