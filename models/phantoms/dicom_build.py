"""Shared building of synthetic MR Image instances: base dataset, geometry, pixels, file meta.

Pixel encoding of parametric maps keeps the vendors' conventions: Siemens and GE store T1
in ms directly (RescaleSlope 1); Philips stores scaled values whose RescaleSlope/Intercept
map them to *display* values, while the RealWorldValueMappingSequence (and the private MR
scale tags) give milliseconds, so a loader that uses the rescale slope gets wrong T1
(:func:`stored_to_physical` decodes them).  :func:`_map_series` builds one instance per
slice of a map series; :func:`write_series` writes instances as DICOM files.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
)

from models.phantoms.dicom_study import (
    IMPLEMENTATION_VERSION,
    LARMOR_MHZ_PER_T,
    SYNTHETIC_MARK,
    VENDOR_PROFILES,
    SeriesKind,
    StudyInfo,
    Vendor,
    VendorProfile,
    _ds,
    _uid,
)
from models.phantoms.t1map import PhantomSlice

logger = logging.getLogger(__name__)


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
