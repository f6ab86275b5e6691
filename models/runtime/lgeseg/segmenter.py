"""Trained U-Net segmentation of short-axis LGE images behind the ``LgeSegmenter`` protocol.

:class:`UNetLgeSegmenter` implements :class:`plugins.lge.segmenter.LgeSegmenter`.  One slice
is processed as follows.

1. **Intensity normalisation.**  The image arrives as loaded from DICOM: it may carry a
   vendor's PSIR offset (Siemens stores zero signal as 4096) and any scaling.  It is mapped
   linearly so that its 1st percentile is 0 and its 99th percentile is 1
   (:func:`normalise`); this is exactly invariant to any offset and positive scale.
2. **Network grid.**  The normalised image is resampled linearly onto a square
   :data:`GRID_SIZE` grid of :data:`GRID_SPACING_MM` pixels (240 mm) centred on the image
   centre; grid pixels outside the image get the median of the image border (the
   background level, whatever the offset).
3. **Network.**  :class:`models.runtime.unet.UNet` gives probabilities of six classes (background,
   LV blood pool, non-scarred myocardium, RV blood pool, scar, microvascular obstruction)
   for the image and its mirror (test-time flip), averaged and interpolated linearly back to
   every source pixel centre, so the labels lie exactly on the source pixel grid.
4. **Labels.**  Geometry first: the argmax over background, LV, *myocardium* (non-scarred +
   scar + MVO probabilities summed) and RV, post-processed as for the T1-map network
   (largest connected myocardium; what the ring encloses is LV blood pool, small enclosed
   holes are myocardium; one RV component next to the myocardium).  Then, inside that
   myocardium only (no scar islands outside it), a pixel is scar where scar + MVO is more
   probable than non-scarred myocardium; scar components smaller than
   :data:`MIN_SCAR_COMPONENT_MM2` are dropped and gaps in the scar smaller than
   :data:`MAX_SCAR_GAP_MM2` filled.  MVO is labelled where MVO beats scar inside the scar,
   if the model's record says it learnt MVO (``"mvo_output": true``); otherwise MVO is
   merged into scar.
5. **Plausibility.**  An output whose LV blood pool is smaller than
   :data:`MIN_LV_AREA_MM2` or not ringed by myocardium (:data:`MIN_LV_ENCLOSURE`) is
   rejected with a reason, as for the T1-map network.
6. **Uncertainty.**  Mean normalised entropy of the averaged (background, LV, myocardium,
   RV) probabilities over the pixels either pass calls myocardium, plus the disagreement
   (1 - Dice) of the two passes' myocardium, clipped to [0, 1].  The scar disagreement of
   the two passes is reported in ``details``.

The weights file is checked against the SHA-256 in its provenance JSON before use.
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
from scipy import ndimage

from models.runtime.segmentation import (
    EIGHT_CONNECTED,
    ModelUnavailableError,
    flip_uncertainty,
    from_grid,
    load_unet,
    lv_enclosure,
    mask_dice,
    predict_passes,
    ring_postprocess,
    to_grid,
)
from plugins.api import FloatImage, Label, LabelImage, QCFlag, SegmentationOutput, Severity
from plugins.lge.segmenter import LgeContrast, LgeSegmenter

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_METADATA",
    "DEFAULT_WEIGHTS",
    "GRID_SIZE",
    "GRID_SPACING_MM",
    "MODEL_NAME",
    "MODEL_UNAVAILABLE",
    "N_CLASSES",
    "ModelUnavailableError",
    "UNetLgeSegmenter",
    "default_segmenter",
    "labels_from_probabilities",
    "normalise",
]

MODEL_NAME: Final = "cmr-node LGE U-Net"
GRID_SIZE: Final = 160
"""Side of the square network grid (pixels)."""
GRID_SPACING_MM: Final = 1.5
"""Pixel spacing of the network grid."""
N_CLASSES: Final = 6
"""Background, LV blood pool, myocardium, RV blood pool, scar, MVO (= ``Label`` values)."""
MYOCARDIAL: Final = (int(Label.MYOCARDIUM), int(Label.SCAR), int(Label.MVO))
"""Classes that together are the LV myocardium."""
PERCENTILES: Final = (1.0, 99.0)
"""Image percentiles mapped to 0 and 1 by :func:`normalise`."""
NORMALISED_RANGE: Final = (-1.0, 3.0)
"""Normalised values are clipped to this range (outliers, fit of a few bright pixels)."""
MIN_SCAR_COMPONENT_MM2: Final = 4.0
"""Scar components smaller than this (about two pixels) are noise and dropped."""
MAX_SCAR_GAP_MM2: Final = 8.0
"""Non-scarred myocardium enclosed by scar and smaller than this becomes scar."""
MIN_LV_AREA_MM2: Final = 50.0
"""Smallest LV blood pool accepted (the most apical phantom slices have > 100 mm2)."""
MIN_LV_ENCLOSURE: Final = 0.75
"""Fraction of the pixels bordering the LV blood pool that must be myocardium."""
MODEL_UNAVAILABLE: Final = "trained_model_unavailable"
"""QC code of the flag returned by :func:`default_segmenter` when the model cannot be used."""

WEIGHTS_DIR: Final = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_WEIGHTS: Final = WEIGHTS_DIR / "lge_unet.pt"
DEFAULT_METADATA: Final = WEIGHTS_DIR / "lge_unet.json"

F32 = npt.NDArray[np.float32]


def normalise(image: npt.NDArray[np.floating[Any]]) -> tuple[F32, float]:
    """Offset- and scale-invariant network intensities of an LGE image as loaded.

    Parameters
    ----------
    image
        (rows, cols) image in any stored units (non-finite values count as 0).

    Returns
    -------
    normalised, background
        float32 image mapped so that its :data:`PERCENTILES` are 0 and 1 (clipped to
        :data:`NORMALISED_RANGE`), and the median of its border pixels (background level,
        used outside the image).
    """
    values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0,
                           neginf=0.0)
    lo, hi = np.percentile(values[::2, ::2], PERCENTILES)
    span = float(hi - lo)
    if not span > 0:
        span = 1.0
    out = np.clip((values - float(lo)) / span, *NORMALISED_RANGE).astype(np.float32)
    border = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
    return out, float(np.median(border))


def _geometry_probabilities(prob: F32) -> F32:
    """(background, LV, myocardium incl. scar and MVO, RV) from six-class probabilities."""
    return np.stack([prob[Label.BACKGROUND], prob[Label.LV_BLOOD_POOL],
                     prob[list(MYOCARDIAL)].sum(axis=0), prob[Label.RV_BLOOD_POOL]])


def _remove_small(mask: npt.NDArray[np.bool_], min_px: float) -> npt.NDArray[np.bool_]:
    components, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if n == 0:
        return mask
    sizes = np.bincount(components.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return np.asarray(keep[components])


def labels_from_probabilities(prob: F32, pixel_spacing: tuple[float, float],
                              mvo_output: bool = True) -> LabelImage:
    """Post-processed labels from six-class probabilities on the source grid.

    Parameters
    ----------
    prob
        (6, rows, cols) class probabilities (``Label`` order).
    pixel_spacing
        (row, col) spacing in mm.
    mvo_output
        Label MVO separately; otherwise MVO is merged into scar.

    Returns
    -------
    LabelImage
        Background, LV blood pool, myocardium, RV blood pool, scar (and MVO) with one
        myocardial component (myocardium + scar + MVO) and scar only inside it.
    """
    geometry = ring_postprocess(
        np.argmax(_geometry_probabilities(prob), axis=0).astype(np.uint8), pixel_spacing)
    myo = geometry == Label.MYOCARDIUM
    pixel_area = pixel_spacing[0] * pixel_spacing[1]
    enhanced = prob[Label.SCAR] + prob[Label.MVO]
    scar = myo & (enhanced > prob[Label.MYOCARDIUM])
    scar = _remove_small(scar, MIN_SCAR_COMPONENT_MM2 / pixel_area)
    gaps = ndimage.binary_fill_holes(scar) & ~scar & myo
    holes, n_holes = ndimage.label(gaps)
    if n_holes:
        sizes = np.bincount(holes.ravel())
        small = sizes * pixel_area < MAX_SCAR_GAP_MM2
        small[0] = False
        scar |= small[holes]
    out = geometry.copy()
    out[scar] = Label.SCAR
    if mvo_output:
        mvo = scar & (prob[Label.MVO] > prob[Label.SCAR])
        mvo = _remove_small(mvo, MIN_SCAR_COMPONENT_MM2 / pixel_area)
        out[mvo] = Label.MVO
    return out


class UNetLgeSegmenter:
    """LV myocardium and scar segmentation of LGE images by the trained U-Net.

    Implements :class:`plugins.lge.segmenter.LgeSegmenter`.

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
    mvo_output
        Label MVO separately (``True``) or merge it into scar (``False``); as the model's
        record says (``"mvo_output"``) if ``None``.

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
        mvo_output: bool | None = None,
    ) -> None:
        weights = DEFAULT_WEIGHTS if weights is None else Path(weights)
        metadata = weights.with_suffix(".json") if metadata is None else Path(metadata)
        model, record, sha = load_unet(weights, metadata)
        if model.config.n_classes != N_CLASSES or model.config.in_channels != 1:
            raise ModelUnavailableError(
                f"The weights {weights.name} are not a one-channel {N_CLASSES}-class LGE "
                "network.")
        self._model = model
        self.name: str = MODEL_NAME
        self.version: str = str(record["model_version"])
        self.weights_sha256: str | None = sha
        self.test_time_flip = test_time_flip
        self.mvo_output = (bool(record.get("mvo_output", False)) if mvo_output is None
                           else mvo_output)
        self.record: Mapping[str, Any] = record

    def probabilities(self, image: FloatImage, pixel_spacing: tuple[float, float]) -> F32:
        """Per-pass class probabilities on the network grid, shape (passes, 6, g, g)."""
        normalised, background = normalise(image)
        grid = to_grid(normalised, pixel_spacing, GRID_SIZE, GRID_SPACING_MM, background)
        return predict_passes(self._model, grid[None], self.test_time_flip)

    def segment(
        self,
        image: FloatImage,
        pixel_spacing: tuple[float, float],
        contrast: LgeContrast,
        cine: FloatImage | None = None,
    ) -> SegmentationOutput:
        """Segment one slice (see the module description).

        ``contrast`` is recorded but not needed: one network was trained on PSIR and
        magnitude images.  ``cine`` is not used by this single-channel model.
        """
        started = time.perf_counter()
        values = np.asarray(image, dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"Expected a 2-D LGE image, got shape {values.shape}")
        spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
        if min(spacing) <= 0:
            raise ValueError(f"Pixel spacing must be positive, got {pixel_spacing}")
        passes = self.probabilities(values, spacing)
        details: dict[str, Any] = {
            "model": self.name,
            "model_version": self.version,
            "contrast": str(LgeContrast(contrast)),
            "cine_used": False,
            "test_time_flip": self.test_time_flip,
            "network_grid": f"{GRID_SIZE}x{GRID_SIZE} at {GRID_SPACING_MM} mm",
            "mvo_output": self.mvo_output,
        }
        if cine is not None:
            details["cine_note"] = "cine given but not used: this model segments LGE alone"
        return segmentation_from_passes(
            passes, (values.shape[0], values.shape[1]), spacing, self.mvo_output, details,
            started,
        )


def segmentation_from_passes(
    passes: F32,
    shape: tuple[int, int],
    spacing: tuple[float, float],
    mvo_output: bool,
    details: dict[str, Any],
    started: float,
    to_source: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
    uncertainty_passes: int | None = None,
) -> SegmentationOutput:
    """One slice's labels, uncertainty and plausibility from the network passes.

    Parameters
    ----------
    passes
        Class probabilities of each pass on the network grid, shape (passes, 6, g, g).
    shape, spacing
        The source image's shape and pixel spacing (mm), where the labels are returned.
    mvo_output
        Keep MVO as its own label (else merged into scar).
    details
        What the segmenter reports of itself; the LV enclosure, the passes' scar
        disagreement and the time since ``started`` (``perf_counter``) are added.
    to_source
        The affine (matrix, offset) from source pixel indices to grid indices
        (:func:`scipy.ndimage.affine_transform` form); ``None`` for the centred
        :data:`GRID_SIZE` grid of :data:`GRID_SPACING_MM` pixels.
    uncertainty_passes
        Only the first passes (the identity and its mirror) give the uncertainty and the
        scar disagreement, as calibrated; all passes give the labels.  ``None``: all.
    """
    mean = passes.mean(axis=0)
    if to_source is None:
        source = from_grid(mean, shape, spacing, GRID_SIZE, GRID_SPACING_MM)
    else:
        source = np.stack([
            ndimage.affine_transform(mean[k], to_source[0], to_source[1], shape, order=1,
                                     cval=1.0 if k == 0 else 0.0)
            for k in range(mean.shape[0])
        ]).astype(np.float32)
    labels = labels_from_probabilities(source, spacing, mvo_output)
    judged = passes if uncertainty_passes is None else passes[:uncertainty_passes]
    geometry_passes = np.stack([_geometry_probabilities(p) for p in judged])
    uncertainty = flip_uncertainty(geometry_passes, geometry_passes.mean(axis=0),
                                   (int(Label.MYOCARDIUM),))
    calls = np.argmax(judged, axis=1)
    scar_calls = np.isin(calls, (int(Label.SCAR), int(Label.MVO)))
    myocardium = np.isin(labels, MYOCARDIAL)
    lv = labels == Label.LV_BLOOD_POOL
    lv_area = float(lv.sum()) * spacing[0] * spacing[1]
    enclosure = lv_enclosure(lv, myocardium)
    details["lv_enclosure"] = round(enclosure, 3)
    details["scar_pass_disagreement"] = round(
        1.0 - mask_dice(scar_calls[0], scar_calls[-1]), 3)
    reason = None
    if not myocardium.any():
        reason = "the network found no myocardium"
    elif lv_area < MIN_LV_AREA_MM2 or enclosure < MIN_LV_ENCLOSURE:
        reason = (
            f"the network output is not a myocardial ring around an LV blood pool (LV "
            f"{lv_area:.0f} mm2, {100 * enclosure:.0f} % of its border myocardium)"
        )
        labels = np.zeros_like(labels)
    details["inference_ms"] = round(1000.0 * (time.perf_counter() - started), 1)
    return SegmentationOutput(labels, uncertainty, reason, details,
                              {} if reason else region_probabilities(source))


def region_probabilities(source: F32) -> dict[Label, FloatImage]:
    """Myocardium (with scar and MVO) and scar (with MVO) probabilities from the six-class
    probabilities ``source`` (``Label`` order) on the source grid."""
    scar = source[Label.SCAR] + source[Label.MVO]
    return {
        Label.MYOCARDIUM: np.clip(source[Label.MYOCARDIUM] + scar, 0.0, 1.0).astype(np.float32),
        Label.SCAR: np.clip(scar, 0.0, 1.0).astype(np.float32),
    }


def empty_output(shape: tuple[int, ...], reason: str, details: dict[str, Any],
                 started: float) -> SegmentationOutput:
    """No labels, uncertainty 1 and ``reason``: a slice that could not be segmented."""
    details["inference_ms"] = round(1000.0 * (time.perf_counter() - started), 1)
    return SegmentationOutput(np.zeros((int(shape[0]), int(shape[1])), dtype=np.uint8), 1.0,
                              reason, details)


def _protocol_check(segmenter: UNetLgeSegmenter) -> LgeSegmenter:
    return segmenter


@functools.lru_cache(maxsize=1)
def _cached_default() -> UNetLgeSegmenter:
    return UNetLgeSegmenter()


def default_segmenter() -> tuple[LgeSegmenter | None, QCFlag | None]:
    """The committed LGE U-Net, or ``None`` and a WARNING flag saying why it is unavailable.

    The model is loaded once per process (weights hash checked against the JSON).
    """
    try:
        return _cached_default(), None
    except (ModelUnavailableError, ImportError) as exc:
        logger.warning("Trained LGE model unavailable: %s", exc)
        return None, QCFlag(
            MODEL_UNAVAILABLE,
            Severity.WARNING,
            f"The trained LGE segmentation model is unavailable ({exc}).",
        )
