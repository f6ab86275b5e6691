"""Random synthetic subjects: :func:`make_heart_case` draws phenotype, ventricles, lesions, body."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np

from models.phantoms.anatomy import (
    LEVEL_POSITION_RANGES,
    LEVELS,
    LesionPattern,
    Phenotype,
    Structure,
)
from models.phantoms.heart_geometry import (
    Blob,
    Body,
    Ellipse,
    Harmonics,
    HeartCase,
    LeftVentricle,
    Lesion,
    Organ,
    RightVentricle,
    Vessel,
)
from models.phantoms.tissues import (
    FOCAL_RISE_RANGE_MS,
    check_field_strength,
    sample_tissue_properties,
)

logger = logging.getLogger(__name__)


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
