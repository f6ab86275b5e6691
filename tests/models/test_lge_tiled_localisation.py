"""Tests of the tiled localisation hypothesis of the two-stage LGE segmenter
(models.runtime.lgeseg.two_stage: tiled_candidates, stack_ringness, segment_stack)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.evaluation.lgeseg.evaluate_real import DEFAULT_DATA, load_emidec  # noqa: E402
from models.runtime.lgeseg.two_stage import (  # noqa: E402
    DEFAULT_LOCATOR,
    DEFAULT_SEGMENTER,
    TwoStageLgeSegmenter,
    stack_ringness,
)
from models.training.lgeseg.data import EVAL_SEED_START, eval_stack  # noqa: E402
from models.training.lgeseg.real_scores import ASSUMED_SPACING_MM, score_output  # noqa: E402
from plugins.api import Label, SegmentationOutput  # noqa: E402
from plugins.lge.segmenter import LgeContrast  # noqa: E402

needs_weights = pytest.mark.skipif(
    not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()),
    reason="two-stage weights not committed")
HEART = (Label.LV_BLOOD_POOL, Label.MYOCARDIUM, Label.SCAR, Label.MVO)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _small_off_centre(image: np.ndarray, labels: np.ndarray, scale: int = 3,
                      at: tuple[float, float] = (0.3, 0.68)) -> tuple[np.ndarray, np.ndarray]:
    """The slice placed in a canvas ``scale`` times its size, off its centre, the rest at
    the image's minimum: the heart fills a small part of a wide field of view."""
    rows, cols = image.shape
    canvas = np.full((rows * scale, cols * scale), float(image.min()), dtype=np.float32)
    where = np.zeros(canvas.shape, dtype=np.uint8)
    r0 = int(at[0] * rows * scale - rows / 2)
    c0 = int(at[1] * cols * scale - cols / 2)
    canvas[r0:r0 + rows, c0:c0 + cols] = image
    where[r0:r0 + rows, c0:c0 + cols] = labels
    return canvas, where


def test_stack_ringness_counts_unsegmented_slices_as_zero() -> None:
    ring = np.zeros((8, 8), dtype=np.uint8)
    outputs = [SegmentationOutput(ring, 0.1, None, {"lv_enclosure": 0.9}),
               SegmentationOutput(ring, 1.0, "no heart", {"lv_enclosure": 0.8}),
               SegmentationOutput(ring, 0.2, None, {"lv_enclosure": 0.6})]
    assert stack_ringness(outputs) == pytest.approx(0.5)
    assert stack_ringness([]) == 0.0


@needs_weights
def test_the_tiles_find_a_small_heart_far_from_the_centre() -> None:
    mid = eval_stack(EVAL_SEED_START + 1011)[4]
    image, labels = _small_off_centre(mid.image.astype(np.float32), mid.labels)
    heart = np.argwhere(np.isin(labels, HEART))
    centre = heart.mean(axis=0)
    diameter = 2.0 * math.sqrt(len(heart) / math.pi)
    found = TwoStageLgeSegmenter().tiled_candidates(image, 6)
    assert found, "no candidate at all"
    assert min(math.dist(c.centre, centre) for c in found) < 0.5 * diameter
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)


@needs_weights
def test_a_stack_keeps_the_more_ring_like_hypothesis_and_says_so() -> None:
    stack = eval_stack(EVAL_SEED_START + 1012)[:4]
    placed = [_small_off_centre(s.image.astype(np.float32), s.labels) for s in stack]
    images = [p[0] for p in placed]
    spacing = [s.pixel_spacing for s in stack]
    contrast = LgeContrast(str(stack[0].contrast))
    outputs = TwoStageLgeSegmenter().segment_stack(images, spacing, contrast)
    chosen = outputs[0].details["localisation_hypothesis"]
    assert all(o.details["localisation_hypothesis"] == chosen for o in outputs)
    whole, tiles = chosen["ringness_whole_image"], chosen["ringness_with_tiles"]
    assert (tiles is None) == (whole >= 1.0), "tiles are tried unless every ring is closed"
    if tiles is None:
        tiles = 0.0
    assert chosen["chosen"] == ("whole image and half-size tiles" if tiles > whole
                                else "whole image")
    assert stack_ringness(outputs) == pytest.approx(max(whole, tiles), abs=1e-3)
    alone = TwoStageLgeSegmenter(tiled_hypothesis=False).segment_stack(images, spacing,
                                                                      contrast)
    assert "localisation_hypothesis" not in alone[0].details
    assert stack_ringness(alone) == pytest.approx(whole, abs=1e-3)


EMIDEC = DEFAULT_DATA / "emidec-dev"


@needs_weights
@pytest.mark.skipif(not (EMIDEC / "images").is_dir(),
                    reason="EMIDEC dev split not found (real data are not in the repository)")
def test_a_real_small_heart_in_a_wide_field_of_view_is_found_with_the_tiles() -> None:
    """EMIDEC Case_P066 (measuring only): the whole-image localiser misses its heart on
    every slice; the tiled hypothesis finds it (models/README.md: Dice 0.00 -> 0.74)."""
    stack = sorted((item for item in load_emidec(EMIDEC) if item[0] == "Case_P066"),
                   key=lambda item: item[1])
    images = [item[2] for item in stack]
    spacing = [(ASSUMED_SPACING_MM, ASSUMED_SPACING_MM)] * len(stack)

    def dice(outputs: list[SegmentationOutput]) -> float:
        return float(np.mean([score_output(o, "Case_P066", item[1], item[3]).myo_dice
                              for o, item in zip(outputs, stack, strict=True)]))

    tiled = TwoStageLgeSegmenter().segment_stack(images, spacing, LgeContrast.MAGNITUDE)
    alone = TwoStageLgeSegmenter(tiled_hypothesis=False).segment_stack(
        images, spacing, LgeContrast.MAGNITUDE)
    assert tiled[0].details["localisation_hypothesis"]["chosen"] == (
        "whole image and half-size tiles")
    assert dice(alone) < 0.2 < 0.6 < dice(tiled)
