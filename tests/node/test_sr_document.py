"""The node's Comprehensive SR assembly writes what highdicom's constructor writes.

:func:`node.outputs.writers.sr_document.comprehensive_sr` replaces
:class:`highdicom.sr.ComprehensiveSR` in the SR writers (it skips the constructor's deep copy
and repeated walks of the content).  These tests build the planar-ROI and summary reports of
real T1-map and LGE analyses (phantom series, the node's pipeline) once with each and require
identical data sets, apart from the dates and times taken from the clock; a highdicom upgrade
that changes what its constructor writes fails here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from node.analyses import descriptor, with_networks
from node.inputs.loader import load_series_files
from node.jobs.pipeline import writer_settings
from node.outputs.writers import Lineage, OutputKind
from node.outputs.writers import sr as sr_writer
from node.outputs.writers.sr_document import comprehensive_sr, referenced_instances
from plugins import get_plugin

CLOCK_KEYWORDS = frozenset({"ContentDate", "ContentTime", "InstanceCreationDate",
                            "InstanceCreationTime", "SeriesDate", "SeriesTime",
                            "ContributionDateTime"})
"""Set from the clock when a document is built (at any depth); everything else must match."""


def highdicom_document(**kwargs: Any) -> hd.sr.ComprehensiveSR:
    """The reference: highdicom's own constructor with the flags the node's documents carry."""
    return hd.sr.ComprehensiveSR(is_complete=True, is_final=False, is_verified=False, **kwargs)


def _differences(ours: Dataset, reference: Dataset, path: str = "") -> Iterator[str]:
    """Paths of the elements that differ (recursing into sequences)."""
    for tag in sorted(set(ours.keys()) | set(reference.keys())):
        keyword = pydicom.datadict.keyword_for_tag(tag)
        if keyword in CLOCK_KEYWORDS:
            continue
        name = f"{path}/{keyword or tag}"
        if tag not in ours or tag not in reference:
            yield f"{name} only in {'reference' if tag not in ours else 'ours'}"
            continue
        a, b = ours[tag], reference[tag]
        if a.VR == "SQ" and b.VR == "SQ":
            if len(a.value) != len(b.value):
                yield f"{name} has {len(a.value)} items, reference {len(b.value)}"
                continue
            for k, (x, y) in enumerate(zip(a.value, b.value, strict=True)):
                yield from _differences(x, y, f"{name}[{k}]")
        elif a.VR != b.VR or a.value != b.value:
            yield f"{name}: {a.value!r} != {b.value!r}"


def _reports(
    analysis: str, paths: list[Path], build: Callable[..., Dataset],
    monkeypatch: pytest.MonkeyPatch, lineage: Lineage,
) -> Mapping[str, Dataset]:
    monkeypatch.setattr(sr_writer, "comprehensive_sr", build)
    series, sources = load_series_files(paths, analysis)
    result = get_plugin(analysis).analyse(series, with_networks(analysis, {}))
    _, outputs = descriptor(analysis).build_outputs(
        result, series, sources, writer_settings("cmr-node", "Test Hospital"), lineage
    )
    return {o.kind: o.dataset for o in outputs
            if o.kind in (OutputKind.SR.value, OutputKind.SR_SUMMARY.value)}


def _predecessor(study_uid: str) -> Dataset:
    previous = Dataset()
    previous.SOPClassUID = pydicom.uid.ComprehensiveSRStorage
    previous.SOPInstanceUID = pydicom.uid.generate_uid()
    previous.SeriesInstanceUID = pydicom.uid.generate_uid()
    previous.StudyInstanceUID = study_uid
    return previous


@pytest.mark.parametrize("analysis", ["t1map", "lge"])
def test_documents_equal_highdicoms(
    analysis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.latency import Completeness, write_lge_study, write_t1map_study

    paths = (write_t1map_study(11, tmp_path, Completeness.KNOWN) if analysis == "t1map"
             else write_lge_study(11, tmp_path, n_slices=4))
    study_uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    lineage = Lineage(generation=1, predecessors={
        OutputKind.SR.value: _predecessor(study_uid),
        OutputKind.SR_SUMMARY.value: _predecessor(study_uid),
    })
    ours = _reports(analysis, paths, comprehensive_sr, monkeypatch, lineage)
    reference = _reports(analysis, paths, highdicom_document, monkeypatch, lineage)
    assert set(ours) == {OutputKind.SR.value, OutputKind.SR_SUMMARY.value}
    assert set(ours) == set(reference)
    for kind, document in ours.items():
        assert "PredecessorDocumentsSequence" in document
        assert "CurrentRequestedProcedureEvidenceSequence" in document
        differences = list(_differences(document, reference[kind]))
        assert differences == [], f"{analysis} {kind}: {differences[:10]}"
        assert type(document).__name__ != "ComprehensiveSR"  # the reference was not used twice


def _content(referenced_uid: str | None = None, scoord3d: bool = False) -> Dataset:
    """A small report root: a container holding an image reference (and a SCOORD3D)."""
    root = hd.sr.ContainerContentItem(name=codes.cid7021.ImagingMeasurementReport,
                                      template_id="1500")
    items: list[Dataset] = []
    if referenced_uid is not None:
        items.append(hd.sr.ImageContentItem(
            name=hd.sr.CodedConcept("121112", "DCM", "Source of Measurement"),
            referenced_sop_class_uid=pydicom.uid.MRImageStorage,
            referenced_sop_instance_uid=referenced_uid,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ))
    if scoord3d:
        items.append(hd.sr.Scoord3DContentItem(
            name=codes.DCM.ImageRegion,
            graphic_type=hd.sr.GraphicTypeValues3D.POINT,
            graphic_data=np.array([[1.0, 2.0, 3.0]]),
            frame_of_reference_uid=pydicom.uid.generate_uid(),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ))
    root.ContentSequence = pydicom.Sequence(items)
    return root


def _image(study_uid: str) -> Dataset:
    image = Dataset()
    for keyword, value in (("PatientID", "P1"), ("PatientName", "Test^Patient"),
                           ("PatientBirthDate", ""), ("PatientSex", "O"),
                           ("AccessionNumber", ""), ("StudyID", "1"), ("StudyDate", "20261207"),
                           ("StudyTime", "120000"), ("StudyInstanceUID", study_uid),
                           ("SeriesInstanceUID", pydicom.uid.generate_uid()),
                           ("SOPInstanceUID", pydicom.uid.generate_uid()),
                           ("SOPClassUID", pydicom.uid.MRImageStorage), ("Modality", "MR")):
        setattr(image, keyword, value)
    return image


def _identity() -> dict[str, Any]:
    return {"series_instance_uid": pydicom.uid.generate_uid(), "series_number": 1,
            "sop_instance_uid": pydicom.uid.generate_uid(), "instance_number": 1,
            "manufacturer": "cmr-node"}


def test_reference_outside_the_evidence_is_refused() -> None:
    image = _image(pydicom.uid.generate_uid())
    content = _content(referenced_uid=pydicom.uid.generate_uid())
    with pytest.raises(ValueError, match="No evidence was provided"):
        comprehensive_sr(evidence=[image], content=content, **_identity())
    with pytest.raises(ValueError, match="No evidence was provided"):
        highdicom_document(evidence=[image], content=_content(pydicom.uid.generate_uid()),
                           **_identity())


def test_scoord3d_and_missing_evidence_are_refused() -> None:
    image = _image(pydicom.uid.generate_uid())
    with pytest.raises(ValueError, match="SCOORD3D"):
        comprehensive_sr(evidence=[image],
                         content=_content(str(image.SOPInstanceUID), scoord3d=True),
                         **_identity())
    with pytest.raises(ValueError, match="No evidence"):
        comprehensive_sr(evidence=[], content=_content(), **_identity())


def test_evidence_of_another_study_is_pertinent_other_evidence() -> None:
    image = _image(pydicom.uid.generate_uid())
    other = _image(pydicom.uid.generate_uid())
    content = _content(str(image.SOPInstanceUID))
    assert referenced_instances(content) == {str(image.SOPInstanceUID)}
    document = comprehensive_sr(evidence=[image, other, image], content=content, **_identity())
    current = document.CurrentRequestedProcedureEvidenceSequence
    assert [s.StudyInstanceUID for s in current] == [image.StudyInstanceUID]
    assert len(current[0].ReferencedSeriesSequence[0].ReferencedSOPSequence) == 1
    assert [s.StudyInstanceUID for s in document.PertinentOtherEvidenceSequence] == [
        other.StudyInstanceUID]
    reference = highdicom_document(evidence=[image, other, image],
                                   content=_content(str(image.SOPInstanceUID)), **_identity())
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        assert [s.StudyInstanceUID for s in document[keyword].value] == [
            s.StudyInstanceUID for s in reference[keyword].value]
