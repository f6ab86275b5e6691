"""node.inputs.loader chooses the images an analysis needs per slice position.

The choice is node.inputs.selection's.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from node.inputs.loader import load_series
from plugins.api import ContrastPhase

SERIES = generate_uid()
STUDY = generate_uid()
SAX = [0.8, 0.6, 0.0, 0.0, 0.0, -1.0]
MOLLI_TIS = [100.0, 180.0, 260.0, 1100.0, 1180.0, 1260.0, 2100.0, 3100.0]


def _image(
    z: float,
    image_type: list[str],
    value: float,
    *,
    manufacturer: str = "Philips Medical Systems",
    description: str = "T1 MOLLI SAX",
    content_time: str = "101010",
    instance: int = 1,
    modality: str = "MR",
    inversion_time: float | None = None,
    philips_ti: float | None = None,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.MagneticFieldStrength = "1.5"
    ds.SeriesDescription = description
    ds.ImageType = image_type
    ds.InstanceNumber = instance
    ds.ContentDate = "20260101"
    ds.ContentTime = content_time
    ds.HeartRate = "62"
    ds.BodyPartExamined = "ABDOMEN"
    ds.ImagePositionPatient = [-0.6 * z, 0.8 * z, 20.0]  # z mm along the SAX normal
    ds.ImageOrientationPatient = SAX
    ds.PixelSpacing = [1.5, 1.5]
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.full((8, 8), value, dtype="<u2").tobytes()
    if inversion_time is not None:
        ds.InversionTime = inversion_time
    if philips_ti is not None:
        ds.add_new(0x20050015, "LO", "Philips MR Imaging DD 006")
        ds.add_new(0x20051572, "FL", philips_ti)
    return ds


def _philips_map_and_sources(slices: int = 2) -> list[Dataset]:
    """Philips-style: the T1 maps stored in the series of their IR source images, the
    inversion time only in the private tag (2005,1572)."""
    datasets = []
    number = 1
    for s in range(slices):
        for ti in MOLLI_TIS:
            datasets.append(_image(10.0 * s, ["ORIGINAL", "PRIMARY", "M_IR", "M", "IR"], 300,
                                   philips_ti=ti, instance=number))
            number += 1
        datasets.append(_image(10.0 * s, ["DERIVED", "PRIMARY", "T1", "T1"], 1000,
                               instance=number))
        number += 1
    return datasets


def test_map_analysis_takes_the_maps_of_a_map_and_source_series() -> None:
    series = load_series(_philips_map_and_sources(), analysis="t1map")
    assert len(series.frames) == 2
    assert {f.attributes["ImageKind"] for f in series.frames} == {"t1_map"}
    assert {f.units for f in series.frames} == {"ms"}
    (note,) = series.header["ImageSelection"]
    assert "took the 2 T1-map image(s)" in note and "16 magnitude image(s)" in note


def test_molli_analysis_reads_philips_private_inversion_times() -> None:
    series = load_series(_philips_map_and_sources(), analysis="molli")
    sources = [f for f in series.frames if f.attributes["ImageKind"] == "magnitude"]
    assert len(sources) == 16
    assert sorted({f.attributes["InversionTime"] for f in sources}) == MOLLI_TIS
    assert {f.attributes["InversionTimeSource"] for f in sources} == {
        "Philips private (2005,1572)"
    }
    assert {f.units for f in sources} == {"1"}
    assert series.acquisition.vendor == "philips"
    assert series.acquisition.sequence_family == "molli"
    assert series.acquisition.field_strength_t == 1.5


def test_resent_slice_keeps_the_newest_image_and_says_so() -> None:
    first = [_image(10.0 * s, ["DERIVED", "PRIMARY", "T1 MAP"], 1000, instance=s + 1,
                    manufacturer="SIEMENS", description="MOLLI_T1MAP") for s in range(3)]
    resent = _image(10.0, ["DERIVED", "PRIMARY", "T1 MAP"], 1200, instance=2,
                    manufacturer="SIEMENS", description="MOLLI_T1MAP", content_time="111111")
    series = load_series([*first, resent], analysis="t1map")
    assert len(series.frames) == 3
    middle = series.frames[1]
    assert middle.sop_instance_uid == resent.SOPInstanceUID
    assert float(middle.pixels.mean()) == pytest.approx(1200)
    (note,) = series.header["ImageSelection"]
    assert "repeated image" in note and first[1].SOPInstanceUID in note


def test_resent_slice_with_the_same_content_time_keeps_the_later_arrival() -> None:
    first = [_image(10.0 * s, ["DERIVED", "PRIMARY", "T1 MAP"], 1000, instance=s + 1,
                    manufacturer="SIEMENS", description="MOLLI_T1MAP") for s in range(2)]
    again = _image(0.0, ["DERIVED", "PRIMARY", "T1 MAP"], 900, instance=1,
                   manufacturer="SIEMENS", description="MOLLI_T1MAP")
    series = load_series([*first, again])  # no analysis named: duplicates still resolved
    assert series.frames[0].sop_instance_uid == again.SOPInstanceUID
    assert len(series.frames) == 2


def test_instance_of_another_modality_with_the_series_uid_is_left_out() -> None:
    maps = [_image(10.0 * s, ["DERIVED", "PRIMARY", "T1 MAP"], 1000, instance=s + 1,
                   manufacturer="SIEMENS", description="MOLLI_T1MAP") for s in range(2)]
    ct = _image(0.0, ["ORIGINAL", "PRIMARY", "AXIAL"], 40, modality="CT",
                manufacturer="SIEMENS", description="MOLLI_T1MAP", instance=9)
    series = load_series([*maps, ct], analysis="t1map")
    assert ct.SOPInstanceUID not in {f.sop_instance_uid for f in series.frames}
    assert any("another modality than MR (CT)" in n for n in series.header["ImageSelection"])


def test_two_maps_per_slice_keep_the_motion_corrected_one() -> None:
    plain = _image(0.0, ["DERIVED", "PRIMARY", "T1 MAP", "ND"], 1100, instance=1,
                   manufacturer="SIEMENS", description="MOLLI_T1MAP", content_time="121212")
    moco = _image(0.0, ["DERIVED", "PRIMARY", "T1 MAP", "MOCO", "T1"], 1000, instance=2,
                  manufacturer="SIEMENS", description="MOLLI_T1MAP")
    series = load_series([plain, moco], analysis="t1map")
    assert [f.sop_instance_uid for f in series.frames] == [moco.SOPInstanceUID]
    assert any("two T1 maps at one position" in n for n in series.header["ImageSelection"])


def test_lge_keeps_psir_over_magnitude_and_drops_phase() -> None:
    datasets = []
    for s in range(2):
        for image_type, value in ((["ORIGINAL", "PRIMARY", "M_IR", "M", "IR"], 500),
                                  (["ORIGINAL", "PRIMARY", "R_IR", "R", "IR"], 2000),
                                  (["ORIGINAL", "PRIMARY", "P_IR", "P", "IR"], 100)):
            ds = _image(10.0 * s, image_type, value, description="LGE SAX", inversion_time=280)
            ds.ContrastBolusAgent = "Gadobutrol"
            datasets.append(ds)
    series = load_series(datasets, analysis="lge")
    assert [f.attributes["ImageKind"] for f in series.frames] == ["real", "real"]
    assert series.acquisition.contrast is ContrastPhase.POST_CONTRAST
    assert series.acquisition.sequence_family == "psir"
    notes = series.header["ImageSelection"]
    assert any("2 phase image(s)" in n for n in notes)
    assert sum("PSIR preferred" in n for n in notes) == 2
