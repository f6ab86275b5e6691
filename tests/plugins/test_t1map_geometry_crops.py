"""The classical T1 segmenter's region geometry on a crop equals the whole image's.

Neck splitting, convex hull, inscribed centre and interior spread are computed on the
region's padded bounding box (:func:`plugins.t1map.polar.padded_box`); the minimum-cost wall
path is vectorised over jumps.  These tests hold them to the whole-image computations and to
a plain reference of the dynamic programme, on random regions (touching the image edge
included) and on costs with ties.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage
from skimage.morphology import convex_hull_image, h_maxima
from skimage.segmentation import watershed

from plugins.t1map.polar import circular_dp, inscribed_centre, padded_box
from plugins.t1map.tissue import relative_spread, solidity_of, split_at_necks

SPACING = (1.3, 1.1)


def _random_region(rng: np.random.Generator, shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """Two or three overlapping or touching blobs, sometimes cut by the image edge."""
    rows, cols = np.indices(shape)
    region = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(2, 4))):
        centre = rng.uniform(-5, shape[0] + 5), rng.uniform(-5, shape[1] + 5)
        radius = rng.uniform(4, 14)
        region |= (rows - centre[0]) ** 2 + ((cols - centre[1]) * 0.9) ** 2 <= radius**2
    if rng.random() < 0.5:  # a hole, as a papillary muscle makes
        region[tuple(np.argwhere(region)[len(np.argwhere(region)) // 2])] = False
    return region


def _whole_image_necks(region: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.bool_]]:
    filled = ndimage.binary_fill_holes(region)
    distance = ndimage.distance_transform_edt(filled, sampling=SPACING)
    markers, n_markers = ndimage.label(h_maxima(distance, 3.0))
    if n_markers < 2:
        return []
    parts = watershed(-distance, markers, mask=filled)
    return [np.asarray(parts == k) for k in range(1, n_markers + 1)]


def _whole_image_centre(mask: npt.NDArray[np.bool_]) -> tuple[float, float]:
    distance = ndimage.distance_transform_edt(mask, sampling=SPACING)
    rr, cc = np.nonzero(distance >= 0.85 * float(distance.max()))
    return float(rr.mean() * SPACING[0]), float(cc.mean() * SPACING[1])


@pytest.mark.parametrize("seed", range(40))
def test_cropped_geometry_equals_whole_image(seed: int) -> None:
    rng = np.random.default_rng(seed)
    region = _random_region(rng, (70, 60))
    image = rng.normal(1500.0, 60.0, region.shape)

    cropped = split_at_necks(region, SPACING)
    whole = _whole_image_necks(region)
    assert len(cropped) == len(whole)
    for ours, theirs in zip(cropped, whole, strict=True):
        assert ours.shape == region.shape
        assert np.array_equal(ours, theirs)

    assert inscribed_centre(region, SPACING) == _whole_image_centre(region)
    hull = convex_hull_image(region)
    assert solidity_of(region) == float(region.sum()) / float(hull.sum())
    inner = ndimage.binary_erosion(region, iterations=1)
    values = image[inner if np.count_nonzero(inner) >= 10 else region]
    median = float(np.median(values))
    assert relative_spread(image, region) == pytest.approx(
        1.4826 * float(np.median(np.abs(values - median))) / median, rel=0, abs=0)


def test_padded_box_grows_within_the_image() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[0, 5] = mask[3, 11] = True
    assert padded_box(mask) == (slice(0, 5), slice(4, 13))
    assert padded_box(np.zeros((4, 4), dtype=bool)) == (slice(0, 4), slice(0, 4))


def _reference_dp(cost: npt.NDArray[np.float64], max_jump: int, jump_penalty: float
                  ) -> npt.NDArray[np.int64]:
    """The dynamic programme as a plain scan over jumps (the first strict improvement wins)."""
    n_angles, n_states = cost.shape
    tripled = np.concatenate([cost, cost, cost])
    total = tripled[0].copy()
    back = np.zeros(tripled.shape, dtype=np.int64)
    for i in range(1, tripled.shape[0]):
        best = np.full(n_states, np.inf)
        arg = np.zeros(n_states, dtype=np.int64)
        for state in range(n_states):
            for jump in range(-max_jump, max_jump + 1):
                source = state - jump
                if 0 <= source < n_states:
                    candidate = total[source] + jump_penalty * abs(jump)
                    if candidate < best[state]:
                        best[state], arg[state] = candidate, source
        total = best + tripled[i]
        back[i] = arg
    reversed_path = [int(np.argmin(total))]
    for row in back[:0:-1]:
        reversed_path.append(int(row[reversed_path[-1]]))
    return np.array(reversed_path[::-1][n_angles: 2 * n_angles], dtype=np.int64)


@pytest.mark.parametrize("seed", range(12))
def test_circular_dp_matches_the_plain_scan(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_angles, n_states = int(rng.integers(8, 30)), int(rng.integers(3, 25))
    # Rounded costs make ties, where the order of the jumps decides.
    cost = np.round(rng.uniform(0.0, 3.0, (n_angles, n_states)), 1)
    max_jump = int(rng.integers(1, 4))
    penalty = float(rng.choice([0.0, 0.5, 1.0]))
    assert np.array_equal(circular_dp(cost, max_jump=max_jump, jump_penalty=penalty),
                          _reference_dp(cost, max_jump, penalty))
