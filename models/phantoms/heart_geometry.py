"""Geometry of a synthetic subject in cardiac short-axis planes: shapes and the heart case.

A :class:`HeartCase` is one synthetic subject: the shape of the left and right ventricles,
papillary muscles and trabeculation, epicardial fat, the chest wall, lungs, liver, spleen,
stomach, spine and descending aorta, plus the subject's tissue T1 values, myocardial
lesions and late-enhancing scar; it is built of the shape primitives here
(:class:`Harmonics`, :class:`Ellipse`, :class:`Blob`, ...).

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
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import LEVELS, FloatArray, LesionPattern, Phenotype, Structure
from models.phantoms.tissues import TissueProperties

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
