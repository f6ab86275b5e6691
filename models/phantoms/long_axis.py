"""Four-chamber long-axis native T1-map phantoms of the same subjects as the short-axis maps.

:func:`make_t1map_long_axis` renders a four-chamber view
(:func:`~models.phantoms.long_axis_rendering.render_long_axis`, where the long-axis anatomy
is described) and turns it into a native MOLLI T1 map with the short-axis maps' artefacts,
exact labels and truth values (:class:`LongAxisSlice`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.heart_geometry import HeartCase
from models.phantoms.long_axis_rendering import (
    F32,
    LongAxisGeometry,
    RenderedLongAxis,
    Wall,
    render_long_axis,
    sample_long_axis_geometry,
)
from models.phantoms.t1map import _resolve_case
from models.phantoms.t1map_acquisition import (
    T1MapAcquisition,
    sample_geometry,
    sample_t1map_acquisition,
)
from models.phantoms.t1map_synthesis import (
    _motion_blur,
    _off_resonance_band,
    _texture,
    acquire_map,
    partial_volume_map,
    smooth_field,
)
from plugins.api import Label

__all__ = [
    "VIEW_4CH",
    "LongAxisSlice",
    "make_t1map_long_axis",
]

logger = logging.getLogger(__name__)


VIEW_4CH = "4ch"
"""Level / view name of four-chamber long-axis slices."""


@dataclass(frozen=True, eq=False)
class LongAxisSlice:
    """One synthetic four-chamber native T1 map with exact labels and truth values.

    Attributes
    ----------
    t1_ms
        float32 (rows, cols): the map in ms, noise and artefacts included.
    labels
        uint8 (rows, cols) :class:`plugins.api.Label` values.
    walls
        uint8 (rows, cols) :class:`Wall` of each myocardium-labelled pixel.
    pixel_spacing
        (row spacing, col spacing) in mm.
    truth
        As for short-axis slices (:class:`~models.phantoms.t1map.PhantomSlice`) plus
        ``septal_t1_mean_ms``, ``lateral_t1_mean_ms``, ``apical_t1_mean_ms`` (means of
        ``t1_ms`` over each wall), ``septal_t1_true_ms``, ``lateral_t1_true_ms``
        (noise-free tissue values, septal-lateral gradient included, lesions excluded),
        ``septal_t1_noise_free_mean_ms``, ``lateral_t1_noise_free_mean_ms``,
        ``lv_length_mm``.
    t1_clean_ms, t1_noiseless_ms, signal
        As for :class:`~models.phantoms.t1map.PhantomSlice`.
    rendered
        Partial-volume fractions and heart coordinates.
    heart
        The subject.
    level
        Always :data:`VIEW_4CH`.
    """

    t1_ms: F32
    labels: npt.NDArray[np.uint8]
    walls: npt.NDArray[np.uint8]
    pixel_spacing: tuple[float, float]
    truth: dict[str, float]
    t1_clean_ms: F32
    t1_noiseless_ms: F32
    signal: F32
    rendered: RenderedLongAxis
    heart: HeartCase
    level: str = VIEW_4CH

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (int(self.t1_ms.shape[0]), int(self.t1_ms.shape[1]))

    @property
    def field_strength_t(self) -> float:
        """Field strength the phantom simulates."""
        return float(self.truth["field_strength_t"])


def _clean_map(rng: np.random.Generator, la: RenderedLongAxis, case: HeartCase
               ) -> tuple[F32, F32]:
    """Signal-weighted partial-volume T1 map and relative signal map of the view."""
    rendered = la.rendered
    texture = _texture(rng, rendered.labels.shape, rendered.pixel_spacing)
    # The short-axis maps add gradient/2 * -cos(angle): +gradient/2 in the septum, -gradient/2
    # in the lateral wall, which is what the septal-lateral line crosses; smooth at the apex.
    side = la.lateral_mm / np.sqrt(la.lateral_mm**2 + 9.0)
    gradient = (-0.5 * case.tissues.septal_lateral_gradient_ms * side).astype(np.float32)
    return partial_volume_map(rendered, case, texture, gradient)


def _t1_map(rng: np.random.Generator, la: RenderedLongAxis, case: HeartCase,
            acq: T1MapAcquisition) -> tuple[F32, F32, F32, F32, bool]:
    """Noisy, noiseless, clean and signal maps; whether there is an off-resonance band.

    The same chain as the short-axis maps of :mod:`models.phantoms.t1map`.
    """
    rendered = la.rendered
    clean, signal = _clean_map(rng, la, case)
    shape = clean.shape
    spacing = rendered.pixel_spacing
    image, blurred_signal = _motion_blur(clean, signal, acq, spacing)
    image = image * (1.0 + acq.bias_fraction * smooth_field(rng, shape))
    band = bool(rng.random() < acq.streak_probability)
    if band:
        image = image + _off_resonance_band(rng, rendered, dataclasses.replace(
            case, rotation_rad=0.0))
    noisy, image = acquire_map(rng, image, blurred_signal, case, acq, spacing)
    return noisy, image, clean, signal, band


def _mean(values: F32, mask: npt.NDArray[np.bool_]) -> float:
    return float(values[mask].mean()) if mask.any() else 0.0


def _truth(t1: F32, clean: F32, la: RenderedLongAxis, case: HeartCase) -> dict[str, float]:
    rendered = la.rendered
    labels = rendered.labels
    area = rendered.pixel_spacing[0] * rendered.pixel_spacing[1]
    myo = labels == Label.MYOCARDIUM
    lv = labels == Label.LV_BLOOD_POOL
    rv = labels == Label.RV_BLOOD_POOL
    lesion_px = myo & (rendered.lesion_fraction >= 0.5)
    lesion_t1 = 0.0
    if lesion_px.any():
        lesion_t1 = case.tissues.myocardium_t1_ms + float(
            np.mean(rendered.lesion_rise_ms[lesion_px]))
    myo_t1 = float(case.tissues.myocardium_t1_ms)
    half_gradient = 0.5 * float(case.tissues.septal_lateral_gradient_ms)
    septal = la.walls == Wall.SEPTAL
    lateral = la.walls == Wall.LATERAL
    apical = la.walls == Wall.APICAL
    theta = np.array([0.0, np.pi])
    return {
        "myocardium_t1_mean_ms": _mean(t1, myo),
        "myocardium_t1_sd_ms": float(t1[myo].std()) if myo.any() else 0.0,
        "myocardium_t1_true_ms": myo_t1,
        "myocardium_t1_noise_free_mean_ms": _mean(clean, myo),
        "blood_t1_mean_ms": _mean(t1, lv),
        "blood_t1_true_ms": float(case.tissues.blood_t1_ms),
        "myocardium_area_mm2": float(myo.sum() * area),
        "lv_blood_area_mm2": float(lv.sum() * area),
        "rv_blood_area_mm2": float(rv.sum() * area),
        "lesion_area_mm2": float(lesion_px.sum() * area),
        "lesion_t1_true_ms": lesion_t1,
        "wall_thickness_mm": float(np.mean(case.lv.wall_thickness(theta, 0.5))),
        "field_strength_t": float(case.field_strength_t),
        "haematocrit": float(case.tissues.haematocrit),
        "diffuse_rise_ms": float(case.tissues.diffuse_rise_ms),
        "long_axis_position": 0.5,
        "septal_t1_mean_ms": _mean(t1, septal),
        "lateral_t1_mean_ms": _mean(t1, lateral),
        "apical_t1_mean_ms": _mean(t1, apical),
        "septal_t1_true_ms": myo_t1 + half_gradient,
        "lateral_t1_true_ms": myo_t1 - half_gradient,
        "septal_t1_noise_free_mean_ms": _mean(clean, septal),
        "lateral_t1_noise_free_mean_ms": _mean(clean, lateral),
        "septal_area_mm2": float(septal.sum() * area),
        "lateral_area_mm2": float(lateral.sum() * area),
        "lv_length_mm": float(la.geometry.lv_length_mm),
    }


def _heart_offset(rng: np.random.Generator, case: HeartCase, geometry: LongAxisGeometry,
                  shape: tuple[int, int], spacing: tuple[float, float]) -> tuple[float, float]:
    """Random position of the mid-cavity that keeps LV, RV and atria in the field of view."""
    left, right, _, _ = case.heart_extent_mm()
    length = geometry.lv_length_mm
    top = 0.5 * length + 15.0  # apex and its cap
    bottom = 0.5 * length + 1.6 * max(geometry.la_half_length_mm, geometry.ra_half_length_mm)
    half_w = shape[1] * spacing[1] / 2.0
    half_h = shape[0] * spacing[0] / 2.0
    offsets = []
    for lo, hi, half in ((left, right, half_w), (top, bottom, half_h)):
        low, high = -half + lo, half - hi
        centre = 0.5 * (hi - lo) * -1.0
        if low >= high:
            offsets.append(centre)
        else:
            offsets.append(float(np.clip(rng.normal(centre, 12.0), low, high)))
    return (offsets[0], offsets[1])


def make_t1map_long_axis(
    rng: np.random.Generator,
    *,
    field_strength_t: float = 1.5,
    shape: tuple[int, int] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    heart: HeartCase | None = None,
    acquisition: T1MapAcquisition | None = None,
    geometry: LongAxisGeometry | None = None,
) -> LongAxisSlice:
    """Make one synthetic native T1 map of the four-chamber long-axis view of a subject.

    Parameters
    ----------
    rng
        Random generator; the same state gives the same map.
    field_strength_t
        1.5 or 3 (tesla).  Must match ``heart`` when one is given.
    shape, pixel_spacing
        (rows, cols) and (row, col) spacing in mm; drawn from clinical protocols if ``None``.
    heart
        The subject (e.g. the one of a short-axis stack); a new one is drawn if ``None``.
    acquisition
        Imaging properties (e.g. those of the short-axis series); drawn if ``None``.
    geometry
        LV length, RV apex and atrial sizes; drawn if ``None``.

    Returns
    -------
    LongAxisSlice
        The map, labels, wall map and truth.

    Raises
    ------
    ValueError
        For an unknown field strength, a heart of another field strength or a bad matrix.
    """
    case = _resolve_case(rng, field_strength_t, heart)
    (rows, cols), spacing = sample_geometry(rng, shape, pixel_spacing)
    acq = acquisition or sample_t1map_acquisition(rng, case.field_strength_t)
    shape_la = (rows, cols)
    geo = geometry or sample_long_axis_geometry(rng, case)
    offset = _heart_offset(rng, case, geo, shape_la, spacing)
    la = render_long_axis(case, geo, shape_la, spacing, offset_mm=offset)
    t1, noiseless, clean, signal, band = _t1_map(rng, la, case, acq)
    truth = _truth(t1, clean, la, case)
    truth["off_resonance_band"] = 1.0 if band else 0.0
    logger.debug("4ch phantom %dx%d: septum %.0f ms, lateral %.0f ms", rows, cols,
                 truth["septal_t1_mean_ms"], truth["lateral_t1_mean_ms"])
    return LongAxisSlice(
        t1_ms=t1, labels=la.rendered.labels, walls=la.walls, pixel_spacing=spacing,
        truth=truth, t1_clean_ms=clean, t1_noiseless_ms=noiseless, signal=signal,
        rendered=la, heart=case,
    )
