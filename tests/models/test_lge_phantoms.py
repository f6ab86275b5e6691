"""Tests of the LGE and cine phantoms, their scar truth and their DICOM series."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from models.phantoms import dicom_build, dicom_lge, dicom_study
from models.phantoms.__main__ import main as cli_main
from models.phantoms.anatomy import Structure
from models.phantoms.cine import (
    END_SYSTOLE_PHASE,
    contraction,
    heart_at_phase,
    make_cine_slice,
    matched_cine_stack,
)
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.lge import (
    LgeSlice,
    lge_case_truth,
    make_lge_slice,
    make_lge_stack,
    make_ti_scout,
    stack_positions,
)
from models.phantoms.lge_acquisition import sample_lge_acquisition
from models.phantoms.lge_scar import AHA_TERRITORY, ScarPattern, sample_scar
from plugins.api import Label

SHAPE = (128, 128)
SPACING = (2.2, 2.2)
EIGHT = np.ones((3, 3), dtype=bool)
MYO_LABELS = (Label.MYOCARDIUM, Label.SCAR, Label.MVO)


def _stack(seed: int, pattern: str | None, n_slices: int = 6,
           **kwargs: object) -> tuple[object, list[LgeSlice]]:
    return make_lge_stack(np.random.default_rng(seed), n_slices=n_slices, scar_pattern=pattern,
                          shape=SHAPE, pixel_spacing=SPACING, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stacks() -> dict[str, list[list[LgeSlice]]]:
    """Per pattern, a few subjects (ischaemic patterns get more, to span the burden)."""
    out: dict[str, list[list[LgeSlice]]] = {}
    for k, pattern in enumerate(ScarPattern):
        seeds = range(3) if pattern in (ScarPattern.LAD, ScarPattern.RCA, ScarPattern.LCX) \
            else range(1)
        out[pattern.value] = [_stack(1000 * k + seed, pattern.value)[1] for seed in seeds]
    return out


def _all(stacks: dict[str, list[list[LgeSlice]]]) -> list[LgeSlice]:
    return [s for per_pattern in stacks.values() for stack in per_pattern for s in stack]


# --------------------------------------------------------------------------------------------
# Labels and scar truth
# --------------------------------------------------------------------------------------------


def test_labels_consistent_with_anatomy(stacks: dict) -> None:
    for s in _all(stacks):
        assert s.labels.dtype == np.uint8 and s.image.dtype == np.float32
        assert set(np.unique(s.labels)) <= {int(v) for v in Label}
        # Scar and MVO replace myocardium only: their union is the anatomy's myocardium.
        myo = np.isin(s.labels, MYO_LABELS)
        assert np.array_equal(myo, s.rendered.labels == Label.MYOCARDIUM)
        untouched = ~myo
        assert np.array_equal(s.labels[untouched], s.rendered.labels[untouched])
        # Scar lies in the LV myocardium, MVO inside scar (partial-volume fractions too).
        lv_myo = s.rendered.fraction(Structure.LV_MYOCARDIUM, Structure.LV_LESION)
        assert np.allclose(s.scar.myocardium, lv_myo, atol=1e-5)
        assert np.all(s.scar.scar <= lv_myo + 1e-5)
        assert np.all(s.scar.mvo <= s.scar.scar + 1e-6)
        assert np.all(s.scar.scar[s.labels == Label.SCAR] >= 0.25)
        assert np.all(s.scar.mvo[s.labels == Label.MVO] > 0)
        # AHA segments cover exactly the myocardium.
        assert np.array_equal(s.aha_segments > 0, myo)
        assert s.aha_segments.max() <= 16


def test_truth_areas_match_labels(stacks: dict) -> None:
    for s in _all(stacks):
        area = s.pixel_spacing[0] * s.pixel_spacing[1]
        scar_px = np.isin(s.labels, (Label.SCAR, Label.MVO)).sum()
        assert s.truth["scar_area_mm2"] == pytest.approx(scar_px * area)
        assert s.truth["mvo_area_mm2"] == pytest.approx((s.labels == Label.MVO).sum() * area)
        segment_sum = sum(v for k, v in s.truth.items() if k.startswith("scar_area_mm2_segment"))
        assert segment_sum == pytest.approx(s.truth["scar_area_mm2"])
        # Majority labelling keeps the labelled scar close to the exact partial-volume area.
        assert abs(s.truth["scar_area_mm2"] - s.truth["scar_area_exact_mm2"]) <= (
            0.25 * s.truth["scar_area_exact_mm2"] + 12 * area)


def test_scar_burden_spans_zero_to_large(stacks: dict) -> None:
    burdens = {pattern: [float(lge_case_truth(stack)["scar_percent"]) for stack in per_pattern]
               for pattern, per_pattern in stacks.items()}
    assert burdens["none"] == [0.0]
    every = [b for values in burdens.values() for b in values]
    assert max(every) > 25.0
    assert all(0.0 <= b <= 60.0 for b in every)
    for pattern in ("midwall_septal", "rv_insertion", "patchy", "subepicardial"):
        assert 0.0 < burdens[pattern][0] < 25.0, pattern
    truth = lge_case_truth(stacks["ischaemic_lad"][0])
    assert truth["scar_pattern"] == "ischaemic_lad"
    assert truth["scar_percent"] == pytest.approx(truth["scar_percent_exact"], abs=4.0)


def test_ischaemic_scar_lies_in_its_coronary_territory(stacks: dict) -> None:
    territory = {"ischaemic_lad": "LAD", "ischaemic_rca": "RCA", "ischaemic_lcx": "LCX"}
    for pattern, artery in territory.items():
        for stack in stacks[pattern]:
            if stack[0].heart.scar is not None and len(stack[0].heart.scar.regions) > 1:
                continue  # a second infarct in another territory
            per_artery = {"LAD": 0.0, "RCA": 0.0, "LCX": 0.0}
            for s in stack:
                for key, value in s.truth.items():
                    if key.startswith("scar_area_mm2_segment_"):
                        per_artery[AHA_TERRITORY[int(key.rsplit("_", 1)[1])]] += value
            total = sum(per_artery.values())
            assert total > 0, pattern
            assert per_artery[artery] / total > 0.5, (pattern, per_artery)


def test_transmural_position_of_patterns(stacks: dict) -> None:
    """Ischaemic scar starts at the endocardium; mid-wall and subepicardial scar spare it."""

    def shares(stack: list[LgeSlice]) -> tuple[float, float]:
        """Fractions of scar pixels touching the LV pool and touching the outside."""
        endo = epi = total = 0
        for s in stack:
            scar = np.isin(s.labels, (Label.SCAR, Label.MVO))
            pool = ndimage.binary_dilation(s.labels == Label.LV_BLOOD_POOL, structure=EIGHT)
            outside = ndimage.binary_dilation(
                np.isin(s.labels, (Label.BACKGROUND, Label.RV_BLOOD_POOL)), structure=EIGHT)
            endo += int((scar & pool).sum())
            epi += int((scar & outside).sum())
            total += int(scar.sum())
        return endo / max(total, 1), epi / max(total, 1)

    for stack in stacks["ischaemic_lad"] + stacks["ischaemic_rca"]:
        endo, epi = shares(stack)
        assert endo > 0.15 and endo >= 0.5 * epi
    endo, epi = shares(stacks["subepicardial"][0])
    assert endo < 0.1 and epi > 0.3
    # Mid-wall stripes spare both borders (checked on the geometry: walls are few pixels).
    scar = stacks["midwall_septal"][0][0].heart.scar
    assert scar is not None
    region = scar.regions[0]
    theta = np.full(200, region.angle_rad)
    s_mid = 0.5 * sum(region.s_range)
    for depth, expect in ((0.02, False), (0.98, False), (0.5 * sum(region.depth), True)):
        hit, _ = region.masks(theta, np.full(200, depth), s_mid)
        assert hit.any() == expect, depth


def test_scar_is_continuous_along_the_long_axis(stacks: dict) -> None:
    for pattern in ("ischaemic_lad", "ischaemic_rca", "ischaemic_lcx", "midwall_septal"):
        for stack in stacks[pattern]:
            if stack[0].heart.scar is not None and len(stack[0].heart.scar.regions) > 1:
                continue
            has = [s.truth["scar_area_mm2"] > 0 for s in stack]
            first, last = has.index(True), len(has) - 1 - has[::-1].index(True)
            assert all(has[first:last + 1]), (pattern, has)


def test_mvo_occurs_inside_infarcts() -> None:
    found = False
    for seed in range(12):
        rng = np.random.default_rng(seed)
        case = make_heart_case(rng, lesion_probability=0.0)
        scar = sample_scar(rng, case, "ischaemic_lad")
        assert scar is not None
        if scar.regions[0].mvo is None:
            continue
        s = make_lge_slice(rng, case.with_scar(scar), level=0.55, shape=SHAPE,
                           pixel_spacing=SPACING)
        if s.truth["mvo_area_mm2"] == 0:
            continue
        found = True
        mvo = s.labels == Label.MVO
        # Dark core: MVO darker than the surrounding infarct and below the remote null (PSIR).
        assert s.truth["psir_mvo_mean"] < 0.7 * s.truth["psir_scar_mean"]
        assert s.truth["psir_mvo_mean"] < s.truth["psir_scar_mean"] - 3 * s.truth["noise_sd"]
        grown = ndimage.binary_dilation(mvo, structure=EIGHT, iterations=2)
        assert np.isin(s.labels[grown & ~mvo], (Label.SCAR, Label.LV_BLOOD_POOL,
                                                  Label.MYOCARDIUM, Label.BACKGROUND)).all()
        assert (s.labels[grown & ~mvo] == Label.SCAR).any()
        break
    assert found


# --------------------------------------------------------------------------------------------
# Contrast
# --------------------------------------------------------------------------------------------


def test_nulled_myocardium_is_darker_than_blood_and_scar(stacks: dict) -> None:
    checked = 0
    for s in _all(stacks):
        if abs(s.acquisition.ti_error) > 0.05 or s.truth["myocardium_area_mm2"] < 150:
            continue
        t = s.truth
        noise = t["noise_sd"]
        # Medians: thin walls share pixels with blood and scar (partial volume).
        remote = s.labels == Label.MYOCARDIUM
        blood = s.labels == Label.LV_BLOOD_POOL
        assert np.median(s.magnitude[remote]) < 0.3 * np.median(s.magnitude[blood])
        assert t["magnitude_remote_mean"] > 0.5 * noise  # Rician floor: slightly positive
        assert abs(np.median(s.psir[remote])) < 0.2 * np.median(s.psir[blood])
        # (Thin mid-wall stripes are below the acquired resolution and blur into the wall.)
        pattern = s.heart.scar.pattern if s.heart.scar is not None else "none"
        if t["scar_area_mm2"] > 60 and pattern != ScarPattern.MIDWALL.value:
            assert t["psir_scar_mean"] > t["psir_remote_mean"] + 3 * noise
            assert t["magnitude_scar_mean"] > t["magnitude_remote_mean"] + 2 * noise
        checked += 1
    assert checked >= 10


def test_dense_infarct_usually_brighter_than_blood(stacks: dict) -> None:
    ratios = []
    for pattern in ("ischaemic_lad", "ischaemic_rca", "ischaemic_lcx"):
        for stack in stacks[pattern]:
            for s in stack:
                if (s.labels == Label.SCAR).sum() > 15:
                    ratios.append(s.truth["psir_scar_mean"] / s.truth["psir_blood_mean"])
    assert ratios and np.median(ratios) > 1.0


def test_psir_is_signed_and_magnitude_is_not(stacks: dict) -> None:
    s = stacks["none"][0][3]
    assert float(s.psir.min()) < 0.0 < float(s.psir.max())
    assert float(s.magnitude.min()) >= 0.0
    assert float(s.magnitude.max()) <= 4095.0
    assert s.image is s.psir
    # Same acquisition: |PSIR| never exceeds the magnitude by more than quantisation.
    assert np.all(np.abs(s.psir) <= s.magnitude + 1e-3)


@pytest.mark.parametrize("ti_error", [-0.2, 0.2])
def test_ti_error_greys_the_myocardium(ti_error: float) -> None:
    rng = np.random.default_rng(5)
    case = make_heart_case(rng, lesion_probability=0.0)
    acq = sample_lge_acquisition(rng, case, ti_error=ti_error)
    s = make_lge_slice(rng, case, level="mid", contrast="magnitude", shape=SHAPE,
                       pixel_spacing=SPACING, acquisition=acq)
    assert s.image is s.magnitude
    t = s.truth
    assert acq.inversion_time_ms == pytest.approx(acq.ti_null_ms * (1 + ti_error), abs=1.0)
    assert t["magnitude_remote_mean"] > 0.12 * t["magnitude_blood_mean"]
    if ti_error < 0:  # too short: remote myocardium still negative, PSIR keeps it dark
        assert t["psir_remote_mean"] < -3 * t["noise_sd"]
    else:
        assert t["psir_remote_mean"] > 3 * t["noise_sd"]


def test_same_seed_same_stack_other_seed_differs() -> None:
    _, a = _stack(7, None, n_slices=3)
    _, b = _stack(7, None, n_slices=3)
    _, c = _stack(8, None, n_slices=3)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.psir, y.psir) and np.array_equal(x.labels, y.labels)
        assert x.truth == y.truth
    assert not np.array_equal(a[1].psir, c[1].psir)


def test_stack_geometry_and_bad_arguments() -> None:
    positions = stack_positions(10)
    assert len(positions) == 10 and positions == sorted(positions)
    _, slices = _stack(3, "none", n_slices=4)
    assert slices[0].level == "basal" and slices[-1].level == "apical"
    assert len({s.shape for s in slices}) == 1
    case = slices[0].heart
    with pytest.raises(ValueError, match="contrast"):
        make_lge_slice(np.random.default_rng(0), case, contrast="t2")
    with pytest.raises(ValueError, match="scar pattern"):
        sample_scar(np.random.default_rng(0), case, "amyloid")
    with pytest.raises(ValueError, match="at least one slice"):
        stack_positions(0)
    with pytest.raises(ValueError, match="too small"):
        make_lge_slice(np.random.default_rng(0), case, shape=(8, 8), pixel_spacing=(1, 1))


def test_given_heart_keeps_its_anatomy() -> None:
    rng = np.random.default_rng(11)
    heart = make_heart_case(rng, field_strength_t=3.0)
    case, slices = make_lge_stack(rng, heart=heart, scar_pattern="ischaemic_rca", n_slices=2,
                                  shape=SHAPE, pixel_spacing=SPACING)
    assert case.lv == heart.lv and case.tissues == heart.tissues
    assert case.scar is not None and case.scar.pattern == "ischaemic_rca"
    assert slices[0].field_strength_t == 3.0


# --------------------------------------------------------------------------------------------
# Cine and TI scout
# --------------------------------------------------------------------------------------------


def test_matched_cine_shares_geometry_and_contracts(stacks: dict) -> None:
    lge = stacks["ischaemic_lad"][0][2:4]
    cines = matched_cine_stack(np.random.default_rng(4), lge, max_misregistration_mm=0.0)
    for s, per_slice in zip(lge, cines, strict=True):
        ed, es, diastasis = per_slice
        assert ed.trigger_time_ms == 0.0 and es.phase == pytest.approx(END_SYSTOLE_PHASE)
        assert diastasis.trigger_time_ms == pytest.approx(s.acquisition.trigger_time_ms, abs=1.0)
        myo_lge = np.isin(s.labels, MYO_LABELS)
        for rest in (ed, diastasis):  # same geometry as the LGE slice
            assert np.array_equal(rest.labels == Label.MYOCARDIUM, myo_lge)
            assert set(np.unique(rest.labels)) <= {0, 1, 2, 3}
        assert es.truth["lv_blood_area_mm2"] < 0.85 * ed.truth["lv_blood_area_mm2"]
        assert es.truth["myocardium_area_mm2"] == pytest.approx(
            ed.truth["myocardium_area_mm2"], rel=0.3)
        # bSSFP contrast: bright blood, intermediate myocardium, bright fat.
        assert ed.truth["blood_mean"] > 1.8 * ed.truth["myocardium_mean"]
        fat = ed.rendered.fraction(Structure.SUBCUTANEOUS_FAT) > 0.99
        assert float(ed.image[fat].mean()) > 1.2 * ed.truth["myocardium_mean"]


def test_cine_misregistration_shifts_the_anatomy(stacks: dict) -> None:
    s = stacks["none"][0][2]
    still = make_cine_slice(np.random.default_rng(1), s.heart, level=s.position,
                            shape=s.shape, pixel_spacing=s.pixel_spacing,
                            centre_shift_mm=s.centre_shift_mm)
    moved = make_cine_slice(np.random.default_rng(1), s.heart, level=s.position,
                            shape=s.shape, pixel_spacing=s.pixel_spacing,
                            centre_shift_mm=s.centre_shift_mm, misregistration_mm=(6.6, 0.0))
    c0 = ndimage.center_of_mass(still.labels == Label.LV_BLOOD_POOL)
    c1 = ndimage.center_of_mass(moved.labels == Label.LV_BLOOD_POOL)
    assert c1[1] - c0[1] == pytest.approx(6.6 / s.pixel_spacing[1], abs=0.3)
    assert moved.truth["misregistration_x_mm"] == 6.6
    assert contraction(0.0) == 0.0 and contraction(END_SYSTOLE_PHASE) == pytest.approx(1.0)
    assert heart_at_phase(s.heart, 0.8) is s.heart


def test_ti_scout_nulls_myocardium_inside_the_ti_range(stacks: dict) -> None:
    s = stacks["ischaemic_lad"][0][2]
    images, tis = make_ti_scout(np.random.default_rng(2), s)
    assert images.shape == (24, *s.shape) and np.all(np.diff(tis) > 0)
    myo = s.labels == Label.MYOCARDIUM
    blood = s.labels == Label.LV_BLOOD_POOL
    myo_curve = images[:, myo].mean(axis=1)
    blood_curve = images[:, blood].mean(axis=1)
    null = int(np.argmin(myo_curve))
    assert 0 < null < len(tis) - 1
    assert int(np.argmin(blood_curve)) < null  # blood (shorter T1 after contrast) nulls first


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------


def _decoded(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1.0)) + float(
        ds.get("RescaleIntercept", 0.0))


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_lge_and_cine_series_round_trip(vendor: str, stacks: dict, tmp_path: Path) -> None:
    slices = stacks["ischaemic_rca"][0]
    study = dicom_study.StudyInfo.synthetic(21)
    psir = dicom_lge.lge_series_datasets(slices, vendor=vendor, study=study, contrast="psir")
    mag = dicom_lge.lge_series_datasets(slices, vendor=vendor, study=study, contrast="magnitude")
    cines = matched_cine_stack(np.random.default_rng(0), slices, phases=(0.0, 0.35))
    cine = dicom_lge.cine_series_datasets(cines, vendor=vendor, study=study)
    zero = {"siemens": dicom_lge.SIEMENS_PSIR_OFFSET, "philips": 0.0, "ge": 0.0}[vendor]
    paths = dicom_build.write_series(psir + mag + cine, tmp_path)
    back = [pydicom.dcmread(p) for p in paths]
    psir_back, mag_back = back[:len(slices)], back[len(slices):2 * len(slices)]
    cine_back = back[2 * len(slices):]
    assert len({ds.SeriesInstanceUID for ds in back}) == 3
    step = dicom_lge.PHILIPS_PSIR_RESCALE_SLOPE if vendor == "philips" else 1.0
    for s, p, m in zip(slices, psir_back, mag_back, strict=True):
        assert np.allclose(_decoded(p) - zero, s.psir, atol=0.51 * step + 1e-6)
        assert np.allclose(_decoded(m), s.magnitude, atol=0.51)
        for ds in (p, m):
            assert list(ds.ScanningSequence) == ["GR", "IR"]
            assert 200.0 <= float(ds.InversionTime) <= 450.0
            assert float(ds.InversionTime) == s.acquisition.inversion_time_ms
            assert float(ds.TriggerTime) == s.acquisition.trigger_time_ms
            assert ds.ContrastBolusAgent
            assert float(ds.SliceThickness) == 8.0 and float(ds.SpacingBetweenSlices) == 10.0
    locations = [float(ds.SliceLocation) for ds in psir_back]
    assert np.allclose(np.abs(np.diff(locations)), 10.0, atol=1e-3)
    # Cine: two phases per LGE slice location, TriggerTime per phase.
    cine_locations = sorted({float(ds.SliceLocation) for ds in cine_back})
    assert np.allclose(cine_locations, sorted(locations), atol=1e-3)
    assert {float(ds.TriggerTime) for ds in cine_back} == {c.trigger_time_ms for c in cines[0]}
    assert all(int(ds.CardiacNumberOfImages) == 2 for ds in cine_back)
    names = {"siemens": "PSIR", "philips": "PSIR", "ge": "PSMDE"}
    assert names[vendor] in str(psir_back[0].SeriesDescription)
    if vendor == "ge":
        assert psir_back[0].PixelRepresentation == 1


DCIODVFY = shutil.which("dciodvfy") or ""


def _dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    return [line for line in (result.stderr + result.stdout).splitlines()
            if line.startswith("Error")]


def test_cli_with_lge_writes_truth_and_valid_files(tmp_path: Path) -> None:
    assert cli_main(["--out", str(tmp_path), "--seed", "4", "--with-lge",
                     "--scar-pattern", "ischaemic_lad"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    kinds = {s["kind"]: s for s in truth["series"]}
    assert set(kinds) == {"t1map", "lge_psir", "lge_magnitude", "cine", "ti_scout"}
    assert kinds["lge_psir"]["expected_analysis"] == "lge"
    assert kinds["cine"]["expected_analysis"] is None
    assert kinds["ti_scout"]["expected_analysis"] is None
    assert len({i["inversion_time_ms"] for i in kinds["ti_scout"]["instances"]}) >= 6
    assert len({i["inversion_time_ms"] for i in kinds["lge_psir"]["instances"]}) == 1
    assert truth["lge"]["scar_pattern"] == "ischaemic_lad"
    assert truth["lge"]["scar_percent"] > 0
    total = sum(i["truth"]["scar_area_mm2"] for i in kinds["lge_psir"]["instances"])
    myo = sum(i["truth"]["myocardium_area_mm2"] for i in kinds["lge_psir"]["instances"])
    assert truth["lge"]["scar_percent"] == pytest.approx(100 * total / myo)
    first = pydicom.dcmread(tmp_path / kinds["lge_psir"]["instances"][0]["file"])
    assert first.StudyInstanceUID == truth["study_instance_uid"]
    assert first.PatientID == truth["patient_id"]
    # Same subject as the T1 maps of the study.
    heart = make_heart_case(np.random.default_rng([4, 1]), field_strength_t=1.5)
    assert heart.phenotype.value == truth["subject"]["phenotype"]
    if DCIODVFY:
        for kind in ("lge_psir", "lge_magnitude", "cine", "ti_scout"):
            path = tmp_path / kinds[kind]["instances"][0]["file"]
            assert not _dciodvfy_errors(path), kind


@pytest.mark.skipif(not DCIODVFY, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("vendor", ["philips", "ge"])
def test_dciodvfy_reports_no_errors_on_lge_series(vendor: str, tmp_path: Path) -> None:
    written = dicom_lge.write_lge_study_series(tmp_path, seed=6, vendor=vendor, n_slices=3,
                                               scar_pattern="patchy")
    for series in written["series"]:
        path = tmp_path / series["instances"][0]["file"]
        assert not _dciodvfy_errors(path), series["kind"]
