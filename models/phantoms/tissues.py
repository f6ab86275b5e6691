"""Tissue classes and their native T1 values as MOLLI measures them at 1.5 T and 3 T.

The ranges below are *MOLLI-apparent* T1 values in milliseconds (what a scanner's MOLLI
map shows), not inversion-recovery spin-echo truth; MOLLI underestimates long T1.

Sources (values in ms, mean ± SD unless stated):

* Myocardium.  Dabir D et al., "Reference values for healthy human myocardium using a T1
  mapping methodology: results from the International T1 Multicenter CMR study",
  J Cardiovasc Magn Reson 2014;16:69 — MOLLI 3(3)3(3)5, Philips: 950 ± 21 at 1.5 T,
  1052 ± 23 at 3 T.  von Knobelsdorff-Brenkenhoff F et al., "Myocardial T1 and T2 mapping
  at 3 T: reference values, influencing factors and implications", JCMR 2013;15:53 —
  MOLLI, Siemens 3 T: 1159 ± 45.  Popescu IA et al., "Standardization of T1-mapping in
  cardiovascular magnetic resonance using clustered structuring for benchmarking normal
  ranges", Int J Cardiol 2021 — 76 reports: clusters 958 ± 16 and 1027 ± 19 at 1.5 T,
  1067 ± 18, 1160 ± 21 and 1227 ± 19 at 3 T.  The generator uses the common Siemens-like
  clusters: ~950–1050 ms at 1.5 T and ~1150–1250 ms at 3 T.
* Blood.  Kammerlander AA et al., "Extracellular volume quantification by cardiac
  magnetic resonance imaging without hematocrit sampling", Wien Klin Wochenschr
  2018;130:190 — native blood-pool T1 1570.6 ± 117.8 at 1.5 T with haematocrit
  39.9 ± 4.7 %.  Treibel TA et al., "Automatic measurement of the myocardial
  interstitium: synthetic extracellular volume quantification without hematocrit
  sampling", JACC Cardiovasc Imaging 2016;9:54 — synthetic haematocrit
  Hct = 866 / T1_blood − 0.1232 at 1.5 T (MOLLI), inverted here to derive blood T1 from a
  sampled haematocrit.  At 3 T the generator scales that value by 1.18 (an assumption,
  chosen so that typical haematocrits give the ~1800–1950 ms blood T1 that 3 T MOLLI
  studies commonly report).
* Liver, spleen, subcutaneous fat, bone marrow, paravertebral muscle.  de Bazelaire CM et
  al., "MR imaging relaxation times of abdominal and pelvic tissues measured in vivo at
  3.0 T: preliminary results", Radiology 2004;230:652 — 3 T: liver 809 ± 71, spleen
  1328 ± 31, subcutaneous fat 382 ± 13, L4 bone marrow 586 ± 73, paravertebral muscle
  898 ± 33; 1.5 T: liver 586 ± 39, spleen 1057 ± 42, fat 343 ± 37, marrow 549 ± 52.
  Stanisz GJ et al., "T1, T2 relaxation and magnetization transfer in tissue at 3T",
  Magn Reson Med 2005;54:507 — skeletal muscle 1008 ± 20 (1.5 T), 1412 ± 13 (3 T).
  MOLLI liver T1 of ~550–650 ms at 1.5 T and ~750–850 ms at 3 T agrees with the
  liver-MOLLI literature (e.g. Mozes FE et al., "Influence of fat on liver T1 measurements
  using modified Look-Locker inversion recovery (MOLLI) methods at 3T", J Magn Reson Imaging
  2016;44:105: 870 ± 44 ms at 3 T in low-fat livers).
* Lung parenchyma has a T1 of ~1200–1400 ms at 1.5 T but so little signal (proton density
  ~0.1–0.2, T2* of ~1–2 ms) that MOLLI maps show noise there.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

FIELD_STRENGTHS_T: tuple[float, ...] = (1.5, 3.0)
"""Field strengths for which literature values are tabulated."""


class Tissue(enum.IntEnum):
    """Tissue types the phantoms are made of (a structure maps to exactly one tissue)."""

    AIR = 0
    LUNG = 1
    FAT = 2
    SKELETAL_MUSCLE = 3
    LIVER = 4
    SPLEEN = 5
    BLOOD = 6
    MYOCARDIUM = 7
    BONE_MARROW = 8
    FLUID = 9


@dataclass(frozen=True)
class T1Range:
    """A healthy MOLLI-apparent T1 range in ms: values are drawn from N(mean, sd) clipped."""

    low_ms: float
    high_ms: float
    mean_ms: float
    sd_ms: float

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one subject's value."""
        return float(np.clip(rng.normal(self.mean_ms, self.sd_ms), self.low_ms, self.high_ms))

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int | float) and self.low_ms <= float(value) <= self.high_ms


# Healthy native MOLLI T1 per tissue (blood is derived from haematocrit; see module doc).
NATIVE_T1_MS: Mapping[float, Mapping[Tissue, T1Range]] = {
    1.5: {
        Tissue.MYOCARDIUM: T1Range(950.0, 1050.0, 1000.0, 25.0),
        Tissue.LIVER: T1Range(550.0, 650.0, 595.0, 25.0),
        Tissue.SPLEEN: T1Range(1050.0, 1150.0, 1100.0, 25.0),
        Tissue.FAT: T1Range(250.0, 380.0, 310.0, 30.0),
        Tissue.SKELETAL_MUSCLE: T1Range(900.0, 1080.0, 990.0, 40.0),
        Tissue.BONE_MARROW: T1Range(480.0, 650.0, 560.0, 40.0),
        Tissue.LUNG: T1Range(1150.0, 1400.0, 1270.0, 60.0),
        Tissue.FLUID: T1Range(2400.0, 3200.0, 2800.0, 200.0),
    },
    3.0: {
        Tissue.MYOCARDIUM: T1Range(1150.0, 1250.0, 1195.0, 25.0),
        Tissue.LIVER: T1Range(750.0, 850.0, 800.0, 25.0),
        Tissue.SPLEEN: T1Range(1250.0, 1400.0, 1325.0, 35.0),
        Tissue.FAT: T1Range(320.0, 430.0, 375.0, 25.0),
        Tissue.SKELETAL_MUSCLE: T1Range(1100.0, 1350.0, 1230.0, 50.0),
        Tissue.BONE_MARROW: T1Range(500.0, 700.0, 590.0, 45.0),
        Tissue.LUNG: T1Range(1300.0, 1600.0, 1450.0, 70.0),
        Tissue.FLUID: T1Range(2800.0, 3600.0, 3200.0, 200.0),
    },
}

HAEMATOCRIT_MEAN = 0.415
HAEMATOCRIT_SD = 0.03
HAEMATOCRIT_RANGE = (0.34, 0.50)
_TREIBEL_SLOPE_MS = 866.0  # Hct = 866 / T1_blood - 0.1232 (1.5 T MOLLI, Treibel 2016)
_TREIBEL_INTERCEPT = 0.1232
_BLOOD_3T_OVER_1P5T = 1.18

BLOOD_T1_RANGE_MS: Mapping[float, tuple[float, float]] = {
    1.5: (
        _TREIBEL_SLOPE_MS / (HAEMATOCRIT_RANGE[1] + _TREIBEL_INTERCEPT),
        _TREIBEL_SLOPE_MS / (HAEMATOCRIT_RANGE[0] + _TREIBEL_INTERCEPT),
    ),
    3.0: (
        _BLOOD_3T_OVER_1P5T * _TREIBEL_SLOPE_MS / (HAEMATOCRIT_RANGE[1] + _TREIBEL_INTERCEPT),
        _BLOOD_3T_OVER_1P5T * _TREIBEL_SLOPE_MS / (HAEMATOCRIT_RANGE[0] + _TREIBEL_INTERCEPT),
    ),
}
"""Blood T1 range (ms) spanned by the haematocrit range, per field strength."""

DIFFUSE_DISEASE_MAX_MS = 150.0
"""Largest diffuse rise of myocardial T1 (fibrosis, amyloid, oedema) the generator applies."""

FOCAL_RISE_RANGE_MS: Mapping[float, tuple[float, float]] = {1.5: (80.0, 300.0), 3.0: (100.0, 350.0)}
"""Rise of T1 in a focal lesion (oedema, acute or chronic infarct) over remote myocardium."""

# Relative equilibrium magnetisation (proton density x receive efficiency) that weights partial
# volume and sets the noise level.  Lung and air have little or no signal.
PROTON_DENSITY: Mapping[Tissue, float] = {
    Tissue.AIR: 0.0,
    Tissue.LUNG: 0.12,
    Tissue.FAT: 0.95,
    Tissue.SKELETAL_MUSCLE: 0.75,
    Tissue.LIVER: 0.72,
    Tissue.SPLEEN: 0.8,
    Tissue.BLOOD: 0.95,
    Tissue.MYOCARDIUM: 0.78,
    Tissue.BONE_MARROW: 0.8,
    Tissue.FLUID: 1.0,
}

# T2 (ms) used for the bSSFP readout weighting of MOLLI source images.
T2_MS: Mapping[Tissue, float] = {
    Tissue.AIR: 1.0,
    Tissue.LUNG: 30.0,
    Tissue.FAT: 80.0,
    Tissue.SKELETAL_MUSCLE: 32.0,
    Tissue.LIVER: 40.0,
    Tissue.SPLEEN: 60.0,
    Tissue.BLOOD: 250.0,
    Tissue.MYOCARDIUM: 50.0,
    Tissue.BONE_MARROW: 50.0,
    Tissue.FLUID: 1000.0,
}


def check_field_strength(field_strength_t: float) -> float:
    """Return the tabulated field strength equal to ``field_strength_t``.

    Raises
    ------
    ValueError
        If no literature values are tabulated for that field strength.
    """
    for known in FIELD_STRENGTHS_T:
        if abs(float(field_strength_t) - known) < 0.05:
            return known
    raise ValueError(
        f"No T1 values tabulated for {field_strength_t} T; supported: "
        + ", ".join(f"{f:g} T" for f in FIELD_STRENGTHS_T)
    )


def blood_t1_from_haematocrit(haematocrit: float, field_strength_t: float) -> float:
    """MOLLI blood T1 (ms) for a haematocrit (fraction), by the Treibel 2016 relation."""
    field = check_field_strength(field_strength_t)
    t1 = _TREIBEL_SLOPE_MS / (haematocrit + _TREIBEL_INTERCEPT)
    return t1 * (_BLOOD_3T_OVER_1P5T if field == 3.0 else 1.0)


@dataclass(frozen=True)
class TissueProperties:
    """One subject's native tissue T1 values (ms) and haematocrit.

    Attributes
    ----------
    field_strength_t
        Field strength the values belong to.
    native_t1_ms
        Healthy-tissue MOLLI T1 per tissue; ``Tissue.MYOCARDIUM`` is the subject's value
        *including* ``diffuse_rise_ms``.
    haematocrit
        Fraction (0.34–0.50) that sets the blood T1.
    diffuse_rise_ms
        Diffuse myocardial disease rise already included in the myocardial T1 (0 if healthy).
    septal_lateral_gradient_ms
        Septum minus lateral wall T1 (a few ms to ~25 ms, as usually observed in vivo).
    """

    field_strength_t: float
    native_t1_ms: Mapping[Tissue, float]
    haematocrit: float
    diffuse_rise_ms: float
    septal_lateral_gradient_ms: float

    @property
    def myocardium_t1_ms(self) -> float:
        """Subject's (diffusely diseased or healthy) myocardial T1 in ms."""
        return self.native_t1_ms[Tissue.MYOCARDIUM]

    @property
    def blood_t1_ms(self) -> float:
        """Subject's blood T1 in ms."""
        return self.native_t1_ms[Tissue.BLOOD]


def sample_tissue_properties(
    rng: np.random.Generator,
    field_strength_t: float = 1.5,
    *,
    diffuse_probability: float = 0.3,
    diffuse_rise_ms: float | None = None,
) -> TissueProperties:
    """Draw one subject's native T1 values.

    Parameters
    ----------
    rng
        Random generator.
    field_strength_t
        1.5 or 3 (tesla).
    diffuse_probability
        Probability that the subject has diffuse myocardial disease when
        ``diffuse_rise_ms`` is not given.
    diffuse_rise_ms
        Force a diffuse rise (ms, 0 for healthy).

    Returns
    -------
    TissueProperties
        The subject's values.
    """
    field = check_field_strength(field_strength_t)
    table = NATIVE_T1_MS[field]
    values: dict[Tissue, float] = {tissue: rng_range.sample(rng) for tissue, rng_range in
                                   table.items()}
    haematocrit = float(np.clip(rng.normal(HAEMATOCRIT_MEAN, HAEMATOCRIT_SD), *HAEMATOCRIT_RANGE))
    values[Tissue.BLOOD] = blood_t1_from_haematocrit(haematocrit, field)
    values[Tissue.AIR] = 0.0
    if diffuse_rise_ms is None:
        diffuse = (
            float(rng.uniform(30.0, DIFFUSE_DISEASE_MAX_MS))
            if rng.random() < diffuse_probability
            else 0.0
        )
    else:
        diffuse = float(diffuse_rise_ms)
    values[Tissue.MYOCARDIUM] += diffuse
    gradient = float(rng.uniform(0.0, 25.0))
    logger.debug(
        "tissues at %.1f T: myocardium %.0f ms (diffuse +%.0f), blood %.0f ms (Hct %.2f)",
        field, values[Tissue.MYOCARDIUM], diffuse, values[Tissue.BLOOD], haematocrit,
    )
    return TissueProperties(
        field_strength_t=field,
        native_t1_ms=values,
        haematocrit=haematocrit,
        diffuse_rise_ms=diffuse,
        septal_lateral_gradient_ms=gradient,
    )
