"""Image formation of LGE phantom slices: tissue components, texture, coil bias, noise, truth.

The magnitude and phase-sensitive (PSIR) images of a rendered slice are reconstructed from
its tissue components (:func:`_components`, :func:`_signal`, :func:`_reconstruct`); the
per-slice truth (labels, scar and remote signal) from the same fractions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import STRUCTURE_TISSUE, Structure
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.heart_rendering import RenderedSlice
from models.phantoms.lge_acquisition import (
    LgeAcquisition,
    inversion_recovery,
    post_contrast_t1,
)
from models.phantoms.scar_rendering import ScarFractions
from models.phantoms.t1map_synthesis import kspace_window, lowpass, smooth_field
from models.phantoms.tissues import PROTON_DENSITY, Tissue
from plugins.api import Label

F32 = npt.NDArray[np.float32]


MAX_STORED = 4095.0
"""Largest magnitude value (12-bit scanners)."""


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
