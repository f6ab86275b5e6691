"""Training data for the T1-map U-Net: phantom cache and on-the-fly augmentation.

Phantom short-axis T1 maps (:mod:`models.phantoms.t1map`) are rendered once per subject
seed into a cache of native-resolution maps and exact labels (:func:`generate_cache`), because
rendering (~0.16 s per slice) is much slower than a training step needs.  Every training
sample is then drawn from the cache and warped onto the network grid with a random rotation
(any angle), flip, zoom and shift in one linear interpolation, after which intensity
augmentations are applied in milliseconds (global T1 scaling, smooth bias, blur, noise,
clipping).  The network input is T1 / :data:`~models.runtime.t1seg.segmenter.T1_SCALE_MS`: no
per-image normalisation, so what the network learns stays tied to physical T1.

Subject seeds of the training cache and of the held-out evaluation set
(:data:`TRAIN_SEED_START`, :data:`EVAL_SEED_START`) never overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.t1map import PhantomSlice, make_t1map_stack
from models.runtime.t1seg.segmenter import (
    GRID_SIZE,
    GRID_SPACING_MM,
    N_CLASSES,
    T1_SCALE_MS,
)
from models.training import cache
from models.training.augment import random_warp, smooth_field

logger = logging.getLogger(__name__)

__all__ = [
    "EVAL_SEED_START",
    "TRAIN_SEED_START",
    "AugmentationSettings",
    "CachedSlice",
    "augment",
    "generate_cache",
    "generator_fingerprint",
    "load_cache",
    "phantom_subject",
]

TRAIN_SEED_START: Final = 100_000
"""First subject seed of the training cache; subject ``k`` uses seed ``TRAIN_SEED_START + k``."""
EVAL_SEED_START: Final = 900_000
"""First subject seed of the held-out evaluation set (never used in training)."""
LEVELS_PER_SUBJECT: Final = ("basal", "mid", "apical")
FIELD_STRENGTHS_T: Final = (1.5, 3.0)
CHUNK_SUBJECTS: Final = 50
"""Subjects per cache file."""

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class CachedSlice:
    """One phantom slice as stored in the training cache.

    Attributes
    ----------
    t1_ms
        float32 map (rows, cols) in ms.
    labels
        uint8 exact labels (0 background, 1 LV blood, 2 myocardium, 3 RV blood).
    pixel_spacing
        (row, col) spacing in mm.
    field_strength_t
        1.5 or 3.
    level
        ``"basal"``, ``"mid"`` or ``"apical"``.
    """

    t1_ms: F32
    labels: U8
    pixel_spacing: tuple[float, float]
    field_strength_t: float
    level: str


GENERATOR_FILES: Final = ("anatomy.py", "heart_geometry.py", "heart_rendering.py",
                          "heart_sampling.py", "t1map.py", "t1map_acquisition.py",
                          "t1map_synthesis.py", "tissues.py")
"""Sources of ``models.phantoms`` that the T1-map phantoms depend on."""


def generator_fingerprint() -> str:
    """SHA-256 over the T1-map generator's source files (identifies the generator version)."""
    return cache.generator_fingerprint(GENERATOR_FILES)


def phantom_subject(seed: int) -> list[PhantomSlice]:
    """The basal, mid and apical phantom slices of the subject with this seed.

    The field strength alternates with the seed's parity (even 1.5 T, odd 3 T); everything
    else (anatomy, phenotype, matrix, spacing, acquisition) is drawn from the seed.
    """
    rng = np.random.default_rng(seed)
    field = FIELD_STRENGTHS_T[seed % 2]
    _, slices = make_t1map_stack(rng, field_strength_t=field, levels=LEVELS_PER_SUBJECT)
    return slices


def generate_cache(directory: Path, n_subjects: int, seed_start: int = TRAIN_SEED_START) -> None:
    """Render ``n_subjects`` phantom subjects into ``directory`` (existing chunks are kept).

    Parameters
    ----------
    directory
        Output directory; one ``chunk_XXXX.npz`` per :data:`CHUNK_SUBJECTS` subjects.
    n_subjects
        Number of subjects (three slices each).
    seed_start
        Seed of the first subject.
    """
    def render(k: int) -> Iterator[cache.Sample]:
        for phantom in phantom_subject(seed_start + k):
            yield ({"t1": phantom.t1_ms.astype(np.float32),
                    "labels": phantom.labels.astype(np.uint8)},
                   (*phantom.pixel_spacing, phantom.field_strength_t,
                    LEVELS_PER_SUBJECT.index(phantom.level)))

    cache.write_chunks(directory, n_subjects, CHUNK_SUBJECTS, render)


def load_cache(directory: Path, max_chunks: int | None = None) -> list[CachedSlice]:
    """All slices of the cache chunks in ``directory`` (sorted by chunk name)."""
    def make(data: Mapping[str, Any], i: int,
             row: npt.NDArray[np.float64]) -> CachedSlice:
        return CachedSlice(data[f"t1_{i}"], data[f"labels_{i}"], (float(row[0]), float(row[1])),
                           float(row[2]), LEVELS_PER_SUBJECT[int(row[3])])

    return cache.read_chunks(directory, make, max_chunks=max_chunks)


@dataclass(frozen=True)
class AugmentationSettings:
    """Ranges of the random augmentations (all applied independently per sample)."""

    zoom: tuple[float, float] = (0.8, 1.25)
    """Factor on the grid spacing (heart size relative to the grid)."""
    shift_mm: float = 30.0
    """Largest shift of the grid centre along each axis."""
    t1_scale: tuple[float, float] = (0.85, 1.15)
    """Global T1 factor (vendor, sequence and field-strength differences)."""
    bias_fraction: float = 0.08
    """Largest relative amplitude of a smooth multiplicative bias."""
    blur_probability: float = 0.3
    blur_sigma_px: tuple[float, float] = (0.3, 1.2)
    noise_probability: float = 0.5
    noise_sd_ms: tuple[float, float] = (0.0, 50.0)
    clip_probability: float = 0.1
    clip_ms: tuple[float, float] = (2200.0, 4000.0)
    """Some scanners clip fitted T1 at a few seconds."""


def augment(
    item: CachedSlice,
    rng: np.random.Generator,
    settings: AugmentationSettings | None = None,
    grid_size: int = GRID_SIZE,
) -> tuple[F32, U8]:
    """A randomly transformed network input and its label image on the network grid.

    The T1 map of ``item`` warped onto the grid of side ``grid_size``, scaled, biased,
    blurred, noised and clipped, all drawn from ``rng`` within ``settings`` (the defaults if
    ``None``).

    Returns
    -------
    image, labels
        float32 (grid, grid) input (T1 / ``T1_SCALE_MS``) and uint8 (grid, grid) labels.
    """
    s = settings or AugmentationSettings()
    image, labels = random_warp(
        rng, item.t1_ms, item.labels, item.pixel_spacing, grid_size=grid_size,
        grid_spacing_mm=GRID_SPACING_MM, zoom=s.zoom, shift_mm=s.shift_mm, n_classes=N_CLASSES,
    )
    out = (grid_size, grid_size)

    image = image * float(rng.uniform(*s.t1_scale))
    if s.bias_fraction > 0:
        image = image * (1.0 + float(rng.uniform(0, s.bias_fraction)) *
                         smooth_field(rng, grid_size))
    if rng.random() < s.blur_probability:
        image = ndimage.gaussian_filter(image, float(rng.uniform(*s.blur_sigma_px)))
    if rng.random() < s.noise_probability:
        sd = float(rng.uniform(*s.noise_sd_ms))
        noise = rng.standard_normal(out).astype(np.float32) * sd
        image = np.where(image > 0, image + noise, image)
    if rng.random() < s.clip_probability:
        image = np.minimum(image, float(rng.uniform(*s.clip_ms)))
    image = np.clip(image, 0.0, None) / T1_SCALE_MS
    return image.astype(np.float32), labels


if __name__ == "__main__":
    from models.training.cli import render_cache

    render_cache("Render the phantom training cache.", generate_cache, 1000)
