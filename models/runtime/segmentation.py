"""Run-time pieces shared by the trained segmentation networks (T1 map, LGE).

- **Weights**: :func:`sha256_of`, :func:`load_unet` (SHA-256 checked against the provenance
  JSON before the state dict is loaded; :class:`ModelUnavailableError` otherwise).
- **Network grid**: :func:`grid_affine` maps a square network grid (fixed pixel spacing,
  centred on the source image centre, optionally rotated / mirrored / shifted for
  augmentation) to source pixel indices; :func:`to_grid` resamples an image onto it,
  and :func:`from_grid` interpolates class probabilities back to every source pixel centre.
- **Inference**: :func:`predict_passes` (test-time flip), :func:`flip_uncertainty`.
- **Post-processing**: :func:`ring_postprocess` (one myocardial ring, LV inside, one RV),
  :func:`largest_component`, :func:`lv_enclosure`.

Training pieces (losses, the training loop, augmentation) are :mod:`models.training`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

if TYPE_CHECKING:
    import torch

    from models.runtime.unet import UNet

logger = logging.getLogger(__name__)

__all__ = [
    "DIHEDRAL_VIEWS",
    "EIGHT_CONNECTED",
    "ModelUnavailableError",
    "flip_uncertainty",
    "from_grid",
    "grid_affine",
    "largest_component",
    "load_unet",
    "lv_enclosure",
    "mask_dice",
    "predict_passes",
    "predict_views",
    "ring_postprocess",
    "sha256_of",
    "to_grid",
]

EIGHT_CONNECTED: Final = np.ones((3, 3), dtype=bool)
"""Structuring element of 8-connectivity."""

F32 = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float64]


class ModelUnavailableError(RuntimeError):
    """The trained weights are missing, corrupt or do not match their provenance record."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_unet(weights: Path, metadata: Path) -> tuple[UNet, dict[str, Any], str]:
    """A U-Net in evaluation mode from a state dict whose SHA-256 matches its record.

    Parameters
    ----------
    weights
        The ``.pt`` state dict.
    metadata
        Its provenance JSON with ``weights_sha256``, ``architecture`` (a
        :class:`models.runtime.unet.UNetConfig`) and ``model_version``.

    Returns
    -------
    model, record, sha256
        The network (channels-last, eval mode), the parsed record and the weights' hash.

    Raises
    ------
    ModelUnavailableError
        If a file is missing or unreadable, or the weights' SHA-256 differs from the JSON.
    """
    import torch

    from models.runtime.unet import UNet, UNetConfig

    try:
        record = json.loads(metadata.read_text())
        expected = str(record["weights_sha256"])
        config = UNetConfig(**record["architecture"])
        str(record["model_version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailableError(
            f"Cannot read the model provenance record {metadata}: {exc}") from exc
    try:
        actual = sha256_of(weights)
    except OSError as exc:
        raise ModelUnavailableError(f"Cannot read the model weights {weights}: {exc}") from exc
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
    return model, record, actual


# --------------------------------------------------------------------------------------------
# Network grid
# --------------------------------------------------------------------------------------------


def grid_affine(
    shape: tuple[int, ...],
    pixel_spacing: tuple[float, float],
    grid_size: int,
    grid_spacing_mm: float,
    angle_rad: float = 0.0,
    flip: bool = False,
    shift_mm: tuple[float, float] = (0.0, 0.0),
) -> tuple[Matrix, Matrix]:
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


def to_grid(image: F32, pixel_spacing: tuple[float, float], grid_size: int,
            grid_spacing_mm: float, cval: float = 0.0) -> F32:
    """An image linearly resampled onto the (unrotated) network grid.

    Grid pixels outside the source image get ``cval``.
    """
    matrix, offset = grid_affine(image.shape, pixel_spacing, grid_size, grid_spacing_mm)
    grid = ndimage.affine_transform(image, matrix, offset, (grid_size, grid_size), order=1,
                                    cval=cval)
    return np.asarray(grid, dtype=np.float32)


def from_grid(probabilities: F32, shape: tuple[int, int], pixel_spacing: tuple[float, float],
              grid_size: int, grid_spacing_mm: float) -> F32:
    """Class probabilities (classes, rows, cols) at the source pixel centres.

    ``probabilities`` is (classes, grid, grid) with class 0 the background; outside the
    grid the background has probability 1.
    """
    matrix, offset = grid_affine(shape, pixel_spacing, grid_size, grid_spacing_mm)
    inverse = np.linalg.inv(matrix)
    back_offset = -inverse @ offset
    return np.stack([
        ndimage.affine_transform(probabilities[k], inverse, back_offset, shape, order=1,
                                 cval=1.0 if k == 0 else 0.0)
        for k in range(probabilities.shape[0])
    ]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def predict_passes(model: torch.nn.Module, grid: F32, test_time_flip: bool) -> F32:
    """Class probabilities of the network, one set per pass.

    Parameters
    ----------
    model
        Network in evaluation mode.
    grid
        Input (channels, g, g) on the network grid.
    test_time_flip
        Add a pass on the left-right mirrored input (mirrored back).

    Returns
    -------
    numpy.ndarray
        float32 (passes, classes, g, g).
    """
    import torch

    batch = [grid, grid[:, :, ::-1]] if test_time_flip else [grid]
    x = torch.from_numpy(np.ascontiguousarray(np.stack(batch)))
    with torch.inference_mode():
        prob = torch.softmax(model(x.to(memory_format=torch.channels_last)), dim=1)
    result = prob.numpy().astype(np.float32)
    if test_time_flip:
        result[1] = result[1][:, :, ::-1]
    return result


DIHEDRAL_VIEWS: Final = (1, 2, 4, 8)
"""Numbers of test-time views :func:`predict_views` accepts."""


def _dihedral(grid: F32, k: int) -> F32:
    """View ``k`` of a (channels, g, g) grid: identity, left-right mirror, up-down mirror,
    both mirrors, then the same four of the transposed grid."""
    view = np.swapaxes(grid, -1, -2) if k >= 4 else grid
    if k % 4 in (1, 3):
        view = view[..., ::-1]
    if k % 4 in (2, 3):
        view = view[..., ::-1, :]
    return view


def _undo_dihedral(prob: F32, k: int) -> F32:
    """Map the probabilities of view ``k`` (classes, g, g) back onto the grid."""
    back = prob
    if k % 4 in (1, 3):
        back = back[..., ::-1]
    if k % 4 in (2, 3):
        back = back[..., ::-1, :]
    return np.swapaxes(back, -1, -2) if k >= 4 else back


def predict_views(model: torch.nn.Module, grid: F32, views: int) -> F32:
    """Class probabilities of the network on dihedral views of the grid, mapped back.

    Parameters
    ----------
    model
        Network in evaluation mode.
    grid
        Input (channels, g, g) on the network grid.
    views
        One of :data:`DIHEDRAL_VIEWS`: the identity, then the left-right mirror (as
        :func:`predict_passes` with ``test_time_flip``), the up-down mirror and both
        mirrors, then those four of the transposed grid.

    Returns
    -------
    numpy.ndarray
        float32 (views, classes, g, g), in that order.
    """
    import torch

    if views not in DIHEDRAL_VIEWS:
        raise ValueError(f"views must be one of {DIHEDRAL_VIEWS}, got {views}")
    batch = np.stack([np.ascontiguousarray(_dihedral(grid, k)) for k in range(views)])
    with torch.inference_mode():
        prob = torch.softmax(model(torch.from_numpy(batch).to(
            memory_format=torch.channels_last)), dim=1).numpy().astype(np.float32)
    return np.stack([_undo_dihedral(prob[k], k) for k in range(views)])


def mask_dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    """Dice of two masks (1 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def flip_uncertainty(passes: F32, mean: F32, myocardium_classes: Sequence[int]) -> float:
    """Slice uncertainty in [0, 1] from the per-pass probabilities.

    Mean normalised entropy of the averaged probabilities over the pixels either pass calls
    myocardium (any of ``myocardium_classes``), plus 1 - Dice between the first and last
    pass's myocardium; 1 when no pass finds myocardium.
    """
    calls = np.isin(np.argmax(passes, axis=1), list(myocardium_classes))
    union = calls.any(axis=0)
    if not union.any():
        return 1.0
    n_classes = passes.shape[1]
    p = np.clip(mean[:, union], 1e-7, 1.0)
    entropy = float((-(p * np.log(p)).sum(axis=0) / math.log(n_classes)).mean())
    disagreement = 1.0 - mask_dice(calls[0], calls[-1])
    return float(np.clip(entropy + disagreement, 0.0, 1.0))


# --------------------------------------------------------------------------------------------
# Post-processing
# --------------------------------------------------------------------------------------------


def largest_component(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The largest 8-connected component of a mask (a copy of the mask if it has <= 1)."""
    components, n = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if n <= 1:
        return np.asarray(mask, dtype=bool).copy()
    sizes = np.bincount(components.ravel())[1:]
    return np.asarray(components == int(np.argmax(sizes)) + 1)


def lv_enclosure(lv: npt.NDArray[np.bool_], myocardium: npt.NDArray[np.bool_]) -> float:
    """Fraction of the pixels bordering the LV blood pool that are myocardium (0 if no LV)."""
    if not lv.any():
        return 0.0
    border = ndimage.binary_dilation(lv, structure=EIGHT_CONNECTED) & ~lv
    return float(myocardium[border].mean())


def ring_postprocess(labels: npt.NDArray[np.uint8], pixel_spacing: tuple[float, float],
                     rv_max_gap_mm: float = 5.0, max_hole_mm2: float = 12.0
                     ) -> npt.NDArray[np.uint8]:
    """Anatomically consistent short-axis labels from a raw argmax label image.

    Parameters
    ----------
    labels
        Raw labels with :class:`plugins.api.Label` values background, LV blood pool,
        myocardium and RV blood pool (other values are ignored).
    pixel_spacing
        (row, col) spacing in mm.
    rv_max_gap_mm
        An RV blood-pool component further than this from the myocardium is dropped.
    max_hole_mm2
        Enclosed holes smaller than this without LV blood-pool pixels become myocardium.

    Returns
    -------
    numpy.ndarray
        One myocardium component; LV blood pool inside the ring (and touching it where the
        ring is open); small enclosed holes as myocardium; RV blood pool as one component
        next to the myocardium; no islands.
    """
    from plugins.api import Label

    out = np.zeros_like(labels, dtype=np.uint8)
    myo = labels == Label.MYOCARDIUM
    if not myo.any():
        return out
    myo = largest_component(myo)
    pixel_area = pixel_spacing[0] * pixel_spacing[1]
    lv_raw = labels == Label.LV_BLOOD_POOL
    enclosed = ndimage.binary_fill_holes(myo) & ~myo
    holes, n_holes = ndimage.label(enclosed)
    lv = np.zeros_like(myo)
    for k in range(1, n_holes + 1):
        hole = holes == k
        if hole.sum() * pixel_area < max_hole_mm2 and not (hole & lv_raw).any():
            myo |= hole
        else:
            lv |= hole
    # Where the ring is open (basal slices), keep the LV components touching the myocardium.
    near_myo = ndimage.binary_dilation(myo, structure=EIGHT_CONNECTED)
    components, n = ndimage.label(lv_raw & ~myo & ~lv, structure=EIGHT_CONNECTED)
    for k in range(1, n + 1):
        part = components == k
        if (part & near_myo).any() or (ndimage.binary_dilation(part) & lv).any():
            lv |= part
    if lv.any():
        lv = largest_component(lv)
    rv_raw = (labels == Label.RV_BLOOD_POOL) & ~myo & ~lv
    rv = np.zeros_like(myo)
    if rv_raw.any():
        gap_px = rv_max_gap_mm / min(pixel_spacing)
        distance = ndimage.distance_transform_edt(~myo)
        components, n = ndimage.label(rv_raw, structure=EIGHT_CONNECTED)
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
