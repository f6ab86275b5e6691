"""Native MOLLI T1-map phantoms of short-axis slices, with exact labels and truth values.

A phantom slice is rendered from a :class:`~models.phantoms.heart_geometry.HeartCase` with
partial-volume fractions, turned into a T1 map in milliseconds by signal-weighted mixing of
the subject's tissue T1 values, then given what real MOLLI maps show: limited acquired
resolution (k-space truncation, Gibbs ringing and interpolation), breathing/motion blur,
a smooth bias, occasional off-resonance bands near the heart-lung interface, fitting
noise that grows where signal is low, and lung / air either masked to zero or filled with
fit noise.

:func:`make_molli_source` produces the inversion-recovery source images of a phantom slice
from the three-parameter Look-Locker model ``S(TI) = A - B exp(-TI / T1*)`` with
``T1* = T1 / (B/A - 1)``.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import LEVEL_POSITION_RANGES, LEVELS, STRUCTURE_TISSUE, Structure
from models.phantoms.heart_geometry import Blob, HeartCase
from models.phantoms.heart_rendering import RenderedSlice, render_slice
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.tissues import PROTON_DENSITY, T2_MS, Tissue, check_field_strength
from plugins.api import Label
from plugins.t1map.analysis import conservative_core

__all__ = [
    "BackgroundMode",
    "BorderRealism",
    "HeartCase",
    "PhantomSlice",
    "T1MapAcquisition",
    "make_heart_case",
    "make_molli_source",
    "make_t1map_slice",
    "make_t1map_stack",
    "molli_inversion_times",
    "pixel_angles",
    "sample_border_realism",
    "sample_geometry",
    "sample_t1map_acquisition",
]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

MAX_T1_MS = 4095.0
"""Largest value written into a synthetic map (scanners clip fits at a few seconds)."""

COMMON_MATRICES: tuple[tuple[int, int], ...] = (
    (192, 256), (218, 256), (256, 218), (256, 256), (224, 224), (240, 240),
    (208, 256), (176, 208), (160, 192), (288, 288), (256, 192),
)
"""(rows, cols) matrices of reconstructed MOLLI maps seen on clinical scanners."""

FOV_RANGE_MM = (300.0, 400.0)
SPACING_RANGE_MM = (1.0, 2.5)
HEART_MARGIN_MM = 6.0


class BackgroundMode(enum.StrEnum):
    """How a map shows pixels with too little signal to fit (air, lung)."""

    ZERO = "zero"
    NOISE = "noise"
    FIT = "fit"


@dataclass(frozen=True)
class T1MapAcquisition:
    """Imaging properties shared by the slices of one MOLLI T1-map series.

    Attributes
    ----------
    noise_sd_ms
        Fitting-noise SD in myocardium (ms).
    acquired_resolution_mm
        Acquired (before interpolation) resolution along (rows, cols); clinical MOLLI
        acquires about 1.4–2.4 mm and scanners interpolate, which blurs and rings.
    background
        Appearance of pixels below ``signal_threshold``.
    signal_threshold
        Relative signal (0..1) below which a pixel is treated as background.
    motion_blur_mm
        Length of residual in-plane motion blur.
    motion_angle_rad
        Direction of that blur.
    bias_fraction
        Peak relative amplitude of the smooth T1 bias over the field of view.
    streak_probability
        Probability of an off-resonance band per slice.
    """

    noise_sd_ms: float
    acquired_resolution_mm: tuple[float, float]
    background: BackgroundMode
    signal_threshold: float
    motion_blur_mm: float
    motion_angle_rad: float
    bias_fraction: float
    streak_probability: float

    def kspace_fraction(self, pixel_spacing: tuple[float, float]) -> tuple[float, float]:
        """Acquired fraction of the k-space extent of a map with this pixel spacing."""
        rows = min(1.0, pixel_spacing[0] / self.acquired_resolution_mm[0])
        cols = min(1.0, pixel_spacing[1] / self.acquired_resolution_mm[1])
        return (max(rows, 0.3), max(cols, 0.3))


def sample_t1map_acquisition(rng: np.random.Generator, field_strength_t: float = 1.5
                             ) -> T1MapAcquisition:
    """Draw the imaging properties of one T1-map series."""
    field = check_field_strength(field_strength_t)
    noise = float(rng.uniform(20.0, 40.0)) * (0.9 if field == 3.0 else 1.0)
    phase_mm = float(rng.uniform(1.6, 2.4))
    read_mm = float(rng.uniform(1.3, 1.9))
    resolution = (phase_mm, read_mm) if rng.random() < 0.5 else (read_mm, phase_mm)
    modes = list(BackgroundMode)
    background = modes[int(rng.choice(len(modes), p=[0.35, 0.35, 0.3]))]
    return T1MapAcquisition(
        noise_sd_ms=noise,
        acquired_resolution_mm=resolution,
        background=background,
        signal_threshold=float(rng.uniform(0.15, 0.3)),
        motion_blur_mm=float(rng.choice([0.0, rng.uniform(0.5, 3.0)], p=[0.4, 0.6])),
        motion_angle_rad=float(rng.uniform(0.0, np.pi)),
        bias_fraction=float(rng.uniform(0.0, 0.02)),
        streak_probability=0.1,
    )


@dataclass(frozen=True)
class BorderRealism:
    """How the myocardial borders of real MOLLI maps differ from an infinitely thin slice.

    The default (all zero) renders the slice as before: one plane, one cardiac phase, a
    smooth endocardium with a few trabeculae.  Real maps mix blood into the endocardial
    pixels in three ways, each of which moves the T1 of the inner wall towards blood T1
    (~1550 ms at 1.5 T, ~1900 ms at 3 T against ~1000 / ~1200 ms myocardium):

    Attributes
    ----------
    slice_thickness_mm
        Through-plane partial volume: the map averages ``n_renders`` planes spread over this
        thickness (clinical MOLLI: 6–8 mm).  Where the cavity narrows along the long axis
        (towards base and apex) the endocardium is oblique to the slice and smeared over
        several millimetres.
    long_axis_length_mm
        Base-to-apex length that converts ``slice_thickness_mm`` into long-axis position.
    endocardial_motion_mm
        Peak-to-peak radial excursion of the endocardium between the images of one MOLLI
        acquisition (residual cardiac motion and imperfect motion correction); the
        epicardium moves much less, so the wall thickens inwards.  0 for none.
    trabecular_layer_mm
        Depth of a non-compacted layer of fine trabeculae inside the compact endocardial
        border (labelled blood pool, as expert readers exclude trabeculae from the
        myocardium).  0 for none.
    trabecular_count
        Number of fine trabeculae in that layer around the circumference.
    n_renders
        Planes / phases averaged (at least 1).
    """

    slice_thickness_mm: float = 0.0
    long_axis_length_mm: float = 90.0
    endocardial_motion_mm: float = 0.0
    trabecular_layer_mm: float = 0.0
    trabecular_count: int = 0
    n_renders: int = 1

    @property
    def active(self) -> bool:
        """Whether anything differs from the plain single-plane rendering."""
        return (self.slice_thickness_mm > 0 or self.endocardial_motion_mm > 0
                or (self.trabecular_layer_mm > 0 and self.trabecular_count > 0))


def sample_border_realism(rng: np.random.Generator) -> BorderRealism:
    """Draw border realism of a clinical MOLLI map.

    Ranges: slice thickness 6–8 mm (the consensus protocol of Messroghli et al., JCMR
    2017;19:75); endocardial excursion 2–5 mm between the images of one MOLLI acquisition
    (diastolic wall motion within the acquisition window plus residual misregistration
    after motion correction); a layer of 2–4 mm with 40–70 fine trabeculae inside the
    compact wall.  The upper halves of these ranges are what expose the bias of a core
    that hugs the endocardium (see ``models/README.md``).
    """
    return BorderRealism(
        slice_thickness_mm=float(rng.uniform(6.0, 8.0)),
        long_axis_length_mm=float(rng.uniform(80.0, 100.0)),
        endocardial_motion_mm=float(rng.uniform(2.0, 5.0)),
        trabecular_layer_mm=float(rng.uniform(2.0, 4.0)),
        trabecular_count=int(rng.integers(40, 71)),
        n_renders=7,
    )


def _with_trabecular_layer(case: HeartCase, rng: np.random.Generator,
                           border: BorderRealism) -> HeartCase:
    """The subject with fine trabeculae in a layer inside the endocardium."""
    if border.trabecular_layer_mm <= 0 or border.trabecular_count <= 0:
        return case
    lv = case.lv
    depth = border.trabecular_layer_mm / max(lv.endo_radius_mm, 1.0)
    fine = tuple(
        Blob(
            angle_rad=float(rng.uniform(-np.pi, np.pi)),
            radial_fraction=float(1.0 - rng.uniform(0.2, 0.8) * depth),
            radius_mm=float(rng.uniform(0.5, 1.1)),
            aspect=float(rng.uniform(1.5, 3.0)),
            s_range=(0.0, 1.0),
        )
        for _ in range(border.trabecular_count)
    )
    return dataclasses.replace(case, lv=dataclasses.replace(lv, trabeculae=lv.trabeculae + fine))


def _moved_endocardium(case: HeartCase, excursion_mm: float) -> HeartCase:
    """The subject with its endocardium moved outwards by ``excursion_mm`` (epicardium kept)."""
    if excursion_mm == 0.0:
        return case
    lv = case.lv
    endo = max(lv.endo_radius_mm + excursion_mm, 5.0)
    wall = max(lv.wall_thickness_mm - (endo - lv.endo_radius_mm), 2.0)
    return dataclasses.replace(case, lv=dataclasses.replace(
        lv, endo_radius_mm=endo, wall_thickness_mm=wall))


def _border_rendered(rng: np.random.Generator, case: HeartCase, position: float,
                     shape: tuple[int, int], spacing: tuple[float, float],
                     shift: tuple[float, float], border: BorderRealism) -> RenderedSlice:
    """Fractions averaged over slice thickness and endocardial motion; labels of the centre."""
    centre = render_slice(case, position, shape, spacing, centre_shift_mm=shift)
    n = max(int(border.n_renders), 1)
    if n == 1:
        return centre
    half = 0.5 * border.slice_thickness_mm / border.long_axis_length_mm
    offsets = np.linspace(-half, half, n)
    phases = rng.permutation(np.linspace(-0.5, 0.5, n)) * border.endocardial_motion_mm
    total = np.zeros_like(centre.fractions)
    for offset, excursion in zip(offsets, phases, strict=True):
        where = float(np.clip(position + offset, 0.0, 0.98))
        moved = _moved_endocardium(case, float(excursion))
        total += render_slice(moved, where, shape, spacing, centre_shift_mm=shift).fractions
    return dataclasses.replace(centre, fractions=(total / n).astype(np.float32))


@dataclass(frozen=True, eq=False)
class PhantomSlice:
    """One synthetic short-axis T1 map with its exact labels and truth values.

    Attributes
    ----------
    t1_ms
        float32 (rows, cols): the map in ms, noise and artefacts included.
    labels
        uint8 (rows, cols) :class:`plugins.api.Label` values.
    pixel_spacing
        (row spacing, col spacing) in mm.
    level
        ``"basal"``, ``"mid"`` or ``"apical"``.
    truth
        ``myocardium_t1_mean_ms`` (mean of ``t1_ms`` over myocardium),
        ``myocardium_t1_true_ms`` (noise-free remote tissue value, diffuse disease included),
        ``myocardium_t1_sd_ms``, ``myocardium_t1_noise_free_mean_ms`` (mean of the
        noise-free map over myocardium), ``myocardium_t1_midwall_map_ms`` (the map without
        noise over the true mid-wall: what an expert's mid-wall region reads),
        ``blood_t1_mean_ms`` (mean over the LV pool label), ``blood_t1_true_ms``,
        ``myocardium_area_mm2``, ``lv_blood_area_mm2``,
        ``rv_blood_area_mm2``, ``lesion_area_mm2``, ``lesion_t1_true_ms`` (0 without
        lesion), ``wall_thickness_mm``, ``field_strength_t``, ``haematocrit``,
        ``diffuse_rise_ms``, ``long_axis_position``, ``off_resonance_band`` (1 if the
        slice has an off-resonance band artefact, else 0).
    t1_clean_ms
        float32: the noise- and artefact-free partial-volume map.
    t1_noiseless_ms
        float32: the map with every artefact (blur, ringing, bias, off-resonance band) but
        before fitting noise and background masking; ``t1_ms - t1_noiseless_ms`` is the
        noise.
    signal
        float32: relative equilibrium signal (0 air .. ~1 fat / blood).
    rendered
        Partial-volume fractions of each structure.
    heart
        The subject.
    """

    t1_ms: F32
    labels: npt.NDArray[np.uint8]
    pixel_spacing: tuple[float, float]
    level: str
    truth: dict[str, float]
    t1_clean_ms: F32 | None = None
    t1_noiseless_ms: F32 | None = None
    signal: F32 | None = None
    rendered: RenderedSlice | None = None
    heart: HeartCase | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (int(self.t1_ms.shape[0]), int(self.t1_ms.shape[1]))

    @property
    def field_strength_t(self) -> float:
        """Field strength the phantom simulates."""
        return float(self.truth["field_strength_t"])


# --------------------------------------------------------------------------------------------
# Geometry of the image
# --------------------------------------------------------------------------------------------


def sample_geometry(
    rng: np.random.Generator,
    shape: tuple[int, int] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Complete a (matrix, pixel spacing) pair the way clinical MOLLI protocols do.

    Missing parts are drawn so that the field of view is 300–400 mm and the spacing
    1.0–2.5 mm.

    Raises
    ------
    ValueError
        If a given matrix or spacing is not positive.
    """
    if shape is not None:
        rows, cols = int(shape[0]), int(shape[1])
        if rows <= 0 or cols <= 0:
            raise ValueError(f"Image matrix must be positive, got {shape}")
    if pixel_spacing is not None:
        spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
        if min(spacing) <= 0:
            raise ValueError(f"Pixel spacing must be positive, got {pixel_spacing}")
    if shape is None and pixel_spacing is None:
        rows, cols = COMMON_MATRICES[int(rng.integers(len(COMMON_MATRICES)))]
        fov = float(rng.uniform(*FOV_RANGE_MM))
        step = float(np.clip(fov / max(rows, cols), *SPACING_RANGE_MM))
        spacing = (round(step, 5), round(step, 5))
    elif shape is None:
        fov = float(rng.uniform(*FOV_RANGE_MM))
        cols = max(round(fov / spacing[1]), 32)
        rows = max(round(cols * float(rng.uniform(0.75, 1.0)) * spacing[1] / spacing[0]),
                   32)
    elif pixel_spacing is None:
        fov = float(rng.uniform(*FOV_RANGE_MM))
        step = float(np.clip(fov / max(rows, cols), *SPACING_RANGE_MM))
        spacing = (round(step, 5), round(step, 5))
    return (rows, cols), spacing


def _fit_heart_in_view(
    case: HeartCase, shape: tuple[int, int], spacing: tuple[float, float]
) -> tuple[float, float]:
    """Shift (mm) that keeps the heart inside the field of view, or (0, 0)."""
    left, right, up, down = case.heart_extent_mm()
    half_w = shape[1] * spacing[1] / 2.0 - HEART_MARGIN_MM
    half_h = shape[0] * spacing[0] / 2.0 - HEART_MARGIN_MM
    shifts = []
    for centre, lo, hi, half in (
        (case.centre_mm[0], left, right, half_w),
        (case.centre_mm[1], up, down, half_h),
    ):
        if lo + hi > 2 * half:  # cannot fit: centre the heart's extent
            shifts.append((lo - hi) / 2.0 - centre)
        elif centre - lo < -half:
            shifts.append(-half - (centre - lo))
        elif centre + hi > half:
            shifts.append(half - (centre + hi))
        else:
            shifts.append(0.0)
    return (shifts[0], shifts[1])


# --------------------------------------------------------------------------------------------
# Map synthesis
# --------------------------------------------------------------------------------------------


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


def _clean_map(rng: np.random.Generator, rendered: RenderedSlice, case: HeartCase
               ) -> tuple[F32, F32]:
    """Signal-weighted partial-volume T1 map and relative signal map."""
    t1 = _structure_t1(case)
    myo_structures = {Structure.LV_MYOCARDIUM, Structure.LV_LESION, Structure.PAPILLARY_MUSCLE,
                      Structure.RV_WALL, Structure.RV_TRABECULAE}
    angles = pixel_angles(rendered, case)
    texture = _texture(rng, rendered.labels.shape, rendered.pixel_spacing)
    # Septal T1 is usually slightly higher than lateral.
    gradient = (0.5 * case.tissues.septal_lateral_gradient_ms * -np.cos(angles)).astype(
        np.float32)
    weighted = np.zeros(rendered.labels.shape, dtype=np.float32)
    signal = np.zeros_like(weighted)
    for structure in Structure:
        frac = rendered.fractions[int(structure)]
        if not frac.any():
            continue
        tissue = STRUCTURE_TISSUE[structure]
        weight = frac * PROTON_DENSITY[tissue]
        value: F32 = t1[structure] * (1.0 + TEXTURE_AMPLITUDE[tissue] * texture)
        if structure in myo_structures:
            value = value + gradient
        if structure is Structure.LV_LESION:
            value = value + rendered.lesion_rise_ms
        weighted += weight * value
        signal += weight
    clean = np.where(signal > 1e-6, weighted / np.maximum(signal, 1e-6), 0.0)
    return clean.astype(np.float32), signal.astype(np.float32)


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
    return noisy, image.astype(np.float32), clean, signal, band


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


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"Unknown short-axis level {level!r}; expected one of {LEVELS}")
    return level


def _resolve_case(
    rng: np.random.Generator, field_strength_t: float, heart: HeartCase | None
) -> HeartCase:
    field = check_field_strength(field_strength_t)
    if heart is None:
        return make_heart_case(rng, field_strength_t=field)
    if check_field_strength(heart.field_strength_t) != field:
        raise ValueError(
            f"The heart case was made for {heart.field_strength_t:g} T but "
            f"field_strength_t={field_strength_t:g}; pass the case's field strength"
        )
    return heart


def _make_slice(
    rng: np.random.Generator,
    case: HeartCase,
    level: str,
    shape: tuple[int, int],
    spacing: tuple[float, float],
    acquisition: T1MapAcquisition,
    shift: tuple[float, float],
    position: float | None = None,
    border: BorderRealism | None = None,
) -> PhantomSlice:
    where: str | float = level if position is None else position
    if border is not None and border.active:
        rendered = _border_rendered(rng, case, case.position(where), shape, spacing, shift,
                                    border)
    else:
        rendered = render_slice(case, where, shape, spacing, centre_shift_mm=shift)
    t1, noiseless, clean, signal, band = _t1_map(rng, rendered, case, acquisition)
    truth = _truth(t1, clean, rendered.labels, rendered, case)
    truth["myocardium_t1_midwall_map_ms"] = _midwall_map_t1(noiseless, rendered, case)
    truth["off_resonance_band"] = 1.0 if band else 0.0
    logger.debug("phantom %s slice %dx%d: myocardium %.0f ms", level, shape[0], shape[1],
                 truth["myocardium_t1_mean_ms"])
    return PhantomSlice(
        t1_ms=t1,
        labels=rendered.labels,
        pixel_spacing=spacing,
        level=level,
        truth=truth,
        t1_clean_ms=clean,
        t1_noiseless_ms=noiseless,
        signal=signal,
        rendered=rendered,
        heart=case,
    )


def make_t1map_slice(
    rng: np.random.Generator,
    *,
    field_strength_t: float = 1.5,
    level: str = "mid",
    shape: tuple[int, int] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    heart: HeartCase | None = None,
    acquisition: T1MapAcquisition | None = None,
    border: BorderRealism | None = None,
) -> PhantomSlice:
    """Make one synthetic native T1 map of a short-axis slice.

    Parameters
    ----------
    rng
        Random generator; the same state gives the same slice.
    field_strength_t
        1.5 or 3 (tesla).  Must match ``heart`` when one is given.
    level
        ``"basal"``, ``"mid"`` or ``"apical"``.
    shape, pixel_spacing
        (rows, cols) and (row, col) spacing in mm; drawn from clinical protocols if ``None``.
    heart
        The subject; a new one is drawn if ``None``.
    acquisition
        Imaging properties; drawn if ``None``.
    border
        Realism of the myocardial borders (slice thickness, endocardial motion, trabecular
        layer); ``None`` renders one thin plane as before.

    Returns
    -------
    PhantomSlice
        The map, labels and truth.

    Raises
    ------
    ValueError
        For an unknown level or field strength, or a heart of another field strength.
    """
    _check_level(level)
    case = _resolve_case(rng, field_strength_t, heart)
    (rows, cols), spacing = sample_geometry(rng, shape, pixel_spacing)
    acq = acquisition or sample_t1map_acquisition(rng, case.field_strength_t)
    shift = _fit_heart_in_view(case, (rows, cols), spacing)
    if border is not None and border.active:
        case = _with_trabecular_layer(case, rng, border)
    return _make_slice(rng, case, level, (rows, cols), spacing, acq, shift, border=border)


def make_t1map_stack(
    rng: np.random.Generator,
    *,
    field_strength_t: float = 1.5,
    levels: Sequence[str] = LEVELS,
    shape: tuple[int, int] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    heart: HeartCase | None = None,
    acquisition: T1MapAcquisition | None = None,
    border: BorderRealism | None = None,
) -> tuple[HeartCase, list[PhantomSlice]]:
    """Make the short-axis T1 maps of one subject (same matrix, spacing and anatomy).

    Parameters
    ----------
    rng
        Random generator.
    field_strength_t
        1.5 or 3 (tesla).
    levels
        Levels to render, in the order returned (normally base to apex).  A level named
        more than once gives slices spread over that level's long-axis range, so that
        e.g. ``("basal",) * 4 + ("mid",) * 4 + ("apical",) * 4`` is a 12-slice stack.
    shape, pixel_spacing, heart, acquisition, border
        As for :func:`make_t1map_slice`.  With border realism the returned subject carries
        the added fine trabeculae.

    Returns
    -------
    tuple of HeartCase and list of PhantomSlice
        The subject and one slice per level.
    """
    for level in levels:
        _check_level(level)
    case = _resolve_case(rng, field_strength_t, heart)
    (rows, cols), spacing = sample_geometry(rng, shape, pixel_spacing)
    acq = acquisition or sample_t1map_acquisition(rng, case.field_strength_t)
    shift = _fit_heart_in_view(case, (rows, cols), spacing)
    positions = _stack_positions(case, levels)
    if border is not None and border.active:
        case = _with_trabecular_layer(case, rng, border)
    slices = [_make_slice(rng, case, level, (rows, cols), spacing, acq, shift, position,
                          border=border)
              for level, position in zip(levels, positions, strict=True)]
    return case, slices


def _stack_positions(case: HeartCase, levels: Sequence[str]) -> list[float]:
    """Long-axis position of each slice; repeated levels spread over that level's range."""
    counts = {level: levels.count(level) for level in set(levels)}
    seen: dict[str, int] = {}
    positions = []
    for level in levels:
        index = seen.get(level, 0)
        seen[level] = index + 1
        if counts[level] == 1:
            positions.append(case.position(level))
            continue
        low, high = LEVEL_POSITION_RANGES[level]
        positions.append(low + (high - low) * index / (counts[level] - 1))
    return positions


# --------------------------------------------------------------------------------------------
# MOLLI source images
# --------------------------------------------------------------------------------------------

_SCHEME_RE = re.compile(r"^\s*(\d+)(s?)((?:\s*\(\s*\d+s?\s*\)\s*\d+s?)*)\s*$")
_SCHEME_PART_RE = re.compile(r"\(\s*(\d+)(s?)\s*\)\s*(\d+)(s?)")
FLIP_ANGLE_DEG = 35.0


def molli_inversion_times(
    scheme: str = "5(3)3",
    *,
    heart_rate_bpm: float = 60.0,
    first_ti_ms: float = 110.0,
    ti_increment_ms: float = 80.0,
) -> npt.NDArray[np.float64]:
    """Inversion times (ms, acquisition order) of a MOLLI scheme.

    ``"5(3)3"`` means 5 images after the first inversion, 3 recovery heartbeats, 3 images
    after the second; an ``s`` suffix counts seconds instead of heartbeats (``"5s(3s)3s"``).
    Each inversion's first TI is ``first_ti_ms`` plus ``ti_increment_ms`` per preceding
    inversion; later images follow one RR interval apart.

    Raises
    ------
    ValueError
        If the scheme is not of that form or the timing is implausible.
    """
    match = _SCHEME_RE.match(scheme)
    if match is None:
        raise ValueError(f"MOLLI scheme {scheme!r} is not of the form 5(3)3 or 4s(1s)3s(1s)2s")
    if not 30.0 <= heart_rate_bpm <= 200.0:
        raise ValueError(f"Heart rate {heart_rate_bpm} bpm is implausible")
    rr = 60000.0 / heart_rate_bpm
    if first_ti_ms <= 0 or first_ti_ms >= rr:
        raise ValueError(f"First TI {first_ti_ms} ms must lie within one RR interval ({rr:.0f})")
    counts = [(int(match.group(1)), bool(match.group(2)))]
    for part in _SCHEME_PART_RE.finditer(match.group(3)):
        counts.append((int(part.group(3)), bool(part.group(4))))
    tis: list[float] = []
    for index, (count, seconds) in enumerate(counts):
        n_images = max(1, int(count * 1000.0 // rr)) if seconds else count
        start = first_ti_ms + index * ti_increment_ms
        tis.extend(start + k * rr for k in range(n_images))
    return np.asarray(tis, dtype=np.float64)


def _look_locker_parameters(t1_ms: npt.ArrayLike, t2_ms: npt.ArrayLike, pd: npt.ArrayLike
                            ) -> tuple[npt.NDArray[np.float64], ...]:
    """(A, B, T1*) of the three-parameter model for tissues of given T1, T2, PD.

    A follows the bSSFP steady state (~ sqrt(T2/T1)); the readout shortens T1* with
    ``T1 / T1* = 1 + 0.045 sqrt(T1/T2)`` so that ``T1 = T1* (B/A - 1)`` holds exactly.
    """
    t1 = np.maximum(np.asarray(t1_ms, dtype=np.float64), 1.0)
    t2 = np.maximum(np.asarray(t2_ms, dtype=np.float64), 1.0)
    ratio = 1.0 + 0.045 * np.sqrt(t1 / t2)
    t1_star = t1 / ratio
    a = np.asarray(pd, dtype=np.float64) * np.sqrt(np.minimum(t2 / t1, 1.0))
    b = a * (1.0 + ratio)
    return a, b, t1_star


def make_molli_source(
    rng: np.random.Generator,
    phantom_slice: PhantomSlice,
    scheme: str = "5(3)3",
    *,
    heart_rate_bpm: float | None = None,
    first_ti_ms: float | None = None,
    ti_increment_ms: float = 80.0,
    snr: float | None = None,
) -> tuple[F32, npt.NDArray[np.float64]]:
    """Inversion-recovery magnitude images from which a MOLLI map of the slice is fitted.

    Each pixel sums the signed Look-Locker signals of the tissues it contains (partial
    volume in the signal domain), then complex Gaussian noise is added and the magnitude
    taken (Rician statistics, signal nulling near ``TI = T1* ln(B/A)``).

    Parameters
    ----------
    rng
        Random generator.
    phantom_slice
        The slice whose noise-free T1 values are imaged.
    scheme
        MOLLI sampling scheme, e.g. ``"5(3)3"``, ``"3(3)3(3)5"``, ``"4s(1s)3s(1s)2s"``.
    heart_rate_bpm
        Heart rate; drawn from 55–85 bpm if ``None``.
    first_ti_ms
        Shortest inversion time; drawn from 100–120 ms if ``None``.
    ti_increment_ms
        Offset of each further inversion's first TI.
    snr
        Signal-to-noise ratio of blood at full recovery; drawn from 40–90 if ``None``.

    Returns
    -------
    images, inversion_times_ms
        float32 (n, rows, cols) magnitudes (arbitrary units, ~0–1000) and the TIs (ms)
        in acquisition order.
    """
    hr = float(rng.uniform(55.0, 85.0)) if heart_rate_bpm is None else float(heart_rate_bpm)
    ti0 = float(rng.uniform(100.0, 120.0)) if first_ti_ms is None else float(first_ti_ms)
    tis = molli_inversion_times(scheme, heart_rate_bpm=hr, first_ti_ms=ti0,
                                ti_increment_ms=ti_increment_ms)
    shape = phantom_slice.shape
    signal = np.zeros((tis.size, *shape), dtype=np.float64)
    rendered = phantom_slice.rendered
    case = phantom_slice.heart
    if rendered is not None and case is not None:
        t1_values = _structure_t1(case)
        for structure in Structure:
            frac = rendered.fractions[int(structure)]
            if not frac.any():
                continue
            tissue = STRUCTURE_TISSUE[structure]
            t1: npt.NDArray[np.float64] | float = t1_values[structure]
            if structure is Structure.LV_LESION:
                t1 = t1_values[structure] + rendered.lesion_rise_ms.astype(np.float64)
            a, b, t1s = _look_locker_parameters(t1, T2_MS[tissue], PROTON_DENSITY[tissue])
            signal += frac[None] * (a - b * np.exp(-tis[:, None, None] / t1s))
    else:
        clean = phantom_slice.t1_clean_ms if phantom_slice.t1_clean_ms is not None else (
            phantom_slice.t1_ms)
        pd = phantom_slice.signal if phantom_slice.signal is not None else np.where(
            clean > 0, PROTON_DENSITY[Tissue.MYOCARDIUM], 0.0)
        a, b, t1s = _look_locker_parameters(clean, T2_MS[Tissue.MYOCARDIUM], pd)
        signal = a[None] - b[None] * np.exp(-tis[:, None, None] / t1s[None])
    blood_a, _, _ = _look_locker_parameters(
        1600.0, T2_MS[Tissue.BLOOD], PROTON_DENSITY[Tissue.BLOOD])
    scale = 1000.0 / float(blood_a)
    snr_value = float(rng.uniform(40.0, 90.0)) if snr is None else float(snr)
    sigma = 1000.0 / snr_value
    noise = rng.normal(0.0, sigma, size=(2, *signal.shape))
    images = np.hypot(signal * scale + noise[0], noise[1]).astype(np.float32)
    return images, tis
