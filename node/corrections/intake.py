"""Reader corrections arriving at the listener: recognise, match, measure, record.

A completed series that is a DICOM Segmentation, is not one of the node's outputs (its SOP
Instance UID is not in the outbox) and references a series the node segmented is taken as a
reader's correction of the node's newest SEG of that series.  The two SEGs are compared per
source image, found through each frame's Derivation Image Sequence > Source Image Sequence
(PS3.3 C.8.20.2; highdicom, OHIF's dcmjs and 3D Slicer's dcmqi write it), and per segment,
the reader's segments being matched to the node's by Segmented Property Type, then Anatomic
Region, then Segment Label.  The agreement (:mod:`node.corrections.agreement`) is recorded in the
catalog with the station name and calling AE title of the source images (the scanner) and
the calling AE title of the correction (the viewer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.errors import InvalidDicomError

from node.catalog.catalog import Catalog
from node.corrections.agreement import (
    MYOCARDIUM_ROLE,
    SCAR_ROLE,
    Agreement,
    CorrectionError,
    SegmentMasks,
    agreement,
)
from node.inputs.loader import load_series_files
from plugins.api import AnalysisError
from plugins.lib.codes import MYOCARDIUM, SCAR_TISSUE

logger = logging.getLogger(__name__)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
T1_ANALYSES = frozenset({"t1map"})
"""Analyses whose stored source images are T1 maps (ms): ΔT1 is measured on them.  (A MOLLI
fit's SEG references the node's own Parametric Maps, not a received series: a correction of
it is not matched yet.)"""
ROLE_CODES = {MYOCARDIUM_ROLE: (MYOCARDIUM.scheme, MYOCARDIUM.value),
              SCAR_ROLE: (SCAR_TISSUE.scheme, SCAR_TISSUE.value)}


@dataclass(frozen=True)
class Segment:
    """How one segment of a SEG is identified."""

    number: int
    label: str
    property_type: tuple[str, str]
    region: tuple[str, str] | None


def _code(item: Any) -> tuple[str, str]:
    return (str(item.CodingSchemeDesignator), str(item.CodeValue))


def segments(ds: pydicom.Dataset) -> dict[int, Segment]:
    """The segments of a SEG by number."""
    found = {}
    for item in ds.SegmentSequence:
        region = None
        if item.get("AnatomicRegionSequence"):
            region = _code(item.AnatomicRegionSequence[0])
        number = int(item.SegmentNumber)
        found[number] = Segment(number, str(item.get("SegmentLabel", "") or ""),
                                _code(item.SegmentedPropertyTypeCodeSequence[0]), region)
    return found


def source_key(sop_instance_uid: str, frame_number: int | None) -> str:
    """Key of one source image: SOP Instance UID and 1-based frame number."""
    return f"{sop_instance_uid}#{frame_number or 1}"


def segment_masks(ds: pydicom.Dataset) -> dict[int, SegmentMasks]:
    """The masks of a SEG by segment number and source image (:func:`source_key`).

    Raises
    ------
    CorrectionError
        If a frame names no source image or segment (the SEG cannot be placed).
    """
    pixels = np.asarray(ds.pixel_array)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = pixels.reshape(frames, int(ds.Rows), int(ds.Columns))
    if str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        maximum = float(ds.get("MaximumFractionalValue", 255) or 255)
        binary = pixels.astype(float) / maximum >= 0.5
    else:
        binary = pixels.astype(bool)
    masks: dict[int, SegmentMasks] = {}
    for index, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        try:
            number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            source = group.DerivationImageSequence[0].SourceImageSequence[0]
        except (AttributeError, IndexError) as exc:
            raise CorrectionError(
                f"SEG {ds.SOPInstanceUID} frame {index + 1} names no source image or segment"
            ) from exc
        frame = source.get("ReferencedFrameNumber")
        key = source_key(str(source.ReferencedSOPInstanceUID), int(frame) if frame else None)
        per_image = masks.setdefault(number, {})
        per_image[key] = per_image[key] | binary[index] if key in per_image else binary[index]
    return masks


def match_segments(node: Mapping[int, Segment], reader: Mapping[int, Segment]) -> dict[int, int]:
    """Reader segment number for each node segment number it corrects.

    A reader segment matches the node segment of the same property type; among several, the
    one of the same anatomic region, then of the same label (case-insensitive); without one
    of that property type, the one of the same label.
    """
    matched: dict[int, int] = {}
    for number, ours in node.items():
        candidates = [s for s in reader.values() if s.property_type == ours.property_type]
        if len(candidates) > 1:
            same_region = [s for s in candidates if s.region == ours.region]
            candidates = same_region or candidates
        if len(candidates) > 1 or not candidates:
            pool = candidates or list(reader.values())
            candidates = [s for s in pool if s.label.lower() == ours.label.lower()]
        if len(candidates) == 1:
            matched[number] = candidates[0].number
    return matched


def referenced_series(ds: pydicom.Dataset) -> list[str]:
    """Series a SEG references (Common Instance Reference module)."""
    return [str(item.SeriesInstanceUID) for item in ds.get("ReferencedSeriesSequence", [])]


def _first_header(paths: Sequence[Path]) -> pydicom.Dataset | None:
    for path in paths[:1]:
        try:
            return pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, InvalidDicomError) as exc:
            logger.warning("cannot read header of %s: %s", path, exc)
    return None


def _calling_ae(catalog: Catalog, series_uid: str) -> str:
    rows = catalog.query(
        "SELECT calling_aet FROM instances WHERE series_instance_uid=?"
        " ORDER BY received_at DESC LIMIT 1", (series_uid,))
    return str(rows[0]["calling_aet"] or "") if rows else ""


def _t1_maps(catalog: Catalog, series_uid: str, analysis: str
             ) -> dict[str, npt.NDArray[np.floating[Any]]]:
    series, _ = load_series_files(catalog.instance_paths(series_uid), analysis)
    return {source_key(f.sop_instance_uid, f.frame_number): np.asarray(f.pixels, dtype=float)
            for f in series.frames}


def compare(node_seg: pydicom.Dataset, reader_seg: pydicom.Dataset,
            t1_maps: Mapping[str, npt.NDArray[np.floating[Any]]] | None = None) -> Agreement:
    """The agreement of a reader's SEG with the node's SEG of the same images.

    Raises
    ------
    CorrectionError
        If no reader segment corresponds to a node segment, or the SEGs cannot be placed.
    """
    ours, theirs = segments(node_seg), segments(reader_seg)
    matched = match_segments(ours, theirs)
    if not matched:
        raise CorrectionError(
            f"no segment of SEG {reader_seg.SOPInstanceUID} corresponds to the node's segments "
            f"({', '.join(s.label for s in ours.values())})")
    node_masks, reader_masks = segment_masks(node_seg), segment_masks(reader_seg)
    by_label = {ours[n].label: node_masks.get(n, {}) for n in matched}
    corrected = {ours[n].label: reader_masks.get(r, {}) for n, r in matched.items()}
    roles = {role: ours[n].label for n in matched for role, code in ROLE_CODES.items()
             if ours[n].property_type == code}
    return agreement(by_label, corrected, roles, t1_maps)


@dataclass(frozen=True)
class CorrectionOutcome:
    """What became of a reader's SEG series.

    Attributes
    ----------
    recorded
        Agreement records written (one per SEG instance matched and measured for the first
        time).
    matched
        Whether at least one SEG instance was matched to a node result and measured.
    reason
        For the status views: which result it corrects and how well it agrees, or why it was
        not matched.
    """

    recorded: int
    matched: bool
    reason: str


def take_correction(catalog: Catalog, series_uid: str, generation: int
                    ) -> CorrectionOutcome | None:
    """Take a completed series as a reader's correction if it is one, instead of routing it.

    A series of DICOM Segmentations that are not the node's own outputs is a reader's SEG:
    each instance is matched to the node's newest SEG of the series it references and the
    agreement recorded (:func:`record_correction_series`); the series is marked
    ``correction`` in the catalog with the outcome, matched or not and why
    (:meth:`node.catalog.catalog.Catalog.mark_correction`), so that the status views show it as a
    correction and not as a series no analysis wanted.

    Returns
    -------
    CorrectionOutcome or None
        None when the series is not a reader's SEG (route it as usual).
    """
    outcome = record_correction_series(catalog, series_uid)
    if outcome is None:
        return None
    catalog.mark_correction(series_uid, generation, outcome.reason, matched=outcome.matched)
    logger.info("series %s is a reader's SEG: %s", series_uid, outcome.reason)
    return outcome


def record_correction_series(catalog: Catalog, series_uid: str) -> CorrectionOutcome | None:
    """Record the agreement of a completed series if it is a reader's correction.

    Parameters
    ----------
    catalog
        The node's catalog (instances, outbox, jobs; the correction is recorded there).
    series_uid
        A completed series.

    Returns
    -------
    CorrectionOutcome or None
        The corrections recorded (one per SEG instance) and the reason shown; None when the
        series is no reader's SEG (not a SEG, or only the node's own).  A correction that
        cannot be measured is recorded as a ``correction_failed`` event.
    """
    paths = catalog.instance_paths(series_uid)
    header = _first_header(paths)
    if header is None or str(header.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        return None
    recorded, readers = 0, 0
    matched: list[str] = []
    unmatched: list[str] = []
    for path in paths:
        try:
            reader_seg = pydicom.dcmread(path)
        except (OSError, InvalidDicomError) as exc:
            logger.warning("correction %s unreadable: %s", path, exc)
            unmatched.append(f"{path.name} unreadable")
            continue
        sop_uid = str(reader_seg.SOPInstanceUID)
        if catalog.own_output(sop_uid):
            continue
        readers += 1
        referenced = referenced_series(reader_seg)
        found = next((f for f in map(catalog.latest_segmentation, referenced)
                      if f is not None), None)
        if found is None:
            unmatched.append(
                f"SEG {sop_uid} references no series the node segmented"
                f" ({', '.join(referenced) or 'no referenced series'})")
            continue
        source = str(referenced[0])
        try:
            node_seg = pydicom.dcmread(found["path"])
            source = str(catalog.query("SELECT series_instance_uid FROM jobs WHERE id=?",
                                       (found["job_id"],))[0]["series_instance_uid"])
            maps = (_t1_maps(catalog, source, str(found["analysis"]))
                    if found["analysis"] in T1_ANALYSES else None)
            figures = compare(node_seg, reader_seg, maps)
        except (CorrectionError, AnalysisError, OSError, InvalidDicomError, ValueError) as exc:
            logger.warning("correction %s not measured: %s", sop_uid, exc)
            catalog.record_event("correction_failed", series_uid,
                                 f"correction {sop_uid} of series {source} not measured: {exc}")
            unmatched.append(f"SEG {sop_uid} of job {found['job_id']} not measured: {exc}")
            continue
        source_header = _first_header(catalog.instance_paths(source))
        station = str(source_header.get("StationName", "") or "") if source_header else ""
        creator = str(reader_seg.get("ContentCreatorName", "") or
                      reader_seg.get("Manufacturer", "") or "")
        stored = catalog.record_correction({
            "sop_instance_uid": sop_uid, "series_instance_uid": series_uid,
            "path": str(path), "job_id": int(found["job_id"]), "source_series_uid": source,
            "analysis": str(found["analysis"]), "station": station,
            "calling_ae": _calling_ae(catalog, source),
            "reader_ae": _calling_ae(catalog, series_uid), "creator": creator,
            "received_at": time.time(), "agreement": figures.as_json(),
        })
        text = ", ".join(f"{k} Dice {v:.3f}" for k, v in figures.dice.items())
        matched.append(f"job {found['job_id']} ({found['analysis']}): {text}")
        if stored:
            recorded += 1
            logger.info("correction %s of job %s: %s", sop_uid, found["job_id"], text)
            catalog.record_event("correction", source,
                                 f"reader SEG {sop_uid} on job {found['job_id']}: {text}")
    if readers == 0 and not unmatched:
        return None
    parts = []
    if matched:
        parts.append("matched to " + "; ".join(matched))
    if unmatched:
        parts.append("unmatched: " + "; ".join(unmatched))
    return CorrectionOutcome(recorded, bool(matched), "reader correction, " + "; ".join(parts))
