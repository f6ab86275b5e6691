"""What the classical T1 segmenter knows of tissues on a native T1 map: their T1 ranges by
field strength, the texture that tells tissue from fit noise (lung, air), blood-pool regions
and their necks, the RV blood pool, and the wall of myocardial T1 around a candidate cavity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import Label
from plugins.t1map.polar import inscribed_centre, padded_box, polar_sample

WILD_FRACTION: Final = 0.25
"""Relative distance from the local median that marks a pixel as a fit failure."""
MAX_WILD_FRACTION: Final = 0.08
"""Largest fraction of fit-failure pixels in a region accepted as blood."""
MAX_BLOOD_SPREAD: Final = 0.10
"""Largest robust relative spread (1.4826 MAD / median) of a blood region's raw T1."""


@dataclass(frozen=True)
class TissueRanges:
    """Native MOLLI T1 ranges (ms) used to find and check structures.

    Attributes
    ----------
    blood
        T1 range searched for blood pools (covers haematocrit 0.30–0.55 with noise).
    myocardium
        Physiologically plausible native myocardial T1 (normal to severe diffuse disease).
    blood_plausible
        Physiologically plausible blood T1 (haematocrit extremes).
    field_strength_t
        Field strength the ranges are for, ``None`` if unknown (then the union of the
        1.5 T and 3 T ranges is used).
    """

    blood: tuple[float, float]
    myocardium: tuple[float, float]
    blood_plausible: tuple[float, float]
    field_strength_t: float | None


# MOLLI native T1, ms.  1.5 T: myocardium 950-1050 healthy, up to ~1300 in amyloid/oedema;
# blood 1400-1870 for haematocrit 0.50-0.34 (Treibel 2016).  3 T: myocardium 1100-1250
# healthy (up to ~1500), blood ~1650-2200.  Liver 550-650 / 750-850, fat 250-430.
_RANGES: Final[Mapping[float, TissueRanges]] = {
    1.5: TissueRanges((1280.0, 2300.0), (800.0, 1400.0), (1250.0, 2100.0), 1.5),
    3.0: TissueRanges((1480.0, 2700.0), (950.0, 1650.0), (1450.0, 2450.0), 3.0),
}


def tissue_ranges(field_strength_t: float | None) -> TissueRanges:
    """T1 ranges for a field strength, interpolated linearly between 1.5 T and 3 T.

    Parameters
    ----------
    field_strength_t
        Field strength in tesla; ``None`` gives the union of the 1.5 T and 3 T ranges.
        Values outside 1.5–3 T are clamped to the nearer table (T1 data are tabulated
        only for these two).

    Returns
    -------
    TissueRanges
        The ranges in ms.
    """
    low, high = _RANGES[1.5], _RANGES[3.0]
    if field_strength_t is None:
        return TissueRanges(
            (low.blood[0], high.blood[1]),
            (low.myocardium[0], high.myocardium[1]),
            (low.blood_plausible[0], high.blood_plausible[1]),
            None,
        )
    weight = float(np.clip((field_strength_t - 1.5) / 1.5, 0.0, 1.0))

    def mix(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        return (a[0] + weight * (b[0] - a[0]), a[1] + weight * (b[1] - a[1]))

    return TissueRanges(
        mix(low.blood, high.blood),
        mix(low.myocardium, high.myocardium),
        mix(low.blood_plausible, high.blood_plausible),
        float(field_strength_t),
    )


def disk(radius_px: int, spacing: tuple[float, float]) -> npt.NDArray[np.bool_]:
    """A structuring element that is a disk in mm (ellipse in pixels)."""
    radius_mm = radius_px * min(spacing)
    ry = max(1, int(np.floor(radius_mm / spacing[0])))
    rx = max(1, int(np.floor(radius_mm / spacing[1])))
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return np.asarray(
        (yy * spacing[0]) ** 2 + (xx * spacing[1]) ** 2 <= radius_mm**2 + 1e-9, dtype=bool
    )


@dataclass(frozen=True)
class Band:
    """Soft membership of T1 values in the myocardial range (1 inside, linear ramps)."""

    low: float
    low_zero: float
    high: float
    high_zero: float

    def membership(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        rising = np.clip((values - self.low_zero) / max(self.low - self.low_zero, 1e-6), 0, 1)
        falling = np.clip((self.high_zero - values) / max(self.high_zero - self.high, 1e-6), 0, 1)
        return np.asarray(np.minimum(rising, falling), dtype=np.float64)


def blood_mode(
    smooth: npt.NDArray[np.float64],
    smoothness: npt.NDArray[np.float64],
    ranges: TissueRanges,
    pixel_area: float,
    min_area_mm2: float = 150.0,
) -> float | None:
    """Most frequent T1 among smooth pixels in the blood range: the subject's blood T1.

    The LV and RV cavities hold most blood-range pixels of a short-axis map.  ``None`` when
    fewer than ``min_area_mm2`` of such pixels exist.
    """
    values = smooth[(smooth >= ranges.blood[0]) & (smooth <= ranges.blood[1]) & (smoothness >= 1)]
    if values.size * pixel_area < min_area_mm2:
        return None
    bins = np.arange(ranges.blood[0], ranges.blood[1] + 20.0, 20.0)
    counts, edges = np.histogram(values, bins=bins)
    counts = ndimage.uniform_filter1d(counts.astype(np.float64), size=5, mode="constant")
    peak = int(np.argmax(counts))
    return float(0.5 * (edges[peak] + edges[peak + 1]))


def split_at_necks(
    region: npt.NDArray[np.bool_], spacing: tuple[float, float], depth_mm: float = 3.0
) -> list[npt.NDArray[np.bool_]]:
    """Parts of a region separated at narrow necks (distance-transform watershed).

    Returns an empty list when the region has a single core (no maxima of the distance to
    its edge that stand ``depth_mm`` above the neck between them).
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    box = padded_box(region)
    # Fill holes first: papillary muscles inside the cavity must not create necks.
    filled = ndimage.binary_fill_holes(region[box])
    distance = ndimage.distance_transform_edt(filled, sampling=spacing)
    markers, n_markers = ndimage.label(h_maxima(distance, depth_mm))
    if n_markers < 2:
        return []
    parts = watershed(-distance, markers, mask=filled)
    found = []
    for k in range(1, n_markers + 1):
        part = np.zeros(region.shape, dtype=bool)
        part[box] = parts == k
        found.append(part)
    return found


def add_rv(
    labels: npt.NDArray[np.uint8],
    image: npt.NDArray[np.float64],
    smooth: npt.NDArray[np.float64],
    blood: npt.NDArray[np.bool_],
    spacing: tuple[float, float],
) -> npt.NDArray[np.uint8]:
    """Label as RV blood pool the largest blood region (>= 100 mm2) within 4 mm of the LV."""
    heart = labels > 0
    rest, n = ndimage.label(blood & ~heart)
    if n == 0:
        return labels
    near = ndimage.distance_transform_edt(~heart, sampling=spacing) <= 4.0
    wild = wild_pixels(image, smooth)
    best, best_area = 0, 100.0
    for index in np.unique(rest[near]):
        if index == 0:
            continue
        region = rest == index
        area = float(np.count_nonzero(region)) * spacing[0] * spacing[1]
        if (
            area < best_area
            or relative_spread(image, region) > MAX_BLOOD_SPREAD
            or float(np.mean(wild[region])) > MAX_WILD_FRACTION
        ):
            continue
        best, best_area = int(index), area
    result = labels.copy()
    if best:
        result[rest == best] = Label.RV_BLOOD_POOL
    return result


def wild_pixels(
    image: npt.NDArray[np.float64], smooth: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Pixels far (more than 25 %) from their 3x3 median: fit failures, never tissue noise."""
    return np.asarray(np.abs(image - smooth) > WILD_FRACTION * np.maximum(smooth, 100.0))


def smoothness_map(
    image: npt.NDArray[np.float64], smooth: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """1 where the raw map is locally smooth (tissue), 0 where it is noise (lung, air fits).

    Two local measures: the 3x3 median absolute deviation from the median-filtered map,
    relative to it (~0.03 in myocardium and blood, low across a straight tissue edge, ~0.5 in
    speckle), and the fraction of "wild" pixels in a 5x5 window (0 in tissue; lung and air
    with failed fits have 20 % or more even where the remaining pixels look like tissue).
    """
    deviation = np.abs(image - smooth)
    local_mad = np.asarray(ndimage.median_filter(deviation, size=3), dtype=np.float64)
    relative = local_mad / np.maximum(smooth, 100.0)
    mad_term = np.clip((0.2 - relative) / 0.1, 0.0, 1.0)
    wild_fraction = ndimage.uniform_filter(wild_pixels(image, smooth).astype(np.float64), size=5)
    wild_term = np.clip((0.2 - wild_fraction) / 0.1, 0.0, 1.0)
    return np.asarray(np.minimum(mad_term, wild_term), dtype=np.float64)


def relative_spread(image: npt.NDArray[np.float64], region: npt.NDArray[np.bool_]) -> float:
    """Robust relative spread (1.4826 MAD / median) of raw values in a region's interior."""
    box = padded_box(region)
    inner = ndimage.binary_erosion(region[box], iterations=1)
    values = image[box][inner if np.count_nonzero(inner) >= 10 else region[box]]
    median = float(np.median(values))
    if median <= 0:
        return np.inf
    return 1.4826 * float(np.median(np.abs(values - median))) / median


def solidity_of(mask: npt.NDArray[np.bool_]) -> float:
    """Area over convex-hull area."""
    from skimage.morphology import convex_hull_image

    hull = convex_hull_image(mask[padded_box(mask)])
    hull_area = float(np.count_nonzero(hull))
    return float(np.count_nonzero(mask)) / hull_area if hull_area else 0.0


def wall_fraction(
    smooth: npt.NDArray[np.float64],
    smoothness: npt.NDArray[np.float64],
    region: npt.NDArray[np.bool_],
    spacing: tuple[float, float],
    ranges: TissueRanges,
    wall_mm: tuple[float, float],
    n_angles: int = 72,
) -> float:
    """Fraction of rays from a region on which a wall of myocardial T1 of plausible thickness
    follows the region's edge.

    The LV cavity is ringed by a 3–20 mm wall of myocardial T1.  The RV cavity has such a
    wall only on its septal side; a vessel surrounded by fat or air has none; a vessel
    surrounded by lung (whose MOLLI T1 can fall in the myocardial range at 3 T) has a
    "wall" that does not end.
    """
    centre = inscribed_centre(region, spacing)
    rr, cc = np.nonzero(region)
    extent = float(np.max(np.hypot(rr * spacing[0] - centre[0], cc * spacing[1] - centre[1])))
    step = 0.5 * min(spacing)
    radii = np.arange(0.0, extent + wall_mm[1] + 8.0, step)
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    profile = polar_sample(smooth, centre, spacing, angles, radii)
    texture = polar_sample(smoothness, centre, spacing, angles, radii)
    inside = polar_sample(region.astype(np.float64), centre, spacing, angles, radii) >= 0.5
    myocardial = (
        (profile >= ranges.myocardium[0]) & (profile <= ranges.myocardium[1]) & (texture >= 0.5)
    )
    transition = max(1, round(2.0 / step))  # partial-volume samples allowed before the wall
    gap = max(1, round(1.0 / step))  # shorter interruptions (noise) do not end the wall
    ok = 0
    for i in range(n_angles):
        exit_index = int(np.argmin(inside[i])) if not inside[i].all() else radii.size
        ray = myocardial[i, exit_index:]
        first = np.nonzero(ray[: transition + 1])[0]
        if first.size == 0:
            continue
        run_start = int(first[0])
        outside = ~ray[run_start:]
        # End of the wall: first run of `gap` consecutive non-myocardial samples.
        if outside.size >= gap:
            window = np.convolve(outside.astype(int), np.ones(gap, dtype=int), "valid")
            ends = np.nonzero(window == gap)[0]
            length = float(ends[0]) * step if ends.size else np.inf
        else:
            length = np.inf
        if wall_mm[0] <= length <= wall_mm[1]:
            ok += 1
    return ok / n_angles


