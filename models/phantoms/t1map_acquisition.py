"""Acquisition of native MOLLI T1-map phantoms: protocol, border realism, image geometry.

:func:`sample_t1map_acquisition` draws the imaging properties a map shows (acquired
resolution, motion, bias, off-resonance bands, noise, background handling),
:func:`sample_border_realism` the realism of the endocardial border (slice thickness,
trabecular layer, motion of the endocardium), :func:`sample_geometry` the matrix, pixel
spacing and field of view, and :func:`_fit_heart_in_view` keeps the heart in it.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

import numpy as np

from models.phantoms.heart_geometry import Blob, HeartCase
from models.phantoms.heart_rendering import RenderedSlice, render_slice
from models.phantoms.tissues import check_field_strength

__all__ = [
    "BackgroundMode",
    "BorderRealism",
    "T1MapAcquisition",
    "sample_border_realism",
    "sample_geometry",
    "sample_t1map_acquisition",
]


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
