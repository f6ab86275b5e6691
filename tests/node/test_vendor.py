"""node.vendor: vendor header conventions turned into facts."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from node.routing import load_rules, route
from node.vendor import describe_series
from node.vendor.access import ImageView, MappingView
from node.vendor.contrast import contrast_phase
from node.vendor.field import nominal_field_strength
from node.vendor.image_kind import ImageKind, image_kind
from node.vendor.inversion import inversion_time
from node.vendor.manufacturer import normalise_vendor
from node.vendor.values import philips_floating_point_factor
from plugins.api import ContrastPhase


@pytest.mark.parametrize(
    ("manufacturer", "vendor"),
    [
        ("SIEMENS", "siemens"),
        ("Siemens Healthineers", "siemens"),
        ("Philips Medical Systems", "philips"),
        ("Philips Healthcare", "philips"),
        ("GE MEDICAL SYSTEMS", "ge"),
        ("TOSHIBA_MEC", "canon"),
        ("CANON_MEC", "canon"),
        ("UIH", "united_imaging"),
        ("Bruker", "unknown"),
        (None, "unknown"),
    ],
)
def test_vendor_from_manufacturer(manufacturer, vendor):
    assert normalise_vendor(manufacturer) == vendor


@pytest.mark.parametrize(
    ("image_type", "component", "kind"),
    [
        ("DERIVED\\PRIMARY\\T1 MAP\\MOCO\\T1\\DIS2D", None, ImageKind.T1_MAP),
        ("DERIVED\\PRIMARY\\T1\\T1", None, ImageKind.T1_MAP),
        (["DERIVED", "PRIMARY", "T1_MAP", "NONE"], "MAGNITUDE", ImageKind.T1_MAP),
        ("DERIVED\\PRIMARY\\T2 MAP\\DIS2D\\MOCO\\T2", None, ImageKind.T2_MAP),
        ("DERIVED\\PRIMARY\\T2_STAR MAP\\DIS2D", None, ImageKind.T2STAR_MAP),
        ("DERIVED\\PRIMARY\\ECV\\ND", None, ImageKind.ECV_MAP),
        ("DERIVED\\PRIMARY\\T1 MAP\\GOF", None, ImageKind.FIT_PARAMETER),
        ("ORIGINAL\\PRIMARY\\M\\MOCO\\DIS2D", None, ImageKind.MAGNITUDE),
        ("ORIGINAL\\PRIMARY\\P\\MOCO\\DIS2D", None, ImageKind.PHASE),
        ("ORIGINAL\\PRIMARY\\M_IR\\M\\IR", None, ImageKind.MAGNITUDE),
        ("ORIGINAL\\PRIMARY\\R_IR\\R\\IR", None, ImageKind.REAL),
        ("DERIVED\\PRIMARY\\PSIR\\NORM", None, ImageKind.PSIR),
        (["ORIGINAL", "PRIMARY", "M_IR", "NONE"], "REAL", ImageKind.REAL),
        ("ORIGINAL\\PRIMARY\\OTHER", None, ImageKind.UNKNOWN),
        ("ORIGINAL\\PRIMARY\\ND", None, ImageKind.UNKNOWN),  # Siemens ND is not "SD"
    ],
)
def test_image_kind(image_type, component, kind):
    assert image_kind(image_type, component) is kind


def test_inversion_time_sources_in_order():
    ds = Dataset()
    ds.InversionTime = 0  # "no inversion" on Philips enhanced objects (dcm2niix issue 385)
    ds.InversionTimes = [0.0, 1.7976931348623157e308]
    assert inversion_time(ImageView(ds), "philips") is None
    ds.add_new(0x20050015, "LO", "Philips MR Imaging DD 006")
    ds.add_new(0x20051572, "FL", 260.0)
    ti = inversion_time(ImageView(ds), "philips")
    assert ti is not None and (ti.ms, ti.source) == (260.0, "Philips private (2005,1572)")
    assert inversion_time(ImageView(ds), "siemens") is None  # private tags only per vendor
    ds.InversionTime = 180
    assert inversion_time(ImageView(ds), "philips").source == "InversionTime (0018,0082)"


def test_philips_private_inversion_time_that_lost_its_vr():
    ds = Dataset()
    ds.add_new(0x20051572, "UN", struct.pack("<f", 1180.0))
    ti = inversion_time(ImageView(ds), "philips")
    assert ti is not None and ti.ms == pytest.approx(1180.0)


def test_inversion_time_from_siemens_image_comments():
    ti = inversion_time(MappingView({"ImageComments": "TI 1100"}), "siemens")
    assert ti is not None and ti.ms == 1100.0


def _enhanced(frame_types: list[str], tis: list[float]) -> Dataset:
    ds = Dataset()
    ds.Manufacturer = "Philips Medical Systems"
    ds.MagneticFieldStrength = 3
    ds.SeriesDescription = "T1 MOLLI SA"
    ds.Modality = "MR"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SeriesInstanceUID = "2.25.1"
    ds.NumberOfFrames = len(tis)
    frames = []
    for frame_type, ti in zip(frame_types, tis, strict=True):
        item = Dataset()
        mr_type = Dataset()
        mr_type.FrameType = frame_type.split("\\")
        mr_type.ComplexImageComponent = "MAGNITUDE"
        item.MRImageFrameTypeSequence = Sequence([mr_type])
        modifier = Dataset()
        modifier.InversionTimes = [ti]
        item.MRModifierSequence = Sequence([modifier])
        cardiac = Dataset()
        cardiac.NominalCardiacTriggerDelayTime = 400
        item.CardiacSynchronizationSequence = Sequence([cardiac])
        position = Dataset()
        position.ImagePositionPatient = [0, 0, 0]
        item.PlanePositionSequence = Sequence([position])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    return ds


def test_enhanced_multiframe_per_frame_kinds_and_inversion_times():
    tis = [100.0, 180.0, 260.0, 1100.0, 1180.0, 0.0]
    types = ["ORIGINAL\\PRIMARY\\M_IR\\NONE"] * 5 + ["DERIVED\\PRIMARY\\T1_MAP\\NONE"]
    facts = describe_series([_enhanced(types, tis)])
    assert [i.kind for i in facts.images] == [ImageKind.MAGNITUDE] * 5 + [ImageKind.T1_MAP]
    assert facts.inversion_times_ms == (100.0, 180.0, 260.0, 1100.0, 1180.0)
    assert facts.images[0].inversion_time_source == "InversionTimes (0018,9079)"
    assert facts.field_strength_t == 3.0 and facts.gated
    assert facts.sequence_family == "molli"
    rules = load_rules()
    decision = route(rules, rules.facts([_enhanced(types, tis)]))
    assert decision.analysis == "t1map"
    identified = {r.condition_id for r in decision.trace("t1map").identified_by}
    assert "vendor-t1-map-image" in identified
    molli = decision.trace("molli")  # the map frame does not hide the five source TIs
    assert all(r.passed for r in molli.require if r.condition_id == "inversion-times")


@pytest.mark.parametrize(("raw", "nominal"), [(1.494, 1.5), (2.89, 3.0), (6.98, 7.0), (3, 3.0)])
def test_field_strength_is_the_nominal_value(raw, nominal):
    assert nominal_field_strength(MappingView({"MagneticFieldStrength": raw}), "siemens")[0] \
        == nominal


def test_field_strength_far_from_any_nominal_value_is_unknown():
    value, reason = nominal_field_strength(MappingView({"MagneticFieldStrength": 2.2}), "ge")
    assert value is None and "not near" in reason


def test_philips_private_field_strength_when_public_one_missing():
    ds = Dataset()
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    ds.add_new(0x20011085, "DS", "1.5")
    assert nominal_field_strength(ImageView(ds), "philips")[0] == 1.5


@pytest.mark.parametrize(
    ("header", "phase"),
    [
        ({"ContrastBolusAgent": "Gadovist"}, ContrastPhase.POST_CONTRAST),
        ({"ContrastBolusAgent": "NONE"}, ContrastPhase.UNKNOWN),
        ({"SeriesDescription": "T1map post 15 min"}, ContrastPhase.POST_CONTRAST),
        ({"SeriesDescription": "MOLLI native", "ContrastBolusAgent": "Gadovist"},
         ContrastPhase.NATIVE),
        ({"ContrastBolusVolume": "12"}, ContrastPhase.POST_CONTRAST),
        ({}, ContrastPhase.UNKNOWN),
    ],
)
def test_contrast_phase(header, phase):
    assert contrast_phase(MappingView(header))[0] is phase


def test_philips_floating_point_factor_follows_dcm2niix():
    ds = Dataset()
    ds.RescaleSlope = 2.0
    ds.add_new(0x20050010, "LO", "Philips MR Imaging DD 001")
    ds.add_new(0x2005100E, "FL", 0.5)
    assert philips_floating_point_factor(ImageView(ds)) == pytest.approx(1.0)
