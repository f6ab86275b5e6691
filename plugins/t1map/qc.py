"""Quality control of the T1-map analysis: the stable flag codes, the plausibility limits
and the checks of each slice and of the series.

Per slice: myocardium area, ring closure and wall thickness implausible; wall thinner than 3.5
pixels (partial volume everywhere); few core pixels; T1 outside the physiological range for
the field strength; heterogeneous core T1 (SD > 8 % of the mean) or one 60-degree sector
deviating by > 10 % (focal disease or an artefact such as an off-resonance band); implausible
blood T1; segmentation uncertain; slice not segmentable (FAILURE, no values).  Per series:
unknown field strength, units not ms (FAILURE when the values cannot be T1 in ms), missing
levels, no slice analysed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from plugins.api import QCFlag, Severity
from plugins.t1map.measurements import SliceStats, stat
from plugins.t1map.tissue import TissueRanges

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
"""Core T1 SD above this fraction of the mean suggests artefact or contamination."""
MAX_SECTOR_DEVIATION_FRACTION: Final = 0.10
"""Largest deviation of one 60-degree sector's core mean from the median sector, as a fraction
of the slice mean (~100 ms at 1.5 T).  Noise moves a sector mean by < 10 ms, the normal
septal-lateral difference is < 25 ms and partial volume in a thin or blurred sector adds up to
~60 ms on the phantoms; focal lesions and off-resonance bands exceed it."""


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


def range_text(ranges: TissueRanges) -> str:
    """The field strength the T1 ranges are for, as the flags word it."""
    if ranges.field_strength_t is None:
        return "for an unknown field strength (1.5 T and 3 T ranges combined)"
    return f"at {ranges.field_strength_t:g} T"


def slice_qc_flags(stats: SliceStats, ranges: TissueRanges, min_core: int) -> list[QCFlag]:
    """The flags of one measured slice."""
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
    mean = stat(stats.core_values, "mean")
    if mean is not None:
        low, high = ranges.myocardium
        if not low <= mean <= high:
            flags.append(
                QCFlag(
                    QCCode.T1_OUT_OF_RANGE,
                    Severity.WARNING,
                    f"Myocardial T1 {mean:.0f} ms is outside the physiological "
                    f"{low:.0f}-{high:.0f} ms {range_text(ranges)}: check the map and the "
                    "contours.",
                    index,
                )
            )
        sd = stat(stats.core_values, "sd")
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
    blood = stat(stats.blood_values, "mean")
    low_blood, high_blood = ranges.blood_plausible
    if blood is None or not low_blood <= blood <= high_blood:
        shown = "not measurable" if blood is None else f"{blood:.0f} ms"
        flags.append(
            QCFlag(
                QCCode.BLOOD_T1_IMPLAUSIBLE,
                Severity.WARNING,
                f"LV blood T1 {shown} is outside the plausible {low_blood:.0f}-"
                f"{high_blood:.0f} ms {range_text(ranges)}.",
                index,
            )
        )
    return flags


def series_qc_flags(
    stack: Sequence[int],
    usable: Sequence[SliceStats],
    levels: Sequence[str],
    ranges: TissueRanges,
) -> list[QCFlag]:
    """The flags of the series: no slice analysed, levels missing, global T1 implausible."""
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
                    f"{low:.0f}-{high:.0f} ms {range_text(ranges)}.",
                )
            )
    return flags
