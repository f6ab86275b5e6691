"""Tests of the synthetic cardiac phantoms, MOLLI source images and DICOM series writer."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage, optimize

from models.phantoms import dicom_build, dicom_maps, dicom_noncardiac, dicom_study
from models.phantoms.__main__ import main as cli_main
from models.phantoms.anatomy import LEVELS, Structure
from models.phantoms.heart_geometry import HeartCase
from models.phantoms.heart_rendering import RenderedSlice
from models.phantoms.molli_source import make_molli_source, molli_inversion_times
from models.phantoms.t1map import PhantomSlice, make_heart_case, make_t1map_slice, make_t1map_stack
from models.phantoms.t1map_acquisition import BorderRealism, sample_border_realism
from models.phantoms.t1map_synthesis import MAX_T1_MS
from models.phantoms.tissues import (
    BLOOD_T1_RANGE_MS,
    DIFFUSE_DISEASE_MAX_MS,
    HAEMATOCRIT_MEAN,
    NATIVE_T1_MS,
    Tissue,
    blood_t1_from_haematocrit,
)
from plugins.api import Label

EIGHT = np.ones((3, 3), dtype=bool)


def _rendered(s: PhantomSlice) -> RenderedSlice:
    assert s.rendered is not None
    return s.rendered


def _array(a: np.ndarray | None) -> np.ndarray:
    assert a is not None
    return a


@pytest.fixture(scope="module")
def stacks() -> list[tuple[HeartCase, list[PhantomSlice]]]:
    """Twelve subjects, alternating field strengths, three levels each."""
    out = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        out.append(make_t1map_stack(rng, field_strength_t=1.5 if seed % 2 else 3.0))
    return out


@pytest.fixture(scope="module")
def study_slices() -> list[PhantomSlice]:
    _, slices = make_t1map_stack(np.random.default_rng(101), field_strength_t=1.5,
                                 shape=(192, 256), pixel_spacing=(1.40625, 1.40625))
    return slices


# --------------------------------------------------------------------------------------------
# Anatomy and labels
# --------------------------------------------------------------------------------------------


def test_labels_are_exact_label_values(stacks: list) -> None:
    for _, slices in stacks:
        for s in slices:
            assert s.labels.dtype == np.uint8
            assert s.t1_ms.dtype == np.float32
            assert s.labels.shape == s.t1_ms.shape
            assert set(np.unique(s.labels)) <= {int(v) for v in (
                Label.BACKGROUND, Label.LV_BLOOD_POOL, Label.MYOCARDIUM, Label.RV_BLOOD_POOL)}


def test_myocardium_is_closed_ring_around_lv_pool(stacks: list) -> None:
    for case, slices in stacks:
        for s in slices:
            lv = s.labels == Label.LV_BLOOD_POOL
            myo = s.labels == Label.MYOCARDIUM
            assert lv.sum() > 20, (case.phenotype, s.level)
            assert ndimage.label(myo, structure=EIGHT)[1] == 1
            assert ndimage.label(lv)[1] == 1
            # The pool is enclosed by myocardium: it touches nothing else, even diagonally.
            neighbours = ndimage.binary_dilation(lv, structure=EIGHT) & ~lv
            assert np.all(s.labels[neighbours] == Label.MYOCARDIUM)
            assert np.all(ndimage.binary_fill_holes(myo)[lv])


def test_rv_lies_next_to_the_septum(stacks: list) -> None:
    for case, slices in stacks:
        for s in slices:
            rv = s.labels == Label.RV_BLOOD_POOL
            myo = s.labels == Label.MYOCARDIUM
            assert rv.sum() >= 10, (case.phenotype, s.level)
            # RV touches the septal myocardium ...
            assert (ndimage.binary_dilation(rv, structure=EIGHT, iterations=2) & myo).any()
            # ... on the septal side of the LV (heart-local angle ~180 degrees).
            r0, c0 = ndimage.center_of_mass(s.labels == Label.LV_BLOOD_POOL)
            r1, c1 = ndimage.center_of_mass(rv)
            dy, dx = s.pixel_spacing
            angle = math.atan2((r1 - r0) * dy, (c1 - c0) * dx) - case.rotation_rad
            offset = abs((angle - math.pi + math.pi) % (2 * math.pi) - math.pi)
            assert offset < math.radians(60), (math.degrees(offset), s.level)


def test_stack_shares_geometry_and_lv_narrows_to_apex(stacks: list) -> None:
    for _, slices in stacks:
        assert [s.level for s in slices] == list(LEVELS)
        assert len({s.shape for s in slices}) == 1
        assert len({s.pixel_spacing for s in slices}) == 1
        lv_area = [s.truth["lv_blood_area_mm2"] for s in slices]
        assert lv_area[2] < lv_area[1] < lv_area[0] * 1.05
        positions = [s.truth["long_axis_position"] for s in slices]
        assert positions == sorted(positions)


def test_repeated_levels_spread_along_the_long_axis() -> None:
    levels = ("basal",) * 3 + ("mid",) * 3 + ("apical",) * 3
    _, slices = make_t1map_stack(np.random.default_rng(4), levels=levels, shape=(160, 192),
                                 pixel_spacing=(2.0, 2.0))
    positions = [s.truth["long_axis_position"] for s in slices]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    areas = [s.truth["lv_blood_area_mm2"] for s in slices]
    assert areas[-1] < areas[4] < areas[0] * 1.05
    assert [s.level for s in slices] == list(levels)


def test_wall_thickness_and_spacing_ranges(stacks: list) -> None:
    walls = []
    for _, slices in stacks:
        mid = slices[1]
        walls.append(mid.truth["wall_thickness_mm"])
        assert 1.0 <= min(mid.pixel_spacing) <= max(mid.pixel_spacing) <= 2.5
        fov = [n * d for n, d in zip(mid.shape, mid.pixel_spacing, strict=True)]
        assert 200.0 <= max(fov) <= 450.0
    assert min(walls) >= 3.5 and max(walls) <= 22.0
    # Mixed phenotypes: thin and thick walls both occur in a dozen subjects.
    assert max(walls) - min(walls) > 4.0


def test_papillary_muscles_are_labelled_blood_pool() -> None:
    rng = np.random.default_rng(5)
    case = make_heart_case(rng, phenotype="normal")
    s = make_t1map_slice(rng, level="mid", heart=case, shape=(256, 256),
                         pixel_spacing=(1.2, 1.2))
    assert s.rendered is not None
    papillary = s.rendered.fractions[Structure.PAPILLARY_MUSCLE] > 0.9
    assert papillary.sum() > 3
    assert np.all(s.labels[papillary] == Label.LV_BLOOD_POOL)
    # ... while they have myocardial (not blood) T1.
    myo_t1 = case.tissues.myocardium_t1_ms
    assert abs(float(np.median(_array(s.t1_clean_ms)[papillary])) - myo_t1) < 40.0


def test_explicit_shape_and_spacing_are_respected() -> None:
    s = make_t1map_slice(np.random.default_rng(3), shape=(218, 256),
                         pixel_spacing=(1.6, 1.8), level="apical")
    assert s.shape == (218, 256)
    assert s.pixel_spacing == (1.6, 1.8)
    assert s.level == "apical"


def test_bad_arguments_raise() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="level"):
        make_t1map_slice(rng, level="septal")
    with pytest.raises(ValueError, match="tabulated"):
        make_t1map_slice(rng, field_strength_t=7.0)
    case = make_heart_case(rng, field_strength_t=3.0)
    with pytest.raises(ValueError, match="3 T"):
        make_t1map_slice(rng, heart=case, field_strength_t=1.5)
    with pytest.raises(ValueError, match="positive"):
        make_t1map_slice(rng, pixel_spacing=(0.0, 1.0))


# --------------------------------------------------------------------------------------------
# T1 values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", [1.5, 3.0])
def test_tissue_t1_in_cited_ranges(field: float) -> None:
    rng = np.random.default_rng(int(field * 10))
    table = NATIVE_T1_MS[field]
    blood_lo, blood_hi = BLOOD_T1_RANGE_MS[field]
    for _ in range(40):
        case = make_heart_case(rng, field_strength_t=field)
        values = case.tissues.native_t1_ms
        for tissue in (Tissue.LIVER, Tissue.SPLEEN, Tissue.FAT, Tissue.SKELETAL_MUSCLE):
            assert values[tissue] in table[tissue]
        healthy = values[Tissue.MYOCARDIUM] - case.tissues.diffuse_rise_ms
        assert healthy in table[Tissue.MYOCARDIUM]
        assert 0.0 <= case.tissues.diffuse_rise_ms <= DIFFUSE_DISEASE_MAX_MS
        assert blood_lo <= values[Tissue.BLOOD] <= blood_hi
    # Literature anchors (see models.phantoms.tissues): MOLLI myocardium and blood.
    myo = table[Tissue.MYOCARDIUM]
    assert (myo.low_ms, myo.high_ms) == ((950.0, 1050.0) if field == 1.5 else (1150.0, 1250.0))
    typical_blood = blood_t1_from_haematocrit(HAEMATOCRIT_MEAN, field)
    assert (1550 <= typical_blood <= 1650) if field == 1.5 else (1800 <= typical_blood <= 1950)


def test_map_values_match_truth(stacks: list) -> None:
    for case, slices in stacks:
        for s in slices:
            myo = s.labels == Label.MYOCARDIUM
            lv = s.labels == Label.LV_BLOOD_POOL
            area = s.pixel_spacing[0] * s.pixel_spacing[1]
            assert s.truth["myocardium_t1_mean_ms"] == pytest.approx(float(s.t1_ms[myo].mean()))
            assert s.truth["blood_t1_mean_ms"] == pytest.approx(float(s.t1_ms[lv].mean()))
            assert s.truth["myocardium_area_mm2"] == pytest.approx(myo.sum() * area)
            assert s.truth["lv_blood_area_mm2"] == pytest.approx(lv.sum() * area)
            assert s.truth["myocardium_t1_true_ms"] == case.tissues.myocardium_t1_ms
            assert s.t1_ms.min() >= 0.0 and s.t1_ms.max() <= MAX_T1_MS


def test_conservative_core_measures_true_myocardial_t1(stacks: list) -> None:
    errors = []
    for _, slices in stacks:
        for s in slices:
            # One pixel eroded, lesions excluded: what a careful reader would measure.
            core = ndimage.binary_erosion(s.labels == Label.MYOCARDIUM, iterations=1) & (
                _rendered(s).lesion_fraction == 0)
            if core.sum() > 30:
                measured = float(np.median(s.t1_ms[core]))
                errors.append(measured - s.truth["myocardium_t1_true_ms"])
    errors_arr = np.abs(np.array(errors))
    assert len(errors) > 25
    # Partial volume and artefacts bias some thin-walled slices, not the bulk.
    assert float(np.median(errors_arr)) < 20.0
    assert float(np.max(errors_arr)) < 120.0


def test_fitting_noise_in_myocardium(stacks: list) -> None:
    sds = []
    for _, slices in stacks:
        for s in slices:
            core = ndimage.binary_erosion(s.labels == Label.MYOCARDIUM, iterations=1)
            sds.append(float((s.t1_ms - _array(s.t1_noiseless_ms))[core].std()))
    assert 15.0 < float(np.median(sds)) < 40.0
    assert max(sds) < 60.0


def test_blood_is_noisier_than_myocardium(stacks: list) -> None:
    for _, slices in stacks[:4]:
        s = slices[1]
        noise = s.t1_ms - _array(s.t1_noiseless_ms)
        myo = ndimage.binary_erosion(s.labels == Label.MYOCARDIUM, iterations=1)
        pool = ndimage.binary_erosion(s.labels == Label.LV_BLOOD_POOL, iterations=2)
        assert noise[pool].std() > noise[myo].std()


def test_diffuse_disease_and_lesions_raise_t1() -> None:
    rng = np.random.default_rng(11)
    healthy = make_heart_case(rng, diffuse_rise_ms=0.0, lesion_probability=0.0)
    diseased = make_heart_case(rng, diffuse_rise_ms=120.0, lesion_probability=1.0)
    assert diseased.tissues.myocardium_t1_ms - diseased.tissues.diffuse_rise_ms in (
        NATIVE_T1_MS[1.5][Tissue.MYOCARDIUM])
    assert diseased.lesions
    found = False
    for level in LEVELS:
        s = make_t1map_slice(rng, heart=diseased, level=level, shape=(224, 224),
                             pixel_spacing=(1.5, 1.5))
        if s.truth["lesion_area_mm2"] > 20:
            found = True
            assert s.truth["lesion_t1_true_ms"] > diseased.tissues.myocardium_t1_ms + 50
            lesion = (_rendered(s).lesion_fraction > 0.99) & (s.labels == Label.MYOCARDIUM)
            remote = (_rendered(s).fraction(Structure.LV_MYOCARDIUM) > 0.99)
            clean = _array(s.t1_clean_ms)
            assert clean[lesion].mean() > clean[remote].mean() + 50
    assert found
    assert healthy.tissues.diffuse_rise_ms == 0.0 and not healthy.lesions


def test_same_seed_same_phantom_other_seed_differs() -> None:
    a = make_t1map_stack(np.random.default_rng(42))[1]
    b = make_t1map_stack(np.random.default_rng(42))[1]
    c = make_t1map_stack(np.random.default_rng(43))[1]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.t1_ms, y.t1_ms)
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.truth == y.truth
    assert a[0].shape != c[0].shape or not np.array_equal(a[0].t1_ms, c[0].t1_ms)


# --------------------------------------------------------------------------------------------
# MOLLI source images
# --------------------------------------------------------------------------------------------


def test_molli_inversion_times() -> None:
    tis = molli_inversion_times("5(3)3", heart_rate_bpm=60.0, first_ti_ms=110.0)
    np.testing.assert_allclose(tis, [110, 1110, 2110, 3110, 4110, 190, 1190, 2190])
    assert molli_inversion_times("3(3)3(3)5").size == 11
    assert molli_inversion_times("5s(3s)3s", heart_rate_bpm=75.0).size == 6 + 3
    with pytest.raises(ValueError, match="scheme"):
        molli_inversion_times("five")
    with pytest.raises(ValueError, match="RR"):
        molli_inversion_times("5(3)3", heart_rate_bpm=60, first_ti_ms=1500)


def _fit_t1(tis: np.ndarray, signal: np.ndarray) -> float:
    """Three-parameter fit with polarity restoration; returns T1 = T1* (B/A - 1)."""
    order = np.argsort(tis)
    t, y = tis[order], signal[order]
    best = (np.inf, 0.0)

    def model(ti: np.ndarray, a: float, b: float, t1s: float) -> np.ndarray:
        return a - b * np.exp(-ti / t1s)

    for flip in range(len(t) + 1):
        signed = y.copy()
        signed[:flip] *= -1
        try:
            (a, b, t1s), _ = optimize.curve_fit(model, t, signed, p0=(y.max(), 2 * y.max(),
                                                                      800.0), maxfev=5000)
        except RuntimeError:
            continue
        residual = float(np.sum((model(t, a, b, t1s) - signed) ** 2))
        if residual < best[0] and a > 0:
            best = (residual, t1s * (b / a - 1.0))
    return best[1]


def test_molli_source_images_fit_back_to_t1() -> None:
    rng = np.random.default_rng(8)
    s = make_t1map_slice(rng, level="mid", shape=(192, 192), pixel_spacing=(1.8, 1.8))
    images, tis = make_molli_source(rng, s, "5(3)3")
    assert images.shape == (8, *s.shape) and images.dtype == np.float32
    assert 100.0 <= tis.min() <= 120.0
    assert np.all(images >= 0)
    rendered = _rendered(s)
    for structure, label in ((Structure.LV_MYOCARDIUM, "myocardium"),
                             (Structure.LV_BLOOD, "blood")):
        pure = ndimage.binary_erosion(rendered.fractions[structure] == 1.0)
        assert pure.sum() > 20, label
        fitted = _fit_t1(tis, images[:, pure].mean(axis=1))
        expected = float(_array(s.t1_clean_ms)[pure].mean())
        assert fitted == pytest.approx(expected, rel=0.04), label


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_t1map_series_round_trip(vendor: str, study_slices: list[PhantomSlice],
                                 tmp_path: Path) -> None:
    study = dicom_study.StudyInfo.synthetic(5)
    datasets = dicom_maps.t1map_series_datasets(study_slices, vendor=vendor, study=study,
                                                rng=np.random.default_rng(1))
    paths = dicom_build.write_series(datasets, tmp_path)
    assert len(paths) == len(study_slices)
    read = [pydicom.dcmread(p) for p in paths]
    tolerance = 0.125 + 1e-6 if vendor == "philips" else 0.5 + 1e-6
    normal = None
    locations = []
    for ds, s in zip(read, study_slices, strict=True):
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage
        assert ds.Modality == "MR" and ds.BodyPartExamined == "HEART"
        assert ds.PatientPosition == "HFS"
        assert int(ds.ImagesInAcquisition) == len(study_slices)
        assert float(ds.MagneticFieldStrength) == 1.5
        assert ds.PixelRepresentation == 0 and ds.BitsAllocated == 16
        assert (ds.Rows, ds.Columns) == s.shape
        assert tuple(float(v) for v in ds.PixelSpacing) == pytest.approx(s.pixel_spacing)
        values = dicom_build.stored_to_physical(ds)
        assert np.max(np.abs(values - s.t1_ms)) <= tolerance
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        row, col = orientation[:3], orientation[3:]
        assert np.linalg.norm(row) == pytest.approx(1, abs=1e-5)
        assert np.dot(row, col) == pytest.approx(0, abs=1e-5)
        n = np.cross(row, col)
        normal = n if normal is None else normal
        np.testing.assert_allclose(n, normal, atol=1e-5)
        locations.append(float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
        assert "SYNTHETIC" in str(ds.PatientName)
    gap = float(read[0].SpacingBetweenSlices)
    assert 8.0 <= gap <= 10.0
    np.testing.assert_allclose(np.abs(np.diff(locations)), gap, atol=1e-3)
    assert len({ds.SeriesInstanceUID for ds in read}) == 1
    assert len({ds.SOPInstanceUID for ds in read}) == len(read)
    assert [int(ds.InstanceNumber) for ds in read] == [1, 2, 3]


def test_vendor_naming_and_encoding(study_slices: list[PhantomSlice]) -> None:
    study = dicom_study.StudyInfo.synthetic(6)
    siemens = dicom_maps.t1map_series_datasets(study_slices, vendor="siemens", study=study)[0]
    assert siemens.Manufacturer == "SIEMENS"
    assert list(siemens.ImageType) == ["DERIVED", "PRIMARY", "T1 MAP", "MOCO"]
    assert siemens.SequenceName.startswith("*tfi2d1_")
    assert "T1MAP" in siemens.SeriesDescription and "MOLLI" in siemens.SeriesDescription
    np.testing.assert_array_equal(siemens.pixel_array, np.rint(study_slices[0].t1_ms))
    philips = dicom_maps.t1map_series_datasets(study_slices, vendor="philips", study=study)[0]
    assert philips.Manufacturer.startswith("Philips")
    assert list(philips.ImageType) == ["DERIVED", "PRIMARY", "T1", "T1"]
    rwv = philips.RealWorldValueMappingSequence[0]
    assert rwv.MeasurementUnitsCodeSequence[0].CodeValue == "ms"
    assert float(philips.RescaleSlope) != pytest.approx(float(rwv.RealWorldValueSlope))
    wrong = philips.pixel_array * float(philips.RescaleSlope) + float(philips.RescaleIntercept)
    myo = study_slices[0].labels == Label.MYOCARDIUM
    assert abs(np.mean(wrong[myo]) - np.mean(study_slices[0].t1_ms[myo])) > 500.0
    ge = dicom_maps.t1map_series_datasets(study_slices, vendor="ge", study=study)[0]
    assert ge.Manufacturer == "GE MEDICAL SYSTEMS"
    assert list(ge.ImageType) == ["DERIVED", "PRIMARY", "T1MAP"]
    with pytest.raises(ValueError, match="vendor"):
        dicom_maps.t1map_series_datasets(study_slices, vendor="toshiba")


def test_negative_series_headers(study_slices: list[PhantomSlice]) -> None:
    study = dicom_study.StudyInfo.synthetic(7)
    source = dicom_maps.molli_source_series_datasets(study_slices[1], study=study)
    assert len(source) == 8
    tis = [float(ds.InversionTime) for ds in source]
    assert len(set(tis)) == 8 and 100.0 <= min(tis) <= 120.0
    assert all(ds.ImageType[0] == "ORIGINAL" for ds in source)
    post = dicom_maps.postcontrast_t1map_series_datasets(study_slices, study=study)
    assert post[0].ContrastBolusAgent and "POST" in post[0].SeriesDescription
    myo = study_slices[1].labels == Label.MYOCARDIUM
    post_myo = float(np.median(dicom_build.stored_to_physical(post[1])[myo]))
    assert 300.0 < post_myo < 650.0
    t2 = dicom_maps.t2map_series_datasets(study_slices, study=study)
    assert "T2" in t2[0].SeriesDescription
    assert 40.0 < float(np.median(dicom_build.stored_to_physical(t2[1])[myo])) < 65.0
    ecv = dicom_maps.ecv_map_series_datasets(study_slices, study=study, vendor="philips")
    assert 18.0 < float(np.median(dicom_build.stored_to_physical(ecv[1])[myo])) < 45.0
    brain = dicom_noncardiac.non_cardiac_mr_series_datasets(study=study)
    assert brain[0].BodyPartExamined == "BRAIN"
    every = source + post + t2 + ecv + brain
    assert {ds.StudyInstanceUID for ds in every} == {study.study_instance_uid}
    assert len({ds.SeriesInstanceUID for ds in every}) == 5


def test_enhanced_multiframe_t1map(study_slices: list[PhantomSlice], tmp_path: Path) -> None:
    study = dicom_study.StudyInfo.synthetic(8)
    single = dicom_maps.t1map_series_datasets(study_slices, vendor="philips", study=study)
    enhanced = dicom_maps.t1map_enhanced_dataset(single, study=study)
    path = dicom_build.write_series([enhanced], tmp_path)[0]
    ds = pydicom.dcmread(path)
    assert int(ds.NumberOfFrames) == len(study_slices)
    values = dicom_build.stored_to_physical(ds)
    for frame, s in zip(values, study_slices, strict=True):
        assert np.max(np.abs(frame - s.t1_ms)) <= 0.125 + 1e-6


DCIODVFY = shutil.which("dciodvfy") or ""


@pytest.mark.skipif(not DCIODVFY, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_dciodvfy_reports_no_errors(vendor: str, tmp_path: Path) -> None:
    cli_main(["--out", str(tmp_path), "--vendor", vendor, "--seed", "3", "--with-negatives",
              "--with-enhanced"])
    truth = json.loads((tmp_path / "truth.json").read_text())
    for series in truth["series"]:
        path = tmp_path / series["instances"][0]["file"]
        result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True,
                                timeout=60, check=False)
        report = result.stderr + result.stdout
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, (series["kind"], errors)


def test_cli_is_deterministic_and_truth_matches_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert cli_main(["--out", str(out), "--vendor", "ge", "--field", "3", "--seed", "9",
                         "--with-negatives"]) == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    truth = json.loads((first / "truth.json").read_text())
    assert truth["synthetic"] is True and truth["field_strength_t"] == 3.0
    kinds = {s["kind"]: s for s in truth["series"]}
    assert kinds["t1map"]["expected_analysis"] == "t1map"
    assert kinds["brain_t2"]["expected_analysis"] is None
    for instance in kinds["t1map"]["instances"]:
        ds = pydicom.dcmread(first / instance["file"])
        assert ds.SOPInstanceUID == instance["sop_instance_uid"]
        assert float(ds.MagneticFieldStrength) == 3.0
        myo = instance["truth"]["myocardium_t1_true_ms"]
        assert 1150.0 <= myo <= 1250.0 + DIFFUSE_DISEASE_MAX_MS
    other = tmp_path / "c"
    cli_main(["--out", str(other), "--vendor", "ge", "--field", "3", "--seed", "10"])
    assert json.loads((other / "truth.json").read_text())["study_instance_uid"] != truth[
        "study_instance_uid"]


def test_synthetic_study_of_a_leap_day_has_a_birth_date() -> None:
    # Seed 255 draws 29 February 2024 as the study day.
    from models.phantoms.dicom_study import StudyInfo

    info = StudyInfo.synthetic(255)
    assert len(info.patient_birth_date) == 8 and info.patient_birth_date < "20240229"


def _inner_wall_t1(s: PhantomSlice) -> float:
    """Noise-free map T1 over the myocardial pixels touching the LV blood pool label."""
    assert s.t1_clean_ms is not None
    ring = (s.labels == Label.MYOCARDIUM) & ndimage.binary_dilation(
        s.labels == Label.LV_BLOOD_POOL, structure=EIGHT)
    return float(s.t1_clean_ms[ring].mean())


def test_border_realism_is_off_by_default() -> None:
    kwargs = {"field_strength_t": 3.0, "shape": (160, 160), "pixel_spacing": (1.6, 1.6)}
    plain = make_t1map_slice(np.random.default_rng(7), **kwargs)
    inactive = make_t1map_slice(np.random.default_rng(7), border=BorderRealism(), **kwargs)
    assert not BorderRealism().active
    np.testing.assert_array_equal(plain.t1_ms, inactive.t1_ms)
    np.testing.assert_array_equal(plain.labels, inactive.labels)


def test_realistic_borders_mix_blood_into_the_inner_wall() -> None:
    kwargs = {"field_strength_t": 3.0, "shape": (160, 160), "pixel_spacing": (1.6, 1.6)}
    plain = make_t1map_slice(np.random.default_rng(7), **kwargs)
    border = BorderRealism(slice_thickness_mm=8.0, endocardial_motion_mm=4.0,
                           trabecular_layer_mm=3.0, trabecular_count=60, n_renders=7)
    real = make_t1map_slice(np.random.default_rng(7), border=border, **kwargs)
    assert real.truth["myocardium_t1_true_ms"] == plain.truth["myocardium_t1_true_ms"]
    # Blood (~1900 ms at 3 T) smeared over the endocardium raises the inner wall's T1.
    assert _inner_wall_t1(real) > _inner_wall_t1(plain) + 30.0
    # The labels still mark the compact wall: about the same myocardial area.
    area = (real.labels == Label.MYOCARDIUM).sum() / (plain.labels == Label.MYOCARDIUM).sum()
    assert 0.85 < area < 1.15
    drawn = sample_border_realism(np.random.default_rng(0))
    assert drawn.active and 6.0 <= drawn.slice_thickness_mm <= 8.0
