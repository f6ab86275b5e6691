"""A Comprehensive SR document around a content tree the node has just built.

:func:`comprehensive_sr` returns the data set highdicom's :class:`highdicom.sr.ComprehensiveSR`
constructor returns for the same arguments (Comprehensive SR IOD, DICOM PS3.3 A.35.3:
Patient, General Study, SR Document Series, General Equipment, SR Document General, SR
Document Content and SOP Common modules), with the same checks, at a fraction of its cost.
highdicom's constructor (0.28) deep-copies the whole content tree, parses the copy into its
content-item classes again and walks the tree three more times (image and composite
references, then SCOORD3D items); on a 12-slice LGE report that was 0.7-0.9 s of the 1.5 s
spent writing outputs.  Here the content tree, already built and validated item by item by
highdicom's templates (:class:`highdicom.sr.MeasurementReport` and its groups), is *taken
over* by the document (the caller must not reuse it) and walked once.

The patient, study, series and equipment attributes are still set by highdicom's public base
class :class:`highdicom.SOPClass`; the SR-specific attributes follow highdicom's
``_SR.__init__`` of the pinned version.  ``tests/node/test_sr_document.py`` builds real
reports both ways and requires identical data sets (apart from the creation date and time),
so an upgrade of highdicom that changes what its constructor writes fails there.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence

import highdicom as hd
import pydicom
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian

__all__ = ["comprehensive_sr", "referenced_instances"]

_REFERENCE_VALUE_TYPES = frozenset({"IMAGE", "COMPOSITE"})
_UNSUPPORTED_VALUE_TYPES = frozenset({"SCOORD3D"})


def _items(content: pydicom.Dataset) -> Iterator[pydicom.Dataset]:
    """Every content item below ``content`` (depth first, ``content`` itself excluded)."""
    stack = list(reversed(content.get("ContentSequence", None) or []))
    while stack:
        item = stack.pop()
        yield item
        children = item.get("ContentSequence", None)
        if children:
            stack.extend(reversed(children))


def referenced_instances(content: pydicom.Dataset) -> set[str]:
    """SOP Instance UIDs referenced by the IMAGE and COMPOSITE items of a content tree.

    Raises
    ------
    ValueError
        When the tree holds a SCOORD3D item, which a Comprehensive SR cannot carry.
    """
    found: set[str] = set()
    for item in _items(content):
        value_type = item.get("ValueType", None)
        if value_type in _REFERENCE_VALUE_TYPES:
            found.add(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
        elif value_type in _UNSUPPORTED_VALUE_TYPES:
            raise ValueError(
                "Comprehensive SR does not support content items with SCOORD3D value type."
            )
    return found


def _reference_items(
    collection: dict[tuple[str, str], list[pydicom.Dataset]],
) -> list[pydicom.Dataset]:
    """Hierarchical SOP Instance Reference Macro items (study, then series) of a grouping."""
    studies: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for (study_uid, series_uid), instances in collection.items():
        series_item = pydicom.Dataset()
        series_item.SeriesInstanceUID = series_uid
        series_item.ReferencedSOPSequence = instances
        studies[study_uid].append(series_item)
    items = []
    for study_uid, series_items in studies.items():
        study_item = pydicom.Dataset()
        study_item.StudyInstanceUID = study_uid
        study_item.ReferencedSeriesSequence = series_items
        items.append(study_item)
    return items


def _instance_item(dataset: pydicom.Dataset) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = dataset.SOPClassUID
    item.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
    return item


def _evidence(
    evidence: Sequence[pydicom.Dataset], study_instance_uid: str, referenced: set[str]
) -> tuple[list[pydicom.Dataset], list[pydicom.Dataset]]:
    """Current Requested Procedure Evidence and Pertinent Other Evidence items."""
    seen: set[str] = set()
    same_study: dict[tuple[str, str], list[pydicom.Dataset]] = defaultdict(list)
    other_study: dict[tuple[str, str], list[pydicom.Dataset]] = defaultdict(list)
    for dataset in evidence:
        if dataset.SOPInstanceUID in seen:
            continue
        key = (dataset.StudyInstanceUID, dataset.SeriesInstanceUID)
        group = same_study if dataset.StudyInstanceUID == study_instance_uid else other_study
        group[key].append(_instance_item(dataset))
        seen.add(dataset.SOPInstanceUID)
    missing = referenced - seen
    if missing:
        listed = '", "'.join(sorted(missing))
        raise ValueError(
            "No evidence was provided for the following SOP instances, which are referenced "
            f'in the document content: "{listed}"'
        )
    return _reference_items(same_study), _reference_items(other_study)


def _predecessors(previous_versions: Sequence[pydicom.Dataset]) -> list[pydicom.Dataset]:
    group: dict[tuple[str, str], list[pydicom.Dataset]] = defaultdict(list)
    for previous in previous_versions:
        group[(previous.StudyInstanceUID, previous.SeriesInstanceUID)].append(
            _instance_item(previous)
        )
    return _reference_items(group)


def _contributing_equipment(source_image: pydicom.Dataset) -> list[hd.ContributingEquipment]:
    """The source image's acquisition equipment (when it names one), then highdicom."""
    equipment = []
    # highdicom's rule: acquisition equipment it cannot describe is left out.
    with contextlib.suppress(Exception):
        equipment.append(hd.ContributingEquipment.for_image_acquisition(source_image))
    equipment.append(hd.ContributingEquipment.for_highdicom())
    return equipment


def comprehensive_sr(
    *,
    evidence: Sequence[pydicom.Dataset],
    content: pydicom.Dataset,
    series_instance_uid: str,
    series_number: int,
    sop_instance_uid: str,
    instance_number: int,
    manufacturer: str,
    series_description: str | None = None,
    institution_name: str | None = None,
    manufacturer_model_name: str | None = None,
    software_versions: str | None = None,
    device_serial_number: str | None = None,
    previous_versions: Sequence[pydicom.Dataset] | None = None,
    coding_schemes: Sequence[hd.coding_schemes.CodingSchemeIdentificationItem] | None = None,
) -> hd.SOPClass:
    """A complete, unverified, preliminary Comprehensive SR document holding ``content``.

    Parameters
    ----------
    evidence
        The instances the content references (every referenced instance must be among
        them); the first gives the patient and study.
    content
        The root content item (e.g. ``highdicom.sr.MeasurementReport(...)[0]``).  Its
        attributes are moved into the document, not copied: do not use it afterwards.
    series_instance_uid, series_number, sop_instance_uid, instance_number
        Identity of the document.
    manufacturer, series_description, institution_name, manufacturer_model_name, \
software_versions, device_serial_number
        General Series and General Equipment attributes.
    previous_versions
        SR documents this one replaces (Predecessor Documents Sequence).
    coding_schemes
        Private coding schemes the content uses.

    Returns
    -------
    highdicom.SOPClass
        The document, as :class:`highdicom.sr.ComprehensiveSR` would build it.

    Raises
    ------
    ValueError
        When there is no evidence, the content references an instance not in ``evidence``,
        or holds a SCOORD3D item.
    """
    if not evidence:
        raise ValueError("No evidence was provided.")
    referenced = referenced_instances(content)
    first = evidence[0]
    document = hd.SOPClass(
        study_instance_uid=first.StudyInstanceUID,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=ComprehensiveSRStorage,
        instance_number=instance_number,
        manufacturer=manufacturer,
        modality="SR",
        transfer_syntax_uid=ExplicitVRLittleEndian,
        patient_id=first.PatientID,
        patient_name=first.PatientName,
        patient_birth_date=first.PatientBirthDate,
        patient_sex=first.PatientSex,
        accession_number=first.AccessionNumber,
        study_id=first.StudyID,
        study_date=first.StudyDate,
        study_time=first.StudyTime,
        referring_physician_name=getattr(first, "ReferringPhysicianName", None),
        specific_character_set=first.get("SpecificCharacterSet"),
        series_description=series_description,
        manufacturer_model_name=manufacturer_model_name,
        software_versions=software_versions,
        device_serial_number=device_serial_number,
        coding_schemes=coding_schemes,
    )
    if institution_name is not None:
        document.InstitutionName = institution_name
    document.CompletionFlag = "COMPLETE"
    document.VerificationFlag = "UNVERIFIED"
    document.PreliminaryFlag = "PRELIMINARY"
    for tag, element in content.items():
        document[tag] = element
    same_study, other_study = _evidence(evidence, str(document.StudyInstanceUID), referenced)
    if same_study:
        document.CurrentRequestedProcedureEvidenceSequence = same_study
    if other_study:
        document.PertinentOtherEvidenceSequence = other_study
    if previous_versions is not None:
        document.PredecessorDocumentsSequence = _predecessors(previous_versions)
    document.PerformedProcedureCodeSequence = []
    document.ReferencedPerformedProcedureStepSequence = []
    document.copy_patient_and_study_information(first)
    document.ContributingEquipmentSequence = _contributing_equipment(first)
    return document
