"""The LGE segmenter cascade: the phantom-trained U-Net where it is sure, else the sim-to-real one.

Two committed networks have complementary strengths (figures in ``models/README.md``):

- the one-stage U-Net (:class:`models.runtime.lgeseg.segmenter.UNetLgeSegmenter`, trained on the
  physics phantoms) meets the phantom targets, scar included, and on real LGE it almost
  never answers wrongly *and* sure: on the 135 EMIDEC dev slices every slice it segmented
  badly was flagged (rejected, or uncertainty above the analysis' threshold), but it is sure
  of only 16;
- the two-stage segmenter (:class:`models.runtime.lgeseg.two_stage.TwoStageLgeSegmenter`, trained on
  randomised-appearance label maps) segments 95 % of those real slices, with weaker scar on
  the phantoms.

The cascade asks the U-Net first, slice by slice along the stack, and keeps its answer for
the whole stack only when it is sure of at least :data:`MIN_SURE_SHARE` of the slices;
otherwise (as soon as that share can no longer be reached) the two-stage segmenter segments
the whole stack, its heart localised per stack.  A stack is never mixed, so contours, scar
and volumes of one series come from one network, and every output's ``details["cascade"]``
names the network that produced it, its weights and why it was chosen.  One slice alone
(:meth:`CascadeLgeSegmenter.segment`) is a stack of one.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final, Protocol

from plugins.api import FloatImage, SegmentationOutput
from plugins.lge.segmenter import LgeContrast, LgeSegmenter

logger = logging.getLogger(__name__)

__all__ = ["MIN_SURE_SHARE", "SURE_UNCERTAINTY", "CascadeLgeSegmenter", "is_sure"]

NAME: Final = "cmr-node LGE cascade (one-stage U-Net, else two-stage)"
VERSION: Final = "1.0.0"
MIN_SURE_SHARE: Final = 0.5
"""Share of a stack's slices the U-Net must be sure of to keep the stack (2 of 4, 4 of 8).

Chosen on figures (``models/README.md``): the U-Net is sure of at least half the slices of
all 128 held-out phantom stacks (of 75 %: 120), so at one half the phantom figures are the
U-Net's own; of none of the 135 real EMIDEC LGE slices, so there every case goes to the
two-stage segmenter whatever the share; on the real Sunnybrook cine it is sure of 25 of 37
slices (myocardium Dice 0.69 on them, the two-stage segmenter 0.70)."""
SURE_UNCERTAINTY: Final = 0.35
"""Uncertainty at or below which a segmented slice counts as sure: the LGE analysis' own
threshold for flagging a slice (``plugins.lge.analysis.MAX_UNCERTAINTY``; a test keeps the
two equal, without this module importing the analysis that imports it)."""


class StackSegmenter(LgeSegmenter, Protocol):
    """An LGE segmenter that also segments a whole stack at once."""

    def segment_stack(
        self,
        images: Sequence[FloatImage],
        pixel_spacings: Sequence[tuple[float, float]],
        contrast: LgeContrast,
        offsets: Sequence[tuple[float, float]] | None = None,
    ) -> list[SegmentationOutput]:
        """Segment the slices of one short-axis stack (see ``TwoStageLgeSegmenter``)."""
        ...


def is_sure(output: SegmentationOutput) -> bool:
    """Whether a slice was segmented (no reason given) with uncertainty at most
    :data:`SURE_UNCERTAINTY`."""
    return (output.reason is None and output.uncertainty is not None
            and output.uncertainty <= SURE_UNCERTAINTY)


def _fingerprint(*hashes: str | None) -> str | None:
    """SHA-256 over the networks' weight hashes (``None`` if one has no weights)."""
    if any(h is None for h in hashes):
        return None
    return hashlib.sha256("+".join(str(h) for h in hashes).encode("ascii")).hexdigest()


class CascadeLgeSegmenter:
    """The one-stage U-Net for stacks it is sure of, else the two-stage segmenter.

    Parameters
    ----------
    first
        The network asked first (the phantom-trained U-Net).
    fallback
        The network that segments stacks the first is not sure of (the two-stage
        segmenter); its :meth:`segment_stack` localises the heart per stack.
    min_sure_share
        Share of a stack's slices ``first`` must be sure of (:func:`is_sure`).

    Attributes
    ----------
    weights_sha256
        SHA-256 over both networks' weight hashes: names the pair; each output's
        ``details["cascade"]`` names the network and the weights that produced it.
    """

    name: str = NAME
    version: str = VERSION

    def __init__(self, first: LgeSegmenter, fallback: StackSegmenter, *,
                 min_sure_share: float = MIN_SURE_SHARE) -> None:
        if not 0.0 < min_sure_share <= 1.0:
            raise ValueError(f"min_sure_share {min_sure_share} is not in (0, 1]")
        self.first = first
        self.fallback = fallback
        self.min_sure_share = float(min_sure_share)
        self.weights_sha256: str | None = _fingerprint(first.weights_sha256,
                                                       fallback.weights_sha256)

    def networks(self) -> tuple[LgeSegmenter, LgeSegmenter]:
        """The two networks, first and fallback."""
        return self.first, self.fallback

    def rehearse(self) -> None:
        """Run the fallback's networks once (its first call is slow); see its ``rehearse``."""
        rehearse = getattr(self.fallback, "rehearse", None)
        if rehearse is not None:
            rehearse()

    def segment(
        self,
        image: FloatImage,
        pixel_spacing: tuple[float, float],
        contrast: LgeContrast,
        cine: FloatImage | None = None,
    ) -> SegmentationOutput:
        """Segment one slice: the first network's answer if it is sure, else the fallback's
        (``cine`` is not used)."""
        return self.segment_stack([image], [pixel_spacing], contrast)[0]

    def segment_stack(
        self,
        images: Sequence[FloatImage],
        pixel_spacings: Sequence[tuple[float, float]],
        contrast: LgeContrast,
        offsets: Sequence[tuple[float, float]] | None = None,
    ) -> list[SegmentationOutput]:
        """Segment one short-axis stack with one of the two networks (see the module).

        Parameters
        ----------
        images, pixel_spacings, contrast, offsets
            As :meth:`models.runtime.lgeseg.two_stage.TwoStageLgeSegmenter.segment_stack`.

        Returns
        -------
        list of SegmentationOutput
            One per slice, in order, all from the same network; ``details["cascade"]``
            names it and the reason.
        """
        if len(images) != len(pixel_spacings):
            raise ValueError("One pixel spacing per image is needed.")
        n = len(images)
        if n == 0:
            return []
        needed = math.ceil(self.min_sure_share * n - 1e-9)
        first_outputs: list[SegmentationOutput] = []
        unsure = 0
        for image, spacing in zip(images, pixel_spacings, strict=True):
            output = self.first.segment(image, spacing, contrast)
            first_outputs.append(output)
            unsure += not is_sure(output)
            if n - unsure < needed:
                break
        sure = len(first_outputs) - unsure
        if len(first_outputs) == n and sure >= needed:
            why = (f"{self.first.name} {self.first.version} was sure of {sure} of {n} slices "
                   f"(at least {self.min_sure_share:.0%} needed)")
            return [self._named(output, self.first, why) for output in first_outputs]
        why = (f"{self.first.name} {self.first.version} was not sure of {unsure} of the "
               f"{len(first_outputs)} slices it tried ({sure} of {n} sure; at least "
               f"{self.min_sure_share:.0%} needed), so {self.fallback.name} "
               f"{self.fallback.version} segmented the stack")
        outputs = self.fallback.segment_stack(images, pixel_spacings, contrast, offsets)
        return [self._named(output, self.fallback, why) for output in outputs]

    @staticmethod
    def _named(output: SegmentationOutput, network: LgeSegmenter, why: str
               ) -> SegmentationOutput:
        details: dict[str, Any] = dict(output.details)
        details["cascade"] = {
            "network": network.name,
            "network_version": network.version,
            "weights_sha256": network.weights_sha256,
            "reason": why,
        }
        return replace(output, details=details)
