"""Polar geometry on a short-axis slice: sampling an image on rays from a centre, radius
functions of angle and their filters, and the ray-wise searches for the endocardial and
epicardial borders (shared by the classical segmenter and the analysis' QC)."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

INSIDE_WEIGHT: Final = 1.5
"""Weight of non-myocardial samples inside the wall relative to myocardial samples outside:
including fat, lung or blood biases T1, excluding a sliver of myocardium does not."""
OUTSIDE_MM: Final = 2.0
"""Depth beyond the epicardial border over which myocardial samples count against it."""


def circular_filter(
    values: npt.NDArray[np.float64], size: int, kind: str
) -> npt.NDArray[np.float64]:
    """Median, grey opening or grey closing of a periodic 1-D signal."""
    size = max(1, int(size) | 1)
    if kind == "median":
        return np.asarray(ndimage.median_filter(values, size=size, mode="wrap"), np.float64)
    if kind == "opening":
        return np.asarray(ndimage.grey_opening(values, size=size, mode="wrap"), np.float64)
    if kind == "closing":
        return np.asarray(ndimage.grey_closing(values, size=size, mode="wrap"), np.float64)
    raise ValueError(f"unknown filter {kind!r}")


def polar_sample(
    image: npt.NDArray[Any],
    centre_mm: tuple[float, float],
    spacing: tuple[float, float],
    angles: npt.NDArray[np.float64],
    radii_mm: npt.NDArray[np.float64],
    order: int = 1,
) -> npt.NDArray[np.float64]:
    """Sample an image on rays from a centre, shape (angles, radii); outside the image is 0."""
    rows = centre_mm[0] + np.outer(np.sin(angles), radii_mm)
    cols = centre_mm[1] + np.outer(np.cos(angles), radii_mm)
    coords = np.stack([rows / spacing[0], cols / spacing[1]])
    return np.asarray(
        ndimage.map_coordinates(
            np.asarray(image, dtype=np.float64), coords, order=order, mode="constant", cval=0.0
        ),
        dtype=np.float64,
    )


def pixel_polar_coordinates(
    shape: tuple[int, int], centre_mm: tuple[float, float], spacing: tuple[float, float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Radius (mm) and angle (rad, [0, 2 pi)) of every pixel centre about a centre."""
    rr, cc = np.indices(shape, dtype=np.float64)
    dy = rr * spacing[0] - centre_mm[0]
    dx = cc * spacing[1] - centre_mm[1]
    return np.hypot(dy, dx), np.mod(np.arctan2(dy, dx), 2 * np.pi)


def radius_at(
    radius_by_angle: npt.NDArray[np.float64],
    angles: npt.NDArray[np.float64],
    query: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Periodic linear interpolation of a radius function of angle."""
    extended_angles = np.concatenate([angles, [angles[0] + 2 * np.pi]])
    extended = np.concatenate([radius_by_angle, radius_by_angle[:1]])
    return np.interp(np.mod(query - angles[0], 2 * np.pi) + angles[0], extended_angles, extended)


def padded_box(mask: npt.NDArray[np.bool_], margin: int = 1) -> tuple[slice, slice]:
    """Rows and columns of a mask's bounding box grown by ``margin`` pixels (within the image).

    With ``margin`` >= 1 a crop to this box has the same distance transform, hole filling,
    convex hull and connectivity inside it as the whole image (every pixel outside is 0 and a
    ring of 0 separates the box from them); an empty mask gives the whole image.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return slice(0, mask.shape[0]), slice(0, mask.shape[1])
    return (slice(max(0, int(rows[0]) - margin), int(rows[-1]) + margin + 1),
            slice(max(0, int(cols[0]) - margin), int(cols[-1]) + margin + 1))


def inscribed_centre(
    mask: npt.NDArray[np.bool_], spacing: tuple[float, float]
) -> tuple[float, float]:
    """Centre (mm) of the largest inscribed disk: robust to regions attached to the cavity."""
    box = padded_box(mask)
    distance = ndimage.distance_transform_edt(mask[box], sampling=spacing)
    peak = float(distance.max())
    rr, cc = np.nonzero(distance >= 0.85 * peak)
    rr = rr + box[0].start
    cc = cc + box[1].start
    return float(rr.mean() * spacing[0]), float(cc.mean() * spacing[1])


def endocardial_crossings(
    profile: npt.NDArray[np.float64],
    mask_profile: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    threshold: float,
    step: float,
    pixel_mm: float,
) -> npt.NDArray[np.float64]:
    """Per ray, where the profile falls below ``threshold`` at the edge of the cavity region.

    The search starts 1.5 pixels inside the region's edge, so islands of myocardial T1 fully
    inside the cavity (papillary muscles) are passed over; the crossing is interpolated
    linearly between samples.
    """
    n_angles = profile.shape[0]
    result = np.empty(n_angles)
    back = round(1.5 * pixel_mm / step)
    for i in range(n_angles):
        inside = mask_profile[i] >= 0.5
        exit_index = int(np.argmin(inside)) if not inside.all() else radii.size - 1
        start = max(0, exit_index - back)
        below = np.nonzero(profile[i, start:] < threshold)[0]
        j = start + (int(below[0]) if below.size else radii.size - 1 - start)
        if 0 < j < radii.size and profile[i, j - 1] != profile[i, j]:
            frac = (profile[i, j - 1] - threshold) / (profile[i, j - 1] - profile[i, j])
            result[i] = radii[j - 1] + float(np.clip(frac, 0.0, 1.0)) * step
        else:
            result[i] = radii[min(j, radii.size - 1)]
    return result


def convex_hull_radius(
    angles: npt.NDArray[np.float64], radius: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Radius, along each ray, of the convex hull of a star-shaped outline about the origin."""
    from scipy.spatial import ConvexHull, QhullError

    points = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return radius
    result = radius.copy()
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    # Each hull facet is a line n.x + d = 0 with outward normal n (origin inside: d < 0).
    # A ray t*u meets it at t = -d / (n.u) when n.u > 0; the hull radius is the nearest hit.
    normals = hull.equations[:, :2]
    offsets = hull.equations[:, 2]
    dots = directions @ normals.T
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.where(dots > 1e-9, -offsets[np.newaxis, :] / dots, np.inf)
    nearest = hits.min(axis=1)
    valid = np.isfinite(nearest) & (nearest > 0)
    result[valid] = np.maximum(radius[valid], nearest[valid])
    return result


def robust_harmonic_fit(
    angles: npt.NDArray[np.float64],
    radius: npt.NDArray[np.float64],
    order: int = 2,
    iterations: int = 8,
) -> npt.NDArray[np.float64]:
    """Low-order Fourier fit of a radius function, with Tukey-biweight reweighting."""
    columns = [np.ones_like(angles)]
    for k in range(1, order + 1):
        columns += [np.cos(k * angles), np.sin(k * angles)]
    design = np.stack(columns, axis=1)
    weights = np.ones_like(radius)
    fit = np.full_like(radius, float(np.median(radius)))
    for _ in range(iterations):
        w = np.sqrt(weights)
        coefficients, *_ = np.linalg.lstsq(design * w[:, None], radius * w, rcond=None)
        fit = design @ coefficients
        residual = radius - fit
        scale = max(1.4826 * float(np.median(np.abs(residual))), 0.5)
        u = residual / (4.685 * scale)
        weights = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if np.count_nonzero(weights) < 2 * order + 2:
            break
    return np.asarray(fit, dtype=np.float64)


def epicardial_costs(
    membership: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    r_endo: npt.NDArray[np.float64],
    thickness: npt.NDArray[np.float64],
    step: float,
    outside_mm: float = OUTSIDE_MM,
) -> npt.NDArray[np.float64]:
    """Cost (mm) of each (ray, wall thickness): non-myocardial profile inside the wall plus
    myocardial profile in the ``outside_mm`` just outside it."""
    n_angles = membership.shape[0]
    n_out = max(1, round(outside_mm / step))
    cost = np.empty((n_angles, thickness.size))
    for i in range(n_angles):
        start = int(np.searchsorted(radii, r_endo[i]))
        band = membership[i, start:]
        if band.size == 0:
            cost[i] = thickness.size * step
            continue
        out_cum = np.concatenate([[0.0], np.cumsum(1.0 - band)])
        in_cum = np.concatenate([[0.0], np.cumsum(band)])
        ends = np.minimum(np.round(thickness / step).astype(int), band.size)
        after = np.minimum(ends + n_out, band.size)
        inside_wrong = out_cum[ends]
        outside_wrong = in_cum[after] - in_cum[ends]
        # Rays running off the profile (image edge) count the missing samples as wrong.
        missing = (ends + n_out) - after
        cost[i] = (INSIDE_WEIGHT * inside_wrong + outside_wrong + missing) * step
    return cost


def circular_dp(
    cost: npt.NDArray[np.float64], *, max_jump: int, jump_penalty: float
) -> npt.NDArray[np.int64]:
    """Minimum-cost path over angles with bounded state changes, approximately periodic.

    The angle sequence is unrolled three times and the middle turn of the optimal path is
    returned, so the start and end of the turn agree with their neighbours.
    """
    n_angles, n_states = cost.shape
    tripled = np.concatenate([cost, cost, cost])
    total = tripled[0].copy()
    back = np.zeros(tripled.shape, dtype=np.int64)
    jumps = np.arange(-max_jump, max_jump + 1)
    # sources[j, s] = state reached from by jump j into state s; invalid sources cost inf.
    sources = np.arange(n_states)[np.newaxis, :] - jumps[:, np.newaxis]
    valid = (sources >= 0) & (sources < n_states)
    safe_sources = np.where(valid, sources, 0)
    penalties = np.where(valid, jump_penalty * np.abs(jumps)[:, np.newaxis], np.inf)
    columns = np.arange(n_states)
    for i in range(1, tripled.shape[0]):
        candidates = total[safe_sources] + penalties
        # The first jump (in -max_jump..max_jump order) of least cost, as a strict "<" scan.
        choice = np.argmin(candidates, axis=0)
        best = candidates[choice, columns]
        arg = np.where(np.isfinite(best), safe_sources[choice, columns], 0)
        total = best + tripled[i]
        back[i] = arg
    path = np.empty(tripled.shape[0], dtype=np.int64)
    path[-1] = int(np.argmin(total))
    for i in range(tripled.shape[0] - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path[n_angles : 2 * n_angles]


def wall_evidence(
    membership: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    r_endo: float,
    wall: float,
    step: float,
) -> float:
    """Fraction of samples inside the chosen wall that have myocardial T1."""
    start = int(np.searchsorted(radii, r_endo))
    stop = min(membership.size, start + max(1, round(wall / step)))
    segment = membership[start:stop]
    return float(segment.mean()) if segment.size else 0.0


