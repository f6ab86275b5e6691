"""Domain-randomised training samples for the two-stage LGE segmenter (sim-to-real).

Every sample is drawn from a generation label map (:mod:`models.training.lgeseg.synth_cache`) as in
SynthSeg (Billot et al., Med Image Anal 2023; ``labels_to_image_model`` of
github.com/BBillot/SynthSeg): the map is warped to the network grid (nearest label), every
generation label gets an intensity from a random Gaussian (mean and spread drawn per sample),
then the image is blurred (partial volume, lower acquired resolution), multiplied by a smooth
bias field, given ghosts or motion blur, Rician or Gaussian noise, a random gamma, optionally
quantised to 8 bits, and rescaled per image, as real exports are.  In 60 % of the synthetic
samples the means follow an LGE prior (remote myocardium dark, blood bright, scar as bright as
blood or brighter, MVO dark); in the rest every mean is random (either polarity), scar being
only brighter than myocardium.  A share of samples uses the physics-rendered phantom image
instead of the random appearance (the same corruptions follow).

Scar is planted in label maps that have none (always offered for Sunnybrook slices, sometimes
for phantom slices without scar; :func:`plant_scar`): an angular sector growing from the
endocardium (subendocardial to transmural), sometimes mid-wall, with a dark MVO core in a third
of the transmural ones.

Geometry follows how real images arrive, without using pixel spacing:

- ``locate`` samples (:func:`locate_sample`): the whole image, the heart (LV blood pool and
  myocardium) :data:`LOCATE_FILL` (8-60 %) of the image side, anywhere in the central
  part, any rotation, mirrored
  half of the time, anisotropic stretch of +-15 %, black padding bands (non-square matrices,
  padded re-exports).  Targets: background, LV blood pool, myocardium (scar included).
- ``segment`` samples (:func:`segment_sample`): a square crop of :data:`CROP_FACTOR` times
  the heart's equivalent diameter around its centre, the size and centre jittered as a
  localiser errs (size x0.8-1.25, centre +-15 % of the diameter), any rotation and
  mirroring.  Targets: the six :class:`plugins.api.Label` classes (unknown pixels 255).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import Structure
from models.runtime.lgeseg.two_stage import CROP_FACTOR, LOCATE_GRID, SEGMENT_GRID, normalise_grid
from models.training.augment import smooth_field
from models.training.lgeseg.synth_cache import GEN_MVO, GEN_SCAR, N_GEN_LABELS, LabelMapSlice
from plugins.api import Label

__all__ = [
    "IGNORE",
    "LOCATE_FILL",
    "heart_centre_and_diameter",
    "locate_sample",
    "plant_scar",
    "segment_sample",
]

LOCATE_FILL: Final = (0.08, 0.6)
"""Range (log-uniform) of the heart's equivalent diameter / image side in ``locate`` samples."""
IGNORE: Final = 255
"""Target value of unknown pixels (loss ignored)."""
OUTSIDE: Final = 255
"""Generation label of grid pixels outside the source image (black padding)."""

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

_MYO_TISSUE = (Structure.LV_MYOCARDIUM, Structure.LV_LESION, Structure.PAPILLARY_MUSCLE,
               Structure.RV_WALL, Structure.RV_TRABECULAE, Structure.SKELETAL_MUSCLE,
               Structure.STOMACH_WALL)
_BLOOD = (Structure.LV_BLOOD, Structure.RV_BLOOD, Structure.DESCENDING_AORTA, Structure.VESSEL)
_FAT = (Structure.SUBCUTANEOUS_FAT, Structure.MEDIASTINAL_FAT, Structure.EPICARDIAL_FAT,
        Structure.BONE_MARROW)
_DARK = (Structure.AIR, Structure.LUNG, Structure.STOMACH_GAS)


def heart_centre_and_diameter(labels: U8) -> tuple[tuple[float, float], float] | None:
    """Centroid (row, col) and equivalent diameter (pixels) of LV blood pool + myocardium."""
    heart = np.isin(labels, (Label.LV_BLOOD_POOL, Label.MYOCARDIUM, Label.SCAR, Label.MVO))
    area = int(heart.sum())
    if area < 20:
        return None
    rows, cols = np.nonzero(heart)
    return (float(rows.mean()), float(cols.mean())), 2.0 * math.sqrt(area / math.pi)


def _affine(rng: np.random.Generator, centre: tuple[float, float], step: float,
            grid: int, grid_shift: tuple[float, float], stretch: float
            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Grid index -> source index: ``step`` source pixels per grid pixel, any rotation."""
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) @ np.diag([step * stretch, step / stretch])
    if rng.random() < 0.5:
        matrix = matrix @ np.diag([1.0, -1.0])
    grid_centre = np.full(2, (grid - 1) / 2.0) + np.asarray(grid_shift)
    offset = np.asarray(centre) - matrix @ grid_centre
    return matrix, offset


def _warp_nearest(values: U8, matrix: npt.NDArray[np.float64],
                  offset: npt.NDArray[np.float64], grid: int, cval: int) -> U8:
    return np.asarray(ndimage.affine_transform(values, matrix, offset, (grid, grid), order=0,
                                               cval=cval), dtype=np.uint8)


def plant_scar(rng: np.random.Generator, gen: U8, target: U8) -> None:
    """Plant a random infarct-like scar (and possibly MVO) into the myocardium, in place."""
    myo = target == Label.MYOCARDIUM
    lv = target == Label.LV_BLOOD_POOL
    if myo.sum() < 30 or lv.sum() < 5:
        return
    to_lv = ndimage.distance_transform_edt(~lv)
    to_out = ndimage.distance_transform_edt(myo | lv)
    depth = to_lv / np.maximum(to_lv + to_out, 1e-6)
    rows, cols = np.nonzero(lv)
    theta = np.arctan2(np.arange(gen.shape[0])[:, None] - rows.mean(),
                       np.arange(gen.shape[1])[None, :] - cols.mean())
    delta = np.angle(np.exp(1j * (theta - rng.uniform(-math.pi, math.pi))))
    half_width = math.radians(rng.uniform(15.0, 80.0))
    taper = np.sqrt(np.clip(1.0 - (delta / half_width) ** 2, 0.0, 1.0))
    wobble = 0.08 * smooth_field(rng, max(gen.shape))[:gen.shape[0], :gen.shape[1]]
    if rng.random() < 0.15:
        centre, width = rng.uniform(0.35, 0.65), rng.uniform(0.15, 0.35)
        scar = myo & (np.abs(depth - centre) < width * taper / 2 + wobble)
        mvo = np.zeros_like(scar)
    else:
        transmurality = rng.uniform(0.25, 1.05)
        reach = transmurality * taper + wobble
        scar = myo & (taper > 0) & (depth <= reach)
        mvo = (scar & (depth < 0.45 * reach) & (np.abs(delta) < 0.5 * half_width)
               if transmurality > 0.6 and rng.random() < 0.35 else np.zeros_like(scar))
    gen[scar] = GEN_SCAR
    target[scar] = Label.SCAR
    gen[mvo] = GEN_MVO
    target[mvo] = Label.MVO


def _means(rng: np.random.Generator) -> F32:
    """Mean intensity of every generation label (index ``OUTSIDE``: black)."""
    means = np.zeros(256, dtype=np.float32)
    means[:N_GEN_LABELS] = rng.uniform(0.0, 1.0, N_GEN_LABELS)
    if rng.random() < 0.6:
        myo = rng.uniform(0.0, 0.22)
        blood = rng.uniform(0.4, 1.0)
        for s in _MYO_TISSUE:
            means[s] = np.clip(myo + rng.normal(0.0, 0.03), 0.0, 1.0)
        for s in _MYO_TISSUE[5:]:
            means[s] = rng.uniform(0.0, 0.6)
        for s in _BLOOD:
            means[s] = blood * rng.uniform(0.8, 1.1)
        for s in _FAT:
            means[s] = rng.uniform(0.25, 1.0)
        for s in _DARK:
            means[s] = rng.uniform(0.0, 0.15)
        means[GEN_SCAR] = blood * rng.uniform(0.7, 1.35)
    else:
        means[GEN_SCAR] = means[Structure.LV_MYOCARDIUM] + rng.uniform(0.3, 0.9)
        means[Structure.LV_LESION] = means[Structure.LV_MYOCARDIUM] + rng.normal(0.0, 0.03)
    means[GEN_SCAR] = max(means[GEN_SCAR], means[Structure.LV_MYOCARDIUM] + 0.25)
    means[GEN_MVO] = means[Structure.LV_MYOCARDIUM] + rng.uniform(-0.05, 0.15)
    means[OUTSIDE] = 0.0
    return means


def _appearance(rng: np.random.Generator, gen: U8) -> F32:
    means = _means(rng)
    spreads = rng.uniform(0.0, 0.06, 256).astype(np.float32)
    spreads[OUTSIDE] = 0.0
    image = means[gen] + spreads[gen] * rng.standard_normal(gen.shape).astype(np.float32)
    if rng.random() < 0.1:
        image = np.where(gen == OUTSIDE, 0.0, 1.0 - image).astype(np.float32)
    return image


def corrupt(rng: np.random.Generator, image: npt.NDArray[Any],
            outside: npt.NDArray[np.bool_]) -> F32:
    """Resolution, blur, bias, ghosts / motion, noise, gamma, 8-bit quantisation of a
    non-negative square image (``outside`` the field of view set to 0)."""
    size = image.shape[0]
    if rng.random() < 0.35:
        axis = int(rng.integers(2))
        factor = rng.uniform(1.2, 2.2)
        zoom = [1.0, 1.0]
        zoom[axis] = 1.0 / factor
        small = ndimage.zoom(image, zoom, order=1)
        image = ndimage.zoom(small, (size / small.shape[0], size / small.shape[1]), order=1)
    sigma = rng.uniform(0.2, 1.2, 2)
    image = ndimage.gaussian_filter(image, sigma)
    if rng.random() < 0.8:
        image = image * np.exp(rng.uniform(0.0, 0.5) * smooth_field(rng, size))
    if rng.random() < 0.25:
        axis = int(rng.integers(2))
        image = image + rng.uniform(0.03, 0.2) * np.roll(
            image, int(rng.integers(size // 6, size // 2)), axis=axis)
    if rng.random() < 0.2:
        length = int(rng.integers(2, 6))
        image = ndimage.uniform_filter1d(image, length, axis=int(rng.integers(2)))
    image = np.where(outside, 0.0, image)
    noise = rng.uniform(0.005, 0.08) * float(np.percentile(image, 99) or 1.0)
    if rng.random() < 0.5:
        image = np.sqrt((image + noise * rng.standard_normal(image.shape)) ** 2
                        + (noise * rng.standard_normal(image.shape)) ** 2)
    else:
        image = image + noise * rng.standard_normal(image.shape)
    lo, hi = float(image.min()), float(np.percentile(image, 99.9))
    image = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0.0, None)
    image = image ** math.exp(rng.normal(0.0, 0.3))
    if rng.random() < 0.5:
        top = float(np.percentile(image, rng.uniform(99.0, 100.0))) or 1.0
        image = np.round(np.clip(image / top, 0.0, 1.0) * 255.0)
    return np.asarray(image, dtype=np.float32)


def _physics(rng: np.random.Generator, item: LabelMapSlice,
             matrix: npt.NDArray[np.float64], offset: npt.NDArray[np.float64],
             grid: int) -> F32 | None:
    if item.magnitude is None or item.psir is None:
        return None
    source = np.asarray(item.magnitude if rng.random() < 0.6 else item.psir, dtype=np.float32)
    low = float(source.min())
    return np.asarray(ndimage.affine_transform(source, matrix, offset, (grid, grid), order=1,
                                               cval=low), dtype=np.float32) - low


def _render(rng: np.random.Generator, item: LabelMapSlice, matrix: npt.NDArray[np.float64],
            offset: npt.NDArray[np.float64], grid: int, physics_share: float
            ) -> tuple[F32, U8, npt.NDArray[np.bool_]]:
    gen = _warp_nearest(item.gen, matrix, offset, grid, OUTSIDE)
    target = _warp_nearest(item.labels, matrix, offset, grid, int(Label.BACKGROUND))
    outside = gen == OUTSIDE
    has_scar = np.isin(target, (Label.SCAR, Label.MVO)).any()
    physics = _physics(rng, item, matrix, offset, grid) if rng.random() < physics_share else None
    if physics is None and not has_scar and rng.random() < (
            0.6 if item.source == "sunnybrook" else 0.25):
        plant_scar(rng, gen, target)
    image = physics if physics is not None else _appearance(rng, gen)
    return corrupt(rng, image, outside), target, outside


def locate_sample(rng: np.random.Generator, item: LabelMapSlice,
                  physics_share: float = 0.3) -> tuple[F32, U8]:
    """One localiser input (normalised, :data:`LOCATE_GRID` square) and its 3-class target."""
    found = heart_centre_and_diameter(item.labels)
    if found is None:
        raise ValueError("slice without a heart")
    centre, diameter = found
    fill = math.exp(rng.uniform(*np.log(LOCATE_FILL)))
    step = diameter / (fill * LOCATE_GRID)
    room = 0.5 * LOCATE_GRID * (1.0 - fill) * 0.8
    shift = (float(rng.uniform(-room, room)), float(rng.uniform(-room, room)))
    matrix, offset = _affine(rng, centre, step, LOCATE_GRID, (-shift[0], -shift[1]),
                             math.exp(rng.uniform(-0.15, 0.15)))
    image, target, _ = _render(rng, item, matrix, offset, LOCATE_GRID, physics_share)
    if rng.random() < 0.3:
        axis = int(rng.integers(2))
        before, after = rng.integers(0, LOCATE_GRID // 5, 2)
        index = [slice(None), slice(None)]
        index[axis] = slice(0, int(before))
        image[tuple(index)] = 0.0
        index[axis] = slice(LOCATE_GRID - int(after), LOCATE_GRID)
        image[tuple(index)] = 0.0
    three = np.where(np.isin(target, (Label.MYOCARDIUM, Label.SCAR, Label.MVO)), 2,
                     np.where(target == Label.LV_BLOOD_POOL, 1, 0))
    three = np.where(target == IGNORE, IGNORE, three).astype(np.uint8)
    return normalise_grid(image), three


def segment_sample(rng: np.random.Generator, item: LabelMapSlice,
                   physics_share: float = 0.3) -> tuple[F32, U8]:
    """One segmenter input (normalised heart-centred crop) and its 6-class target."""
    found = heart_centre_and_diameter(item.labels)
    if found is None:
        raise ValueError("slice without a heart")
    (row, col), diameter = found
    size = diameter * math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    centre = (row + rng.uniform(-0.15, 0.15) * diameter,
              col + rng.uniform(-0.15, 0.15) * diameter)
    step = CROP_FACTOR * size / SEGMENT_GRID
    matrix, offset = _affine(rng, centre, step, SEGMENT_GRID, (0.0, 0.0),
                             math.exp(rng.uniform(-0.1, 0.1)))
    image, target, _ = _render(rng, item, matrix, offset, SEGMENT_GRID, physics_share)
    return normalise_grid(image), target


def batch(rng: np.random.Generator, items: Sequence[LabelMapSlice], size: int, stage: str,
          physics_share: float = 0.3) -> tuple[F32, npt.NDArray[np.int64]]:
    """A training batch (inputs (n, 1, g, g), targets (n, g, g)) of one stage;
    ``physics_share`` of the phantom samples show the physics-rendered image."""
    make = locate_sample if stage == "locate" else segment_sample
    pairs = [make(rng, items[int(i)], physics_share)
             for i in rng.integers(0, len(items), size)]
    images = np.stack([p[0] for p in pairs])[:, None]
    targets = np.stack([p[1] for p in pairs]).astype(np.int64)
    return images.astype(np.float32), targets
