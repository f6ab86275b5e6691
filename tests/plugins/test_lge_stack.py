"""LGE analysis with a segmenter that localises the heart per stack (``segment_stack``), and the
stack geometry it is given (:mod:`plugins.lib.stack_geometry`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from plugins.api import FloatImage, Label, SegmentationOutput
from plugins.lge import LgeContrast, analyse
from plugins.lib.stack_geometry import in_plane_offsets
from tests.networks import node_options
from tests.plugins.test_lge import KnownLabels, make_stack


class StackLabels(KnownLabels):
    """Known labels, handed out through ``segment_stack``; records how it was called."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        super().__init__(table)
        self.stack_calls: list[tuple[int, list[tuple[float, float]] | None]] = []
        self.slice_calls = 0

    def segment(self, image: FloatImage, pixel_spacing: tuple[float, float],
                contrast: LgeContrast, cine: FloatImage | None = None) -> SegmentationOutput:
        self.slice_calls += 1
        return super().segment(image, pixel_spacing, contrast, cine)

    def segment_stack(self, images: Sequence[FloatImage],
                      pixel_spacings: Sequence[tuple[float, float]], contrast: LgeContrast,
                      offsets: Sequence[tuple[float, float]] | None = None
                      ) -> list[SegmentationOutput]:
        self.stack_calls.append((len(images), None if offsets is None else list(offsets)))
        return [KnownLabels.segment(self, image, spacing, contrast)
                for image, spacing in zip(images, pixel_spacings, strict=True)]


def test_a_stack_segmenter_gets_the_whole_stack_once_with_its_geometry() -> None:
    stack = make_stack(3, "ischaemic_lad", n_slices=5)
    segmenter = StackLabels(stack.segmenter.table)
    result = analyse(stack.series, {"segmenter": segmenter, "use_cine": False})
    assert segmenter.slice_calls == 0
    assert len(segmenter.stack_calls) == 1
    n, offsets = segmenter.stack_calls[0]
    assert n == len(stack.series.frames) == len(result.slices)
    ordered = sorted(stack.series.frames, key=lambda f: f.slice_location)
    expected = in_plane_offsets([f.image_position for f in ordered],
                                [f.image_orientation for f in ordered],
                                [f.pixel_spacing for f in ordered])
    assert offsets is not None
    np.testing.assert_allclose(offsets, expected)
    assert all(np.isin(s.labels, (Label.MYOCARDIUM, Label.SCAR)).any() for s in result.slices)


def test_two_stage_analysis_localises_the_heart_per_stack() -> None:
    pytest.importorskip("torch")
    from models.runtime.lgeseg.two_stage import DEFAULT_LOCATOR, DEFAULT_SEGMENTER

    if not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()):
        pytest.skip("two-stage weights not committed")
    stack = make_stack(4, "ischaemic_lad", n_slices=4)
    result = analyse(stack.series, node_options("lge", segmenter="two-stage", use_cine=False))
    assert len(result.slices) >= 3
    rows = result.extra["slices"]
    assert all(str(r["segmenter"]["heart_localisation"]).startswith("stack chain")
               for r in rows)


def test_offsets_follow_the_row_and_column_directions_of_an_oblique_plane() -> None:
    row_dir = np.array([0.6, 0.8, 0.0])
    col_dir = np.array([0.0, 0.0, -1.0])
    first = np.array([10.0, -20.0, 30.0])
    moved = first + 12.0 * row_dir + 5.0 * col_dir + 8.0 * np.cross(row_dir, col_dir)
    offsets = in_plane_offsets([first, moved], [(*row_dir, *col_dir)] * 2,
                               [(1.25, 2.0), (1.25, 2.0)])
    assert offsets[1] == pytest.approx((5.0 / 1.25, 12.0 / 2.0))
