"""Rendering of a heart case into per-structure partial-volume fractions of a short-axis slice.

:func:`render_slice` turns a :class:`~models.phantoms.heart_geometry.HeartCase` into
per-structure area fractions on a pixel grid for one short-axis level
(:class:`RenderedSlice`); contrast-specific modules (T1 maps, MOLLI source images, LGE and
cine) map those fractions to signal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import (
    _LABELS,
    MIN_FINE_PIXEL_MM,
    STRUCTURE_LABEL,
    STRUCTURE_TISSUE,
    FloatArray,
    LesionPattern,
    Structure,
)
from models.phantoms.heart_geometry import (
    _TABLE_THETA,
    Blob,
    Ellipse,
    HeartCase,
    Lesion,
    _table_index,
    _wrap,
)
from models.phantoms.tissues import Tissue
from plugins.api import Label


@dataclass(frozen=True)
class RenderedSlice:
    """Per-structure partial-volume fractions of one short-axis slice.

    Attributes
    ----------
    fractions
        float32 (n_structures, rows, cols): area fraction of each :class:`Structure`
        (indexed by its value) in each pixel; sums to 1 over the first axis.
    labels
        uint8 (rows, cols) :class:`plugins.api.Label` values: the label covering most of the
        pixel, with LV blood-pool pixels that touch anything but myocardium relabelled
        myocardium so that the myocardium always encloses the pool.
    lesion_fraction
        float32 (rows, cols): fraction of each pixel inside any focal lesion.
    lesion_rise_ms
        float32 (rows, cols): T1 rise of the lesion present in the pixel (0 elsewhere;
        where two lesions meet, the later one's).
    position
        Long-axis position ``s``.
    lv_centre_px
        LV centre (row, col) in pixel coordinates.
    pixel_spacing
        (row, col) spacing in mm.
    """

    fractions: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    lesion_fraction: npt.NDArray[np.float32]
    lesion_rise_ms: npt.NDArray[np.float32]
    position: float
    lv_centre_px: tuple[float, float]
    pixel_spacing: tuple[float, float]

    def fraction(self, *structures: Structure) -> npt.NDArray[np.float32]:
        """Summed fraction of the given structures."""
        return np.sum(self.fractions[[int(s) for s in structures]], axis=0)

    def tissue_fractions(self) -> dict[Tissue, npt.NDArray[np.float32]]:
        """Fraction of each tissue per pixel."""
        out: dict[Tissue, npt.NDArray[np.float32]] = {}
        for structure, tissue in STRUCTURE_TISSUE.items():
            frac = self.fractions[int(structure)]
            if tissue in out:
                out[tissue] = out[tissue] + frac
            else:
                out[tissue] = frac.copy()
        return out


Inside = Callable[[FloatArray, FloatArray], npt.NDArray[np.bool_]]


class _Canvas:
    """A supersampled structure-index image that shapes are painted onto in order."""

    def __init__(
        self, shape: tuple[int, int], spacing: tuple[float, float], supersample: int
    ) -> None:
        rows, cols = shape
        self.shape = shape
        self.ss = supersample
        dy, dx = spacing
        self.xs = ((np.arange(cols * supersample) + 0.5) / supersample) * dx - cols * dx / 2.0
        self.ys = ((np.arange(rows * supersample) + 0.5) / supersample) * dy - rows * dy / 2.0
        self.index = np.zeros((rows * supersample, cols * supersample), dtype=np.uint8)
        self.lesion_index = np.zeros_like(self.index)

    def window(
        self, bbox: tuple[float, float, float, float] | None
    ) -> tuple[slice, slice, FloatArray, FloatArray] | None:
        """Index window and sub-pixel coordinates (x, y) covering ``bbox``; None if empty."""
        if bbox is None:
            i0, i1, j0, j1 = 0, self.ys.size, 0, self.xs.size
        else:
            xmin, xmax, ymin, ymax = bbox
            j0 = int(np.searchsorted(self.xs, xmin))
            j1 = int(np.searchsorted(self.xs, xmax, side="right"))
            i0 = int(np.searchsorted(self.ys, ymin))
            i1 = int(np.searchsorted(self.ys, ymax, side="right"))
            if i0 >= i1 or j0 >= j1:
                return None
        x, y = np.meshgrid(self.xs[j0:j1], self.ys[i0:i1])
        return slice(i0, i1), slice(j0, j1), x, y

    def paint_mask(
        self,
        structure: Structure,
        rows: slice,
        cols: slice,
        mask: npt.NDArray[np.bool_],
        over: tuple[Structure, ...] | None = None,
    ) -> None:
        """Set ``structure`` where ``mask`` holds in a window (only over ``over`` if given)."""
        block = self.index[rows, cols]
        if over is not None:
            mask = mask & np.isin(block, np.array([int(s) for s in over], dtype=np.uint8))
        block[mask] = int(structure)

    def paint(
        self,
        structure: Structure,
        inside: Inside,
        bbox: tuple[float, float, float, float] | None = None,
        over: tuple[Structure, ...] | None = None,
    ) -> None:
        """Set ``structure`` on sub-pixels inside a shape (only over ``over`` if given)."""
        win = self.window(bbox)
        if win is None:
            return
        rows, cols, x, y = win
        self.paint_mask(structure, rows, cols, inside(x, y), over)

    def fractions(self, values: npt.NDArray[np.uint8] | None = None,
                  n_values: int = len(Structure)) -> npt.NDArray[np.float32]:
        """Area fraction of each value per pixel, shape (n_values, rows, cols)."""
        rows, cols = self.shape
        ss = self.ss
        index = self.index if values is None else values
        pixel = (np.arange(rows)[:, None, None, None] * cols
                 + np.arange(cols)[None, None, :, None])
        pixel = np.broadcast_to(pixel, (rows, ss, cols, ss)).reshape(index.shape)
        counts = np.bincount(
            (pixel.astype(np.int64) * n_values + index).ravel(),
            minlength=rows * cols * n_values,
        )
        return (
            counts.reshape(rows, cols, n_values).transpose(2, 0, 1).astype(np.float32)
            / float(ss * ss)
        )


def _local(
    x: FloatArray, y: FloatArray, centre: tuple[float, float], rotation: float
) -> tuple[FloatArray, FloatArray]:
    """Heart-local polar coordinates (radius, angle) of image points."""
    c, s = math.cos(rotation), math.sin(rotation)
    dx, dy = x - centre[0], y - centre[1]
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return np.hypot(u, v), np.arctan2(v, u)


def _to_image(
    radius: float, theta: float, centre: tuple[float, float], rotation: float
) -> tuple[float, float]:
    u, v = radius * math.cos(theta), radius * math.sin(theta)
    c, s = math.cos(rotation), math.sin(rotation)
    return centre[0] + c * u - s * v, centre[1] + s * u + c * v


def choose_supersample(pixel_spacing: tuple[float, float]) -> int:
    """Supersampling factor giving sub-pixels of at most ~0.55 mm (at least 3)."""
    return max(3, math.ceil(max(pixel_spacing) / MIN_FINE_PIXEL_MM))


def render_slice(
    case: HeartCase,
    level: str | float,
    shape: tuple[int, int],
    pixel_spacing: tuple[float, float],
    *,
    supersample: int | None = None,
    centre_shift_mm: tuple[float, float] = (0.0, 0.0),
) -> RenderedSlice:
    """Render one short-axis slice of a subject with partial-volume fractions.

    Parameters
    ----------
    case
        The subject.
    level
        ``"basal"``, ``"mid"``, ``"apical"`` or a long-axis position in [0, 1).
    shape
        (rows, cols) of the image.
    pixel_spacing
        (row, col) spacing in mm.
    supersample
        Sub-pixels per pixel along each axis; chosen from the spacing if ``None``.
    centre_shift_mm
        Extra shift of the whole anatomy (x, y) in mm, e.g. for keeping the heart in a
        small field of view or simulating breath-hold mismatch.

    Returns
    -------
    RenderedSlice
        Fractions, labels and lesion maps.

    Raises
    ------
    ValueError
        For a too small matrix, a non-positive spacing or an unknown level.
    """
    rows, cols = (int(shape[0]), int(shape[1]))
    if rows < 16 or cols < 16:
        raise ValueError(f"Image matrix {rows}x{cols} is too small for a short-axis slice")
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if min(spacing) <= 0:
        raise ValueError(f"Pixel spacing must be positive, got {spacing}")
    ss = supersample or choose_supersample(spacing)
    s = case.position(level)
    canvas = _Canvas((rows, cols), spacing, ss)
    shift = (float(centre_shift_mm[0]), float(centre_shift_mm[1]))
    _paint_body(canvas, case, s, shift)
    _paint_heart(canvas, case, s, shift)

    fractions = canvas.fractions()
    labels = _labels_from_fractions(fractions)
    lesion_fraction = np.zeros((rows, cols), dtype=np.float32)
    lesion_rise = np.zeros((rows, cols), dtype=np.float32)
    if case.lesions:
        per_lesion = canvas.fractions(canvas.lesion_index, len(case.lesions) + 1)
        for number, lesion in enumerate(case.lesions, start=1):
            lesion_fraction += per_lesion[number]
            lesion_rise = np.where(per_lesion[number] > 0, lesion.t1_rise_ms, lesion_rise)
    cx, cy = case.lv_centre(s)
    dy, dx = spacing
    lv_centre_px = (
        (cy + shift[1] + rows * dy / 2.0) / dy - 0.5,
        (cx + shift[0] + cols * dx / 2.0) / dx - 0.5,
    )
    return RenderedSlice(
        fractions=fractions,
        labels=labels,
        lesion_fraction=lesion_fraction,
        lesion_rise_ms=lesion_rise.astype(np.float32),
        position=s,
        lv_centre_px=lv_centre_px,
        pixel_spacing=spacing,
    )


def _paint_body(canvas: _Canvas, case: HeartCase, s: float, shift: tuple[float, float]) -> None:
    """Chest wall, lungs, bones, abdominal organs and great vessels."""

    def moved(e: Ellipse) -> Ellipse:
        return e.shifted(*shift)

    body = case.body
    outline = moved(body.outline)
    if body.breast is not None:
        breast = moved(body.breast)
        canvas.paint(Structure.SUBCUTANEOUS_FAT, breast.inside, breast.bbox())
    win = canvas.window(outline.bbox())
    if win is not None:
        rws, cls, x, y = win
        r, theta = outline.polar(x, y)
        border = outline.radius(_TABLE_THETA)[_table_index(theta)]
        # Layer depths vary between anterior, lateral and posterior (paraspinal) values.
        sin_t = np.sin(theta)
        def depth(values: tuple[float, float, float]) -> FloatArray:
            anterior, lateral, posterior = values
            return np.where(
                sin_t < 0,
                lateral + (anterior - lateral) * sin_t**2,
                lateral + (posterior - lateral) * sin_t**2,
            )
        fat = depth(body.fat_mm)
        muscle = depth(body.muscle_mm)
        canvas.paint_mask(Structure.SUBCUTANEOUS_FAT, rws, cls, r < border)
        canvas.paint_mask(Structure.SKELETAL_MUSCLE, rws, cls, r < border - fat)
        canvas.paint_mask(Structure.LUNG, rws, cls, r < border - fat - muscle)
    for bone in (body.sternum, *body.ribs, body.vertebra):
        b = moved(bone)
        canvas.paint(Structure.BONE_MARROW, b.inside, b.bbox())
    canal = moved(body.spinal_canal)
    canvas.paint(Structure.SPINAL_CANAL, canal.inside, canal.bbox())

    # Abdomen under the diaphragm (only inside the thoracic cavity).
    cavity = (Structure.LUNG,)
    liver = case.liver.at(s)
    if liver is not None:
        lv_e = moved(liver)
        canvas.paint(Structure.SKELETAL_MUSCLE, lambda x, y: lv_e.inside(x, y, 4.0),
                     lv_e.bbox(4.0), over=cavity)
        canvas.paint(Structure.LIVER, lv_e.inside, lv_e.bbox(),
                     over=(Structure.SKELETAL_MUSCLE,))
    if case.spleen is not None and (spleen := case.spleen.at(s)) is not None:
        sp_e = moved(spleen)
        canvas.paint(Structure.SKELETAL_MUSCLE, lambda x, y: sp_e.inside(x, y, 3.0),
                     sp_e.bbox(3.0), over=cavity)
        canvas.paint(Structure.SPLEEN, sp_e.inside, sp_e.bbox(),
                     over=(Structure.SKELETAL_MUSCLE,))
    if case.stomach is not None and (stomach := case.stomach.at(s)) is not None:
        st_e = moved(stomach)
        content = Structure.STOMACH_GAS if case.stomach_has_gas else Structure.STOMACH_FLUID
        canvas.paint(Structure.STOMACH_WALL, lambda x, y: st_e.inside(x, y, 4.0),
                     st_e.bbox(4.0), over=(*cavity, Structure.SKELETAL_MUSCLE))
        canvas.paint(content, st_e.inside, st_e.bbox(), over=(Structure.STOMACH_WALL,))
    aorta = moved(case.aorta)
    canvas.paint(Structure.DESCENDING_AORTA, aorta.inside, aorta.bbox())
    mediastinal = moved(case.mediastinal_fat)
    canvas.paint(Structure.MEDIASTINAL_FAT, mediastinal.inside, mediastinal.bbox(),
                 over=(*cavity, Structure.SKELETAL_MUSCLE))
    cx, cy = case.lv_centre(s)
    for vessel in case.vessels:
        ves = vessel.at((cx + shift[0], cy + shift[1]), s)
        canvas.paint(Structure.VESSEL, ves.inside, ves.bbox(), over=(vessel.host,))


_HEART_OVER: tuple[Structure, ...] = (
    Structure.LUNG, Structure.MEDIASTINAL_FAT, Structure.SKELETAL_MUSCLE, Structure.LIVER,
    Structure.DESCENDING_AORTA, Structure.STOMACH_WALL, Structure.SPLEEN,
    Structure.STOMACH_FLUID, Structure.STOMACH_GAS, Structure.SUBCUTANEOUS_FAT,
    Structure.VESSEL,
)
"""Structures the heart and its fat may displace (not bone, not air outside the body)."""


def _paint_heart(canvas: _Canvas, case: HeartCase, s: float, shift: tuple[float, float]
                 ) -> None:
    """Epicardial fat, RV, LV myocardium and cavity, papillary muscles, lesions."""
    cx, cy = case.lv_centre(s)
    centre = (cx + shift[0], cy + shift[1])
    rot = case.rotation_rad
    lv = case.lv
    rv = case.rv
    r_epi_mean = lv.mean_epi_radius(s)
    # Keep at least ~6 mm of RV cavity beyond the septum, even near the apex.
    r_septum = float(lv.epi_radius(np.array([np.pi]), s)[0])
    rv_scale = max(rv.scale(s), ((r_septum + 6.0) / r_epi_mean - rv.offset_x) / rv.axis_x)
    rv_centre = _to_image(
        r_epi_mean * math.hypot(rv.offset_x, rv.offset_y),
        math.atan2(-rv.offset_y, -rv.offset_x),
        centre,
        rot,
    )
    rv_blood = Ellipse(
        rv_centre[0], rv_centre[1],
        r_epi_mean * rv.axis_x * rv_scale, r_epi_mean * rv.axis_y * rv_scale,
        rot + rv.angle_rad, rv.irregularity,
    )
    reach = r_epi_mean * (1.0 + rv.offset_x + rv.axis_x) + 30.0
    win = canvas.window((centre[0] - reach, centre[0] + reach,
                         centre[1] - reach, centre[1] + reach))
    if win is None:
        return
    rws, cls, x, y = win
    r, theta = _local(x, y, centre, rot)
    idx = _table_index(theta)
    endo = lv.endo_radius(_TABLE_THETA, s)[idx]
    epi = lv.epi_radius(_TABLE_THETA, s)[idx]
    # Epicardial fat is patchy: thick in the grooves and over the RV, often absent laterally.
    fat_base = case.epicardial_fat_mm * (1.5 - s)
    groove = np.exp(-((_wrap(_TABLE_THETA - np.pi) / 1.0) ** 2))
    patchy = 0.3 + case.epicardial_fat_variation(_TABLE_THETA) + 0.8 * groove
    fat = np.clip(fat_base * patchy, 0.0, 15.0)[idx]
    rv_r, rv_theta = rv_blood.polar(x, y)
    rv_border = rv_blood.radius(_TABLE_THETA)[_table_index(rv_theta)]
    effusion = case.pericardial_effusion_mm
    if effusion > 0:
        canvas.paint_mask(Structure.PERICARDIAL_FLUID, rws, cls,
                          rv_r < rv_border + rv.wall_thickness_mm + fat + effusion,
                          over=_HEART_OVER)
        canvas.paint_mask(Structure.PERICARDIAL_FLUID, rws, cls, r < epi + fat + effusion,
                          over=_HEART_OVER)

    canvas.paint_mask(Structure.EPICARDIAL_FAT, rws, cls,
                      rv_r < rv_border + rv.wall_thickness_mm + fat, over=_HEART_OVER)
    canvas.paint_mask(Structure.EPICARDIAL_FAT, rws, cls, r < epi + fat, over=_HEART_OVER)
    canvas.paint_mask(Structure.RV_WALL, rws, cls, rv_r < rv_border + rv.wall_thickness_mm)
    canvas.paint_mask(Structure.RV_BLOOD, rws, cls, rv_r < rv_border)
    for blob in rv.trabeculae:
        if not blob.s_range[0] <= s <= blob.s_range[1]:
            continue
        bx, by = _to_image(
            r_epi_mean * (rv.offset_x + rv.axis_x * rv_scale * blob.radial_fraction) * 0.9,
            blob.angle_rad, centre, rot,
        )
        trab = Ellipse(bx, by, blob.radius_mm * blob.aspect, blob.radius_mm,
                       rot + blob.angle_rad + np.pi / 2)
        canvas.paint(Structure.RV_TRABECULAE, trab.inside, trab.bbox(),
                     over=(Structure.RV_BLOOD,))
    canvas.paint_mask(Structure.LV_MYOCARDIUM, rws, cls, r < epi)
    canvas.paint_mask(Structure.LV_BLOOD, rws, cls, r < endo)
    for blob in lv.papillary:
        _paint_lv_blob(canvas, case, blob, s, centre, _papillary_taper(s, blob.s_range))
    for blob in lv.trabeculae:
        _paint_lv_blob(canvas, case, blob, s, centre, 1.0)

    # Focal lesions re-label myocardium sub-pixels; remember which lesion for its T1.
    lesion_index = np.zeros_like(canvas.index)
    depth = (r - endo) / np.maximum(epi - endo, 1e-3)  # 0 endocardium .. 1 epicardium
    for number, lesion in enumerate(case.lesions, start=1):
        if not lesion.s_range[0] <= s <= lesion.s_range[1]:
            continue
        block = canvas.index[rws, cls]
        mask = _lesion_mask(lesion, theta, depth) & (block == int(Structure.LV_MYOCARDIUM))
        block[mask] = int(Structure.LV_LESION)
        lesion_index[rws, cls][mask] = number
    canvas.lesion_index = lesion_index


def _paint_lv_blob(canvas: _Canvas, case: HeartCase, blob: Blob, s: float,
                   centre: tuple[float, float], taper: float) -> None:
    if not blob.s_range[0] <= s <= blob.s_range[1]:
        return
    rot = case.rotation_rad
    r_endo_at = float(case.lv.endo_radius(np.array([blob.angle_rad]), s)[0])
    bx, by = _to_image(r_endo_at * blob.radial_fraction, blob.angle_rad, centre, rot)
    pm = Ellipse(bx, by, blob.radius_mm * taper * blob.aspect, blob.radius_mm * taper,
                 rot + blob.angle_rad)
    canvas.paint(Structure.PAPILLARY_MUSCLE, pm.inside, pm.bbox(), over=(Structure.LV_BLOOD,))


def _papillary_taper(s: float, s_range: tuple[float, float]) -> float:
    """Papillary muscles thin out towards both ends of their long-axis extent."""
    lo, hi = s_range
    mid = 0.5 * (lo + hi)
    half = max(0.5 * (hi - lo), 1e-3)
    return float(max(0.35, 1.0 - ((s - mid) / half) ** 2))


def _lesion_mask(lesion: Lesion, theta: FloatArray, depth: FloatArray
                 ) -> npt.NDArray[np.bool_]:
    """Sub-pixels of the myocardium (by angle and transmural depth) inside a lesion."""
    offset = np.abs(_wrap(theta - lesion.angle_rad))
    wobble = 1.0 + 0.25 * np.cos(3.0 * theta + lesion.angle_rad)
    circ = offset < lesion.half_width_rad * wobble
    tm = lesion.transmurality
    if lesion.pattern is LesionPattern.SUBENDOCARDIAL:
        radial = depth < tm * (1.0 - 0.5 * offset / lesion.half_width_rad)
    elif lesion.pattern is LesionPattern.TRANSMURAL:
        radial = depth < 2.0
    elif lesion.pattern is LesionPattern.MIDWALL:
        radial = np.abs(depth - 0.5) < 0.35 * tm
    else:
        radial = depth > 1.0 - tm
    return circ & radial


def _labels_from_fractions(fractions: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Majority label per pixel, then close the myocardial ring around the LV pool."""
    per_label = np.zeros((len(_LABELS), *fractions.shape[1:]), dtype=np.float32)
    for structure, label in STRUCTURE_LABEL.items():
        per_label[int(label)] += fractions[int(structure)]
    labels = np.argmax(per_label, axis=0).astype(np.uint8)
    lv = labels == Label.LV_BLOOD_POOL
    if lv.any():
        outside = (labels == Label.BACKGROUND) | (labels == Label.RV_BLOOD_POOL)
        touching = lv & ndimage.binary_dilation(outside, structure=np.ones((3, 3), bool))
        labels[touching] = Label.MYOCARDIUM
    return labels
