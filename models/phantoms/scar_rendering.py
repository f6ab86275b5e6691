"""Late-enhancing scar in short-axis slices: RV insertion points and scar area fractions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.phantoms.heart_geometry import (
    _TABLE_THETA,
    Ellipse,
    HeartCase,
    _table_index,
    _wrap,
)
from models.phantoms.heart_rendering import (
    _Canvas,
    _local,
    _to_image,
    choose_supersample,
)


def rv_insertion_angles(case: HeartCase, s: float) -> tuple[float, float]:
    """Heart-local angles (rad) of the anterior and inferior RV insertion points at ``s``.

    They are the ends of the arc of the LV epicardium that the right ventricle (cavity and
    free wall) covers, found with the same RV shape that :func:`render_slice` draws.  The
    anterior point is returned in [-pi, 0), the inferior one in [0, pi).
    """
    lv = case.lv
    rv = case.rv
    r_epi_mean = lv.mean_epi_radius(s)
    r_septum = float(lv.epi_radius(np.array([np.pi]), s)[0])
    rv_scale = max(rv.scale(s), ((r_septum + 6.0) / r_epi_mean - rv.offset_x) / rv.axis_x)
    # Heart-local frame: LV centre at the origin, no rotation.
    rv_centre = _to_image(
        r_epi_mean * math.hypot(rv.offset_x, rv.offset_y),
        math.atan2(-rv.offset_y, -rv.offset_x), (0.0, 0.0), 0.0,
    )
    rv_outer = Ellipse(
        rv_centre[0], rv_centre[1], r_epi_mean * rv.axis_x * rv_scale,
        r_epi_mean * rv.axis_y * rv_scale, rv.angle_rad, rv.irregularity,
    )
    offsets = np.linspace(0.0, np.pi, 721)
    found = []
    for sign in (1.0, -1.0):  # +: towards anterior (theta past pi wraps to -pi), -: inferior
        theta = _wrap(np.pi + sign * offsets)
        radius = lv.epi_radius(theta, s) + 1.0
        covered = rv_outer.inside(radius * np.cos(theta), radius * np.sin(theta),
                                  rv.wall_thickness_mm)
        end = int(np.argmin(covered)) if not covered.all() else offsets.size - 1
        found.append(float(_wrap(np.array(np.pi + sign * offsets[max(end - 1, 0)]))))
    anterior, inferior = found
    if anterior >= 0.0:  # RV does not reach the epicardium: use typical positions
        anterior = -2.0 * np.pi / 3.0
    if inferior < 0.0 or inferior > np.pi - 1e-3:
        inferior = 2.0 * np.pi / 3.0
    return anterior, inferior


@dataclass(frozen=True)
class ScarFractions:
    """Partial-volume fractions of scar in one short-axis slice.

    Attributes
    ----------
    myocardium
        float32 (rows, cols): fraction of each pixel that is LV myocardium (scar included),
        the same sub-pixels :func:`render_slice` paints as LV myocardium or lesion.
    scar
        float32: fraction of each pixel that is scar (microvascular obstruction included).
    mvo
        float32: fraction of each pixel that is microvascular obstruction.
    scar_ecv
        float32: mean ECV of the scar sub-pixels in each pixel (0 without scar).
    """

    myocardium: npt.NDArray[np.float32]
    scar: npt.NDArray[np.float32]
    mvo: npt.NDArray[np.float32]
    scar_ecv: npt.NDArray[np.float32]


def render_scar(
    case: HeartCase,
    level: str | float,
    shape: tuple[int, int],
    pixel_spacing: tuple[float, float],
    *,
    supersample: int | None = None,
    centre_shift_mm: tuple[float, float] = (0.0, 0.0),
) -> ScarFractions:
    """Render the subject's scar on the pixel grid of :func:`render_slice`.

    Parameters are those of :func:`render_slice` (use the same values to get fractions
    that line up with its structures).

    Returns
    -------
    ScarFractions
        Myocardium, scar and microvascular-obstruction fractions and scar ECV.
    """
    rows, cols = (int(shape[0]), int(shape[1]))
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if min(spacing) <= 0:
        raise ValueError(f"Pixel spacing must be positive, got {spacing}")
    ss = supersample or choose_supersample(spacing)
    s = case.position(level)
    canvas = _Canvas((rows, cols), spacing, ss)
    cx, cy = case.lv_centre(s)
    centre = (cx + float(centre_shift_mm[0]), cy + float(centre_shift_mm[1]))
    lv = case.lv
    reach = float(np.max(lv.epi_radius(_TABLE_THETA, s))) + 2.0
    fine_myo = np.zeros(canvas.index.shape, dtype=np.float32)
    fine_scar = np.zeros_like(fine_myo)
    fine_mvo = np.zeros_like(fine_myo)
    fine_ecv = np.zeros_like(fine_myo)
    win = canvas.window((centre[0] - reach, centre[0] + reach,
                         centre[1] - reach, centre[1] + reach))
    if win is not None:
        rws, cls, x, y = win
        r, theta = _local(x, y, centre, case.rotation_rad)
        idx = _table_index(theta)
        endo = lv.endo_radius(_TABLE_THETA, s)[idx]
        epi = lv.epi_radius(_TABLE_THETA, s)[idx]
        myo = (r < epi) & (r >= endo)
        fine_myo[rws, cls] = myo
        if case.scar is not None and case.scar.regions and myo.any():
            depth = (r[myo] - endo[myo]) / np.maximum(epi[myo] - endo[myo], 1e-3)
            scar, mvo = case.scar.masks(theta[myo], depth, s)
            ecv = case.scar.region_ecv(theta[myo], depth, s)
            for target, values in ((fine_scar, scar), (fine_mvo, mvo),
                                   (fine_ecv, np.where(scar, ecv, 0.0))):
                block = np.zeros(myo.shape, dtype=np.float32)
                block[myo] = values
                target[rws, cls] = block

    def pool(fine: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return fine.reshape(rows, ss, cols, ss).mean(axis=(1, 3), dtype=np.float64).astype(
            np.float32)

    scar_fraction = pool(fine_scar)
    ecv_sum = pool(fine_ecv)
    scar_ecv = np.where(scar_fraction > 0, ecv_sum / np.maximum(scar_fraction, 1e-9), 0.0)
    return ScarFractions(
        myocardium=pool(fine_myo),
        scar=scar_fraction,
        mvo=pool(fine_mvo),
        scar_ecv=scar_ecv.astype(np.float32),
    )
