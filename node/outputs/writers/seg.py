"""DICOM Segmentation (SEG) writer: the label images of a result on their source images."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.sr.coding import Code as PydicomCode

from node.outputs.uids import DerivedObjectIdentity, derived_uid
from node.outputs.writers import (
    SHORT_DISCLAIMER,
    WriterError,
    WriterSettings,
    algorithm_family,
    algorithm_parameters,
)
from plugins.api import DISCLAIMER, AnalysisResult, Code, Label, LoadedSeries, SegmentDefinition

logger = logging.getLogger(__name__)

ScalarT = TypeVar("ScalarT", np.bool_, np.float32)

MAX_CONTENT_LABEL_LENGTH = 16
"""ContentLabel is a CS: at most 16 characters of A-Z, 0-9, underscore and space."""


def to_pydicom_code(code: Code) -> PydicomCode:
    """Return ``code`` as the pydicom code type that highdicom accepts."""
    return PydicomCode(code.value, code.scheme, code.meaning)


def used_segments(result: AnalysisResult) -> dict[Label, tuple[int, SegmentDefinition]]:
    """Return the segment number and definition of every label used by the result's slices.

    Segment numbers start at 1 and follow the order of ``result.segments``; labels that no
    slice uses get no segment.

    Raises
    ------
    WriterError
        If a slice uses a label value that has no segment definition.
    """
    present: set[int] = set()
    for slice_result in result.slices:
        present.update(int(v) for v in np.unique(slice_result.labels) if v != Label.BACKGROUND)
    defined = {int(definition.label) for definition in result.segments}
    undefined = present - defined
    if undefined:
        raise WriterError(
            f"Label values {sorted(undefined)} occur in the label images but the result has "
            "no segment definition for them."
        )
    numbers: dict[Label, tuple[int, SegmentDefinition]] = {}
    for definition in result.segments:
        if int(definition.label) in present and definition.label not in numbers:
            numbers[definition.label] = (len(numbers) + 1, definition)
    return numbers


def content_label(result: AnalysisResult) -> str:
    """Return a ContentLabel (CS) naming the analysis."""
    label = re.sub(r"[^A-Z0-9_ ]", "_", result.analysis.upper())
    return label[:MAX_CONTENT_LABEL_LENGTH] or "CMR_NODE"


def algorithm_identification(result: AnalysisResult) -> hd.AlgorithmIdentificationSequence:
    """Return the SEG algorithm identification of the method that produced ``result``."""
    provenance = result.provenance
    return hd.AlgorithmIdentificationSequence(
        name=provenance.algorithm_name,
        family=to_pydicom_code(algorithm_family(result)),
        version=provenance.algorithm_version,
        parameters=algorithm_parameters(provenance),
    )


def segment_tracking_uid(result: AnalysisResult, label: Label) -> str:
    """Return the tracking UID of a segment, shared by the SEG and the summary SR."""
    return derived_uid(
        result.series_instance_uid,
        result.analysis,
        result.provenance.algorithm_version,
        "segment",
        label.name,
    )


def _segment_descriptions(
    result: AnalysisResult, segments: dict[Label, tuple[int, SegmentDefinition]]
) -> list[hd.seg.SegmentDescription]:
    return _descriptions(
        result, segments,
        lambda label, definition: (definition.name[:64], segment_tracking_uid(result, label)))


def _descriptions(
    result: AnalysisResult, segments: dict[Label, tuple[int, SegmentDefinition]],
    named: Callable[[Label, SegmentDefinition], tuple[str, str]],
) -> list[hd.seg.SegmentDescription]:
    """One segment description per label, with the analysis' algorithm identification;
    ``named`` gives each label's segment label (also its tracking ID) and tracking UID."""
    algorithm = algorithm_identification(result)
    descriptions = []
    for label, (number, definition) in segments.items():
        name, tracking_uid = named(label, definition)
        anatomic_regions = (
            [to_pydicom_code(definition.anatomic_region)]
            if definition.anatomic_region is not None
            else None
        )
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=to_pydicom_code(definition.category),
                segmented_property_type=to_pydicom_code(definition.property_type),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=tracking_uid,
                tracking_id=name,
                anatomic_regions=anatomic_regions,
                display_color=hd.color.CIELabColor.from_rgb(*definition.colour_rgb),
            )
        )
    return descriptions


def _source_layout(
    series: LoadedSeries, sources: Sequence[pydicom.Dataset]
) -> tuple[list[pydicom.Dataset], list[tuple[int, int]]]:
    """Return the source images in SEG order and, per series frame, (image index, frame index).

    The SEG pixel array is indexed like the source images: one plane per single-frame
    instance, or one plane per frame of a single multi-frame instance.
    """
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    ordered: list[pydicom.Dataset] = []
    position: dict[str, int] = {}
    for frame in series.frames:
        if frame.sop_instance_uid not in position:
            if frame.sop_instance_uid not in by_uid:
                raise WriterError(
                    f"Source instance {frame.sop_instance_uid} is not among the source datasets."
                )
            position[frame.sop_instance_uid] = len(ordered)
            ordered.append(by_uid[frame.sop_instance_uid])
    multi_frame = any(frame.frame_number is not None for frame in series.frames)
    if multi_frame and len(ordered) > 1:
        raise WriterError(
            "A SEG can reference several single-frame images or one multi-frame image; this "
            f"series has {len(ordered)} instances with multi-frame frames."
        )
    layout = [
        (0, (frame.frame_number or 1) - 1) if multi_frame else (position[frame.sop_instance_uid], 0)
        for frame in series.frames
    ]
    return ordered, layout


def segmentation_masks(
    result: AnalysisResult,
    series: LoadedSeries,
    segments: dict[Label, tuple[int, SegmentDefinition]],
    planes: int,
    layout: Sequence[tuple[int, int]],
    multi_frame: bool,
) -> npt.NDArray[np.bool_]:
    """Return the binary masks (planes, rows, columns, segments) in source-image order."""
    rows, columns = series.frames[0].pixels.shape
    masks = np.zeros((planes, rows, columns, len(segments)), dtype=np.bool_)
    for slice_result in result.slices:
        image_index, frame_index = layout[slice_result.frame_index]
        plane = frame_index if multi_frame else image_index
        for number, definition in segments.values():
            masks[plane, :, :, number - 1] |= definition.mask(slice_result.labels)
    return masks


def _shares_positions(image: pydicom.Dataset) -> bool:
    """Whether several frames of a multi-frame image lie at one position."""
    positions = []
    for item in image.get("PerFrameFunctionalGroupsSequence", []):
        plane = item.get("PlanePositionSequence")
        if plane:
            positions.append(tuple(round(float(v), 3) for v in plane[0].ImagePositionPatient))
    return len(set(positions)) != len(positions)


def _analysed_planes(
    result: AnalysisResult,
    series: LoadedSeries,
    layout: Sequence[tuple[int, int]],
    masks: npt.NDArray[ScalarT],
) -> tuple[npt.NDArray[ScalarT], list[hd.PlanePositionSequence]]:
    """The planes of the analysed frames only, with their positions.

    An enhanced MR object keeps several frames per slice position (a Philips MOLLI series:
    the inversion-recovery frames and the T1 map); highdicom refuses a SEG whose planes repeat
    a position, so the SEG holds one plane per analysed frame, placed by its position, and
    references the source frames at that position.
    """
    chosen: dict[int, int] = {}
    for slice_result in result.slices:
        chosen.setdefault(layout[slice_result.frame_index][1], slice_result.frame_index)
    planes = sorted(chosen)
    positions = [
        hd.PlanePositionSequence(
            hd.CoordinateSystemNames.PATIENT,
            image_position=series.frames[chosen[plane]].image_position,
        )
        for plane in planes
    ]
    return masks[planes], positions


def _reference_analysed_frames(
    seg: hd.seg.Segmentation,
    series: LoadedSeries,
    result: AnalysisResult,
    layout: Sequence[tuple[int, int]],
) -> None:
    """Let each SEG frame derive from the analysed source frame at its position only.

    highdicom references every source frame at a plane's position; of the frames of one
    position only the analysed one (e.g. the T1 map, not the inversion-recovery images) was
    segmented.
    """
    analysed: dict[tuple[float, ...], int] = {}
    for slice_result in result.slices:
        frame = series.frames[slice_result.frame_index]
        key = tuple(round(float(v), 3) for v in frame.image_position)
        analysed.setdefault(key, layout[slice_result.frame_index][1] + 1)
    for item in seg.PerFrameFunctionalGroupsSequence:
        position = item.PlanePositionSequence[0].ImagePositionPatient
        number = analysed.get(tuple(round(float(v), 3) for v in position))
        if number is None:
            continue
        for derivation in item.get("DerivationImageSequence", []):
            kept = [source for source in derivation.SourceImageSequence
                    if int(source.get("ReferencedFrameNumber", 0) or 0) == number]
            if kept:
                derivation.SourceImageSequence = kept


def build_segmentation(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
) -> hd.seg.Segmentation | None:
    """Build the binary DICOM Segmentation of ``result`` on its source images.

    Parameters
    ----------
    result
        The analysis result; its label images become segments.
    series
        The analysed series.
    sources
        The source instances' datasets.
    settings
        Identity of the node.
    identity
        UIDs, number and description of the SEG series.

    Returns
    -------
    highdicom.seg.Segmentation or None
        ``None`` if no slice has a labelled pixel.  Empty frames are omitted.

    Raises
    ------
    WriterError
        If the label images, segment definitions and sources do not fit together.
    """
    segments = used_segments(result)
    if not segments:
        return None
    shapes = {frame.pixels.shape for frame in series.frames}
    if len(shapes) != 1:
        raise WriterError(f"Frames of the series have different sizes {sorted(shapes)}.")
    return _segmentation(
        result, series, sources, settings=settings, identity=identity, what="SEG",
        planes_of=lambda planes, layout, multi_frame: segmentation_masks(
            result, series, segments, planes, layout, multi_frame),
        segment_count=len(segments),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(result, segments),
        content_label=content_label(result),
    )


# --------------------------------------------------------------------------------------------
# Probability SEG (FRACTIONAL)
# --------------------------------------------------------------------------------------------

PROBABILITY_SEGMENT_NAMES: dict[Label, str] = {
    Label.MYOCARDIUM: "myocardium probability",
    Label.SCAR: "scar probability",
}
"""Segment labels of the probability SEG, by the label whose probability they hold."""

MAX_FRACTIONAL_VALUE = 255
"""Stored value of probability 1 (8-bit fractional pixels, DICOM PS3.3 C.8.20.2.3)."""


def probability_segments(result: AnalysisResult) -> dict[Label, tuple[int, SegmentDefinition]]:
    """Return the segment number and definition of every label with probabilities.

    Numbers start at 1 in the order of :data:`PROBABILITY_SEGMENT_NAMES`; a label gets a
    segment when some analysed slice carries its probabilities and the result defines it.
    """
    present = {label for s in result.slices for label in s.probabilities}
    definitions = {definition.label: definition for definition in result.segments}
    numbers: dict[Label, tuple[int, SegmentDefinition]] = {}
    for label in PROBABILITY_SEGMENT_NAMES:
        if label in present and label in definitions:
            numbers[label] = (len(numbers) + 1, definitions[label])
    return numbers


def _probability_descriptions(
    result: AnalysisResult, segments: dict[Label, tuple[int, SegmentDefinition]]
) -> list[hd.seg.SegmentDescription]:
    return _descriptions(
        result, segments,
        lambda label, _: (PROBABILITY_SEGMENT_NAMES[label], derived_uid(
            result.series_instance_uid, result.analysis, result.provenance.algorithm_version,
            "probability-segment", label.name)))


def probability_planes(
    result: AnalysisResult,
    series: LoadedSeries,
    segments: dict[Label, tuple[int, SegmentDefinition]],
    planes: int,
    layout: Sequence[tuple[int, int]],
    multi_frame: bool,
) -> npt.NDArray[np.float32]:
    """Return the probabilities (planes, rows, columns, segments) in source-image order.

    Frames that were not analysed, or whose segmenter gave no probabilities, are zero.
    """
    rows, columns = series.frames[0].pixels.shape
    values = np.zeros((planes, rows, columns, len(segments)), dtype=np.float32)
    for slice_result in result.slices:
        image_index, frame_index = layout[slice_result.frame_index]
        plane = frame_index if multi_frame else image_index
        for label, (number, _) in segments.items():
            probability = slice_result.probabilities.get(label)
            if probability is None:
                continue
            if probability.shape != (rows, columns):
                raise WriterError(
                    f"The {label.name.lower()} probabilities of frame {slice_result.frame_index}"
                    f" have shape {probability.shape}, the frame ({rows}, {columns})."
                )
            values[plane, :, :, number - 1] = np.clip(probability, 0.0, 1.0)
    return values


def build_probability_segmentation(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
) -> hd.seg.Segmentation | None:
    """Build the FRACTIONAL (probability) DICOM Segmentation of ``result``.

    One segment per label whose per-pixel probabilities the segmenter returned ("myocardium
    probability", and for LGE "scar probability"), SegmentationFractionalType PROBABILITY,
    stored as 8-bit values of :data:`MAX_FRACTIONAL_VALUE` steps, on the same source images
    and with the same algorithm identification as the binary SEG.

    Parameters
    ----------
    result
        The analysis result; the slices' ``probabilities`` become segments.
    series
        The analysed series.
    sources
        The source instances' datasets.
    settings
        Identity of the node.
    identity
        UIDs, number and description of the probability SEG series.

    Returns
    -------
    highdicom.seg.Segmentation or None
        ``None`` if no analysed slice carries probabilities (a classical segmenter).
        Frames without any non-zero stored value are omitted.

    Raises
    ------
    WriterError
        If the probabilities, segment definitions and sources do not fit together.
    """
    segments = probability_segments(result)
    if not segments:
        return None
    return _segmentation(
        result, series, sources, settings=settings, identity=identity,
        what="probability SEG",
        planes_of=lambda planes, layout, multi_frame: probability_planes(
            result, series, segments, planes, layout, multi_frame),
        segment_count=len(segments),
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=MAX_FRACTIONAL_VALUE,
        segment_descriptions=_probability_descriptions(result, segments),
        content_label=content_label(result)[:MAX_CONTENT_LABEL_LENGTH - 5] + " PROB",
    )


def _segmentation(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
    what: str,
    planes_of: Callable[[int, Sequence[tuple[int, int]], bool], npt.NDArray[Any]],
    segment_count: int,
    **segmentation: Any,
) -> hd.seg.Segmentation:
    """A SEG instance of the planes ``planes_of(planes, layout, multi_frame)`` gives, on the
    source images, with the node's identity and the disclaimer; ``segmentation`` are the
    type-specific arguments of :class:`highdicom.seg.Segmentation` (type, segment
    descriptions, content label); ``what`` names the object in errors and logs."""
    images, layout = _source_layout(series, sources)
    multi_frame = any(frame.frame_number is not None for frame in series.frames)
    planes = int(getattr(images[0], "NumberOfFrames", 1)) if multi_frame else len(images)
    values = planes_of(planes, layout, multi_frame)
    plane_positions = None
    if multi_frame and _shares_positions(images[0]):
        values, plane_positions = _analysed_planes(result, series, layout, values)
    try:
        seg = hd.seg.Segmentation(
            source_images=images,
            pixel_array=values,
            plane_positions=plane_positions,
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=settings.manufacturer,
            manufacturer_model_name=settings.manufacturer_model_name,
            software_versions=settings.software_versions,
            device_serial_number=settings.device_serial_number,
            content_description=SHORT_DISCLAIMER,
            content_creator_name=None,
            series_description=identity.series_description,
            institution_name=settings.institution_name,
            omit_empty_frames=True,
            **segmentation,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriterError(
            f"Cannot build the {what} of series {series.series_instance_uid}: {exc}"
        ) from exc
    if plane_positions is not None:
        _reference_analysed_frames(seg, series, result, layout)
    seg.ImageComments = DISCLAIMER
    logger.debug("%s %s: %d segments, %d frames", what, identity.sop_instance_uid,
                 segment_count, seg.NumberOfFrames)
    return seg
