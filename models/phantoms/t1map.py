"""Native MOLLI T1-map phantoms of short-axis slices, with exact labels and truth values.

A phantom slice is rendered from a :class:`~models.phantoms.heart_geometry.HeartCase` with
partial-volume fractions, turned into a T1 map in milliseconds by signal-weighted mixing of
the subject's tissue T1 values, then given what real MOLLI maps show: limited acquired
resolution (k-space truncation, Gibbs ringing and interpolation), breathing/motion blur,
a smooth bias, occasional off-resonance bands near the heart-lung interface, fitting
noise that grows where signal is low, and lung / air either masked to zero or filled with
fit noise.

Acquisition and geometry are drawn in :mod:`models.phantoms.t1map_acquisition`, the map
synthesized in :mod:`models.phantoms.t1map_synthesis`; MOLLI source images are in
:mod:`models.phantoms.molli_source`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.anatomy import LEVEL_POSITION_RANGES, LEVELS
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.heart_rendering import RenderedSlice, render_slice
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.t1map_acquisition import (
    BorderRealism,
    T1MapAcquisition,
    _border_rendered,
    _fit_heart_in_view,
    _with_trabecular_layer,
    sample_geometry,
    sample_t1map_acquisition,
)
from models.phantoms.t1map_synthesis import (
    F32,
    _midwall_map_t1,
    _t1_map,
    _truth,
)
from models.phantoms.tissues import check_field_strength

__all__ = [
    "HeartCase",
    "PhantomSlice",
    "make_heart_case",
    "make_t1map_slice",
    "make_t1map_stack",
]

logger = logging.getLogger(__name__)


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
