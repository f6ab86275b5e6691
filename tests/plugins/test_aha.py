"""Tests of the AHA 16-segment model and the bullseye renderer."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import numpy.typing as npt
import pytest

from models.phantoms.heart_geometry import HeartCase
from models.phantoms.scar_rendering import rv_insertion_angles
from models.phantoms.t1map import PhantomSlice, make_t1map_stack
from plugins.api import Label
from plugins.lib.cardiac.aha import (
    SectorAnchor,
    assign_levels,
    segment_map,
    segment_statistics,
    transmurality,
)
from plugins.lib.cardiac.bullseye import render_bullseye, segment_at
from plugins.lib.cardiac.insertion import (
    InsertionMethod,
    find_rv_insertion_points,
    rv_insertion_points,
)

Point = tuple[float, float]
# A typical short-axis orientation: image right = patient left(-posterior), image down =
# posterior-inferior (as the phantom DICOM writer uses).
_DOWN = np.array([0.0, 0.55, -0.83])
_DOWN /= np.linalg.norm(_DOWN)
SAX_ORIENTATION = (1.0, 0.0, 0.0, *_DOWN)


def _angle_diff(a: float, b: float) -> float:
    return abs(math.degrees((a - b + math.pi) % (2 * math.pi) - math.pi))


# --------------------------------------------------------------------------------------------
# Image transforms with their effect on points and on ImageOrientationPatient
# --------------------------------------------------------------------------------------------


class Transform:
    """An in-plane rotation/flip of a pixel array, of points on it and of its orientation."""

    def __init__(self, name: str, array: Callable[[np.ndarray], np.ndarray]) -> None:
        self.name = name
        self.array = array

    def _steps(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Old (row, col) of new pixel (0, 0), and old offsets per new column and row step."""
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
        new_rows, new_cols = self.array(rows), self.array(cols)
        old0 = np.array([new_rows[0, 0], new_cols[0, 0]], float)
        per_col = np.array([new_rows[0, 1], new_cols[0, 1]], float) - old0
        per_row = np.array([new_rows[1, 0], new_cols[1, 0]], float) - old0
        return old0, per_col, per_row

    def point(self, p: Point, shape: tuple[int, int]) -> Point:
        old0, per_col, per_row = self._steps(shape)
        new = np.linalg.solve(np.column_stack([per_row, per_col]), np.asarray(p, float) - old0)
        return float(new[0]), float(new[1])

    def orientation(self, iop: tuple[float, ...], shape: tuple[int, int]) -> tuple[float, ...]:
        row_cos, col_cos = np.asarray(iop[:3]), np.asarray(iop[3:])
        _, per_col, per_row = self._steps(shape)
        along_row = per_col[0] * col_cos + per_col[1] * row_cos
        along_col = per_row[0] * col_cos + per_row[1] * row_cos
        return (*along_row.tolist(), *along_col.tolist())

    def determinant(self) -> float:
        """Negative for a mirror flip."""
        _, per_col, per_row = self._steps((4, 5))
        return float(np.linalg.det(np.column_stack([per_row, per_col])))


TRANSFORMS = (
    Transform("identity", lambda a: a),
    Transform("rot90", lambda a: np.rot90(a, 1)),
    Transform("rot180", lambda a: np.rot90(a, 2)),
    Transform("rot270", lambda a: np.rot90(a, 3)),
    Transform("flip_lr", lambda a: np.flip(a, 1)),
    Transform("flip_ud", lambda a: np.flip(a, 0)),
    Transform("transpose", lambda a: np.ascontiguousarray(a.T)),
)


# --------------------------------------------------------------------------------------------
# Phantom truth
# --------------------------------------------------------------------------------------------


@cache
def _phantom_stack(seed: int) -> tuple[HeartCase, tuple[PhantomSlice, ...]]:
    case, slices = make_t1map_stack(np.random.default_rng(seed), pixel_spacing=(1.4, 1.4))
    return case, tuple(slices)


def _truth_points(case: HeartCase, phantom: PhantomSlice) -> tuple[Point, Point]:
    """Anterior and inferior insertion points (row, col) of the phantom, on the epicardium."""
    assert phantom.rendered is not None
    s = phantom.rendered.position
    r0, c0 = phantom.rendered.lv_centre_px
    spacing = phantom.pixel_spacing
    points = []
    for local in rv_insertion_angles(case, s):
        radius = float(case.lv.epi_radius(np.array([local]), s)[0])
        angle = local + case.rotation_rad
        points.append((r0 + radius * math.sin(angle) / spacing[0],
                       c0 + radius * math.cos(angle) / spacing[1]))
    return points[0], points[1]


def _angle_of(point: Point, centre: Point) -> float:
    return math.atan2(point[0] - centre[0], point[1] - centre[1])


SEEDS = (101, 102, 103, 104)


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: t.name)
def test_insertion_points_match_phantom_truth(transform: Transform) -> None:
    errors = []
    for seed in SEEDS:
        case, slices = _phantom_stack(seed)
        for phantom in slices:
            shape = phantom.labels.shape
            labels = transform.array(phantom.labels)
            orientation = transform.orientation(SAX_ORIENTATION, shape)
            points = rv_insertion_points(labels, phantom.pixel_spacing, orientation=orientation)
            assert points is not None, (seed, phantom.level)
            assert points.method is InsertionMethod.ORIENTATION
            anterior, inferior = (transform.point(p, shape) for p in _truth_points(case, phantom))
            errors.append(_angle_diff(points.anterior_angle, _angle_of(anterior, points.centre)))
            errors.append(_angle_diff(points.inferior_angle, _angle_of(inferior, points.centre)))
    errors_deg = np.asarray(errors)
    assert np.median(errors_deg) < 6.0, errors_deg
    assert np.mean(errors_deg <= 15.0) >= 0.85, errors_deg
    assert errors_deg.max() < 45.0, errors_deg  # never anterior/inferior swapped


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: t.name)
def test_without_orientation_chirality_decides(transform: Transform) -> None:
    case, slices = _phantom_stack(SEEDS[0])
    phantom = slices[1]
    shape = phantom.labels.shape
    points = rv_insertion_points(transform.array(phantom.labels), phantom.pixel_spacing)
    assert points is not None
    assert points.method is InsertionMethod.CHIRALITY
    anterior, inferior = (transform.point(p, shape) for p in _truth_points(case, phantom))
    to_anterior = _angle_diff(points.anterior_angle, _angle_of(anterior, points.centre))
    to_inferior = _angle_diff(points.anterior_angle, _angle_of(inferior, points.centre))
    if transform.determinant() > 0:  # rotation: the standard-view assumption holds
        assert to_anterior < 25.0 < to_inferior
        assert points.septal_sense == -1
    else:  # mirrored: documented to swap anterior and inferior
        assert to_inferior < 25.0 < to_anterior
        assert points.septal_sense == -1  # assumed, though the true sense is reversed


@pytest.mark.parametrize("transform", TRANSFORMS[1:], ids=lambda t: t.name)
def test_segment_numbering_follows_rotation_and_flip(transform: Transform) -> None:
    for seed in SEEDS[:2]:
        _, slices = _phantom_stack(seed)
        for phantom in slices:
            shape = phantom.labels.shape
            reference = segment_map(
                phantom.labels, phantom.level, None, pixel_spacing=phantom.pixel_spacing,
                orientation=SAX_ORIENTATION,
            )
            moved = segment_map(
                transform.array(phantom.labels), phantom.level, None,
                pixel_spacing=phantom.pixel_spacing,
                orientation=transform.orientation(SAX_ORIENTATION, shape),
            )
            expected = transform.array(reference)
            myo = expected > 0
            agreement = float(np.mean(moved[myo] == expected[myo]))
            assert agreement > 0.95, (seed, phantom.level, agreement)


def test_every_myocardium_pixel_gets_a_segment_of_its_level() -> None:
    _, slices = _phantom_stack(SEEDS[1])
    expected = {"basal": set(range(1, 7)), "mid": set(range(7, 13)),
                "apical": set(range(13, 17))}
    for phantom in slices:
        seg = segment_map(phantom.labels, phantom.level, None,
                          pixel_spacing=phantom.pixel_spacing)
        myo = phantom.labels == Label.MYOCARDIUM
        assert seg.dtype == np.int8
        assert np.all(seg[myo] > 0)
        assert np.all(seg[~myo] == 0)
        assert set(np.unique(seg[myo]).tolist()) == expected[phantom.level]


def test_phantom_septal_segments_face_the_rv() -> None:
    """Pixels of the septal segments are the ones closest to the RV blood pool."""
    from scipy import ndimage

    for seed in SEEDS:
        _, slices = _phantom_stack(seed)
        phantom = slices[1]
        seg = segment_map(phantom.labels, "mid", None, pixel_spacing=phantom.pixel_spacing)
        to_rv = ndimage.distance_transform_edt(phantom.labels != Label.RV_BLOOD_POOL)
        myo = seg > 0
        septal = np.isin(seg, (8, 9))
        assert np.median(to_rv[septal]) < np.median(to_rv[myo & ~septal]) / 3


# --------------------------------------------------------------------------------------------
# Synthetic geometry
# --------------------------------------------------------------------------------------------


def _ring(
    size: int = 128, endo: float = 17.0, epi: float = 25.0, rv_half_deg: float = 60.0,
    rv_centre_deg: float = 180.0,
) -> npt.NDArray[np.uint8]:
    """Circular LV ring centred in the image with an RV crescent around ``rv_centre_deg``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    c = (size - 1) / 2.0
    r = np.hypot(yy - c, xx - c)
    angle = np.degrees(np.arctan2(yy - c, xx - c))
    labels = np.zeros((size, size), np.uint8)
    off = np.abs((angle - rv_centre_deg + 180.0) % 360.0 - 180.0)
    labels[(r >= epi) & (r < epi + 18.0) & (off <= rv_half_deg)] = Label.RV_BLOOD_POOL
    labels[r < epi] = Label.MYOCARDIUM
    labels[r < endo] = Label.LV_BLOOD_POOL
    return labels


def test_synthetic_insertion_points_and_sector_order() -> None:
    labels = _ring()
    points = rv_insertion_points(labels, (1.0, 1.0))
    assert points is not None
    # RV blood spans image angles 120..240 deg: standard view, anterior (up) near -120 deg,
    # beyond the blunt blood-pool end by a nominal 3 mm free wall (~7 deg at 25 px).
    wall = math.degrees(3.0 / 25.0)
    assert _angle_diff(points.anterior_angle, math.radians(-120 + wall)) < 4
    assert _angle_diff(points.inferior_angle, math.radians(120 - wall)) < 4
    assert abs(math.degrees(points.septal_arc) - 120 - 2 * wall) < 8
    seg = segment_map(labels, "basal", points)
    c = (labels.shape[0] - 1) / 2.0
    centre_angle = {}
    for number in range(1, 7):
        rows, cols = np.nonzero(seg == number)
        centre_angle[number] = math.degrees(math.atan2(rows.mean() - c, cols.mean() - c))
    # Counter-clockwise on screen from the anterior insertion: 2 at -150, 3 at 150, ...
    start = math.degrees(points.anterior_angle)
    for number, expected in {2: -30, 3: -90, 4: -150, 5: 150, 6: 90, 1: 30}.items():
        assert _angle_diff(math.radians(centre_angle[number]), math.radians(start + expected)) < 5


@pytest.mark.parametrize("level", ["basal", "mid", "apical"])
def test_synthetic_sector_areas_are_equal(level: str) -> None:
    labels = _ring(size=160, endo=30.0, epi=42.0)
    seg = segment_map(labels, level, None, pixel_spacing=(1.0, 1.0))
    numbers, counts = np.unique(seg[seg > 0], return_counts=True)
    assert len(numbers) == (4 if level == "apical" else 6)
    assert counts.max() / counts.min() < 1.08


def test_apical_septal_segment_is_centred_on_the_septum() -> None:
    labels = _ring(rv_centre_deg=160.0, rv_half_deg=50.0)
    seg = segment_map(labels, "apical", None, pixel_spacing=(1.0, 1.0))
    rows, cols = np.nonzero(seg == 14)
    c = (labels.shape[0] - 1) / 2.0
    angle = math.atan2(rows.mean() - c, cols.mean() - c)
    assert _angle_diff(angle, math.radians(160)) < 6


def test_septal_bisector_anchor() -> None:
    labels = _ring(rv_half_deg=40.0)
    points = rv_insertion_points(labels, (1.0, 1.0))
    assert points is not None
    default = segment_map(labels, "mid", points)
    bisector = segment_map(labels, "mid", points, anchor=SectorAnchor.SEPTAL_BISECTOR)
    c = (labels.shape[0] - 1) / 2.0
    # With a 80-degree septum, the 8/9 boundary lies on the septal bisector (180 deg) only
    # with the bisector anchor; the default starts segment 8 at the anterior insertion.
    start = math.degrees(points.anterior_angle)
    for seg, boundary in ((bisector, 180.0), (default, start - 60.0)):
        ray = [(round(c + 21 * math.sin(math.radians(boundary + d))),
                round(c + 21 * math.cos(math.radians(boundary + d)))) for d in (-4, 4)]
        assert {int(seg[r]) for r in ray} == {8, 9}


def test_insertion_failures_have_reasons() -> None:
    labels = _ring()
    no_rv = labels.copy()
    no_rv[no_rv == Label.RV_BLOOD_POOL] = 0
    search = find_rv_insertion_points(no_rv, (1.0, 1.0))
    assert search.points is None and "no RV" in (search.reason or "")

    far = _ring(epi=25.0)
    far[far == Label.RV_BLOOD_POOL] = 0
    yy, xx = np.mgrid[0:128, 0:128]
    far[(np.hypot(yy - 64, xx - 10) < 8)] = Label.RV_BLOOD_POOL
    search = find_rv_insertion_points(far, (1.0, 1.0))
    assert search.points is None and "does not reach" in (search.reason or "")

    search = find_rv_insertion_points(np.zeros((64, 64), np.uint8), (1.0, 1.0))
    assert search.points is None and "myocardium" in (search.reason or "")
    with pytest.raises(ValueError, match="insertion"):
        segment_map(no_rv, "mid", None, pixel_spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="basal, mid or apical"):
        segment_map(labels, "unknown", None, pixel_spacing=(1.0, 1.0))


def test_insertion_points_robust_to_label_noise_and_small_rv() -> None:
    rng = np.random.default_rng(7)
    labels = _ring(rv_half_deg=30.0)
    noise = rng.random(labels.shape) < 0.004
    labels[noise & (labels == 0)] = Label.RV_BLOOD_POOL  # isolated RV pixels anywhere
    points = rv_insertion_points(labels, (1.0, 1.0))
    assert points is not None
    wall = math.degrees(3.0 / 25.0)
    assert _angle_diff(points.anterior_angle, math.radians(-150 + wall)) < 5
    assert _angle_diff(points.inferior_angle, math.radians(150 - wall)) < 5


# --------------------------------------------------------------------------------------------
# Statistics and transmurality
# --------------------------------------------------------------------------------------------


def test_segment_statistics_match_numpy() -> None:
    rng = np.random.default_rng(3)
    labels = _ring()
    seg = segment_map(labels, "mid", None, pixel_spacing=(1.0, 1.0))
    values = rng.normal(1000.0, 40.0, labels.shape)
    values[seg == 9] += 100.0
    values[10, 10] = np.nan
    mask = rng.random(labels.shape) < 0.7
    stats = segment_statistics(values, seg, mask)
    assert set(stats) == set(range(1, 17))
    for number in range(7, 13):
        data = values[(seg == number) & mask]
        assert stats[number].n_pixels == data.size
        assert stats[number].mean == pytest.approx(data.mean())
        assert stats[number].sd == pytest.approx(data.std(ddof=1))
        assert stats[number].median == pytest.approx(np.median(data))
    assert stats[9].mean is not None and stats[8].mean is not None
    assert stats[9].mean > stats[8].mean + 50
    assert stats[1].n_pixels == 0 and stats[1].mean is None and stats[1].sd is None

    pooled = segment_statistics([values, values + 10.0], [seg, seg])
    data = np.concatenate([values[seg == 7], values[seg == 7] + 10.0])
    assert pooled[7].n_pixels == data.size
    assert pooled[7].mean == pytest.approx(data.mean())


def test_transmurality_of_full_and_half_wall_blocks() -> None:
    labels = _ring(size=160, endo=30.0, epi=42.0)
    seg = segment_map(labels, "mid", None, pixel_spacing=(1.0, 1.0))
    yy, xx = np.mgrid[0:160, 0:160].astype(float)
    c = 79.5
    r = np.hypot(yy - c, xx - c)
    angle = np.degrees(np.arctan2(yy - c, xx - c))
    full = (np.abs(angle - 90.0) < 15.0) & (seg > 0)  # inside inferior segment 10
    half = (np.abs(angle - 30.0) < 15.0) & (r < 36.0) & (seg > 0)  # inferolateral 11
    result = transmurality(full | half, seg)
    assert result[10].max_fraction == pytest.approx(1.0, abs=0.05)
    assert result[11].max_fraction == pytest.approx(0.5, abs=0.08)
    assert result[7].max_fraction == 0.0
    assert result[10].mean_fraction is not None and 0.3 < result[10].mean_fraction < 0.7
    assert result[11].area_fraction is not None and 0.05 < result[11].area_fraction < 0.35
    assert result[10].n_rays > 40


# --------------------------------------------------------------------------------------------
# Levels
# --------------------------------------------------------------------------------------------


def test_assign_levels() -> None:
    assert assign_levels([0, 8, 16], [30, 20, 10]) == ["basal", "mid", "apical"]
    assert assign_levels([16, 0, 8], [10, 30, 20]) == ["apical", "basal", "mid"]
    assert assign_levels([0, 8, 16], [10, 20, 30]) == ["apical", "mid", "basal"]
    assert assign_levels([5.0], [None]) == ["mid"]
    assert assign_levels([0, 10], [20, 10]) == ["basal", "apical"]
    assert assign_levels([0, 8, 16, 24], [40, 30, 20, 10]) == ["basal", "mid", "mid", "apical"]
    six = assign_levels(list(range(0, 60, 10)), [60, 50, 40, 30, 20, 10])
    assert six == ["basal"] * 2 + ["mid"] * 2 + ["apical"] * 2
    # Repeated position, an unsegmented slice and a noisy area trend.
    levels = assign_levels([0, 0.2, 8, 16, 24], [40, 41, None, 15, 18])
    assert levels[0] == levels[1] == "basal" and levels[2] == "mid" and levels[4] == "apical"
    assert assign_levels([0, 8, 16], [None, 20, None]) == ["unknown"] * 3
    assert assign_levels([0, 8], [20, 20]) == ["unknown"] * 2
    assert assign_levels([], []) == []
    with pytest.raises(ValueError):
        assign_levels([0, 1], [1])


# --------------------------------------------------------------------------------------------
# Bullseye
# --------------------------------------------------------------------------------------------


def _colour_in_segment(image: npt.NDArray[np.uint8], segment: int) -> npt.NDArray[np.uint8]:
    """Median colour of the disc pixels whose position maps to ``segment``."""
    from scipy import ndimage

    background = np.array([16, 18, 22])
    coloured = np.any(np.abs(image.astype(int) - background) > 30, axis=2)
    closed = ndimage.binary_closing(coloured, np.ones((3, 3), bool), iterations=3)
    components, count = ndimage.label(closed)
    sizes = ndimage.sum(closed, components, range(1, count + 1))
    rows, cols = np.nonzero(components == int(np.argmax(sizes)) + 1)
    top, bottom, left, run = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    centre = ((left + run + 1) / 2.0, (top + bottom + 1) / 2.0)
    radius = (run - left + 1) / 2.0
    picks = [
        image[y, x]
        for y in range(top, bottom + 1, 2)
        for x in range(left, run + 1, 2)
        if segment_at(x + 0.5, y + 0.5, centre, radius * 0.98) == segment
        and segment_at(x + 0.5, y + 0.5, centre, radius * 1.02) == segment
    ]
    return np.median(np.asarray(picks), axis=0).astype(np.uint8)


def test_bullseye_shape_and_colour_follow_value() -> None:
    values: dict[int, float | None] = {n: 1000.0 for n in range(1, 17)}
    low = render_bullseye(values | {9: 920.0}, title="T1", unit="ms", vmin=900, vmax=1100)
    high = render_bullseye(values | {9: 1090.0}, title="T1", unit="ms", vmin=900, vmax=1100)
    assert low.shape == (360, 360, 3) and low.dtype == np.uint8
    colour_low = _colour_in_segment(low, 9)
    colour_high = _colour_in_segment(high, 9)
    assert np.abs(colour_low.astype(int) - colour_high.astype(int)).sum() > 100
    # An unchanged segment keeps its colour.
    assert np.array_equal(_colour_in_segment(low, 3), _colour_in_segment(high, 3))


def test_bullseye_missing_segments_are_grey() -> None:
    values: dict[int, float | None] = {n: 0.9 for n in range(1, 17)}
    values[4] = None
    del values[15]
    image = render_bullseye(values, title="Scar", unit="%", vmin=0, vmax=1, cmap="inferno",
                            size_px=300, flags={2: "!"}, value_format="{:.0%}")
    assert image.shape == (300, 300, 3)
    for segment in (4, 15):
        colour = _colour_in_segment(image, segment).astype(int)
        assert colour.max() - colour.min() < 20  # grey
    bright = _colour_in_segment(image, 1).astype(int)
    assert bright.max() - bright.min() > 60


def test_bullseye_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="vmax"):
        render_bullseye({}, title="", unit="", vmin=1, vmax=1)
    with pytest.raises(ValueError, match="colour map"):
        render_bullseye({}, title="", unit="", vmin=0, vmax=1, cmap="jet")
    with pytest.raises(ValueError, match="1-16"):
        render_bullseye({17: 1.0}, title="", unit="", vmin=0, vmax=1)
