"""Turn the stored DICOM instances of one series into a :class:`plugins.api.LoadedSeries`.

The loader is the single place where stored pixel values become physical values and where
frame geometry is read, so that every analysis plugin sees the same, vendor-neutral input:

* Classic MR images (one frame per instance) and Enhanced MR multi-frame images (geometry and
  value transformations in the per-frame or shared functional groups) are both accepted.
* Stored values are converted to physical values with, in this order of preference, the
  Real World Value Mapping (the item whose measurement units are milliseconds, else the first
  item), the Modality LUT (RescaleSlope / RescaleIntercept, or the Pixel Value Transformation
  functional group), or not at all.
* The Philips private scale slope (2005,100E) is deliberately ignored: it converts stored values
  to the scanner's internal floating-point signal scale, not to milliseconds.  On Philips
  parametric maps the value in milliseconds is given by the public Real World Value Mapping
  (or, equivalently, by RescaleSlope / RescaleIntercept).
* Frames are sorted by position along the image normal, then by InstanceNumber and frame number.
* Vendor facts (:mod:`node.vendor`) are read once: every frame gets its image kind
  (``ImageKind``: T1 map, magnitude, PSIR ...) and, when only a vendor private tag or the
  enhanced MR InversionTimes carries it, its ``InversionTime``; the series gets its
  :class:`plugins.api.Acquisition` (vendor, sequence family, field strength, contrast).
* When the analysis is named, the images it needs are chosen per slice position
  (:mod:`node.inputs.selection`: maps out of a map + source series, PSIR over magnitude, the newest
  of a re-sent slice, no stray instance of another modality); each choice is recorded in
  ``header["ImageSelection"]``.

Problems that make a series unusable (no geometry, pixel data that cannot be decoded, frames of
different sizes, no image frames at all) raise :class:`LoadError` with a reason a person can act
on.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import UID
from pydicom.valuerep import IS, DSdecimal, DSfloat, PersonName

from node.inputs.selection import KIND_ATTRIBUTE, select_frames
from node.vendor import describe_series
from node.vendor.image_kind import SIGNAL_KINDS, ImageKind
from plugins.api import AnalysisError, LoadedSeries, SourceFrame

logger = logging.getLogger(__name__)

__all__ = [
    "SERIES_HEADER_KEYWORDS",
    "LoadError",
    "is_t1_map",
    "load_series",
    "load_series_files",
]

#: Series-level attributes copied into ``LoadedSeries.header`` (when present).
SERIES_HEADER_KEYWORDS: tuple[str, ...] = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "InstitutionName",
    "StationName",
    "MagneticFieldStrength",
    "SeriesDescription",
    "ProtocolName",
    "ImageType",
    "SequenceName",
    "PulseSequenceName",
    "ScanningSequence",
    "SequenceVariant",
    "MRAcquisitionType",
    "ContrastBolusAgent",
    "BodyPartExamined",
    "PatientPosition",
    "StudyDescription",
    "StudyDate",
    "StudyTime",
    "SeriesDate",
    "SeriesTime",
    "StudyID",
    "AccessionNumber",
    "SeriesNumber",
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "FrameOfReferenceUID",
    "SOPClassUID",
    "Rows",
    "Columns",
    "PhotometricInterpretation",
    "HeartRate",
    "NominalInterval",
)

#: Per-frame attributes copied into ``SourceFrame.attributes`` (when present).
FRAME_ATTRIBUTE_KEYWORDS: tuple[str, ...] = (
    "InversionTime",
    "TriggerTime",
    "EchoTime",
    "RepetitionTime",
    "InstanceNumber",
    "ImageType",
    "AcquisitionNumber",
    "AcquisitionTime",
    "ContentTime",
    "ImageComments",
    "SliceLocation",
    "ContentDate",
    "Modality",
)

#: UCUM code for milliseconds and for unitless values.
UNIT_MS = "ms"
UNIT_ONE = "1"

_T1_MAP_PATTERN = re.compile(r"(?<![A-Z0-9])T1[\s_\-]*MAP", re.IGNORECASE)
_MS_UNIT_CODES = frozenset({"ms", "msec", "millisecond", "milliseconds"})
_PHILIPS_PRIVATE_SCALE_SLOPE = (0x2005, 0x100E)


class LoadError(AnalysisError):
    """The stored instances cannot be turned into a series a plugin can analyse."""


@dataclass(frozen=True)
class _ValueMapping:
    """A linear map from stored values to physical values, with its unit and origin."""

    slope: float
    intercept: float
    units: str | None
    source: str
    lut: npt.NDArray[np.float64] | None = None
    lut_first_stored: int = 0

    def apply(self, stored: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Stored values mapped to physical values (float32)."""
        if self.lut is not None:
            index = np.clip(stored.astype(np.int64) - self.lut_first_stored, 0, self.lut.size - 1)
            return self.lut[index].astype(np.float32)
        values = stored.astype(np.float64) * self.slope + self.intercept
        return values.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_series(datasets: Sequence[Dataset], analysis: str | None = None) -> LoadedSeries:
    """Build a :class:`~plugins.api.LoadedSeries` from the instances of one series.

    Parameters
    ----------
    datasets
        All stored instances of the series (in arrival order when known: of two images of a
        re-sent slice with the same content time, the later one is kept).  Instances without
        pixel data (e.g. a stray presentation state) are skipped with a log message.
    analysis
        The analysis the series is loaded for ("t1map", "ecv", "molli", "lge"): the images it
        needs are chosen per slice position (:func:`node.inputs.selection.select_frames`).  ``None``
        leaves out only repeated images and instances of another modality.

    Returns
    -------
    plugins.api.LoadedSeries
        Frames in physical units sorted along the slice normal, series header facts.

    Raises
    ------
    LoadError
        If the instances are not one series, carry no image frames, lack geometry, have
        pixel data that cannot be decoded, or frames of different sizes.
    """
    try:
        return _load_series(datasets, analysis)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # Malformed header values (a non-numeric Rows, a multi-valued RescaleSlope ...).
        raise LoadError(
            f"A header value of the series cannot be used: {type(exc).__name__}: {exc}"
        ) from exc


def _load_series(datasets: Sequence[Dataset], analysis: str | None) -> LoadedSeries:
    if not datasets:
        raise LoadError("The series has no instances.")

    series_uids = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series_uids) != 1:
        raise LoadError(
            f"The instances belong to {len(series_uids)} different series "
            f"({', '.join(sorted(series_uids))}); a series must be loaded on its own."
        )
    series_uid = series_uids.pop()
    if not series_uid:
        raise LoadError("The instances have no SeriesInstanceUID.")

    image_datasets = [ds for ds in datasets if "PixelData" in ds]
    skipped = len(datasets) - len(image_datasets)
    if skipped:
        logger.info("Series %s: skipping %d instance(s) without pixel data", series_uid, skipped)
    if not image_datasets:
        raise LoadError(
            f"The series {series_uid} has {len(datasets)} instance(s) but no image frames "
            "(no instance carries pixel data)."
        )

    header = _series_header(image_datasets[0], n_instances=len(image_datasets))
    t1_map = is_t1_map(header)
    vendor = describe_series(image_datasets)

    frames: list[SourceFrame] = []
    for ds in image_datasets:
        frames.extend(_frames_of(ds, series_is_t1_map=t1_map))
    if not frames:
        raise LoadError(f"The series {series_uid} contains no image frames.")
    if len(vendor.images) == len(frames):
        frames = [
            _with_vendor_facts(frame, image.kind, image.inversion_time_ms,
                               image.inversion_time_source)
            for frame, image in zip(frames, vendor.images, strict=True)
        ]
    frames, selection = select_frames(frames, analysis)
    if not frames:
        raise LoadError(
            f"The series {series_uid} has no image the {analysis} analysis needs: "
            + "; ".join(selection)
        )
    if selection:
        header["ImageSelection"] = selection
        logger.info("Series %s: %s", series_uid, "; ".join(selection))

    shapes = {frame.pixels.shape for frame in frames}
    if len(shapes) != 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sorted(shapes))
        raise LoadError(
            f"The frames of series {series_uid} have different sizes ({listed} rows x "
            "columns); a series must have one matrix size."
        )
    units = {frame.units for frame in frames}
    if len(units) != 1:
        logger.warning("Series %s: frames carry different units %s", series_uid, sorted(units))

    frames = _sorted_frames(frames)
    study_uid = str(image_datasets[0].get("StudyInstanceUID", ""))
    logger.debug(
        "Loaded series %s: %d frame(s) from %d instance(s), units %s",
        series_uid,
        len(frames),
        len(image_datasets),
        sorted(units),
    )
    return LoadedSeries(
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        frames=tuple(frames),
        header=header,
        acquisition=vendor.acquisition(),
    )


def load_series_files(
    paths: Iterable[str | PathLike[str]],
    analysis: str | None = None,
) -> tuple[LoadedSeries, list[Dataset]]:
    """Read DICOM files of one series and load them.

    Parameters
    ----------
    paths
        Files holding the instances of one series, in arrival order when known.
    analysis
        The analysis the series is loaded for (see :func:`load_series`).

    Returns
    -------
    tuple[plugins.api.LoadedSeries, list[pydicom.dataset.Dataset]]
        The loaded series and the source datasets (writers need them to reference the
        source images), in the order of ``paths``.

    Raises
    ------
    LoadError
        If a file cannot be read as DICOM, or for any reason :func:`load_series` raises.
    """
    datasets: list[Dataset] = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path))
        except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
            raise LoadError(f"Cannot read {path} as a DICOM file: {exc}") from exc
    return load_series(datasets, analysis), datasets


def is_t1_map(header: Mapping[str, Any]) -> bool:
    """Whether series header facts describe a T1 map (pixel values are T1 in ms).

    Parameters
    ----------
    header
        Series header facts keyed by DICOM keyword, as in ``LoadedSeries.header``.

    Returns
    -------
    bool
        True if ImageType contains a "T1 MAP" value, or SeriesDescription or ProtocolName
        names a T1 map (e.g. "MOLLI T1 map", "T1MAP", "T1_MAP").
    """
    image_type = header.get("ImageType") or []
    if isinstance(image_type, str):
        image_type = image_type.split("\\")
    if any(_T1_MAP_PATTERN.search(str(value)) for value in image_type):
        return True
    for keyword in ("SeriesDescription", "ProtocolName"):
        text = header.get(keyword)
        if text and _T1_MAP_PATTERN.search(str(text)):
            return True
    return False


# --------------------------------------------------------------------------------------------
# Header facts
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A DICOM element value as plain, JSON-serialisable Python."""
    if isinstance(value, MultiValue | list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, DSfloat | DSdecimal):
        return float(value)
    if isinstance(value, IS):
        return int(value)
    if isinstance(value, UID):
        return str(value)
    if isinstance(value, bytes):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _series_header(ds: Dataset, *, n_instances: int) -> dict[str, Any]:
    """Series-level header facts from the first image instance."""
    header: dict[str, Any] = {}
    for keyword in SERIES_HEADER_KEYWORDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        header[keyword] = _plain(value)
    if "SequenceName" not in header and "PulseSequenceName" in header:
        header["SequenceName"] = header["PulseSequenceName"]
    header["NumberOfSeriesRelatedInstances"] = n_instances
    transfer_syntax = _transfer_syntax(ds)
    if transfer_syntax is not None:
        header["TransferSyntaxUID"] = str(transfer_syntax)
    if _PHILIPS_PRIVATE_SCALE_SLOPE in ds:
        # Recorded for audit only: it is not a conversion to milliseconds (see module doc).
        header["PhilipsPrivateScaleSlope"] = _plain(ds[_PHILIPS_PRIVATE_SCALE_SLOPE].value)
    return header


def _transfer_syntax(ds: Dataset) -> UID | None:
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is None:
        return None
    ts = file_meta.get("TransferSyntaxUID")
    return UID(str(ts)) if ts else None


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _decode(ds: Dataset) -> npt.NDArray[Any]:
    """The stored pixel values of an instance, shape (frames, rows, columns)."""
    sop_uid = str(ds.get("SOPInstanceUID", "?"))
    transfer_syntax = _transfer_syntax(ds)
    if transfer_syntax is not None and transfer_syntax.is_compressed:
        try:
            decoder = get_decoder(transfer_syntax)
        except NotImplementedError as exc:
            raise LoadError(
                f"Instance {sop_uid}: pixel data is compressed with '{transfer_syntax.name}' "
                f"({transfer_syntax}), which no installed decoder supports."
            ) from exc
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise LoadError(
                f"Instance {sop_uid}: pixel data is compressed with '{transfer_syntax.name}' "
                f"({transfer_syntax}) and no decoder for it is installed (needs {missing})."
            )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if not photometric.startswith("MONOCHROME") or int(ds.get("SamplesPerPixel", 1)) != 1:
        raise LoadError(
            f"Instance {sop_uid}: colour image ({photometric}); a quantitative map must be "
            "a single-channel (MONOCHROME) image."
        )
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for broken or undecodable data
        ts_text = (
            f" (transfer syntax '{transfer_syntax.name}', {transfer_syntax})"
            if transfer_syntax is not None
            else ""
        )
        raise LoadError(
            f"Instance {sop_uid}: pixel data cannot be decoded{ts_text}: {exc}"
        ) from exc
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if n_frames == 1 and stored.ndim == 2:
        stored = stored[np.newaxis]
    if stored.ndim != 3 or stored.shape != (n_frames, rows, columns):
        raise LoadError(
            f"Instance {sop_uid}: decoded pixel data has shape {stored.shape}, inconsistent "
            f"with NumberOfFrames={n_frames}, Rows={rows}, Columns={columns}."
        )
    return stored


def _group_item(ds: Dataset, frame_index: int, keyword: str) -> Dataset | None:
    """First item of a functional group macro for a frame (per-frame, else shared)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame_index < len(per_frame):
        seq = per_frame[frame_index].get(keyword)
        if seq:
            return seq[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(keyword)
        if seq:
            return seq[0]
    return None


def _group_sequence(ds: Dataset, frame_index: int, keyword: str) -> Sequence[Dataset] | None:
    """All items of a functional group sequence for a frame (per-frame, else shared)."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame_index < len(per_frame):
        seq = per_frame[frame_index].get(keyword)
        if seq:
            return list(seq)
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        seq = shared[0].get(keyword)
        if seq:
            return list(seq)
    return None


def _is_enhanced(ds: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    """``count`` finite floats from a multi-valued element, or None."""
    if value is None:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        return None
    return numbers


def _geometry(
    ds: Dataset, frame_index: int, sop_uid: str
) -> tuple[
    tuple[float, float, float],
    tuple[float, float, float, float, float, float],
    tuple[float, float],
    float | None,
]:
    """Position, orientation, pixel spacing and slice thickness of one frame."""
    if _is_enhanced(ds):
        position_item = _group_item(ds, frame_index, "PlanePositionSequence")
        orientation_item = _group_item(ds, frame_index, "PlaneOrientationSequence")
        measures_item = _group_item(ds, frame_index, "PixelMeasuresSequence")
        position_value = position_item.get("ImagePositionPatient") if position_item else None
        orientation_value = (
            orientation_item.get("ImageOrientationPatient") if orientation_item else None
        )
        spacing_value = measures_item.get("PixelSpacing") if measures_item else None
        thickness_value = measures_item.get("SliceThickness") if measures_item else None
        where = f"frame {frame_index + 1} of instance {sop_uid}"
    else:
        position_value = ds.get("ImagePositionPatient")
        orientation_value = ds.get("ImageOrientationPatient")
        spacing_value = ds.get("PixelSpacing")
        thickness_value = ds.get("SliceThickness")
        where = f"instance {sop_uid}"

    spacing = _floats(spacing_value, 2)
    if spacing is None or min(spacing) <= 0:
        raise LoadError(
            f"No valid PixelSpacing for {where}: areas and wall thickness cannot be measured "
            "without the pixel size in millimetres."
        )
    position = _floats(position_value, 3)
    orientation = _floats(orientation_value, 6)
    if position is None or orientation is None:
        missing = [
            name
            for name, value in (
                ("ImagePositionPatient", position),
                ("ImageOrientationPatient", orientation),
            )
            if value is None
        ]
        raise LoadError(
            f"No valid {' or '.join(missing)} for {where}: the slice geometry is unknown, so "
            "slices cannot be ordered or results placed on the images."
        )
    row = np.asarray(orientation[:3])
    col = np.asarray(orientation[3:])
    if (
        abs(np.linalg.norm(row) - 1) > 0.05
        or abs(np.linalg.norm(col) - 1) > 0.05
        or abs(float(np.dot(row, col))) > 0.05
    ):
        raise LoadError(
            f"ImageOrientationPatient of {where} is not two orthogonal unit vectors: "
            f"{list(orientation)}."
        )
    thickness: float | None
    try:
        thickness = float(thickness_value) if thickness_value not in (None, "") else None
    except (TypeError, ValueError):
        thickness = None
    return (
        (position[0], position[1], position[2]),
        (
            orientation[0],
            orientation[1],
            orientation[2],
            orientation[3],
            orientation[4],
            orientation[5],
        ),
        (spacing[0], spacing[1]),
        thickness,
    )


def _rwv_units(item: Dataset) -> str | None:
    units_seq = item.get("MeasurementUnitsCodeSequence")
    if not units_seq:
        return None
    return str(units_seq[0].get("CodeValue", "")) or None


def _rwv_mapping(items: Sequence[Dataset] | None) -> _ValueMapping | None:
    """The Real World Value Mapping to use: the one in milliseconds, else the first."""
    if not items:
        return None
    chosen = next(
        (item for item in items if (_rwv_units(item) or "").lower() in _MS_UNIT_CODES),
        items[0],
    )
    units = _rwv_units(chosen)
    if units is not None and units.lower() in _MS_UNIT_CODES:
        units = UNIT_MS
    if "RealWorldValueLUTData" in chosen:
        lut = np.asarray([float(v) for v in chosen.RealWorldValueLUTData], dtype=np.float64)
        first = int(chosen.get("RealWorldValueFirstValueMapped", 0) or 0)
        return _ValueMapping(1.0, 0.0, units, "RealWorldValueLUTData", lut, first)
    slope = chosen.get("RealWorldValueSlope")
    intercept = chosen.get("RealWorldValueIntercept")
    if slope is None:
        return None
    return _ValueMapping(
        float(slope),
        float(intercept) if intercept is not None else 0.0,
        units,
        "RealWorldValueMapping",
    )


def _value_mapping(ds: Dataset, frame_index: int) -> _ValueMapping:
    """How stored values of a frame become physical values."""
    if _is_enhanced(ds):
        rwv_items = _group_sequence(ds, frame_index, "RealWorldValueMappingSequence")
    else:
        rwv_items = None
    if not rwv_items:
        rwv_items = ds.get("RealWorldValueMappingSequence")
    mapping = _rwv_mapping(list(rwv_items) if rwv_items else None)
    if mapping is not None:
        return mapping

    slope_value: Any = None
    intercept_value: Any = None
    if _is_enhanced(ds):
        transform = _group_item(ds, frame_index, "PixelValueTransformationSequence")
        if transform is not None:
            slope_value = transform.get("RescaleSlope")
            intercept_value = transform.get("RescaleIntercept")
    if slope_value is None:
        slope_value = ds.get("RescaleSlope")
        intercept_value = ds.get("RescaleIntercept")
    if slope_value is not None:
        return _ValueMapping(
            float(slope_value),
            float(intercept_value) if intercept_value is not None else 0.0,
            None,
            "Rescale",
        )
    return _ValueMapping(1.0, 0.0, None, "stored values")


def _frame_attributes(ds: Dataset, frame_index: int) -> dict[str, Any]:
    """Per-frame header facts (InversionTime, TriggerTime, EchoTime, ...)."""
    attributes: dict[str, Any] = {}
    for keyword in FRAME_ATTRIBUTE_KEYWORDS:
        value = ds.get(keyword)
        if value is not None and value != "":
            attributes[keyword] = _plain(value)
    if not _is_enhanced(ds):
        return attributes

    frame_type = _group_item(ds, frame_index, "MRImageFrameTypeSequence")
    if frame_type is not None and "FrameType" in frame_type:
        attributes["ImageType"] = _plain(frame_type.FrameType)
    modifier = _group_item(ds, frame_index, "MRModifierSequence")
    if modifier is not None and modifier.get("InversionTimes"):
        times = _plain(modifier.InversionTimes)
        attributes["InversionTime"] = times[0] if isinstance(times, list) else times
    cardiac = _group_item(ds, frame_index, "CardiacSynchronizationSequence")
    if cardiac is not None and "NominalCardiacTriggerDelayTime" in cardiac:
        attributes["TriggerTime"] = _plain(cardiac.NominalCardiacTriggerDelayTime)
    echo = _group_item(ds, frame_index, "MREchoSequence")
    if echo is not None and "EffectiveEchoTime" in echo:
        attributes["EchoTime"] = _plain(echo.EffectiveEchoTime)
    timing = _group_item(ds, frame_index, "MRTimingAndRelatedParametersSequence")
    if timing is not None and "RepetitionTime" in timing:
        attributes["RepetitionTime"] = _plain(timing.RepetitionTime)
    content = _group_item(ds, frame_index, "FrameContentSequence")
    if content is not None:
        for keyword in ("StackID", "InStackPositionNumber", "TemporalPositionIndex"):
            if keyword in content:
                attributes[keyword] = _plain(content[keyword].value)
    return attributes


def _frames_of(ds: Dataset, *, series_is_t1_map: bool) -> list[SourceFrame]:
    """The frames of one instance, in physical units."""
    sop_uid = str(ds.get("SOPInstanceUID", ""))
    sop_class = str(ds.get("SOPClassUID", ""))
    for keyword in ("Rows", "Columns"):
        if not int(ds.get(keyword, 0) or 0):
            raise LoadError(f"Instance {sop_uid} has no {keyword}.")
    stored = _decode(ds)
    n_frames = stored.shape[0]
    multi_frame = n_frames > 1 or _is_enhanced(ds)
    if n_frames > 1 and not _is_enhanced(ds):
        logger.warning(
            "Instance %s has %d frames but no functional groups: all frames get the "
            "instance's geometry",
            sop_uid,
            n_frames,
        )

    frames: list[SourceFrame] = []
    for index in range(n_frames):
        position, orientation, spacing, thickness = _geometry(ds, index, sop_uid)
        mapping = _value_mapping(ds, index)
        if mapping.units is not None:
            units = mapping.units
        elif series_is_t1_map:
            units = UNIT_MS
        else:
            units = UNIT_ONE
        attributes = _frame_attributes(ds, index)
        attributes["ValueMappingSource"] = mapping.source
        frames.append(
            SourceFrame(
                pixels=mapping.apply(stored[index]),
                sop_instance_uid=sop_uid,
                sop_class_uid=sop_class,
                frame_number=index + 1 if multi_frame else None,
                image_position=position,
                image_orientation=orientation,
                pixel_spacing=spacing,
                slice_thickness=thickness,
                units=units,
                attributes=attributes,
            )
        )
    return frames


def _with_vendor_facts(
    frame: SourceFrame,
    kind: ImageKind,
    inversion_time_ms: float | None,
    inversion_time_source: str | None,
) -> SourceFrame:
    """The frame with its image kind, vendor inversion time and the unit its kind implies."""
    attributes = dict(frame.attributes)
    attributes[KIND_ATTRIBUTE] = kind.value
    if inversion_time_ms is not None and "InversionTime" not in attributes:
        attributes["InversionTime"] = inversion_time_ms
        attributes["InversionTimeSource"] = inversion_time_source
    units = frame.units
    mapped = str(frame.attributes.get("ValueMappingSource", "")).startswith("RealWorldValue")
    if not (mapped and units not in (UNIT_ONE, UNIT_MS)):
        if kind in (ImageKind.T1_MAP, ImageKind.T2_MAP, ImageKind.T2STAR_MAP):
            units = UNIT_MS
        elif kind in SIGNAL_KINDS and units == UNIT_MS:
            units = UNIT_ONE
    return dataclasses.replace(frame, attributes=attributes, units=units)


def _sorted_frames(frames: list[SourceFrame]) -> list[SourceFrame]:
    """Frames ordered by position along the first frame's normal, then instance/frame."""
    normal = frames[0].normal

    def key(frame: SourceFrame) -> tuple[float, int, int]:
        location = float(np.dot(normal, np.asarray(frame.image_position, dtype=np.float64)))
        instance = frame.attributes.get("InstanceNumber")
        try:
            instance_number = int(instance) if instance is not None else 0
        except (TypeError, ValueError):
            instance_number = 0
        return (round(location, 3), instance_number, frame.frame_number or 0)

    return sorted(frames, key=key)
