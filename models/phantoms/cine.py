"""Balanced SSFP cine phantoms of short-axis slices, matched to a subject's LGE images.

A cine slice shows the same :class:`~models.phantoms.heart_geometry.HeartCase` at one cardiac
phase.  The heart contracts with a simple volume curve: end-diastole (phase 0) and
diastasis (late diastole, where LGE is acquired) show the subject's resting geometry; at
end-systole (~35 % of the RR interval) the cavity shrinks and the wall thickens so that the
myocardial area is conserved.

Contrast is the bSSFP steady state ``S = M0 sin(a) (1 - E1) sqrt(E2) /
(1 - (E1 - E2) cos(a) - E1 E2)`` with ``E1 = exp(-TR/T1)``, ``E2 = exp(-TR/T2)``, TE =
TR/2 (Scheffler K, Lehnhardt S, "Principles and applications of balanced SSFP
techniques", Eur Radiol 2003;13:2409): bright blood and fat (high T2/T1), intermediate
myocardium, dark lung.  Native (pre-contrast) tissue T1 values of the subject are used,
as cine is usually acquired before the contrast bolus.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import STRUCTURE_TISSUE, Phenotype, Structure
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.heart_rendering import RenderedSlice, render_slice
from models.phantoms.lge import LgeSlice, level_name
from models.phantoms.t1map_acquisition import _fit_heart_in_view
from models.phantoms.t1map_synthesis import kspace_window, lowpass, smooth_field
from models.phantoms.tissues import PROTON_DENSITY, T2_MS, Tissue

__all__ = [
    "CineAcquisition",
    "CineSlice",
    "contraction",
    "heart_at_phase",
    "make_cine_slice",
    "matched_cine_stack",
    "sample_cine_acquisition",
]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

END_SYSTOLE_PHASE = 0.35
"""End-systole as a fraction of the RR interval."""
DIASTASIS_PHASE = 0.65
"""Phase from which the ventricle has refilled to its resting (end-diastolic) geometry."""

ES_RADIUS_SCALE: dict[Phenotype, float] = {
    Phenotype.NORMAL: 0.66,
    Phenotype.DILATED: 0.86,
    Phenotype.CONCENTRIC_HYPERTROPHY: 0.55,
    Phenotype.SEPTAL_HYPERTROPHY: 0.58,
    Phenotype.SMALL: 0.64,
}
"""End-systolic / end-diastolic LV cavity radius (area ratio ~ 1 - ejection fraction)."""

RV_ES_SCALE = 0.8
"""End-systolic / end-diastolic RV size."""

MAX_STORED = 4095.0


def contraction(phase: float) -> float:
    """Systolic contraction (0 at rest, 1 at end-systole) at a phase in [0, 1) of RR."""
    p = float(phase) % 1.0
    if p <= END_SYSTOLE_PHASE:
        return math.sin(0.5 * math.pi * p / END_SYSTOLE_PHASE) ** 2
    if p < DIASTASIS_PHASE:
        return math.cos(0.5 * math.pi * (p - END_SYSTOLE_PHASE)
                        / (DIASTASIS_PHASE - END_SYSTOLE_PHASE)) ** 2
    return 0.0


def heart_at_phase(case: HeartCase, phase: float) -> HeartCase:
    """The subject's heart at a cardiac phase (fraction of RR; 0 = end-diastole).

    The LV cavity radius shrinks towards ``ES_RADIUS_SCALE`` of its phenotype and the wall
    thickens so that the mid-ventricular myocardial area stays the same; the RV shrinks.
    """
    c = contraction(phase)
    if c <= 0.0:
        return case
    lv = case.lv
    radius = lv.endo_radius_mm
    wall = lv.wall_thickness_mm
    new_radius = radius * (1.0 - (1.0 - ES_RADIUS_SCALE[case.phenotype]) * c)
    area = (radius + wall) ** 2 - radius**2
    new_wall = math.sqrt(new_radius**2 + area) - new_radius
    rv_scale = 1.0 - (1.0 - RV_ES_SCALE) * c
    rv = dataclasses.replace(case.rv, axis_x=case.rv.axis_x * rv_scale,
                             axis_y=case.rv.axis_y * rv_scale)
    return dataclasses.replace(
        case, lv=dataclasses.replace(lv, endo_radius_mm=new_radius, wall_thickness_mm=new_wall),
        rv=rv,
    )


@dataclass(frozen=True)
class CineAcquisition:
    """Imaging properties of one cine series.

    Attributes
    ----------
    heart_rate_bpm
        Heart rate (trigger times are fractions of its RR interval).
    flip_angle_deg, repetition_time_ms
        bSSFP flip angle and TR.
    blood_snr
        Blood signal over noise SD.
    intensity_scale
        Stored intensity of M0.
    acquired_resolution_mm
        Acquired resolution along (rows, cols).
    bias_amplitude
        Strength of the receive-coil intensity variation.
    """

    heart_rate_bpm: float
    flip_angle_deg: float
    repetition_time_ms: float
    blood_snr: float
    intensity_scale: float
    acquired_resolution_mm: tuple[float, float]
    bias_amplitude: float

    @property
    def rr_ms(self) -> float:
        """RR interval in ms."""
        return 60000.0 / self.heart_rate_bpm


def sample_cine_acquisition(rng: np.random.Generator, heart_rate_bpm: float | None = None
                            ) -> CineAcquisition:
    """Draw the imaging properties of a cine series."""
    return CineAcquisition(
        heart_rate_bpm=float(rng.uniform(55.0, 90.0)) if heart_rate_bpm is None
        else float(heart_rate_bpm),
        flip_angle_deg=float(rng.uniform(45.0, 75.0)),
        repetition_time_ms=float(rng.uniform(2.8, 3.4)),
        blood_snr=float(rng.uniform(35.0, 90.0)),
        intensity_scale=float(rng.uniform(900.0, 1600.0)),
        acquired_resolution_mm=(float(rng.uniform(1.7, 2.4)), float(rng.uniform(1.4, 1.9))),
        bias_amplitude=float(rng.uniform(0.1, 0.4)),
    )


def bssfp_signal(t1_ms: float, t2_ms: float, flip_angle_deg: float, tr_ms: float) -> float:
    """bSSFP steady-state signal (fraction of M0) at TE = TR/2, on resonance."""
    if t1_ms <= 0:
        return 0.0
    e1 = math.exp(-tr_ms / t1_ms)
    e2 = math.exp(-tr_ms / max(t2_ms, 1e-3))
    alpha = math.radians(flip_angle_deg)
    return (math.sin(alpha) * (1.0 - e1) * math.sqrt(e2)
            / (1.0 - (e1 - e2) * math.cos(alpha) - e1 * e2))


@dataclass(frozen=True, eq=False)
class CineSlice:
    """One synthetic bSSFP cine image of a short-axis slice at one cardiac phase.

    Attributes
    ----------
    image
        float32 (rows, cols) magnitude in scanner-like units (~0-1000).
    labels
        uint8 :class:`plugins.api.Label` values 0-3 (scar is not visible in cine).
    pixel_spacing
        (row, col) spacing in mm.
    level
        ``"basal"``, ``"mid"`` or ``"apical"``.
    phase
        Cardiac phase as a fraction of the RR interval (0 = end-diastole).
    trigger_time_ms
        Delay after the R wave (DICOM TriggerTime).
    position
        Long-axis position ``s``.
    centre_shift_mm
        Shift of the anatomy in the image (x, y).
    misregistration_mm
        In-plane displacement (x, y) relative to the matched LGE slice (breath-hold
        mismatch); (0, 0) when not matched.
    truth
        ``lv_blood_area_mm2``, ``myocardium_area_mm2``, ``rv_blood_area_mm2``,
        ``contraction``, ``phase``, ``trigger_time_ms``, ``long_axis_position``,
        ``misregistration_x_mm`` / ``_y_mm`` and mean image values per label.
    rendered
        Partial-volume fractions of the structures at this phase.
    heart
        The subject at rest (end-diastole).
    acquisition
        The series' imaging properties.
    """

    image: F32
    labels: npt.NDArray[np.uint8]
    pixel_spacing: tuple[float, float]
    level: str
    phase: float
    trigger_time_ms: float
    position: float
    centre_shift_mm: tuple[float, float]
    misregistration_mm: tuple[float, float]
    truth: dict[str, float]
    rendered: RenderedSlice
    heart: HeartCase
    acquisition: CineAcquisition

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))

    @property
    def field_strength_t(self) -> float:
        """Field strength the phantom simulates."""
        return float(self.heart.field_strength_t)


def _image(rng: np.random.Generator, rendered: RenderedSlice, case: HeartCase,
           acq: CineAcquisition) -> tuple[F32, float]:
    shape = rendered.labels.shape
    spacing = rendered.pixel_spacing
    t1 = case.tissues.native_t1_ms
    sigma_px = (3.0 / spacing[0], 3.0 / spacing[1])
    texture = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    texture /= float(texture.std()) or 1.0
    signal = np.zeros(shape, dtype=np.float32)
    for structure in Structure:
        frac = rendered.fractions[int(structure)]
        if not frac.any():
            continue
        tissue = STRUCTURE_TISSUE[structure]
        value = PROTON_DENSITY[tissue] * bssfp_signal(
            float(t1.get(tissue, 0.0)), T2_MS[tissue], acq.flip_angle_deg,
            acq.repetition_time_ms)
        amplitude = {Tissue.BLOOD: 0.05, Tissue.FAT: 0.05, Tissue.LUNG: 0.3}.get(tissue, 0.02)
        signal += frac * value * (1.0 + amplitude * texture)
    fraction = (min(1.0, spacing[0] / acq.acquired_resolution_mm[0]),
                min(1.0, spacing[1] / acq.acquired_resolution_mm[1]))
    window = kspace_window(shape, fraction)
    rows = shape[0]
    y = (np.arange(rows, dtype=np.float32) - rendered.lv_centre_px[0]) / (rows / 2.0)
    bias = (1.0 + acq.bias_amplitude * smooth_field(rng, shape, order=3)) * (
        1.0 + acq.bias_amplitude * (y[:, None] ** 2))
    bias = np.clip(bias, 0.3, None)
    image = lowpass(signal, window) * bias * acq.intensity_scale
    blood = PROTON_DENSITY[Tissue.BLOOD] * bssfp_signal(
        float(t1[Tissue.BLOOD]), T2_MS[Tissue.BLOOD], acq.flip_angle_deg,
        acq.repetition_time_ms) * acq.intensity_scale
    sigma = blood / acq.blood_snr
    noise = rng.normal(0.0, sigma, size=(2, *shape))
    out = np.clip(np.hypot(image + noise[0], noise[1]), 0.0, MAX_STORED)
    return out.astype(np.float32), float(sigma)


def make_cine_slice(
    rng: np.random.Generator,
    heart: HeartCase,
    *,
    level: str | float = "mid",
    phase: float = 0.0,
    shape: tuple[int, int] = (192, 192),
    pixel_spacing: tuple[float, float] = (1.6, 1.6),
    acquisition: CineAcquisition | None = None,
    centre_shift_mm: tuple[float, float] | None = None,
    misregistration_mm: tuple[float, float] = (0.0, 0.0),
) -> CineSlice:
    """Make one synthetic bSSFP cine image of a subject at a cardiac phase.

    Parameters
    ----------
    rng
        Random generator.
    heart
        The subject (its resting, end-diastolic geometry).
    level
        ``"basal"``, ``"mid"``, ``"apical"`` or a long-axis position in [0, 1).
    phase
        Fraction of the RR interval (0 = end-diastole, ~0.35 end-systole).
    shape, pixel_spacing
        Matrix and spacing (mm).
    acquisition
        Imaging properties; drawn if ``None``.
    centre_shift_mm
        Shift of the anatomy; chosen to keep the heart in view if ``None``.
    misregistration_mm
        Extra in-plane displacement (x, y) of the anatomy, e.g. a breath-hold mismatch
        against the matching LGE slice.

    Returns
    -------
    CineSlice
        Image, labels and truth.
    """
    acq = acquisition or sample_cine_acquisition(rng)
    rows, cols = int(shape[0]), int(shape[1])
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    base = centre_shift_mm if centre_shift_mm is not None else _fit_heart_in_view(
        heart, (rows, cols), spacing)
    shift = (float(base[0]) + float(misregistration_mm[0]),
             float(base[1]) + float(misregistration_mm[1]))
    position = heart.position(level)
    name = level if isinstance(level, str) else level_name(position)
    beating = heart_at_phase(heart, phase)
    rendered = render_slice(beating, position, (rows, cols), spacing, centre_shift_mm=shift)
    image, sigma = _image(rng, rendered, heart, acq)
    labels = rendered.labels
    area = spacing[0] * spacing[1]
    truth: dict[str, float] = {
        "lv_blood_area_mm2": float((labels == 1).sum() * area),
        "myocardium_area_mm2": float((labels == 2).sum() * area),
        "rv_blood_area_mm2": float((labels == 3).sum() * area),
        "contraction": contraction(phase),
        "phase": float(phase) % 1.0,
        "trigger_time_ms": float(round((float(phase) % 1.0) * acq.rr_ms, 1)),
        "long_axis_position": float(position),
        "misregistration_x_mm": float(misregistration_mm[0]),
        "misregistration_y_mm": float(misregistration_mm[1]),
        "noise_sd": sigma,
    }
    for label, key in ((1, "blood"), (2, "myocardium"), (3, "rv_blood")):
        mask = labels == label
        truth[f"{key}_mean"] = float(image[mask].mean()) if mask.any() else 0.0
    return CineSlice(
        image=image,
        labels=labels,
        pixel_spacing=spacing,
        level=name,
        phase=float(phase) % 1.0,
        trigger_time_ms=truth["trigger_time_ms"],
        position=float(position),
        centre_shift_mm=shift,
        misregistration_mm=(float(misregistration_mm[0]), float(misregistration_mm[1])),
        truth=truth,
        rendered=rendered,
        heart=heart,
        acquisition=acq,
    )


def matched_cine_stack(
    rng: np.random.Generator,
    lge_slices: Sequence[LgeSlice],
    *,
    phases: Sequence[float] | None = None,
    max_misregistration_mm: float = 4.0,
    acquisition: CineAcquisition | None = None,
    shape: tuple[int, int] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
) -> list[list[CineSlice]]:
    """Cine images matching an LGE stack: same subject and levels (and by default matrix and
    spacing).

    Parameters
    ----------
    rng
        Random generator.
    lge_slices
        The LGE stack (same heart, matrix and spacing for all slices).
    phases
        Cardiac phases (fractions of RR) per slice; default: end-diastole and the LGE
        trigger time (diastasis, same geometry as the LGE) and end-systole.
    max_misregistration_mm
        Largest in-plane breath-hold mismatch (drawn per slice, uniform in a disc).
    acquisition
        Imaging properties; drawn (with the LGE heart rate) if ``None``.
    shape, pixel_spacing
        The cine's own matrix and spacing; the LGE's if ``None``.  The field of view stays
        centred on the same point (the anatomy keeps its offset from the image centre in
        mm), as when a cine and an LGE stack share their slice centres.

    Returns
    -------
    list of list of CineSlice
        Per LGE slice, one cine slice per phase (in the order of ``phases``).
    """
    if not lge_slices:
        raise ValueError("No LGE slices to match")
    first = lge_slices[0]
    acq = acquisition or sample_cine_acquisition(rng, first.acquisition.heart_rate_bpm)
    if phases is None:
        lge_phase = first.acquisition.trigger_time_ms / acq.rr_ms
        phases = (0.0, END_SYSTOLE_PHASE, lge_phase)
    out = []
    for lge in lge_slices:
        radius = max_misregistration_mm * math.sqrt(float(rng.random()))
        angle = float(rng.uniform(0.0, 2.0 * np.pi))
        offset = (radius * math.cos(angle), radius * math.sin(angle))
        out.append([
            make_cine_slice(rng, lge.heart, level=lge.position, phase=phase,
                            shape=lge.shape if shape is None else shape,
                            pixel_spacing=lge.pixel_spacing if pixel_spacing is None
                            else pixel_spacing, acquisition=acq,
                            centre_shift_mm=lge.centre_shift_mm, misregistration_mm=offset)
            for phase in phases
        ])
    return out
