"""Label maps for sim-to-real training: phantom anatomy (with its background tissues) and
Sunnybrook shapes.

Domain-randomised training (SynthSeg: Billot et al., "SynthSeg: Segmentation of brain MRI
scans of any contrast and resolution without retraining", Med Image Anal 2023;
github.com/BBillot/SynthSeg, ``labels_to_image_model``) draws a new appearance for every
training sample from a *generation label map*: finer than the segmentation labels, one label
per tissue, so that every tissue gets its own random intensity.  This module provides those
maps, rendered once into a cache because rendering (~0.2 s per slice) is much slower than a
training step needs:

- **Phantoms** (:func:`render_phantom_maps`): short-axis LGE stacks of
  :func:`models.phantoms.lge.make_lge_stack`; the generation label of a pixel is the
  phantom :class:`~models.phantoms.anatomy.Structure` covering most of it (air, lung, fat,
  muscle, marrow, liver, spleen, stomach, aorta, RV wall and trabeculae, papillary muscles,
  pericardial fluid, vessels ...), with scar and MVO as two more labels.  The physics-rendered
  magnitude and PSIR images are kept too, to be mixed with the randomised ones.
- **Sunnybrook** (:func:`sunnybrook_maps`): the 37 real cine slices with expert LV / myocardium
  masks (CC0; Radau et al., MIDAS Journal 2009).  The background has no labels; it is split
  into :data:`SUNNYBROOK_CLUSTERS` intensity clusters (k-means on the cine image), so that the
  randomised appearance still has real background structure.  These slices carry no scar and
  no RV label; scar is planted at training time (:mod:`models.training.lgeseg.synth`).

Subject seeds :data:`SYNTH_SEED_START` onwards are disjoint from every other phantom seed
block (T1 100000, LGE 200000, fusion 210000, validation 700000, evaluation 950000).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import Structure
from models.phantoms.lge import make_lge_stack
from models.phantoms.lge_acquisition import Contrast
from models.training.lgeseg.data import FIELD_STRENGTHS_T, PATTERNS
from plugins.api import Label

logger = logging.getLogger(__name__)

__all__ = [
    "GEN_MVO",
    "GEN_SCAR",
    "N_GEN_LABELS",
    "SUNNYBROOK_CLUSTERS",
    "SYNTH_SEED_START",
    "LabelMapSlice",
    "load_phantom_maps",
    "render_phantom_maps",
    "sunnybrook_maps",
]

SYNTH_SEED_START: Final = 300_000
"""First phantom subject seed of the sim-to-real cache."""
SLICES_PER_STACK: Final = 8
GEN_SCAR: Final = len(Structure)
"""Generation label of scar (after the phantom structures)."""
GEN_MVO: Final = len(Structure) + 1
"""Generation label of microvascular obstruction."""
SUNNYBROOK_OFFSET: Final = GEN_MVO + 1
"""First generation label of the Sunnybrook background clusters."""
SUNNYBROOK_CLUSTERS: Final = 6
N_GEN_LABELS: Final = SUNNYBROOK_OFFSET + SUNNYBROOK_CLUSTERS
"""Number of generation labels (phantom structures, scar, MVO, Sunnybrook clusters)."""

U8 = npt.NDArray[np.uint8]
F16 = npt.NDArray[np.float16]


@dataclass(frozen=True)
class LabelMapSlice:
    """One slice for randomised training.

    Attributes
    ----------
    gen
        uint8 generation labels (one per tissue; see the module description).
    labels
        uint8 segmentation targets (:class:`plugins.api.Label`: 0 background, 1 LV blood,
        2 myocardium, 3 RV blood, 4 scar, 5 MVO); 255 = unknown (loss ignored).
    pixel_spacing
        (row, col) spacing in mm.
    magnitude, psir
        The physics-rendered images (phantoms only), float16.
    source
        ``"phantom"`` or ``"sunnybrook"``.
    """

    gen: U8
    labels: U8
    pixel_spacing: tuple[float, float]
    magnitude: F16 | None
    psir: F16 | None
    source: str


def phantom_generation_labels(structures: U8, labels: U8) -> U8:
    """Generation labels from the dominant phantom structure and the LGE labels.

    Where the LGE labels (which close the myocardial ring and mark scar) disagree with the
    dominant structure, the label decides: myocardium pixels become LV myocardium, LV pixels
    LV blood, RV pixels RV blood, scar and MVO their own generation labels.
    """
    gen = structures.astype(np.uint8).copy()
    myo = labels == Label.MYOCARDIUM
    gen[myo & ~np.isin(gen, (Structure.LV_MYOCARDIUM, Structure.LV_LESION))] = \
        Structure.LV_MYOCARDIUM
    lv = labels == Label.LV_BLOOD_POOL
    gen[lv & ~np.isin(gen, (Structure.LV_BLOOD, Structure.PAPILLARY_MUSCLE))] = \
        Structure.LV_BLOOD
    rv = labels == Label.RV_BLOOD_POOL
    gen[rv & ~np.isin(gen, (Structure.RV_BLOOD, Structure.RV_TRABECULAE))] = Structure.RV_BLOOD
    gen[labels == Label.SCAR] = GEN_SCAR
    gen[labels == Label.MVO] = GEN_MVO
    return gen


def render_phantom_maps(out: Path, n_subjects: int, seed_start: int = SYNTH_SEED_START,
                        part: int = 0, n_parts: int = 1) -> Path:
    """Render phantom stacks into ``out/phantom_maps_{part}.npz``.

    Subject ``k`` (every ``n_parts``-th from ``part``) uses seed ``seed_start + k``, field
    strength by parity and scar pattern ``PATTERNS[(k // 2) % 8]`` as the LGE training
    cache.
    """
    out.mkdir(parents=True, exist_ok=True)
    gens, labs, mags, psirs, spacings, shapes = [], [], [], [], [], []
    started = time.perf_counter()
    for k in range(part, n_subjects, n_parts):
        rng = np.random.default_rng(seed_start + k)
        _, slices = make_lge_stack(
            rng, n_slices=SLICES_PER_STACK, field_strength_t=FIELD_STRENGTHS_T[k % 2],
            scar_pattern=PATTERNS[(k // 2) % len(PATTERNS)], contrast=Contrast.MAGNITUDE)
        for item in slices:
            structures = np.argmax(item.rendered.fractions, axis=0).astype(np.uint8)
            gens.append(phantom_generation_labels(structures, item.labels).ravel())
            labs.append(item.labels.ravel())
            mags.append(item.magnitude.astype(np.float16).ravel())
            psirs.append(item.psir.astype(np.float16).ravel())
            spacings.append(item.pixel_spacing)
            shapes.append(item.shape)
        logger.info("subject %d rendered (%.0f s)", k, time.perf_counter() - started)
    path = out / f"phantom_maps_{part}.npz"
    np.savez(path, gen=np.concatenate(gens), labels=np.concatenate(labs),
             magnitude=np.concatenate(mags), psir=np.concatenate(psirs),
             spacing=np.asarray(spacings, dtype=np.float64),
             shape=np.asarray(shapes, dtype=np.int64))
    return path


def load_phantom_maps(directory: Path) -> list[LabelMapSlice]:
    """Every slice of the ``phantom_maps_*.npz`` files in ``directory`` (sorted)."""
    items: list[LabelMapSlice] = []
    for path in sorted(directory.glob("phantom_maps_*.npz")):
        with np.load(path) as stored:
            data = {key: stored[key] for key in stored.files}
        offset = 0
        for (rows, cols), spacing in zip(data["shape"], data["spacing"], strict=True):
            n = int(rows) * int(cols)
            part = slice(offset, offset + n)
            offset += n
            items.append(LabelMapSlice(
                gen=data["gen"][part].reshape(rows, cols),
                labels=data["labels"][part].reshape(rows, cols),
                pixel_spacing=(float(spacing[0]), float(spacing[1])),
                magnitude=data["magnitude"][part].reshape(rows, cols),
                psir=data["psir"][part].reshape(rows, cols),
                source="phantom",
            ))
    return items


def _kmeans_1d(values: npt.NDArray[np.float64], k: int, iterations: int = 20
               ) -> npt.NDArray[np.float64]:
    """Cluster centres of 1-D values (quantile start, Lloyd iterations)."""
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        assign = np.argmin(np.abs(values[:, None] - centres[None]), axis=1)
        for j in range(k):
            if np.any(assign == j):
                centres[j] = values[assign == j].mean()
    return np.sort(centres)


def sunnybrook_maps(npz: Path) -> list[LabelMapSlice]:
    """Sunnybrook slices as generation label maps (background split into intensity clusters).

    Targets: LV blood, myocardium and background; background within 30 mm of the myocardium
    is *unknown* (255), because the RV blood pool lies there without a label.
    """
    from scipy import ndimage

    data = np.load(npz)
    items: list[LabelMapSlice] = []
    for image, labels, spacing in zip(data["images"], data["labels"], data["spacing_mm"],
                                      strict=True):
        values = image.astype(np.float64)
        background = labels == 0
        centres = _kmeans_1d(values[background][::3], SUNNYBROOK_CLUSTERS)
        cluster = np.argmin(np.abs(values[..., None] - centres), axis=-1)
        gen = (SUNNYBROOK_OFFSET + cluster).astype(np.uint8)
        gen[labels == 1] = Structure.LV_BLOOD
        gen[labels == 2] = Structure.LV_MYOCARDIUM
        target = np.where(labels == 1, Label.LV_BLOOD_POOL,
                          np.where(labels == 2, Label.MYOCARDIUM, Label.BACKGROUND))
        near = ndimage.distance_transform_edt(labels != 2) * float(spacing) < 30.0
        target = np.where(background & near, 255, target).astype(np.uint8)
        items.append(LabelMapSlice(gen=gen, labels=target,
                                   pixel_spacing=(float(spacing), float(spacing)),
                                   magnitude=None, psir=None, source="sunnybrook"))
    return items


def main(argv: list[str] | None = None) -> None:
    """Render the phantom part of the sim-to-real cache."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/lgereal_cache"))
    parser.add_argument("--subjects", type=int, default=160)
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    path = render_phantom_maps(args.out, args.subjects, part=args.part, n_parts=args.parts)
    logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
