"""Matched short-axis cine for LGE slices: pairing, resampling and in-plane alignment.

A study often holds a short-axis bSSFP cine stack planned like the LGE stack.  For every
LGE slice the cine image at the same position and cardiac phase is found
(:func:`pair_cine_frames`): a cine frame qualifies when its plane is parallel to the LGE
slice and its centre lies within half a slice thickness of the LGE plane; of the qualifying
frames the one whose TriggerTime is nearest the LGE TriggerTime is used (LGE is read in
diastasis, where the heart has its resting, end-diastolic shape).

The cine frame is then resampled onto the LGE pixel grid through the DICOM patient geometry
of both frames (:func:`resample_to_frame`; the cine may have another matrix, spacing and
field-of-view centre) and aligned in-plane by a rigid translation
(:func:`register_translation`): breath-holds are rarely reproduced exactly, so the heart may
sit a few millimetres apart in the two acquisitions.  The registration maximises Mattes
mutual information (the contrasts differ: LGE nulls myocardium, cine shows it grey) with
SimpleITK over a disc around the image centre and is bounded to
:data:`MAX_SHIFT_MM`; a result at the bound or a failed optimisation keeps the geometric
(unshifted) alignment and says so.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import FloatImage, LoadedSeries, SourceFrame

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_SHIFT_MM",
    "PARALLEL_COSINE",
    "CineMatch",
    "CineUnmatched",
    "Registration",
    "UnmatchedReason",
    "align_cine",
    "pair_cine_frames",
    "register_translation",
    "resample_to_frame",
    "trigger_time",
]

MAX_SHIFT_MM: Final = 10.0
"""Largest in-plane translation accepted from the registration (along each axis)."""
PARALLEL_COSINE: Final = 0.99
"""Cine and LGE planes whose normals' cosine is at least this are parallel."""
DEFAULT_SLICE_THICKNESS_MM: Final = 8.0
"""Thickness assumed when the LGE frame has no SliceThickness."""
REGISTRATION_RADIUS_MM: Final = 100.0
"""The registration metric is evaluated within this radius of the LGE image centre."""
HISTOGRAM_BINS: Final = 32
SAMPLING_FRACTION: Final = 0.35
"""Fraction of the mask pixels sampled by the metric (fixed seed, reproducible)."""
REGISTRATION_SEED: Final = 20261122
REGISTRATION_THREADS: Final = 1
"""Threads of the registration (the node runs one analysis per worker thread)."""


class UnmatchedReason(enum.StrEnum):
    """Why an LGE slice has no matched cine image."""

    NO_CINE = "no cine series in the study"
    NOT_PARALLEL = "no cine frame parallel to the LGE slice"
    NO_POSITION = "no cine frame at this slice position"
    NO_TRIGGER_TIME = "the LGE slice has no TriggerTime"


@dataclass(frozen=True)
class CineMatch:
    """The cine frame paired with one LGE frame.

    Attributes
    ----------
    cine_index
        Index of the frame in the cine series.
    distance_mm
        Distance of the cine frame's centre from the LGE plane.
    trigger_time_ms
        TriggerTime of the cine frame (``None`` if absent).
    phase_difference_ms
        Absolute TriggerTime difference from the LGE frame (``None`` if either is absent).
    """

    cine_index: int
    distance_mm: float
    trigger_time_ms: float | None
    phase_difference_ms: float | None


@dataclass(frozen=True)
class CineUnmatched:
    """An LGE frame for which no cine frame qualified, and why."""

    reason: UnmatchedReason
    detail: str


@dataclass(frozen=True)
class Registration:
    """Result of the in-plane translation registration.

    Attributes
    ----------
    shift_mm
        Translation (row, column) in mm applied to the cine: the cine content at LGE pixel
        ``p`` is taken from ``p + shift`` of the geometrically resampled cine.
    metric
        Final (negative) Mattes mutual information; ``None`` if not evaluated.
    accepted
        ``False`` if the optimum reached :data:`MAX_SHIFT_MM` or the optimiser failed; then
        ``shift_mm`` is (0, 0).
    note
        Human-readable outcome.
    """

    shift_mm: tuple[float, float]
    metric: float | None
    accepted: bool
    note: str


def trigger_time(frame: SourceFrame) -> float | None:
    """TriggerTime of a frame in ms, or ``None`` when absent or unreadable."""
    value = frame.attributes.get("TriggerTime")
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _unit_normal(frame: SourceFrame) -> npt.NDArray[np.float64]:
    normal = np.asarray(frame.normal, dtype=np.float64)
    length = float(np.linalg.norm(normal))
    return normal / length if length > 0 else normal


def _frame_centre(frame: SourceFrame) -> npt.NDArray[np.float64]:
    rows, cols = np.asarray(frame.pixels).shape[:2]
    orientation = np.asarray(frame.image_orientation, dtype=np.float64)
    return (np.asarray(frame.image_position, dtype=np.float64)
            + (cols - 1) / 2.0 * frame.pixel_spacing[1] * orientation[:3]
            + (rows - 1) / 2.0 * frame.pixel_spacing[0] * orientation[3:])


def pair_cine_frames(lge: SourceFrame, cine: LoadedSeries
                     ) -> CineMatch | CineUnmatched:
    """The cine frame at the LGE frame's position and cardiac phase.

    Parameters
    ----------
    lge
        One LGE frame.
    cine
        The study's short-axis cine series (all slices and phases).

    Returns
    -------
    CineMatch or CineUnmatched
        The frame whose plane is parallel (normals' cosine >= :data:`PARALLEL_COSINE`),
        whose centre lies within half the LGE SliceThickness of the LGE plane and whose
        TriggerTime is nearest the LGE TriggerTime (ties: nearest position, then lowest
        index); otherwise the reason.
    """
    if not cine.frames:
        return CineUnmatched(UnmatchedReason.NO_CINE, "the cine series has no frames")
    normal = _unit_normal(lge)
    origin = _frame_centre(lge)
    half = 0.5 * float(lge.slice_thickness or DEFAULT_SLICE_THICKNESS_MM)
    lge_time = trigger_time(lge)
    parallel = 0
    nearest = math.inf
    best: tuple[float, float, int] | None = None
    best_match: CineMatch | None = None
    for index, frame in enumerate(cine.frames):
        if abs(float(np.dot(_unit_normal(frame), normal))) < PARALLEL_COSINE:
            continue
        parallel += 1
        distance = abs(float(np.dot(_frame_centre(frame) - origin, normal)))
        nearest = min(nearest, distance)
        if distance > half:
            continue
        time = trigger_time(frame)
        difference = (abs(time - lge_time) if time is not None and lge_time is not None
                      else None)
        key = (math.inf if difference is None else difference, distance, index)
        if best is None or key < best:
            best = key
            best_match = CineMatch(index, distance, time, difference)
    if best_match is not None:
        return best_match
    if not parallel:
        return CineUnmatched(UnmatchedReason.NOT_PARALLEL,
                             f"none of the {len(cine.frames)} cine frames is parallel to the "
                             "LGE slice")
    return CineUnmatched(UnmatchedReason.NO_POSITION,
                         f"the nearest parallel cine frame is {nearest:.1f} mm from the LGE "
                         f"plane (accepted: {half:.1f} mm, half the slice thickness)")


def resample_to_frame(
    pixels: FloatImage,
    source_position: Sequence[float],
    source_orientation: Sequence[float],
    source_spacing: tuple[float, float],
    target_shape: tuple[int, int],
    target_position: Sequence[float],
    target_orientation: Sequence[float],
    target_spacing: tuple[float, float],
    cval: float | None = None,
) -> FloatImage:
    """An image linearly resampled onto another frame's pixel grid via patient coordinates.

    Every target pixel centre is projected onto the source plane (the frames are assumed
    parallel; the through-plane offset is ignored).

    Parameters
    ----------
    pixels
        Source image (rows, cols).
    source_position, source_orientation, source_spacing
        ImagePositionPatient, ImageOrientationPatient and PixelSpacing (row, col) of the
        source.
    target_shape, target_position, target_orientation, target_spacing
        The same for the target grid.
    cval
        Value outside the source; the median of the source border if ``None``.

    Returns
    -------
    numpy.ndarray
        float32 ``target_shape`` image.
    """
    source = np.asarray(pixels, dtype=np.float32)
    s_orient = np.asarray(source_orientation, dtype=np.float64)
    t_orient = np.asarray(target_orientation, dtype=np.float64)
    s_row, s_col = s_orient[:3], s_orient[3:]
    t_row, t_col = t_orient[:3], t_orient[3:]
    delta = np.asarray(target_position, dtype=np.float64) - np.asarray(source_position,
                                                                        dtype=np.float64)
    # Target pixel (r, c) -> patient P = Pt + c*dc*t_row + r*dr*t_col; source (r', c'):
    # c' = (P - Ps).s_row / dc', r' = (P - Ps).s_col / dr'.
    matrix = np.array([
        [target_spacing[0] * float(np.dot(t_col, s_col)) / source_spacing[0],
         target_spacing[1] * float(np.dot(t_row, s_col)) / source_spacing[0]],
        [target_spacing[0] * float(np.dot(t_col, s_row)) / source_spacing[1],
         target_spacing[1] * float(np.dot(t_row, s_row)) / source_spacing[1]],
    ])
    offset = np.array([float(np.dot(delta, s_col)) / source_spacing[0],
                       float(np.dot(delta, s_row)) / source_spacing[1]])
    if cval is None:
        border = np.concatenate([source[0], source[-1], source[:, 0], source[:, -1]])
        cval = float(np.median(border))
    out = ndimage.affine_transform(source, matrix, offset, output_shape=target_shape, order=1,
                                   cval=cval)
    return np.asarray(out, dtype=np.float32)


def _robust_unit(image: FloatImage) -> npt.NDArray[np.float32]:
    values = np.nan_to_num(np.asarray(image, dtype=np.float32))
    lo, hi = np.percentile(values[::2, ::2], (1.0, 99.0))
    span = float(hi - lo) or 1.0
    return np.clip((values - float(lo)) / span, -1.0, 3.0).astype(np.float32)


def register_translation(
    fixed: FloatImage,
    moving: FloatImage,
    pixel_spacing: tuple[float, float],
    max_shift_mm: float = MAX_SHIFT_MM,
) -> Registration:
    """In-plane translation aligning ``moving`` (a cine on the LGE grid) to ``fixed`` (LGE).

    Parameters
    ----------
    fixed, moving
        Images on the same grid (rows, cols), any intensity units.
    pixel_spacing
        (row, col) spacing in mm.
    max_shift_mm
        Bound on the translation along each axis; an optimum at or beyond it is rejected.

    Returns
    -------
    Registration
        The translation (row, col) in mm, or (0, 0) with ``accepted = False``.
    """
    import SimpleITK as sitk  # noqa: N813 (the library's documented alias)

    shape = np.asarray(fixed).shape
    if np.asarray(moving).shape != shape:
        raise ValueError(f"fixed {shape} and moving {np.asarray(moving).shape} differ in shape")
    spacing_xy = (float(pixel_spacing[1]), float(pixel_spacing[0]))

    def image(values: FloatImage) -> Any:
        img = sitk.GetImageFromArray(_robust_unit(values).astype(np.float32))
        img.SetSpacing(spacing_xy)
        return img

    fixed_img, moving_img = image(fixed), image(moving)
    rows, cols = shape
    yy = (np.arange(rows) - (rows - 1) / 2.0) * pixel_spacing[0]
    xx = (np.arange(cols) - (cols - 1) / 2.0) * pixel_spacing[1]
    disc = (yy[:, None] ** 2 + xx[None, :] ** 2) <= REGISTRATION_RADIUS_MM**2
    mask = sitk.GetImageFromArray(disc.astype(np.uint8))
    mask.SetSpacing(spacing_xy)

    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(REGISTRATION_THREADS)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
    method.SetMetricFixedMask(mask)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING_FRACTION, REGISTRATION_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=0.02, numberOfIterations=120,
        gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(sitk.TranslationTransform(2), inPlace=False)
    try:
        result = method.Execute(fixed_img, moving_img)
        metric = float(method.GetMetricValue())
    except RuntimeError as exc:
        logger.warning("cine registration failed: %s", exc)
        return Registration((0.0, 0.0), None, False,
                            f"registration failed ({exc}); geometric alignment kept")
    tx, ty = (float(v) for v in result.GetParameters())
    shift = (ty, tx)
    if max(abs(shift[0]), abs(shift[1])) >= max_shift_mm:
        return Registration(
            (0.0, 0.0), metric, False,
            f"registration optimum ({shift[0]:+.1f}, {shift[1]:+.1f}) mm reached the "
            f"{max_shift_mm:g} mm bound; geometric alignment kept")
    return Registration((round(shift[0], 3), round(shift[1], 3)), metric, True,
                        f"translation ({shift[0]:+.1f}, {shift[1]:+.1f}) mm")


def shift_image(image: FloatImage, shift_mm: tuple[float, float],
                pixel_spacing: tuple[float, float]) -> FloatImage:
    """``image`` sampled at ``p + shift`` (linear; outside: the border median)."""
    values = np.asarray(image, dtype=np.float32)
    if shift_mm == (0.0, 0.0):
        return values
    border = np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])
    out = ndimage.shift(values, (-shift_mm[0] / pixel_spacing[0],
                                 -shift_mm[1] / pixel_spacing[1]),
                        order=1, cval=float(np.median(border)))
    return np.asarray(out, dtype=np.float32)


def align_cine(lge: FloatImage, cine_on_grid: FloatImage, pixel_spacing: tuple[float, float],
               max_shift_mm: float = MAX_SHIFT_MM) -> tuple[FloatImage, Registration]:
    """A cine already on the LGE grid, translated onto the LGE anatomy.

    Returns
    -------
    aligned, registration
        The translated cine (unchanged if the registration was not accepted) and the
        registration outcome.
    """
    registration = register_translation(lge, cine_on_grid, pixel_spacing, max_shift_mm)
    return shift_image(cine_on_grid, registration.shift_mm, pixel_spacing), registration
