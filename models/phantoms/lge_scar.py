"""Late-enhancing scar of LGE phantoms: clinical scar patterns and their sampling.

:func:`sample_scar` gives a subject a :class:`~models.phantoms.heart_geometry.Scar` of a
:class:`ScarPattern` (ischaemic infarcts in coronary territories, :data:`AHA_TERRITORY`,
with microvascular obstruction, mid-wall septal stripes, RV insertion-point enhancement,
patchy hypertrophic fibrosis, subepicardial myocarditis), defined in the heart's own
coordinates.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np

from models.phantoms.anatomy import FloatArray, Phenotype
from models.phantoms.heart_geometry import Harmonics, HeartCase, Scar, ScarRegion, ScarShape
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.scar_rendering import rv_insertion_angles

__all__ = ["AHA_TERRITORY", "ScarPattern", "draw_scar_pattern", "sample_scar"]


class ScarPattern(enum.StrEnum):
    """Clinical pattern of late enhancement a subject can be given."""

    NONE = "none"
    LAD = "ischaemic_lad"
    """Anterior / anteroseptal (and apical) infarct, left anterior descending territory."""
    RCA = "ischaemic_rca"
    """Inferior / inferoseptal infarct, right coronary artery territory."""
    LCX = "ischaemic_lcx"
    """Lateral / inferolateral infarct, circumflex territory."""
    MIDWALL = "midwall_septal"
    """Mid-wall septal stripe (non-ischaemic dilated cardiomyopathy)."""
    RV_INSERTION = "rv_insertion"
    """Focal enhancement at the RV insertion points."""
    PATCHY = "patchy"
    """Patchy multifocal mid-wall fibrosis in hypertrophied segments (HCM)."""
    SUBEPICARDIAL = "subepicardial"
    """Subepicardial inferolateral enhancement (myocarditis)."""


ISCHAEMIC_PATTERNS = (ScarPattern.LAD, ScarPattern.RCA, ScarPattern.LCX)

_PATTERN_WEIGHTS: dict[ScarPattern, float] = {
    ScarPattern.NONE: 0.2,
    ScarPattern.LAD: 0.17,
    ScarPattern.RCA: 0.11,
    ScarPattern.LCX: 0.09,
    ScarPattern.MIDWALL: 0.11,
    ScarPattern.RV_INSERTION: 0.08,
    ScarPattern.PATCHY: 0.12,
    ScarPattern.SUBEPICARDIAL: 0.12,
}
"""Probability of each pattern when none is requested."""

AHA_TERRITORY: dict[int, str] = {
    **{seg: "LAD" for seg in (1, 2, 7, 8, 13, 14, 17)},
    **{seg: "RCA" for seg in (3, 4, 9, 10, 15)},
    **{seg: "LCX" for seg in (5, 6, 11, 12, 16)},
}
"""Usual coronary territory of each AHA segment (Cerqueira MD et al., Circulation
2002;105:539)."""


def _free_wall_and_septum(case: HeartCase) -> tuple[float, float, float, float]:
    """(anterior RVIP, inferior RVIP, free-wall arc, septal arc) at mid-ventricle (rad)."""
    anterior, inferior = rv_insertion_angles(case, 0.5)
    free = (inferior - anterior) % (2.0 * np.pi)
    return anterior, inferior, free, 2.0 * np.pi - free


def _segment_centre(case: HeartCase, name: str) -> float:
    """Heart-local angle of the centre of a mid-ventricular AHA segment."""
    anterior, inferior, free, septal = _free_wall_and_septum(case)
    centres = {
        "anterior": anterior + free / 8.0,
        "anterolateral": anterior + 3.0 * free / 8.0,
        "inferolateral": anterior + 5.0 * free / 8.0,
        "inferior": anterior + 7.0 * free / 8.0,
        "inferoseptal": inferior + septal / 4.0,
        "anteroseptal": inferior + 3.0 * septal / 4.0,
        "septum": inferior + septal / 2.0,
    }
    return float(math.remainder(centres[name], 2.0 * np.pi))


def _edge(rng: np.random.Generator, amplitude: float) -> Harmonics:
    return Harmonics.random(rng, range(2, 7), amplitude)


def _ischaemic(rng: np.random.Generator, case: HeartCase, pattern: ScarPattern,
               scale: float = 1.0) -> ScarRegion:
    """An infarct: subendocardial to transmural, possibly with microvascular obstruction."""
    anterior, inferior, _, _ = _free_wall_and_septum(case)
    if pattern is ScarPattern.LAD:
        centre = anterior + math.radians(rng.normal(0.0, 15.0))
        half = math.radians(rng.uniform(40.0, 115.0))
        s_range = (float(rng.uniform(0.05, 0.5)), float(rng.uniform(0.9, 1.0)))
    elif pattern is ScarPattern.RCA:
        centre = inferior - math.radians(rng.uniform(-10.0, 25.0))
        half = math.radians(rng.uniform(35.0, 85.0))
        s_range = (float(rng.uniform(0.0, 0.2)), float(rng.uniform(0.55, 0.9)))
    else:
        centre = _segment_centre(case, "inferolateral" if rng.random() < 0.6
                                 else "anterolateral") + math.radians(rng.normal(0.0, 15.0))
        half = math.radians(rng.uniform(35.0, 80.0))
        s_range = (float(rng.uniform(0.0, 0.25)), float(rng.uniform(0.5, 0.85)))
    transmurality = float(rng.uniform(0.35, 1.6))
    if rng.random() < 0.25:  # extensive infarct: wide and mostly transmural
        half *= float(rng.uniform(1.2, 1.5))
        transmurality = float(rng.uniform(1.2, 1.9))
    half = min(half * scale, math.radians(150.0))
    mvo = None
    if transmurality > 0.8 and rng.random() < 0.45:
        mvo = (float(rng.uniform(0.25, 0.55)), float(rng.uniform(0.0, 0.15)),
               float(rng.uniform(0.55, 0.85)))
    return ScarRegion(
        shape=ScarShape.SUBENDOCARDIAL,
        angle_rad=float(math.remainder(centre, 2.0 * np.pi)),
        half_width_rad=half,
        s_range=s_range,
        depth=(0.0, transmurality),
        ecv=float(rng.uniform(0.55, 0.85)),
        twist_rad=math.radians(rng.normal(0.0, 15.0)),
        edge=_edge(rng, 0.12),
        mvo=mvo,
        mvo_ecv=float(rng.uniform(0.05, 0.15)),
    )


def _patchy_angles(rng: np.random.Generator, case: HeartCase, n: int) -> FloatArray:
    """Angles favouring the thickest (hypertrophied) wall and the RV insertion points."""
    theta = np.linspace(-np.pi, np.pi, 360, endpoint=False)
    thickness = case.lv.wall_thickness(theta, 0.5)
    weight = (thickness / thickness.max()) ** 6
    for angle in rv_insertion_angles(case, 0.5):
        weight = weight + 0.5 * np.exp(-0.5 * (np.angle(np.exp(1j * (theta - angle))) / 0.25)
                                       ** 2)
    return theta[rng.choice(theta.size, size=n, p=weight / weight.sum())]


def draw_scar_pattern(rng: np.random.Generator) -> ScarPattern:
    """A random scar pattern (about one case in five has none)."""
    names = list(_PATTERN_WEIGHTS)
    weights = np.array([_PATTERN_WEIGHTS[p] for p in names])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def sample_scar(
    rng: np.random.Generator, case: HeartCase, pattern: ScarPattern | str | None = None
) -> Scar | None:
    """Draw a scar of a given (or random) pattern for a subject.

    Parameters
    ----------
    rng
        Random generator.
    case
        The subject: RV insertion points and wall thickness place the scar.
    pattern
        A :class:`ScarPattern` value; random (about one case in five without scar) if
        ``None``.

    Returns
    -------
    Scar or None
        ``None`` for :attr:`ScarPattern.NONE`.
    """
    if pattern is None:
        chosen = draw_scar_pattern(rng)
    else:
        try:
            chosen = ScarPattern(str(pattern))
        except ValueError as exc:
            raise ValueError(
                f"Unknown scar pattern {pattern!r}; expected one of "
                + ", ".join(p.value for p in ScarPattern)
            ) from exc
    regions: list[ScarRegion] = []
    if chosen is ScarPattern.NONE:
        return None
    if chosen in ISCHAEMIC_PATTERNS:
        regions.append(_ischaemic(rng, case, chosen))
        if rng.random() < 0.12:  # a second, smaller infarct in another territory
            other = [p for p in ISCHAEMIC_PATTERNS if p is not chosen]
            regions.append(_ischaemic(rng, case, other[int(rng.integers(2))], scale=0.6))
    elif chosen is ScarPattern.MIDWALL:
        _, _, _, septal = _free_wall_and_septum(case)
        centre = _segment_centre(case, "septum") + math.radians(rng.normal(0.0, 8.0))
        depth_centre = float(rng.uniform(0.38, 0.62))
        thick = float(rng.uniform(0.08, 0.22))
        pieces = 1 if rng.random() < 0.6 else 2
        for k in range(pieces):
            shift = 0.0 if pieces == 1 else (k - 0.5) * septal * 0.45
            regions.append(ScarRegion(
                shape=ScarShape.MIDWALL,
                angle_rad=float(math.remainder(centre + shift, 2.0 * np.pi)),
                half_width_rad=0.5 * septal * float(rng.uniform(0.45, 0.95)) / pieces,
                s_range=(float(rng.uniform(0.0, 0.2)), float(rng.uniform(0.5, 0.85))),
                depth=(depth_centre - thick, depth_centre + thick),
                ecv=float(rng.uniform(0.4, 0.6)),
                twist_rad=math.radians(rng.normal(0.0, 10.0)),
                edge=_edge(rng, 0.15),
            ))
    elif chosen is ScarPattern.RV_INSERTION:
        anterior, inferior = rv_insertion_angles(case, 0.5)
        sites = [inferior] if rng.random() < 0.45 else (
            [anterior] if rng.random() < 0.3 else [anterior, inferior])
        for angle in sites:
            regions.append(ScarRegion(
                shape=ScarShape.FOCAL,
                angle_rad=float(angle + math.radians(rng.normal(0.0, 5.0))),
                half_width_rad=math.radians(rng.uniform(8.0, 20.0)),
                s_range=(float(rng.uniform(0.0, 0.3)), float(rng.uniform(0.55, 0.85))),
                depth=(float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.8, 1.05))),
                ecv=float(rng.uniform(0.4, 0.55)),
                edge=_edge(rng, 0.1),
            ))
    elif chosen is ScarPattern.PATCHY:
        n = int(rng.integers(3, 10))
        for angle in _patchy_angles(rng, case, n):
            s_centre = float(rng.uniform(0.08, 0.8))
            s_half = float(rng.uniform(0.06, 0.22))
            d_centre = float(rng.uniform(0.3, 0.7))
            d_half = float(rng.uniform(0.12, 0.35))
            regions.append(ScarRegion(
                shape=ScarShape.FOCAL,
                angle_rad=float(angle + rng.normal(0.0, 0.05)),
                half_width_rad=math.radians(rng.uniform(6.0, 24.0)),
                s_range=(s_centre - s_half, s_centre + s_half),
                depth=(d_centre - d_half, d_centre + d_half),
                ecv=float(rng.uniform(0.4, 0.7)),
                edge=_edge(rng, 0.15),
            ))
    else:  # subepicardial
        centre = _segment_centre(case, "inferolateral") + math.radians(rng.normal(0.0, 15.0))
        regions.append(ScarRegion(
            shape=ScarShape.SUBEPICARDIAL,
            angle_rad=float(math.remainder(centre, 2.0 * np.pi)),
            half_width_rad=math.radians(rng.uniform(20.0, 60.0)),
            s_range=(float(rng.uniform(0.0, 0.3)), float(rng.uniform(0.45, 0.85))),
            depth=(1.0 - float(rng.uniform(0.2, 0.55)), 1.0),
            ecv=float(rng.uniform(0.45, 0.65)),
            twist_rad=math.radians(rng.normal(0.0, 15.0)),
            edge=_edge(rng, 0.2),
        ))
        if rng.random() < 0.4:  # a second patch, lateral or anterolateral
            second = _segment_centre(case, "anterolateral") + math.radians(rng.normal(0, 15))
            regions.append(dataclasses.replace(
                regions[-1], angle_rad=float(math.remainder(second, 2.0 * np.pi)),
                half_width_rad=math.radians(rng.uniform(15.0, 35.0))))
    return Scar(pattern=chosen.value, regions=tuple(regions))


def _heart_for_pattern(rng: np.random.Generator, field_strength_t: float,
                       pattern: ScarPattern | None) -> HeartCase:
    """A subject whose geometry suits the scar pattern (hypertrophy for HCM, ...)."""
    phenotype: Phenotype | None = None
    if pattern is ScarPattern.PATCHY:
        phenotype = (Phenotype.SEPTAL_HYPERTROPHY if rng.random() < 0.6
                     else Phenotype.CONCENTRIC_HYPERTROPHY)
    elif (pattern is ScarPattern.MIDWALL and rng.random() < 0.7) or (
            pattern in ISCHAEMIC_PATTERNS and rng.random() < 0.35):
        phenotype = Phenotype.DILATED
    return make_heart_case(rng, field_strength_t=field_strength_t, phenotype=phenotype,
                           lesion_probability=0.0)
