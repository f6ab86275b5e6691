"""Augmentation shared by the network trainers: random warps onto the network grid, smooth
bias fields and shuffled batches of augmented samples."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.runtime.segmentation import grid_affine

__all__ = ["augmented_batch", "augmented_batches", "grid_intensity", "random_warp", "smooth_field",
           "warp_labels"]

F32 = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float64]


def warp_labels(labels: npt.NDArray[np.uint8], matrix: Matrix, offset: Matrix,
                out_shape: tuple[int, int], n_classes: int) -> npt.NDArray[np.uint8]:
    """A label image resampled with an affine map (linear one-hot, then argmax).

    Outside the source everything is background (label 0).
    """
    warped = np.stack([
        ndimage.affine_transform((labels == k).astype(np.float32), matrix, offset, out_shape,
                                 order=1, cval=1.0 if k == 0 else 0.0)
        for k in range(n_classes)
    ])
    return np.argmax(warped, axis=0).astype(np.uint8)


def smooth_field(rng: np.random.Generator, size: int) -> F32:
    """Smooth random field (size, size) with peak magnitude 1 (bias augmentation)."""
    coarse = rng.standard_normal((4, 4)).astype(np.float32)
    values = ndimage.zoom(coarse, size / 4.0, order=3)[:size, :size]
    peak = float(np.abs(values).max()) or 1.0
    return (values / peak).astype(np.float32)


def augmented_batch(
    items: Sequence[Any],
    indices: Sequence[int],
    augment_one: Callable[[Any], tuple[F32, npt.NDArray[np.uint8]]],
    add_channel: bool = True,
) -> tuple[F32, npt.NDArray[np.int64]]:
    """Inputs (batch, channels, grid, grid) and targets (batch, grid, grid) of augmented items.

    ``add_channel``: the items' inputs are single images (grid, grid) that get a channel axis;
    otherwise they are (channels, grid, grid) already.
    """
    images, labels = zip(*(augment_one(items[i]) for i in indices), strict=True)
    stacked = np.stack(images)
    return ((stacked[:, None] if add_channel else stacked).astype(np.float32),
            np.stack(labels).astype(np.int64))


def augmented_batches(
    items: Sequence[Any],
    batch_size: int,
    rng: np.random.Generator,
    augment_one: Callable[[Any], tuple[F32, npt.NDArray[np.uint8]]],
    add_channel: bool = True,
) -> Iterator[tuple[F32, npt.NDArray[np.int64]]]:
    """Endless shuffled batches over ``items``, each item augmented by ``augment_one``
    (``add_channel`` as :func:`augmented_batch`)."""
    while True:
        order = rng.permutation(len(items))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield augmented_batch(items, order[start:start + batch_size].tolist(), augment_one,
                                  add_channel)


def random_warp(
    rng: np.random.Generator,
    image: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.uint8],
    pixel_spacing: tuple[float, float],
    *,
    grid_size: int,
    grid_spacing_mm: float,
    zoom: tuple[float, float],
    shift_mm: float,
    n_classes: int,
    cval: float = 0.0,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]:
    """An image and its labels on the network grid under a random rotation (any angle),
    mirroring, zoom (log-uniform in ``zoom``) and shift (uniform within ``shift_mm``)."""
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    flip = bool(rng.random() < 0.5)
    scale = float(math.exp(rng.uniform(math.log(zoom[0]), math.log(zoom[1]))))
    shift = (float(rng.uniform(-shift_mm, shift_mm)), float(rng.uniform(-shift_mm, shift_mm)))
    matrix, offset = grid_affine(image.shape, pixel_spacing, grid_size,
                                 grid_spacing_mm * scale, angle, flip, shift)
    out = (grid_size, grid_size)
    warped = ndimage.affine_transform(image, matrix, offset, out, order=1, cval=cval)
    return warped, warp_labels(labels, matrix, offset, out, n_classes)


def grid_intensity(image: npt.NDArray[Any], background: float, rng: np.random.Generator,
                   gamma_probability: float, gamma: tuple[float, float], bias_fraction: float,
                   blur_probability: float, blur_sigma_px: tuple[float, float],
                   noise_probability: float, noise_sd: tuple[float, float]) -> F32:
    """Random intensity changes of an image on the network grid around its background level.

    In this order, each drawn independently: a power law (``gamma``) of the distance from the
    background, keeping the sign structure of PSIR (with ``gamma_probability``); a smooth
    multiplicative bias up to ``bias_fraction``; Gaussian blur (``blur_sigma_px``, with
    ``blur_probability``); additive Gaussian noise (SD in ``noise_sd``, with
    ``noise_probability``).
    """
    if rng.random() < gamma_probability:
        g = float(rng.uniform(*gamma))
        centred = image - background
        image = background + np.sign(centred) * np.abs(centred) ** g
    if bias_fraction > 0:
        field = 1.0 + float(rng.uniform(0, bias_fraction)) * smooth_field(rng, image.shape[0])
        image = background + (image - background) * field
    if rng.random() < blur_probability:
        image = ndimage.gaussian_filter(image, float(rng.uniform(*blur_sigma_px)))
    if rng.random() < noise_probability:
        sd = float(rng.uniform(*noise_sd))
        image = image + rng.standard_normal(image.shape).astype(np.float32) * sd
    return np.asarray(image, dtype=np.float32)
