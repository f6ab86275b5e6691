"""TID 1500 Measurement Report writers.

Two documents are written for a result:

* the *planar-ROI report*: one TID 1410 group per analysed slice and region, whose region
  is the contour of the label on the source image (one closed SCOORD POLYLINE; a ring such as
  the myocardium is drawn as a single "keyhole" polygon whose enclosed area is the ring), with
  that slice's measurements and quality-control flags.  Every group has a contour, which is
  what OHIF needs to show the report at all.
* the *summary report*: the series-level measurements, one TID 1411 group per SEG segment
  (or one TID 1501 group per region when there is no SEG), the quality-control flags, the
  method and the disclaimer.

Both are Comprehensive SR documents (2-D SCOORD only), the SR class viewers support most widely.

A measurement without a value is never written as a number: it becomes a qualitative
evaluation whose value is the CID 42 concept "Measurement failure", plus a comment that gives
the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code as PydicomCode
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage import measure

from node.outputs.uids import DerivedObjectIdentity, derived_uid, uid_from_parts
from node.outputs.writers import (
    WriterError,
    WriterSettings,
    algorithm_family,
    algorithm_parameters,
    frame_description,
    reference_range_text,
    weights_text,
)
from node.outputs.writers.explain import model_explanations
from node.outputs.writers.seg import segment_tracking_uid, to_pydicom_code, used_segments
from node.outputs.writers.sr_document import comprehensive_sr
from plugins.api import (
    DISCLAIMER,
    AnalysisResult,
    Label,
    LoadedSeries,
    Measurement,
    QCFlag,
    SegmentDefinition,
    Severity,
    SliceResult,
)
from plugins.lib import codes as plugin_codes

logger = logging.getLogger(__name__)

LOCAL_SCHEME = "99CMRNODE"
"""Private coding scheme of cmr-node's own concepts (declared in each SR)."""

QUALITATIVE_EVALUATIONS = PydicomCode("C0034375", "UMLS", "Qualitative Evaluations")
"""TID 1500 container of document-level qualitative evaluations."""

DISCLAIMER_CONCEPT = PydicomCode("DISCLAIMER", LOCAL_SCHEME, "Disclaimer")
METHOD_CONCEPT = PydicomCode("METHOD", LOCAL_SCHEME, "Method description")
WEIGHTS_CONCEPT = PydicomCode("WEIGHTS", LOCAL_SCHEME, "Model weights")
REFERENCE_RANGE_CONCEPT = PydicomCode("REFRANGE", LOCAL_SCHEME, "Reference range")
"""Which normal range the z-scores use, or that none matches the sequence (values only)."""
QC_CONCEPTS: dict[Severity, PydicomCode] = {
    Severity.INFO: PydicomCode("QC-INFO", LOCAL_SCHEME, "Quality control information"),
    Severity.WARNING: PydicomCode("QC-WARNING", LOCAL_SCHEME, "Quality control warning"),
    Severity.FAILURE: PydicomCode("QC-FAILURE", LOCAL_SCHEME, "Quality control failure"),
}
CONTRIBUTIONS_CONCEPT = PydicomCode("CONTRIB", LOCAL_SCHEME,
                                    "Largest contributions to a model output")
"""The "why this number" text of a model-based value (:mod:`node.outputs.writers.explain`)."""
MISSING_VALUE = codes.cid42.MeasurementFailure
"""Value of the qualitative evaluation that stands for a measurement without a value."""

MIN_POLYGON_VERTICES = 3

SIGNIFICANT_DIGITS = 7
"""Measured values are written with this many significant digits (float32 precision)."""


# --------------------------------------------------------------------------------------------
# Contours
# --------------------------------------------------------------------------------------------


def polygon_area(polygon: npt.NDArray[np.float64]) -> float:
    """Return the signed area (shoelace) of a polygon given as (n, 2) vertices."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _open(polygon: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Drop the repeated closing vertex of a closed polygon."""
    if len(polygon) > 1 and np.allclose(polygon[0], polygon[-1]):
        return polygon[:-1]
    return polygon


def _bridge(
    outer: npt.NDArray[np.float64], hole: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Join a hole into an outer polygon through a zero-width cut at their closest points.

    Both polygons are open (no repeated vertex) and of opposite orientation, so the joined
    polygon encloses the outer area minus the hole.
    """
    distances, nearest = cKDTree(outer).query(hole)
    j = int(np.argmin(distances))
    i = int(nearest[j])
    hole_loop = np.concatenate([hole[j:], hole[: j + 1]])
    return np.concatenate([outer[: i + 1], hole_loop, outer[i:]])


def component_polygon(component: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """Return one closed polygon, (row, column) pixel indices, outlining a connected region.

    The outline runs along the 0.5 iso-line between the region's pixel centres and its
    neighbours'.  Holes are joined to the outer boundary by zero-width cuts, so a ring gives a
    single "keyhole" polygon whose enclosed area is the ring's.  The first vertex is repeated
    at the end.
    """
    padded = np.pad(component.astype(np.float64), 1)
    contours = [
        c - 1.0 for c in measure.find_contours(padded, 0.5) if len(c) > MIN_POLYGON_VERTICES
    ]
    if not contours:
        raise WriterError("A labelled region is too small to outline.")
    contours.sort(key=lambda c: abs(polygon_area(c)), reverse=True)
    outer = _open(contours[0])
    if polygon_area(outer) < 0:
        outer = outer[::-1]
    for hole in contours[1:]:
        hole = _open(hole)
        if polygon_area(hole) > 0:
            hole = hole[::-1]
        outer = _bridge(outer, hole)
    return np.concatenate([outer, outer[:1]])


def region_polygons(mask: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.float64]]:
    """Return one closed polygon per connected part of ``mask``, largest part first.

    Parts are 4-connected (the connectivity the iso-line follows); coordinates are (row,
    column) pixel indices.
    """
    components, count = ndimage.label(mask)
    if count == 0:
        return []
    sizes = ndimage.sum_labels(mask, components, index=np.arange(1, count + 1))
    order = np.argsort(-np.asarray(sizes), kind="stable")
    return [component_polygon(components == index + 1) for index in order]


def to_scoord(polygon: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Convert (row, column) pixel indices to SCOORD (column, row) image coordinates.

    In SCOORD the top-left corner of the top-left pixel is (0, 0), so a pixel centre at
    index (r, c) lies at (c + 0.5, r + 0.5).
    """
    return (polygon[:, ::-1] + 0.5).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Content items
# --------------------------------------------------------------------------------------------


def sr_algorithm_identification(result: AnalysisResult) -> hd.sr.AlgorithmIdentification:
    """Return the TID 4019 Algorithm Identification of the method that produced ``result``."""
    provenance = result.provenance
    parameters = [f"{key}={value}" for key, value in algorithm_parameters(provenance).items()]
    return hd.sr.AlgorithmIdentification(
        name=provenance.algorithm_name,
        version=provenance.algorithm_version,
        parameters=parameters,
        family=to_pydicom_code(algorithm_family(result)),
    )


def describe_measurement(measurement: Measurement) -> str:
    """Return a short human label such as ``"T1 (Mean, ms)"``."""
    qualifiers = [measurement.derivation.meaning] if measurement.derivation else []
    qualifiers.append(measurement.unit.value)
    return f"{measurement.name.meaning} ({', '.join(qualifiers)})"


def _sr_measurement(measurement: Measurement) -> hd.sr.Measurement:
    if measurement.value is None or not np.isfinite(measurement.value):
        raise ValueError("only measurements with a finite value become NUM items")
    return hd.sr.Measurement(
        name=to_pydicom_code(measurement.name),
        value=float(f"{measurement.value:.{SIGNIFICANT_DIGITS}g}"),
        unit=to_pydicom_code(measurement.unit),
        derivation=(
            to_pydicom_code(measurement.derivation) if measurement.derivation is not None else None
        ),
    )


def _split_measurements(
    measurements: Iterable[Measurement],
) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation], list[str]]:
    """Return NUM measurements, missing-value evaluations and their reasons."""
    numbers, missing, reasons = [], [], []
    for measurement in measurements:
        if measurement.value is not None and np.isfinite(measurement.value):
            numbers.append(_sr_measurement(measurement))
            continue
        missing.append(
            hd.sr.QualitativeEvaluation(name=to_pydicom_code(measurement.name), value=MISSING_VALUE)
        )
        reason = measurement.reason or "no reason given"
        if measurement.value is not None:
            reason = f"value {measurement.value} is not a finite number; {reason}"
        reasons.append(f"{describe_measurement(measurement)} not measured: {reason}")
    return numbers, missing, reasons


def _text(name: PydicomCode, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def qc_text(flag: QCFlag, result: AnalysisResult | None = None) -> hd.sr.TextContentItem:
    """Return a quality-control flag as a TEXT qualitative evaluation.

    With ``result``, a flag about one frame names the frame (level and 1-based number).
    """
    where = ""
    if result is not None and flag.frame_index is not None:
        where = f" [{frame_description(result, flag.frame_index)}]"
    return _text(QC_CONCEPTS[flag.severity], f"{flag.code}{where}: {flag.message}")


def _append_to_group(
    group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations,
    items: Sequence[hd.sr.ContentItem],
) -> None:
    """Append TEXT qualitative evaluations to a measurement group (TID 1501/1410/1411)."""
    if items:
        group[0].ContentSequence.extend(items)


def _observation_context(settings: WriterSettings) -> hd.sr.ObservationContext:
    device_uid = uid_from_parts(
        "device",
        settings.manufacturer,
        settings.manufacturer_model_name,
        settings.device_serial_number,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=device_uid,
                name=f"cmr-node {settings.software_versions}",
                manufacturer_name=settings.manufacturer,
                model_name=settings.manufacturer_model_name,
                serial_number=settings.device_serial_number,
            ),
        )
    )


def _document_texts(
    result: AnalysisResult, extra: Sequence[hd.sr.ContentItem]
) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    provenance = result.provenance
    reference = reference_range_text(result)
    container.ContentSequence = hd.sr.ContentSequence(
        [
            _text(DISCLAIMER_CONCEPT, DISCLAIMER),
            _text(
                METHOD_CONCEPT,
                f"{provenance.algorithm_name} {provenance.algorithm_version}: {provenance.method}",
            ),
            _text(WEIGHTS_CONCEPT, weights_text(provenance)),
            *([_text(REFERENCE_RANGE_CONCEPT, reference)] if reference else []),
            *extra,
        ]
    )
    return container


PREDECESSOR_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
"""What an item of the Predecessor Documents Sequence references (PS3.3 Table C.17-3)."""


def predecessor_documents(
    predecessor: pydicom.Dataset | None, evidence: Sequence[pydicom.Dataset]
) -> list[pydicom.Dataset] | None:
    """Return the SR a re-analysis replaces, as highdicom's ``previous_versions``.

    The re-analysis SR lists it in its Predecessor Documents Sequence (0040,A360), "required
    if this document replaces or amends previous documents" (PS3.3 C.17.2): the reader's
    viewer and the archive can tell that the earlier measurements are superseded.

    Parameters
    ----------
    predecessor
        Header of the replaced SR (pixel-free; its study, series, class and instance UIDs
        are used), or ``None``.
    evidence
        The source datasets of the new SR; the predecessor must belong to their study.

    Returns
    -------
    list of pydicom.Dataset or None
        ``[predecessor]``, or ``None`` when nothing is replaced.

    Raises
    ------
    WriterError
        If the predecessor lacks an identifying UID or belongs to another study.
    """
    if predecessor is None:
        return None
    missing = [k for k in PREDECESSOR_KEYWORDS if not str(predecessor.get(k, "") or "")]
    if missing:
        raise WriterError(f"The SR to replace lacks {', '.join(missing)}.")
    study = str(evidence[0].StudyInstanceUID) if evidence else None
    if study is not None and str(predecessor.StudyInstanceUID) != study:
        raise WriterError(
            f"The SR to replace ({predecessor.SOPInstanceUID}) belongs to study "
            f"{predecessor.StudyInstanceUID}, the new one to {study}."
        )
    return [predecessor]


def _report_document(
    result: AnalysisResult,
    groups: Sequence[
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ],
    document_texts: Sequence[hd.sr.ContentItem],
    *,
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
    evidence: Sequence[pydicom.Dataset],
    predecessor: pydicom.Dataset | None = None,
) -> hd.SOPClass:
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(settings),
        procedure_reported=to_pydicom_code(settings.procedure_reported),
        imaging_measurements=list(groups),
        title=codes.cid7021.ImagingMeasurementReport,
    )
    report[0].ContentSequence.append(_document_texts(result, document_texts))
    try:
        document = comprehensive_sr(
            evidence=list(evidence),
            content=report[0],
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=settings.manufacturer,
            institution_name=settings.institution_name,
            series_description=identity.series_description,
            previous_versions=predecessor_documents(predecessor, evidence),
            manufacturer_model_name=settings.manufacturer_model_name,
            software_versions=settings.software_versions,
            device_serial_number=settings.device_serial_number,
            coding_schemes=[
                hd.coding_schemes.CodingSchemeIdentificationItem(
                    designator=LOCAL_SCHEME, name="cmr-node local concepts"
                )
            ],
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriterError(f"Cannot build SR {identity.series_description!r}: {exc}") from exc
    return document


# --------------------------------------------------------------------------------------------
# Planar-ROI report
# --------------------------------------------------------------------------------------------


def _tracking_identifier(
    slice_result: SliceResult, definition: SegmentDefinition, part: int, flags: Sequence[QCFlag]
) -> str:
    text = f"{slice_result.level} {definition.name}"
    if part > 0:
        text += f" (part {part + 1})"
    worst = _worst_severity(flags)
    if worst is not None and worst is not Severity.INFO:
        text += f" [QC {worst.value}]"
    return text


def _worst_severity(flags: Sequence[QCFlag]) -> Severity | None:
    order = (Severity.FAILURE, Severity.WARNING, Severity.INFO)
    for severity in order:
        if any(flag.severity is severity for flag in flags):
            return severity
    return None


CONTOUR_ONLY_REGIONS: frozenset[Label] = frozenset({Label.LV_BLOOD_POOL, Label.RV_BLOOD_POOL})
"""Regions drawn without values in the planar-ROI report: viewers (OHIF) put every label at
the contour's right-most point, where a blood-pool label covers the myocardium's."""


def shown_on_contour(measurement: Measurement) -> bool:
    """Whether a per-slice value is written on its contour in the planar-ROI report.

    Viewers show a contour's values as "T1: 1012 ms" lines without the derivation, and only
    the first few (OHIF: five), so only the mean (or an underived value, e.g. an area) of
    regions other than the blood pools is written there; medians, SDs, pixel counts and
    blood-pool values stay in the summary report, the summary image and results.json.
    """
    if measurement.region in CONTOUR_ONLY_REGIONS:
        return False
    return measurement.derivation is None or measurement.derivation == plugin_codes.MEAN


def _slice_groups(
    result: AnalysisResult,
    series: LoadedSeries,
    slice_result: SliceResult,
    segments: dict[Label, tuple[int, SegmentDefinition]],
    algorithm: hd.sr.AlgorithmIdentification,
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    frame = series.frames[slice_result.frame_index]
    flags = [f for f in result.qc_flags if f.frame_index == slice_result.frame_index]
    source_image = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=frame.sop_class_uid,
        referenced_sop_instance_uid=frame.sop_instance_uid,
        referenced_frame_numbers=[frame.frame_number] if frame.frame_number is not None else None,
    )
    groups = []
    for label, (_number, definition) in segments.items():
        polygons = region_polygons(definition.mask(slice_result.labels))
        measurements = [
            m for m in slice_result.measurements if m.region == label and shown_on_contour(m)
        ]
        if not polygons:
            if measurements:
                logger.warning(
                    "Frame %d: %d measurements of %s have no contour; left out of the SR",
                    slice_result.frame_index,
                    len(measurements),
                    definition.name,
                )
            continue
        for part, polygon in enumerate(polygons):
            numbers, missing, reasons = _split_measurements(measurements if part == 0 else ())
            texts = [_text(codes.DCM.Comment, reason) for reason in reasons]
            if part == 0:
                texts += [qc_text(flag) for flag in flags]
            group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=derived_uid(
                        result.series_instance_uid,
                        result.analysis,
                        result.provenance.algorithm_version,
                        "roi",
                        frame.sop_instance_uid,
                        frame.frame_number or 0,
                        label.name,
                        part,
                    ),
                    identifier=_tracking_identifier(slice_result, definition, part, flags),
                ),
                referenced_region=hd.sr.ImageRegion(
                    graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                    graphic_data=to_scoord(polygon),
                    source_image=source_image,
                ),
                finding_type=to_pydicom_code(definition.property_type),
                finding_category=to_pydicom_code(definition.category),
                finding_sites=(
                    [hd.sr.FindingSite(to_pydicom_code(definition.anatomic_region))]
                    if definition.anatomic_region is not None
                    else None
                ),
                algorithm_id=algorithm,
                measurements=numbers or None,
                qualitative_evaluations=missing or None,
            )
            _append_to_group(group, texts)
            groups.append(group)
    return groups


def _site_groups(
    result: AnalysisResult,
    definitions: Mapping[Label, SegmentDefinition],
    algorithm: hd.sr.AlgorithmIdentification,
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One TID 1501 group per (region, site) of the site-specific values (AHA segments)."""
    keys = list(dict.fromkeys((m.region, m.site) for m in result.measurements if m.site))
    groups = []
    for label, site in keys:
        assert site is not None
        definition = definitions.get(label)
        name = definition.name if definition is not None else label.name.replace("_", " ").lower()
        numbers, missing, reasons = _split_measurements(
            m for m in result.measurements if m.region == label and m.site == site
        )
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=derived_uid(
                    result.series_instance_uid,
                    result.analysis,
                    result.provenance.algorithm_version,
                    "site",
                    label.name,
                    site.scheme,
                    site.value,
                ),
                identifier=f"{name}, {site.meaning}",
            ),
            finding_type=(
                to_pydicom_code(definition.property_type) if definition is not None else None
            ),
            finding_category=(
                to_pydicom_code(definition.category) if definition is not None else None
            ),
            finding_sites=[hd.sr.FindingSite(to_pydicom_code(site))],
            algorithm_id=algorithm,
            measurements=numbers or None,
            qualitative_evaluations=missing or None,
        )
        _append_to_group(group, [_text(codes.DCM.Comment, reason) for reason in reasons])
        groups.append(group)
    return groups


def build_roi_report(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
    predecessor: pydicom.Dataset | None = None,
) -> hd.SOPClass | None:
    """Build the TID 1500 report with one planar ROI group per analysed slice and region.

    Parameters
    ----------
    result, series, sources
        The result, the analysed series and its source datasets.
    settings
        Identity of the node (device observer, equipment).
    identity
        UIDs, number and description of the SR series.
    predecessor
        Header of the SR of an earlier analysis generation this one replaces
        (:func:`predecessor_documents`).

    Returns
    -------
    highdicom.SOPClass or None
        ``None`` when no slice has a region to outline.
    """
    segments = used_segments(result)
    algorithm = sr_algorithm_identification(result)
    groups = []
    for slice_result in result.slices:
        groups += _slice_groups(result, series, slice_result, segments, algorithm)
    if not groups:
        return None
    referenced = {series.frames[s.frame_index].sop_instance_uid for s in result.slices}
    evidence = [ds for ds in sources if str(ds.SOPInstanceUID) in referenced]
    # Flags of the series, or of frames without a group, go to the document level.
    analysed = {s.frame_index for s in result.slices}
    series_flags = [
        qc_text(flag, result)
        for flag in result.qc_flags
        if flag.frame_index is None or flag.frame_index not in analysed
    ]
    return _report_document(
        result,
        groups,
        series_flags,
        settings=settings,
        identity=identity,
        evidence=evidence,
        predecessor=predecessor,
    )


# --------------------------------------------------------------------------------------------
# Summary report
# --------------------------------------------------------------------------------------------


def build_summary_report(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
    segmentation: pydicom.Dataset | None,
    predecessor: pydicom.Dataset | None = None,
) -> hd.SOPClass:
    """Build the TID 1500 report of the series-level values, QC flags and method.

    Parameters
    ----------
    result, series, sources
        The result, the analysed series and its source datasets.
    settings
        Identity of the node.
    identity
        UIDs, number and description of the SR series.
    segmentation
        The SEG built for the same result; its segments are the regions of the volumetric
        groups.  Without it, each region's values form a TID 1501 group.
    predecessor
        Header of the SR of an earlier analysis generation this one replaces
        (:func:`predecessor_documents`).

    Returns
    -------
    highdicom.SOPClass
    """
    segments = used_segments(result) if segmentation is not None else {}
    algorithm = sr_algorithm_identification(result)
    definitions = {definition.label: definition for definition in result.segments}
    regions = list(dict.fromkeys(m.region for m in result.measurements if m.site is None))
    groups: list[
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ] = []
    # A group per measured region, and one for regions segmented but not measured.
    for label in regions + [label for label in segments if label not in regions]:
        definition = definitions.get(label)
        name = definition.name if definition is not None else label.name.replace("_", " ").lower()
        numbers, missing, reasons = _split_measurements(
            m for m in result.measurements if m.region == label and m.site is None
        )
        common = {
            "tracking_identifier": hd.sr.TrackingIdentifier(
                uid=(
                    segment_tracking_uid(result, label)
                    if label in segments
                    else derived_uid(
                        result.series_instance_uid,
                        result.analysis,
                        result.provenance.algorithm_version,
                        "region",
                        label.name,
                    )
                ),
                identifier=f"{name} (all slices)",
            ),
            "finding_type": (
                to_pydicom_code(definition.property_type) if definition is not None else None
            ),
            "finding_category": (
                to_pydicom_code(definition.category) if definition is not None else None
            ),
            "finding_sites": (
                [hd.sr.FindingSite(to_pydicom_code(definition.anatomic_region))]
                if definition is not None and definition.anatomic_region is not None
                else None
            ),
            "algorithm_id": algorithm,
            "measurements": numbers or None,
            "qualitative_evaluations": missing or None,
        }
        group: (
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
            | hd.sr.MeasurementsAndQualitativeEvaluations
        )
        if label in segments and segmentation is not None:
            group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                referenced_segment=hd.sr.ReferencedSegment.from_segmentation(
                    segmentation, segment_number=segments[label][0]
                ),
                **common,  # type: ignore[arg-type]
            )
        else:
            group = hd.sr.MeasurementsAndQualitativeEvaluations(**common)  # type: ignore[arg-type]
        _append_to_group(group, [_text(codes.DCM.Comment, reason) for reason in reasons])
        groups.append(group)
    groups.extend(_site_groups(result, definitions, algorithm))
    groups.extend(finding_groups(result, algorithm))
    if not groups:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=derived_uid(
                        result.series_instance_uid,
                        result.analysis,
                        result.provenance.algorithm_version,
                        "region",
                        "none",
                    ),
                    identifier="no series-level values",
                ),
                algorithm_id=algorithm,
            )
        )
    evidence = list(sources)
    if segmentation is not None:
        evidence.append(segmentation)
    return _report_document(
        result,
        groups,
        [*(qc_text(flag, result) for flag in result.qc_flags), *explanation_texts(result)],
        settings=settings,
        identity=identity,
        evidence=evidence,
        predecessor=predecessor,
    )


# --------------------------------------------------------------------------------------------
# Study-level findings and "why this number"
# --------------------------------------------------------------------------------------------


def finding_groups(
    result: AnalysisResult, algorithm: hd.sr.AlgorithmIdentification
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One TID 1501 group per coded finding of ``result`` (e.g. the infarct call).

    The group's qualitative evaluations are the finding (concept = value, e.g. "Myocardial
    infarction" = "Present") and its qualifiers (pattern, territory, certainty); its
    measurements the numbers it rests on; comments the summary and evidence sentences.
    """
    groups = []
    for finding in result.findings:
        numbers, missing, reasons = _split_measurements(finding.measurements)
        evaluations = [
            hd.sr.QualitativeEvaluation(to_pydicom_code(concept), to_pydicom_code(value))
            for concept, value in ((finding.concept, finding.value), *finding.qualifiers)
        ]
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=derived_uid(result.series_instance_uid, result.analysis,
                                result.provenance.algorithm_version, "finding", finding.key),
                identifier=f"{finding.key} finding",
            ),
            finding_type=to_pydicom_code(finding.concept),
            algorithm_id=algorithm,
            measurements=numbers or None,
            qualitative_evaluations=[*evaluations, *missing],
        )
        _append_to_group(group, [_text(codes.DCM.Comment, text) for text in
                                 (finding.summary, *finding.evidence, *reasons)])
        groups.append(group)
    return groups


def explanation_texts(result: AnalysisResult) -> list[hd.sr.TextContentItem]:
    """One TEXT item per model-based value: its largest contributions, largest first."""
    return [_text(CONTRIBUTIONS_CONCEPT, item.text()) for item in model_explanations(result)]
