"""Four-chamber long-axis T1-map phantoms and their DICOM series."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.phantoms.anatomy import Structure
from models.phantoms.dicom_maps import t1map_long_axis_series_datasets, t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.long_axis import VIEW_4CH, LongAxisSlice, make_t1map_long_axis
from models.phantoms.long_axis_rendering import Wall, sample_long_axis_geometry
from models.phantoms.t1map import make_t1map_stack
from models.phantoms.t1map_acquisition import sample_t1map_acquisition
from node.inputs.loader import load_series
from plugins.api import Label

SHAPE = (112, 112)
SPACING = (2.0, 2.0)


@pytest.fixture(scope="module")
def view() -> LongAxisSlice:
    rng = np.random.default_rng(31)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0,
                            phenotype="normal")
    return make_t1map_long_axis(rng, heart=heart, shape=SHAPE, pixel_spacing=SPACING)


def test_view_has_the_four_labels_and_the_apex_at_the_top(view: LongAxisSlice) -> None:
    labels = view.labels
    assert view.level == VIEW_4CH
    assert view.shape == SHAPE
    for label in (Label.LV_BLOOD_POOL, Label.MYOCARDIUM, Label.RV_BLOOD_POOL):
        assert (labels == label).sum() > 20
    rows_lv = np.nonzero((labels == Label.LV_BLOOD_POOL).any(axis=1))[0]
    position = view.rendered.position
    # The LV pool spans the ventricle and stops at the mitral plane (s = 0).
    assert position[rows_lv].min() >= -0.02
    assert position[rows_lv].max() <= 1.0
    assert position[0] > position[-1]  # apex towards the top of the image
    length = view.truth["lv_length_mm"]
    assert np.ptp(rows_lv) * SPACING[0] == pytest.approx(length, abs=3 * SPACING[0])


def test_rv_lies_on_the_septal_side_left_of_the_lv(view: LongAxisSlice) -> None:
    cols = np.arange(view.shape[1])[None, :]
    lv = view.labels == Label.LV_BLOOD_POOL
    rv = view.labels == Label.RV_BLOOD_POOL
    septal = view.walls == Wall.SEPTAL
    lateral = view.walls == Wall.LATERAL
    mean_col = {name: float(np.broadcast_to(cols, mask.shape)[mask].mean())
                for name, mask in (("lv", lv), ("rv", rv), ("septal", septal),
                                   ("lateral", lateral))}
    assert mean_col["rv"] < mean_col["septal"] < mean_col["lv"] < mean_col["lateral"]
    assert (view.walls[view.labels != Label.MYOCARDIUM] == Wall.NONE).all()
    assert (view.walls[view.labels == Label.MYOCARDIUM] != Wall.NONE).all()


def test_rows_are_lines_through_the_short_axis_cross_sections(view: LongAxisSlice) -> None:
    """The septal and lateral wall thickness of a row equal the anatomy's radii at that s."""
    case = view.heart
    la = view.rendered
    fractions = la.rendered.fractions
    myo = fractions[int(Structure.LV_MYOCARDIUM)] + fractions[int(Structure.LV_LESION)]
    checked = 0
    for row in range(view.shape[0]):
        s = float(la.position[row])
        if not 0.3 <= s <= 0.6:
            continue
        for side, theta in ((la.lateral_mm[row] < 0, np.pi), (la.lateral_mm[row] > 0, 0.0)):
            expected = float(case.lv.epi_radius(np.array([theta]), s)[0]
                             - case.lv.endo_radius(np.array([theta]), s)[0])
            measured = float(myo[row][side].sum()) * SPACING[1]
            assert measured == pytest.approx(expected, abs=1.5 * SPACING[1])
            checked += 1
    assert checked >= 10


def test_septal_lateral_truth_follows_the_tissue_gradient(view: LongAxisSlice) -> None:
    truth = view.truth
    gradient = view.heart.tissues.septal_lateral_gradient_ms
    assert truth["septal_t1_true_ms"] - truth["lateral_t1_true_ms"] == pytest.approx(gradient)
    # Without lesions the mid-wall of each wall carries its own tissue value.
    clean = view.t1_clean_ms
    pure = view.rendered.rendered.fractions[int(Structure.LV_MYOCARDIUM)] > 0.999
    for wall, key in ((Wall.SEPTAL, "septal_t1_true_ms"), (Wall.LATERAL, "lateral_t1_true_ms")):
        mask = pure & (view.walls == wall)
        assert mask.sum() > 10
        texture = 0.05 * truth[key]
        assert float(clean[mask].mean()) == pytest.approx(truth[key], abs=texture)
    assert truth["myocardium_t1_true_ms"] == pytest.approx(view.heart.tissues.myocardium_t1_ms)


def test_same_seed_same_view_and_shared_subject() -> None:
    rng = np.random.default_rng(7)
    heart, _ = make_t1map_stack(rng, field_strength_t=3.0, shape=SHAPE, pixel_spacing=SPACING)
    acquisition = sample_t1map_acquisition(rng, 3.0)
    geometry = sample_long_axis_geometry(rng, heart)
    views = [
        make_t1map_long_axis(np.random.default_rng(1), field_strength_t=3.0, heart=heart,
                             acquisition=acquisition, geometry=geometry, shape=SHAPE,
                             pixel_spacing=SPACING)
        for _ in range(2)
    ]
    assert np.array_equal(views[0].t1_ms, views[1].t1_ms)
    assert np.array_equal(views[0].labels, views[1].labels)
    assert views[0].heart is heart
    assert views[0].truth["field_strength_t"] == 3.0
    assert views[0].truth["lv_length_mm"] == pytest.approx(geometry.lv_length_mm)


def test_invalid_requests_are_rejected() -> None:
    rng = np.random.default_rng(3)
    heart = make_heart_case(rng, field_strength_t=1.5)
    with pytest.raises(ValueError, match="field_strength_t"):
        make_t1map_long_axis(rng, field_strength_t=3.0, heart=heart)
    with pytest.raises(ValueError, match="too small"):
        make_t1map_long_axis(rng, heart=heart, shape=(8, 8), pixel_spacing=(2.0, 2.0))


def test_lv_length_grows_with_cavity_size() -> None:
    rng = np.random.default_rng(11)
    heart = make_heart_case(rng, phenotype="normal")
    small = dataclasses.replace(heart, lv=dataclasses.replace(heart.lv, endo_radius_mm=18.0))
    large = dataclasses.replace(heart, lv=dataclasses.replace(heart.lv, endo_radius_mm=30.0))
    lengths = [sample_long_axis_geometry(np.random.default_rng(0), case).lv_length_mm
               for case in (small, large)]
    assert lengths[0] < lengths[1]
    assert 60.0 <= lengths[0] <= 130.0


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_dicom_series_has_a_four_chamber_plane_and_t1_in_ms(
        view: LongAxisSlice, vendor: str) -> None:
    study = StudyInfo.synthetic(5)
    rng = np.random.default_rng(0)
    _, sax = make_t1map_stack(rng, heart=view.heart, shape=SHAPE, pixel_spacing=SPACING)
    sax_ds = t1map_series_datasets(sax, vendor=vendor, study=study)
    datasets = t1map_long_axis_series_datasets(view, vendor=vendor, study=study)
    assert len(datasets) == 1
    ds = datasets[0]
    assert "4CH" in str(ds.SeriesDescription).upper()
    assert "SAX" not in str(ds.SeriesDescription).upper()
    assert list(ds.ImageType) == list(sax_ds[0].ImageType)
    assert ds.SeriesInstanceUID != sax_ds[0].SeriesInstanceUID
    assert ds.StudyInstanceUID == sax_ds[0].StudyInstanceUID
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    sax_orientation = np.asarray(sax_ds[0].ImageOrientationPatient, dtype=float)
    normal_4ch = np.cross(orientation[:3], orientation[3:])
    normal_sax = np.cross(sax_orientation[:3], sax_orientation[3:])
    # The long axis (short-axis normal) lies in the four-chamber plane, pointing up the image.
    assert abs(float(np.dot(normal_4ch, normal_sax))) < 1e-3
    assert abs(float(np.dot(orientation[3:], normal_sax))) == pytest.approx(1.0, abs=1e-3)
    series = load_series(datasets)
    assert series.frames[0].units == "ms"
    assert np.allclose(series.frames[0].pixels, view.t1_ms, atol=1.0)
    assert float(series.header["MagneticFieldStrength"]) == pytest.approx(1.5)
