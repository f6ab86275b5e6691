"""Late gadolinium enhancement (LGE) phantoms: LGE slices and stacks, their truth, TI scouts.

An LGE slice is rendered from the same :class:`~models.phantoms.heart_geometry.HeartCase` as the
subject's T1 maps and cine images.  The subject's :class:`~models.phantoms.heart_geometry.Scar`
(ischaemic infarcts in coronary territories with microvascular obstruction, mid-wall
septal stripes, RV insertion-point enhancement, patchy hypertrophic fibrosis,
subepicardial myocarditis) is defined in the heart's own coordinates, so every slice of a
stack cuts the same three-dimensional scar.

Scar patterns are in :mod:`models.phantoms.lge_scar`, the acquisition and contrast model in
:mod:`models.phantoms.lge_acquisition`, image formation in :mod:`models.phantoms.lge_image`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import FloatArray
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.heart_rendering import RenderedSlice, render_slice
from models.phantoms.lge_acquisition import (
    Contrast,
    LgeAcquisition,
    inversion_recovery,
    sample_lge_acquisition,
)
from models.phantoms.lge_image import (
    F32,
    MAX_STORED,
    _coil_bias,
    _components,
    _labels,
    _reconstruct,
    _signal,
    _texture,
    _truth,
)
from models.phantoms.lge_scar import (
    ScarPattern,
    _heart_for_pattern,
    draw_scar_pattern,
    sample_scar,
)
from models.phantoms.scar_rendering import ScarFractions, render_scar, rv_insertion_angles
from models.phantoms.t1map_acquisition import _fit_heart_in_view
from models.phantoms.t1map_synthesis import kspace_window, lowpass
from models.phantoms.tissues import PROTON_DENSITY, Tissue, check_field_strength
from plugins.api import Label

__all__ = [
    "LgeSlice",
    "aha_segment_map",
    "lge_case_truth",
    "make_lge_slice",
    "make_lge_stack",
    "make_ti_scout",
    "stack_positions",
]

logger = logging.getLogger(__name__)


BASAL_END = 0.35
"""Long-axis position where AHA mid-ventricular segments begin."""
MID_END = 0.65
"""Long-axis position where AHA apical segments begin."""

STACK_RANGE = (0.06, 0.88)
"""Long-axis positions of the most basal and most apical slice of a default LGE stack."""


LGE_MATRICES: tuple[tuple[int, int], ...] = (
    (192, 256), (208, 256), (224, 256), (256, 256), (256, 208), (240, 256), (176, 224),
)
"""(rows, cols) reconstruction matrices of clinical 2-D LGE protocols."""


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
