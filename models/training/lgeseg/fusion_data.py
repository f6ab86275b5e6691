"""Training data for the two-channel LGE + cine U-Net: matched phantom pairs and augmentation.

Every LGE slice of a phantom subject (:func:`models.training.lgeseg.data.training_stack` or
:func:`~models.training.lgeseg.data.eval_stack`, unchanged, so the LGE images are bit-identical to
the LGE-only network's data for the same seed) is paired with a bSSFP cine image of the same
:class:`~models.phantoms.heart_geometry.HeartCase` at the same long-axis position
(:func:`models.phantoms.cine.make_cine_slice`), drawn from a separate random stream of the
seed.  The cine differs from the LGE as a real cine series does:

- its own matrix, pixel spacing (1.2-2.0 mm) and field-of-view centre (up to
  :data:`MAX_CENTRE_OFFSET_MM` away along each axis);
- an in-plane breath-hold mismatch of the anatomy, uniform in a disc of radius
  :data:`MAX_MISREGISTRATION_MM`, independently per slice;
- its own heart rate (the LGE's within a few per cent) and discrete phases
  (:data:`PHASE_COUNTS` per RR); the phase whose TriggerTime is nearest the LGE's is used,
  so it may lie slightly before diastasis (slightly contracted).

The cine is then brought onto the LGE pixel grid exactly as at inference: resampled through
the (synthetic, centre-based) patient geometry with
:func:`plugins.lge.cine.resample_to_frame` and translated by
:func:`plugins.lge.cine.register_translation`; the cache stores this aligned cine, so the
training data carries the real registration residuals.

Augmentation applies one random rotation, mirroring, zoom and shift to both channels (one
linear warp), the LGE-only network's intensity augmentations to the LGE channel and
independent ones to the cine channel, and, in half of the samples, an extra residual
misalignment of the cine of up to :data:`AugmentationSettings.cine_residual_mm`.

Subject seeds: training from :data:`FUSION_TRAIN_SEED_START`, checkpoint selection from
:data:`FUSION_VAL_SEED_START`, evaluation from :data:`models.training.lgeseg.data.EVAL_SEED_START`
(the LGE-only network's held-out stacks, so the two are compared on the same images).  None
of these overlaps another range, nor the LGE-only training seeds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.cine import CineSlice, make_cine_slice, sample_cine_acquisition
from models.phantoms.lge import LgeSlice
from models.runtime.lgeseg.segmenter import GRID_SIZE, GRID_SPACING_MM, N_CLASSES, normalise
from models.runtime.segmentation import grid_affine
from models.training import cache
from models.training.augment import (
    grid_intensity,
    warp_labels,
)
from models.training.lgeseg.data import GENERATOR_FILES, CachedSlice, eval_stack, training_stack
from models.training.lgeseg.data import AugmentationSettings as LgeAugmentation
from plugins.lge.cine import register_translation, resample_to_frame, shift_image

logger = logging.getLogger(__name__)

__all__ = [
    "FUSION_TRAIN_SEED_START",
    "FUSION_VAL_SEED_START",
    "AugmentationSettings",
    "CachedPair",
    "MatchedCine",
    "augment_pair",
    "fusion_fingerprint",
    "generate_fusion_cache",
    "load_fusion_cache",
    "matched_cines",
    "pair_stack",
]

FUSION_TRAIN_SEED_START: Final = 210_000
"""First training subject of the fusion network (the LGE-only network used 200000-200599)."""
FUSION_VAL_SEED_START: Final = 710_000
"""Subjects of the fusion network's checkpoint selection."""
CINE_STREAM: Final = 7
"""Second entropy word of the cine generator (``default_rng([seed, CINE_STREAM])``)."""
CHUNK_SUBJECTS: Final = 25
MAX_MISREGISTRATION_MM: Final = 6.0
"""Largest breath-hold mismatch between the cine and LGE anatomy."""
MAX_CENTRE_OFFSET_MM: Final = 15.0
"""Largest difference of the cine and LGE field-of-view centres along each axis."""
CINE_SPACING_MM: Final = (1.2, 2.0)
CINE_FOV_MM: Final = (300.0, 380.0)
PHASE_COUNTS: Final = (20, 25, 30)
"""Cine phases per RR interval."""
HEART_RATE_CHANGE: Final = 0.04
"""SD of the relative heart-rate difference between the cine and LGE breath-holds."""
IDENTITY_ORIENTATION: Final = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
FUSION_GENERATOR_FILES: Final = (*GENERATOR_FILES, "cine.py")

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class MatchedCine:
    """The cine paired with one LGE slice, on the LGE pixel grid.

    Attributes
    ----------
    aligned
        float32 cine resampled onto the LGE grid and translated by the registration.
    misregistration_mm
        True anatomy displacement (row, col) of the cine against the LGE.
    estimated_mm
        The registration's translation (row, col).
    accepted
        Whether the registration result was used.
    phase, trigger_time_ms
        Cardiac phase (fraction of the cine RR) and TriggerTime of the chosen cine frame.
    raw
        The cine slice in its own geometry.
    centre_offset_mm
        Cine field-of-view centre minus the LGE one (x, y).
    """

    aligned: F32
    misregistration_mm: tuple[float, float]
    estimated_mm: tuple[float, float]
    accepted: bool
    phase: float
    trigger_time_ms: float
    raw: CineSlice
    centre_offset_mm: tuple[float, float]


@dataclass(frozen=True)
class CachedPair(CachedSlice):
    """One training pair as stored in the cache: the LGE slice and its aligned cine."""

    cine: F32
    """float32 cine on the LGE pixel grid (:attr:`MatchedCine.aligned`)."""


def fusion_fingerprint() -> str:
    """SHA-256 over the phantom generator sources the matched pairs depend on (LGE, cine)."""
    return cache.generator_fingerprint(FUSION_GENERATOR_FILES)


def _cine_geometry(rng: np.random.Generator) -> tuple[tuple[int, int], tuple[float, float]]:
    spacing = float(rng.uniform(*CINE_SPACING_MM))
    fov = float(rng.uniform(*CINE_FOV_MM))
    long_side = 2 * round(fov / spacing / 2.0)
    short_side = 2 * round(long_side * float(rng.uniform(0.75, 1.0)) / 2.0)
    shape = (short_side, long_side) if rng.random() < 0.7 else (long_side, short_side)
    return shape, (round(spacing, 4), round(spacing, 4))


def _centre_position(shape: tuple[int, int], spacing: tuple[float, float],
                     centre_xy: tuple[float, float]) -> tuple[float, float, float]:
    """ImagePositionPatient of a frame (identity orientation) centred at ``centre_xy``."""
    return (centre_xy[0] - (shape[1] - 1) / 2.0 * spacing[1],
            centre_xy[1] - (shape[0] - 1) / 2.0 * spacing[0], 0.0)


def matched_cines(slices: Sequence[LgeSlice], seed: int,
                  max_misregistration_mm: float = MAX_MISREGISTRATION_MM) -> list[MatchedCine]:
    """The matched, aligned cine of every slice of an LGE stack.

    Parameters
    ----------
    slices
        One subject's LGE stack.
    seed
        Subject seed (the cine stream is ``default_rng([seed, CINE_STREAM])``).
    max_misregistration_mm
        Radius of the breath-hold mismatch disc.

    Returns
    -------
    list of MatchedCine
        One per LGE slice, in order.
    """
    if not slices:
        return []
    rng = np.random.default_rng([int(seed), CINE_STREAM])
    first = slices[0]
    lge_acq = first.acquisition
    heart_rate = lge_acq.heart_rate_bpm * (1.0 + float(rng.normal(0.0, HEART_RATE_CHANGE)))
    acq = sample_cine_acquisition(rng, heart_rate)
    n_phases = int(PHASE_COUNTS[int(rng.integers(len(PHASE_COUNTS)))])
    phase_index = round(lge_acq.trigger_time_ms / (acq.rr_ms / n_phases)) % n_phases
    phase = phase_index / n_phases
    shape, spacing = _cine_geometry(rng)
    offset = (float(rng.uniform(-MAX_CENTRE_OFFSET_MM, MAX_CENTRE_OFFSET_MM)),
              float(rng.uniform(-MAX_CENTRE_OFFSET_MM, MAX_CENTRE_OFFSET_MM)))
    out = []
    for k, lge in enumerate(slices):
        radius = max_misregistration_mm * math.sqrt(float(rng.random()))
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        misregistration = (radius * math.cos(angle), radius * math.sin(angle))
        anatomy = (lge.centre_shift_mm[0] - offset[0], lge.centre_shift_mm[1] - offset[1])
        cine = make_cine_slice(rng, lge.heart, level=lge.position, phase=phase, shape=shape,
                               pixel_spacing=spacing, acquisition=acq,
                               centre_shift_mm=anatomy, misregistration_mm=misregistration)
        on_grid = resample_to_frame(
            cine.image, _centre_position(shape, spacing, offset), IDENTITY_ORIENTATION,
            spacing, lge.shape, _centre_position(lge.shape, lge.pixel_spacing, (0.0, 0.0)),
            IDENTITY_ORIENTATION, lge.pixel_spacing)
        fixed = lge.psir if k % 2 == 0 else lge.magnitude
        registration = register_translation(fixed, on_grid, lge.pixel_spacing)
        aligned = shift_image(on_grid, registration.shift_mm, lge.pixel_spacing)
        out.append(MatchedCine(
            aligned=aligned,
            misregistration_mm=(misregistration[1], misregistration[0]),
            estimated_mm=registration.shift_mm,
            accepted=registration.accepted,
            phase=phase,
            trigger_time_ms=cine.trigger_time_ms,
            raw=cine,
            centre_offset_mm=offset,
        ))
    return out


def pair_stack(seed: int, evaluation: bool = False) -> tuple[list[LgeSlice], list[MatchedCine]]:
    """A subject's LGE stack and its matched cines (training or evaluation design)."""
    slices = eval_stack(seed) if evaluation else training_stack(seed)
    return slices, matched_cines(slices, seed)


def generate_fusion_cache(directory: Path, n_subjects: int,
                          seed_start: int = FUSION_TRAIN_SEED_START,
                          chunks: Sequence[int] | None = None) -> None:
    """Render training pairs into ``directory`` (existing chunks are kept).

    Parameters
    ----------
    directory
        Output directory; one ``chunk_XXXX.npz`` per :data:`CHUNK_SUBJECTS` subjects.
    n_subjects
        Number of subjects.
    seed_start
        Seed of the first subject.
    chunks
        Only these chunk numbers (e.g. to render in two processes); all if ``None``.
    """
    def render(k: int) -> Iterator[cache.Sample]:
        slices, cines = pair_stack(seed_start + k)
        for item, cine in zip(slices, cines, strict=True):
            yield ({"psir": item.psir.astype(np.float32),
                    "magnitude": item.magnitude.astype(np.float32),
                    "cine": cine.aligned.astype(np.float32),
                    "labels": item.labels.astype(np.uint8)},
                   (*item.pixel_spacing, item.field_strength_t, item.position,
                    *cine.misregistration_mm, *cine.estimated_mm, float(cine.accepted)))

    cache.write_chunks(directory, n_subjects, CHUNK_SUBJECTS, render, what="fusion cache",
                       chunks=chunks)


def load_fusion_cache(directory: Path, max_chunks: int | None = None) -> list[CachedPair]:
    """All pairs of the cache chunks in ``directory`` (sorted by chunk name)."""
    def make(data: Mapping[str, Any], i: int,
             row: npt.NDArray[np.float64]) -> CachedPair:
        return CachedPair(data[f"psir_{i}"], data[f"magnitude_{i}"], data[f"labels_{i}"],
                          (float(row[0]), float(row[1])), float(row[2]), float(row[3]),
                          cine=data[f"cine_{i}"])

    return cache.read_chunks(directory, make, max_chunks=max_chunks)


def cached_pair(item: LgeSlice, cine: MatchedCine) -> CachedPair:
    """A phantom slice and its matched cine in the cache's form."""
    return CachedPair(item.psir, item.magnitude, item.labels, item.pixel_spacing,
                      item.field_strength_t, item.position, cine=cine.aligned)


@dataclass(frozen=True)
class AugmentationSettings(LgeAugmentation):
    """The LGE-only network's augmentation ranges plus those of the cine channel."""

    cine_residual_probability: float = 0.5
    """Probability of an extra misalignment of the cine (registration error)."""
    cine_residual_mm: float = 2.0
    """Largest extra misalignment along each axis."""
    cine_gamma_probability: float = 0.3
    cine_bias_fraction: float = 0.3
    cine_blur_probability: float = 0.25
    cine_noise_probability: float = 0.4


def augment_pair(
    item: CachedPair,
    rng: np.random.Generator,
    settings: AugmentationSettings | None = None,
    grid_size: int = GRID_SIZE,
) -> tuple[F32, U8]:
    """A randomly transformed two-channel input (LGE, cine) and labels on the network grid.

    Returns
    -------
    image, labels
        float32 (2, grid, grid) and uint8 (grid, grid).
    """
    s = settings or AugmentationSettings()
    psir = bool(rng.random() < s.psir_probability)
    source = item.psir if psir else item.magnitude
    scale = float(math.exp(rng.uniform(math.log(s.intensity_scale[0]),
                                       math.log(s.intensity_scale[1]))))
    offset = 4096.0 if psir and rng.random() < s.siemens_offset_probability else 0.0
    lge, lge_background = normalise(source * scale + offset)
    cine_source = item.cine
    if rng.random() < s.cine_residual_probability:
        residual = (float(rng.uniform(-s.cine_residual_mm, s.cine_residual_mm)),
                    float(rng.uniform(-s.cine_residual_mm, s.cine_residual_mm)))
        cine_source = shift_image(cine_source, residual, item.pixel_spacing)
    cine, cine_background = normalise(cine_source)

    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    flip = bool(rng.random() < 0.5)
    zoom = float(math.exp(rng.uniform(math.log(s.zoom[0]), math.log(s.zoom[1]))))
    shift = (float(rng.uniform(-s.shift_mm, s.shift_mm)),
             float(rng.uniform(-s.shift_mm, s.shift_mm)))
    matrix, affine_offset = grid_affine(lge.shape, item.pixel_spacing, grid_size,
                                        GRID_SPACING_MM * zoom, angle, flip, shift)
    out = (grid_size, grid_size)
    lge_grid = ndimage.affine_transform(lge, matrix, affine_offset, out, order=1,
                                        cval=lge_background)
    cine_grid = ndimage.affine_transform(cine, matrix, affine_offset, out, order=1,
                                         cval=cine_background)
    labels = warp_labels(item.labels, matrix, affine_offset, out, N_CLASSES)
    lge_grid = grid_intensity(lge_grid, lge_background, rng, s.gamma_probability, s.gamma,
                              s.bias_fraction, s.blur_probability, s.blur_sigma_px,
                              s.noise_probability, s.noise_sd)
    cine_grid = grid_intensity(cine_grid, cine_background, rng, s.cine_gamma_probability,
                               s.gamma, s.cine_bias_fraction, s.cine_blur_probability,
                               s.blur_sigma_px, s.cine_noise_probability, s.noise_sd)
    return np.stack([lge_grid, cine_grid]).astype(np.float32), labels


if __name__ == "__main__":
    from models.training.cli import render_cache

    render_cache("Render the LGE + cine training cache.", generate_fusion_cache, 400,
                 chunks=True)
