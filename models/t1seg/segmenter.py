"""Trained U-Net segmentation of native short-axis T1 maps behind the ``Segmenter`` protocol.

:class:`UNetT1Segmenter` implements :class:`plugins.t1map.segmenter.Segmenter`, so the T1-map
analysis uses it exactly like the classical segmenter.  One slice is processed as follows.

1. **Network grid.**  The map (T1 in ms, clipped to 0–4095 ms) is linearly resampled onto a
   square :data:`GRID_SIZE` grid of :data:`GRID_SPACING_MM` pixels centred on the image
   centre (240 mm field of view, enough for the heart of a cardiac-centred scan), and
   divided by the fixed factor :data:`T1_SCALE_MS`.  No per-image normalisation: the input
   stays physical T1, whatever the vendor's scaling of the stored pixels.
2. **Network.**  :class:`models.unet.UNet` gives class probabilities (background, LV blood
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

import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

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
MODEL_UNAVAILABLE: Final = "trained_model_unavailable"
"""QC code of the flag raised when the analysis falls back to the classical segmenter."""

WEIGHTS_DIR: Final = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS: Final = WEIGHTS_DIR / "t1map_unet.pt"
DEFAULT_METADATA: Final = WEIGHTS_DIR / "t1map_unet.json"

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class ModelUnavailableError(RuntimeError):
    """The trained weights are missing, corrupt or do not match their provenance record."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def grid_affine(
    shape: tuple[int, ...],
    pixel_spacing: tuple[float, float],
    grid_size: int = GRID_SIZE,
    grid_spacing_mm: float = GRID_SPACING_MM,
    angle_rad: float = 0.0,
    flip: bool = False,
    shift_mm: tuple[float, float] = (0.0, 0.0),
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Affine map from network-grid pixel indices to source pixel indices.

    In the form of :func:`scipy.ndimage.affine_transform`: ``source = matrix @ grid +
    offset``.  The grid is centred on the source image centre plus ``shift_mm``, rotated by
    ``angle_rad`` and optionally mirrored.

    Parameters
    ----------
    shape
        Source (rows, cols).
    pixel_spacing
        Source (row, col) spacing in mm.
    grid_size, grid_spacing_mm
        Size and spacing of the square grid.
    angle_rad, flip, shift_mm
        Rotation, mirroring and displacement of the grid (augmentation; zero at inference).

    Returns
    -------
    matrix, offset
        2x2 matrix and 2-vector.
    """
    rows, cols = int(shape[0]), int(shape[1])
    centre = np.array([(rows - 1) / 2.0, (cols - 1) / 2.0])
    grid_centre = np.full(2, (grid_size - 1) / 2.0)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    rotation = np.array([[c, -s], [s, c]])
    flip_matrix = np.diag([1.0, -1.0]) if flip else np.eye(2)
    inv_spacing = np.diag([1.0 / pixel_spacing[0], 1.0 / pixel_spacing[1]])
    matrix = inv_spacing @ rotation @ flip_matrix * grid_spacing_mm
    offset = centre + inv_spacing @ np.asarray(shift_mm, dtype=np.float64) - matrix @ grid_centre
    return matrix, offset


def to_grid(t1_ms: npt.NDArray[np.floating[Any]], pixel_spacing: tuple[float, float]
            ) -> npt.NDArray[np.float32]:
    """Network input (grid, grid) of a T1 map in ms."""
    t1 = np.nan_to_num(np.asarray(t1_ms, dtype=np.float32), nan=0.0, posinf=MAX_T1_MS,
                       neginf=0.0)
    t1 = np.clip(t1, 0.0, MAX_T1_MS)
    matrix, offset = grid_affine(t1.shape, pixel_spacing)
    grid = ndimage.affine_transform(t1, matrix, offset, (GRID_SIZE, GRID_SIZE), order=1,
                                    cval=0.0)
    return (grid / T1_SCALE_MS).astype(np.float32)


def from_grid(probabilities: npt.NDArray[np.float32], shape: tuple[int, int],
              pixel_spacing: tuple[float, float]) -> npt.NDArray[np.float32]:
    """Class probabilities (classes, rows, cols) at the source pixel centres.

    Outside the grid the background has probability 1.
    """
    matrix, offset = grid_affine(shape, pixel_spacing)
    inverse = np.linalg.inv(matrix)
    back_offset = -inverse @ offset
    return np.stack([
        ndimage.affine_transform(probabilities[k], inverse, back_offset, shape, order=1,
                                 cval=1.0 if k == 0 else 0.0)
        for k in range(probabilities.shape[0])
    ]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Post-processing
# --------------------------------------------------------------------------------------------


def _largest_component(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    components, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())[1:]
    return np.asarray(components == int(np.argmax(sizes)) + 1)


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
        next to the myocardium; no islands.
    """
    out = np.zeros_like(labels, dtype=np.uint8)
    myo = labels == Label.MYOCARDIUM
    if not myo.any():
        return out
    myo = _largest_component(myo)
    pixel_area = pixel_spacing[0] * pixel_spacing[1]
    lv_raw = labels == Label.LV_BLOOD_POOL
    enclosed = ndimage.binary_fill_holes(myo) & ~myo
    holes, n_holes = ndimage.label(enclosed)
    lv = np.zeros_like(myo)
    for k in range(1, n_holes + 1):
        hole = holes == k
        if hole.sum() * pixel_area < MAX_HOLE_MM2 and not (hole & lv_raw).any():
            myo |= hole
        else:
            lv |= hole
    # Where the ring is open (basal slices), keep the LV components touching the myocardium.
    near_myo = ndimage.binary_dilation(myo, structure=_EIGHT_CONNECTED)
    components, n = ndimage.label(lv_raw & ~myo & ~lv, structure=_EIGHT_CONNECTED)
    for k in range(1, n + 1):
        part = components == k
        if (part & near_myo).any() or (ndimage.binary_dilation(part) & lv).any():
            lv |= part
    if lv.any():
        lv = _largest_component(lv)
    rv_raw = (labels == Label.RV_BLOOD_POOL) & ~myo & ~lv
    rv = np.zeros_like(myo)
    if rv_raw.any():
        gap_px = RV_MAX_GAP_MM / min(pixel_spacing)
        distance = ndimage.distance_transform_edt(~myo)
        components, n = ndimage.label(rv_raw, structure=_EIGHT_CONNECTED)
        best, best_size = 0, 0
        for k in range(1, n + 1):
            part = components == k
            size = int(part.sum())
            if size > best_size and float(distance[part].min()) <= gap_px:
                best, best_size = k, size
        if best:
            rv = components == best
    out[rv] = Label.RV_BLOOD_POOL
    out[lv] = Label.LV_BLOOD_POOL
    out[myo] = Label.MYOCARDIUM
    return out


# --------------------------------------------------------------------------------------------
# Segmenter
# --------------------------------------------------------------------------------------------


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


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
        import torch

        from models.unet import UNet, UNetConfig

        weights = DEFAULT_WEIGHTS if weights is None else Path(weights)
        metadata = weights.with_suffix(".json") if metadata is None else Path(metadata)
        try:
            record = json.loads(metadata.read_text())
            expected = str(record["weights_sha256"])
            config = UNetConfig(**record["architecture"])
            version = str(record["model_version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailableError(
                f"Cannot read the model provenance record {metadata}: {exc}") from exc
        try:
            actual = sha256_of(weights)
        except OSError as exc:
            raise ModelUnavailableError(f"Cannot read the model weights {weights}: {exc}"
                                        ) from exc
        if actual != expected:
            raise ModelUnavailableError(
                f"The weights {weights.name} have SHA-256 {actual[:12]}..., but their "
                f"provenance record says {expected[:12]}...: refusing to use them.")
        model = UNet(config)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelUnavailableError(f"Cannot load the weights {weights}: {exc}") from exc
        model.eval()
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._model = model
        self._torch = torch
        self.name: str = MODEL_NAME
        self.version: str = version
        self.weights_sha256: str | None = actual
        self.test_time_flip = test_time_flip
        self.record: Mapping[str, Any] = record

    def probabilities(self, t1_ms: FloatImage, pixel_spacing: tuple[float, float]
                      ) -> npt.NDArray[np.float32]:
        """Per-pass class probabilities on the network grid, shape (passes, classes, g, g)."""
        torch = self._torch
        grid = to_grid(t1_ms, pixel_spacing)
        batch = [grid, grid[:, ::-1]] if self.test_time_flip else [grid]
        x = torch.from_numpy(np.ascontiguousarray(np.stack(batch)[:, None]))
        with torch.inference_mode():
            prob = torch.softmax(self._model(x.to(memory_format=torch.channels_last)), dim=1)
        result = prob.numpy().astype(np.float32)
        if self.test_time_flip:
            result[1] = result[1][:, :, ::-1]
        return result

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
        border = ndimage.binary_dilation(lv, structure=_EIGHT_CONNECTED) & ~lv
        enclosure = float((labels[border] == Label.MYOCARDIUM).mean()) if lv.any() else 0.0
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
        elif lv_area < MIN_LV_AREA_MM2 or enclosure < MIN_LV_ENCLOSURE:
            reason = (
                f"the network output is not a myocardial ring around an LV blood pool (LV "
                f"{lv_area:.0f} mm2, {100 * enclosure:.0f} % of its border myocardium)"
            )
            labels = np.zeros_like(labels)
        return SegmentationOutput(labels, uncertainty, reason, details)

    @staticmethod
    def _uncertainty(passes: npt.NDArray[np.float32], mean: npt.NDArray[np.float32]) -> float:
        calls = np.argmax(passes, axis=1) == Label.MYOCARDIUM
        union = calls.any(axis=0)
        if not union.any():
            return 1.0
        p = np.clip(mean[:, union], 1e-7, 1.0)
        entropy = float((-(p * np.log(p)).sum(axis=0) / math.log(N_CLASSES)).mean())
        disagreement = 1.0 - _dice(calls[0], calls[-1])
        return float(np.clip(entropy + disagreement, 0.0, 1.0))


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
