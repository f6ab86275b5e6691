"""The AHA 16-segment model of the left ventricle on short-axis label images.

Segments follow the American Heart Association statement (Cerqueira MD, Weissman NJ,
Dilsizian V, et al. Standardized myocardial segmentation and nomenclature for tomographic
imaging of the heart. Circulation 2002;105:539-542):

* basal (1-6) and mid-cavity (7-12) slices are divided into six 60-degree segments:
  anterior, anteroseptal, inferoseptal, inferior, inferolateral, anterolateral;
* apical slices (13-16) into four 90-degree segments: anterior, septal, inferior, lateral;
* the attachment of the right-ventricular wall to the LV (the RV insertion points) separates
  the septum from the anterior and inferior free walls.

The insertion points that anchor the segments are found by :mod:`plugins.lib.cardiac.insertion`
(its notes tell the image conventions and how anterior and inferior are told apart).
Segments are numbered from the anterior insertion point in the direction that crosses
the septum (:attr:`~plugins.lib.cardiac.insertion.InsertionPoints.septal_sense`), so
numbering is anatomically consistent under any in-plane rotation or flip once anterior and
inferior are known.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import Label
from plugins.lib.cardiac.insertion import (
    N_RAYS,
    RAY_STEP_PX,
    InsertionPoints,
    Orientation,
    find_rv_insertion_points,
    ray_directions,
)

__all__ = [
    "APICAL_SEGMENTS",
    "BASAL_SEGMENTS",
    "MID_SEGMENTS",
    "SEGMENT_NAMES",
    "Level",
    "SectorAnchor",
    "SegmentStats",
    "SegmentTransmurality",
    "assign_levels",
    "segment_map",
    "segment_statistics",
    "transmurality",
]


class Level(enum.StrEnum):
    """Short-axis levels of the 16-segment model."""

    BASAL = "basal"
    MID = "mid"
    APICAL = "apical"


BASAL_SEGMENTS: Final = (1, 2, 3, 4, 5, 6)
MID_SEGMENTS: Final = (7, 8, 9, 10, 11, 12)
APICAL_SEGMENTS: Final = (13, 14, 15, 16)
ALL_SEGMENTS: Final = BASAL_SEGMENTS + MID_SEGMENTS + APICAL_SEGMENTS

SEGMENT_NAMES: Final[Mapping[int, str]] = {
    1: "basal anterior",
    2: "basal anteroseptal",
    3: "basal inferoseptal",
    4: "basal inferior",
    5: "basal inferolateral",
    6: "basal anterolateral",
    7: "mid anterior",
    8: "mid anteroseptal",
    9: "mid inferoseptal",
    10: "mid inferior",
    11: "mid inferolateral",
    12: "mid anterolateral",
    13: "apical anterior",
    14: "apical septal",
    15: "apical inferior",
    16: "apical lateral",
}
"""AHA names of the 16 segments (Cerqueira et al. 2002)."""

_SIX_FROM_ANTERIOR_INSERTION: Final = (2, 3, 4, 5, 6, 1)
"""Basal segment in each 60-degree sector, counted from the anterior insertion point
towards the septum."""
_FOUR_FROM_SEPTUM: Final = (14, 15, 16, 13)
"""Apical segment in each 90-degree sector, counted from the septal one towards inferior."""


class SectorAnchor(enum.StrEnum):
    """Where the six 60-degree sectors of basal and mid slices start."""

    ANTERIOR_INSERTION = "anterior_insertion"
    """Boundary of segments 1/2 (7/8) at the anterior insertion point (default)."""
    SEPTAL_BISECTOR = "septal_bisector"
    """Boundary of segments 2/3 (8/9) at the bisector of the septal arc, which uses both
    insertion points (less sensitive to an error in one of them)."""


@dataclass(frozen=True)
class SegmentStats:
    """Statistics of a value over one AHA segment.

    ``mean``, ``sd`` (sample standard deviation) and ``median`` are ``None`` when the segment
    has too few pixels (none; fewer than two for ``sd``).
    """

    segment: int
    n_pixels: int
    mean: float | None
    sd: float | None
    median: float | None


@dataclass(frozen=True)
class SegmentTransmurality:
    """Extent of a binary finding (e.g. late enhancement) across the wall of one segment.

    Attributes
    ----------
    segment
        AHA segment number.
    n_rays
        Radial rays through the segment's wall (one per degree about the LV centre).
    max_fraction
        Largest fraction of the wall thickness that is enhanced along a ray (0-1), after a
        small angular median filter; ``None`` if no ray crossed the segment.
    mean_fraction
        Mean over the segment's rays of the enhanced fraction of the wall thickness.
    area_fraction
        Enhanced pixels / myocardium pixels of the segment; ``None`` without pixels.
    """

    segment: int
    n_rays: int
    max_fraction: float | None
    mean_fraction: float | None
    area_fraction: float | None


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------


def _check_level(level: str) -> Level:
    try:
        return Level(str(level).lower())
    except ValueError as exc:
        raise ValueError(
            f"Level {level!r} has no AHA segments; expected basal, mid or apical"
        ) from exc


def segment_map(
    labels: npt.NDArray[np.integer],
    level: str,
    insertion: InsertionPoints | None,
    *,
    orientation: Orientation | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    anchor: SectorAnchor = SectorAnchor.ANTERIOR_INSERTION,
) -> npt.NDArray[np.int8]:
    """AHA segment number (1-16) of every LV myocardium pixel, 0 elsewhere.

    Basal and mid slices get six 60-degree sectors; with the default anchor the first starts
    at the anterior insertion point and runs across the septum (anteroseptal 2/8,
    inferoseptal 3/9, inferior 4/10, inferolateral 5/11, anterolateral 6/12, anterior 1/7).
    Apical slices get four 90-degree sectors, the septal one (14) centred on the middle of
    the septum between the insertion points, then inferior (15), lateral (16), anterior (13),
    as in Cerqueira et al., Circulation 2002;105:539.

    Parameters
    ----------
    labels
        Label image; every :attr:`~plugins.api.Label.MYOCARDIUM` pixel gets a segment.
    level
        ``"basal"``, ``"mid"`` or ``"apical"``.
    insertion
        The slice's insertion points
        (:func:`~plugins.lib.cardiac.insertion.rv_insertion_points`).  If ``None`` they are
        found from ``labels``, which then needs ``pixel_spacing``.
    orientation, pixel_spacing
        Used only to find the insertion points when ``insertion`` is ``None``.
    anchor
        Where the six basal/mid sectors start (see :class:`SectorAnchor`).

    Returns
    -------
    numpy.ndarray
        int8, same shape as ``labels``.

    Raises
    ------
    ValueError
        For a level without segments, or when ``insertion`` is ``None`` and the insertion
        points cannot be found (the message says why).
    """
    labels = np.asarray(labels)
    lvl = _check_level(level)
    if insertion is None:
        if pixel_spacing is None:
            raise ValueError("pixel_spacing is needed to find the RV insertion points")
        search = find_rv_insertion_points(labels, pixel_spacing, orientation=orientation)
        if search.points is None:
            raise ValueError(f"No RV insertion points: {search.reason}")
        insertion = search.points
    out = np.zeros(labels.shape, dtype=np.int8)
    myo = labels == Label.MYOCARDIUM
    if not myo.any():
        return out
    rows, cols = np.nonzero(myo)
    sr, sc = insertion.pixel_spacing
    angle = np.arctan2((rows - insertion.centre[0]) * sr, (cols - insertion.centre[1]) * sc)
    sense = float(insertion.septal_sense)
    two_pi = 2.0 * np.pi
    if lvl is Level.APICAL:
        from_septum = (sense * (angle - insertion.septal_angle) + np.pi / 4) % two_pi
        sector = np.minimum((from_septum // (np.pi / 2)).astype(np.intp), 3)
        out[rows, cols] = np.asarray(_FOUR_FROM_SEPTUM, dtype=np.int8)[sector]
        return out
    start = insertion.anterior_angle
    if anchor is SectorAnchor.SEPTAL_BISECTOR:
        start = insertion.septal_angle - sense * np.pi / 3
    from_anterior = (sense * (angle - start)) % two_pi
    sector = np.minimum((from_anterior // (np.pi / 3)).astype(np.intp), 5)
    offset = 0 if lvl is Level.BASAL else 6
    out[rows, cols] = np.asarray(_SIX_FROM_ANTERIOR_INSERTION, dtype=np.int8)[sector] + offset
    return out


# --------------------------------------------------------------------------------------------
# Per-segment statistics
# --------------------------------------------------------------------------------------------

ArrayOrArrays = npt.ArrayLike | Sequence[npt.ArrayLike]


def _as_list(
    arrays: ArrayOrArrays | None, like: list[npt.NDArray[np.int8]]
) -> list[npt.NDArray[np.generic]] | None:
    if arrays is None:
        return None
    if isinstance(arrays, list | tuple) and len(arrays) == len(like) and all(
        np.ndim(a) == 2 for a in arrays
    ):
        return [np.asarray(a) for a in arrays]
    return [np.asarray(arrays)]


def segment_statistics(
    values: ArrayOrArrays,
    segment_map: ArrayOrArrays,
    mask: ArrayOrArrays | None = None,
) -> dict[int, SegmentStats]:
    """Mean, SD, median and pixel count of ``values`` in each of the 16 AHA segments.

    Parameters
    ----------
    values
        A 2-D value image (e.g. T1 in ms), or a sequence of them (one per slice; pixels of
        the same segment on several slices are pooled).
    segment_map
        The matching segment map(s) from :func:`segment_map`.
    mask
        Optional boolean image(s): only these pixels are used (e.g. the conservative core).

    Returns
    -------
    dict
        Every segment 1-16 to its :class:`SegmentStats`; non-finite values are ignored.

    Raises
    ------
    ValueError
        If shapes or the number of images do not match.
    """
    maps_in = segment_map
    if isinstance(maps_in, list | tuple) and all(np.ndim(m) == 2 for m in maps_in):
        maps = [np.asarray(m) for m in maps_in]
    else:
        maps = [np.asarray(maps_in)]
    vals = _as_list(values, maps)
    masks = _as_list(mask, maps)
    assert vals is not None
    if len(vals) != len(maps) or (masks is not None and len(masks) != len(maps)):
        raise ValueError("values, segment_map and mask must have the same number of images")
    pooled: dict[int, list[npt.NDArray[np.float64]]] = {s: [] for s in ALL_SEGMENTS}
    for index, seg in enumerate(maps):
        value = np.asarray(vals[index], dtype=np.float64)
        if value.shape != seg.shape:
            raise ValueError(f"values {value.shape} and segment map {seg.shape} differ in shape")
        use = np.isfinite(value) & (seg > 0)
        if masks is not None:
            extra = np.asarray(masks[index], dtype=bool)
            if extra.shape != seg.shape:
                raise ValueError(f"mask {extra.shape} and segment map {seg.shape} differ")
            use &= extra
        for number in np.unique(seg[use]):
            pooled.setdefault(int(number), []).append(value[use & (seg == number)])
    stats: dict[int, SegmentStats] = {}
    for number in sorted(pooled):
        data = np.concatenate(pooled[number]) if pooled[number] else np.empty(0)
        n = int(data.size)
        stats[number] = SegmentStats(
            segment=number,
            n_pixels=n,
            mean=float(np.mean(data)) if n else None,
            sd=float(np.std(data, ddof=1)) if n >= 2 else None,
            median=float(np.median(data)) if n else None,
        )
    return stats


def transmurality(
    finding: npt.NDArray[np.bool_],
    segment_map: npt.NDArray[np.integer],
    *,
    centre: tuple[float, float] | None = None,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    angular_window_deg: float = 5.0,
) -> dict[int, SegmentTransmurality]:
    """Transmural extent of a binary finding (scar) in each AHA segment of one slice.

    One ray per degree is cast from the LV centre; along each ray the wall is the set of
    samples inside a segment, and the enhanced fraction is the part of that chord inside
    ``finding``.  A circular median over ``angular_window_deg`` suppresses single-ray spikes
    from isolated pixels.  Each ray belongs to the segment most of its wall samples are in.

    Parameters
    ----------
    finding
        Boolean image (e.g. late-enhancing scar); only pixels inside segments count.
    segment_map
        Output of :func:`segment_map` for the slice.
    centre
        LV centre (row, column); the centroid of the region enclosed by the segmented wall
        if ``None``.
    pixel_spacing
        (row, column) spacing in mm, so that rays are evenly spaced in angle.
    angular_window_deg
        Width of the angular median filter (0 for none).

    Returns
    -------
    dict
        Every segment present in ``segment_map`` to its :class:`SegmentTransmurality`.

    Raises
    ------
    ValueError
        If shapes differ or the segment map is empty.
    """
    seg = np.asarray(segment_map)
    scar = np.asarray(finding, dtype=bool)
    if scar.shape != seg.shape:
        raise ValueError(f"finding {scar.shape} and segment map {seg.shape} differ in shape")
    wall = seg > 0
    if not wall.any():
        raise ValueError("The segment map has no myocardium.")
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if centre is None:
        rows, cols = np.nonzero(ndimage.binary_fill_holes(wall))
        centre = (float(rows.mean()), float(cols.mean()))
    wall_rows, wall_cols = np.nonzero(wall)
    reach_mm = float(
        np.max(np.hypot((wall_rows - centre[0]) * spacing[0], (wall_cols - centre[1]) * spacing[1]))
    ) + 2.0 * max(spacing)
    step_mm = RAY_STEP_PX * min(spacing)
    radii = np.arange(0.0, reach_mm, step_mm)
    theta, _ = ray_directions(N_RAYS)
    rr = centre[0] + np.outer(np.sin(theta), radii) / spacing[0]
    cc = centre[1] + np.outer(np.cos(theta), radii) / spacing[1]
    seg_samples = ndimage.map_coordinates(seg.astype(np.int16), [rr, cc], order=0, cval=0)
    scar_samples = ndimage.map_coordinates(scar.astype(np.uint8), [rr, cc], order=0, cval=0)
    in_wall = seg_samples > 0
    wall_count = in_wall.sum(axis=1)
    enhanced = (in_wall & (scar_samples > 0)).sum(axis=1)
    hit = wall_count >= 2
    fraction = np.where(hit, enhanced / np.maximum(wall_count, 1), 0.0)
    window = round(angular_window_deg * N_RAYS / 360.0)
    if window > 1:
        smoothed = ndimage.median_filter(fraction, size=window | 1, mode="wrap")
        fraction = np.where(hit, smoothed, 0.0)
    ray_segment = np.zeros(N_RAYS, dtype=np.intp)
    for k in np.flatnonzero(hit):
        numbers, counts = np.unique(seg_samples[k][in_wall[k]], return_counts=True)
        ray_segment[k] = int(numbers[np.argmax(counts)])
    result: dict[int, SegmentTransmurality] = {}
    for number in (int(n) for n in np.unique(seg[wall])):
        rays = fraction[ray_segment == number]
        pixels = seg == number
        result[number] = SegmentTransmurality(
            segment=number,
            n_rays=int(rays.size),
            max_fraction=float(rays.max()) if rays.size else None,
            mean_fraction=float(rays.mean()) if rays.size else None,
            area_fraction=float(scar[pixels].mean()) if pixels.any() else None,
        )
    return result


# --------------------------------------------------------------------------------------------
# Slice levels
# --------------------------------------------------------------------------------------------

SAME_POSITION_MM: Final = 0.5
"""Slice locations closer than this are the same position (repeated acquisitions)."""


def assign_levels(
    slice_locations: Sequence[float],
    lv_cavity_areas: Sequence[float | None],
    *,
    single_slice_level: str = Level.MID,
) -> list[str]:
    """Basal, mid or apical for each slice of a parallel short-axis stack.

    The stack is treated as contiguous slabs, one per slice position, reaching halfway to
    the neighbouring positions (half the adjacent gap beyond the end slices).  The covered
    length is split into thirds and each slice gets the third its centre lies in; the end
    towards which the LV cavity area grows (sign of the least-squares slope of area on
    position) is basal.  Three evenly spaced slices are thus basal, mid, apical; six are two
    of each; four are basal, mid, mid, apical.

    Parameters
    ----------
    slice_locations
        Position of each slice along the stack normal (mm), in any order.
    lv_cavity_areas
        LV blood-pool area of each slice (any unit), ``None`` or NaN where unknown.
    single_slice_level
        Level of a stack with a single position (single-slice T1 protocols image the
        mid ventricle).

    Returns
    -------
    list of str
        One level per slice, in the input order; ``"unknown"`` for every slice if the
        base-apex direction cannot be told (fewer than two positions with a cavity area, or
        no area trend).

    Raises
    ------
    ValueError
        If the two sequences differ in length.
    """
    locations = np.asarray(slice_locations, dtype=np.float64)
    if len(lv_cavity_areas) != locations.size:
        raise ValueError(
            f"{locations.size} slice locations but {len(lv_cavity_areas)} cavity areas"
        )
    if locations.size == 0:
        return []
    order = np.argsort(locations, kind="stable")
    positions: list[float] = []
    group = np.empty(locations.size, dtype=np.intp)
    for index in order:
        if not positions or locations[index] - positions[-1] > SAME_POSITION_MM:
            positions.append(float(locations[index]))
        group[index] = len(positions) - 1
    if len(positions) == 1:
        return [str(single_slice_level)] * locations.size

    areas = np.array([np.nan if a is None else float(a) for a in lv_cavity_areas])
    known = np.isfinite(areas)
    unknown = ["unknown"] * locations.size
    if len(np.unique(group[known])) < 2:
        return unknown
    slope = float(np.polyfit(locations[known], areas[known], 1)[0])
    span = float(np.ptp(locations[known]))
    if not np.isfinite(slope) or abs(slope) * span <= 1e-6 * float(np.max(np.abs(areas[known]))):
        return unknown

    pos = np.asarray(positions)
    low_edge = pos[0] - (pos[1] - pos[0]) / 2
    high_edge = pos[-1] + (pos[-1] - pos[-2]) / 2
    edges = np.concatenate([[low_edge], (pos[:-1] + pos[1:]) / 2, [high_edge]])
    fraction = (pos - edges[0]) / (edges[-1] - edges[0])  # 0 at the low end
    # The cavity grows towards the base: with a negative slope the low end is basal.
    from_base = fraction if slope < 0 else 1.0 - fraction
    names = [Level.BASAL, Level.MID, Level.APICAL]
    per_position = [str(names[min(int(f * 3.0), 2)]) for f in from_base]
    return [per_position[g] for g in group]
