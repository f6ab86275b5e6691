"""Synthetic DICOM series that look like what Siemens, Philips and GE scanners send.

The main product is a MOLLI native T1-map series (MR Image Storage, one instance per
short-axis slice) with vendor-like naming and pixel encoding:

* Siemens and GE store T1 in ms directly (RescaleSlope 1).
* Philips stores scaled values: RescaleSlope/Intercept map them to *display* values, while
  the RealWorldValueMappingSequence (and the private MR scale tags) give milliseconds.  The
  two slopes differ on purpose, so a loader that uses the rescale slope gets wrong T1.

Other series of the same study serve routing tests: the MOLLI source images (one
instance per inversion time), a T2 map, a post-contrast T1 map, an ECV map, a non-cardiac
brain series, and a Legacy Converted Enhanced (multi-frame) form of the T1 map.

All identifiers are derived from a seed, so the same seed gives byte-identical files.
Every instance is marked as synthetic (patient name, comments).

Late gadolinium enhancement: :func:`lge_series_datasets` writes a PSIR or magnitude LGE
stack (from :mod:`models.phantoms.lge`), :func:`cine_series_datasets` the matched bSSFP
cine (from :mod:`models.phantoms.cine`) at the same slice locations, and
:func:`ti_scout_series_datasets` a TI scout; :func:`write_lge_study_series` writes all four
into a study.  PSIR pixels keep the vendors' conventions: Siemens adds 4096 to the signed
value (no rescale), Philips stores unsigned values with a negative RescaleIntercept, GE
stores signed 16-bit integers.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import DA, TM

from models.phantoms.anatomy import make_heart_case
from models.phantoms.cine import CineSlice, matched_cine_stack
from models.phantoms.lge import (
    Contrast,
    LgeSlice,
    draw_scar_pattern,
    lge_case_truth,
    make_lge_stack,
    make_ti_scout,
)
from models.phantoms.long_axis import LongAxisSlice
from models.phantoms.maps import ContrastState, ecv_map, postcontrast_t1_map, t2_map
from models.phantoms.t1map import PhantomSlice, make_molli_source

logger = logging.getLogger(__name__)

SYNTHETIC_MARK = "SYNTHETIC PHANTOM - NOT A PATIENT - NOT FOR DIAGNOSTIC USE"
LEGACY_ENHANCED_MR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.4")
IMPLEMENTATION_VERSION = "CMRNODE_PHANTOM"


class Vendor(enum.StrEnum):
    """Scanner manufacturers imitated."""

    SIEMENS = "siemens"
    PHILIPS = "philips"
    GE = "ge"


class SeriesKind(enum.StrEnum):
    """Kinds of series the generator writes."""

    T1MAP = "t1map"
    T1MAP_ENHANCED = "t1map_enhanced"
    MOLLI_SOURCE = "molli_source"
    T2MAP = "t2map"
    T1MAP_POST = "t1map_post"
    ECV = "ecv"
    BRAIN_T2 = "brain_t2"
    LGE_PSIR = "lge_psir"
    LGE_MAGNITUDE = "lge_magnitude"
    CINE = "cine"
    TI_SCOUT = "ti_scout"


@dataclass(frozen=True)
class VendorProfile:
    """Header facts that differ per manufacturer."""

    manufacturer: str
    model_1p5t: str
    model_3t: str
    software_versions: str
    station_name: str
    receive_coil: str
    t1map_description: str
    t1map_protocol: str
    t1map_image_type: tuple[str, ...]
    molli_source_description: str
    molli_source_image_type: tuple[str, ...]
    t2map_description: str
    t2map_image_type: tuple[str, ...]
    post_description: str
    ecv_description: str
    ecv_image_type: tuple[str, ...]
    sequence_name: str
    t2_sequence_name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]


VENDOR_PROFILES: dict[Vendor, VendorProfile] = {
    Vendor.SIEMENS: VendorProfile(
        manufacturer="SIEMENS",
        model_1p5t="MAGNETOM Aera",
        model_3t="MAGNETOM Vida",
        software_versions="syngo MR XA20",
        station_name="AWP66031",
        receive_coil="Body_18",
        t1map_description="MOLLI_5(3)3_SAX_T1MAP",
        t1map_protocol="t1map_long_T1_SAX",
        t1map_image_type=("DERIVED", "PRIMARY", "T1 MAP", "MOCO"),
        molli_source_description="MOLLI_5(3)3_SAX",
        molli_source_image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
        t2map_description="T2map_flash_SAX_T2MAP",
        t2map_image_type=("DERIVED", "PRIMARY", "T2 MAP", "MOCO"),
        post_description="MOLLI_4(1)3(1)2_SAX_POST_T1MAP",
        ecv_description="MOLLI_SAX_ECV_MAP",
        ecv_image_type=("DERIVED", "SECONDARY", "ECV MAP", "MOCO"),
        sequence_name="*tfi2d1_191",
        t2_sequence_name="*tfl2d1_81",
        scanning_sequence=("GR", "IR"),
        sequence_variant=("SK", "SP", "MP"),
        scan_options=("CG",),
    ),
    Vendor.PHILIPS: VendorProfile(
        manufacturer="Philips Healthcare",
        model_1p5t="Ingenia",
        model_3t="Ingenia Elition X",
        software_versions="5.7.1\\5.7.1.2",
        station_name="PHILIPS-MR1",
        receive_coil="MULTI COIL",
        t1map_description="T1map_MOLLI SAX",
        t1map_protocol="WIP T1map_MOLLI SAX",
        t1map_image_type=("DERIVED", "PRIMARY", "T1", "T1"),
        molli_source_description="MOLLI SAX",
        molli_source_image_type=("ORIGINAL", "PRIMARY", "M_IR", "M", "IR"),
        t2map_description="T2map_GraSE SAX",
        t2map_image_type=("DERIVED", "PRIMARY", "T2", "T2"),
        post_description="T1map_MOLLI POST SAX",
        ecv_description="ECV map SAX",
        ecv_image_type=("DERIVED", "SECONDARY", "ECV", "ECV"),
        sequence_name="",
        t2_sequence_name="",
        scanning_sequence=("GR", "IR"),
        sequence_variant=("SK", "SS"),
        scan_options=("CG",),
    ),
    Vendor.GE: VendorProfile(
        manufacturer="GE MEDICAL SYSTEMS",
        model_1p5t="SIGNA Artist",
        model_3t="SIGNA Premier",
        software_versions="29\\LX\\MR29.1_EA_2113.a",
        station_name="GEMR1",
        receive_coil="32Ch Cardiac",
        t1map_description="MOLLI T1 MAP",
        t1map_protocol="CARDIAC T1 MAPPING",
        t1map_image_type=("DERIVED", "PRIMARY", "T1MAP"),
        molli_source_description="MOLLI SAX",
        molli_source_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        t2map_description="T2 Map SAX",
        t2map_image_type=("DERIVED", "PRIMARY", "T2MAP"),
        post_description="MOLLI T1 MAP POST",
        ecv_description="ECV MAP",
        ecv_image_type=("DERIVED", "SECONDARY", "ECVMAP"),
        sequence_name="fiesta_molli",
        t2_sequence_name="t2prep_fiesta",
        scanning_sequence=("GR", "IR"),
        sequence_variant=("SS", "SK"),
        scan_options=("CG", "FAST_GEMS"),
    ),
}
"""Naming and equipment per vendor."""

LARMOR_MHZ_PER_T = 42.577478


@dataclass(frozen=True)
class SaxGeometry:
    """Orientation and position of a short-axis stack in patient (LPS) coordinates.

    Attributes
    ----------
    row_cosines, column_cosines
        ImageOrientationPatient: direction of increasing column index, then of increasing
        row index.  The image's right is the subject's left-posterior, down is inferior.
    base_centre_mm
        Centre of the field of view of the most basal slice.
    apex_direction
        Unit vector from base to apex along which slices step.
    """

    row_cosines: tuple[float, float, float]
    column_cosines: tuple[float, float, float]
    base_centre_mm: tuple[float, float, float]
    apex_direction: tuple[float, float, float]

    @classmethod
    def sample(cls, rng: np.random.Generator) -> SaxGeometry:
        """A typical double-oblique short-axis orientation with random tilt."""
        # LV long axis (base -> apex) points left, anterior and inferior in LPS.
        axis = np.array([0.62, -0.5, -0.6]) + rng.normal(0.0, 0.08, 3)
        axis /= np.linalg.norm(axis)
        down = np.array([0.0, 0.55, -0.83])  # posterior-inferior (towards the diaphragm)
        down = down - np.dot(down, axis) * axis
        down /= np.linalg.norm(down)
        right = np.cross(down, axis)
        if right[0] < 0:  # image right must point to the subject's left
            right = -right
        # Keep a right-handed row x column = normal; stepping is along ``axis`` regardless.
        centre = np.array([20.0, -30.0, 40.0]) + rng.normal(0.0, 15.0, 3)
        return cls(
            row_cosines=_unit_tuple(right),
            column_cosines=_unit_tuple(down),
            base_centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
            apex_direction=_unit_tuple(axis),
        )

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        """Row cosines x column cosines."""
        return np.cross(np.asarray(self.row_cosines), np.asarray(self.column_cosines))

    def image_position(
        self, index: int, spacing_mm: float, shape: tuple[int, int],
        pixel_spacing: tuple[float, float],
    ) -> tuple[float, float, float]:
        """ImagePositionPatient of slice ``index`` (0 basal) for a matrix and spacing."""
        rows, cols = shape
        centre = np.asarray(self.base_centre_mm) + index * spacing_mm * np.asarray(
            self.apex_direction)
        first = (
            centre
            - (cols / 2.0 - 0.5) * pixel_spacing[1] * np.asarray(self.row_cosines)
            - (rows / 2.0 - 0.5) * pixel_spacing[0] * np.asarray(self.column_cosines)
        )
        return (float(first[0]), float(first[1]), float(first[2]))


def _unit_tuple(v: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    v = v / np.linalg.norm(v)
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class StudyInfo:
    """Patient and study facts shared by every series of one synthetic study.

    Build it with :meth:`synthetic` so that identifiers derive from a seed.
    """

    seed: int
    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    patient_age: str
    patient_weight_kg: float
    patient_size_m: float
    study_instance_uid: str
    frame_of_reference_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    institution_name: str
    referring_physician_name: str
    geometry: SaxGeometry
    heart_rate_bpm: float

    @classmethod
    def synthetic(cls, seed: int) -> StudyInfo:
        """A synthetic patient and study derived deterministically from ``seed``."""
        rng = np.random.default_rng([int(seed), 0x5717D1])
        sex = "F" if rng.random() < 0.45 else "M"
        age = int(rng.integers(18, 86))
        study_day = datetime.date(2024, 1, 1) + datetime.timedelta(days=int(rng.integers(0,
                                                                                         700)))
        # 29 February has no anniversary in most years: count it from the 28th.
        anniversary = study_day.replace(day=min(study_day.day, 28)) if (
            study_day.month == 2 and study_day.day == 29) else study_day
        birth = anniversary.replace(year=study_day.year - age) - datetime.timedelta(
            days=int(rng.integers(1, 360)))
        seconds = int(rng.integers(7 * 3600, 18 * 3600))
        study_time = f"{seconds // 3600:02d}{(seconds // 60) % 60:02d}{seconds % 60:02d}"
        return cls(
            seed=int(seed),
            patient_name=f"PHANTOM^SYNTHETIC^{seed}",
            patient_id=f"SYN{int(seed):08d}",
            patient_birth_date=birth.strftime("%Y%m%d"),
            patient_sex=sex,
            patient_age=f"{age:03d}Y",
            patient_weight_kg=float(round(rng.uniform(50.0, 110.0), 1)),
            patient_size_m=float(round(rng.uniform(1.55, 1.95), 2)),
            study_instance_uid=_uid(seed, "study"),
            frame_of_reference_uid=_uid(seed, "frame-of-reference"),
            study_date=study_day.strftime("%Y%m%d"),
            study_time=study_time,
            accession_number=f"SYNACC{int(seed) % 10**8:08d}",
            study_id=str(int(seed) % 10**6),
            study_description="CARDIAC^MRI T1 MAPPING (SYNTHETIC)",
            institution_name="Synthetic Phantom Hospital",
            referring_physician_name="REFERRER^SYNTHETIC",
            geometry=SaxGeometry.sample(rng),
            heart_rate_bpm=float(round(rng.uniform(55.0, 85.0), 1)),
        )

    def time_after(self, seconds: float) -> tuple[str, str]:
        """(date, time) ``seconds`` after the study start, as DICOM DA and TM strings."""
        start = datetime.datetime.strptime(self.study_date + self.study_time, "%Y%m%d%H%M%S")
        moment = start + datetime.timedelta(seconds=float(seconds))
        return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S.%f")[:13]


def _uid(seed: int, *parts: object) -> str:
    """Deterministic UID from the seed and a path of names."""
    return str(generate_uid(entropy_srcs=["cmr-node-phantom", str(int(seed)),
                                          *(str(p) for p in parts)]))


def _ds(value: float, decimals: int = 6) -> str:
    """A float formatted as a DICOM DS string of at most 16 characters."""
    text = f"{round(float(value), decimals):.{decimals}f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        text = f"{float(value):.8g}"
    return text


def _resolve_vendor(vendor: str | Vendor) -> Vendor:
    try:
        return Vendor(str(vendor).lower())
    except ValueError as exc:
        raise ValueError(
            f"Unknown vendor {vendor!r}; expected one of {', '.join(v.value for v in Vendor)}"
        ) from exc


@dataclass(frozen=True)
class _Encoding:
    """How float values become stored pixels (and back)."""

    stored: npt.NDArray[np.uint16]
    bits_stored: int
    rescale_slope: float | None
    rescale_intercept: float | None
    rwv_slope: float | None
    rwv_intercept: float | None
    unit: tuple[str, str]
    quantity: str


UNIT_MS = ("ms", "millisecond")
UNIT_PERCENT = ("%", "percent")
PHILIPS_RWV_SLOPE = {"ms": 0.25, "%": 0.01}
PHILIPS_RESCALE_SLOPE = 1.58364
"""Philips display rescale slope: deliberately unrelated to the real-world value slope."""


def _encode(values: npt.NDArray[np.float32], vendor: Vendor, unit: tuple[str, str],
            quantity: str) -> _Encoding:
    """Encode physical values as a vendor stores them."""
    if vendor is Vendor.PHILIPS:
        rwv = PHILIPS_RWV_SLOPE[unit[0]]
        stored = np.clip(np.rint(values / rwv), 0, 65535).astype(np.uint16)
        return _Encoding(stored, 16, PHILIPS_RESCALE_SLOPE, 0.0, rwv, 0.0, unit, quantity)
    step = 0.1 if unit[0] == "%" else 1.0
    stored = np.clip(np.rint(values / step), 0, 4095).astype(np.uint16)
    return _Encoding(stored, 12, step, 0.0, step if step != 1.0 else None,
                     0.0 if step != 1.0 else None, unit, quantity)


def stored_to_physical(ds: Dataset) -> npt.NDArray[np.float64]:
    """Values of a written instance in physical units (RWV mapping first, then rescale).

    A reference decoder for tests: the node's own loader must reach the same values.
    Multi-frame instances return (frames, rows, cols) using the shared functional groups.
    """
    stored = ds.pixel_array.astype(np.float64)
    source: Dataset = ds
    if "SharedFunctionalGroupsSequence" in ds:
        source = ds.SharedFunctionalGroupsSequence[0]
    rwv_items = source.get("RealWorldValueMappingSequence")
    if rwv_items:
        item = rwv_items[0]
        return stored * float(item.RealWorldValueSlope) + float(item.RealWorldValueIntercept)
    if "PixelValueTransformationSequence" in source:
        source = source.PixelValueTransformationSequence[0]
    slope = float(source.get("RescaleSlope", 1.0))
    intercept = float(source.get("RescaleIntercept", 0.0))
    return stored * slope + intercept


# --------------------------------------------------------------------------------------------
# Instance building
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SeriesSpec:
    kind: SeriesKind
    series_number: int
    description: str
    protocol: str
    image_type: tuple[str, ...]
    sequence_name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    body_part: str = "HEART"
    contrast_agent: str | None = None
    seconds_after_start: float = 600.0
    repetition_time_ms: float = 2.7
    echo_time_ms: float = 1.12
    flip_angle_deg: float = 35.0
    slice_thickness_mm: float = 8.0


def _base_dataset(
    study: StudyInfo, profile: VendorProfile, spec: _SeriesSpec, field_strength_t: float,
    series_uid: str, sop_uid: str, sop_class: str, instance_number: int,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(spec.image_type)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    series_date, series_time = study.time_after(spec.seconds_after_start)
    content_date, content_time = study.time_after(spec.seconds_after_start + 5 +
                                                  instance_number)
    ds.StudyDate = study.study_date
    ds.SeriesDate = series_date
    ds.AcquisitionDate = series_date
    ds.ContentDate = content_date
    ds.StudyTime = study.study_time
    ds.SeriesTime = series_time
    ds.AcquisitionTime = series_time
    ds.ContentTime = content_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = "MR"
    ds.Manufacturer = profile.manufacturer
    ds.InstitutionName = study.institution_name
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StationName = profile.station_name
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = spec.description
    ds.ManufacturerModelName = profile.model_3t if field_strength_t > 2 else profile.model_1p5t
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.PatientAge = study.patient_age
    ds.PatientSize = _ds(study.patient_size_m, 2)
    ds.PatientWeight = _ds(study.patient_weight_kg, 1)
    ds.PatientComments = SYNTHETIC_MARK
    ds.BodyPartExamined = spec.body_part
    ds.ScanningSequence = list(spec.scanning_sequence)
    ds.SequenceVariant = list(spec.sequence_variant)
    ds.ScanOptions = list(spec.scan_options)
    ds.MRAcquisitionType = "2D"
    if spec.sequence_name:
        ds.SequenceName = spec.sequence_name
    ds.AngioFlag = "N"
    ds.SliceThickness = _ds(spec.slice_thickness_mm, 3)
    ds.RepetitionTime = _ds(spec.repetition_time_ms, 3)
    ds.EchoTime = _ds(spec.echo_time_ms, 3)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = _ds(LARMOR_MHZ_PER_T * field_strength_t, 6)
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = _ds(field_strength_t, 2)
    ds.EchoTrainLength = "1"
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "81.25"
    ds.PixelBandwidth = "1085"
    ds.DeviceSerialNumber = f"{study.seed % 99991:05d}"
    ds.SoftwareVersions = profile.software_versions
    ds.ProtocolName = spec.protocol
    ds.HeartRate = str(round(study.heart_rate_bpm))
    ds.ReceiveCoilName = profile.receive_coil
    ds.TransmitCoilName = "Body"
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = _ds(spec.flip_angle_deg, 1)
    ds.VariableFlipAngleFlag = "N"
    ds.dBdt = "0"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = str(spec.series_number)
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = str(instance_number)
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageComments = SYNTHETIC_MARK
    if spec.contrast_agent:
        ds.ContrastBolusAgent = spec.contrast_agent
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = _ds(0.15 * study.patient_weight_kg, 1)
    return ds


def _set_geometry(
    ds: Dataset, orientation: Sequence[float], position: Sequence[float],
    pixel_spacing: tuple[float, float], spacing_between: float | None,
) -> None:
    ds.ImagePositionPatient = [_ds(v, 4) for v in position]
    ds.ImageOrientationPatient = [_ds(v, 6) for v in orientation]
    ds.PixelSpacing = [_ds(pixel_spacing[0], 6), _ds(pixel_spacing[1], 6)]
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    ds.SliceLocation = _ds(float(np.dot(normal, np.asarray(position, float))), 4)
    if spacing_between is not None:
        ds.SpacingBetweenSlices = _ds(spacing_between, 3)


def _set_pixels(ds: Dataset, enc: _Encoding, window: tuple[float, float] | None) -> None:
    rows, cols = enc.stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = enc.bits_stored
    ds.HighBit = enc.bits_stored - 1
    ds.PixelRepresentation = 0
    smallest, largest = int(enc.stored.min()), int(enc.stored.max())
    ds.SmallestImagePixelValue = smallest
    ds.LargestImagePixelValue = largest
    if enc.rescale_slope is not None:
        ds.RescaleIntercept = _ds(enc.rescale_intercept or 0.0, 6)
        ds.RescaleSlope = _ds(enc.rescale_slope, 6)
        ds.RescaleType = enc.unit[0] if enc.rwv_slope is None else "US"
    if enc.rwv_slope is not None:
        item = Dataset()
        item.RealWorldValueFirstValueMapped = 0
        item.RealWorldValueLastValueMapped = 65535 if enc.bits_stored == 16 else 4095
        item.RealWorldValueIntercept = float(enc.rwv_intercept or 0.0)
        item.RealWorldValueSlope = float(enc.rwv_slope)
        item.LUTExplanation = enc.quantity
        item.LUTLabel = enc.quantity
        unit = Dataset()
        unit.CodeValue = enc.unit[0]
        unit.CodingSchemeDesignator = "UCUM"
        unit.CodeMeaning = enc.unit[1]
        item.MeasurementUnitsCodeSequence = DicomSequence([unit])
        ds.RealWorldValueMappingSequence = DicomSequence([item])
    if window is not None:
        ds.WindowCenter = _ds(window[0], 2)
        ds.WindowWidth = _ds(window[1], 2)
    ds.PixelData = enc.stored.astype("<u2").tobytes()


def _philips_private(ds: Dataset, enc: _Encoding) -> None:
    """Philips private MR scale tags (floating-point value = stored * RS / (RS / RWV))."""
    if enc.rwv_slope is None or enc.rescale_slope is None:
        return
    block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
    block.add_new(0x0D, "FL", 0.0)  # MR scale intercept
    block.add_new(0x0E, "FL", float(enc.rescale_slope / enc.rwv_slope))  # MR scale slope


def _file_meta(ds: Dataset) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta


def _check_slices(slices: Sequence[PhantomSlice]) -> None:
    if not slices:
        raise ValueError("At least one phantom slice is needed to write a series")
    first = slices[0]
    for other in slices[1:]:
        if other.shape != first.shape or other.pixel_spacing != first.pixel_spacing:
            raise ValueError(
                "All slices of a series must share matrix and pixel spacing; got "
                f"{first.shape}/{first.pixel_spacing} and {other.shape}/{other.pixel_spacing}"
            )


def _map_series(
    maps: Sequence[npt.NDArray[np.float32]],
    slices: Sequence[PhantomSlice],
    *,
    vendor: Vendor,
    study: StudyInfo,
    spec: _SeriesSpec,
    field_strength_t: float,
    unit: tuple[str, str],
    quantity: str,
    window: tuple[float, float],
    slice_gap_mm: float,
    trigger_time_ms: float,
    inversion_time_ms: float | None = None,
) -> list[Dataset]:
    profile = VENDOR_PROFILES[vendor]
    series_uid = _uid(study.seed, "series", spec.kind, spec.series_number)
    geometry = study.geometry
    orientation = (*geometry.row_cosines, *geometry.column_cosines)
    out = []
    for index, (values, phantom) in enumerate(zip(maps, slices, strict=True)):
        number = index + 1
        sop_uid = _uid(study.seed, "instance", spec.kind, spec.series_number, number)
        ds = _base_dataset(study, profile, spec, field_strength_t, series_uid, sop_uid,
                           MRImageStorage, number)
        position = geometry.image_position(index, slice_gap_mm, phantom.shape,
                                           phantom.pixel_spacing)
        _set_geometry(ds, orientation, position, phantom.pixel_spacing, slice_gap_mm)
        ds.TriggerTime = _ds(trigger_time_ms, 2)
        if "IR" in spec.scanning_sequence:
            ds.InversionTime = _ds(inversion_time_ms, 2) if inversion_time_ms else None
        ds.ImagesInAcquisition = str(len(slices))
        ds.AcquisitionMatrix = [0, phantom.shape[1] // 2, phantom.shape[0] // 2, 0]
        enc = _encode(values, vendor, unit, quantity)
        _set_pixels(ds, enc, window)
        if vendor is Vendor.PHILIPS:
            _philips_private(ds, enc)
        _file_meta(ds)
        out.append(ds)
    return out


def _field(slices: Sequence[PhantomSlice], field_strength_t: float | None) -> float:
    return float(field_strength_t if field_strength_t is not None
                 else slices[0].field_strength_t)


def _study(study: StudyInfo | None) -> StudyInfo:
    return study if study is not None else StudyInfo.synthetic(0)


def _spec(
    kind: SeriesKind, vendor: Vendor, series_number: int, override: str | None,
    **changes: object,
) -> _SeriesSpec:
    p = VENDOR_PROFILES[vendor]
    base = _SeriesSpec(
        kind=kind,
        series_number=series_number,
        description=p.t1map_description,
        protocol=p.t1map_protocol,
        image_type=p.t1map_image_type,
        sequence_name=p.sequence_name,
        scanning_sequence=p.scanning_sequence,
        sequence_variant=p.sequence_variant,
        scan_options=p.scan_options,
    )
    spec = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    if override is not None:
        spec = dataclasses.replace(spec, description=override)
    return spec


def t1map_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 10,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    description: str | None = None,
    slice_gap_mm: float | None = None,
) -> list[Dataset]:
    """Native MOLLI T1-map series: one MR Image instance per slice, basal to apical.

    Parameters
    ----------
    slices
        Phantom slices (same matrix and spacing), in base-to-apex order.
    vendor
        ``"siemens"``, ``"philips"`` or ``"ge"``: naming, ImageType and pixel encoding.
    study
        Patient/study facts; ``StudyInfo.synthetic(0)`` if ``None``.
    series_number
        SeriesNumber (also enters the UIDs).
    field_strength_t
        MagneticFieldStrength; taken from the slices if ``None``.
    rng
        Draws the slice gap (8–10 mm) and trigger time when given; fixed values otherwise.
    description
        Overrides the vendor's SeriesDescription.
    slice_gap_mm
        SpacingBetweenSlices.

    Returns
    -------
    list of pydicom.Dataset
        Instances with file meta, ready for :func:`write_series`.
    """
    _check_slices(slices)
    v = _resolve_vendor(vendor)
    st = _study(study)
    gap = slice_gap_mm if slice_gap_mm is not None else (
        float(round(rng.uniform(8.0, 10.0), 1)) if rng is not None else 8.0)
    trigger = float(round(rng.uniform(350.0, 650.0), 1)) if rng is not None else 480.0
    field = _field(slices, field_strength_t)
    spec = _spec(SeriesKind.T1MAP, v, series_number, description)
    window = (1300.0, 1300.0) if field < 2 else (1500.0, 1500.0)
    return _map_series(
        [s.t1_ms for s in slices], slices, vendor=v, study=st, spec=spec,
        field_strength_t=field, unit=UNIT_MS, quantity="T1", window=window,
        slice_gap_mm=gap, trigger_time_ms=trigger,
    )


def long_axis_name(short_axis_name: str) -> str:
    """A vendor's short-axis series or protocol name turned into its four-chamber name.

    ``"MOLLI_5(3)3_SAX_T1MAP"`` becomes ``"MOLLI_5(3)3_4CH_T1MAP"``, ``"T1map_MOLLI SAX"``
    ``"T1map_MOLLI 4CH"``; a name without ``SAX`` gets `` 4CH`` appended.
    """
    if "SAX" in short_axis_name:
        return short_axis_name.replace("SAX", "4CH")
    return f"{short_axis_name} 4CH"


def four_chamber_orientation(
    geometry: SaxGeometry, rotation_rad: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(row cosines, column cosines) of the four-chamber plane of a short-axis geometry.

    The image's right is the heart's lateral direction (the heart-local angle 0 of the
    anatomy, ``rotation_rad`` from the short-axis image's right); the image's down runs from
    the apex to the base along the LV long axis.
    """
    right_sax = np.asarray(geometry.row_cosines, dtype=np.float64)
    down_sax = np.asarray(geometry.column_cosines, dtype=np.float64)
    lateral = math.cos(rotation_rad) * right_sax + math.sin(rotation_rad) * down_sax
    lateral /= np.linalg.norm(lateral)
    down = -np.asarray(geometry.apex_direction, dtype=np.float64)
    down = down - np.dot(down, lateral) * lateral
    down /= np.linalg.norm(down)
    return lateral, down


def t1map_long_axis_series_datasets(
    view: LongAxisSlice,
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 12,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    description: str | None = None,
) -> list[Dataset]:
    """Native MOLLI T1-map series of one four-chamber long-axis view.

    The plane contains the LV long axis of the study's short-axis geometry
    (:attr:`StudyInfo.geometry`), so it is perpendicular to the short-axis slices written
    for the same study, and passes through the LV centre; SeriesDescription and
    ProtocolName are the vendor's T1-map names with ``4CH`` for ``SAX`` (as scanners name
    long-axis MOLLI maps, e.g. ``MOLLI_5(3)3_4CH_T1MAP``); ImageType is the vendor's T1-map
    ImageType.

    Parameters
    ----------
    view
        The four-chamber phantom (:func:`models.phantoms.long_axis.make_t1map_long_axis`).
    vendor, study, series_number, field_strength_t, description
        As for :func:`t1map_series_datasets`.
    rng
        Draws the trigger time when given; fixed otherwise.

    Returns
    -------
    list of pydicom.Dataset
        One MR Image instance with file meta, ready for :func:`write_series`.
    """
    v = _resolve_vendor(vendor)
    st = _study(study)
    profile = VENDOR_PROFILES[v]
    field = float(field_strength_t if field_strength_t is not None else view.field_strength_t)
    trigger = float(round(rng.uniform(350.0, 650.0), 1)) if rng is not None else 480.0
    spec = _spec(SeriesKind.T1MAP, v, series_number, description,
                 description=long_axis_name(profile.t1map_description),
                 protocol=long_axis_name(profile.t1map_protocol))
    geometry = st.geometry
    right, down = four_chamber_orientation(geometry, view.heart.rotation_rad)
    # The LV mid-cavity: the short-axis stack's basal centre moved along the long axis by
    # half the LV length beyond the basal level and to the LV centre of that level.
    case = view.heart
    length = float(view.truth["lv_length_mm"])
    basal = case.position("basal")
    cx, cy = case.lv_centre(0.5)
    mid = (np.asarray(geometry.base_centre_mm)
           + (0.5 - basal) * length * np.asarray(geometry.apex_direction)
           + cx * np.asarray(geometry.row_cosines) + cy * np.asarray(geometry.column_cosines))
    r0, c0 = view.rendered.rendered.lv_centre_px
    dy, dx = view.pixel_spacing
    first = mid - c0 * dx * right - r0 * dy * down
    series_uid = _uid(st.seed, "series", spec.kind, spec.series_number)
    sop_uid = _uid(st.seed, "instance", spec.kind, spec.series_number, 1)
    ds = _base_dataset(st, profile, spec, field, series_uid, sop_uid, MRImageStorage, 1)
    _set_geometry(ds, (*_unit_tuple(right), *_unit_tuple(down)),
                  (float(first[0]), float(first[1]), float(first[2])), view.pixel_spacing, None)
    ds.TriggerTime = _ds(trigger, 2)
    if "IR" in spec.scanning_sequence:
        ds.InversionTime = None  # Type 2C: present, empty for a fitted map
    ds.ImagesInAcquisition = "1"
    ds.AcquisitionMatrix = [0, view.shape[1] // 2, view.shape[0] // 2, 0]
    enc = _encode(view.t1_ms, v, UNIT_MS, "T1")
    _set_pixels(ds, enc, (1300.0, 1300.0) if field < 2 else (1500.0, 1500.0))
    if v is Vendor.PHILIPS:
        _philips_private(ds, enc)
    _file_meta(ds)
    return [ds]


def molli_source_series_datasets(
    phantom: PhantomSlice,
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 9,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    scheme: str = "5(3)3",
    slice_index: int = 1,
    slice_gap_mm: float = 8.0,
) -> list[Dataset]:
    """MOLLI inversion-recovery source images of one slice: one instance per TI.

    The images come from :func:`~models.phantoms.t1map.make_molli_source`; InversionTime
    and TriggerTime are set per instance, ordered by acquisition.  ``slice_index`` places
    the slice in the short-axis stack geometry (1 = mid of basal/mid/apical).
    """
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    images, tis = make_molli_source(generator, phantom, scheme,
                                    heart_rate_bpm=st.heart_rate_bpm)
    field = _field([phantom], field_strength_t)
    profile = VENDOR_PROFILES[v]
    spec = _spec(
        SeriesKind.MOLLI_SOURCE, v, series_number, None,
        description=profile.molli_source_description.replace("5(3)3", scheme),
        image_type=profile.molli_source_image_type,
        protocol=profile.t1map_protocol,
        seconds_after_start=590.0,
    )
    series_uid = _uid(st.seed, "series", spec.kind, series_number)
    orientation = (*st.geometry.row_cosines, *st.geometry.column_cosines)
    position = st.geometry.image_position(slice_index, slice_gap_mm, phantom.shape,
                                          phantom.pixel_spacing)
    scale = 4095.0 / max(float(images.max()), 1.0)
    out = []
    for index, (image, ti) in enumerate(zip(images, tis, strict=True)):
        number = index + 1
        sop_uid = _uid(st.seed, "instance", spec.kind, series_number, number)
        ds = _base_dataset(st, profile, spec, field, series_uid, sop_uid, MRImageStorage,
                           number)
        _set_geometry(ds, orientation, position, phantom.pixel_spacing, None)
        ds.InversionTime = _ds(float(ti), 2)
        ds.TriggerTime = _ds(float(ti), 2)
        ds.ImagesInAcquisition = str(len(tis))
        stored = np.clip(np.rint(image * scale), 0, 4095).astype(np.uint16)
        enc = _Encoding(stored, 12, None, None, None, None, ("1", "no units"), "signal")
        _set_pixels(ds, enc, (float(np.percentile(stored, 99)) / 2.0,
                              float(np.percentile(stored, 99))))
        _file_meta(ds)
        out.append(ds)
    return out


def t2map_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 12,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    slice_gap_mm: float = 8.0,
) -> list[Dataset]:
    """T2-map series of the same slices (T2-prepared bSSFP; not a T1 map)."""
    _check_slices(slices)
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    maps = [t2_map(generator, s) for s in slices]
    profile = VENDOR_PROFILES[v]
    spec = _spec(
        SeriesKind.T2MAP, v, series_number, None,
        description=profile.t2map_description, protocol=profile.t2map_description,
        image_type=profile.t2map_image_type, sequence_name=profile.t2_sequence_name,
        scanning_sequence=("GR",), sequence_variant=("SK", "SP"), scan_options=("CG",),
        seconds_after_start=900.0, flip_angle_deg=70.0,
    )
    return _map_series(
        maps, slices, vendor=v, study=st, spec=spec, field_strength_t=_field(slices,
                                                                             field_strength_t),
        unit=UNIT_MS, quantity="T2", window=(60.0, 120.0), slice_gap_mm=slice_gap_mm,
        trigger_time_ms=480.0,
    )


def _contrast_maps(
    slices: Sequence[PhantomSlice],
    make_map: Callable[..., tuple[npt.NDArray[np.float32], Any]],
    vendor: str | Vendor,
    study: StudyInfo | None,
    series_number: int,
    rng: np.random.Generator | None,
    contrast: ContrastState | None,
) -> tuple[Vendor, StudyInfo, ContrastState, list[npt.NDArray[np.float32]]]:
    """Vendor, study, contrast state and one map per slice for a post-contrast series."""
    _check_slices(slices)
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    state = contrast or ContrastState.sample(generator)
    return v, st, state, [make_map(generator, s, state)[0] for s in slices]


def postcontrast_t1map_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 30,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    contrast: ContrastState | None = None,
    slice_gap_mm: float = 8.0,
) -> list[Dataset]:
    """Post-contrast MOLLI T1-map series (ContrastBolusAgent set, "POST" in the name)."""
    v, st, state, maps = _contrast_maps(
        slices, postcontrast_t1_map, vendor, study, series_number, rng, contrast
    )
    profile = VENDOR_PROFILES[v]
    spec = _spec(
        SeriesKind.T1MAP_POST, v, series_number, None,
        description=profile.post_description, protocol=profile.t1map_protocol + "_POST",
        contrast_agent=state.agent, seconds_after_start=2400.0,
    )
    return _map_series(
        maps, slices, vendor=v, study=st, spec=spec,
        field_strength_t=_field(slices, field_strength_t), unit=UNIT_MS, quantity="T1",
        window=(500.0, 800.0), slice_gap_mm=slice_gap_mm, trigger_time_ms=480.0,
    )


def ecv_map_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 31,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    contrast: ContrastState | None = None,
    slice_gap_mm: float = 8.0,
) -> list[Dataset]:
    """ECV-map series (percent), derived from pre- and post-contrast maps."""
    v, st, state, maps = _contrast_maps(
        slices, ecv_map, vendor, study, series_number, rng, contrast
    )
    profile = VENDOR_PROFILES[v]
    spec = _spec(
        SeriesKind.ECV, v, series_number, None,
        description=profile.ecv_description, protocol=profile.ecv_description,
        image_type=profile.ecv_image_type, contrast_agent=state.agent,
        seconds_after_start=2450.0,
    )
    return _map_series(
        maps, slices, vendor=v, study=st, spec=spec,
        field_strength_t=_field(slices, field_strength_t), unit=UNIT_PERCENT, quantity="ECV",
        window=(40.0, 80.0), slice_gap_mm=slice_gap_mm, trigger_time_ms=480.0,
    )


def _brain_slice(rng: np.random.Generator, shape: tuple[int, int], z: float
                 ) -> npt.NDArray[np.float32]:
    """A T2-weighted axial brain image: scalp, skull, CSF, grey and white matter."""
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x = (xx - cols / 2) / (cols / 2)
    y = (yy - rows / 2) / (rows / 2)
    shrink = math.sqrt(max(1.0 - (z / 80.0) ** 2, 0.2))
    r = np.hypot(x / (0.72 * shrink), y / (0.88 * shrink))
    image = np.zeros(shape, dtype=np.float32)
    image[r < 1.0] = 700.0  # scalp
    image[r < 0.95] = 80.0  # skull
    image[r < 0.9] = 1800.0  # CSF
    image[r < 0.86] = 1100.0  # grey matter
    theta = np.arctan2(y, x)
    wm = r < 0.7 + 0.06 * np.cos(7 * theta)
    image[wm] = 750.0
    ventricles = (np.hypot((x - 0.12) / 0.07, y / 0.3) < 1) | (np.hypot((x + 0.12) / 0.07,
                                                                       y / 0.3) < 1)
    image[ventricles & (abs(z) < 30)] = 1800.0
    image += rng.normal(0.0, 25.0, shape).astype(np.float32)
    return np.clip(image, 0, 4095).astype(np.float32)


def non_cardiac_mr_series_datasets(
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 2,
    field_strength_t: float = 1.5,
    rng: np.random.Generator | None = None,
    n_slices: int = 5,
    shape: tuple[int, int] = (256, 224),
) -> list[Dataset]:
    """An axial T2 TSE brain series (BodyPartExamined BRAIN): must not be routed to T1."""
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    profile = VENDOR_PROFILES[v]
    spec = _SeriesSpec(
        kind=SeriesKind.BRAIN_T2, series_number=series_number, description="t2_tse_tra",
        protocol="t2_tse_tra", image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
        sequence_name="*tse2d1_15" if v is Vendor.SIEMENS else "",
        scanning_sequence=("SE",), sequence_variant=("SK", "SP", "OSP"), scan_options=("PFP",),
        body_part="BRAIN", seconds_after_start=120.0, repetition_time_ms=5000.0,
        echo_time_ms=96.0, flip_angle_deg=150.0, slice_thickness_mm=5.0,
    )
    series_uid = _uid(st.seed, "series", spec.kind, series_number)
    spacing = (0.9, 0.9)
    gap = 6.0
    out = []
    for index in range(n_slices):
        number = index + 1
        z = (index - (n_slices - 1) / 2.0) * gap
        sop_uid = _uid(st.seed, "instance", spec.kind, series_number, number)
        ds = _base_dataset(st, profile, spec, field_strength_t, series_uid, sop_uid,
                           MRImageStorage, number)
        position = (-(shape[1] / 2 - 0.5) * spacing[1], -(shape[0] / 2 - 0.5) * spacing[0],
                    40.0 + z)
        _set_geometry(ds, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), position, spacing, gap)
        ds.ImagesInAcquisition = str(n_slices)
        ds.EchoTrainLength = "15"
        stored = np.rint(_brain_slice(generator, shape, z)).astype(np.uint16)
        enc = _Encoding(stored, 12, None, None, None, None, ("1", "no units"), "signal")
        _set_pixels(ds, enc, (900.0, 1800.0))
        _file_meta(ds)
        out.append(ds)
    return out


def t1map_enhanced_dataset(
    datasets: Sequence[Dataset],
    *,
    study: StudyInfo | None = None,
    series_number: int = 11,
) -> Dataset:
    """The T1-map series as one multi-frame Legacy Converted Enhanced MR Image instance.

    Parameters
    ----------
    datasets
        Single-frame instances from :func:`t1map_series_datasets`.
    study
        The study of those instances (for UIDs).
    series_number
        SeriesNumber of the new multi-frame series.
    """
    import highdicom as hd

    if not datasets:
        raise ValueError("No single-frame instances to convert")
    st = _study(study)
    legacy = []
    for ds in datasets:
        copy = Dataset()
        copy.update(ds)
        copy.file_meta = ds.file_meta
        # highdicom copies private tags; drop them, and RWV mapping goes per frame.
        copy.remove_private_tags()
        legacy.append(copy)
    try:
        enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
            legacy_datasets=legacy,
            series_instance_uid=_uid(st.seed, "series", SeriesKind.T1MAP_ENHANCED,
                                     series_number),
            series_number=series_number,
            sop_instance_uid=_uid(st.seed, "instance", SeriesKind.T1MAP_ENHANCED,
                                  series_number, 1),
            instance_number=1,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"Cannot convert the T1-map series to multi-frame: {exc}") from exc
    enhanced.SeriesDescription = str(datasets[0].SeriesDescription) + " MF"
    # The converted instance references its sources only through the Conversion Source
    # Attributes; a Referenced Series Sequence without referenced instances is invalid.
    if "ReferencedSeriesSequence" in enhanced:
        del enhanced.ReferencedSeriesSequence
    # Replace creation times and generated UIDs so that the same seed gives the same file.
    created_date, created_time = st.time_after(700.0)
    enhanced.InstanceCreationDate = DA(created_date)
    enhanced.InstanceCreationTime = TM(created_time)
    for item in enhanced.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = created_date + created_time
    organization = _uid(st.seed, "dimension-organization", series_number)
    for name in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in enhanced.get(name, []):
            item.DimensionOrganizationUID = organization
    _file_meta(enhanced)
    return enhanced


def write_series(datasets: Sequence[Dataset], out_dir: str | Path) -> list[Path]:
    """Write instances as DICOM files (explicit VR little endian, with file meta).

    Files are named ``<SeriesNumber>_<InstanceNumber>.dcm``; the directory is created.

    Returns
    -------
    list of Path
        The written files, in the order of ``datasets``.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        if not getattr(ds, "file_meta", None):
            _file_meta(ds)
        name = f"{int(ds.SeriesNumber):04d}_{int(ds.InstanceNumber):04d}.dcm"
        path = directory / name
        try:
            ds.save_as(path, enforce_file_format=True)
        except (OSError, ValueError) as exc:
            raise OSError(f"Cannot write DICOM file {path}: {exc}") from exc
        paths.append(path)
    logger.debug("wrote %d instance(s) to %s", len(paths), directory)
    return paths


# --------------------------------------------------------------------------------------------
# Late gadolinium enhancement, cine and TI scout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LgeNaming:
    """Series naming and sequence facts of a vendor's LGE, cine and TI-scout protocols."""

    lge_protocol: str
    psir_description: str
    magnitude_description: str
    psir_image_type: tuple[str, ...]
    magnitude_image_type: tuple[str, ...]
    lge_sequence_name: str
    lge_sequence_variant: tuple[str, ...]
    cine_description: str
    cine_image_type: tuple[str, ...]
    cine_sequence_name: str
    ti_scout_description: str
    ti_scout_image_type: tuple[str, ...]
    ti_scout_sequence_name: str


LGE_NAMING: dict[Vendor, LgeNaming] = {
    Vendor.SIEMENS: LgeNaming(
        lge_protocol="de_TFL_PSIR_SAX",
        psir_description="de_TFL_PSIR_SAX_PSIR",
        magnitude_description="de_TFL_PSIR_SAX_MAG",
        psir_image_type=("DERIVED", "PRIMARY", "PSIR", "R", "NORM", "DIS2D"),
        magnitude_image_type=("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"),
        lge_sequence_name="*tfl2d1_16",
        lge_sequence_variant=("SP", "MP", "OSP"),
        cine_description="cine_tf2d13_retro_iPAT_SAX",
        cine_image_type=("ORIGINAL", "PRIMARY", "M", "RETRO", "DIS2D"),
        cine_sequence_name="*tfi2d1_13",
        ti_scout_description="TI_Scout_SAX",
        ti_scout_image_type=("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"),
        ti_scout_sequence_name="*tfi2d1_27",
    ),
    Vendor.PHILIPS: LgeNaming(
        lge_protocol="LGE_PSIR SA",
        psir_description="LGE_PSIR SA",
        magnitude_description="LGE_PSIR SA",
        psir_image_type=("DERIVED", "PRIMARY", "R_IR", "R", "IR"),
        magnitude_image_type=("ORIGINAL", "PRIMARY", "M_IR", "M", "IR"),
        lge_sequence_name="",
        lge_sequence_variant=("SK", "MP", "SP"),
        cine_description="sBTFE_BH SA",
        cine_image_type=("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"),
        cine_sequence_name="",
        ti_scout_description="Look-Locker SA",
        ti_scout_image_type=("ORIGINAL", "PRIMARY", "M_IR", "M", "IR"),
        ti_scout_sequence_name="",
    ),
    Vendor.GE: LgeNaming(
        lge_protocol="MDE SAX",
        psir_description="PSMDE SAX",
        magnitude_description="MDE SAX",
        psir_image_type=("DERIVED", "PRIMARY", "PSIR"),
        magnitude_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        lge_sequence_name="fgre_mde",
        lge_sequence_variant=("SK", "SP", "MP"),
        cine_description="FIESTA CINE SAX",
        cine_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        cine_sequence_name="fiesta_cine",
        ti_scout_description="Cine IR SAX",
        ti_scout_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        ti_scout_sequence_name="fiesta_cineir",
    ),
}
"""LGE, cine and TI-scout naming per vendor."""

LGE_SLICE_GAP_MM = 10.0
"""SpacingBetweenSlices of the LGE and cine stacks (8 mm slices, 2 mm gap)."""
SIEMENS_PSIR_OFFSET = 4096
"""Stored value of zero signal in Siemens PSIR images."""
PHILIPS_PSIR_OFFSET = 2048
"""Stored value of zero signal in Philips PSIR images (removed by the rescale intercept)."""
PHILIPS_PSIR_RESCALE_SLOPE = 1.2
"""Rescale slope of Philips PSIR images."""


@dataclass(frozen=True)
class SignalEncoding:
    """How a signal image (magnitude or PSIR) is stored.

    Attributes
    ----------
    stored
        Stored pixel values (uint16, or int16 for signed).
    bits_stored
        BitsStored.
    signed
        PixelRepresentation 1 (two's complement).
    rescale
        (slope, intercept) or ``None`` when no Modality LUT is written.
    zero_stored
        Stored value that means zero signal (the PSIR null); 0 for magnitude.
    """

    stored: npt.NDArray[np.uint16] | npt.NDArray[np.int16]
    bits_stored: int
    signed: bool
    rescale: tuple[float, float] | None
    zero_stored: float

    def to_value(self, window: tuple[float, float]) -> tuple[float, float]:
        """A (centre, width) window given in signal units, in Modality-LUT output units."""
        centre, width = window
        if self.rescale is None:
            return (centre + self.zero_stored, width)
        return (centre, width)


def encode_signal(values: npt.NDArray[np.float32], vendor: str | Vendor,
                  psir: bool) -> SignalEncoding:
    """Encode a magnitude or PSIR image the way a vendor stores it.

    Magnitude: unsigned 12-bit for all vendors.  PSIR: Siemens ``stored = value + 4096``
    (13 bits, no rescale), Philips ``stored = value / 1.2 + 2048`` with RescaleSlope 1.2
    and RescaleIntercept -2457.6, GE signed 16-bit integers.
    """
    v = _resolve_vendor(vendor)
    if not psir:
        stored = np.clip(np.rint(values), 0, 4095).astype(np.uint16)
        return SignalEncoding(stored, 12, False, None, 0.0)
    if v is Vendor.SIEMENS:
        stored = np.clip(np.rint(values + SIEMENS_PSIR_OFFSET), 0, 8191).astype(np.uint16)
        return SignalEncoding(stored, 13, False, None, float(SIEMENS_PSIR_OFFSET))
    if v is Vendor.PHILIPS:
        slope = PHILIPS_PSIR_RESCALE_SLOPE
        stored = np.clip(np.rint(values / slope + PHILIPS_PSIR_OFFSET), 0, 4095).astype(
            np.uint16)
        return SignalEncoding(stored, 12, False, (slope, -PHILIPS_PSIR_OFFSET * slope),
                              float(PHILIPS_PSIR_OFFSET))
    stored_signed = np.clip(np.rint(values), -32768, 32767).astype(np.int16)
    return SignalEncoding(stored_signed, 16, True, None, 0.0)


def _set_signal_pixels(ds: Dataset, enc: SignalEncoding, window: tuple[float, float]) -> None:
    rows, cols = enc.stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = enc.bits_stored
    ds.HighBit = enc.bits_stored - 1
    ds.PixelRepresentation = 1 if enc.signed else 0
    if not enc.signed:
        ds.SmallestImagePixelValue = int(enc.stored.min())
        ds.LargestImagePixelValue = int(enc.stored.max())
    if enc.rescale is not None:
        ds.RescaleIntercept = _ds(enc.rescale[1], 6)
        ds.RescaleSlope = _ds(enc.rescale[0], 6)
        ds.RescaleType = "US"
    centre, width = enc.to_value(window)
    ds.WindowCenter = _ds(centre, 2)
    ds.WindowWidth = _ds(max(width, 1.0), 2)
    dtype = "<i2" if enc.signed else "<u2"
    ds.PixelData = enc.stored.astype(dtype).tobytes()


def _signal_instance(
    study: StudyInfo, vendor: Vendor, spec: _SeriesSpec, field_strength_t: float,
    series_uid: str, number: int, image: npt.NDArray[np.float32],
    pixel_spacing: tuple[float, float], slice_index: int, psir: bool,
    window: tuple[float, float], n_images: int,
) -> Dataset:
    profile = VENDOR_PROFILES[vendor]
    sop_uid = _uid(study.seed, "instance", spec.kind, spec.series_number, number)
    ds = _base_dataset(study, profile, spec, field_strength_t, series_uid, sop_uid,
                       MRImageStorage, number)
    geometry = study.geometry
    orientation = (*geometry.row_cosines, *geometry.column_cosines)
    shape = (int(image.shape[0]), int(image.shape[1]))
    position = geometry.image_position(slice_index, LGE_SLICE_GAP_MM, shape, pixel_spacing)
    _set_geometry(ds, orientation, position, pixel_spacing, LGE_SLICE_GAP_MM)
    ds.ImagesInAcquisition = str(n_images)
    ds.AcquisitionMatrix = [0, shape[1] // 2, shape[0] // 2, 0]
    ds.NominalInterval = str(round(60000.0 / study.heart_rate_bpm))
    _set_signal_pixels(ds, encode_signal(image, vendor, psir), window)
    return ds


def _check_lge_slices(slices: Sequence[LgeSlice] | Sequence[CineSlice]) -> None:
    if not slices:
        raise ValueError("At least one slice is needed to write a series")
    first = slices[0]
    for other in slices[1:]:
        if other.shape != first.shape or other.pixel_spacing != first.pixel_spacing:
            raise ValueError(
                "All slices of a series must share matrix and pixel spacing; got "
                f"{first.shape}/{first.pixel_spacing} and {other.shape}/{other.pixel_spacing}"
            )


def lge_series_datasets(
    slices: Sequence[LgeSlice],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    contrast: Contrast | str = Contrast.PSIR,
    series_number: int | None = None,
    field_strength_t: float | None = None,
    description: str | None = None,
) -> list[Dataset]:
    """LGE series (PSIR or magnitude): one MR Image instance per slice, base to apex.

    Parameters
    ----------
    slices
        LGE slices of one stack (same matrix and spacing), base to apex.
    vendor
        ``"siemens"``, ``"philips"`` or ``"ge"``: naming, ImageType and PSIR encoding
        (see :func:`encode_signal`).
    study
        Patient/study facts; ``StudyInfo.synthetic(0)`` if ``None``.
    contrast
        ``"psir"`` or ``"magnitude"``: which reconstruction of the slices to write.
    series_number
        SeriesNumber; 41 for PSIR and 40 for magnitude if ``None``.
    field_strength_t
        MagneticFieldStrength; the slices' if ``None``.
    description
        Overrides the vendor's SeriesDescription.

    Returns
    -------
    list of pydicom.Dataset
        Instances at 10 mm spacing with InversionTime, TriggerTime and ContrastBolusAgent.
    """
    _check_lge_slices(slices)
    v = _resolve_vendor(vendor)
    st = _study(study)
    psir = Contrast(str(contrast).lower()) is Contrast.PSIR
    naming = LGE_NAMING[v]
    number = series_number if series_number is not None else (41 if psir else 40)
    acq = slices[0].acquisition
    field = float(field_strength_t if field_strength_t is not None
                  else slices[0].field_strength_t)
    spec = _spec(
        SeriesKind.LGE_PSIR if psir else SeriesKind.LGE_MAGNITUDE, v, number, description,
        description=naming.psir_description if psir else naming.magnitude_description,
        protocol=naming.lge_protocol,
        image_type=naming.psir_image_type if psir else naming.magnitude_image_type,
        sequence_name=naming.lge_sequence_name,
        scanning_sequence=("GR", "IR"),
        sequence_variant=naming.lge_sequence_variant,
        scan_options=("CG", "PFP"),
        contrast_agent=acq.contrast.agent,
        seconds_after_start=2600.0,
        repetition_time_ms=acq.recovery_ms,
        echo_time_ms=3.3,
        flip_angle_deg=25.0,
        slice_thickness_mm=8.0,
    )
    key = "psir_blood_mean" if psir else "magnitude_blood_mean"
    blood = float(np.mean([s.truth[key] for s in slices])) or 100.0
    window = (0.7 * blood, 2.2 * blood) if psir else (0.9 * blood, 2.0 * blood)
    series_uid = _uid(st.seed, "series", spec.kind, number)
    out = []
    for index, lge in enumerate(slices):
        ds = _signal_instance(st, v, spec, field, series_uid, index + 1,
                              lge.psir if psir else lge.magnitude, lge.pixel_spacing, index,
                              psir, window, len(slices))
        ds.InversionTime = _ds(acq.inversion_time_ms, 2)
        ds.TriggerTime = _ds(acq.trigger_time_ms, 2)
        ds.CardiacNumberOfImages = "1"
        _file_meta(ds)
        out.append(ds)
    return out


def cine_series_datasets(
    cines: Sequence[Sequence[CineSlice]],
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 20,
    field_strength_t: float | None = None,
) -> list[Dataset]:
    """Short-axis bSSFP cine series: per slice location, one instance per phase.

    Parameters
    ----------
    cines
        Per slice (base to apex, same positions as the LGE stack), the
        :class:`~models.phantoms.cine.CineSlice` objects of its phases, e.g. from
        :func:`~models.phantoms.cine.matched_cine_stack`.
    vendor, study, series_number, field_strength_t
        As for :func:`lge_series_datasets`.

    Returns
    -------
    list of pydicom.Dataset
        Instances ordered by slice then phase, with TriggerTime and CardiacNumberOfImages;
        slice ``k`` lies at the position of LGE slice ``k``.
    """
    flat = [c for per_slice in cines for c in per_slice]
    _check_lge_slices(flat)
    v = _resolve_vendor(vendor)
    st = _study(study)
    naming = LGE_NAMING[v]
    first = flat[0]
    field = float(field_strength_t if field_strength_t is not None
                  else first.field_strength_t)
    acq = first.acquisition
    n_phases = len(cines[0])
    spec = _spec(
        SeriesKind.CINE, v, series_number, None,
        description=naming.cine_description, protocol=naming.cine_description,
        image_type=naming.cine_image_type, sequence_name=naming.cine_sequence_name,
        scanning_sequence=("GR",), sequence_variant=("SK", "SS"), scan_options=("CG",),
        seconds_after_start=1200.0, repetition_time_ms=acq.repetition_time_ms,
        echo_time_ms=acq.repetition_time_ms / 2.0, flip_angle_deg=acq.flip_angle_deg,
        slice_thickness_mm=8.0,
    )
    blood = float(np.mean([c.truth["blood_mean"] for c in flat])) or 100.0
    series_uid = _uid(st.seed, "series", spec.kind, series_number)
    out = []
    number = 0
    for index, per_slice in enumerate(cines):
        for cine in per_slice:
            number += 1
            ds = _signal_instance(st, v, spec, field, series_uid, number,
                                  cine.image, cine.pixel_spacing, index, False,
                                  (0.6 * blood, 1.4 * blood), len(flat))
            ds.TriggerTime = _ds(cine.trigger_time_ms, 2)
            ds.CardiacNumberOfImages = str(n_phases)
            _file_meta(ds)
            out.append(ds)
    return out


def ti_scout_series_datasets(
    lge_slice: LgeSlice,
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 38,
    slice_index: int = 5,
    rng: np.random.Generator | None = None,
    inversion_times_ms: Sequence[float] | None = None,
) -> list[Dataset]:
    """TI-scout (Look-Locker) series of one slice: one instance per inversion time.

    The images come from :func:`~models.phantoms.lge.make_ti_scout`; all instances share
    the slice position (``slice_index`` of the LGE stack geometry).
    """
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    images, tis = make_ti_scout(generator, lge_slice, inversion_times_ms)
    naming = LGE_NAMING[v]
    acq = lge_slice.acquisition
    spec = _spec(
        SeriesKind.TI_SCOUT, v, series_number, None,
        description=naming.ti_scout_description, protocol=naming.ti_scout_description,
        image_type=naming.ti_scout_image_type, sequence_name=naming.ti_scout_sequence_name,
        scanning_sequence=("GR", "IR"), sequence_variant=("SK", "SS", "MP"),
        scan_options=("CG",), contrast_agent=acq.contrast.agent, seconds_after_start=2500.0,
        repetition_time_ms=3.0, echo_time_ms=1.5, flip_angle_deg=35.0,
        slice_thickness_mm=8.0,
    )
    top = float(np.percentile(images, 99.5)) or 100.0
    series_uid = _uid(st.seed, "series", spec.kind, series_number)
    out = []
    for index, (image, ti) in enumerate(zip(images, tis, strict=True)):
        ds = _signal_instance(st, v, spec, lge_slice.field_strength_t, series_uid, index + 1,
                              image, lge_slice.pixel_spacing, slice_index, False,
                              (0.5 * top, top), len(tis))
        ds.InversionTime = _ds(float(ti), 2)
        ds.TriggerTime = _ds(float(ti), 2)
        _file_meta(ds)
        out.append(ds)
    return out


LGE_EXPECTED_ANALYSIS: dict[SeriesKind, str | None] = {
    SeriesKind.LGE_PSIR: "lge",
    SeriesKind.LGE_MAGNITUDE: "lge",
    SeriesKind.CINE: None,
    SeriesKind.TI_SCOUT: None,
}
"""Which analysis a router should choose for each LGE-related series."""


def write_lge_study_series(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vendor: str | Vendor = Vendor.SIEMENS,
    field_strength_t: float = 1.5,
    scar_pattern: str | None = None,
    n_slices: int = 10,
) -> dict[str, Any]:
    """Write LGE PSIR, LGE magnitude, matched cine and TI-scout series of a study.

    The subject is the one :func:`models.phantoms.study.write_synthetic_study` draws for
    the same seed and field strength (same anatomy as its T1 maps), given a scar.

    Parameters
    ----------
    out_dir
        Study directory; each series goes into a sub-directory named after its kind.
    seed, vendor, field_strength_t
        As for ``write_synthetic_study`` (same seed: same patient, study and subject).
    scar_pattern
        A :class:`~models.phantoms.lge.ScarPattern` value; random if ``None``.
    n_slices
        Slices of the LGE and cine stacks.

    Returns
    -------
    dict
        ``series``: one record per written series (kind, expected analysis, UIDs, files,
        per-instance truth); ``lge``: the case truth of :func:`~models.phantoms.lge.
        lge_case_truth`.
    """
    root = Path(out_dir)
    v = _resolve_vendor(vendor)
    study = StudyInfo.synthetic(seed)
    # Same generator stream as write_synthetic_study: its first draw is the subject.
    heart = make_heart_case(np.random.default_rng([int(seed), 1]),
                            field_strength_t=field_strength_t)
    rng = np.random.default_rng([int(seed), 3])
    pattern = scar_pattern if scar_pattern is not None else draw_scar_pattern(rng)
    case, slices = make_lge_stack(rng, n_slices=n_slices, heart=heart, scar_pattern=pattern)
    cines = matched_cine_stack(rng, slices)
    mid = len(slices) // 2
    records: list[dict[str, object]] = []

    def emit(kind: SeriesKind, datasets: list[Dataset], truths: list[dict[str, object]]
             ) -> None:
        paths = write_series(datasets, root / kind.value)
        instances = []
        for ds, path, truth in zip(datasets, paths, truths, strict=True):
            record: dict[str, object] = {
                "sop_instance_uid": str(ds.SOPInstanceUID),
                "instance_number": int(ds.InstanceNumber),
                "file": str(path.relative_to(root)),
                **truth,
            }
            if "InversionTime" in ds and ds.InversionTime not in (None, ""):
                record["inversion_time_ms"] = float(ds.InversionTime)
            instances.append(record)
        records.append({
            "kind": kind.value,
            "expected_analysis": LGE_EXPECTED_ANALYSIS[kind],
            "series_number": int(datasets[0].SeriesNumber),
            "series_instance_uid": str(datasets[0].SeriesInstanceUID),
            "series_description": str(datasets[0].SeriesDescription),
            "sop_class_uid": str(datasets[0].SOPClassUID),
            "directory": str(paths[0].parent.relative_to(root)),
            "instances": instances,
        })

    def lge_truth(s: LgeSlice, encoding: SignalEncoding) -> dict[str, object]:
        # Zero signal as stored, and after the Modality LUT (what a loader sees).
        return {"level": s.level, "truth": s.truth,
                "signal_zero_stored": encoding.zero_stored,
                "signal_zero_value": encoding.to_value((0.0, 1.0))[0]}

    for contrast in (Contrast.PSIR, Contrast.MAGNITUDE):
        datasets = lge_series_datasets(slices, vendor=v, study=study, contrast=contrast,
                                       field_strength_t=case.field_strength_t)
        psir = contrast is Contrast.PSIR
        kind = SeriesKind.LGE_PSIR if psir else SeriesKind.LGE_MAGNITUDE
        emit(kind, datasets, [lge_truth(s, encode_signal(s.image[:1, :1], v, psir))
                              for s in slices])
    emit(SeriesKind.CINE, cine_series_datasets(cines, vendor=v, study=study),
         [{"level": c.level, "phase": c.phase, "truth": c.truth}
          for per_slice in cines for c in per_slice])
    scout = ti_scout_series_datasets(slices[mid], vendor=v, study=study, slice_index=mid,
                                     rng=rng)
    emit(SeriesKind.TI_SCOUT, scout, [{"level": slices[mid].level} for _ in scout])
    case_truth = lge_case_truth(slices)
    case_truth["scar_pattern"] = case.scar.pattern if case.scar is not None else "none"
    logger.info("wrote LGE, cine and TI-scout series (%s, %.1f %% scar) to %s",
                case_truth["scar_pattern"], case_truth["scar_percent"], root)
    return {"series": records, "lge": case_truth}


