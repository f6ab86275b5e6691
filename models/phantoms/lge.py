"""Late gadolinium enhancement (LGE) phantoms: scar patterns, IR magnitude and PSIR images.

An LGE slice is rendered from the same :class:`~models.phantoms.heart_geometry.HeartCase` as the
subject's T1 maps and cine images.  The subject's :class:`~models.phantoms.heart_geometry.Scar`
(ischaemic infarcts in coronary territories with microvascular obstruction, mid-wall
septal stripes, RV insertion-point enhancement, patchy hypertrophic fibrosis,
subepicardial myocarditis) is defined in the heart's own coordinates, so every slice of a
stack cuts the same three-dimensional scar.

Contrast model.  Post-contrast T1 of each tissue follows from its extracellular volume
(ECV) and the blood T1 after the bolus: ``R1 = R1_native + ECV / (1 - Hct) * dR1_blood``
(Moon JC et al., SCMR/ESC consensus on T1 mapping and ECV, J Cardiovasc Magn Reson
2013;15:92).  A segmented inversion-recovery acquisition that inverts every one or two
heartbeats gives ``Mz(TI) = 1 - (1 + m) exp(-TI / T1)`` with ``m = 1 - exp(-(n RR - TI) /
T1)`` the recovery since the previous readout; the operator picks the TI that nulls remote
myocardium (Kellman P, Arai AE, "Cardiac imaging techniques for physicians: late
enhancement", J Magn Reson Imaging 2012;36:529), typically 250-350 ms 10-20 min after
0.1-0.2 mmol/kg of a gadolinium agent, and often misses it by some per cent (grey
myocardium).  The magnitude image is ``|S + n|`` with complex Gaussian noise (Rician floor
over nulled myocardium); the phase-sensitive (PSIR) image is the signed real part
``S + n_re`` (Kellman P et al., "Phase-sensitive inversion recovery for detecting
myocardial infarction using gadolinium-delayed hyperenhancement", Magn Reson Med
2002;47:372), so it keeps scar bright and remote myocardium near zero even when the TI is
wrong.  Dense infarct (ECV 0.55-0.85) is brighter than blood; microvascular obstruction,
which contrast barely reaches, stays dark inside it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import STRUCTURE_TISSUE, Phenotype, Structure
from models.phantoms.heart_geometry import Harmonics, HeartCase, Scar, ScarRegion, ScarShape
from models.phantoms.heart_rendering import RenderedSlice, render_slice
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.maps import TISSUE_ECV, ContrastState
from models.phantoms.scar_rendering import ScarFractions, render_scar, rv_insertion_angles
from models.phantoms.t1map import (
    _fit_heart_in_view,
    kspace_window,
    lowpass,
    smooth_field,
)
from models.phantoms.tissues import PROTON_DENSITY, Tissue, check_field_strength
from plugins.api import Label

__all__ = [
    "AHA_TERRITORY",
    "Contrast",
    "LgeAcquisition",
    "LgeSlice",
    "ScarPattern",
    "aha_segment_map",
    "draw_scar_pattern",
    "lge_case_truth",
    "make_lge_slice",
    "make_lge_stack",
    "make_ti_scout",
    "null_inversion_time",
    "sample_lge_acquisition",
    "sample_scar",
    "stack_positions",
]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]


class Contrast(enum.StrEnum):
    """Reconstruction of an LGE image."""

    PSIR = "psir"
    """Phase-sensitive (signed real) image."""
    MAGNITUDE = "magnitude"
    """Magnitude inversion-recovery image."""


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

BASAL_END = 0.35
"""Long-axis position where AHA mid-ventricular segments begin."""
MID_END = 0.65
"""Long-axis position where AHA apical segments begin."""

STACK_RANGE = (0.06, 0.88)
"""Long-axis positions of the most basal and most apical slice of a default LGE stack."""

MAX_STORED = 4095.0
"""Largest magnitude value (12-bit scanners)."""

LGE_MATRICES: tuple[tuple[int, int], ...] = (
    (192, 256), (208, 256), (224, 256), (256, 256), (256, 208), (240, 256), (176, 224),
)
"""(rows, cols) reconstruction matrices of clinical 2-D LGE protocols."""


# --------------------------------------------------------------------------------------------
# Scar patterns
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Acquisition and contrast
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LgeAcquisition:
    """Contrast state and imaging properties shared by the slices of one LGE stack.

    Attributes
    ----------
    contrast
        Blood T1 after the bolus, remote myocardial ECV and the agent's name.
    heart_rate_bpm
        Heart rate; sets the recovery between inversions.
    beats_per_inversion
        Inversion every one or two heartbeats.
    trigger_time_ms
        Delay of the readout after the R wave (mid-diastole).
    ti_null_ms
        Inversion time that nulls remote myocardium.
    inversion_time_ms
        Inversion time used (the operator's choice: ``ti_null_ms`` times ``1 + ti_error``).
    ti_error
        Relative TI error (negative: too short, myocardium below zero).
    blood_snr
        Blood signal over noise SD in the magnitude image (before coil bias).
    intensity_scale
        Stored intensity of fully relaxed blood proton density (scanner scaling).
    acquired_resolution_mm
        Acquired (before interpolation) resolution along (rows, cols).
    motion_blur_mm, motion_angle_rad
        Residual in-plane motion blur.
    bias_amplitude
        Strength of the receive-coil intensity variation.
    ghost_amplitude
        Relative amplitude of a respiratory ghost along the phase-encoding direction.
    """

    contrast: ContrastState
    heart_rate_bpm: float
    beats_per_inversion: int
    trigger_time_ms: float
    ti_null_ms: float
    inversion_time_ms: float
    ti_error: float
    blood_snr: float
    intensity_scale: float
    acquired_resolution_mm: tuple[float, float]
    motion_blur_mm: float
    motion_angle_rad: float
    bias_amplitude: float
    ghost_amplitude: float

    @property
    def rr_ms(self) -> float:
        """RR interval in ms."""
        return 60000.0 / self.heart_rate_bpm

    @property
    def recovery_ms(self) -> float:
        """Time between two inversions."""
        return self.beats_per_inversion * self.rr_ms


def post_contrast_t1(case: HeartCase, contrast: ContrastState, tissue: Tissue,
                     ecv: float | None = None) -> float:
    """T1 (ms) of a tissue after contrast from its native T1 and ECV.

    ``ecv`` overrides the tissue's usual ECV (scar, obstruction).  Blood gets the
    contrast state's blood T1; air 0.
    """
    native = case.tissues.native_t1_ms.get(tissue, 0.0)
    if tissue is Tissue.AIR or native <= 0:
        return 0.0
    if tissue is Tissue.BLOOD:
        return float(contrast.blood_t1_post_ms)
    d_r1_blood = 1.0 / contrast.blood_t1_post_ms - 1.0 / case.tissues.blood_t1_ms
    if ecv is None:
        ecv = contrast.myocardial_ecv if tissue is Tissue.MYOCARDIUM else TISSUE_ECV[tissue]
    return float(1.0 / (1.0 / native + ecv / (1.0 - case.tissues.haematocrit) * d_r1_blood))


def inversion_recovery(t1_ms: npt.ArrayLike, ti_ms: float, recovery_ms: float
                       ) -> FloatArray:
    """Longitudinal magnetisation (fraction of M0) at the readout of a segmented IR.

    The readout leaves ``Mz ~ 0``; it recovers for ``recovery_ms - ti_ms`` before the next
    inversion, then relaxes for ``ti_ms``.
    """
    t1 = np.maximum(np.asarray(t1_ms, dtype=np.float64), 1.0)
    before = 1.0 - np.exp(-max(recovery_ms - ti_ms, 1.0) / t1)
    return 1.0 - (1.0 + before) * np.exp(-ti_ms / t1)


def null_inversion_time(t1_ms: float, recovery_ms: float) -> float:
    """Inversion time (ms) that nulls a tissue of the given T1."""
    low, high = 1.0, min(recovery_ms - 1.0, 5.0 * t1_ms)
    for _ in range(60):
        mid = 0.5 * (low + high)
        if float(inversion_recovery(t1_ms, mid, recovery_ms)) < 0.0:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def sample_lge_acquisition(
    rng: np.random.Generator,
    case: HeartCase,
    *,
    heart_rate_bpm: float | None = None,
    ti_error: float | None = None,
) -> LgeAcquisition:
    """Draw the contrast state and imaging properties of one LGE stack.

    Parameters
    ----------
    rng
        Random generator.
    case
        The subject (native T1 values, haematocrit, field strength).
    heart_rate_bpm
        Drawn from 55-90 bpm if ``None``.
    ti_error
        Relative TI error; drawn if ``None`` (mostly within +-6 %, about one stack in
        four clearly off so that remote myocardium is grey).
    """
    field_t = check_field_strength(case.field_strength_t)
    contrast = ContrastState.sample(rng, case.tissues.diffuse_rise_ms)
    if field_t == 3.0:  # lower relaxivity and longer native T1 at 3 T
        contrast = ContrastState(contrast.blood_t1_post_ms * 1.12, contrast.myocardial_ecv,
                                 contrast.lesion_ecv, contrast.agent)
    hr = float(rng.uniform(55.0, 90.0)) if heart_rate_bpm is None else float(heart_rate_bpm)
    beats = 2 if hr > 70.0 or rng.random() < 0.5 else 1
    rr = 60000.0 / hr
    remote = post_contrast_t1(case, contrast, Tissue.MYOCARDIUM)
    ti_null = null_inversion_time(remote, beats * rr)
    if ti_error is None:
        if rng.random() < 0.25:
            error = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.08, 0.18))
        else:
            error = float(rng.normal(0.0, 0.03))
    else:
        error = float(ti_error)
    ti = round(ti_null * (1.0 + error))
    read_mm = float(rng.uniform(1.3, 1.8))
    phase_mm = float(rng.uniform(1.6, 2.4))
    return LgeAcquisition(
        contrast=contrast,
        heart_rate_bpm=hr,
        beats_per_inversion=beats,
        trigger_time_ms=float(round(rr * float(rng.uniform(0.55, 0.75)))),
        ti_null_ms=float(ti_null),
        inversion_time_ms=float(ti),
        ti_error=float(ti / ti_null - 1.0),
        blood_snr=float(rng.uniform(14.0, 40.0)),
        intensity_scale=float(rng.uniform(1000.0, 2200.0)),
        acquired_resolution_mm=(phase_mm, read_mm),
        motion_blur_mm=float(rng.choice([0.0, rng.uniform(0.5, 3.5)], p=[0.45, 0.55])),
        motion_angle_rad=float(rng.uniform(0.0, np.pi)),
        bias_amplitude=float(rng.uniform(0.1, 0.45)),
        ghost_amplitude=float(rng.uniform(0.01, 0.06)) if rng.random() < 0.4 else 0.0,
    )


# --------------------------------------------------------------------------------------------
# Slices
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LgeSlice:
    """One synthetic short-axis LGE image with exact labels and truth values.

    Attributes
    ----------
    image
        float32 (rows, cols): the requested reconstruction (``contrast``) in scanner-like
        intensity units (magnitude ~0-1000 and non-negative; PSIR signed, remote myocardium
        near 0).  Vendor offsets (Siemens' 4096) are added only when writing DICOM.
    labels
        uint8 :class:`plugins.api.Label` values: 0 background, 1 LV blood pool (with
        papillary muscles), 2 non-scarred LV myocardium, 3 RV blood pool, 4 scar,
        5 microvascular obstruction.  Labels 2, 4 and 5 together are the myocardium of the
        subject's T1 maps and cine at the same level.
    pixel_spacing
        (row, col) spacing in mm.
    level
        ``"basal"``, ``"mid"`` or ``"apical"`` (from the long-axis position).
    truth
        Per-slice truth: ``scar_area_mm2`` (labels 4 and 5), ``mvo_area_mm2``,
        ``myocardium_area_mm2`` (labels 2, 4, 5), ``scar_fraction`` (of that area),
        ``scar_area_exact_mm2`` / ``mvo_area_exact_mm2`` (partial-volume sums),
        ``lv_blood_area_mm2``, ``rv_blood_area_mm2``, ``long_axis_position``, the contrast
        (``inversion_time_ms``, ``ti_null_ms``, ``ti_error``, ``trigger_time_ms``,
        post-contrast T1s), mean image values per label and ``noise_sd``, and
        ``scar_area_mm2_segment_N`` for AHA segments holding scar.
    contrast
        Which reconstruction ``image`` is.
    magnitude, psir
        Both reconstructions of the same acquisition (same noise).
    aha_segments
        uint8 (rows, cols): AHA segment (1-16) of every myocardial pixel (labels 2, 4, 5),
        0 elsewhere.
    position
        Long-axis position ``s``.
    centre_shift_mm
        Shift of the anatomy in the image (x, y) used to render this slice.
    rendered, scar
        Partial-volume fractions of structures and scar.
    heart
        The subject (with its scar).
    acquisition
        The stack's contrast state and imaging properties.
    """

    image: F32
    labels: npt.NDArray[np.uint8]
    pixel_spacing: tuple[float, float]
    level: str
    truth: dict[str, float]
    contrast: Contrast
    magnitude: F32
    psir: F32
    aha_segments: npt.NDArray[np.uint8]
    position: float
    centre_shift_mm: tuple[float, float]
    rendered: RenderedSlice
    scar: ScarFractions
    heart: HeartCase
    acquisition: LgeAcquisition

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))

    @property
    def field_strength_t(self) -> float:
        """Field strength the phantom simulates."""
        return float(self.heart.field_strength_t)


def level_name(position: float) -> str:
    """AHA level (basal, mid, apical) of a long-axis position."""
    if position < BASAL_END:
        return "basal"
    return "mid" if position < MID_END else "apical"


def stack_positions(n_slices: int, s_range: tuple[float, float] = STACK_RANGE) -> list[float]:
    """Evenly spaced long-axis positions of an ``n_slices`` stack, base to apex."""
    if n_slices < 1:
        raise ValueError(f"An LGE stack needs at least one slice, got {n_slices}")
    if n_slices == 1:
        return [0.5 * (s_range[0] + s_range[1])]
    step = (s_range[1] - s_range[0]) / (n_slices - 1)
    return [s_range[0] + k * step for k in range(n_slices)]


def _pixel_polar(rendered: RenderedSlice, case: HeartCase) -> F32:
    rows, cols = rendered.labels.shape
    dy, dx = rendered.pixel_spacing
    r0, c0 = rendered.lv_centre_px
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x = (xx - c0) * dx
    y = (yy - r0) * dy
    c, s = math.cos(case.rotation_rad), math.sin(case.rotation_rad)
    return np.arctan2(-s * x + c * y, c * x + s * y).astype(np.float32)


def aha_segment_map(rendered: RenderedSlice, case: HeartCase,
                    labels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """AHA 16-segment index of each myocardial pixel (0 outside the myocardium).

    The convention of the analysis (:func:`plugins.lib.cardiac.aha.segment_map`, Cerqueira MD
    et al., Circulation 2002;105:539).  Basal (1-6) and mid (7-12) levels: six 60-degree
    sectors, the first starting at the anterior RV insertion point and running across the
    septum (anteroseptal, inferoseptal, inferior, inferolateral, anterolateral, anterior).
    Apical level (13-16): quarters centred on the septum (anterior, septal, inferior,
    lateral).
    """
    s = rendered.position
    theta = _pixel_polar(rendered, case).astype(np.float64)
    anterior, inferior = rv_insertion_angles(case, s)
    free = (inferior - anterior) % (2.0 * np.pi)
    septal = 2.0 * np.pi - free
    out = np.zeros(labels.shape, dtype=np.uint8)
    myo = np.isin(labels, (Label.MYOCARDIUM, Label.SCAR, Label.MVO))
    if s < MID_END:
        base = 0 if s < BASAL_END else 6
        # The free wall lies at increasing angles from the anterior insertion point, so
        # the septum at decreasing ones.
        across_septum = (anterior - theta) % (2.0 * np.pi)
        sector = np.minimum((across_septum // (np.pi / 3.0)).astype(int), 5)
        segment = np.array([2, 3, 4, 5, 6, 1])[sector] + base
    else:
        septum_centre = inferior + septal / 2.0
        rel = (theta - septum_centre + np.pi / 4.0) % (2.0 * np.pi)
        quarter = np.minimum((rel / (np.pi / 2.0)).astype(int), 3)
        # From the septum towards increasing angle: septal, anterior, lateral, inferior.
        segment = np.array([14, 13, 16, 15])[quarter]
    out[myo] = segment[myo].astype(np.uint8)
    return out


def _line_kernel(length_px: float, angle_rad: float) -> F32:
    n = max(math.ceil(length_px) * 2 + 1, 3)
    kernel = np.zeros((n, n), dtype=np.float32)
    c = n // 2
    for t in np.linspace(-0.5, 0.5, 4 * n):
        kernel[round(c + t * length_px * math.sin(angle_rad)),
               round(c + t * length_px * math.cos(angle_rad))] += 1.0
    return kernel / kernel.sum()


def _texture(rng: np.random.Generator, shape: tuple[int, int],
             spacing: tuple[float, float], scale_mm: float) -> F32:
    """Smooth zero-mean unit-SD random field of a given correlation length."""
    sigma = (scale_mm / spacing[0], scale_mm / spacing[1])
    part = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (part / (float(part.std()) or 1.0)).astype(np.float32)


@dataclass(frozen=True)
class _Component:
    fraction: F32
    t1_ms: F32 | float
    proton_density: float
    texture: float


def _components(case: HeartCase, rendered: RenderedSlice, scar: ScarFractions,
                acq: LgeAcquisition) -> list[_Component]:
    """Partial-volume components of a slice with their post-contrast T1."""
    contrast = acq.contrast
    out: list[_Component] = []
    lv_myo = (Structure.LV_MYOCARDIUM, Structure.LV_LESION)
    for structure in Structure:
        if structure in lv_myo:
            continue
        frac = rendered.fractions[int(structure)]
        if not frac.any():
            continue
        tissue = STRUCTURE_TISSUE[structure]
        texture = {Tissue.BLOOD: 0.04, Tissue.FAT: 0.05, Tissue.LIVER: 0.04,
                   Tissue.LUNG: 0.3, Tissue.SKELETAL_MUSCLE: 0.05}.get(tissue, 0.02)
        out.append(_Component(frac, post_contrast_t1(case, contrast, tissue),
                              PROTON_DENSITY[tissue], texture))
    myo_total = rendered.fraction(*lv_myo)
    remote = np.clip(myo_total - scar.scar, 0.0, None).astype(np.float32)
    pd_myo = PROTON_DENSITY[Tissue.MYOCARDIUM]
    out.append(_Component(remote, post_contrast_t1(case, contrast, Tissue.MYOCARDIUM),
                          pd_myo, 0.02))
    enhancing = np.clip(scar.scar - scar.mvo, 0.0, None).astype(np.float32)
    if enhancing.any():
        native = case.tissues.myocardium_t1_ms
        hct = case.tissues.haematocrit
        d_r1 = 1.0 / contrast.blood_t1_post_ms - 1.0 / case.tissues.blood_t1_ms
        ecv = np.where(scar.scar_ecv > 0, scar.scar_ecv, contrast.myocardial_ecv)
        t1_scar = (1.0 / (1.0 / native + ecv / (1.0 - hct) * d_r1)).astype(np.float32)
        out.append(_Component(enhancing, t1_scar, pd_myo, 0.06))
    if scar.mvo.any() and case.scar is not None:
        mvo_ecv = float(np.mean([r.mvo_ecv for r in case.scar.regions if r.mvo is not None]
                                or [0.1]))
        out.append(_Component(scar.mvo, post_contrast_t1(case, contrast, Tissue.MYOCARDIUM,
                                                         mvo_ecv), pd_myo, 0.04))
    return out


def _coil_bias(rng: np.random.Generator, shape: tuple[int, int], amplitude: float,
               centre_px: tuple[float, float]) -> F32:
    """Receive-coil intensity: anterior and posterior arrays, brighter near the chest wall."""
    rows, cols = shape
    y = (np.arange(rows, dtype=np.float32) - centre_px[0]) / (rows / 2.0)
    profile = 1.0 + amplitude * 1.5 * (y[:, None] ** 2) * np.where(y[:, None] < 0, 1.0, 0.6)
    field_ = (1.0 + amplitude * smooth_field(rng, shape, order=3)) * profile
    field_ = np.clip(field_, 0.3, None)
    r0, c0 = round(centre_px[0]), round(centre_px[1])
    ref = float(field_[np.clip(r0, 0, rows - 1), np.clip(c0, 0, cols - 1)]) or 1.0
    return (field_ / ref).astype(np.float32)


def _signal(rng: np.random.Generator, components: Sequence[_Component],
            acq: LgeAcquisition, shape: tuple[int, int], spacing: tuple[float, float],
            ti_ms: float, recovery_ms: float) -> F32:
    """Noise-free signed IR signal (relative to M0 x PD) summed over components."""
    texture = _texture(rng, shape, spacing, 4.0)
    signal = np.zeros(shape, dtype=np.float32)
    for comp in components:
        mz = inversion_recovery(comp.t1_ms, ti_ms, recovery_ms).astype(np.float32)
        weight = comp.proton_density * (1.0 + comp.texture * texture)
        signal += comp.fraction * weight * mz
    return signal


def _reconstruct(
    rng: np.random.Generator, signal: F32, acq: LgeAcquisition, spacing: tuple[float, float],
    centre_px: tuple[float, float], blood_signal: float,
) -> tuple[F32, F32, float]:
    """(magnitude, PSIR, noise SD) from a noise-free signed signal, in stored units."""
    shape = signal.shape
    image = signal.astype(np.float32)
    length_px = acq.motion_blur_mm / min(spacing)
    if length_px >= 0.5:
        image = ndimage.convolve(image, _line_kernel(length_px, acq.motion_angle_rad),
                                 mode="nearest")
    if acq.ghost_amplitude > 0:
        axis = 0 if acq.acquired_resolution_mm[0] >= acq.acquired_resolution_mm[1] else 1
        shift = shape[axis] // int(rng.integers(3, 7))
        image = image + acq.ghost_amplitude * np.roll(image, shift, axis=axis)
    fraction = (min(1.0, spacing[0] / acq.acquired_resolution_mm[0]),
                min(1.0, spacing[1] / acq.acquired_resolution_mm[1]))
    window = kspace_window(shape, fraction)
    image = lowpass(image, window)
    scale = acq.intensity_scale
    bias = _coil_bias(rng, shape, acq.bias_amplitude, centre_px)
    sigma = scale * abs(blood_signal) / acq.blood_snr
    noise = []
    for _ in range(2):
        white = lowpass(rng.standard_normal(shape).astype(np.float32), window)
        noise.append(white / (float(white.std()) or 1.0))
    real = image * bias * scale + sigma * noise[0]
    magnitude = np.clip(np.hypot(real, sigma * noise[1]), 0.0, MAX_STORED)
    psir = np.clip(real, -MAX_STORED, MAX_STORED)
    return magnitude.astype(np.float32), psir.astype(np.float32), float(sigma)


def _labels(rendered: RenderedSlice, scar: ScarFractions) -> npt.NDArray[np.uint8]:
    """Render labels with myocardial pixels relabelled scar / MVO where scar dominates."""
    labels = rendered.labels.copy()
    myo = labels == Label.MYOCARDIUM
    total = np.maximum(rendered.fraction(Structure.LV_MYOCARDIUM, Structure.LV_LESION), 1e-6)
    scar_share = scar.scar / total
    mvo_share = scar.mvo / total
    is_scar = myo & (scar_share >= 0.5)
    labels[is_scar] = Label.SCAR
    labels[is_scar & (mvo_share >= 0.5 * scar_share)] = Label.MVO
    return labels


def _mean(image: F32, mask: npt.NDArray[np.bool_]) -> float:
    return float(image[mask].mean()) if mask.any() else 0.0


def _truth(image_mag: F32, image_psir: F32, labels: npt.NDArray[np.uint8],
           segments: npt.NDArray[np.uint8], rendered: RenderedSlice, scar: ScarFractions,
           case: HeartCase, acq: LgeAcquisition, noise_sd: float) -> dict[str, float]:
    area = rendered.pixel_spacing[0] * rendered.pixel_spacing[1]
    myo = np.isin(labels, (Label.MYOCARDIUM, Label.SCAR, Label.MVO))
    scar_px = np.isin(labels, (Label.SCAR, Label.MVO))
    mvo_px = labels == Label.MVO
    contrast = acq.contrast
    truth: dict[str, float] = {
        "scar_area_mm2": float(scar_px.sum() * area),
        "mvo_area_mm2": float(mvo_px.sum() * area),
        "myocardium_area_mm2": float(myo.sum() * area),
        "scar_fraction": float(scar_px.sum() / myo.sum()) if myo.any() else 0.0,
        "scar_area_exact_mm2": float(scar.scar.sum() * area),
        "mvo_area_exact_mm2": float(scar.mvo.sum() * area),
        "myocardium_area_exact_mm2": float(scar.myocardium.sum() * area),
        "lv_blood_area_mm2": float((labels == Label.LV_BLOOD_POOL).sum() * area),
        "rv_blood_area_mm2": float((labels == Label.RV_BLOOD_POOL).sum() * area),
        "long_axis_position": float(rendered.position),
        "field_strength_t": float(case.field_strength_t),
        "inversion_time_ms": float(acq.inversion_time_ms),
        "ti_null_ms": float(acq.ti_null_ms),
        "ti_error": float(acq.ti_error),
        "trigger_time_ms": float(acq.trigger_time_ms),
        "blood_t1_post_ms": float(contrast.blood_t1_post_ms),
        "myocardium_t1_post_ms": post_contrast_t1(case, contrast, Tissue.MYOCARDIUM),
        "myocardial_ecv": float(contrast.myocardial_ecv),
        "noise_sd": float(noise_sd),
    }
    for name, image in (("magnitude", image_mag), ("psir", image_psir)):
        truth[f"{name}_remote_mean"] = _mean(image, labels == Label.MYOCARDIUM)
        truth[f"{name}_blood_mean"] = _mean(image, labels == Label.LV_BLOOD_POOL)
        truth[f"{name}_scar_mean"] = _mean(image, labels == Label.SCAR)
        truth[f"{name}_mvo_mean"] = _mean(image, mvo_px)
    if scar_px.any():
        ecv = float(scar.scar_ecv[scar_px & (scar.scar_ecv > 0)].mean()) if (
            scar_px & (scar.scar_ecv > 0)).any() else 0.0
        truth["scar_ecv"] = ecv
        for seg in np.unique(segments[scar_px]):
            if seg:
                truth[f"scar_area_mm2_segment_{int(seg)}"] = float(
                    (scar_px & (segments == seg)).sum() * area)
    return truth


def _geometry(rng: np.random.Generator, shape: tuple[int, int] | None,
              pixel_spacing: tuple[float, float] | None
              ) -> tuple[tuple[int, int], tuple[float, float]]:
    if shape is None:
        shape = LGE_MATRICES[int(rng.integers(len(LGE_MATRICES)))]
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 32 or cols < 32:
        raise ValueError(f"Image matrix {rows}x{cols} is too small for an LGE slice")
    if pixel_spacing is None:
        step = float(np.clip(float(rng.uniform(300.0, 380.0)) / max(rows, cols), 0.6, 2.2))
        pixel_spacing = (round(step, 5), round(step, 5))
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if min(spacing) <= 0:
        raise ValueError(f"Pixel spacing must be positive, got {pixel_spacing}")
    return (rows, cols), spacing


def make_lge_slice(
    rng: np.random.Generator,
    heart: HeartCase,
    *,
    level: str | float = "mid",
    contrast: Contrast | str = Contrast.PSIR,
    shape: tuple[int, int] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    acquisition: LgeAcquisition | None = None,
    centre_shift_mm: tuple[float, float] | None = None,
) -> LgeSlice:
    """Make one synthetic short-axis LGE image of a subject.

    Parameters
    ----------
    rng
        Random generator; the same state gives the same slice.
    heart
        The subject; its :attr:`~models.phantoms.heart_geometry.HeartCase.scar` is imaged (none:
        no enhancement).  Give it a scar with :func:`sample_scar` and
        ``heart.with_scar(...)``.
    level
        ``"basal"``, ``"mid"``, ``"apical"`` (the case's T1-map levels) or a long-axis
        position in [0, 1).
    contrast
        ``"psir"`` or ``"magnitude"``: which reconstruction ``image`` holds (both are
        always computed).
    shape, pixel_spacing
        (rows, cols) and (row, col) spacing in mm; drawn from clinical LGE protocols if
        ``None``.
    acquisition
        Contrast state and imaging properties; drawn if ``None`` (pass one to share it
        between the slices of a stack).
    centre_shift_mm
        Shift of the anatomy in the image; chosen to keep the heart in view if ``None``.

    Returns
    -------
    LgeSlice
        Images, labels, AHA segments and truth.

    Raises
    ------
    ValueError
        For an unknown level or contrast, or a too small matrix.
    """
    try:
        chosen = Contrast(str(contrast).lower())
    except ValueError as exc:
        raise ValueError(f"Unknown LGE contrast {contrast!r}; expected 'psir' or "
                         "'magnitude'") from exc
    (rows, cols), spacing = _geometry(rng, shape, pixel_spacing)
    acq = acquisition or sample_lge_acquisition(rng, heart)
    shift = centre_shift_mm if centre_shift_mm is not None else _fit_heart_in_view(
        heart, (rows, cols), spacing)
    shift = (float(shift[0]), float(shift[1]))
    position = heart.position(level)
    name = level if isinstance(level, str) else level_name(position)
    rendered = render_slice(heart, position, (rows, cols), spacing, centre_shift_mm=shift)
    scar = render_scar(heart, position, (rows, cols), spacing, centre_shift_mm=shift)
    components = _components(heart, rendered, scar, acq)
    signal = _signal(rng, components, acq, (rows, cols), spacing, acq.inversion_time_ms,
                     acq.recovery_ms)
    blood = float(PROTON_DENSITY[Tissue.BLOOD] * inversion_recovery(
        acq.contrast.blood_t1_post_ms, acq.inversion_time_ms, acq.recovery_ms))
    magnitude, psir, sigma = _reconstruct(rng, signal, acq, spacing, rendered.lv_centre_px,
                                          blood)
    labels = _labels(rendered, scar)
    segments = aha_segment_map(rendered, heart, labels)
    truth = _truth(magnitude, psir, labels, segments, rendered, scar, heart, acq, sigma)
    logger.debug("LGE slice s=%.2f: scar %.0f mm2, TI %.0f ms (null %.0f)", position,
                 truth["scar_area_mm2"], acq.inversion_time_ms, acq.ti_null_ms)
    return LgeSlice(
        image=psir if chosen is Contrast.PSIR else magnitude,
        labels=labels,
        pixel_spacing=spacing,
        level=name,
        truth=truth,
        contrast=chosen,
        magnitude=magnitude,
        psir=psir,
        aha_segments=segments,
        position=float(position),
        centre_shift_mm=shift,
        rendered=rendered,
        scar=scar,
        heart=heart,
        acquisition=acq,
    )


def make_lge_stack(
    rng: np.random.Generator,
    *,
    n_slices: int = 10,
    field_strength_t: float = 1.5,
    scar_pattern: ScarPattern | str | None = None,
    heart: HeartCase | None = None,
    contrast: Contrast | str = Contrast.PSIR,
    shape: tuple[int, int] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    acquisition: LgeAcquisition | None = None,
    s_range: tuple[float, float] = STACK_RANGE,
) -> tuple[HeartCase, list[LgeSlice]]:
    """Make a short-axis LGE stack of one subject, base to apex.

    Parameters
    ----------
    rng
        Random generator.
    n_slices
        Number of slices, evenly spread over ``s_range`` of the long axis.
    field_strength_t
        1.5 or 3 (tesla); ignored when ``heart`` is given (its own field is used).
    scar_pattern
        Scar to give the subject.  ``None``: keep the scar of a given ``heart``, or draw a
        random pattern (possibly none).  A pattern (``"none"`` included) replaces any scar.
    heart
        The subject (e.g. the case of a T1-map stack); a new one suited to the pattern is
        drawn if ``None``.
    contrast, shape, pixel_spacing, acquisition
        As for :func:`make_lge_slice`; shared by all slices.
    s_range
        Long-axis positions of the first and last slice.

    Returns
    -------
    tuple of HeartCase and list of LgeSlice
        The subject (with its scar) and the slices.  :func:`lge_case_truth` summarises the
        stack (per cent scar of the LV myocardium).
    """
    pattern = None if scar_pattern is None else ScarPattern(str(scar_pattern))
    if heart is None:
        field_t = check_field_strength(field_strength_t)
        if pattern is None:
            pattern = draw_scar_pattern(rng)
        case = _heart_for_pattern(rng, field_t, pattern)
        case = case.with_scar(sample_scar(rng, case, pattern))
    elif pattern is not None:
        case = heart.with_scar(sample_scar(rng, heart, pattern))
    else:
        case = heart
    (rows, cols), spacing = _geometry(rng, shape, pixel_spacing)
    acq = acquisition or sample_lge_acquisition(rng, case)
    shift = _fit_heart_in_view(case, (rows, cols), spacing)
    slices = [
        make_lge_slice(rng, case, level=position, contrast=contrast, shape=(rows, cols),
                       pixel_spacing=spacing, acquisition=acq, centre_shift_mm=shift)
        for position in stack_positions(n_slices, s_range)
    ]
    return case, slices


def lge_case_truth(slices: Sequence[LgeSlice]) -> dict[str, float | str]:
    """Per-case truth of an LGE stack.

    Returns
    -------
    dict
        ``scar_percent`` (scar, MVO included, as per cent of the LV myocardial volume of
        the stack's slices, from the labels), ``mvo_percent``, ``scar_percent_exact``
        (from partial-volume fractions), ``scar_volume_ml`` and ``myocardium_volume_ml``
        (slice areas times the slice spacing, assumed 10 mm), ``n_scar_slices``,
        ``scar_pattern``, ``ti_error``, ``inversion_time_ms`` and ``field_strength_t``.
    """
    if not slices:
        raise ValueError("No LGE slices to summarise")
    scar = sum(s.truth["scar_area_mm2"] for s in slices)
    mvo = sum(s.truth["mvo_area_mm2"] for s in slices)
    myo = sum(s.truth["myocardium_area_mm2"] for s in slices)
    scar_exact = sum(s.truth["scar_area_exact_mm2"] for s in slices)
    myo_exact = sum(s.truth["myocardium_area_exact_mm2"] for s in slices)
    case = slices[0].heart
    return {
        "scar_percent": 100.0 * scar / myo if myo else 0.0,
        "mvo_percent": 100.0 * mvo / myo if myo else 0.0,
        "scar_percent_exact": 100.0 * scar_exact / myo_exact if myo_exact else 0.0,
        "scar_volume_ml": scar * 10.0 / 1000.0,
        "myocardium_volume_ml": myo * 10.0 / 1000.0,
        "n_scar_slices": float(sum(1 for s in slices if s.truth["scar_area_mm2"] > 0)),
        "scar_pattern": case.scar.pattern if case.scar is not None else ScarPattern.NONE.value,
        "ti_error": float(slices[0].acquisition.ti_error),
        "inversion_time_ms": float(slices[0].acquisition.inversion_time_ms),
        "field_strength_t": float(case.field_strength_t),
    }


# --------------------------------------------------------------------------------------------
# TI scout
# --------------------------------------------------------------------------------------------


def make_ti_scout(
    rng: np.random.Generator,
    lge_slice: LgeSlice,
    inversion_times_ms: Sequence[float] | None = None,
    *,
    look_locker_factor: float = 1.35,
) -> tuple[F32, FloatArray]:
    """Magnitude TI-scout (Look-Locker) images of an LGE slice's anatomy.

    After one inversion the readout samples the recovery continuously, so every tissue
    relaxes with a shortened apparent ``T1* = T1 / look_locker_factor`` towards
    ``M0 / look_locker_factor``.

    Parameters
    ----------
    rng
        Random generator.
    lge_slice
        The slice whose anatomy and contrast state are imaged.
    inversion_times_ms
        TIs; 24 values from ~100 ms in steps of ~1/22 RR if ``None``.
    look_locker_factor
        Ratio of true to apparent T1.

    Returns
    -------
    images, inversion_times_ms
        float32 (n, rows, cols) magnitudes in stored units and the TIs.
    """
    acq = lge_slice.acquisition
    if inversion_times_ms is None:
        step = round(acq.rr_ms / 22.0)
        tis = 100.0 + step * np.arange(24, dtype=np.float64)
    else:
        tis = np.asarray(inversion_times_ms, dtype=np.float64)
    if tis.ndim != 1 or tis.size == 0 or float(tis.min()) <= 0:
        raise ValueError("Inversion times must be a non-empty list of positive values")
    components = _components(lge_slice.heart, lge_slice.rendered, lge_slice.scar, acq)
    shape = lge_slice.shape
    spacing = lge_slice.pixel_spacing
    texture = _texture(rng, shape, spacing, 4.0)
    bias = _coil_bias(rng, shape, acq.bias_amplitude, lge_slice.rendered.lv_centre_px)
    fraction = (min(1.0, spacing[0] / 2.2), min(1.0, spacing[1] / 2.0))
    window = kspace_window(shape, fraction)
    scale = acq.intensity_scale
    sigma = scale * PROTON_DENSITY[Tissue.BLOOD] / look_locker_factor / 45.0
    images = np.zeros((tis.size, *shape), dtype=np.float32)
    for index, ti in enumerate(tis):
        signal = np.zeros(shape, dtype=np.float32)
        for comp in components:
            t1 = np.maximum(np.asarray(comp.t1_ms, dtype=np.float64), 1.0)
            t1_star = t1 / look_locker_factor
            mz = (1.0 - (1.0 + look_locker_factor) * np.exp(-ti / t1_star)) / look_locker_factor
            signal += (comp.fraction * comp.proton_density * (1.0 + comp.texture * texture)
                       * mz).astype(np.float32)
        image = lowpass(signal, window) * bias * scale
        noise = rng.normal(0.0, sigma, size=(2, *shape))
        images[index] = np.clip(np.hypot(image + noise[0], noise[1]), 0.0, MAX_STORED)
    return images, tis
