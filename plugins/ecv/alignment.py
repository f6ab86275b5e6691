"""Where the post-contrast and the native frames meet: each post-contrast frame paired with
the native frame of the same plane, the native map resampled onto the post-contrast grid, and
the in-plane shift that aligns the two."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import LoadedSeries, SliceResult, SourceFrame
from plugins.t1map.frames import PARALLEL_COSINE

MAX_PAIR_DISTANCE_MM: Final = 2.0
"""Largest distance between a post-contrast plane and its native partner: a quarter of the
usual 8 mm slice thickness, so the two sample the same tissue."""
MAX_SHIFT_MM: Final = 10.0
"""Search radius of the in-plane alignment: breath-hold positions of one study differ by a
few mm, rarely up to ~10 mm; beyond that the two maps do not show the same slice."""
REGISTRATION_WINDOW_MM: Final = 45.0
"""Half-size of the square window around the LV centre used for alignment."""
GRADIENT_SIGMA_PX: Final = 1.0


@dataclass
class FramePair:
    """A post-contrast frame and its native partner (indices into their series' frames)."""

    post_index: int
    native_index: int
    distance_mm: float


def pair_frames(
    post: LoadedSeries,
    native: LoadedSeries,
    native_slices: Mapping[int, SliceResult],
    excluded: set[int],
) -> tuple[list[FramePair], list[int]]:
    """Each post-contrast frame (but ``excluded``) with the nearest analysed native frame
    within :data:`MAX_PAIR_DISTANCE_MM`; returns the pairs and the frames left unpaired."""
    pairs: list[FramePair] = []
    unpaired: list[int] = []
    for index, frame in enumerate(post.frames):
        if index in excluded:
            continue
        best: FramePair | None = None
        for native_index in native_slices:
            distance = plane_distance_mm(frame, native.frames[native_index])
            if distance is None or distance > MAX_PAIR_DISTANCE_MM:
                continue
            if best is None or distance < best.distance_mm:
                best = FramePair(index, native_index, distance)
        if best is None:
            unpaired.append(index)
        else:
            pairs.append(best)
    return pairs, unpaired


def plane_distance_mm(a: SourceFrame, b: SourceFrame) -> float | None:
    """Distance between two parallel image planes (mm); ``None`` when not parallel."""
    if abs(float(np.dot(a.normal, b.normal))) < PARALLEL_COSINE:
        return None
    offset = np.asarray(a.image_position, np.float64) - np.asarray(b.image_position, np.float64)
    return abs(float(np.dot(b.normal, offset)))


def same_grid(a: SourceFrame, b: SourceFrame) -> bool:
    """Whether two frames share one pixel grid (shape, spacing, orientation and plane)."""
    return (
        a.pixels.shape == b.pixels.shape
        and np.allclose(a.pixel_spacing, b.pixel_spacing, atol=1e-4)
        and np.allclose(a.image_orientation, b.image_orientation, atol=1e-4)
        and float(np.linalg.norm(
            np.cross(
                np.asarray(a.image_position) - np.asarray(b.image_position), a.normal
            )
        )) < 1e-3
    )


def grid_coordinates(target: SourceFrame, source: SourceFrame) -> npt.NDArray[np.float64]:
    """Pixel coordinates (row, column) in ``source`` of every pixel centre of ``target``."""
    rows, cols = target.pixels.shape
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    t_row = np.asarray(target.image_orientation[:3])
    t_col = np.asarray(target.image_orientation[3:])
    points = (
        np.asarray(target.image_position)[None, None, :]
        + (c * target.pixel_spacing[1])[..., None] * t_row
        + (r * target.pixel_spacing[0])[..., None] * t_col
    )
    offset = points - np.asarray(source.image_position)
    s_row = np.asarray(source.image_orientation[:3])
    s_col = np.asarray(source.image_orientation[3:])
    return np.stack([
        offset @ s_col / source.pixel_spacing[0],
        offset @ s_row / source.pixel_spacing[1],
    ])


def resample(
    image: npt.NDArray[Any], coords: npt.NDArray[np.float64] | None, order: int
) -> npt.NDArray[Any]:
    """``image`` sampled at ``coords`` (:func:`grid_coordinates`; None: as it is)."""
    if coords is None:
        return image
    return np.asarray(
        ndimage.map_coordinates(image, coords, order=order, mode="constant", cval=0),
        dtype=image.dtype,
    )


def estimate_shift(
    fixed: npt.NDArray[np.floating[Any]],
    moving: npt.NDArray[np.floating[Any]],
    spacing: tuple[float, float],
    *,
    centre: tuple[float, float] | None = None,
    max_shift_mm: float = MAX_SHIFT_MM,
    window_mm: float = REGISTRATION_WINDOW_MM,
) -> tuple[tuple[float, float], bool]:
    """In-plane translation that carries ``fixed`` onto ``moving``.

    Phase correlation of the gradient magnitudes (so contrast inversion does not matter) in
    a Hann-weighted window around ``centre``, with the peak searched within
    ``max_shift_mm`` and refined to sub-pixel by a parabola per axis.

    Parameters
    ----------
    fixed, moving
        Two images on the same pixel grid.
    spacing
        (row, column) pixel spacing in mm.
    centre
        (row, column) centre of the window; the image centre by default.
    max_shift_mm
        Search radius.
    window_mm
        Half-size of the square window.

    Returns
    -------
    tuple
        ``((d_row, d_col), at_limit)``: ``moving(p) ≈ fixed(p - d)`` in pixels, and whether
        the correlation rises beyond the search radius at the peak (the shift is then not
        trusted).
    """
    rows, cols = fixed.shape
    cr, cc = centre if centre is not None else ((rows - 1) / 2.0, (cols - 1) / 2.0)
    half_r = max(8, round(window_mm / spacing[0]))
    half_c = max(8, round(window_mm / spacing[1]))
    r0, r1 = max(0, round(cr) - half_r), min(rows, round(cr) + half_r)
    c0, c1 = max(0, round(cc) - half_c), min(cols, round(cc) + half_c)

    def edges(image: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        patch = np.nan_to_num(np.asarray(image[r0:r1, c0:c1], np.float64))
        grad = ndimage.gaussian_gradient_magnitude(patch, GRADIENT_SIGMA_PX)
        scale = float(np.percentile(grad, 99)) or 1.0
        grad = np.minimum(grad / scale, 1.0)
        window = np.outer(np.hanning(patch.shape[0]), np.hanning(patch.shape[1]))
        return np.asarray((grad - grad.mean()) * window)

    f_fixed = np.fft.fft2(edges(fixed))
    f_moving = np.fft.fft2(edges(moving))
    cross = f_moving * np.conj(f_fixed)
    magnitude = np.abs(cross)
    cross /= magnitude + 1e-3 * float(magnitude.max() or 1.0)
    surface = np.fft.ifft2(cross).real
    n_r, n_c = surface.shape
    dr = np.fft.fftfreq(n_r) * n_r
    dc = np.fft.fftfreq(n_c) * n_c
    distance = np.hypot(dr[:, None] * spacing[0], dc[None, :] * spacing[1])
    allowed = distance <= max_shift_mm
    search = np.where(allowed, surface, -np.inf)
    peak_r, peak_c = np.unravel_index(int(np.argmax(search)), search.shape)

    def refine(values: tuple[float, float, float]) -> float:
        left, mid, right = values
        denom = left - 2 * mid + right
        return 0.0 if denom >= 0 else float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))

    sub_r = refine((
        surface[(peak_r - 1) % n_r, peak_c], surface[peak_r, peak_c],
        surface[(peak_r + 1) % n_r, peak_c],
    ))
    sub_c = refine((
        surface[peak_r, (peak_c - 1) % n_c], surface[peak_r, peak_c],
        surface[peak_r, (peak_c + 1) % n_c],
    ))
    shift = (float(dr[peak_r]) + sub_r, float(dc[peak_c]) + sub_c)
    # The peak is trusted unless the correlation keeps rising beyond the search radius.
    at_limit = False
    for step_r in (-1, 0, 1):
        for step_c in (-1, 0, 1):
            nr, nc = (peak_r + step_r) % n_r, (peak_c + step_c) % n_c
            if not allowed[nr, nc] and surface[nr, nc] > surface[peak_r, peak_c]:
                at_limit = True
    return shift, at_limit
