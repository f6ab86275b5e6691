"""Training data for the LGE U-Net: phantom cache and on-the-fly augmentation.

Phantom short-axis LGE stacks (:func:`models.phantoms.lge.make_lge_stack`) are rendered once
per subject seed into a cache (:func:`generate_cache`) holding, for every slice, both
reconstructions of the same acquisition (PSIR and magnitude) and the exact labels, because
rendering (~0.2 s per slice) is much slower than a training step needs.  Every subject gets
a field strength from its seed's parity and a scar pattern cycling through all patterns
(no scar included), a random matrix (non-square too) and pixel spacing of 1.0-2.5 mm, and
a stack of slices from base to apex.

Every training sample is drawn from the cache, given a random vendor-like intensity mapping
(scale, offset such as Siemens' +4096 for PSIR), normalised by
:func:`models.runtime.lgeseg.segmenter.normalise` (robust per-image percentiles, so invariant to
offset and scale) and warped onto the network grid with a random rotation, flip, zoom and
shift in one linear interpolation; then contrast (gamma), smooth bias, blur and noise are
applied on the grid.

Subject seeds of the training cache, the checkpoint-selection set and the held-out
evaluation set (:data:`TRAIN_SEED_START`, :data:`VAL_SEED_START`, :data:`EVAL_SEED_START`)
never overlap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.phantoms.lge import LgeSlice, make_lge_stack
from models.phantoms.lge_acquisition import Contrast
from models.phantoms.lge_scar import ScarPattern
from models.runtime.lgeseg.segmenter import GRID_SIZE, GRID_SPACING_MM, N_CLASSES, normalise
from models.training import cache
from models.training.augment import (
    grid_intensity,
    random_warp,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CONTRASTS",
    "EVAL_SEED_START",
    "PATTERNS",
    "TRAIN_SEED_START",
    "VAL_SEED_START",
    "AugmentationSettings",
    "CachedSlice",
    "augment",
    "eval_stack",
    "generate_cache",
    "generator_fingerprint",
    "load_cache",
    "sample_geometry",
    "training_stack",
]

TRAIN_SEED_START: Final = 200_000
"""First subject seed of the training cache; subject ``k`` uses ``TRAIN_SEED_START + k``."""
VAL_SEED_START: Final = 700_000
"""Subject seeds of the checkpoint-selection set."""
EVAL_SEED_START: Final = 950_000
"""First subject seed of the held-out evaluation set (never used in training)."""
FIELD_STRENGTHS_T: Final = (1.5, 3.0)
PATTERNS: Final = tuple(ScarPattern)
"""All scar patterns, ``none`` included; subject ``k`` gets ``PATTERNS[(k // 2) % 8]``."""
CONTRASTS: Final = (Contrast.PSIR, Contrast.MAGNITUDE)
TRAIN_SLICES_PER_STACK: Final = 6
CHUNK_SUBJECTS: Final = 25
"""Subjects per cache file."""
SPACING_RANGE_MM: Final = (1.0, 2.5)
FOV_RANGE_MM: Final = (290.0, 400.0)
MAX_MATRIX: Final = 320
ASPECT_RATIOS: Final = (1.0, 0.875, 0.8125, 0.75)
"""Short side / long side of the reconstruction matrix (e.g. 256 x 208 = 0.8125)."""
GENERATOR_FILES: Final = ("anatomy.py", "heart_geometry.py", "heart_rendering.py",
                          "heart_sampling.py", "lge.py", "lge_acquisition.py", "lge_image.py",
                          "lge_scar.py", "maps.py", "scar_rendering.py", "t1map.py",
                          "t1map_acquisition.py", "t1map_synthesis.py", "tissues.py")
"""Sources of ``models.phantoms`` that the LGE phantoms depend on."""

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class CachedSlice:
    """One phantom slice as stored in the training cache.

    Attributes
    ----------
    psir, magnitude
        float32 (rows, cols) reconstructions of the same acquisition (no vendor offset).
    labels
        uint8 exact labels (0 background, 1 LV blood, 2 myocardium, 3 RV blood, 4 scar,
        5 MVO).
    pixel_spacing
        (row, col) spacing in mm.
    field_strength_t
        1.5 or 3.
    position
        Long-axis position (0 base, 1 apex).
    """

    psir: F32
    magnitude: F32
    labels: U8
    pixel_spacing: tuple[float, float]
    field_strength_t: float
    position: float


def generator_fingerprint() -> str:
    """SHA-256 over the LGE generator's source files (identifies the generator version)."""
    return cache.generator_fingerprint(GENERATOR_FILES)


def sample_geometry(rng: np.random.Generator) -> tuple[tuple[int, int], tuple[float, float]]:
    """A reconstruction matrix (rows, cols) and pixel spacing (row, col) in mm.

    Spacing uniform in :data:`SPACING_RANGE_MM` (one stack in eight slightly anisotropic),
    field of view 290-400 mm along the longer side (at most :data:`MAX_MATRIX` pixels),
    shorter side by one of :data:`ASPECT_RATIOS`, either side the shorter one.
    """
    spacing = float(rng.uniform(*SPACING_RANGE_MM))
    col_spacing = spacing * float(rng.uniform(1.0, 1.2)) if rng.random() < 0.125 else spacing
    fov = float(rng.uniform(*FOV_RANGE_MM))
    long_side = min(MAX_MATRIX, 2 * round(fov / spacing / 2.0))
    ratio = ASPECT_RATIOS[int(rng.integers(len(ASPECT_RATIOS)))]
    short_side = 2 * round(long_side * ratio / 2.0)
    shape = (short_side, long_side) if rng.random() < 0.6 else (long_side, short_side)
    return shape, (round(spacing, 4), round(col_spacing, 4))


def _subject_design(seed: int) -> tuple[float, ScarPattern]:
    field = FIELD_STRENGTHS_T[seed % 2]
    pattern = PATTERNS[(seed // 2) % len(PATTERNS)]
    return field, pattern


def training_stack(seed: int) -> list[LgeSlice]:
    """The :data:`TRAIN_SLICES_PER_STACK` slices (base to apex) of a training subject.

    Field strength from the seed's parity, scar pattern ``PATTERNS[(seed // 2) % 8]``,
    geometry from :func:`sample_geometry`, stack range jittered around the default.
    """
    rng = np.random.default_rng(seed)
    field, pattern = _subject_design(seed)
    shape, spacing = sample_geometry(rng)
    s_range = (float(rng.uniform(0.02, 0.10)), float(rng.uniform(0.82, 0.93)))
    _, slices = make_lge_stack(rng, n_slices=TRAIN_SLICES_PER_STACK, field_strength_t=field,
                               scar_pattern=pattern, shape=shape, pixel_spacing=spacing,
                               s_range=s_range)
    return slices


def eval_stack(seed: int) -> list[LgeSlice]:
    """A held-out (or validation) stack of 8-12 slices, base to apex.

    Field strength from the seed's parity, scar pattern ``PATTERNS[(seed // 2) % 8]``,
    contrast PSIR for ``(seed // 16)`` even and magnitude otherwise (so every block of 32
    seeds holds every pattern at both fields in both contrasts).
    """
    rng = np.random.default_rng(seed)
    field, pattern = _subject_design(seed)
    contrast = CONTRASTS[(seed // 16) % 2]
    shape, spacing = sample_geometry(rng)
    n_slices = int(rng.integers(8, 13))
    _, slices = make_lge_stack(rng, n_slices=n_slices, field_strength_t=field,
                               scar_pattern=pattern, contrast=contrast, shape=shape,
                               pixel_spacing=spacing)
    return slices


def generate_cache(directory: Path, n_subjects: int, seed_start: int = TRAIN_SEED_START) -> None:
    """Render ``n_subjects`` training subjects into ``directory`` (existing chunks are kept).

    Parameters
    ----------
    directory
        Output directory; one ``chunk_XXXX.npz`` per :data:`CHUNK_SUBJECTS` subjects.
    n_subjects
        Number of subjects (:data:`TRAIN_SLICES_PER_STACK` slices each).
    seed_start
        Seed of the first subject.
    """
    def render(k: int) -> Iterator[cache.Sample]:
        for item in training_stack(seed_start + k):
            yield ({"psir": item.psir.astype(np.float32),
                    "magnitude": item.magnitude.astype(np.float32),
                    "labels": item.labels.astype(np.uint8)},
                   (*item.pixel_spacing, item.field_strength_t, item.position))

    cache.write_chunks(directory, n_subjects, CHUNK_SUBJECTS, render)


def load_cache(directory: Path, max_chunks: int | None = None) -> list[CachedSlice]:
    """All slices of the cache chunks in ``directory`` (sorted by chunk name)."""
    def make(data: Mapping[str, Any], i: int,
             row: npt.NDArray[np.float64]) -> CachedSlice:
        return CachedSlice(data[f"psir_{i}"], data[f"magnitude_{i}"], data[f"labels_{i}"],
                           (float(row[0]), float(row[1])), float(row[2]), float(row[3]))

    return cache.read_chunks(directory, make, max_chunks=max_chunks)


def cached(item: LgeSlice) -> CachedSlice:
    """A phantom slice in the cache's form."""
    return CachedSlice(item.psir, item.magnitude, item.labels, item.pixel_spacing,
                       item.field_strength_t, item.position)


@dataclass(frozen=True)
class AugmentationSettings:
    """Ranges of the random augmentations (all applied independently per sample)."""

    psir_probability: float = 0.5
    """Probability of using the PSIR reconstruction (magnitude otherwise)."""
    intensity_scale: tuple[float, float] = (0.05, 20.0)
    """Vendor scaling of stored values (log-uniform); invisible after normalisation."""
    siemens_offset_probability: float = 0.3
    """Probability of adding Siemens' +4096 to a PSIR image (as the DICOM loader leaves it)."""
    zoom: tuple[float, float] = (0.8, 1.25)
    """Factor on the grid spacing (heart size relative to the grid)."""
    shift_mm: float = 30.0
    """Largest shift of the grid centre along each axis."""
    gamma: tuple[float, float] = (0.7, 1.4)
    """Contrast change (power law on the normalised intensities), applied with
    ``gamma_probability``."""
    gamma_probability: float = 0.3
    bias_fraction: float = 0.25
    """Largest relative amplitude of a smooth multiplicative bias."""
    blur_probability: float = 0.25
    blur_sigma_px: tuple[float, float] = (0.3, 1.0)
    noise_probability: float = 0.4
    noise_sd: tuple[float, float] = (0.0, 0.06)
    """Additive noise SD in normalised units (blood ~0.8-1)."""


def augment(
    item: CachedSlice,
    rng: np.random.Generator,
    settings: AugmentationSettings | None = None,
    grid_size: int = GRID_SIZE,
) -> tuple[F32, U8]:
    """A randomly transformed network input and its label image on the network grid.

    A vendor-like intensity mapping of the PSIR or magnitude reconstruction of ``item``,
    normalised, warped onto the grid of side ``grid_size`` and changed in intensity, all
    drawn from ``rng`` within ``settings`` (the defaults if ``None``).

    Returns
    -------
    image, labels
        float32 (grid, grid) normalised input and uint8 (grid, grid) labels.
    """
    s = settings or AugmentationSettings()
    psir = bool(rng.random() < s.psir_probability)
    source = item.psir if psir else item.magnitude
    scale = float(math.exp(rng.uniform(math.log(s.intensity_scale[0]),
                                       math.log(s.intensity_scale[1]))))
    offset = 4096.0 if psir and rng.random() < s.siemens_offset_probability else 0.0
    normalised, background = normalise(source * scale + offset)
    image, labels = random_warp(
        rng, normalised, item.labels, item.pixel_spacing, grid_size=grid_size,
        grid_spacing_mm=GRID_SPACING_MM, zoom=s.zoom, shift_mm=s.shift_mm,
        n_classes=N_CLASSES, cval=background,
    )
    image = grid_intensity(image, background, rng, s.gamma_probability, s.gamma,
                           s.bias_fraction, s.blur_probability, s.blur_sigma_px,
                           s.noise_probability, s.noise_sd)
    return image.astype(np.float32), labels


if __name__ == "__main__":
    from models.training.cli import render_cache

    render_cache("Render the LGE phantom training cache.", generate_cache, 500)
