"""Tests of the LGE segmenter cascade (models.runtime.lgeseg.cascade): which network segments a
stack, and that every output names it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from models.runtime.lgeseg.cascade import (
    MIN_SURE_SHARE,
    SURE_UNCERTAINTY,
    CascadeLgeSegmenter,
    is_sure,
)
from plugins.api import FloatImage, Label, SegmentationOutput
from plugins.lge.analysis import MAX_UNCERTAINTY
from plugins.lge.segmenter import LgeContrast

SHAPE = (32, 32)


def _ring() -> np.ndarray:
    rows, cols = np.mgrid[:SHAPE[0], :SHAPE[1]]
    r = np.hypot(rows - 16.0, cols - 16.0)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[r < 10] = Label.MYOCARDIUM
    labels[r < 6] = Label.LV_BLOOD_POOL
    return labels


class _Scripted:
    """A segmenter whose per-slice uncertainty is given in advance (``None``: rejected)."""

    def __init__(self, name: str, uncertainties: Sequence[float | None]) -> None:
        self.name, self.version = name, "9.9.9"
        self.weights_sha256: str | None = name.encode().hex().ljust(64, "0")[:64]
        self.uncertainties = list(uncertainties)
        self.calls = 0
        self.stack_calls = 0

    def _output(self, k: int) -> SegmentationOutput:
        u = self.uncertainties[k]
        if u is None:
            return SegmentationOutput(np.zeros(SHAPE, dtype=np.uint8), 1.0, "no ring", {})
        return SegmentationOutput(_ring(), u, None, {"by": self.name})

    def segment(self, image: FloatImage, pixel_spacing: tuple[float, float],
                contrast: LgeContrast, cine: FloatImage | None = None) -> SegmentationOutput:
        self.calls += 1
        return self._output(self.calls - 1)

    def segment_stack(self, images: Sequence[FloatImage],
                      pixel_spacings: Sequence[tuple[float, float]], contrast: LgeContrast,
                      offsets: Sequence[tuple[float, float]] | None = None
                      ) -> list[SegmentationOutput]:
        self.stack_calls += 1
        return [self._output(k) for k in range(len(images))]


def _stack(n: int) -> tuple[list[FloatImage], list[tuple[float, float]]]:
    return [np.zeros(SHAPE, dtype=np.float32) for _ in range(n)], [(1.5, 1.5)] * n


def test_sureness_is_the_analysis_flag_threshold() -> None:
    assert SURE_UNCERTAINTY == MAX_UNCERTAINTY
    ring = _ring()
    assert is_sure(SegmentationOutput(ring, SURE_UNCERTAINTY))
    assert not is_sure(SegmentationOutput(ring, SURE_UNCERTAINTY + 0.01))
    assert not is_sure(SegmentationOutput(ring, None))
    assert not is_sure(SegmentationOutput(ring, 0.0, "rejected"))


def test_a_stack_the_first_network_is_sure_of_stays_with_it() -> None:
    first = _Scripted("first", [0.1, 0.2, 0.1, 0.5, 0.1, 0.1, 0.1, 0.1])  # 7 of 8 sure
    fallback = _Scripted("fallback", [0.0] * 8)
    outputs = CascadeLgeSegmenter(first, fallback, min_sure_share=0.75).segment_stack(
        *_stack(8), LgeContrast.PSIR)
    assert fallback.stack_calls == 0 and first.calls == 8
    assert all(o.details["by"] == "first" for o in outputs)
    named = outputs[0].details["cascade"]
    assert named["network"] == "first" and named["weights_sha256"] == first.weights_sha256
    assert "7 of 8" in named["reason"]
    assert outputs[3].uncertainty == 0.5  # its unsure slice is returned as it is (flagged)


def test_exactly_the_share_needed_keeps_the_stack() -> None:
    first = _Scripted("first", [0.1, None, 0.9, 0.1, 0.6, 0.1, 0.5, 0.1])  # 4 of 8 sure
    fallback = _Scripted("fallback", [0.0] * 8)
    outputs = CascadeLgeSegmenter(first, fallback, min_sure_share=0.5).segment_stack(
        *_stack(8), LgeContrast.PSIR)
    assert fallback.stack_calls == 0 and outputs[0].details["cascade"]["network"] == "first"


def test_a_stack_the_first_network_is_unsure_of_goes_whole_to_the_fallback() -> None:
    # 5 of 8 unsure at the sixth slice: 3 sure < 4 needed (50 %); it stops there.
    first = _Scripted("first", [None, 0.9, 0.1, 0.6, 0.7, 0.8, 0.1, 0.1])
    fallback = _Scripted("fallback", [0.2] * 8)
    cascade = CascadeLgeSegmenter(first, fallback, min_sure_share=0.5)
    outputs = cascade.segment_stack(*_stack(8), LgeContrast.MAGNITUDE)
    assert first.calls == 6, "the first network is not asked further once the stack is lost"
    assert fallback.stack_calls == 1
    assert [o.details["by"] for o in outputs] == ["fallback"] * 8
    named = outputs[0].details["cascade"]
    assert named["network"] == "fallback" and named["weights_sha256"] == fallback.weights_sha256
    assert "segmented the stack" in named["reason"]


def test_a_single_slice_is_a_stack_of_one() -> None:
    sure = CascadeLgeSegmenter(_Scripted("first", [0.1]), _Scripted("fallback", [0.2]))
    assert sure.segment(_stack(1)[0][0], (1.5, 1.5), LgeContrast.PSIR).details["by"] == "first"
    unsure = CascadeLgeSegmenter(_Scripted("first", [None]), _Scripted("fallback", [0.2]))
    assert unsure.segment(_stack(1)[0][0], (1.5, 1.5),
                          LgeContrast.PSIR).details["by"] == "fallback"


def test_the_pair_is_named_by_both_weights() -> None:
    a, b, c = _Scripted("a", []), _Scripted("b", []), _Scripted("c", [])
    assert CascadeLgeSegmenter(a, b).weights_sha256 != CascadeLgeSegmenter(a, c).weights_sha256
    assert CascadeLgeSegmenter(a, b).weights_sha256 == CascadeLgeSegmenter(a, b).weights_sha256
    b.weights_sha256 = None
    assert CascadeLgeSegmenter(a, b).weights_sha256 is None
    with pytest.raises(ValueError):
        CascadeLgeSegmenter(a, c, min_sure_share=0.0)
    assert 0.5 <= MIN_SURE_SHARE <= 1.0
