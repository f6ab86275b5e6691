"""Rendering of four-chamber long-axis views of the short-axis subjects: geometry, rows, labels.

The anatomy (:mod:`models.phantoms.heart_geometry`) describes a subject as a stack of
short-axis cross-sections along the LV long axis (position ``s``: 0 mitral annulus, 1 apex).  The
four-chamber plane contains the LV long axis and the heart-local septal-lateral direction,
so every image row of a four-chamber view at long-axis position ``s`` is the line through
the LV centre of the short-axis cross-section at ``s`` along that direction.  Each row is
rendered by painting exactly the structures of :func:`~models.phantoms.heart_rendering.render_slice`
onto that line (supersampled for partial volume); rows are then turned into a T1 map with the
tissue T1 values, texture, motion blur, bias, off-resonance bands, limited resolution, fitting
noise and background handling of :mod:`models.phantoms.t1map`.

What the short-axis model does not describe is added here and is labelled background:

* **Atria** beyond the mitral plane (``s < 0``): left and right atria as half-ellipsoids of
  blood (painted as :attr:`~models.phantoms.anatomy.Structure.VESSEL`, blood T1) with 2 mm
  walls (painted as :attr:`~models.phantoms.anatomy.Structure.RV_WALL`: myocardial T1,
  background label) sharing the interatrial septum, and atrioventricular-groove fat.  The
  LV blood-pool label stops at the mitral plane, as in annotated long-axis data sets.
* **Apical cap** beyond the end of the cavity (``s >= 1``): myocardium closing the LV with
  the apical wall thickness, covered by epicardial fat.
* **Right-ventricular apex**: the RV cavity along the septal line tapers to nothing at a
  subject-specific ``s`` of 0.8–0.95 (the RV is shorter than the LV).
* **The LV length** (mitral annulus to endocardial apex) is not part of
  :class:`~models.phantoms.heart_geometry.HeartCase`; it is drawn from the basal cavity diameter
  and a sphericity index (diameter / length) per phenotype (about 0.5–0.65 normal,
  0.65–0.85 dilated; Ambale-Venkatesh B et al., Circ Cardiovasc Imaging 2010;3:164 and
  Mannaerts HF et al., Eur Heart J 2004;25:680 give LV sphericity indices of that order).

The chest beyond the heart is the short-axis chest cross-section at the row's ``s``
(clamped to ``[-0.5, 1.5]``), so lungs, chest wall and mediastinal fat run along the long
axis; spine and descending aorta appear only where the septal-lateral line crosses them.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import STRUCTURE_LABEL, Phenotype, Structure
from models.phantoms.heart_geometry import _TABLE_THETA, Ellipse, Harmonics, HeartCase
from models.phantoms.heart_rendering import (
    Inside,
    RenderedSlice,
    _Canvas,
    _paint_body,
    _paint_heart,
    choose_supersample,
)
from plugins.api import Label

__all__ = [
    "APICAL_START",
    "LongAxisGeometry",
    "Wall",
    "render_long_axis",
    "sample_long_axis_geometry",
]


F32 = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]


APICAL_START = 2.0 / 3.0
"""Long-axis position where the apical third (and its wall label) begins (AHA thirds)."""

BODY_S_RANGE = (-0.5, 1.5)
"""Range the chest cross-section's long-axis position is clamped to."""

ATRIAL_WALL_MM = 2.0
AV_GROOVE_MM = 8.0
"""Extent beyond the mitral plane of the atrioventricular-groove fat."""

# Sphericity index (basal cavity diameter / LV length) per phenotype.
_SPHERICITY: dict[Phenotype, tuple[float, float]] = {
    Phenotype.NORMAL: (0.5, 0.65),
    Phenotype.DILATED: (0.65, 0.85),
    Phenotype.CONCENTRIC_HYPERTROPHY: (0.5, 0.65),
    Phenotype.SEPTAL_HYPERTROPHY: (0.5, 0.65),
    Phenotype.SMALL: (0.5, 0.62),
}

_LV_STRUCTURES = (Structure.LV_BLOOD, Structure.PAPILLARY_MUSCLE, Structure.LV_MYOCARDIUM,
                  Structure.LV_LESION)
_RV_CAVITY = (Structure.RV_BLOOD, Structure.RV_TRABECULAE)
_OUTER_FAT = (Structure.EPICARDIAL_FAT, Structure.PERICARDIAL_FLUID)
_ATRIUM_OVER = (
    Structure.LUNG, Structure.MEDIASTINAL_FAT, Structure.SKELETAL_MUSCLE, Structure.LIVER,
    Structure.DESCENDING_AORTA, Structure.STOMACH_WALL, Structure.SPLEEN,
    Structure.STOMACH_FLUID, Structure.STOMACH_GAS, Structure.SUBCUTANEOUS_FAT,
    Structure.VESSEL, Structure.EPICARDIAL_FAT, Structure.PERICARDIAL_FLUID,
    Structure.RV_WALL,
)
"""Structures atria and groove fat may displace (not bone, not air outside the body)."""


class Wall(enum.IntEnum):
    """LV wall of a myocardial pixel in a four-chamber view."""

    NONE = 0
    SEPTAL = 1
    LATERAL = 2
    APICAL = 3


@dataclass(frozen=True)
class LongAxisGeometry:
    """Subject-specific long-axis shape not described by the short-axis anatomy.

    Attributes
    ----------
    lv_length_mm
        Mitral annulus to endocardial apex along the LV long axis.
    rv_end
        Long-axis position where the RV cavity along the septum ends.
    la_half_width_mm, la_half_length_mm
        Left-atrial semi-axes across and along the long axis.
    ra_half_width_mm, ra_half_length_mm
        Right-atrial semi-axes.
    """

    lv_length_mm: float
    rv_end: float
    la_half_width_mm: float
    la_half_length_mm: float
    ra_half_width_mm: float
    ra_half_length_mm: float


def sample_long_axis_geometry(rng: np.random.Generator, case: HeartCase) -> LongAxisGeometry:
    """Draw the LV length, RV apex and atrial sizes of a subject.

    The LV length follows from the basal cavity diameter and a sphericity index of the
    subject's phenotype.
    """
    basal_diameter = 2.0 * float(np.mean(case.lv.endo_radius(
        np.array([0.0, np.pi / 2, np.pi, -np.pi / 2]), 0.0)))
    low, high = _SPHERICITY[case.phenotype]
    length = float(np.clip(basal_diameter / rng.uniform(low, high), 60.0, 130.0))
    big = 1.2 if case.phenotype is Phenotype.DILATED else 1.0
    return LongAxisGeometry(
        lv_length_mm=length,
        rv_end=float(rng.uniform(0.8, 0.95)),
        la_half_width_mm=float(rng.uniform(18.0, 26.0)) * big,
        la_half_length_mm=float(rng.uniform(20.0, 30.0)) * big,
        ra_half_width_mm=float(rng.uniform(17.0, 25.0)) * big,
        ra_half_length_mm=float(rng.uniform(20.0, 30.0)) * big,
    )


class _TabulatedHarmonics(Harmonics):
    """:class:`Harmonics` that remembers its values on the renderer's table of angles.

    Rendering a view calls the same perturbations on that table for every row; the values
    are identical, only computed once.
    """

    def __init__(self, harmonics: Harmonics) -> None:
        super().__init__(harmonics.terms)
        table = Harmonics.__call__(harmonics, _TABLE_THETA)
        table.flags.writeable = False
        object.__setattr__(self, "_table", table)

    def __call__(self, theta: FloatArray) -> FloatArray:
        if theta is _TABLE_THETA:
            table: FloatArray = self.__dict__["_table"]
            return table
        return super().__call__(theta)


def _tabulated(case: HeartCase) -> HeartCase:
    """The same subject with the shape perturbations of its heart and chest tabulated."""
    lv = dataclasses.replace(
        case.lv,
        endo_irregularity=_TabulatedHarmonics(case.lv.endo_irregularity),
        epi_irregularity=_TabulatedHarmonics(case.lv.epi_irregularity),
        wall_variation=_TabulatedHarmonics(case.lv.wall_variation),
    )
    rv = dataclasses.replace(case.rv, irregularity=_TabulatedHarmonics(case.rv.irregularity))
    outline = dataclasses.replace(
        case.body.outline, irregularity=_TabulatedHarmonics(case.body.outline.irregularity))
    return dataclasses.replace(
        case, lv=lv, rv=rv, body=dataclasses.replace(case.body, outline=outline),
        epicardial_fat_variation=_TabulatedHarmonics(case.epicardial_fat_variation))


class _LineCanvas(_Canvas):
    """A supersampled canvas of one image row: sub-pixels along a line in a short-axis plane.

    ``along`` are the positions (mm) of the sub-pixels along the line from ``origin`` in
    direction ``direction``; painting tests the short-axis plane coordinates of those points.
    """

    def __init__(self, along: FloatArray, origin: tuple[float, float],
                 direction: tuple[float, float]) -> None:
        self.shape = (1, along.size)
        self.ss = 1
        self.xs = origin[0] + along * direction[0]
        self.ys = origin[1] + along * direction[1]
        self.index = np.zeros((1, along.size), dtype=np.uint8)
        self.lesion_index = np.zeros_like(self.index)

    def window(
        self, bbox: tuple[float, float, float, float] | None
    ) -> tuple[slice, slice, FloatArray, FloatArray] | None:
        """Index window and plane coordinates of the sub-pixels inside ``bbox``."""
        if bbox is None:
            j0, j1 = 0, self.xs.size
        else:
            xmin, xmax, ymin, ymax = bbox
            inside = np.flatnonzero((self.xs >= xmin) & (self.xs <= xmax)
                                    & (self.ys >= ymin) & (self.ys <= ymax))
            if inside.size == 0:
                return None
            j0, j1 = int(inside[0]), int(inside[-1]) + 1  # a line meets a box in one piece
        return slice(0, 1), slice(j0, j1), self.xs[None, j0:j1], self.ys[None, j0:j1]

    def paint(
        self,
        structure: Structure,
        inside: Inside,
        bbox: tuple[float, float, float, float] | None = None,
        over: tuple[Structure, ...] | None = None,
    ) -> None:
        """As :meth:`_Canvas.paint`; ellipse borders are evaluated at the points themselves.

        (The short-axis canvas looks borders up in a table of 4096 angles, which costs more
        than the few hundred points of a line.)
        """
        owner = getattr(inside, "__self__", None)
        if isinstance(owner, Ellipse) and getattr(inside, "__func__", None) is Ellipse.inside:
            ellipse = owner

            def exact(x: FloatArray, y: FloatArray) -> npt.NDArray[np.bool_]:
                r, theta = ellipse.polar(x, y)
                return r < ellipse.radius(theta)

            inside = exact
        super().paint(structure, inside, bbox, over)


def _paint_interval(row: npt.NDArray[np.uint8], along: FloatArray, lo: float, hi: float,
                    structure: Structure, over: tuple[Structure, ...]) -> None:
    mask = (along >= lo) & (along < hi)
    mask &= np.isin(row, np.array([int(s) for s in over], dtype=np.uint8))
    row[mask] = int(structure)


def _taper_rv(row: npt.NDArray[np.uint8], centre: int, keep_cavity: float,
              keep_wall: bool) -> None:
    """Shorten the RV cavity (and optionally wall) on the septal side of one row in place.

    Sub-pixels run from septal (index 0) to lateral; ``centre`` is the LV centre.  The RV
    cavity run next to the septum is resampled to ``keep_cavity`` of its length, the wall
    and epicardial fat beyond it move inwards, and the structure outside fills the rest.
    """
    j = centre
    while j >= 0 and row[j] in _LV_STRUCTURE_VALUES:
        j -= 1
    if j < 0:
        return
    end = j  # first sub-pixel outside the septum, runs go towards index 0
    runs = []
    for members in (_RV_CAVITY_VALUES, {int(Structure.RV_WALL)}, _OUTER_FAT_VALUES):
        start = j
        while j >= 0 and row[j] in members:
            j -= 1
        runs.append(row[j + 1:start + 1][::-1].copy())
    cavity, wall, fat = runs
    if cavity.size == 0 or j < 0:
        return
    filler = row[j]
    n_cavity = round(cavity.size * keep_cavity)
    kept = cavity[np.linspace(0, cavity.size - 1, n_cavity).round().astype(int)] if (
        n_cavity) else cavity[:0]
    new = np.concatenate([kept, wall if keep_wall else wall[:0], fat])
    segment = np.full(end - j, filler, dtype=np.uint8)
    segment[:new.size] = new
    row[j + 1:end + 1] = segment[::-1]


_LV_STRUCTURE_VALUES = frozenset(int(s) for s in _LV_STRUCTURES)
_RV_CAVITY_VALUES = frozenset(int(s) for s in _RV_CAVITY)
_OUTER_FAT_VALUES = frozenset(int(s) for s in _OUTER_FAT)


@dataclass(frozen=True)
class RenderedLongAxis:
    """Partial-volume fractions of a four-chamber view and its heart coordinates.

    Attributes
    ----------
    rendered
        Fractions, labels and lesion maps as for a short-axis slice (``position`` 0.5,
        ``lv_centre_px`` the LV centre at mid-ventricle).
    position
        float32 (rows,): long-axis position ``s`` of each image row.
    lateral_mm
        float32 (rows, cols): signed distance (mm) from the LV long axis along the
        septal (negative) to lateral (positive) direction.
    walls
        uint8 (rows, cols) :class:`Wall` of each myocardium-labelled pixel.
    geometry
        The subject's long-axis shape.
    """

    rendered: RenderedSlice
    position: F32
    lateral_mm: F32
    walls: npt.NDArray[np.uint8]
    geometry: LongAxisGeometry


def render_long_axis(
    case: HeartCase,
    geometry: LongAxisGeometry,
    shape: tuple[int, int],
    pixel_spacing: tuple[float, float],
    *,
    offset_mm: tuple[float, float] = (0.0, 0.0),
    supersample: int | None = None,
) -> RenderedLongAxis:
    """Render the four-chamber plane of a subject with partial-volume fractions.

    The image shows the apex at the top and the atria at the bottom, the LV lateral wall on
    the image right and the septum and RV on the left (the usual display).

    Parameters
    ----------
    case
        The subject.
    geometry
        Its long-axis shape (:func:`sample_long_axis_geometry`).
    shape
        (rows, cols) of the image.
    pixel_spacing
        (row, col) spacing in mm.
    offset_mm
        Position (x right, y down) of the middle of the heart (LV mid-cavity) relative to
        the centre of the field of view.
    supersample
        Sub-pixels per pixel along each axis; chosen from the spacing if ``None``.

    Returns
    -------
    RenderedLongAxis
        Fractions, labels, per-row positions and the wall map.

    Raises
    ------
    ValueError
        For a too small matrix or a non-positive spacing.
    """
    rows, cols = (int(shape[0]), int(shape[1]))
    if rows < 16 or cols < 16:
        raise ValueError(f"Image matrix {rows}x{cols} is too small for a long-axis view")
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if min(spacing) <= 0:
        raise ValueError(f"Pixel spacing must be positive, got {spacing}")
    ss = supersample or choose_supersample(spacing)
    case = _tabulated(case)
    dy, dx = spacing
    fine_y = ((np.arange(rows * ss) + 0.5) / ss) * dy - rows * dy / 2.0 - offset_mm[1]
    fine_x = ((np.arange(cols * ss) + 0.5) / ss) * dx - cols * dx / 2.0 - offset_mm[0]
    rot = case.rotation_rad
    lateral = (math.cos(rot), math.sin(rot))
    inferior = (-math.sin(rot), math.cos(rot))
    # The plane follows the drift of the LV centre perpendicular to the septal-lateral
    # line; the drift along the line tilts the LV axis in the image.
    drift_lat = case.drift_mm_per_s[0] * lateral[0] + case.drift_mm_per_s[1] * lateral[1]
    drift_inf = case.drift_mm_per_s[0] * inferior[0] + case.drift_mm_per_s[1] * inferior[1]
    length = geometry.lv_length_mm
    in_plane_length = math.hypot(length, drift_inf)
    # Image y (down) runs from apex to base: y = 0 at mid-cavity (s = 0.5).
    positions = 0.5 - fine_y / in_plane_length
    index = np.zeros((rows * ss, cols * ss), dtype=np.uint8)
    lesion_index = np.zeros_like(index)
    lateral_fine = np.zeros(index.shape, dtype=np.float64)
    apex_thickness = float(np.mean(case.lv.wall_thickness(np.array([0.0, np.pi]), 1.0)))
    # The chest changes little within a pixel row: it is painted once per pixel row (with
    # the LV-axis tilt of that row), the heart on every sub-pixel row.
    for r in range(rows):
        s_row = float(positions[r * ss:(r + 1) * ss].mean())
        along = fine_x - drift_lat * (s_row - 0.5)
        body = _LineCanvas(along, _axis_point(case, s_row), lateral)
        _paint_body(body, case, min(max(s_row, BODY_S_RANGE[0]), BODY_S_RANGE[1]), (0.0, 0.0))
        for i in range(r * ss, (r + 1) * ss):
            s = float(positions[i])
            canvas = _LineCanvas(along, _axis_point(case, s), lateral)
            canvas.index[0] = body.index[0]
            _paint_heart_row(canvas, case, geometry, s, along, apex_thickness)
            index[i] = canvas.index[0]
            lesion_index[i] = canvas.lesion_index[0]
            lateral_fine[i] = along
    fractions = _pool_fractions(index, (rows, cols), ss, len(Structure))
    s_rows = positions.reshape(rows, ss).mean(axis=1)
    labels = _labels(fractions, positions.reshape(rows, ss).min(axis=1))
    lesion_fraction = np.zeros((rows, cols), dtype=np.float32)
    lesion_rise = np.zeros((rows, cols), dtype=np.float32)
    if case.lesions:
        per_lesion = _pool_fractions(lesion_index, (rows, cols), ss, len(case.lesions) + 1)
        for number, lesion in enumerate(case.lesions, start=1):
            lesion_fraction += per_lesion[number]
            lesion_rise = np.where(per_lesion[number] > 0, lesion.t1_rise_ms, lesion_rise)
    lateral_mm = lateral_fine.reshape(rows, ss, cols, ss).mean(axis=(1, 3)).astype(np.float32)
    walls = np.zeros((rows, cols), dtype=np.uint8)
    myo = labels == Label.MYOCARDIUM
    apical_rows = (s_rows >= APICAL_START)[:, None]
    walls[myo & apical_rows] = Wall.APICAL
    walls[myo & ~apical_rows & (lateral_mm < 0)] = Wall.SEPTAL
    walls[myo & ~apical_rows & (lateral_mm >= 0)] = Wall.LATERAL
    lv_centre_px = ((rows * dy / 2.0 + offset_mm[1]) / dy - 0.5,
                    (cols * dx / 2.0 + offset_mm[0]) / dx - 0.5)
    rendered = RenderedSlice(
        fractions=fractions,
        labels=labels,
        lesion_fraction=lesion_fraction,
        lesion_rise_ms=lesion_rise.astype(np.float32),
        position=0.5,
        lv_centre_px=lv_centre_px,
        pixel_spacing=spacing,
    )
    return RenderedLongAxis(rendered, s_rows.astype(np.float32), lateral_mm, walls, geometry)


def _axis_point(case: HeartCase, s: float) -> tuple[float, float]:
    """LV centre at ``s`` (clamped to the ventricle: rows beyond continue its ends)."""
    return case.lv_centre(min(max(s, 0.0), 0.999))


def _paint_heart_row(canvas: _LineCanvas, case: HeartCase, geometry: LongAxisGeometry,
                     s: float, along: FloatArray, apex_thickness: float) -> None:
    """Heart structures along one sub-pixel row (long-axis position ``s``) over the chest."""
    if 0.0 <= s < 1.0:
        _paint_heart(canvas, case, s, (0.0, 0.0))
        span = 0.25
        if s > geometry.rv_end - span:
            u = min((s - (geometry.rv_end - span)) / span, 1.0)
            keep = math.sqrt(max(1.0 - u * u, 0.0))
            centre_j = min(int(np.searchsorted(along, 0.0)), along.size - 1)
            _taper_rv(canvas.index[0], centre_j, keep, keep_wall=s < geometry.rv_end)
    elif s >= 1.0:
        _paint_apex(canvas, case, s, geometry, along, apex_thickness)
    else:
        _paint_atria(canvas.index[0], case, s, geometry, along)


def _paint_apex(canvas: _LineCanvas, case: HeartCase, s: float, geometry: LongAxisGeometry,
                along: FloatArray, apex_thickness: float) -> None:
    """Myocardial apical cap beyond the end of the cavity, with its epicardial fat."""
    row = canvas.index[0]
    beyond_mm = (s - 1.0) * geometry.lv_length_mm
    fat = 0.5 * case.epicardial_fat_mm
    tip = case.lv.epi_radius(np.array([np.pi, 0.0]), 0.999)
    for extent, structure in ((apex_thickness + fat, Structure.EPICARDIAL_FAT),
                              (apex_thickness, Structure.LV_MYOCARDIUM)):
        u = beyond_mm / extent
        if u >= 1.0:
            continue
        shrink = math.sqrt(1.0 - u * u)
        grow = fat if structure is Structure.EPICARDIAL_FAT else 0.0
        _paint_interval(row, along, -(float(tip[0]) + grow) * shrink,
                        (float(tip[1]) + grow) * shrink, structure, _ATRIUM_OVER)


def _paint_atria(row: npt.NDArray[np.uint8], case: HeartCase, s: float,
                 geometry: LongAxisGeometry, along: FloatArray) -> None:
    """Atrioventricular-groove fat and the right and left atria beyond the mitral plane."""
    z = s * geometry.lv_length_mm  # negative: mm beyond the mitral plane
    septum = float(case.lv.epi_radius(np.array([np.pi]), 0.0)[0])
    free_wall = float(case.lv.epi_radius(np.array([0.0]), 0.0)[0])
    if z > -AV_GROOVE_MM:
        fat = case.epicardial_fat_mm + 2.0
        _paint_interval(row, along, -septum - 2.0 * geometry.ra_half_width_mm,
                        free_wall + fat, Structure.EPICARDIAL_FAT, _ATRIUM_OVER)
    # Left atrium under the LV, right atrium under the RV, sharing the interatrial septum.
    la_centre = 0.5 * (free_wall - septum)
    la_half = min(geometry.la_half_width_mm, 0.5 * (free_wall + septum) - 2.0)
    septum_x = la_centre - la_half
    ra_centre = septum_x - geometry.ra_half_width_mm + ATRIAL_WALL_MM
    for centre_x, half_w, half_l in (
        (ra_centre, geometry.ra_half_width_mm, geometry.ra_half_length_mm),
        (la_centre, la_half, geometry.la_half_length_mm),
    ):
        z_centre = -0.6 * half_l
        for grow, structure in ((ATRIAL_WALL_MM, Structure.RV_WALL),
                                (0.0, Structure.VESSEL)):
            u = (z - z_centre) / (half_l + grow)
            if abs(u) >= 1.0:
                continue
            half = (half_w + grow) * math.sqrt(1.0 - u * u)
            _paint_interval(row, along, centre_x - half, centre_x + half, structure,
                            _ATRIUM_OVER)


def _pool_fractions(index: npt.NDArray[np.uint8], shape: tuple[int, int], ss: int,
                    n_values: int) -> F32:
    """Area fraction of each value per pixel, shape (n_values, rows, cols)."""
    rows, cols = shape
    one_hot = np.zeros((n_values, rows * ss, cols * ss), dtype=np.float32)
    np.put_along_axis(one_hot, index[None].astype(np.intp), 1.0, axis=0)
    return one_hot.reshape(n_values, rows, ss, cols, ss).mean(axis=(2, 4))


def _labels(fractions: F32, s_low: FloatArray) -> npt.NDArray[np.uint8]:
    """Majority label per pixel; LV pool pixels touching outside become myocardium.

    The LV pool stays open towards the left atrium: pixels in rows reaching beyond the
    mitral plane (``s_low``, the smallest long-axis position in each row, below 0) do not
    turn touching pool pixels into myocardium.
    """
    n_labels = 4
    per_label = np.zeros((n_labels, *fractions.shape[1:]), dtype=np.float32)
    for structure, label in STRUCTURE_LABEL.items():
        per_label[int(label)] += fractions[int(structure)]
    labels = np.argmax(per_label, axis=0).astype(np.uint8)
    lv = labels == Label.LV_BLOOD_POOL
    if lv.any():
        outside = (labels == Label.BACKGROUND) | (labels == Label.RV_BLOOD_POOL)
        outside &= (s_low >= 0.0)[:, None]
        touching = lv & ndimage.binary_dilation(outside, structure=np.ones((3, 3), bool))
        labels[touching] = Label.MYOCARDIUM
    return labels
