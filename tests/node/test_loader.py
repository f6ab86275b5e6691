"""Tests of node.inputs.loader: DICOM instances -> LoadedSeries in physical units."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000MCLossless, RLELossless

from node.inputs.loader import LoadError, is_t1_map, load_series, load_series_files
from plugins.api import AnalysisError

t1map = pytest.importorskip("models.phantoms.t1map")
dicom_build = pytest.importorskip("models.phantoms.dicom_build")
dicom_maps = pytest.importorskip("models.phantoms.dicom_maps")
dicom_noncardiac = pytest.importorskip("models.phantoms.dicom_noncardiac")
VENDORS = ("siemens", "philips", "ge")
# Stored-value quantisation of the phantom writer: 1 ms (Siemens, GE), 0.25 ms (Philips).
QUANTUM_MS = {"siemens": 1.0, "philips": 0.25, "ge": 1.0}
MAX_12_BIT = 4095.0


@pytest.fixture(scope="module")
def stack() -> list:
    """Three short-axis phantom slices (basal, mid, apical) of one 3 T subject."""
    _case, slices = t1map.make_t1map_stack(np.random.default_rng(7), field_strength_t=3.0)
    return slices


def _datasets(stack: list, vendor: str) -> list[Dataset]:
    return dicom_maps.t1map_series_datasets(stack, vendor=vendor)


@pytest.mark.parametrize("vendor", VENDORS)
def test_round_trip_through_files_gives_phantom_t1_in_ms(
    stack: list, vendor: str, tmp_path: Path
) -> None:
    paths = dicom_build.write_series(_datasets(stack, vendor), tmp_path)
    series, sources = load_series_files(list(reversed(paths)))

    assert len(sources) == len(paths)
    assert len(series.frames) == len(stack)
    locations = [frame.slice_location for frame in series.frames]
    assert locations == sorted(locations)
    by_instance = {int(f.attributes["InstanceNumber"]): f for f in series.frames}
    for number, phantom in enumerate(stack, start=1):
        frame = by_instance[number]
        assert frame.units == "ms"
        assert frame.pixels.dtype == np.float32
        assert frame.pixels.shape == phantom.t1_ms.shape
        assert frame.pixel_spacing == pytest.approx(phantom.pixel_spacing, abs=1e-4)
        representable = (phantom.t1_ms >= 0) & (phantom.t1_ms <= MAX_12_BIT)
        error = np.abs(frame.pixels - phantom.t1_ms)[representable]
        assert float(error.max()) <= QUANTUM_MS[vendor] / 2 + 1e-3
    header = series.header
    assert header["Modality"] == "MR"
    assert float(header["MagneticFieldStrength"]) == pytest.approx(3.0)
    assert series.field_strength_t == pytest.approx(3.0)
    assert header["Manufacturer"]
    assert isinstance(header["ImageType"], list)
    assert series.series_instance_uid == str(sources[0].SeriesInstanceUID)
    assert series.study_instance_uid == str(sources[0].StudyInstanceUID)


def test_philips_uses_real_world_value_mapping_not_rescale(stack: list) -> None:
    datasets = _datasets(stack, "philips")
    ds = datasets[0]
    rescale = float(ds.RescaleSlope)
    rwv = float(ds.RealWorldValueMappingSequence[0].RealWorldValueSlope)
    assert rescale != pytest.approx(rwv)  # the phantom makes them differ on purpose
    series = load_series(datasets)
    frame = next(f for f in series.frames if f.sop_instance_uid == ds.SOPInstanceUID)
    expected = ds.pixel_array.astype(np.float64) * rwv
    np.testing.assert_allclose(frame.pixels, expected, atol=1e-3)
    assert frame.attributes["ValueMappingSource"] == "RealWorldValueMapping"


def test_real_world_value_item_in_ms_is_preferred(stack: list) -> None:
    ds = copy.deepcopy(_datasets(stack, "philips")[0])
    ms_item = ds.RealWorldValueMappingSequence[0]
    other = Dataset()
    other.RealWorldValueSlope = 7.0
    other.RealWorldValueIntercept = 0.0
    unit = Dataset()
    unit.CodeValue = "%"
    unit.CodingSchemeDesignator = "UCUM"
    unit.CodeMeaning = "percent"
    other.MeasurementUnitsCodeSequence = [unit]
    other.LUTLabel = "OTHER"
    other.LUTExplanation = "other"
    other.RealWorldValueFirstValueMapped = 0
    other.RealWorldValueLastValueMapped = 65535
    ds.RealWorldValueMappingSequence = [other, ms_item]
    frame = load_series([ds]).frames[0]
    assert frame.units == "ms"
    np.testing.assert_allclose(
        frame.pixels, ds.pixel_array * float(ms_item.RealWorldValueSlope), atol=1e-3
    )


def test_enhanced_multiframe_matches_single_frame_series(stack: list) -> None:
    single = _datasets(stack, "philips")
    enhanced = dicom_maps.t1map_enhanced_dataset(single)
    assert "PerFrameFunctionalGroupsSequence" in enhanced
    multi = load_series([enhanced])
    classic = load_series(single)

    assert len(multi.frames) == len(classic.frames) == len(stack)
    assert sorted(f.frame_number or 0 for f in multi.frames) == [1, 2, 3]
    for mf, sf in zip(multi.frames, classic.frames, strict=True):
        assert mf.sop_instance_uid == str(enhanced.SOPInstanceUID)
        assert mf.units == "ms"
        assert mf.image_position == pytest.approx(sf.image_position, abs=1e-3)
        assert mf.image_orientation == pytest.approx(sf.image_orientation, abs=1e-4)
        assert mf.pixel_spacing == pytest.approx(sf.pixel_spacing, abs=1e-4)
        np.testing.assert_allclose(mf.pixels, sf.pixels, atol=1e-3)


def test_series_header_and_frame_attributes(stack: list) -> None:
    series = load_series(_datasets(stack, "siemens"))
    for keyword in (
        "SeriesDescription",
        "ProtocolName",
        "SequenceName",
        "StudyDescription",
        "BodyPartExamined",
        "SeriesNumber",
        "PatientID",
        "ManufacturerModelName",
    ):
        assert keyword in series.header, keyword
    assert is_t1_map(series.header)
    frame = series.frames[0]
    assert "TriggerTime" in frame.attributes
    assert "EchoTime" in frame.attributes
    assert "ImageType" in frame.attributes


def test_rle_compressed_series_is_decoded(stack: list) -> None:
    datasets = [copy.deepcopy(ds) for ds in _datasets(stack, "siemens")]
    reference = load_series(datasets)
    for ds in datasets:
        ds.compress(RLELossless)
    series = load_series(datasets)
    for a, b in zip(series.frames, reference.frames, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)


def test_compressed_transfer_syntax_without_decoder_names_it(stack: list) -> None:
    ds = copy.deepcopy(_datasets(stack, "siemens")[0])
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000MCLossless
    with pytest.raises(LoadError) as excinfo:
        load_series([ds])
    message = str(excinfo.value)
    assert JPEG2000MCLossless.name in message
    assert str(JPEG2000MCLossless) in message
    assert isinstance(excinfo.value, AnalysisError)


def test_missing_pixel_spacing_is_a_load_error(stack: list) -> None:
    datasets = [copy.deepcopy(ds) for ds in _datasets(stack, "ge")]
    del datasets[1].PixelSpacing
    with pytest.raises(LoadError, match="PixelSpacing"):
        load_series(datasets)


def test_missing_geometry_is_a_load_error(stack: list) -> None:
    datasets = [copy.deepcopy(ds) for ds in _datasets(stack, "ge")]
    del datasets[0].ImageOrientationPatient
    with pytest.raises(LoadError, match="ImageOrientationPatient"):
        load_series(datasets)


def test_inconsistent_matrix_is_a_load_error(stack: list) -> None:
    datasets = [copy.deepcopy(ds) for ds in _datasets(stack, "siemens")]
    small = datasets[2]
    pixels = small.pixel_array[:-8, :]
    small.Rows = pixels.shape[0]
    small.PixelData = pixels.tobytes()
    with pytest.raises(LoadError, match="different sizes"):
        load_series(datasets)


def test_pixel_data_shorter_than_rows_columns_is_a_load_error(stack: list) -> None:
    ds = copy.deepcopy(_datasets(stack, "siemens")[0])
    ds.Rows = int(ds.Rows) + 16
    with pytest.raises(LoadError, match=r"cannot be decoded|inconsistent"):
        load_series([ds])


def test_no_image_frames_is_a_load_error(stack: list) -> None:
    datasets = [copy.deepcopy(ds) for ds in _datasets(stack, "siemens")]
    for ds in datasets:
        del ds.PixelData
    with pytest.raises(LoadError, match="no image frames"):
        load_series(datasets)
    with pytest.raises(LoadError, match="no instances"):
        load_series([])


def test_instances_of_two_series_are_refused(stack: list) -> None:
    datasets = [copy.deepcopy(ds) for ds in _datasets(stack, "siemens")]
    datasets[0].SeriesInstanceUID = pydicom.uid.generate_uid()
    with pytest.raises(LoadError, match="different series"):
        load_series(datasets)


def test_non_dicom_file_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "not-dicom.dcm"
    path.write_bytes(b"this is not DICOM")
    with pytest.raises(LoadError, match="Cannot read"):
        load_series_files([path])


def test_non_t1_series_has_unitless_values() -> None:
    series = load_series(dicom_noncardiac.non_cardiac_mr_series_datasets(n_slices=2))
    assert not is_t1_map(series.header)
    assert {frame.units for frame in series.frames} == {"1"}


def test_is_t1_map_recognises_vendor_naming() -> None:
    assert is_t1_map({"ImageType": ["DERIVED", "PRIMARY", "T1 MAP", "MOCO"]})
    assert is_t1_map({"ImageType": "DERIVED\\PRIMARY\\T1MAP"})
    assert is_t1_map({"SeriesDescription": "MOLLI_5(3)3_SAX_T1MAP"})
    assert not is_t1_map({"SeriesDescription": "MOLLI_5(3)3_SAX", "ImageType": ["ORIGINAL"]})
    assert not is_t1_map({})
