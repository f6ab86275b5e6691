"""Four-chamber long-axis native T1-map phantoms of the same subjects as the short-axis maps.

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
import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.phantoms.anatomy import STRUCTURE_LABEL, STRUCTURE_TISSUE, Phenotype, Structure
from models.phantoms.heart_geometry import _TABLE_THETA, Ellipse, Harmonics, HeartCase
from models.phantoms.heart_rendering import (
    Inside,
    RenderedSlice,
    _Canvas,
    _paint_body,
    _paint_heart,
    choose_supersample,
)
from models.phantoms.t1map import _resolve_case
from models.phantoms.t1map_acquisition import (
    BackgroundMode,
    T1MapAcquisition,
    sample_geometry,
    sample_t1map_acquisition,
)
from models.phantoms.t1map_synthesis import (
    MAX_T1_MS,
    TEXTURE_AMPLITUDE,
    _motion_blur,
    _off_resonance_band,
    _structure_t1,
    _texture,
    kspace_window,
    lowpass,
    smooth_field,
)
from models.phantoms.tissues import PROTON_DENSITY, Tissue
from plugins.api import Label

__all__ = [
    "APICAL_START",
    "VIEW_4CH",
    "LongAxisGeometry",
    "LongAxisSlice",
    "Wall",
    "make_t1map_long_axis",
    "render_long_axis",
    "sample_long_axis_geometry",
]

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]

VIEW_4CH = "4ch"
"""Level / view name of four-chamber long-axis slices."""

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


# --------------------------------------------------------------------------------------------
# T1 map
# --------------------------------------------------------------------------------------------


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
    t1 = _structure_t1(case)
    myo_structures = {Structure.LV_MYOCARDIUM, Structure.LV_LESION, Structure.PAPILLARY_MUSCLE,
                      Structure.RV_WALL, Structure.RV_TRABECULAE}
    texture = _texture(rng, rendered.labels.shape, rendered.pixel_spacing)
    # The short-axis maps add gradient/2 * -cos(angle): +gradient/2 in the septum, -gradient/2
    # in the lateral wall, which is what the septal-lateral line crosses; smooth at the apex.
    side = la.lateral_mm / np.sqrt(la.lateral_mm**2 + 9.0)
    gradient = (-0.5 * case.tissues.septal_lateral_gradient_ms * side).astype(np.float32)
    weighted = np.zeros(rendered.labels.shape, dtype=np.float32)
    signal = np.zeros_like(weighted)
    for structure in Structure:
        frac = rendered.fractions[int(structure)]
        if not frac.any():
            continue
        tissue = STRUCTURE_TISSUE[structure]
        weight = frac * PROTON_DENSITY[tissue]
        value: F32 = t1[structure] * (1.0 + TEXTURE_AMPLITUDE[tissue] * texture)
        if structure in myo_structures:
            value = value + gradient
        if structure is Structure.LV_LESION:
            value = value + rendered.lesion_rise_ms
        weighted += weight * value
        signal += weight
    clean = np.where(signal > 1e-6, weighted / np.maximum(signal, 1e-6), 0.0)
    return clean.astype(np.float32), signal.astype(np.float32)


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
    window = kspace_window(shape, acq.kspace_fraction(spacing))
    floor = 0.05 * PROTON_DENSITY[Tissue.MYOCARDIUM]
    sigma = (4.0 / spacing[0], 4.0 / spacing[1])
    spread = ndimage.gaussian_filter(image * blurred_signal, sigma) / np.maximum(
        ndimage.gaussian_filter(blurred_signal, sigma), 1e-3)
    filled = np.where(blurred_signal > floor, image, spread).astype(np.float32)
    image = lowpass(filled, window)
    blurred_signal = np.clip(lowpass(blurred_signal, window), 0.0, None)
    myo_t1 = case.tissues.myocardium_t1_ms
    pd_myo = PROTON_DENSITY[Tissue.MYOCARDIUM]
    rel_signal = np.maximum(blurred_signal / pd_myo, 0.05)
    depth = 1.0 + 0.2 * smooth_field(rng, shape, order=2)
    sd = acq.noise_sd_ms * (np.clip(image, 50.0, None) / myo_t1) ** 1.2 / np.sqrt(rel_signal)
    sd = sd * depth
    white = rng.standard_normal(shape).astype(np.float32)
    correlated = lowpass(white, window)
    correlated /= float(correlated.std()) or 1.0
    noisy = image + sd * correlated
    low = blurred_signal < acq.signal_threshold * pd_myo
    if acq.background is BackgroundMode.ZERO:
        noisy = np.where(low, 0.0, noisy)
    elif acq.background is BackgroundMode.NOISE:
        speckle = rng.gamma(1.5, 900.0, size=shape) * (rng.random(shape) < 0.7)
        noisy = np.where(low, speckle, noisy)
    else:
        wild = rng.uniform(0.0, MAX_T1_MS, size=shape) * (rng.random(shape) < 0.3)
        noisy = np.where(low & (wild > 0), wild, noisy)
    noisy = np.clip(noisy, 0.0, MAX_T1_MS).astype(np.float32)
    return noisy, image.astype(np.float32), clean, signal, band


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
