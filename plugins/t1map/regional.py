"""Native T1 per AHA segment (16-segment model) from the analysed short-axis slices."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from plugins.api import LoadedSeries, QCFlag, Severity, SliceResult
from plugins.cardiac.aha import (
    SEGMENT_NAMES,
    InsertionPoints,
    lv_centre,
    rv_insertion_points,
    segment_map,
    segment_statistics,
)

logger = logging.getLogger(__name__)

SHORT_AXIS_LEVELS = ("basal", "mid", "apical")
#: Segments with fewer core pixels than this get no value (too few to average).
MIN_SEGMENT_PIXELS = 10
#: Centre of healthy native MOLLI myocardial T1 (ms) by field strength (1.5 T: 950-1050,
#: 3 T: 1100-1250; see plugins/t1map/segmenter.py) and the half-width of the bullseye's
#: fixed colour scale. A fixed scale keeps a 20 ms spread from looking like a regional
#: pattern; the span covers normal to clearly raised T1.
NORMAL_T1_CENTRE_MS = {1.5: 1000.0, 3.0: 1175.0}
DISPLAY_HALF_SPAN_MS = 150.0


class RegionalCode:
    """Stable QC codes of the regional step."""

    INSERTION_BORROWED = "rv_insertion_borrowed"
    NO_INSERTION = "rv_insertion_not_found"


def display_range(field_strength_t: float | None, means: Sequence[float]) -> tuple[float, float]:
    """Fixed colour scale of the T1 bullseye: normal centre +/- 150 ms for the field."""
    if field_strength_t is None:
        centre = float(np.median(means)) if means else 1000.0
    else:
        nearest = min(NORMAL_T1_CENTRE_MS, key=lambda f: abs(f - field_strength_t))
        centre = NORMAL_T1_CENTRE_MS[nearest]
    return centre - DISPLAY_HALF_SPAN_MS, centre + DISPLAY_HALF_SPAN_MS


def aha_t1(
    series: LoadedSeries,
    slices: Sequence[SliceResult],
    scale: float,
    field_strength_t: float | None = None,
) -> tuple[dict[str, Any] | None, list[QCFlag]]:
    """Mean, SD and median T1 per AHA segment over the slices' conservative cores.

    Parameters
    ----------
    series
        The analysed series (pixels, spacing, orientation).
    slices
        Slice results with label images, levels and core masks; slices without a
        basal/mid/apical level are not used.
    scale
        Factor from stored pixel values to ms (1 for maps in ms).
    field_strength_t
        Chooses the fixed colour scale of the bullseye.

    Returns
    -------
    tuple
        The ``extra["aha"]`` block (``None`` when no slice could be divided into
        segments) and the QC flags raised on the way.
    """
    flags: list[QCFlag] = []
    usable = [s for s in slices if s.level in SHORT_AXIS_LEVELS and s.analysed_region is not None]
    found: dict[int, InsertionPoints] = {}
    for sl in usable:
        frame = series.frames[sl.frame_index]
        points = rv_insertion_points(
            sl.labels, frame.pixel_spacing, orientation=frame.image_orientation
        )
        if points is not None:
            found[sl.frame_index] = points
    if not found:
        if usable:
            flags.append(
                QCFlag(
                    RegionalCode.NO_INSERTION,
                    Severity.WARNING,
                    "RV insertion points were not found on any slice: no AHA segment values.",
                )
            )
        return None, flags

    values: list[npt.NDArray[np.float32]] = []
    maps: list[npt.NDArray[np.int8]] = []
    masks: list[npt.NDArray[np.bool_]] = []
    insertion: dict[str, Any] = {}
    for sl in usable:
        frame = series.frames[sl.frame_index]
        points = found.get(sl.frame_index)
        if points is None:
            nearest = min(
                found,
                key=lambda i: abs(series.frames[i].slice_location - frame.slice_location),
            )
            points = found[nearest].with_centre(lv_centre(sl.labels))
            flags.append(
                QCFlag(
                    RegionalCode.INSERTION_BORROWED,
                    Severity.INFO,
                    f"RV insertion points not found on this slice; those of frame "
                    f"{nearest + 1} were used for its AHA segments.",
                    frame_index=sl.frame_index,
                )
            )
        try:
            seg = segment_map(
                sl.labels,
                sl.level,
                points,
                orientation=frame.image_orientation,
                pixel_spacing=frame.pixel_spacing,
            )
        except ValueError as exc:
            logger.info("no AHA segments on frame %d: %s", sl.frame_index, exc)
            continue
        assert sl.analysed_region is not None
        values.append(np.asarray(frame.pixels, dtype=np.float32) * np.float32(scale))
        maps.append(seg)
        masks.append(sl.analysed_region)
        insertion[str(sl.frame_index)] = points.as_dict()
    if not maps:
        return None, flags
    stats = segment_statistics(values, maps, mask=masks)
    segments: dict[str, Any] = {}
    for number, st in sorted(stats.items()):
        enough = st.n_pixels >= MIN_SEGMENT_PIXELS
        segments[str(number)] = {
            "name": SEGMENT_NAMES[number],
            "n_pixels": st.n_pixels,
            "mean": _round(st.mean) if enough else None,
            "sd": _round(st.sd) if enough else None,
            "median": _round(st.median) if enough else None,
        }
    block = {
        "model": "AHA 16-segment (Cerqueira et al., Circulation 2002;105:539-542)",
        "quantity": "T1",
        "unit": "ms",
        "region": "conservative myocardial core",
        "min_segment_pixels": MIN_SEGMENT_PIXELS,
        "segments": segments,
        "display_range": display_range(
            field_strength_t, [v["mean"] for v in segments.values() if v["mean"] is not None]
        ),
        "insertion_points": insertion,
    }
    return block, flags


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
