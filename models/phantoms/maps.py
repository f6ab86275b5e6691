"""Other parametric maps of a phantom slice: T2, post-contrast T1 and ECV.

They share the slice's anatomy (partial-volume fractions) so that a study holds
consistent native T1, T2, post-contrast T1 and ECV series of the same subject.

Sources:

* Myocardial T2 (T2-prepared bSSFP mapping): Wassmuth R et al., "Variability and
  homogeneity of cardiovascular magnetic resonance myocardial T2-mapping in volunteers
  compared to patients with edema", J Cardiovasc Magn Reson 2013;15:27 — ~52 ms at 1.5 T;
  von Knobelsdorff-Brenkenhoff F et al., JCMR 2013;15:53 — ~45 ms at 3 T.
* Post-contrast T1 and ECV: ECV = (1 - Hct) ΔR1_myo / ΔR1_blood (Moon JC et al.,
  "Myocardial T1 mapping and extracellular volume quantification: a Society for
  Cardiovascular Magnetic Resonance (SCMR) and CMR Working Group of the European Society
  of Cardiology consensus statement", JCMR 2013;15:92); healthy myocardial ECV 0.25 ± 0.04
  (Dabir D et al., JCMR 2014;16:69).  Blood T1 15–20 min after 0.1–0.2 mmol/kg of a
  gadolinium agent lies around 250–400 ms.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import STRUCTURE_TISSUE, Structure
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.heart_rendering import RenderedSlice
from models.phantoms.t1map import PhantomSlice
from models.phantoms.t1map_synthesis import kspace_window, lowpass
from models.phantoms.tissues import PROTON_DENSITY, Tissue, check_field_strength

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

T2_MAP_MS: Mapping[float, Mapping[Tissue, float]] = {
    1.5: {
        Tissue.MYOCARDIUM: 52.0, Tissue.BLOOD: 220.0, Tissue.LIVER: 34.0, Tissue.SPLEEN: 60.0,
        Tissue.FAT: 60.0, Tissue.SKELETAL_MUSCLE: 32.0, Tissue.BONE_MARROW: 50.0,
        Tissue.FLUID: 600.0, Tissue.LUNG: 40.0, Tissue.AIR: 0.0,
    },
    3.0: {
        Tissue.MYOCARDIUM: 45.0, Tissue.BLOOD: 180.0, Tissue.LIVER: 30.0, Tissue.SPLEEN: 55.0,
        Tissue.FAT: 55.0, Tissue.SKELETAL_MUSCLE: 29.0, Tissue.BONE_MARROW: 45.0,
        Tissue.FLUID: 500.0, Tissue.LUNG: 35.0, Tissue.AIR: 0.0,
    },
}
"""T2 (ms) as T2-prepared bSSFP maps show it, per field strength."""

LESION_T2_RISE_MS = 12.0
"""Rise of T2 in a focal lesion (oedema) over remote myocardium."""

TISSUE_ECV: Mapping[Tissue, float] = {
    Tissue.MYOCARDIUM: 0.25, Tissue.LIVER: 0.28, Tissue.SPLEEN: 0.35, Tissue.FAT: 0.06,
    Tissue.SKELETAL_MUSCLE: 0.12, Tissue.BONE_MARROW: 0.1, Tissue.FLUID: 0.0, Tissue.LUNG: 0.3,
    Tissue.AIR: 0.0,
}
"""Extracellular volume fraction of each tissue (blood is 1 - haematocrit)."""


@dataclass(frozen=True)
class ContrastState:
    """Contrast-agent state of a post-contrast acquisition.

    Attributes
    ----------
    blood_t1_post_ms
        Blood T1 after contrast.
    myocardial_ecv
        Remote myocardial ECV (fraction).
    lesion_ecv
        ECV of focal lesions (fraction).
    agent
        Contrast agent name (ContrastBolusAgent).
    """

    blood_t1_post_ms: float
    myocardial_ecv: float
    lesion_ecv: float
    agent: str = "Gadobutrol"

    @classmethod
    def sample(cls, rng: np.random.Generator, diffuse_rise_ms: float = 0.0) -> ContrastState:
        """Typical state 15–20 min after a gadolinium bolus (diffuse disease raises ECV)."""
        ecv = float(np.clip(rng.normal(0.25, 0.025), 0.19, 0.31)) + diffuse_rise_ms / 1000.0
        return cls(
            blood_t1_post_ms=float(rng.uniform(250.0, 400.0)),
            myocardial_ecv=ecv,
            lesion_ecv=float(rng.uniform(0.4, 0.65)),
        )


def _mix(
    phantom: PhantomSlice, value: Mapping[Structure, float | F32]
) -> tuple[F32, F32]:
    """Signal-weighted partial-volume mixture of per-structure values, and the signal map."""
    rendered, _ = _anatomy(phantom)
    weighted = np.zeros(phantom.shape, dtype=np.float32)
    signal = np.zeros_like(weighted)
    for structure in Structure:
        frac = rendered.fractions[int(structure)]
        if not frac.any():
            continue
        weight = frac * PROTON_DENSITY[STRUCTURE_TISSUE[structure]]
        weighted += weight * value[structure]
        signal += weight
    mixed = np.where(signal > 1e-6, weighted / np.maximum(signal, 1e-6), 0.0)
    return mixed.astype(np.float32), signal


def _finish(
    rng: np.random.Generator, clean: F32, signal: F32, noise_sd: float, reference: float,
    maximum: float,
) -> F32:
    """Blur to acquired resolution, add noise growing with value and low signal, mask air."""
    window = kspace_window(clean.shape, (0.65, 0.8))
    image = lowpass(clean, window)
    white = lowpass(rng.standard_normal(clean.shape).astype(np.float32), window)
    white /= float(white.std()) or 1.0
    rel = np.maximum(signal / PROTON_DENSITY[Tissue.MYOCARDIUM], 0.05)
    sd = noise_sd * np.clip(image / reference, 0.2, 5.0) / np.sqrt(rel)
    noisy = np.where(signal < 0.2 * PROTON_DENSITY[Tissue.MYOCARDIUM], 0.0, image + sd * white)
    return np.clip(noisy, 0.0, maximum).astype(np.float32)


def _anatomy(phantom: PhantomSlice) -> tuple[RenderedSlice, HeartCase]:
    """The slice's rendered anatomy and subject, which derived maps need."""
    if phantom.rendered is None or phantom.heart is None:
        raise ValueError("The phantom slice carries no anatomy; make it with make_t1map_slice")
    return phantom.rendered, phantom.heart


def t2_map(rng: np.random.Generator, phantom: PhantomSlice) -> F32:
    """T2 map (ms) of the slice's anatomy, with noise, as a T2-prepared bSSFP map shows it."""
    rendered, _ = _anatomy(phantom)
    table = T2_MAP_MS[check_field_strength(phantom.field_strength_t)]
    scale = float(rng.normal(1.0, 0.04))
    values: dict[Structure, float | F32] = {
        s: table[STRUCTURE_TISSUE[s]] * scale for s in Structure
    }
    lesion = rendered.lesion_rise_ms > 0
    values[Structure.LV_LESION] = np.where(
        lesion, table[Tissue.MYOCARDIUM] * scale + LESION_T2_RISE_MS,
        table[Tissue.MYOCARDIUM] * scale).astype(np.float32)
    clean, signal = _mix(phantom, values)
    return _finish(rng, clean, signal, 2.5, table[Tissue.MYOCARDIUM], 1000.0)


def _post_t1_values(phantom: PhantomSlice, state: ContrastState) -> dict[Structure, float]:
    _, case = _anatomy(phantom)
    tissues = case.tissues
    hct = tissues.haematocrit
    d_r1_blood = 1.0 / state.blood_t1_post_ms - 1.0 / tissues.blood_t1_ms
    values: dict[Structure, float] = {}
    for structure in Structure:
        tissue = STRUCTURE_TISSUE[structure]
        pre = tissues.native_t1_ms.get(tissue, 0.0)
        if tissue is Tissue.AIR or pre <= 0:
            values[structure] = 0.0
            continue
        if tissue is Tissue.BLOOD:
            values[structure] = state.blood_t1_post_ms
            continue
        ecv = state.myocardial_ecv if tissue is Tissue.MYOCARDIUM else TISSUE_ECV[tissue]
        if structure is Structure.LV_LESION:
            ecv = state.lesion_ecv
        values[structure] = 1.0 / (1.0 / pre + ecv / (1.0 - hct) * d_r1_blood)
    return values


def postcontrast_t1_map(
    rng: np.random.Generator, phantom: PhantomSlice, state: ContrastState
) -> tuple[F32, dict[str, float]]:
    """Post-contrast MOLLI T1 map (ms) of the slice, and its truth values.

    Lesion pixels get the lesion ECV; native T1 of each tissue comes from the subject.
    """
    post = _post_t1_values(phantom, state)
    values: dict[Structure, float | F32] = dict(post)
    clean, signal = _mix(phantom, values)
    myo = post[Structure.LV_MYOCARDIUM]
    image = _finish(rng, clean, signal, 12.0, myo, 4095.0)
    truth = {
        "myocardium_t1_post_true_ms": float(myo),
        "blood_t1_post_true_ms": float(state.blood_t1_post_ms),
        "myocardial_ecv_true": float(state.myocardial_ecv),
    }
    return image, truth


def ecv_map(
    rng: np.random.Generator, phantom: PhantomSlice, state: ContrastState
) -> tuple[F32, dict[str, float]]:
    """ECV map in percent of the slice, and its truth values."""
    _, case = _anatomy(phantom)
    hct = case.tissues.haematocrit
    values: dict[Structure, float | F32] = {}
    for structure in Structure:
        tissue = STRUCTURE_TISSUE[structure]
        if tissue is Tissue.BLOOD:
            ecv = 1.0 - hct
        elif tissue is Tissue.MYOCARDIUM:
            ecv = state.lesion_ecv if structure is Structure.LV_LESION else state.myocardial_ecv
        else:
            ecv = TISSUE_ECV[tissue]
        values[structure] = 100.0 * ecv
    clean, signal = _mix(phantom, values)
    image = _finish(rng, clean, signal, 1.5, 100.0 * state.myocardial_ecv, 100.0)
    return image, {"myocardial_ecv_true": float(state.myocardial_ecv), "haematocrit": hct}
