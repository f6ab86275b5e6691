"""Tests of the per-stack heart localisation (models.runtime.lgeseg.stack_locate), on synthetic
candidate lists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.runtime.lgeseg.stack_locate import (
    HeartCandidate,
    choose_chain,
    fill_chain,
    locate_stack,
)
from plugins.lib.stack_geometry import in_plane_offsets


def _heart(row: float, col: float, diameter: float = 40.0, score: float = 100.0
           ) -> HeartCandidate:
    return HeartCandidate((row, col), diameter, score)


def test_a_decoy_that_outscores_the_heart_on_one_slice_is_passed_over() -> None:
    stack = [[_heart(100, 120)], [_heart(102, 121)],
             [_heart(190, 60, 45, 150), _heart(103, 122, 38, 90)],
             [_heart(104, 122, 36)], [_heart(105, 123, 34)]]
    assert choose_chain(stack) == [0, 0, 1, 0, 0]


def test_a_slice_whose_only_candidate_is_far_off_is_filled_from_its_neighbours() -> None:
    stack = [[_heart(100, 120, 40)], [_heart(30, 200, 40)], [_heart(104, 124, 30)]]
    points = locate_stack(stack)
    middle = points[1]
    assert middle is not None and middle.candidate is None
    assert middle.centre == pytest.approx((102.0, 122.0))
    assert middle.diameter == pytest.approx(math.sqrt(40.0 * 30.0))
    assert [p.candidate for p in points if p is not None] == [0, None, 0]


def test_slices_without_candidates_get_the_nearest_chain_point_at_the_ends() -> None:
    stack: list[list[HeartCandidate]] = [[], [_heart(100, 120)], [_heart(101, 121)], []]
    points = locate_stack(stack)
    assert all(p is not None for p in points)
    assert points[0] is not None and points[0].centre == (100, 120)
    assert points[3] is not None and points[3].centre == (101, 121)
    assert points[0].candidate is None and points[1] is not None and points[1].candidate == 0


def test_a_stack_without_any_candidate_has_no_chain() -> None:
    assert locate_stack([[], []]) == [None, None]
    assert choose_chain([]) == []


def test_a_heart_that_shrinks_smoothly_towards_the_apex_stays_on_the_chain() -> None:
    stack = [[_heart(100 + k, 120, 50 * 0.85 ** k, 100 * 0.7 ** k)] for k in range(8)]
    assert choose_chain(stack) == [0] * 8


def test_a_shifted_field_of_view_is_not_a_moving_heart() -> None:
    # Slice 2's grid starts 30 rows lower (ImagePositionPatient moved 45 mm along the
    # column direction at 1.5 mm per pixel): its heart appears 30 rows higher in pixels.
    orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    positions = [(0.0, 0.0, 0.0), (0.0, 0.0, 8.0), (0.0, 45.0, 16.0)]
    offsets = in_plane_offsets(positions, [orientation] * 3, [(1.5, 1.5)] * 3)
    assert offsets[2] == pytest.approx((30.0, 0.0))
    assert offsets[1] == pytest.approx((0.0, 0.0))
    stack = [[_heart(100, 120)], [_heart(101, 121)],
             [_heart(101, 121, 40, 150), _heart(72, 121, 40, 100)]]
    assert choose_chain(stack, offsets) == [0, 0, 1]
    assert choose_chain(stack) == [0, 0, 0]
    filled = fill_chain([[_heart(100, 120)], [], [_heart(72, 121)]], [0, None, 0], offsets)
    assert filled[1] is not None
    assert np.allclose(filled[1].centre, (101.0, 120.5))


def _ring_passes(grid: int = 48) -> np.ndarray:
    """One pass of six-class probabilities: an LV disc ringed by myocardium, centred."""
    rows, cols = np.mgrid[:grid, :grid] - (grid - 1) / 2.0
    radius = np.hypot(rows, cols)
    calls = np.where(radius < 6, 1, np.where(radius < 10, 2, 0))
    return np.eye(6, dtype=np.float32)[calls].transpose(2, 0, 1)[None]


@pytest.mark.parametrize("aspect", [0.5, 1.0, 2.0])
def test_segmented_aspect_is_the_stretch_of_the_crop(aspect: float) -> None:
    pytest.importorskip("torch")
    from models.runtime.lgeseg.two_stage import _square_affine, segmented_aspect

    affine = _square_affine((100.0, 120.0), 1.5, 48, aspect)
    found = segmented_aspect(_ring_passes(), affine)
    assert found == pytest.approx(aspect, rel=0.03)
    assert segmented_aspect(np.zeros_like(_ring_passes()), affine) is None


def test_a_stretched_stack_is_segmented_round_again() -> None:
    """A phantom stack stretched 1.8 times in width (as a re-export that lost the
    pixel aspect) is found stretched and segmented better than without the correction."""
    pytest.importorskip("torch")
    from scipy import ndimage

    from models.runtime.lgeseg.two_stage import (
        DEFAULT_LOCATOR,
        DEFAULT_SEGMENTER,
        TwoStageLgeSegmenter,
    )
    from models.training.lgeseg.data import EVAL_SEED_START, eval_stack
    from plugins.api import Label
    from plugins.lge.segmenter import LgeContrast

    if not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()):
        pytest.skip("two-stage weights not committed")
    stack = eval_stack(EVAL_SEED_START + 1010)
    images = [ndimage.zoom(s.image.astype(np.float32), (1.0, 1.8), order=1) for s in stack]
    truth = [ndimage.zoom(s.labels, (1.0, 1.8), order=0) for s in stack]
    spacing = [s.pixel_spacing for s in stack]
    contrast = LgeContrast(str(stack[0].contrast))
    wall = (Label.MYOCARDIUM, Label.SCAR, Label.MVO)

    def dice(outputs: list) -> float:
        scores = []
        for output, true in zip(outputs, truth, strict=True):
            a, b = np.isin(output.labels, wall), np.isin(true, wall)
            scores.append(2.0 * (a & b).sum() / (a.sum() + b.sum()))
        return float(np.mean(scores))

    corrected = TwoStageLgeSegmenter().segment_stack(images, spacing, contrast)
    plain = TwoStageLgeSegmenter(correct_stretch=False).segment_stack(images, spacing, contrast)
    assert corrected[0].details["stretch_corrected"] > 1.2
    assert plain[0].details["stretch_corrected"] == 1.0
    assert dice(corrected) > dice(plain)
