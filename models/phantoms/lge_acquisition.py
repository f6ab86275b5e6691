"""LGE acquisition and contrast: post-contrast T1, inversion recovery, the nulling TI.

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

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import FloatArray
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.maps import TISSUE_ECV, ContrastState
from models.phantoms.tissues import Tissue, check_field_strength

__all__ = ["Contrast", "LgeAcquisition", "null_inversion_time", "sample_lge_acquisition"]


class Contrast(enum.StrEnum):
    """Reconstruction of an LGE image."""

    PSIR = "psir"
    """Phase-sensitive (signed real) image."""
    MAGNITUDE = "magnitude"
    """Magnitude inversion-recovery image."""


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
