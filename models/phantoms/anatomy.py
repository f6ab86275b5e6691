"""Chest anatomy in cardiac short-axis planes, for synthetic CMR images of any contrast.

A :class:`HeartCase` is one synthetic subject: the shape of the left and right ventricles,
papillary muscles and trabeculation, epicardial fat, the chest wall, lungs, liver, spleen,
stomach, spine and descending aorta, plus the subject's tissue T1 values and myocardial
lesions.  :func:`render_slice` turns a case into per-structure area fractions on a pixel
grid for one short-axis level; contrast-specific modules (T1 maps, MOLLI source images,
and later LGE and cine) map those fractions to signal.

Coordinates are millimetres in the image plane: ``x`` along the columns (to the image's
right, which is the subject's left in a standard short-axis view), ``y`` along the rows
(down the image: inferior / posterior).  The origin is the centre of the field of view.
Heart-local polar angles use the left-ventricular centre: 0 is the lateral wall (image
right), 90 degrees inferior, 180 degrees septal (towards the right ventricle), -90 degrees
anterior.  The long-axis position ``s`` runs from 0 (mitral annulus) to 1 (apex).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.tissues import (
    FOCAL_RISE_RANGE_MS,
    Tissue,
    TissueProperties,
    check_field_strength,
    sample_tissue_properties,
)
from plugins.api import Label

logger = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------
# Geometry primitives
# --------------------------------------------------------------------------------------------


ANGLE_TABLE_SIZE = 4096
"""Samples per turn of the tabulated radius functions (0.09 mm error at 60 mm radius)."""

_TABLE_THETA = np.linspace(-np.pi, np.pi, ANGLE_TABLE_SIZE, endpoint=False) + (
    np.pi / ANGLE_TABLE_SIZE)


def _table_index(theta: FloatArray) -> npt.NDArray[np.intp]:
    """Index into an angle table for angles in [-pi, pi]."""
    idx = ((theta + np.pi) * (ANGLE_TABLE_SIZE / (2.0 * np.pi))).astype(np.intp)
    return np.minimum(idx, ANGLE_TABLE_SIZE - 1)


@dataclass(frozen=True)
class Harmonics:
    """Smooth relative perturbation ``sum_k a_k cos(k theta + p_k)`` of a radius or thickness."""

    terms: tuple[tuple[int, float, float], ...] = ()

    def __call__(self, theta: FloatArray) -> FloatArray:
        out = np.zeros_like(np.asarray(theta, dtype=np.float64))
        for order, amplitude, phase in self.terms:
            out += amplitude * np.cos(order * theta + phase)
        return out

    @classmethod
    def random(
        cls, rng: np.random.Generator, orders: range, amplitude: float
    ) -> Harmonics:
        """Harmonics with amplitudes ~ ``amplitude / order`` and random phases."""
        return cls(
            tuple(
                (k, float(rng.normal(0.0, amplitude / k)), float(rng.uniform(0, 2 * np.pi)))
                for k in orders
            )
        )


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in the image plane (mm), with optional smooth border irregularity."""

    cx: float
    cy: float
    a: float
    b: float
    angle_rad: float = 0.0
    irregularity: Harmonics = field(default_factory=Harmonics)

    def radius(self, theta: FloatArray) -> FloatArray:
        """Border radius (mm) at angles ``theta`` of the ellipse's own frame."""
        radius = (self.a * self.b) / np.sqrt(
            (self.b * np.cos(theta)) ** 2 + (self.a * np.sin(theta)) ** 2
        )
        return radius * (1.0 + self.irregularity(theta))

    def polar(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(radius, angle) of points in the ellipse's own frame."""
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        dx, dy = x - self.cx, y - self.cy
        u = c * dx + s * dy
        v = -s * dx + c * dy
        return np.hypot(u, v), np.arctan2(v, u)

    def inside(
        self, x: FloatArray, y: FloatArray, grow_mm: float | FloatArray = 0.0
    ) -> npt.NDArray[np.bool_]:
        """Whether points are inside the ellipse grown by ``grow_mm`` along its radius."""
        r, theta = self.polar(x, y)
        return r < self.radius(_TABLE_THETA)[_table_index(theta)] + grow_mm

    def bbox(self, grow_mm: float = 0.0) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) enclosing the (grown, irregular) ellipse."""
        r = max(self.a, self.b) * 1.3 + grow_mm
        return (self.cx - r, self.cx + r, self.cy - r, self.cy + r)

    def shifted(self, dx: float, dy: float, scale: float = 1.0) -> Ellipse:
        """A copy moved by (dx, dy) mm with semi-axes scaled by ``scale``."""
        return Ellipse(
            self.cx + dx, self.cy + dy, self.a * scale, self.b * scale, self.angle_rad,
            self.irregularity,
        )


@dataclass(frozen=True)
class Blob:
    """A small elliptical muscle bundle attached to the heart-local polar frame.

    ``radial_fraction`` is the distance of its centre from the LV centre as a fraction of the
    endocardial radius at that angle; ``s_range`` is the long-axis extent where it exists.
    """

    angle_rad: float
    radial_fraction: float
    radius_mm: float
    aspect: float
    s_range: tuple[float, float]


@dataclass(frozen=True)
class Lesion:
    """A focal region of raised myocardial T1 (oedema, infarct, inflammation).

    Attributes
    ----------
    angle_rad, half_width_rad
        Circumferential centre and half extent (heart-local angle).
    pattern
        Transmural distribution.
    transmurality
        Fraction of the wall thickness involved (for subendocardial/subepicardial).
    s_range
        Long-axis extent (0 base, 1 apex).
    t1_rise_ms
        T1 of the lesion minus remote myocardial T1.
    """

    angle_rad: float
    half_width_rad: float
    pattern: LesionPattern
    transmurality: float
    s_range: tuple[float, float]
    t1_rise_ms: float


@dataclass(frozen=True)
class LeftVentricle:
    """Left-ventricular shape at mid-ventricle (``s = 0.5``) and its change along the axis."""

    endo_radius_mm: float
    ellipticity: float
    ellipse_angle_rad: float
    endo_irregularity: Harmonics
    epi_irregularity: Harmonics
    wall_thickness_mm: float
    wall_variation: Harmonics
    septal_thickening: float
    apex_taper: float
    papillary: tuple[Blob, ...]
    trabeculae: tuple[Blob, ...]

    def cavity_scale(self, s: float) -> float:
        """Cavity radius at ``s`` relative to mid-ventricle (prolate half-ellipsoid)."""
        g = math.sqrt(max(1.0 - s * s, 0.04)) / math.sqrt(0.75)
        return g**self.apex_taper

    def wall_scale(self, s: float) -> float:
        """Wall thickness at ``s`` relative to mid-ventricle (apical thinning)."""
        return 1.0 - 0.35 * max(0.0, s - 0.5) / 0.5

    def endo_radius(self, theta: FloatArray, s: float) -> FloatArray:
        """Endocardial radius (mm) at heart-local angles ``theta``."""
        base = self.endo_radius_mm * self.cavity_scale(s)
        shape = 1.0 + self.ellipticity * np.cos(2.0 * (theta - self.ellipse_angle_rad))
        return base * (shape + self.endo_irregularity(theta))

    def wall_thickness(self, theta: FloatArray, s: float) -> FloatArray:
        """Wall thickness (mm) at heart-local angles ``theta``."""
        septal = self.septal_thickening * np.exp(-((_wrap(theta - np.pi) / 0.75) ** 2))
        rel = 1.0 + septal + self.wall_variation(theta)
        return np.maximum(self.wall_thickness_mm * self.wall_scale(s) * rel, 3.0)

    def epi_radius(self, theta: FloatArray, s: float) -> FloatArray:
        """Epicardial radius (mm) at heart-local angles ``theta``."""
        epi = self.endo_radius(theta, s) + self.wall_thickness(theta, s)
        return epi * (1.0 + self.epi_irregularity(theta))

    def mean_epi_radius(self, s: float) -> float:
        """Mean epicardial radius (mm) at ``s``."""
        theta = np.linspace(-np.pi, np.pi, 90, endpoint=False)
        return float(np.mean(self.epi_radius(theta, s)))


@dataclass(frozen=True)
class RightVentricle:
    """Right ventricle as an ellipse overlapping the LV, so that it wraps the septum.

    Offsets and semi-axes are in units of the LV's mean epicardial radius at the level.
    """

    offset_x: float
    offset_y: float
    axis_x: float
    axis_y: float
    angle_rad: float
    wall_thickness_mm: float
    irregularity: Harmonics
    apex_scale: float
    trabeculae: tuple[Blob, ...]

    def scale(self, s: float) -> float:
        """RV size at ``s`` relative to mid-ventricle."""
        if s <= 0.5:
            return 1.0 + 0.25 * (0.5 - s)
        return max(1.0 - (1.0 - self.apex_scale) * (s - 0.5) / 0.3, 0.25)


@dataclass(frozen=True)
class Body:
    """Chest outline and its layers (image-plane mm, absolute position)."""

    outline: Ellipse
    fat_mm: tuple[float, float, float]
    muscle_mm: tuple[float, float, float]
    breast: Ellipse | None
    sternum: Ellipse
    ribs: tuple[Ellipse, ...]
    vertebra: Ellipse
    spinal_canal: Ellipse


@dataclass(frozen=True)
class Vessel:
    """A blood vessel crossing the slice (pulmonary or hepatic vessel, IVC).

    ``offset_mm`` is its position relative to the LV centre at ``s = 0.5``; it moves by
    ``drift_mm_per_s`` along the long axis and is drawn only inside ``host`` structures.
    """

    offset_mm: tuple[float, float]
    radius_mm: float
    drift_mm_per_s: tuple[float, float]
    host: Structure

    def at(self, centre: tuple[float, float], s: float) -> Ellipse:
        """Cross-section at long-axis position ``s`` given the LV centre."""
        return Ellipse(
            centre[0] + self.offset_mm[0] + self.drift_mm_per_s[0] * (s - 0.5),
            centre[1] + self.offset_mm[1] + self.drift_mm_per_s[1] * (s - 0.5),
            self.radius_mm, self.radius_mm,
        )


@dataclass(frozen=True)
class Organ:
    """An abdominal organ: an ellipse that moves and grows along the heart's long axis."""

    shape: Ellipse
    shift_per_s: tuple[float, float]
    growth_per_s: float

    def at(self, s: float) -> Ellipse | None:
        """The organ's cross-section at ``s`` or ``None`` if it is not cut."""
        scale = 1.0 + self.growth_per_s * (s - 0.5)
        if scale <= 0.15:
            return None
        return self.shape.shifted(
            self.shift_per_s[0] * (s - 0.5), self.shift_per_s[1] * (s - 0.5), scale
        )


class ScarShape(enum.StrEnum):
    """Transmural distribution of a region of late gadolinium enhancement."""

    SUBENDOCARDIAL = "subendocardial"
    """From the endocardium outwards (ischaemic wavefront; transmural when deep enough)."""
    MIDWALL = "midwall"
    """A band inside the wall that spares endo- and epicardium."""
    SUBEPICARDIAL = "subepicardial"
    """From the epicardium inwards."""
    FOCAL = "focal"
    """An ellipsoidal patch inside the wall (RV insertion points, patchy HCM fibrosis)."""


@dataclass(frozen=True)
class ScarRegion:
    """One region of late-enhancing myocardium, defined in the heart's own coordinates.

    A region is a function of the heart-local angle ``theta``, the transmural depth
    (0 endocardium .. 1 epicardium) and the long-axis position ``s``, so every slice of a
    subject cuts the same three-dimensional scar.

    Attributes
    ----------
    shape
        Transmural distribution.
    angle_rad
        Circumferential centre at the middle of ``s_range`` (heart-local angle).
    half_width_rad
        Circumferential half extent at the middle of ``s_range``.
    s_range
        Long-axis extent (0 base .. 1 apex); the region narrows towards both ends.
    depth
        Transmural extent: for subendocardial ``(0, transmurality)``, subepicardial
        ``(1 - transmurality, 1)``, mid-wall and focal ``(centre - half, centre + half)``.
        A transmurality above 1 makes the centre of the region transmural.
    ecv
        Extracellular volume fraction of the scar (its enhancement).
    twist_rad
        Change of the circumferential centre from base to apex end of ``s_range``.
    edge
        Irregularity of the circumferential and transmural borders.
    mvo
        Microvascular obstruction core as (fraction of the half width, depth from, depth to
        as fractions of the local transmurality), or ``None``.
    mvo_ecv
        Apparent extracellular volume of the obstructed core (little contrast reaches it).
    """

    shape: ScarShape
    angle_rad: float
    half_width_rad: float
    s_range: tuple[float, float]
    depth: tuple[float, float]
    ecv: float
    twist_rad: float = 0.0
    edge: Harmonics = field(default_factory=Harmonics)
    mvo: tuple[float, float, float] | None = None
    mvo_ecv: float = 0.1

    def masks(
        self, theta: FloatArray, depth: FloatArray, s: float
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(scar, microvascular obstruction) membership of myocardial points at ``s``."""
        lo, hi = self.s_range
        empty = np.zeros(np.shape(theta), dtype=bool)
        if not lo < s < hi:
            return empty, empty
        u = (s - 0.5 * (lo + hi)) / max(0.5 * (hi - lo), 1e-6)
        if self.shape is ScarShape.FOCAL:
            taper = math.sqrt(max(1.0 - u * u, 0.0))
        else:
            taper = math.sqrt(max(1.0 - u**4, 0.0))
        if taper <= 0.0:
            return empty, empty
        centre = self.angle_rad + self.twist_rad * 0.5 * u
        rough = self.edge(theta + 2.1 * s)
        half = self.half_width_rad * taper * (1.0 + 0.6 * rough)
        ratio = np.abs(_wrap(theta - centre)) / np.maximum(half, 1e-6)
        inside = ratio < 1.0
        profile = np.sqrt(np.clip(1.0 - ratio**2, 0.0, 1.0))
        d_lo, d_hi = self.depth
        wobble = 0.5 * rough
        if self.shape is ScarShape.SUBENDOCARDIAL:
            reach = d_hi * (0.35 + 0.65 * profile) * (1.0 + wobble)
            radial = depth < reach
        elif self.shape is ScarShape.SUBEPICARDIAL:
            reach = (1.0 - d_lo) * (0.35 + 0.65 * profile) * (1.0 + wobble)
            radial = depth > 1.0 - reach
        else:
            mid = 0.5 * (d_lo + d_hi) + 0.3 * wobble * (d_hi - d_lo)
            thick = 0.5 * (d_hi - d_lo) * (0.3 + 0.7 * profile)
            if self.shape is ScarShape.FOCAL:
                thick = 0.5 * (d_hi - d_lo) * profile
            radial = np.abs(depth - mid) < thick
        scar = inside & radial
        if self.mvo is None or self.shape is not ScarShape.SUBENDOCARDIAL or abs(u) > 0.75:
            return scar, empty
        width, m_lo, m_hi = self.mvo
        core = ratio < width * math.sqrt(max(1.0 - (u / 0.75) ** 2, 0.0))
        local = np.minimum(d_hi * (0.35 + 0.65 * profile), 1.0)
        mvo = scar & core & (depth >= m_lo * local) & (depth < m_hi * local)
        return scar, mvo


@dataclass(frozen=True)
class Scar:
    """A subject's late-enhancing scar: its pattern name and its regions."""

    pattern: str
    regions: tuple[ScarRegion, ...] = ()

    def masks(
        self, theta: FloatArray, depth: FloatArray, s: float
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Union of the regions' (scar, microvascular obstruction) memberships."""
        scar = np.zeros(np.shape(theta), dtype=bool)
        mvo = np.zeros_like(scar)
        for region in self.regions:
            s_mask, m_mask = region.masks(theta, depth, s)
            scar |= s_mask
            mvo |= m_mask
        return scar, mvo

    def region_ecv(
        self, theta: FloatArray, depth: FloatArray, s: float
    ) -> npt.NDArray[np.float64]:
        """ECV of the scar at each point (the last region covering it wins; 0 outside)."""
        ecv = np.zeros(np.shape(theta), dtype=np.float64)
        for region in self.regions:
            s_mask, _ = region.masks(theta, depth, s)
            ecv = np.where(s_mask, region.ecv, ecv)
        return ecv


@dataclass(frozen=True)
class HeartCase:
    """One synthetic subject: anatomy, tissue properties and myocardial lesions.

    Shared by all slices (and, later, all contrasts) of the subject.

    Attributes
    ----------
    phenotype
        LV geometry class.
    centre_mm
        LV centre at mid-ventricle relative to the centre of the field of view (x, y).
    drift_mm_per_s
        Movement of the LV centre in the image per unit of long-axis position.
    rotation_rad
        In-plane rotation of the heart-local frame.
    lv, rv
        Ventricular shapes.
    epicardial_fat_mm, epicardial_fat_variation
        Epicardial fat thickness scale and its (patchy) circumferential variation.
    pericardial_effusion_mm
        Thickness of a pericardial fluid rim (0 for none).
    body
        Chest wall, bones and breast.
    liver, spleen, stomach
        Abdominal organs (``None`` if absent in this subject).
    stomach_has_gas
        Whether the stomach holds gas (otherwise fluid).
    vessels
        Pulmonary and hepatic vessels and the inferior vena cava.
    aorta
        Descending aorta.
    mediastinal_fat
        Anterior mediastinal fat between heart and sternum.
    tissues
        Native tissue T1 values and haematocrit.
    lesions
        Focal myocardial lesions.
    level_positions
        Long-axis position ``s`` of the basal, mid and apical slices.
    scar
        Late-enhancing myocardial scar (fibrosis, infarct) that LGE images show, or
        ``None``.  Only LGE phantoms use it; T1 maps are unaffected.
    """

    phenotype: Phenotype
    centre_mm: tuple[float, float]
    drift_mm_per_s: tuple[float, float]
    rotation_rad: float
    lv: LeftVentricle
    rv: RightVentricle
    epicardial_fat_mm: float
    epicardial_fat_variation: Harmonics
    pericardial_effusion_mm: float
    body: Body
    liver: Organ
    spleen: Organ | None
    stomach: Organ | None
    stomach_has_gas: bool
    vessels: tuple[Vessel, ...]
    aorta: Ellipse
    mediastinal_fat: Ellipse
    tissues: TissueProperties
    lesions: tuple[Lesion, ...]
    level_positions: Mapping[str, float]
    scar: Scar | None = None

    @property
    def field_strength_t(self) -> float:
        """Field strength (T) the tissue values belong to."""
        return self.tissues.field_strength_t

    def position(self, level: str | float) -> float:
        """Long-axis position ``s`` of a named level (or ``level`` itself if a number)."""
        if isinstance(level, str):
            try:
                return self.level_positions[level]
            except KeyError as exc:
                raise ValueError(
                    f"Unknown short-axis level {level!r}; expected one of {', '.join(LEVELS)}"
                ) from exc
        s = float(level)
        if not 0.0 <= s < 1.0:
            raise ValueError(f"Long-axis position must lie in [0, 1), got {s}")
        return s

    def lv_centre(self, s: float) -> tuple[float, float]:
        """LV centre (mm, image plane) at long-axis position ``s``."""
        return (
            self.centre_mm[0] + self.drift_mm_per_s[0] * (s - 0.5),
            self.centre_mm[1] + self.drift_mm_per_s[1] * (s - 0.5),
        )

    def heart_extent_mm(self) -> tuple[float, float, float, float]:
        """Extent (left, right, up, down) of LV+RV+fat around the mid LV centre, in mm."""
        r_epi = max(self.lv.mean_epi_radius(s) for s in (0.1, 0.5))
        reach = r_epi * (self.rv.offset_x + self.rv.axis_x) + self.rv.wall_thickness_mm
        margin = self.epicardial_fat_mm + 6.0
        return (reach + margin, r_epi * 1.25 + margin, r_epi * 1.5 + margin, r_epi * 1.3 + margin)

    def with_tissues(self, tissues: TissueProperties) -> HeartCase:
        """The same anatomy with other tissue values (e.g. at another field strength)."""
        return dataclasses.replace(self, tissues=tissues)

    def with_scar(self, scar: Scar | None) -> HeartCase:
        """The same subject with another late-enhancing scar (``None`` for none)."""
        return dataclasses.replace(self, scar=scar)


def _wrap(angle: FloatArray) -> FloatArray:
    """Angles wrapped into [-pi, pi)."""
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


# --------------------------------------------------------------------------------------------
# Sampling a subject
# --------------------------------------------------------------------------------------------

_PHENOTYPE_WEIGHTS: Mapping[Phenotype, float] = {
    Phenotype.NORMAL: 0.5,
    Phenotype.DILATED: 0.15,
    Phenotype.CONCENTRIC_HYPERTROPHY: 0.12,
    Phenotype.SEPTAL_HYPERTROPHY: 0.1,
    Phenotype.SMALL: 0.13,
}

# Diastolic mid-ventricular cavity radius and wall thickness (mm) per phenotype:
# (radius low, radius high, wall low, wall high).
_PHENOTYPE_SIZES: Mapping[Phenotype, tuple[float, float, float, float]] = {
    Phenotype.NORMAL: (21.0, 27.0, 7.0, 10.5),
    Phenotype.DILATED: (29.0, 38.0, 4.0, 7.5),
    Phenotype.CONCENTRIC_HYPERTROPHY: (17.0, 24.0, 12.0, 16.0),
    Phenotype.SEPTAL_HYPERTROPHY: (18.0, 25.0, 9.0, 13.0),
    Phenotype.SMALL: (16.0, 21.0, 5.5, 9.0),
}


def _sample_lv(rng: np.random.Generator, phenotype: Phenotype) -> LeftVentricle:
    r_lo, r_hi, w_lo, w_hi = _PHENOTYPE_SIZES[phenotype]
    endo = float(rng.uniform(r_lo, r_hi))
    wall = float(rng.uniform(w_lo, w_hi))
    septal = (
        float(rng.uniform(0.3, 0.6)) if phenotype is Phenotype.SEPTAL_HYPERTROPHY
        else float(rng.uniform(0.0, 0.12))
    )
    papillary: list[Blob] = []
    # Anterolateral and posteromedial papillary muscles (heart-local: 0 lateral, 90 inferior).
    for centre_deg, spread in ((-45.0, 15.0), (115.0, 18.0)):
        size = float(rng.uniform(3.0, 6.5)) * (1.2 if phenotype is Phenotype.DILATED else 1.0)
        papillary.append(
            Blob(
                angle_rad=math.radians(centre_deg + rng.normal(0.0, spread)),
                radial_fraction=float(rng.uniform(0.62, 0.9)),
                radius_mm=size,
                aspect=float(rng.uniform(1.0, 1.8)),
                s_range=(float(rng.uniform(0.25, 0.4)), float(rng.uniform(0.68, 0.85))),
            )
        )
        if rng.random() < 0.35:  # split (bifid) papillary muscle
            papillary.append(
                Blob(
                    angle_rad=papillary[-1].angle_rad + math.radians(rng.uniform(-25, 25)),
                    radial_fraction=float(rng.uniform(0.65, 0.9)),
                    radius_mm=size * float(rng.uniform(0.5, 0.8)),
                    aspect=float(rng.uniform(1.0, 1.6)),
                    s_range=papillary[-1].s_range,
                )
            )
    n_trab = int(rng.integers(4, 16 if phenotype is Phenotype.DILATED else 11))
    trabeculae = tuple(
        Blob(
            angle_rad=float(rng.uniform(-np.pi, np.pi)),
            radial_fraction=float(rng.uniform(0.88, 1.0)),
            radius_mm=float(rng.uniform(0.8, 2.2)),
            aspect=float(rng.uniform(1.0, 2.5)),
            s_range=(float(rng.uniform(0.0, 0.6)), 1.0),
        )
        for _ in range(n_trab)
    )
    return LeftVentricle(
        endo_radius_mm=endo,
        ellipticity=float(rng.uniform(0.0, 0.14)),
        ellipse_angle_rad=float(rng.uniform(0, np.pi)),
        endo_irregularity=Harmonics.random(rng, range(3, 8), 0.05),
        epi_irregularity=Harmonics.random(rng, range(3, 6), 0.02),
        wall_thickness_mm=wall,
        wall_variation=Harmonics.random(rng, range(1, 5), 0.15),
        septal_thickening=septal,
        apex_taper=float(rng.uniform(0.8, 1.4)),
        papillary=tuple(papillary),
        trabeculae=trabeculae,
    )


def _sample_rv(rng: np.random.Generator, phenotype: Phenotype) -> RightVentricle:
    big = 1.15 if phenotype is Phenotype.DILATED else 1.0
    trabeculae = tuple(
        Blob(
            angle_rad=float(rng.uniform(0.6 * np.pi, 1.4 * np.pi)),
            radial_fraction=float(rng.uniform(0.75, 1.0)),
            radius_mm=float(rng.uniform(1.0, 2.5)),
            aspect=float(rng.uniform(1.0, 3.0)),
            s_range=(float(rng.uniform(0.3, 0.7)), 1.0),
        )
        for _ in range(int(rng.integers(0, 5)))
    )
    return RightVentricle(
        offset_x=float(rng.uniform(0.5, 0.65)),
        offset_y=float(rng.uniform(0.1, 0.3)),
        axis_x=float(rng.uniform(1.05, 1.3)) * big,
        axis_y=float(rng.uniform(0.8, 1.0)) * big,
        angle_rad=math.radians(rng.uniform(-30.0, 5.0)),
        wall_thickness_mm=float(rng.uniform(2.5, 4.5)),
        irregularity=Harmonics.random(rng, range(2, 6), 0.06),
        apex_scale=float(rng.uniform(0.35, 0.75)),
        trabeculae=trabeculae,
    )


def _sample_lesions(
    rng: np.random.Generator, field_strength_t: float, probability: float
) -> tuple[Lesion, ...]:
    if rng.random() >= probability:
        return ()
    lesions = []
    low, high = FOCAL_RISE_RANGE_MS[check_field_strength(field_strength_t)]
    for _ in range(int(rng.integers(1, 3))):
        pattern = LesionPattern(
            rng.choice([p.value for p in LesionPattern], p=[0.35, 0.25, 0.2, 0.2])
        )
        start = float(rng.uniform(0.0, 0.7))
        lesions.append(
            Lesion(
                angle_rad=float(rng.uniform(-np.pi, np.pi)),
                half_width_rad=math.radians(rng.uniform(20.0, 70.0)),
                pattern=pattern,
                transmurality=float(rng.uniform(0.3, 0.8)),
                s_range=(start, min(start + float(rng.uniform(0.25, 0.7)), 1.0)),
                t1_rise_ms=float(rng.uniform(low, high)),
            )
        )
    return tuple(lesions)


def _sample_body(
    rng: np.random.Generator, heart_centre: tuple[float, float]
) -> tuple[Body, Ellipse, Ellipse]:
    hx, hy = heart_centre
    half_width = float(rng.uniform(135.0, 195.0))
    half_depth = float(rng.uniform(95.0, 135.0))
    bx = hx - float(rng.uniform(15.0, 45.0))
    by = hy + float(rng.uniform(35.0, 60.0))
    outline = Ellipse(
        bx, by, half_width, half_depth, math.radians(rng.uniform(-8.0, 8.0)),
        Harmonics.random(rng, range(2, 5), 0.025),
    )
    fat = (float(rng.uniform(4, 22)), float(rng.uniform(6, 32)), float(rng.uniform(6, 28)))
    muscle = (float(rng.uniform(7, 15)), float(rng.uniform(10, 24)), float(rng.uniform(40, 55)))
    anterior_y = by - half_depth
    breast = None
    if rng.random() < 0.3:
        # Left breast: on the anterior chest wall, to the subject's left (image right).
        along = math.radians(rng.uniform(-75.0, -50.0))
        breast = Ellipse(
            bx + half_width * math.cos(along) * 0.95,
            by + half_depth * math.sin(along) * 0.95,
            float(rng.uniform(45.0, 70.0)), float(rng.uniform(22.0, 40.0)),
            along + np.pi / 2 + math.radians(rng.uniform(-10.0, 10.0)),
            Harmonics.random(rng, range(2, 4), 0.04),
        )
    sternum = Ellipse(
        bx + float(rng.uniform(-8.0, 8.0)), anterior_y + fat[0] + muscle[0] * 0.6,
        float(rng.uniform(10.0, 16.0)), float(rng.uniform(4.0, 7.0)),
        math.radians(rng.uniform(-10.0, 10.0)),
    )
    ribs = []
    inner_a = half_width - fat[1] - muscle[1] * 0.5
    inner_b = half_depth - fat[0] - muscle[0] * 0.5
    for deg in rng.uniform(-150.0, -30.0, size=int(rng.integers(2, 6))).tolist() + rng.uniform(
        20.0, 160.0, size=int(rng.integers(1, 4))
    ).tolist():
        t = math.radians(deg)
        ribs.append(
            Ellipse(
                bx + inner_a * math.cos(t), by + inner_b * math.sin(t),
                float(rng.uniform(5.0, 9.0)), float(rng.uniform(3.0, 5.0)), t + np.pi / 2,
            )
        )
    posterior_y = by + half_depth - fat[2] - muscle[2]
    vert_r = float(rng.uniform(15.0, 20.0))
    vertebra = Ellipse(bx + float(rng.uniform(-5, 5)), posterior_y + vert_r * 0.3,
                       vert_r, vert_r * 0.9)
    spinal_canal = Ellipse(vertebra.cx, vertebra.cy + vert_r + 9.0, 8.0, 7.0)
    aorta_r = float(rng.uniform(9.0, 14.0))
    aorta = Ellipse(
        vertebra.cx + float(rng.uniform(18.0, 32.0)),
        vertebra.cy - vert_r - aorta_r * float(rng.uniform(0.1, 0.9)),
        aorta_r, aorta_r * float(rng.uniform(0.9, 1.0)),
    )
    mediastinal = Ellipse(
        hx - float(rng.uniform(10.0, 40.0)), anterior_y + fat[0] + muscle[0] + 6.0,
        float(rng.uniform(25.0, 55.0)), float(rng.uniform(8.0, 20.0)),
        math.radians(rng.uniform(-20.0, 20.0)), Harmonics.random(rng, range(2, 5), 0.08),
    )
    body = Body(outline, fat, muscle, breast, sternum, tuple(ribs), vertebra, spinal_canal)
    return body, aorta, mediastinal


def _sample_vessels(
    rng: np.random.Generator, r_epi: float, liver: Ellipse, hx: float, hy: float
) -> tuple[Vessel, ...]:
    """Pulmonary vessels around the heart, hepatic veins and the IVC in the liver."""
    vessels = []
    for _ in range(int(rng.integers(6, 18))):
        angle = float(rng.uniform(-np.pi, np.pi))
        dist = r_epi + float(rng.uniform(15.0, 90.0))
        vessels.append(Vessel(
            (dist * math.cos(angle), dist * math.sin(angle)),
            float(rng.uniform(1.2, 3.5)) * (1.4 if dist < r_epi + 35 else 0.8),
            (float(rng.normal(0.0, 25.0)), float(rng.normal(0.0, 25.0))),
            Structure.LUNG,
        ))
    for _ in range(int(rng.integers(2, 6))):
        angle = float(rng.uniform(-np.pi, np.pi))
        frac = float(rng.uniform(0.2, 0.7))
        vessels.append(Vessel(
            (liver.cx - hx + frac * liver.a * math.cos(angle),
             liver.cy - hy + frac * liver.b * math.sin(angle)),
            float(rng.uniform(2.0, 5.0)),
            (float(rng.normal(0.0, 15.0)), float(rng.normal(0.0, 15.0))),
            Structure.LIVER,
        ))
    # Inferior vena cava: near the upper medial edge of the liver, below the RV.
    vessels.append(Vessel(
        (-r_epi * float(rng.uniform(0.6, 1.3)), r_epi + float(rng.uniform(15.0, 40.0))),
        float(rng.uniform(8.0, 12.0)), (0.0, float(rng.uniform(-30.0, 0.0))), Structure.LIVER,
    ))
    return tuple(vessels)


def make_heart_case(
    rng: np.random.Generator,
    *,
    field_strength_t: float = 1.5,
    phenotype: Phenotype | str | None = None,
    diffuse_rise_ms: float | None = None,
    lesion_probability: float = 0.3,
    centre_mm: tuple[float, float] | None = None,
) -> HeartCase:
    """Draw one synthetic subject.

    Parameters
    ----------
    rng
        Random generator; the same state gives the same subject.
    field_strength_t
        1.5 or 3 (tesla): selects the tissue T1 values.
    phenotype
        LV geometry class; random if ``None``.
    diffuse_rise_ms
        Diffuse myocardial T1 rise (0 = healthy); random (30 % diseased) if ``None``.
    lesion_probability
        Probability of one or two focal lesions of raised T1.
    centre_mm
        LV centre relative to the centre of the field of view; random within ±25 mm if
        ``None`` (the slice renderer keeps the heart inside the field of view).

    Returns
    -------
    HeartCase
        The subject.
    """
    if phenotype is None:
        names = list(_PHENOTYPE_WEIGHTS)
        weights = np.array([_PHENOTYPE_WEIGHTS[p] for p in names])
        chosen = Phenotype(names[int(rng.choice(len(names), p=weights / weights.sum()))])
    else:
        chosen = Phenotype(phenotype)
    tissues = sample_tissue_properties(rng, field_strength_t, diffuse_rise_ms=diffuse_rise_ms)
    lv = _sample_lv(rng, chosen)
    rv = _sample_rv(rng, chosen)
    if centre_mm is None:
        centre = (float(rng.uniform(-15.0, 30.0)), float(rng.uniform(-25.0, 15.0)))
    else:
        centre = (float(centre_mm[0]), float(centre_mm[1]))
    body, aorta, mediastinal = _sample_body(rng, centre)
    hx, hy = centre
    liver = Organ(
        Ellipse(
            hx - float(rng.uniform(95.0, 130.0)), hy + float(rng.uniform(85.0, 120.0)),
            float(rng.uniform(75.0, 100.0)), float(rng.uniform(50.0, 70.0)),
            math.radians(rng.uniform(-25.0, 5.0)), Harmonics.random(rng, range(2, 5), 0.04),
        ),
        shift_per_s=(float(rng.uniform(-10.0, 10.0)), -float(rng.uniform(15.0, 40.0))),
        growth_per_s=float(rng.uniform(0.0, 0.4)),
    )
    spleen = None
    if rng.random() < 0.6:
        spleen = Organ(
            Ellipse(
                hx + float(rng.uniform(75.0, 115.0)), hy + float(rng.uniform(80.0, 115.0)),
                float(rng.uniform(28.0, 48.0)), float(rng.uniform(18.0, 30.0)),
                math.radians(rng.uniform(-60.0, 0.0)), Harmonics.random(rng, range(2, 4), 0.05),
            ),
            shift_per_s=(0.0, -float(rng.uniform(10.0, 35.0))),
            growth_per_s=float(rng.uniform(0.5, 1.5)),
        )
    stomach = None
    if rng.random() < 0.5:
        stomach = Organ(
            Ellipse(
                hx + float(rng.uniform(35.0, 75.0)), hy + float(rng.uniform(70.0, 100.0)),
                float(rng.uniform(25.0, 45.0)), float(rng.uniform(18.0, 30.0)),
                math.radians(rng.uniform(-40.0, 20.0)), Harmonics.random(rng, range(2, 4), 0.06),
            ),
            shift_per_s=(0.0, -float(rng.uniform(10.0, 30.0))),
            growth_per_s=float(rng.uniform(0.5, 1.5)),
        )
    levels = {
        name: float(rng.uniform(*LEVEL_POSITION_RANGES[name])) for name in LEVELS
    }
    vessels = _sample_vessels(rng, lv.endo_radius_mm + lv.wall_thickness_mm, liver.shape, hx, hy)
    case = HeartCase(
        phenotype=chosen,
        centre_mm=centre,
        drift_mm_per_s=(float(rng.normal(0.0, 8.0)), float(rng.normal(0.0, 8.0))),
        rotation_rad=math.radians(rng.uniform(-25.0, 25.0)),
        lv=lv,
        rv=rv,
        epicardial_fat_mm=float(rng.uniform(1.0, 6.0)),
        epicardial_fat_variation=Harmonics.random(rng, range(1, 7), 2.0),
        pericardial_effusion_mm=float(rng.uniform(1.0, 3.0)) if rng.random() < 0.1 else 0.0,
        body=body,
        liver=liver,
        spleen=spleen,
        stomach=stomach,
        stomach_has_gas=bool(rng.random() < 0.5),
        vessels=vessels,
        aorta=aorta,
        mediastinal_fat=mediastinal,
        tissues=tissues,
        lesions=_sample_lesions(rng, field_strength_t, lesion_probability),
        level_positions=levels,
    )
    logger.debug(
        "heart case %s: cavity %.1f mm, wall %.1f mm, %d lesion(s)",
        chosen, lv.endo_radius_mm, lv.wall_thickness_mm, len(case.lesions),
    )
    return case


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedSlice:
    """Per-structure partial-volume fractions of one short-axis slice.

    Attributes
    ----------
    fractions
        float32 (n_structures, rows, cols): area fraction of each :class:`Structure`
        (indexed by its value) in each pixel; sums to 1 over the first axis.
    labels
        uint8 (rows, cols) :class:`plugins.api.Label` values: the label covering most of the
        pixel, with LV blood-pool pixels that touch anything but myocardium relabelled
        myocardium so that the myocardium always encloses the pool.
    lesion_fraction
        float32 (rows, cols): fraction of each pixel inside any focal lesion.
    lesion_rise_ms
        float32 (rows, cols): T1 rise of the lesion present in the pixel (0 elsewhere;
        where two lesions meet, the later one's).
    position
        Long-axis position ``s``.
    lv_centre_px
        LV centre (row, col) in pixel coordinates.
    pixel_spacing
        (row, col) spacing in mm.
    """

    fractions: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    lesion_fraction: npt.NDArray[np.float32]
    lesion_rise_ms: npt.NDArray[np.float32]
    position: float
    lv_centre_px: tuple[float, float]
    pixel_spacing: tuple[float, float]

    def fraction(self, *structures: Structure) -> npt.NDArray[np.float32]:
        """Summed fraction of the given structures."""
        return np.sum(self.fractions[[int(s) for s in structures]], axis=0)

    def tissue_fractions(self) -> dict[Tissue, npt.NDArray[np.float32]]:
        """Fraction of each tissue per pixel."""
        out: dict[Tissue, npt.NDArray[np.float32]] = {}
        for structure, tissue in STRUCTURE_TISSUE.items():
            frac = self.fractions[int(structure)]
            if tissue in out:
                out[tissue] = out[tissue] + frac
            else:
                out[tissue] = frac.copy()
        return out


Inside = Callable[[FloatArray, FloatArray], npt.NDArray[np.bool_]]


class _Canvas:
    """A supersampled structure-index image that shapes are painted onto in order."""

    def __init__(
        self, shape: tuple[int, int], spacing: tuple[float, float], supersample: int
    ) -> None:
        rows, cols = shape
        self.shape = shape
        self.ss = supersample
        dy, dx = spacing
        self.xs = ((np.arange(cols * supersample) + 0.5) / supersample) * dx - cols * dx / 2.0
        self.ys = ((np.arange(rows * supersample) + 0.5) / supersample) * dy - rows * dy / 2.0
        self.index = np.zeros((rows * supersample, cols * supersample), dtype=np.uint8)
        self.lesion_index = np.zeros_like(self.index)

    def window(
        self, bbox: tuple[float, float, float, float] | None
    ) -> tuple[slice, slice, FloatArray, FloatArray] | None:
        """Index window and sub-pixel coordinates (x, y) covering ``bbox``; None if empty."""
        if bbox is None:
            i0, i1, j0, j1 = 0, self.ys.size, 0, self.xs.size
        else:
            xmin, xmax, ymin, ymax = bbox
            j0 = int(np.searchsorted(self.xs, xmin))
            j1 = int(np.searchsorted(self.xs, xmax, side="right"))
            i0 = int(np.searchsorted(self.ys, ymin))
            i1 = int(np.searchsorted(self.ys, ymax, side="right"))
            if i0 >= i1 or j0 >= j1:
                return None
        x, y = np.meshgrid(self.xs[j0:j1], self.ys[i0:i1])
        return slice(i0, i1), slice(j0, j1), x, y

    def paint_mask(
        self,
        structure: Structure,
        rows: slice,
        cols: slice,
        mask: npt.NDArray[np.bool_],
        over: tuple[Structure, ...] | None = None,
    ) -> None:
        """Set ``structure`` where ``mask`` holds in a window (only over ``over`` if given)."""
        block = self.index[rows, cols]
        if over is not None:
            mask = mask & np.isin(block, np.array([int(s) for s in over], dtype=np.uint8))
        block[mask] = int(structure)

    def paint(
        self,
        structure: Structure,
        inside: Inside,
        bbox: tuple[float, float, float, float] | None = None,
        over: tuple[Structure, ...] | None = None,
    ) -> None:
        """Set ``structure`` on sub-pixels inside a shape (only over ``over`` if given)."""
        win = self.window(bbox)
        if win is None:
            return
        rows, cols, x, y = win
        self.paint_mask(structure, rows, cols, inside(x, y), over)

    def fractions(self, values: npt.NDArray[np.uint8] | None = None,
                  n_values: int = len(Structure)) -> npt.NDArray[np.float32]:
        """Area fraction of each value per pixel, shape (n_values, rows, cols)."""
        rows, cols = self.shape
        ss = self.ss
        index = self.index if values is None else values
        pixel = (np.arange(rows)[:, None, None, None] * cols
                 + np.arange(cols)[None, None, :, None])
        pixel = np.broadcast_to(pixel, (rows, ss, cols, ss)).reshape(index.shape)
        counts = np.bincount(
            (pixel.astype(np.int64) * n_values + index).ravel(),
            minlength=rows * cols * n_values,
        )
        return (
            counts.reshape(rows, cols, n_values).transpose(2, 0, 1).astype(np.float32)
            / float(ss * ss)
        )


def _local(
    x: FloatArray, y: FloatArray, centre: tuple[float, float], rotation: float
) -> tuple[FloatArray, FloatArray]:
    """Heart-local polar coordinates (radius, angle) of image points."""
    c, s = math.cos(rotation), math.sin(rotation)
    dx, dy = x - centre[0], y - centre[1]
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return np.hypot(u, v), np.arctan2(v, u)


def _to_image(
    radius: float, theta: float, centre: tuple[float, float], rotation: float
) -> tuple[float, float]:
    u, v = radius * math.cos(theta), radius * math.sin(theta)
    c, s = math.cos(rotation), math.sin(rotation)
    return centre[0] + c * u - s * v, centre[1] + s * u + c * v


def choose_supersample(pixel_spacing: tuple[float, float]) -> int:
    """Supersampling factor giving sub-pixels of at most ~0.55 mm (at least 3)."""
    return max(3, math.ceil(max(pixel_spacing) / MIN_FINE_PIXEL_MM))


def render_slice(
    case: HeartCase,
    level: str | float,
    shape: tuple[int, int],
    pixel_spacing: tuple[float, float],
    *,
    supersample: int | None = None,
    centre_shift_mm: tuple[float, float] = (0.0, 0.0),
) -> RenderedSlice:
    """Render one short-axis slice of a subject with partial-volume fractions.

    Parameters
    ----------
    case
        The subject.
    level
        ``"basal"``, ``"mid"``, ``"apical"`` or a long-axis position in [0, 1).
    shape
        (rows, cols) of the image.
    pixel_spacing
        (row, col) spacing in mm.
    supersample
        Sub-pixels per pixel along each axis; chosen from the spacing if ``None``.
    centre_shift_mm
        Extra shift of the whole anatomy (x, y) in mm, e.g. for keeping the heart in a
        small field of view or simulating breath-hold mismatch.

    Returns
    -------
    RenderedSlice
        Fractions, labels and lesion maps.

    Raises
    ------
    ValueError
        For a too small matrix, a non-positive spacing or an unknown level.
    """
    rows, cols = (int(shape[0]), int(shape[1]))
    if rows < 16 or cols < 16:
        raise ValueError(f"Image matrix {rows}x{cols} is too small for a short-axis slice")
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if min(spacing) <= 0:
        raise ValueError(f"Pixel spacing must be positive, got {spacing}")
    ss = supersample or choose_supersample(spacing)
    s = case.position(level)
    canvas = _Canvas((rows, cols), spacing, ss)
    shift = (float(centre_shift_mm[0]), float(centre_shift_mm[1]))
    _paint_body(canvas, case, s, shift)
    _paint_heart(canvas, case, s, shift)

    fractions = canvas.fractions()
    labels = _labels_from_fractions(fractions)
    lesion_fraction = np.zeros((rows, cols), dtype=np.float32)
    lesion_rise = np.zeros((rows, cols), dtype=np.float32)
    if case.lesions:
        per_lesion = canvas.fractions(canvas.lesion_index, len(case.lesions) + 1)
        for number, lesion in enumerate(case.lesions, start=1):
            lesion_fraction += per_lesion[number]
            lesion_rise = np.where(per_lesion[number] > 0, lesion.t1_rise_ms, lesion_rise)
    cx, cy = case.lv_centre(s)
    dy, dx = spacing
    lv_centre_px = (
        (cy + shift[1] + rows * dy / 2.0) / dy - 0.5,
        (cx + shift[0] + cols * dx / 2.0) / dx - 0.5,
    )
    return RenderedSlice(
        fractions=fractions,
        labels=labels,
        lesion_fraction=lesion_fraction,
        lesion_rise_ms=lesion_rise.astype(np.float32),
        position=s,
        lv_centre_px=lv_centre_px,
        pixel_spacing=spacing,
    )


def _paint_body(canvas: _Canvas, case: HeartCase, s: float, shift: tuple[float, float]) -> None:
    """Chest wall, lungs, bones, abdominal organs and great vessels."""

    def moved(e: Ellipse) -> Ellipse:
        return e.shifted(*shift)

    body = case.body
    outline = moved(body.outline)
    if body.breast is not None:
        breast = moved(body.breast)
        canvas.paint(Structure.SUBCUTANEOUS_FAT, breast.inside, breast.bbox())
    win = canvas.window(outline.bbox())
    if win is not None:
        rws, cls, x, y = win
        r, theta = outline.polar(x, y)
        border = outline.radius(_TABLE_THETA)[_table_index(theta)]
        # Layer depths vary between anterior, lateral and posterior (paraspinal) values.
        sin_t = np.sin(theta)
        def depth(values: tuple[float, float, float]) -> FloatArray:
            anterior, lateral, posterior = values
            return np.where(
                sin_t < 0,
                lateral + (anterior - lateral) * sin_t**2,
                lateral + (posterior - lateral) * sin_t**2,
            )
        fat = depth(body.fat_mm)
        muscle = depth(body.muscle_mm)
        canvas.paint_mask(Structure.SUBCUTANEOUS_FAT, rws, cls, r < border)
        canvas.paint_mask(Structure.SKELETAL_MUSCLE, rws, cls, r < border - fat)
        canvas.paint_mask(Structure.LUNG, rws, cls, r < border - fat - muscle)
    for bone in (body.sternum, *body.ribs, body.vertebra):
        b = moved(bone)
        canvas.paint(Structure.BONE_MARROW, b.inside, b.bbox())
    canal = moved(body.spinal_canal)
    canvas.paint(Structure.SPINAL_CANAL, canal.inside, canal.bbox())

    # Abdomen under the diaphragm (only inside the thoracic cavity).
    cavity = (Structure.LUNG,)
    liver = case.liver.at(s)
    if liver is not None:
        lv_e = moved(liver)
        canvas.paint(Structure.SKELETAL_MUSCLE, lambda x, y: lv_e.inside(x, y, 4.0),
                     lv_e.bbox(4.0), over=cavity)
        canvas.paint(Structure.LIVER, lv_e.inside, lv_e.bbox(),
                     over=(Structure.SKELETAL_MUSCLE,))
    if case.spleen is not None and (spleen := case.spleen.at(s)) is not None:
        sp_e = moved(spleen)
        canvas.paint(Structure.SKELETAL_MUSCLE, lambda x, y: sp_e.inside(x, y, 3.0),
                     sp_e.bbox(3.0), over=cavity)
        canvas.paint(Structure.SPLEEN, sp_e.inside, sp_e.bbox(),
                     over=(Structure.SKELETAL_MUSCLE,))
    if case.stomach is not None and (stomach := case.stomach.at(s)) is not None:
        st_e = moved(stomach)
        content = Structure.STOMACH_GAS if case.stomach_has_gas else Structure.STOMACH_FLUID
        canvas.paint(Structure.STOMACH_WALL, lambda x, y: st_e.inside(x, y, 4.0),
                     st_e.bbox(4.0), over=(*cavity, Structure.SKELETAL_MUSCLE))
        canvas.paint(content, st_e.inside, st_e.bbox(), over=(Structure.STOMACH_WALL,))
    aorta = moved(case.aorta)
    canvas.paint(Structure.DESCENDING_AORTA, aorta.inside, aorta.bbox())
    mediastinal = moved(case.mediastinal_fat)
    canvas.paint(Structure.MEDIASTINAL_FAT, mediastinal.inside, mediastinal.bbox(),
                 over=(*cavity, Structure.SKELETAL_MUSCLE))
    cx, cy = case.lv_centre(s)
    for vessel in case.vessels:
        ves = vessel.at((cx + shift[0], cy + shift[1]), s)
        canvas.paint(Structure.VESSEL, ves.inside, ves.bbox(), over=(vessel.host,))


_HEART_OVER: tuple[Structure, ...] = (
    Structure.LUNG, Structure.MEDIASTINAL_FAT, Structure.SKELETAL_MUSCLE, Structure.LIVER,
    Structure.DESCENDING_AORTA, Structure.STOMACH_WALL, Structure.SPLEEN,
    Structure.STOMACH_FLUID, Structure.STOMACH_GAS, Structure.SUBCUTANEOUS_FAT,
    Structure.VESSEL,
)
"""Structures the heart and its fat may displace (not bone, not air outside the body)."""


def _paint_heart(canvas: _Canvas, case: HeartCase, s: float, shift: tuple[float, float]
                 ) -> None:
    """Epicardial fat, RV, LV myocardium and cavity, papillary muscles, lesions."""
    cx, cy = case.lv_centre(s)
    centre = (cx + shift[0], cy + shift[1])
    rot = case.rotation_rad
    lv = case.lv
    rv = case.rv
    r_epi_mean = lv.mean_epi_radius(s)
    # Keep at least ~6 mm of RV cavity beyond the septum, even near the apex.
    r_septum = float(lv.epi_radius(np.array([np.pi]), s)[0])
    rv_scale = max(rv.scale(s), ((r_septum + 6.0) / r_epi_mean - rv.offset_x) / rv.axis_x)
    rv_centre = _to_image(
        r_epi_mean * math.hypot(rv.offset_x, rv.offset_y),
        math.atan2(-rv.offset_y, -rv.offset_x),
        centre,
        rot,
    )
    rv_blood = Ellipse(
        rv_centre[0], rv_centre[1],
        r_epi_mean * rv.axis_x * rv_scale, r_epi_mean * rv.axis_y * rv_scale,
        rot + rv.angle_rad, rv.irregularity,
    )
    reach = r_epi_mean * (1.0 + rv.offset_x + rv.axis_x) + 30.0
    win = canvas.window((centre[0] - reach, centre[0] + reach,
                         centre[1] - reach, centre[1] + reach))
    if win is None:
        return
    rws, cls, x, y = win
    r, theta = _local(x, y, centre, rot)
    idx = _table_index(theta)
    endo = lv.endo_radius(_TABLE_THETA, s)[idx]
    epi = lv.epi_radius(_TABLE_THETA, s)[idx]
    # Epicardial fat is patchy: thick in the grooves and over the RV, often absent laterally.
    fat_base = case.epicardial_fat_mm * (1.5 - s)
    groove = np.exp(-((_wrap(_TABLE_THETA - np.pi) / 1.0) ** 2))
    patchy = 0.3 + case.epicardial_fat_variation(_TABLE_THETA) + 0.8 * groove
    fat = np.clip(fat_base * patchy, 0.0, 15.0)[idx]
    rv_r, rv_theta = rv_blood.polar(x, y)
    rv_border = rv_blood.radius(_TABLE_THETA)[_table_index(rv_theta)]
    effusion = case.pericardial_effusion_mm
    if effusion > 0:
        canvas.paint_mask(Structure.PERICARDIAL_FLUID, rws, cls,
                          rv_r < rv_border + rv.wall_thickness_mm + fat + effusion,
                          over=_HEART_OVER)
        canvas.paint_mask(Structure.PERICARDIAL_FLUID, rws, cls, r < epi + fat + effusion,
                          over=_HEART_OVER)

    canvas.paint_mask(Structure.EPICARDIAL_FAT, rws, cls,
                      rv_r < rv_border + rv.wall_thickness_mm + fat, over=_HEART_OVER)
    canvas.paint_mask(Structure.EPICARDIAL_FAT, rws, cls, r < epi + fat, over=_HEART_OVER)
    canvas.paint_mask(Structure.RV_WALL, rws, cls, rv_r < rv_border + rv.wall_thickness_mm)
    canvas.paint_mask(Structure.RV_BLOOD, rws, cls, rv_r < rv_border)
    for blob in rv.trabeculae:
        if not blob.s_range[0] <= s <= blob.s_range[1]:
            continue
        bx, by = _to_image(
            r_epi_mean * (rv.offset_x + rv.axis_x * rv_scale * blob.radial_fraction) * 0.9,
            blob.angle_rad, centre, rot,
        )
        trab = Ellipse(bx, by, blob.radius_mm * blob.aspect, blob.radius_mm,
                       rot + blob.angle_rad + np.pi / 2)
        canvas.paint(Structure.RV_TRABECULAE, trab.inside, trab.bbox(),
                     over=(Structure.RV_BLOOD,))
    canvas.paint_mask(Structure.LV_MYOCARDIUM, rws, cls, r < epi)
    canvas.paint_mask(Structure.LV_BLOOD, rws, cls, r < endo)
    for blob in lv.papillary:
        _paint_lv_blob(canvas, case, blob, s, centre, _papillary_taper(s, blob.s_range))
    for blob in lv.trabeculae:
        _paint_lv_blob(canvas, case, blob, s, centre, 1.0)

    # Focal lesions re-label myocardium sub-pixels; remember which lesion for its T1.
    lesion_index = np.zeros_like(canvas.index)
    depth = (r - endo) / np.maximum(epi - endo, 1e-3)  # 0 endocardium .. 1 epicardium
    for number, lesion in enumerate(case.lesions, start=1):
        if not lesion.s_range[0] <= s <= lesion.s_range[1]:
            continue
        block = canvas.index[rws, cls]
        mask = _lesion_mask(lesion, theta, depth) & (block == int(Structure.LV_MYOCARDIUM))
        block[mask] = int(Structure.LV_LESION)
        lesion_index[rws, cls][mask] = number
    canvas.lesion_index = lesion_index


def _paint_lv_blob(canvas: _Canvas, case: HeartCase, blob: Blob, s: float,
                   centre: tuple[float, float], taper: float) -> None:
    if not blob.s_range[0] <= s <= blob.s_range[1]:
        return
    rot = case.rotation_rad
    r_endo_at = float(case.lv.endo_radius(np.array([blob.angle_rad]), s)[0])
    bx, by = _to_image(r_endo_at * blob.radial_fraction, blob.angle_rad, centre, rot)
    pm = Ellipse(bx, by, blob.radius_mm * taper * blob.aspect, blob.radius_mm * taper,
                 rot + blob.angle_rad)
    canvas.paint(Structure.PAPILLARY_MUSCLE, pm.inside, pm.bbox(), over=(Structure.LV_BLOOD,))


def _papillary_taper(s: float, s_range: tuple[float, float]) -> float:
    """Papillary muscles thin out towards both ends of their long-axis extent."""
    lo, hi = s_range
    mid = 0.5 * (lo + hi)
    half = max(0.5 * (hi - lo), 1e-3)
    return float(max(0.35, 1.0 - ((s - mid) / half) ** 2))


def _lesion_mask(lesion: Lesion, theta: FloatArray, depth: FloatArray
                 ) -> npt.NDArray[np.bool_]:
    """Sub-pixels of the myocardium (by angle and transmural depth) inside a lesion."""
    offset = np.abs(_wrap(theta - lesion.angle_rad))
    wobble = 1.0 + 0.25 * np.cos(3.0 * theta + lesion.angle_rad)
    circ = offset < lesion.half_width_rad * wobble
    tm = lesion.transmurality
    if lesion.pattern is LesionPattern.SUBENDOCARDIAL:
        radial = depth < tm * (1.0 - 0.5 * offset / lesion.half_width_rad)
    elif lesion.pattern is LesionPattern.TRANSMURAL:
        radial = depth < 2.0
    elif lesion.pattern is LesionPattern.MIDWALL:
        radial = np.abs(depth - 0.5) < 0.35 * tm
    else:
        radial = depth > 1.0 - tm
    return circ & radial


def _labels_from_fractions(fractions: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Majority label per pixel, then close the myocardial ring around the LV pool."""
    per_label = np.zeros((len(_LABELS), *fractions.shape[1:]), dtype=np.float32)
    for structure, label in STRUCTURE_LABEL.items():
        per_label[int(label)] += fractions[int(structure)]
    labels = np.argmax(per_label, axis=0).astype(np.uint8)
    lv = labels == Label.LV_BLOOD_POOL
    if lv.any():
        outside = (labels == Label.BACKGROUND) | (labels == Label.RV_BLOOD_POOL)
        touching = lv & ndimage.binary_dilation(outside, structure=np.ones((3, 3), bool))
        labels[touching] = Label.MYOCARDIUM
    return labels


# --------------------------------------------------------------------------------------------
# Late-enhancing scar and RV insertion points
# --------------------------------------------------------------------------------------------


def rv_insertion_angles(case: HeartCase, s: float) -> tuple[float, float]:
    """Heart-local angles (rad) of the anterior and inferior RV insertion points at ``s``.

    They are the ends of the arc of the LV epicardium that the right ventricle (cavity and
    free wall) covers, found with the same RV shape that :func:`render_slice` draws.  The
    anterior point is returned in [-pi, 0), the inferior one in [0, pi).
    """
    lv = case.lv
    rv = case.rv
    r_epi_mean = lv.mean_epi_radius(s)
    r_septum = float(lv.epi_radius(np.array([np.pi]), s)[0])
    rv_scale = max(rv.scale(s), ((r_septum + 6.0) / r_epi_mean - rv.offset_x) / rv.axis_x)
    # Heart-local frame: LV centre at the origin, no rotation.
    rv_centre = _to_image(
        r_epi_mean * math.hypot(rv.offset_x, rv.offset_y),
        math.atan2(-rv.offset_y, -rv.offset_x), (0.0, 0.0), 0.0,
    )
    rv_outer = Ellipse(
        rv_centre[0], rv_centre[1], r_epi_mean * rv.axis_x * rv_scale,
        r_epi_mean * rv.axis_y * rv_scale, rv.angle_rad, rv.irregularity,
    )
    offsets = np.linspace(0.0, np.pi, 721)
    found = []
    for sign in (1.0, -1.0):  # +: towards anterior (theta past pi wraps to -pi), -: inferior
        theta = _wrap(np.pi + sign * offsets)
        radius = lv.epi_radius(theta, s) + 1.0
        covered = rv_outer.inside(radius * np.cos(theta), radius * np.sin(theta),
                                  rv.wall_thickness_mm)
        end = int(np.argmin(covered)) if not covered.all() else offsets.size - 1
        found.append(float(_wrap(np.array(np.pi + sign * offsets[max(end - 1, 0)]))))
    anterior, inferior = found
    if anterior >= 0.0:  # RV does not reach the epicardium: use typical positions
        anterior = -2.0 * np.pi / 3.0
    if inferior < 0.0 or inferior > np.pi - 1e-3:
        inferior = 2.0 * np.pi / 3.0
    return anterior, inferior


@dataclass(frozen=True)
class ScarFractions:
    """Partial-volume fractions of scar in one short-axis slice.

    Attributes
    ----------
    myocardium
        float32 (rows, cols): fraction of each pixel that is LV myocardium (scar included),
        the same sub-pixels :func:`render_slice` paints as LV myocardium or lesion.
    scar
        float32: fraction of each pixel that is scar (microvascular obstruction included).
    mvo
        float32: fraction of each pixel that is microvascular obstruction.
    scar_ecv
        float32: mean ECV of the scar sub-pixels in each pixel (0 without scar).
    """

    myocardium: npt.NDArray[np.float32]
    scar: npt.NDArray[np.float32]
    mvo: npt.NDArray[np.float32]
    scar_ecv: npt.NDArray[np.float32]


def render_scar(
    case: HeartCase,
    level: str | float,
    shape: tuple[int, int],
    pixel_spacing: tuple[float, float],
    *,
    supersample: int | None = None,
    centre_shift_mm: tuple[float, float] = (0.0, 0.0),
) -> ScarFractions:
    """Render the subject's scar on the pixel grid of :func:`render_slice`.

    Parameters are those of :func:`render_slice` (use the same values to get fractions
    that line up with its structures).

    Returns
    -------
    ScarFractions
        Myocardium, scar and microvascular-obstruction fractions and scar ECV.
    """
    rows, cols = (int(shape[0]), int(shape[1]))
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if min(spacing) <= 0:
        raise ValueError(f"Pixel spacing must be positive, got {spacing}")
    ss = supersample or choose_supersample(spacing)
    s = case.position(level)
    canvas = _Canvas((rows, cols), spacing, ss)
    cx, cy = case.lv_centre(s)
    centre = (cx + float(centre_shift_mm[0]), cy + float(centre_shift_mm[1]))
    lv = case.lv
    reach = float(np.max(lv.epi_radius(_TABLE_THETA, s))) + 2.0
    fine_myo = np.zeros(canvas.index.shape, dtype=np.float32)
    fine_scar = np.zeros_like(fine_myo)
    fine_mvo = np.zeros_like(fine_myo)
    fine_ecv = np.zeros_like(fine_myo)
    win = canvas.window((centre[0] - reach, centre[0] + reach,
                         centre[1] - reach, centre[1] + reach))
    if win is not None:
        rws, cls, x, y = win
        r, theta = _local(x, y, centre, case.rotation_rad)
        idx = _table_index(theta)
        endo = lv.endo_radius(_TABLE_THETA, s)[idx]
        epi = lv.epi_radius(_TABLE_THETA, s)[idx]
        myo = (r < epi) & (r >= endo)
        fine_myo[rws, cls] = myo
        if case.scar is not None and case.scar.regions and myo.any():
            depth = (r[myo] - endo[myo]) / np.maximum(epi[myo] - endo[myo], 1e-3)
            scar, mvo = case.scar.masks(theta[myo], depth, s)
            ecv = case.scar.region_ecv(theta[myo], depth, s)
            for target, values in ((fine_scar, scar), (fine_mvo, mvo),
                                   (fine_ecv, np.where(scar, ecv, 0.0))):
                block = np.zeros(myo.shape, dtype=np.float32)
                block[myo] = values
                target[rws, cls] = block

    def pool(fine: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return fine.reshape(rows, ss, cols, ss).mean(axis=(1, 3), dtype=np.float64).astype(
            np.float32)

    scar_fraction = pool(fine_scar)
    ecv_sum = pool(fine_ecv)
    scar_ecv = np.where(scar_fraction > 0, ecv_sum / np.maximum(scar_fraction, 1e-9), 0.0)
    return ScarFractions(
        myocardium=pool(fine_myo),
        scar=scar_fraction,
        mvo=pool(fine_mvo),
        scar_ecv=scar_ecv.astype(np.float32),
    )
