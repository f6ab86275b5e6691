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
option.  Measured with ``python -m models.evaluation.t1seg.core_bias`` on 40 held-out subjects with
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
Every flag has a stable code (:class:`~plugins.t1map.qc.QCCode`); the checks are
:mod:`plugins.t1map.qc`'s, the slice levels :mod:`plugins.t1map.frames`'.  The slice's numbers
and measurements are :mod:`plugins.t1map.measurements`', the result's tables and provenance
:mod:`plugins.t1map.report`'s.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import (
    AnalysisError,
    AnalysisResult,
    Label,
    LoadedSeries,
    QCFlag,
    Severity,
    SliceResult,
    SourceFrame,
    injected,
)
from plugins.t1map.frames import (
    field_strength,
    slice_levels,
    source_image_frames,
    stack_indices,
    unit_scale,
)
from plugins.t1map.long_axis import (
    LongAxisFrameResult,
    long_axis_frames,
    long_axis_segmenter,
    long_axis_series_measurements,
    measure_long_axis,
)
from plugins.t1map.measurements import (
    SliceStats,
    ray_wall_profile,
    sector_spread,
    series_t1_measurements,
    slice_t1_measurements,
)
from plugins.t1map.qc import MAX_UNCERTAINTY, QCCode, series_qc_flags, slice_qc_flags
from plugins.t1map.reference import reference_range
from plugins.t1map.regional import aha_t1, segment_measurements
from plugins.t1map.report import (
    NAME,
    SEGMENTS,
    build_provenance,
    empty_result,
    method_details,
    reference_block,
    table_row,
)
from plugins.t1map.segmenter import ClassicalSegmenter, SegmentationOutput, Segmenter
from plugins.t1map.texture import mid_slice_radiomics, radiomics_measurements
from plugins.t1map.tissue import tissue_ranges

logger = logging.getLogger(__name__)

__all__ = [
    "CORE_RULES",
    "analyse",
    "conservative_core",
    "measurement_core",
]


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


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


#: Independent cross-check of a trained segmenter: when the classical segmenter's core T1
#: differs from the trained one's by more than this, the slice is flagged for review. 30 ms
#: is just inside MOLLI's own test-retest limits of agreement (about -39 to +34 ms): a
#: disagreement larger than the measurement's reproducibility is a contour question.
CROSS_CHECK_T1_MS: Final = 30.0


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

    field = field_strength(series, options)
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

    scale, unit_flag = unit_scale(series.frames)
    if unit_flag is not None:
        flags.append(unit_flag)
    provenance = build_provenance(segmenter, core_description(core_rule))
    if scale is None:
        return empty_result(series, flags, provenance, "pixel values are not T1 in ms")

    stack = stack_indices(series.frames)
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
    stats: dict[int, SliceStats] = {}
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

    levels = slice_levels(series.frames, stack, stats)
    slices: list[SliceResult] = []
    slice_flags: dict[int, list[QCFlag]] = {}
    failed_slices: set[int] = set()
    for index in range(len(series.frames)):
        if (found_long_axis := long_axis_results.get(index)) is not None:
            if found_long_axis.slice_result is not None:
                slices.append(found_long_axis.slice_result)
            continue
        slice_stats = stats.get(index)
        if slice_stats is None:
            continue
        slice_flags[index] = slice_qc_flags(slice_stats, ranges, min_core)
        if any(flag.severity is Severity.FAILURE for flag in slice_flags[index]):
            failed_slices.add(index)
        slices.append(
            SliceResult(
                frame_index=index,
                labels=slice_stats.labels,
                measurements=slice_t1_measurements(slice_stats),
                level=levels[index],
                analysed_region=slice_stats.core,
                probabilities=probabilities.get(index, {}),
            )
        )

    # The radiomic features (of the slices as segmented) and the classical cross-check (which
    # only adds WARNING flags) are independent; both spend much of their time outside the GIL.
    # The features are computed in the caller's context (e.g. the node's logging context).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="t1map-radiomics") as pool:
        radiomics = pool.submit(
            contextvars.copy_context().run, mid_slice_radiomics, series, tuple(slices),
            frozenset(failed_slices), scale, options,
        )
        if cross_checker is not None:
            for index, slice_stats in sorted(stats.items()):
                frame = series.frames[index]
                t1 = np.asarray(frame.pixels, dtype=np.float32) * np.float32(scale)
                check = _cross_check(
                    index, frame, t1, slice_stats, cross_checker, field, core_rule
                )
                if check is not None:
                    cross_checks[index] = check
        radiomics_block, radiomics_flags = radiomics.result()

    table: list[dict[str, Any]] = []
    for index in range(len(series.frames)):
        if (found_long_axis := long_axis_results.get(index)) is not None:
            flags.extend(found_long_axis.flags)
            table.append(found_long_axis.table_row)
            continue
        slice_stats = stats.get(index)
        if slice_stats is None:
            table.append(table_row(series.frames[index], index, levels[index], None, []))
            continue
        check = cross_checks.get(index)
        if check is not None and abs(check["t1_difference_ms"]) > CROSS_CHECK_T1_MS:
            slice_flags[index].append(
                QCFlag(
                    QCCode.SEGMENTERS_DISAGREE,
                    Severity.WARNING,
                    f"The classical segmenter's myocardial T1 differs by "
                    f"{check['t1_difference_ms']:+.0f} ms (myocardium overlap Dice "
                    f"{check['myocardium_dice']:.2f}): review the contour.",
                    frame_index=index,
                )
            )
        flags.extend(slice_flags[index])
        table.append(
            table_row(series.frames[index], index, levels[index], slice_stats, slice_flags[index])
        )

    usable = [s for i, s in sorted(stats.items()) if i not in failed_slices]
    series_measurements = series_t1_measurements(usable)
    if stack or not long_axis:  # a long-axis-only series has no short-axis slice to miss
        flags.extend(series_qc_flags(stack, usable, levels, ranges))
    series_measurements = (*series_measurements,
                           *long_axis_series_measurements(list(long_axis_results.values())))

    extra: dict[str, Any] = {
        "slices": table,
        "method": method_details(segmenter, field, ranges, scale,
                                  _core_details(core_rule, min_core)),
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
    extra["reference_range"] = reference_block(series, field, normal)
    aha_block, aha_flags = aha_t1(series, good, scale, field, normal)
    flags.extend(aha_flags)
    if aha_block is not None:
        extra["aha"] = aha_block
        series_measurements = (*series_measurements, *segment_measurements(aha_block))
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


def _cross_check(
    index: int,
    frame: SourceFrame,
    t1: npt.NDArray[np.float32],
    primary: SliceStats,
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
) -> SliceStats | None:
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
    return SliceStats(
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
        sector_spread_ms=sector_spread(t1, core, labels, spacing),
    )


# --------------------------------------------------------------------------------------------
# Description of the core (provenance, method details)
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


def _core_details(core_rule: str, min_core: int) -> dict[str, Any]:
    """The core block of ``extra["method"]``: the rule, its fractions and margins."""
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
    return core


