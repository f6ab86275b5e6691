"""Synthesis of a native T1 map from a rendered slice: tissue mixing, texture, artefacts, truth.

The partial-volume fractions of a rendered slice become a T1 map in milliseconds by
signal-weighted mixing of the subject's tissue T1 values; the map is then given limited
acquired resolution (k-space truncation, Gibbs ringing and interpolation), breathing/motion
blur, a smooth bias, off-resonance bands and fitting noise.  :func:`smooth_field`,
:func:`kspace_window` and :func:`lowpass` are shared with the other contrasts.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import STRUCTURE_TISSUE, Structure
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.heart_rendering import RenderedSlice
from models.phantoms.t1map_acquisition import (
    BackgroundMode,
    T1MapAcquisition,
)
from models.phantoms.tissues import PROTON_DENSITY, Tissue
from plugins.api import Label
from plugins.t1map.analysis import conservative_core

__all__ = ["pixel_angles"]


F32 = npt.NDArray[np.float32]


MAX_T1_MS = 4095.0
"""Largest value written into a synthetic map (scanners clip fits at a few seconds)."""


def _structure_t1(case: HeartCase) -> dict[Structure, float]:
    values = case.tissues.native_t1_ms
    return {s: float(values.get(t, 0.0)) for s, t in STRUCTURE_TISSUE.items()}


def pixel_angles(rendered: RenderedSlice, case: HeartCase) -> F32:
    """Heart-local polar angle of every pixel (0 lateral, pi septal; see ``anatomy``)."""
    rows, cols = rendered.labels.shape
    dy, dx = rendered.pixel_spacing
    r0, c0 = rendered.lv_centre_px
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x = (xx - c0) * dx
    y = (yy - r0) * dy
    c, s = math.cos(case.rotation_rad), math.sin(case.rotation_rad)
    return np.arctan2(-s * x + c * y, c * x + s * y).astype(np.float32)


TEXTURE_AMPLITUDE: dict[Tissue, float] = {
    Tissue.AIR: 0.0, Tissue.LUNG: 0.1, Tissue.FAT: 0.08, Tissue.SKELETAL_MUSCLE: 0.03,
    Tissue.LIVER: 0.03, Tissue.SPLEEN: 0.02, Tissue.BLOOD: 0.012, Tissue.MYOCARDIUM: 0.008,
    Tissue.BONE_MARROW: 0.06, Tissue.FLUID: 0.03,
}
"""Relative spatial T1 variation within a tissue (texture, inflow, fat/water mixture)."""


def _texture(rng: np.random.Generator, shape: tuple[int, int],
             spacing: tuple[float, float]) -> F32:
    """Smooth zero-mean unit-SD random field with 3 mm and 12 mm correlation lengths."""
    field = np.zeros(shape, dtype=np.float32)
    for scale_mm, weight in ((3.0, 0.6), (12.0, 0.8)):
        sigma = (scale_mm / spacing[0], scale_mm / spacing[1])
        part = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
        field += weight * part / (float(part.std()) or 1.0)
    return field / (float(field.std()) or 1.0)


MYOCARDIAL_STRUCTURES: Final = frozenset({
    Structure.LV_MYOCARDIUM, Structure.LV_LESION, Structure.PAPILLARY_MUSCLE,
    Structure.RV_WALL, Structure.RV_TRABECULAE,
})
"""Structures that carry the myocardial septal-lateral T1 gradient."""


def partial_volume_map(rendered: RenderedSlice, case: HeartCase, texture: F32, gradient: F32
                       ) -> tuple[F32, F32]:
    """Signal-weighted partial-volume T1 map and relative signal map of a rendered view, with
    the tissue ``texture`` and the myocardial ``gradient`` (ms) applied."""
    t1 = _structure_t1(case)
    weighted = np.zeros(rendered.labels.shape, dtype=np.float32)
    signal = np.zeros_like(weighted)
    for structure in Structure:
        frac = rendered.fractions[int(structure)]
        if not frac.any():
            continue
        tissue = STRUCTURE_TISSUE[structure]
        weight = frac * PROTON_DENSITY[tissue]
        value: F32 = t1[structure] * (1.0 + TEXTURE_AMPLITUDE[tissue] * texture)
        if structure in MYOCARDIAL_STRUCTURES:
            value = value + gradient
        if structure is Structure.LV_LESION:
            value = value + rendered.lesion_rise_ms
        weighted += weight * value
        signal += weight
    clean = np.where(signal > 1e-6, weighted / np.maximum(signal, 1e-6), 0.0)
    return clean.astype(np.float32), signal.astype(np.float32)


def _clean_map(rng: np.random.Generator, rendered: RenderedSlice, case: HeartCase
               ) -> tuple[F32, F32]:
    """Signal-weighted partial-volume T1 map and relative signal map."""
    angles = pixel_angles(rendered, case)
    texture = _texture(rng, rendered.labels.shape, rendered.pixel_spacing)
    # Septal T1 is usually slightly higher than lateral.
    gradient = (0.5 * case.tissues.septal_lateral_gradient_ms * -np.cos(angles)).astype(
        np.float32)
    return partial_volume_map(rendered, case, texture, gradient)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], order: int = 2) -> F32:
    """Random smooth field with values in about [-1, 1]."""
    rows, cols = shape
    y = np.linspace(-1.0, 1.0, rows)[:, None]
    x = np.linspace(-1.0, 1.0, cols)[None, :]
    field = np.zeros(shape)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            if i + j:
                field = field + rng.normal(0.0, 1.0 / (i + j)) * (x**i) * (y**j)
    peak = float(np.abs(field).max()) or 1.0
    return (field / peak).astype(np.float32)


def kspace_window(shape: tuple[int, int], fraction: tuple[float, float]) -> npt.NDArray[
        np.float64]:
    """Separable k-space window: acquired fraction with a raised-cosine edge, zero outside."""
    windows = []
    for n, frac in zip(shape, fraction, strict=True):
        k = np.abs(np.fft.fftfreq(n)) * 2.0  # 0 centre .. 1 edge
        edge = 0.5
        w = np.clip((frac - k) / (edge * frac), 0.0, 1.0)
        windows.append(0.5 - 0.5 * np.cos(np.pi * w))
    return np.outer(windows[0], windows[1])


def lowpass(image: npt.NDArray[np.float32], window: npt.NDArray[np.float64]) -> F32:
    """Image filtered by a k-space ``window`` (from :func:`kspace_window`)."""
    return np.real(np.fft.ifft2(np.fft.fft2(image) * window)).astype(np.float32)


def _motion_blur(image: F32, signal: F32, acq: T1MapAcquisition,
                 spacing: tuple[float, float]) -> tuple[F32, F32]:
    length_px = acq.motion_blur_mm / min(spacing)
    if length_px < 0.5:
        return image, signal
    n = max(math.ceil(length_px) * 2 + 1, 3)
    kernel = np.zeros((n, n), dtype=np.float32)
    c = n // 2
    for t in np.linspace(-0.5, 0.5, 4 * n):
        r = c + t * length_px * math.sin(acq.motion_angle_rad)
        q = c + t * length_px * math.cos(acq.motion_angle_rad)
        kernel[round(r), round(q)] += 1.0
    kernel /= kernel.sum()
    weighted = ndimage.convolve(image * signal, kernel, mode="nearest")
    blurred_signal = ndimage.convolve(signal, kernel, mode="nearest")
    out = np.where(blurred_signal > 1e-6, weighted / np.maximum(blurred_signal, 1e-6), 0.0)
    return out.astype(np.float32), blurred_signal.astype(np.float32)


def _off_resonance_band(
    rng: np.random.Generator, rendered: RenderedSlice, case: HeartCase
) -> F32:
    """Additive T1 error (ms) of a bSSFP off-resonance band near the lateral heart-lung border."""
    rows, cols = rendered.labels.shape
    dy, dx = rendered.pixel_spacing
    r0, c0 = rendered.lv_centre_px
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x = (xx - c0) * dx
    y = (yy - r0) * dy
    # A curved band (arc of a large circle) crossing the inferolateral / lateral wall.
    theta = case.rotation_rad + float(rng.uniform(-0.6, 1.2))
    r_epi = case.lv.mean_epi_radius(rendered.position)
    radius = float(rng.uniform(60.0, 160.0))
    dist = r_epi * float(rng.uniform(0.6, 1.1))
    cx = (dist + radius) * math.cos(theta)
    cy = (dist + radius) * math.sin(theta)
    d = np.abs(np.hypot(x - cx, y - cy) - radius)
    width = float(rng.uniform(1.5, 4.0))
    # Limited extent along the arc (a band segment, centred where it passes the heart).
    along = np.angle(np.exp(1j * (np.arctan2(y - cy, x - cx) - (theta + np.pi)))) * radius
    extent = float(rng.uniform(10.0, 25.0))
    profile = np.exp(-0.5 * (d / width) ** 2) * np.exp(-0.5 * (along / extent) ** 2)
    amplitude = float(rng.choice([-1.0, 1.0], p=[0.7, 0.3])) * float(rng.uniform(100.0, 300.0))
    return (amplitude * profile).astype(np.float32)


def _t1_map(
    rng: np.random.Generator,
    rendered: RenderedSlice,
    case: HeartCase,
    acq: T1MapAcquisition,
) -> tuple[F32, F32, F32, F32, bool]:
    """Noisy, noiseless, clean and signal maps of one slice; whether it has a band."""
    clean, signal = _clean_map(rng, rendered, case)
    shape = clean.shape
    spacing = rendered.pixel_spacing
    image, blurred_signal = _motion_blur(clean, signal, acq, spacing)
    image = image * (1.0 + acq.bias_fraction * smooth_field(rng, shape))
    band = bool(rng.random() < acq.streak_probability)
    if band:
        image = image + _off_resonance_band(rng, rendered, case)
    noisy, image = acquire_map(rng, image, blurred_signal, case, acq, spacing)
    return noisy, image, clean, signal, band


def acquire_map(rng: np.random.Generator, image: F32, blurred_signal: F32, case: HeartCase,
                acq: T1MapAcquisition, spacing: tuple[float, float]) -> tuple[F32, F32]:
    """The scanner's map of a (motion-blurred, biased) T1 image: limited resolution and
    fitting noise; returns the noisy map and the noiseless one at that resolution."""
    shape = image.shape
    # Limited acquired resolution (zero-filled interpolation: blur and Gibbs ringing).
    # Pixels without signal carry no T1, so they are first filled from nearby tissue, so
    # that lung and air do not drag tissue values towards zero.
    window = kspace_window(shape, acq.kspace_fraction(spacing))
    floor = 0.05 * PROTON_DENSITY[Tissue.MYOCARDIUM]
    sigma = (4.0 / spacing[0], 4.0 / spacing[1])
    spread = ndimage.gaussian_filter(image * blurred_signal, sigma) / np.maximum(
        ndimage.gaussian_filter(blurred_signal, sigma), 1e-3)
    filled = np.where(blurred_signal > floor, image, spread).astype(np.float32)
    image = lowpass(filled, window)
    blurred_signal = np.clip(lowpass(blurred_signal, window), 0.0, None)
    # Fitting noise: grows with T1 and where signal is low; deeper tissue (coil distance,
    # parallel-imaging g-factor) is noisier.  Interpolation correlates it spatially.
    myo_t1 = case.tissues.myocardium_t1_ms
    pd_myo = PROTON_DENSITY[Tissue.MYOCARDIUM]
    rel_signal = np.maximum(blurred_signal / pd_myo, 0.05)
    depth = 1.0 + 0.2 * smooth_field(rng, shape, order=2)
    sd = acq.noise_sd_ms * (np.clip(image, 50.0, None) / myo_t1) ** 1.2 / np.sqrt(rel_signal)
    sd = sd * depth
    white = rng.standard_normal(shape).astype(np.float32)
    correlated = lowpass(white, window)
    correlated /= float(correlated.std()) or 1.0
    noisy = image + sd * correlated
    low = blurred_signal < acq.signal_threshold * pd_myo
    if acq.background is BackgroundMode.ZERO:
        noisy = np.where(low, 0.0, noisy)
    elif acq.background is BackgroundMode.NOISE:
        speckle = rng.gamma(1.5, 900.0, size=shape) * (rng.random(shape) < 0.7)
        noisy = np.where(low, speckle, noisy)
    else:
        wild = rng.uniform(0.0, MAX_T1_MS, size=shape) * (rng.random(shape) < 0.3)
        noisy = np.where(low & (wild > 0), wild, noisy)
    noisy = np.clip(noisy, 0.0, MAX_T1_MS).astype(np.float32)
    return noisy, image.astype(np.float32)


def _truth(
    t1: F32, clean: F32, labels: npt.NDArray[np.uint8], rendered: RenderedSlice,
    case: HeartCase
) -> dict[str, float]:
    area = rendered.pixel_spacing[0] * rendered.pixel_spacing[1]
    myo = labels == Label.MYOCARDIUM
    lv = labels == Label.LV_BLOOD_POOL
    rv = labels == Label.RV_BLOOD_POOL
    lesion_px = myo & (rendered.lesion_fraction >= 0.5)
    lesion_t1 = 0.0
    if lesion_px.any():
        lesion_t1 = case.tissues.myocardium_t1_ms + float(
            np.mean(rendered.lesion_rise_ms[lesion_px]))
    theta = np.linspace(-np.pi, np.pi, 180, endpoint=False)
    return {
        "myocardium_t1_mean_ms": float(t1[myo].mean()) if myo.any() else 0.0,
        "myocardium_t1_sd_ms": float(t1[myo].std()) if myo.any() else 0.0,
        "myocardium_t1_true_ms": float(case.tissues.myocardium_t1_ms),
        "myocardium_t1_noise_free_mean_ms": float(clean[myo].mean()) if myo.any() else 0.0,
        "blood_t1_mean_ms": float(t1[lv].mean()) if lv.any() else 0.0,
        "blood_t1_true_ms": float(case.tissues.blood_t1_ms),
        "myocardium_area_mm2": float(myo.sum() * area),
        "lv_blood_area_mm2": float(lv.sum() * area),
        "rv_blood_area_mm2": float(rv.sum() * area),
        "lesion_area_mm2": float(lesion_px.sum() * area),
        "lesion_t1_true_ms": lesion_t1,
        "wall_thickness_mm": float(np.mean(case.lv.wall_thickness(theta, rendered.position))),
        "field_strength_t": float(case.field_strength_t),
        "haematocrit": float(case.tissues.haematocrit),
        "diffuse_rise_ms": float(case.tissues.diffuse_rise_ms),
        "long_axis_position": float(rendered.position),
    }


def _midwall_map_t1(noiseless: F32, rendered: RenderedSlice, case: HeartCase) -> float:
    """Noise-free map T1 over the mid-wall of the true contours: what a reader's mid-wall
    region reads on this map without pixel noise (its blur, acquired resolution, bias and
    bands included).  The region is the consensus mid-wall rule of
    :func:`plugins.t1map.analysis.conservative_core` on the true labels; where the wall is too
    thin for one, the tissue T1."""
    midwall = conservative_core(rendered.labels, rendered.pixel_spacing)
    if not midwall.any():
        return float(case.tissues.myocardium_t1_ms)
    return float(np.mean(noiseless[midwall], dtype=np.float64))
