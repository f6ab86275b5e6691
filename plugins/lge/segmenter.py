"""LV myocardium and scar segmentation of LGE images behind a replaceable interface.

:class:`LgeSegmenter` is what the LGE analysis needs from a segmentation method: for one
short-axis slice, labels on the source pixel grid (:class:`plugins.api.Label`: background,
LV blood pool, non-scarred myocardium, RV blood pool, scar, microvascular obstruction).
The trained network (``models.lgeseg``) implements it; tests may implement it with known
labels to check the quantification alone.

The image is given as loaded (rescale or real-world value mapping applied), so it may still
carry a vendor's PSIR offset (Siemens stores zero signal as 4096) and arbitrary scaling: a
segmenter must not rely on absolute intensities.  ``cine`` is the matched short-axis cine
image (same position and cardiac phase, already resampled onto the LGE pixel grid) when the
study holds one; a segmenter that cannot use it ignores it and says so in ``details``.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from plugins.api import FloatImage, SegmentationOutput

__all__ = ["LgeContrast", "LgeSegmenter", "SegmentationOutput"]


class LgeContrast(enum.StrEnum):
    """Which reconstruction of an inversion-recovery LGE acquisition an image is."""

    PSIR = "psir"
    """Phase-sensitive (signed real) reconstruction: remote myocardium near zero."""
    MAGNITUDE = "magnitude"
    """Magnitude reconstruction: remote myocardium nulled (dark) only if the TI was right."""


@runtime_checkable
class LgeSegmenter(Protocol):
    """A method that segments LV blood pool, myocardium, RV blood pool and scar on one slice."""

    name: str
    version: str
    weights_sha256: str | None
    """SHA-256 of the model weights; ``None`` for a method without weights."""

    def segment(
        self,
        image: FloatImage,
        pixel_spacing: tuple[float, float],
        contrast: LgeContrast,
        cine: FloatImage | None = None,
    ) -> SegmentationOutput:
        """Segment one slice.

        Parameters
        ----------
        image
            The LGE image as loaded, float32 (rows, columns).
        pixel_spacing
            (row, column) spacing in mm.
        contrast
            PSIR or magnitude.
        cine
            Matched cine image on the same grid as ``image``, or ``None``.

        Returns
        -------
        SegmentationOutput
            Labels on the source grid (``Label.SCAR`` and ``Label.MVO`` for enhancement);
            ``reason`` set and no myocardium when the slice could not be segmented.
        """
        ...
