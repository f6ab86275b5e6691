"""Anatomical vocabulary of the synthetic chest: structures, their tissues and labels, levels.

A synthetic subject (:class:`~models.phantoms.heart_geometry.HeartCase`) is made of
:class:`Structure` s, each of one :class:`~models.phantoms.tissues.Tissue`
(:data:`STRUCTURE_TISSUE`) and one segmentation label (:data:`STRUCTURE_LABEL`); short-axis
slices are taken at :data:`LEVELS` (long-axis position ranges in
:data:`LEVEL_POSITION_RANGES`).  :class:`Phenotype` and :class:`LesionPattern` name the
shapes of heart and lesions drawn.  The geometry of a subject is in
:mod:`models.phantoms.heart_geometry`, its sampling in :mod:`models.phantoms.heart_sampling`,
the rendering of short-axis slices in :mod:`models.phantoms.heart_rendering` and of scar in
:mod:`models.phantoms.scar_rendering`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from models.phantoms.tissues import Tissue
from plugins.api import Label

FloatArray = npt.NDArray[np.float64]

LEVELS: tuple[str, ...] = ("basal", "mid", "apical")
"""Short-axis levels, base to apex."""

LEVEL_POSITION_RANGES: Mapping[str, tuple[float, float]] = {
    "basal": (0.15, 0.25),
    "mid": (0.45, 0.55),
    "apical": (0.72, 0.80),
}
"""Range of the long-axis position ``s`` (0 base, 1 apex) sampled for each level."""

MIN_FINE_PIXEL_MM = 0.55
"""Sub-pixel size that partial-volume rendering aims at (at most)."""


class Structure(enum.IntEnum):
    """Anatomical structures; each is made of one :class:`Tissue` and has one label."""

    AIR = 0
    LUNG = 1
    SUBCUTANEOUS_FAT = 2
    SKELETAL_MUSCLE = 3
    BONE_MARROW = 4
    SPINAL_CANAL = 5
    MEDIASTINAL_FAT = 6
    LIVER = 7
    SPLEEN = 8
    STOMACH_WALL = 9
    STOMACH_FLUID = 10
    STOMACH_GAS = 11
    DESCENDING_AORTA = 12
    EPICARDIAL_FAT = 13
    RV_WALL = 14
    RV_BLOOD = 15
    RV_TRABECULAE = 16
    LV_MYOCARDIUM = 17
    LV_LESION = 18
    LV_BLOOD = 19
    PAPILLARY_MUSCLE = 20
    PERICARDIAL_FLUID = 21
    VESSEL = 22


STRUCTURE_TISSUE: Mapping[Structure, Tissue] = {
    Structure.AIR: Tissue.AIR,
    Structure.LUNG: Tissue.LUNG,
    Structure.SUBCUTANEOUS_FAT: Tissue.FAT,
    Structure.SKELETAL_MUSCLE: Tissue.SKELETAL_MUSCLE,
    Structure.BONE_MARROW: Tissue.BONE_MARROW,
    Structure.SPINAL_CANAL: Tissue.FLUID,
    Structure.MEDIASTINAL_FAT: Tissue.FAT,
    Structure.LIVER: Tissue.LIVER,
    Structure.SPLEEN: Tissue.SPLEEN,
    Structure.STOMACH_WALL: Tissue.SKELETAL_MUSCLE,
    Structure.STOMACH_FLUID: Tissue.FLUID,
    Structure.STOMACH_GAS: Tissue.AIR,
    Structure.DESCENDING_AORTA: Tissue.BLOOD,
    Structure.EPICARDIAL_FAT: Tissue.FAT,
    Structure.RV_WALL: Tissue.MYOCARDIUM,
    Structure.RV_BLOOD: Tissue.BLOOD,
    Structure.RV_TRABECULAE: Tissue.MYOCARDIUM,
    Structure.LV_MYOCARDIUM: Tissue.MYOCARDIUM,
    Structure.LV_LESION: Tissue.MYOCARDIUM,
    Structure.LV_BLOOD: Tissue.BLOOD,
    Structure.PAPILLARY_MUSCLE: Tissue.MYOCARDIUM,
    Structure.PERICARDIAL_FLUID: Tissue.FLUID,
    Structure.VESSEL: Tissue.BLOOD,
}
"""Tissue each structure is made of (a lesion is myocardium with a different T1)."""

STRUCTURE_LABEL: Mapping[Structure, Label] = {
    s: Label.BACKGROUND for s in Structure
} | {
    Structure.LV_BLOOD: Label.LV_BLOOD_POOL,
    # Papillary muscles and trabeculae are excluded from the myocardium in T1 analysis
    # (SCMR post-processing recommendations): they belong to the blood-pool label.
    Structure.PAPILLARY_MUSCLE: Label.LV_BLOOD_POOL,
    Structure.LV_MYOCARDIUM: Label.MYOCARDIUM,
    Structure.LV_LESION: Label.MYOCARDIUM,
    Structure.RV_BLOOD: Label.RV_BLOOD_POOL,
    Structure.RV_TRABECULAE: Label.RV_BLOOD_POOL,
}
"""Label value of each structure in the ground-truth label images."""

_LABELS = (Label.BACKGROUND, Label.LV_BLOOD_POOL, Label.MYOCARDIUM, Label.RV_BLOOD_POOL)


class Phenotype(enum.StrEnum):
    """Left-ventricular geometry class of a synthetic subject."""

    NORMAL = "normal"
    DILATED = "dilated"
    CONCENTRIC_HYPERTROPHY = "concentric_hypertrophy"
    SEPTAL_HYPERTROPHY = "septal_hypertrophy"
    SMALL = "small"


class LesionPattern(enum.StrEnum):
    """Transmural distribution of a focal myocardial lesion."""

    SUBENDOCARDIAL = "subendocardial"
    TRANSMURAL = "transmural"
    MIDWALL = "midwall"
    SUBEPICARDIAL = "subepicardial"
