"""Trained U-Net segmentation of native short-axis T1 maps behind the ``Segmenter`` protocol.

:class:`UNetT1Segmenter` implements :class:`plugins.t1map.segmenter.Segmenter`, so the T1-map
analysis uses it exactly like the classical segmenter.  One slice is processed as follows.

1. **Network grid.**  The map (T1 in ms, clipped to 0–4095 ms) is linearly resampled onto a
   square :data:`GRID_SIZE` grid of :data:`GRID_SPACING_MM` pixels centred on the image
   centre (240 mm field of view, enough for the heart of a cardiac-centred scan), and
   divided by the fixed factor :data:`T1_SCALE_MS`.  No per-image normalisation: the input
   stays physical T1, whatever the vendor's scaling of the stored pixels.
2. **Network.**  :class:`models.runtime.unet.UNet` gives class probabilities (background, LV blood
   pool, myocardium, RV blood pool) for the image and its left-right mirror (test-time
   flip); the two are averaged.
3. **Source grid.**  The averaged probabilities are interpolated linearly back to every
   source pixel centre and the label is their argmax, so the labels lie exactly on the
   source pixel grid.
4. **Post-processing and plausibility.**  Largest connected myocardium; everything the
   myocardial ring encloses is LV blood pool except small enclosed holes, which are
   myocardium; LV blood pool elsewhere is dropped unless it touches the myocardium; RV
   blood pool is the largest RV component within :data:`RV_MAX_GAP_MM` of the myocardium.
   An output whose LV blood pool is smaller than :data:`MIN_LV_AREA_MM2` or not ringed by
   myocardium (:data:`MIN_LV_ENCLOSURE`) is rejected with a reason (the network also
   "finds" shapes in smooth noise).
5. **Uncertainty.**  Mean normalised entropy of the averaged probabilities over the pixels
   either pass calls myocardium, plus the disagreement (1 - Dice) of the two passes'
   myocardium, clipped to [0, 1].

The weights file is checked against the SHA-256 in its provenance JSON before use.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.runtime.segmentation import (
    ModelUnavailableError,
    flip_uncertainty,
    grid_affine,
    load_unet,
    lv_enclosure,
    predict_passes,
    ring_postprocess,
    sha256_of,
)
from models.runtime.segmentation import from_grid as _from_grid
from models.runtime.segmentation import to_grid as _to_grid
from plugins.api import FloatImage, Label, LabelImage, QCFlag, Severity
from plugins.t1map.segmenter import SegmentationOutput, Segmenter

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_METADATA",
    "DEFAULT_WEIGHTS",
    "GRID_SIZE",
    "GRID_SPACING_MM",
    "MODEL_NAME",
    "MODEL_UNAVAILABLE",
    "N_CLASSES",
    "T1_SCALE_MS",
    "ModelUnavailableError",
    "UNetT1Segmenter",
    "default_segmenter",
    "grid_affine",
    "postprocess",
    "sha256_of",
]

MODEL_NAME: Final = "cmr-node T1-map U-Net"
GRID_SIZE: Final = 160
"""Side of the square network grid (pixels)."""
GRID_SPACING_MM: Final = 1.5
"""Pixel spacing of the network grid."""
T1_SCALE_MS: Final = 2000.0
"""Fixed divisor turning T1 in ms into the network input."""
MAX_T1_MS: Final = 4095.0
"""Values above this (fit failures) are clipped, as in the training phantoms."""
N_CLASSES: Final = 4
RV_MAX_GAP_MM: Final = 5.0
"""An RV blood-pool component further than this from the myocardium is dropped."""
MAX_HOLE_MM2: Final = 12.0
"""Enclosed holes smaller than this without LV blood-pool pixels become myocardium."""
MIN_LV_AREA_MM2: Final = 50.0
"""Smallest LV blood pool accepted (apical cavities of the phantoms are > 150 mm2)."""
MIN_LV_ENCLOSURE: Final = 0.75
"""Fraction of the pixels bordering the LV blood pool that must be myocardium: the short-axis
LV is ringed by myocardium (1.0 on every held-out phantom); blobs in smoothed noise score
0.2-0.6."""
MIN_LV_ENCLOSURE_LONG_AXIS: Final = 0.65
""":data:`MIN_LV_ENCLOSURE` for four-chamber long-axis views, whose LV blood pool is open to the
left atrium across the mitral plane (0.76-0.83 with the exact labels of the phantoms)."""
MODEL_UNAVAILABLE: Final = "trained_model_unavailable"
"""QC code of the flag raised when the analysis falls back to the classical segmenter."""

WEIGHTS_DIR: Final = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_WEIGHTS: Final = WEIGHTS_DIR / "t1map_unet.pt"
DEFAULT_METADATA: Final = WEIGHTS_DIR / "t1map_unet.json"


# --------------------------------------------------------------------------------------------
# Geometry and post-processing (shared with the LGE network: models.runtime.segmentation)
# --------------------------------------------------------------------------------------------


def to_grid(t1_ms: npt.NDArray[np.floating[Any]], pixel_spacing: tuple[float, float]
            ) -> npt.NDArray[np.float32]:
    """Network input (grid, grid) of a T1 map in ms."""
    t1 = np.nan_to_num(np.asarray(t1_ms, dtype=np.float32), nan=0.0, posinf=MAX_T1_MS,
                       neginf=0.0)
    t1 = np.clip(t1, 0.0, MAX_T1_MS)
    grid = _to_grid(t1, pixel_spacing, GRID_SIZE, GRID_SPACING_MM, 0.0)
    return (grid / T1_SCALE_MS).astype(np.float32)


def from_grid(probabilities: npt.NDArray[np.float32], shape: tuple[int, int],
              pixel_spacing: tuple[float, float]) -> npt.NDArray[np.float32]:
    """Class probabilities (classes, rows, cols) at the source pixel centres.

    Outside the grid the background has probability 1.
    """
    return _from_grid(probabilities, shape, pixel_spacing, GRID_SIZE, GRID_SPACING_MM)


def postprocess(labels: LabelImage, pixel_spacing: tuple[float, float]) -> LabelImage:
    """Anatomically consistent labels from a raw argmax label image.

    Parameters
    ----------
    labels
        Raw labels (``Label`` values 0-3).
    pixel_spacing
        (row, col) spacing in mm.

    Returns
    -------
    LabelImage
        One myocardium component; LV blood pool inside the ring (and touching it where the
        ring is open); small enclosed holes as myocardium; RV blood pool as one component
        next to the myocardium; no islands (:func:`models.runtime.segmentation.ring_postprocess`
        with :data:`RV_MAX_GAP_MM` and :data:`MAX_HOLE_MM2`).
    """
    return ring_postprocess(labels, pixel_spacing, RV_MAX_GAP_MM, MAX_HOLE_MM2)


# --------------------------------------------------------------------------------------------
# Segmenter
# --------------------------------------------------------------------------------------------


class UNetT1Segmenter:
    """LV segmentation of native T1 maps by the trained U-Net.

    Implements :class:`plugins.t1map.segmenter.Segmenter`.

    Parameters
    ----------
    weights
        The ``.pt`` state dict; the committed weights if ``None``.
    metadata
        Its provenance JSON (architecture, version, SHA-256); ``weights`` with suffix
        ``.json`` if ``None``.
    test_time_flip
        Average the prediction with that of the mirrored image (also gives the
        disagreement part of the uncertainty).

    Raises
    ------
    ModelUnavailableError
        If a file is missing or unreadable, or the weights' SHA-256 differs from the JSON.
    """

    def __init__(
        self,
        weights: Path | None = None,
        metadata: Path | None = None,
        *,
        test_time_flip: bool = True,
    ) -> None:
        weights = DEFAULT_WEIGHTS if weights is None else Path(weights)
        metadata = weights.with_suffix(".json") if metadata is None else Path(metadata)
        model, record, actual = load_unet(weights, metadata)
        version = str(record["model_version"])
        self._model = model
        self.name: str = MODEL_NAME
        self.version: str = version
        self.weights_sha256: str | None = actual
        self.test_time_flip = test_time_flip
        self.record: Mapping[str, Any] = record
        self.min_lv_enclosure: float = MIN_LV_ENCLOSURE

    def for_long_axis(self) -> UNetT1Segmenter:
        """The same network for four-chamber views (LV pool open at the mitral plane)."""
        other = copy.copy(self)
        other.min_lv_enclosure = MIN_LV_ENCLOSURE_LONG_AXIS
        return other

    def probabilities(self, t1_ms: FloatImage, pixel_spacing: tuple[float, float]
                      ) -> npt.NDArray[np.float32]:
        """Per-pass class probabilities on the network grid, shape (passes, classes, g, g)."""
        grid = to_grid(t1_ms, pixel_spacing)
        return predict_passes(self._model, grid[None], self.test_time_flip)

    def segment(
        self,
        t1_ms: FloatImage,
        pixel_spacing: tuple[float, float],
        field_strength_t: float | None,
    ) -> SegmentationOutput:
        """Segment one slice (see the module description).

        ``field_strength_t`` is not used: the network was trained on 1.5 T and 3 T maps.
        """
        started = time.perf_counter()
        image = np.asarray(t1_ms, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"Expected a 2-D T1 map, got shape {image.shape}")
        spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
        passes = self.probabilities(image, spacing)
        mean = passes.mean(axis=0)
        source = from_grid(mean, (image.shape[0], image.shape[1]), spacing)
        labels = postprocess(np.argmax(source, axis=0).astype(np.uint8), spacing)
        uncertainty = self._uncertainty(passes, mean)
        lv = labels == Label.LV_BLOOD_POOL
        lv_area = float(lv.sum()) * spacing[0] * spacing[1]
        enclosure = lv_enclosure(lv, labels == Label.MYOCARDIUM)
        details = {
            "model": self.name,
            "model_version": self.version,
            "test_time_flip": self.test_time_flip,
            "network_grid": f"{GRID_SIZE}x{GRID_SIZE} at {GRID_SPACING_MM} mm",
            "lv_enclosure": round(enclosure, 3),
            "inference_ms": round(1000.0 * (time.perf_counter() - started), 1),
        }
        reason = None
        if not (labels == Label.MYOCARDIUM).any():
            reason = "the network found no myocardium"
        elif lv_area < MIN_LV_AREA_MM2 or enclosure < self.min_lv_enclosure:
            reason = (
                f"the network output is not a myocardial ring around an LV blood pool (LV "
                f"{lv_area:.0f} mm2, {100 * enclosure:.0f} % of its border myocardium)"
            )
            labels = np.zeros_like(labels)
        probabilities = {} if reason else {
            Label.MYOCARDIUM: np.clip(source[Label.MYOCARDIUM], 0.0, 1.0).astype(np.float32)
        }
        return SegmentationOutput(labels, uncertainty, reason, details, probabilities)

    @staticmethod
    def _uncertainty(passes: npt.NDArray[np.float32], mean: npt.NDArray[np.float32]) -> float:
        return flip_uncertainty(passes, mean, (int(Label.MYOCARDIUM),))


# Static check that the class satisfies the protocol.
def _protocol_check(segmenter: UNetT1Segmenter) -> Segmenter:
    return segmenter


@functools.lru_cache(maxsize=1)
def _cached_default() -> UNetT1Segmenter:
    return UNetT1Segmenter()


def default_segmenter() -> tuple[Segmenter | None, QCFlag | None]:
    """The committed U-Net, or ``None`` and an INFO flag saying why it is unavailable.

    The model is loaded once per process (weights hash checked against the JSON).
    """
    try:
        return _cached_default(), None
    except (ModelUnavailableError, ImportError) as exc:
        logger.warning("Trained T1-map model unavailable, using the classical segmenter: %s",
                       exc)
        return None, QCFlag(
            MODEL_UNAVAILABLE,
            Severity.INFO,
            f"The trained segmentation model is unavailable ({exc}); the classical "
            "segmenter was used.",
        )
