"""What one T1-map slice measured, and its measurements: the slice's numbers (core and blood
T1 samples, areas, wall thickness, ring closure, sector spread) and the T1 statistics of a
slice and of the series as :class:`~plugins.api.Measurement` objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from plugins.api import Code, Label, Measurement
from plugins.lib import codes
from plugins.t1map.polar import polar_sample

N_SECTORS: Final = 6
MIN_SECTOR_PIXELS: Final = 10


@dataclass
class SliceStats:
    """Numbers measured on one slice (before turning them into Measurements)."""

    frame_index: int
    labels: npt.NDArray[np.uint8]
    core: npt.NDArray[np.bool_]
    core_values: npt.NDArray[np.float64]
    blood_values: npt.NDArray[np.float64]
    myocardium_area_mm2: float
    lv_area_mm2: float
    wall_thickness_mm: float | None
    ring_closure: float
    uncertainty: float | None
    details: Mapping[str, Any]
    pixel_mm: float
    sector_spread_ms: float | None


def ray_wall_profile(
    labels: npt.NDArray[np.uint8],
    spacing: tuple[float, float],
    n_angles: int = 72,
) -> tuple[float, float | None]:
    """Ring closure and median wall thickness from rays cast from the LV centre.

    Returns
    -------
    tuple[float, float | None]
        Fraction of rays that cross myocardium, and the median myocardial thickness (mm)
        along those rays (``None`` when no ray does).
    """
    myocardium = labels == Label.MYOCARDIUM
    heart = myocardium | (labels == Label.LV_BLOOD_POOL)
    rr, cc = np.nonzero(heart)
    if rr.size == 0:
        return 0.0, None
    centre = (float(rr.mean() * spacing[0]), float(cc.mean() * spacing[1]))
    extent = float(np.hypot(np.ptp(rr) * spacing[0], np.ptp(cc) * spacing[1])) + 5.0
    step = 0.25 * min(spacing)
    radii = np.arange(0.0, extent, step)
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    hits = polar_sample(myocardium.astype(np.float64), centre, spacing, angles, radii, order=0)
    counts = (hits >= 0.5).sum(axis=1)
    crossed = counts > 0
    closure = float(np.mean(crossed))
    thickness = float(np.median(counts[crossed] * step)) if crossed.any() else None
    return closure, thickness


def sector_spread(
    t1: npt.NDArray[np.float32],
    core: npt.NDArray[np.bool_],
    labels: npt.NDArray[np.uint8],
    spacing: tuple[float, float],
) -> float | None:
    """Largest |sector mean - median sector mean| of the core over 60-degree sectors (ms)."""
    heart = (labels == Label.MYOCARDIUM) | (labels == Label.LV_BLOOD_POOL)
    rr, cc = np.nonzero(heart)
    if rr.size == 0 or not core.any():
        return None
    centre = (float(rr.mean() * spacing[0]), float(cc.mean() * spacing[1]))
    yy, xx = np.nonzero(core)
    angle = np.mod(np.arctan2(yy * spacing[0] - centre[0], xx * spacing[1] - centre[1]), 2 * np.pi)
    sector = np.minimum((angle / (2 * np.pi) * N_SECTORS).astype(int), N_SECTORS - 1)
    values = np.asarray(t1[yy, xx], dtype=np.float64)
    means = [
        float(values[sector == k].mean())
        for k in range(N_SECTORS)
        if np.count_nonzero(sector == k) >= MIN_SECTOR_PIXELS
    ]
    if len(means) < 3:
        return None
    middle = float(np.median(means))
    return max(abs(m - middle) for m in means)


def stat(values: npt.NDArray[np.float64], kind: str) -> float | None:
    """``kind`` ("mean", "median" or "sd") of ``values``; None without enough values."""
    if values.size == 0:
        return None
    if kind == "mean":
        return float(np.mean(values))
    if kind == "median":
        return float(np.median(values))
    if kind == "sd":
        return float(np.std(values, ddof=1)) if values.size > 1 else None
    raise ValueError(kind)


def t1_measurements(
    prefix: str,
    region: Label,
    values: npt.NDArray[np.float64],
    reason: str | None,
    statistics: Sequence[tuple[str, Code]] = (
        ("mean", codes.MEAN),
        ("median", codes.MEDIAN),
        ("sd", codes.STANDARD_DEVIATION),
    ),
) -> list[Measurement]:
    """T1 statistics of ``values`` as measurements ``<prefix>_t1_<kind>_ms``."""
    measurements: list[Measurement] = []
    for kind, derivation in statistics:
        value = stat(values, kind) if reason is None else None
        measurements.append(
            Measurement(
                key=f"{prefix}_t1_{kind}_ms",
                name=codes.T1,
                value=None if value is None else round(value, 2),
                unit=codes.UCUM_MILLISECOND,
                region=region,
                derivation=derivation,
                reason=reason
                if reason is not None
                else (None if value is not None else "too few pixels"),
            )
        )
    return measurements


def slice_t1_measurements(stats: SliceStats) -> tuple[Measurement, ...]:
    """The measurements of one slice: core and blood T1, core pixels, areas, wall thickness."""
    n_core = int(stats.core_values.size)
    core_reason = None if n_core > 0 else "no core pixels (wall too thin)"
    measurements = t1_measurements("myocardium", Label.MYOCARDIUM, stats.core_values, core_reason)
    measurements.append(
        Measurement(
            key="myocardium_core_pixels",
            name=codes.NUMBER_OF_PIXELS,
            value=float(n_core),
            unit=codes.UCUM_PIXELS,
            region=Label.MYOCARDIUM,
        )
    )
    measurements.append(
        Measurement(
            key="myocardium_area_mm2",
            name=codes.AREA,
            value=round(stats.myocardium_area_mm2, 1),
            unit=codes.UCUM_SQUARE_MILLIMETER,
            region=Label.MYOCARDIUM,
        )
    )
    measurements.append(
        Measurement(
            key="myocardium_wall_thickness_median_mm",
            name=codes.WALL_THICKNESS,
            value=None if stats.wall_thickness_mm is None else round(stats.wall_thickness_mm, 2),
            unit=codes.UCUM_MILLIMETER,
            region=Label.MYOCARDIUM,
            derivation=codes.MEDIAN,
            reason=None if stats.wall_thickness_mm is not None else "no ray crosses the wall",
        )
    )
    measurements.append(
        Measurement(
            key="lv_blood_pool_area_mm2",
            name=codes.AREA,
            value=round(stats.lv_area_mm2, 1),
            unit=codes.UCUM_SQUARE_MILLIMETER,
            region=Label.LV_BLOOD_POOL,
        )
    )
    blood_reason = None if stats.blood_values.size else "no LV blood pool found"
    measurements.extend(
        t1_measurements(
            "lv_blood",
            Label.LV_BLOOD_POOL,
            stats.blood_values,
            blood_reason,
            statistics=(("mean", codes.MEAN),),
        )
    )
    return tuple(measurements)


def series_t1_measurements(usable: Sequence[SliceStats]) -> tuple[Measurement, ...]:
    """Global T1 of the usable slices' cores and blood pools."""
    reason = None if usable else "no slice could be analysed"
    core = np.concatenate([s.core_values for s in usable]) if usable else np.empty(0, np.float64)
    blood = np.concatenate([s.blood_values for s in usable]) if usable else np.empty(0, np.float64)
    if reason is None and core.size == 0:
        reason = "no core pixels on any slice"
    measurements = t1_measurements("global_myocardium", Label.MYOCARDIUM, core, reason)
    measurements.append(
        Measurement(
            key="global_myocardium_core_pixels",
            name=codes.NUMBER_OF_PIXELS,
            value=float(core.size),
            unit=codes.UCUM_PIXELS,
            region=Label.MYOCARDIUM,
        )
    )
    blood_reason = None if blood.size else (reason or "no LV blood pool found")
    measurements.extend(
        t1_measurements(
            "global_lv_blood",
            Label.LV_BLOOD_POOL,
            blood,
            blood_reason,
            statistics=(("mean", codes.MEAN),),
        )
    )
    return tuple(measurements)
