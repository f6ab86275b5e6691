"""Two-channel (LGE + matched cine) U-Net segmentation of short-axis LGE slices.

:class:`UNetFusionSegmenter` implements :class:`plugins.lge.segmenter.LgeSegmenter` for slices
that have a matched cine image (same position, phase nearest the LGE TriggerTime, resampled
onto the LGE pixel grid and aligned in-plane by :mod:`plugins.lge.cine`).  Both images are
normalised by :func:`models.runtime.lgeseg.segmenter.normalise` (offset and scale invariant, per
image), resampled onto the LGE-only network's 160 x 160 grid of 1.5 mm pixels around the LGE
image centre and given to the network as two channels (LGE, cine).  Test-time flip,
probabilities back on the source grid, post-processing (one myocardial ring, scar only
inside it), plausibility check and uncertainty are exactly those of
:class:`~models.runtime.lgeseg.segmenter.UNetLgeSegmenter`.

The cine shows the myocardium grey between bright blood and dark lung whatever the
inversion time, which helps where LGE alone is ambiguous: bright scar next to bright blood,
poorly nulled or thin myocardium.  Scar itself is only visible in the LGE channel.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.runtime.lgeseg.segmenter import (
    GRID_SIZE,
    GRID_SPACING_MM,
    N_CLASSES,
    WEIGHTS_DIR,
    normalise,
    segmentation_from_passes,
)
from models.runtime.segmentation import (
    ModelUnavailableError,
    load_unet,
    predict_passes,
    to_grid,
)
from plugins.api import FloatImage, QCFlag, SegmentationOutput, Severity
from plugins.lge.segmenter import LgeContrast, LgeSegmenter

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FUSION_METADATA",
    "DEFAULT_FUSION_WEIGHTS",
    "FUSION_MODEL_NAME",
    "FUSION_UNAVAILABLE",
    "UNetFusionSegmenter",
    "default_fusion_segmenter",
]

FUSION_MODEL_NAME: Final = "cmr-node LGE+cine U-Net"
DEFAULT_FUSION_WEIGHTS: Final = WEIGHTS_DIR / "lge_cine_unet.pt"
DEFAULT_FUSION_METADATA: Final = WEIGHTS_DIR / "lge_cine_unet.json"
FUSION_UNAVAILABLE: Final = "fusion_model_unavailable"
"""QC code of the flag returned by :func:`default_fusion_segmenter` when it cannot be used."""

F32 = npt.NDArray[np.float32]


class UNetFusionSegmenter:
    """LV myocardium and scar segmentation from an LGE slice and its matched cine.

    Implements :class:`plugins.lge.segmenter.LgeSegmenter`; ``cine`` is required.

    Parameters
    ----------
    weights
        The ``.pt`` state dict; the committed ``lge_cine_unet.pt`` if ``None``.
    metadata
        Its provenance JSON; ``weights`` with suffix ``.json`` if ``None``.
    test_time_flip
        Average the prediction with that of the mirrored inputs.
    mvo_output
        Label MVO separately; as the model's record says if ``None``.

    Raises
    ------
    ModelUnavailableError
        If a file is missing or unreadable, the SHA-256 differs from the JSON, or the
        network is not a two-channel six-class network.
    """

    def __init__(
        self,
        weights: Path | None = None,
        metadata: Path | None = None,
        *,
        test_time_flip: bool = True,
        mvo_output: bool | None = None,
    ) -> None:
        weights = DEFAULT_FUSION_WEIGHTS if weights is None else Path(weights)
        metadata = weights.with_suffix(".json") if metadata is None else Path(metadata)
        model, record, sha = load_unet(weights, metadata)
        if model.config.n_classes != N_CLASSES or model.config.in_channels != 2:
            raise ModelUnavailableError(
                f"The weights {weights.name} are not a two-channel (LGE + cine) "
                f"{N_CLASSES}-class network.")
        self._model = model
        self.name: str = str(record.get("model_name", FUSION_MODEL_NAME))
        self.version: str = str(record["model_version"])
        self.weights_sha256: str | None = sha
        self.test_time_flip = test_time_flip
        self.mvo_output = (bool(record.get("mvo_output", False)) if mvo_output is None
                           else mvo_output)
        self.record: Mapping[str, Any] = record

    def probabilities(self, image: FloatImage, cine: FloatImage,
                      pixel_spacing: tuple[float, float]) -> F32:
        """Per-pass class probabilities on the network grid, shape (passes, 6, g, g)."""
        lge, lge_background = normalise(image)
        cine_values, cine_background = normalise(cine)
        grid = np.stack([
            to_grid(lge, pixel_spacing, GRID_SIZE, GRID_SPACING_MM, lge_background),
            to_grid(cine_values, pixel_spacing, GRID_SIZE, GRID_SPACING_MM, cine_background),
        ])
        return predict_passes(self._model, grid, self.test_time_flip)

    def segment(
        self,
        image: FloatImage,
        pixel_spacing: tuple[float, float],
        contrast: LgeContrast,
        cine: FloatImage | None = None,
    ) -> SegmentationOutput:
        """Segment one slice from the LGE image and its matched cine on the same grid.

        Raises
        ------
        ValueError
            If ``cine`` is missing or its shape differs from the image's.
        """
        started = time.perf_counter()
        values = np.asarray(image, dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"Expected a 2-D LGE image, got shape {values.shape}")
        if cine is None:
            raise ValueError("The LGE + cine network needs the matched cine image")
        cine_values = np.asarray(cine, dtype=np.float32)
        if cine_values.shape != values.shape:
            raise ValueError(f"The cine {cine_values.shape} is not on the LGE grid "
                             f"{values.shape}")
        spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
        if min(spacing) <= 0:
            raise ValueError(f"Pixel spacing must be positive, got {pixel_spacing}")
        passes = self.probabilities(values, cine_values, spacing)
        details: dict[str, Any] = {
            "model": self.name,
            "model_version": self.version,
            "contrast": str(LgeContrast(contrast)),
            "cine_used": True,
            "test_time_flip": self.test_time_flip,
            "network_grid": f"{GRID_SIZE}x{GRID_SIZE} at {GRID_SPACING_MM} mm, channels "
                            "LGE + cine",
            "mvo_output": self.mvo_output,
        }
        return segmentation_from_passes(
            passes, (values.shape[0], values.shape[1]), spacing, self.mvo_output, details,
            started,
        )


def _protocol_check(segmenter: UNetFusionSegmenter) -> LgeSegmenter:
    return segmenter


@functools.lru_cache(maxsize=1)
def _cached_default() -> UNetFusionSegmenter:
    return UNetFusionSegmenter()


def default_fusion_segmenter() -> tuple[UNetFusionSegmenter | None, QCFlag | None]:
    """The committed LGE + cine network, or ``None`` and an INFO flag saying why not.

    Loaded once per process (weights hash checked against the JSON).  Without it the LGE
    analysis segments every slice with the LGE-only network.
    """
    try:
        return _cached_default(), None
    except (ModelUnavailableError, ImportError) as exc:
        logger.warning("LGE + cine model unavailable: %s", exc)
        return None, QCFlag(
            FUSION_UNAVAILABLE,
            Severity.INFO,
            f"The LGE + cine segmentation model is unavailable ({exc}); every slice was "
            "segmented from the LGE alone.",
        )
