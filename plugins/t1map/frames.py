"""The frames a T1-map series offers: which are maps (not source images), the field strength,
the unit of the values, the main short-axis stack and the level of each of its slices.

Slice levels
------------
Parallel slices are ordered along their normal.  With three or more slice positions the
first, middle and last thirds are basal, mid and apical; the end towards which the LV cavity
area grows (sign of the regression of cavity area on position over the segmented slices) is
basal, as the LV tapers towards the apex.  With fewer than three positions, or when fewer
than two slices were segmented, the level is "unknown".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from plugins.api import LoadedSeries, QCFlag, Severity, SourceFrame
from plugins.t1map.measurements import SliceStats
from plugins.t1map.qc import QCCode

PARALLEL_COSINE: Final = 0.99
"""Normals with |cos| above this are treated as parallel (same stack)."""

_S_TO_MS = 1000.0

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


def field_strength(series: LoadedSeries, options: Mapping[str, Any]) -> float | None:
    """Field strength (T) from ``options["field_strength_t"]`` or the header, in tesla."""
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


def unit_scale(frames: Sequence[SourceFrame]) -> tuple[float | None, QCFlag | None]:
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


def stack_indices(frames: Sequence[SourceFrame]) -> list[int]:
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


def slice_levels(
    frames: Sequence[SourceFrame], stack: Sequence[int], stats: Mapping[int, SliceStats]
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
