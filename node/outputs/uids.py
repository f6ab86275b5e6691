"""Deterministic identifiers for the objects the node derives from an input series.

Every UID the node writes for a result depends only on the input series, the analysis
(name and version), what the object is, the input content (the SOP Instance UIDs analysed)
and the analysis *generation* (the catalog's count of analyses of that series: a late
instance or a re-analysis raises it).  Running one generation again (a restart between
analysis and delivery) therefore rebuilds the very same objects, while a re-analysis gets new
SeriesInstanceUIDs and SOPInstanceUIDs:

* A changed object is a new SOP Instance (SOP Instance UID: PS3.3 C.12.1.1.1 and PS3.4; for
  SR, "the rules for modification of document content in PS3.4" cited in PS3.3 C.17.2.2), and
  archives keep the first copy of a UID they already hold: Orthanc's ``OverwriteInstances``
  is false by default, "the new instance is discarded and the old one is kept" (Orthanc
  configuration reference, option added in 1.4.2).  Re-sending a changed object under the
  old UID would leave the stale one in place.
* Each generation is its own output series: a Series of SR Documents may hold any number of
  documents (PS3.3 C.17.1), but a summary image or SEG added to the earlier series would make
  viewers stack the old and the new object in one display set.  The SeriesDescription of a
  re-analysis says which generation it is; the re-analysis SR names the SR it replaces in its
  Predecessor Documents Sequence (0040,A360) (:mod:`node.jobs.lineage`).

The UIDs are name-based UUIDs (RFC 4122 version 5) under the ``2.25`` root (ISO/IEC 9834-8,
DICOM PS3.5 B.2), so they are valid, at most 44 characters long, and do not need an
organisational root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.uid import UID

logger = logging.getLogger(__name__)

UUID_ROOT = "2.25."
"""UID root for UIDs derived from a UUID (DICOM PS3.5 B.2)."""

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "cmr-node derived objects")
"""Namespace of the name-based UUIDs of this project; changing it changes every derived UID."""


def uid_from_parts(*parts: object) -> UID:
    """Return a UID that depends only on ``parts``.

    Parameters
    ----------
    *parts
        Values identifying the object; converted with ``str``. Their order matters and
        ``("ab", "c")`` gives a different UID from ``("a", "bc")``.

    Returns
    -------
    pydicom.uid.UID
        ``2.25.<decimal UUID>``, a valid DICOM UID.

    Raises
    ------
    ValueError
        If no part is given.
    """
    if not parts:
        raise ValueError("A derived UID needs at least one part to derive from.")
    name = json.dumps([str(part) for part in parts], ensure_ascii=False)
    return UID(f"{UUID_ROOT}{uuid.uuid5(NAMESPACE, name).int}")


def derived_uid(input_series_uid: str, analysis: str, version: str, *parts: object) -> UID:
    """Return the UID of something derived by ``analysis`` ``version`` from a series.

    Parameters
    ----------
    input_series_uid
        SeriesInstanceUID of the analysed (input) series.
    analysis
        Analysis name, e.g. ``"t1map"``.
    version
        Analysis version, e.g. ``"0.1.0"``.
    *parts
        What the UID identifies, e.g. ``("series", "seg")`` or ``("instance", "seg")``.

    Returns
    -------
    pydicom.uid.UID
        The same UID for the same arguments, on any machine and in any run.

    Raises
    ------
    ValueError
        If ``input_series_uid`` or ``analysis`` is empty.
    """
    if not input_series_uid or not analysis:
        raise ValueError(
            "A derived UID needs the input SeriesInstanceUID and the analysis name; "
            f"got series {input_series_uid!r} and analysis {analysis!r}."
        )
    return uid_from_parts("derived", input_series_uid, analysis, version, *parts)


def content_digest(sop_instance_uids: Iterable[str]) -> str:
    """Return a short digest of the set of instances an analysis read.

    Parameters
    ----------
    sop_instance_uids
        SOP Instance UIDs of the analysed instances; order and repetitions do not matter.

    Returns
    -------
    str
        16 hexadecimal digits (64 bits of SHA-256): the same for the same set of instances.
    """
    joined = "\\".join(sorted({str(uid) for uid in sop_instance_uids}))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def generation_suffix(generation: int) -> str:
    """Return what a re-analysis adds to a SeriesDescription (nothing for generation 0)."""
    return f" (rev {generation})" if generation > 0 else ""


@dataclass(frozen=True)
class DerivedObjectIdentity:
    """Series and instance identification of one derived object.

    Attributes
    ----------
    series_instance_uid, sop_instance_uid
        Deterministic UIDs of the output series and of its only instance.
    series_number
        SeriesNumber of the output series.
    series_description
        SeriesDescription of the output series (at most 64 characters).
    instance_number
        InstanceNumber of the object in its series.
    """

    series_instance_uid: UID
    sop_instance_uid: UID
    series_number: int
    series_description: str
    instance_number: int = 1


def derived_object_identity(
    input_series_uid: str,
    analysis: str,
    version: str,
    kind: str,
    *,
    series_number: int,
    series_description: str,
    content: str = "",
    generation: int = 0,
) -> DerivedObjectIdentity:
    """Return the identification of the ``kind`` object derived from a series.

    Parameters
    ----------
    input_series_uid, analysis, version
        As for :func:`derived_uid`.
    kind
        The kind of output object (``"seg"``, ``"sr"``, ...); each kind is its own series.
    series_number
        SeriesNumber to give the output series.
    series_description
        SeriesDescription to give the output series; the generation suffix
        (:func:`generation_suffix`) is kept when it is cut to 64 characters.
    content
        Digest of the analysed instances (:func:`content_digest`).
    generation
        The analysis generation of the input series (0 for the first analysis).

    Returns
    -------
    DerivedObjectIdentity
        UIDs that depend only on (series, analysis, version, kind, content, generation).

    Raises
    ------
    ValueError
        If ``generation`` is negative.
    """
    if generation < 0:
        raise ValueError(f"An analysis generation is 0 or more, not {generation}.")
    lineage = ("content", content, "generation", generation)
    suffix = generation_suffix(generation)
    return DerivedObjectIdentity(
        series_instance_uid=derived_uid(
            input_series_uid, analysis, version, "series", kind, *lineage
        ),
        sop_instance_uid=derived_uid(
            input_series_uid, analysis, version, "instance", kind, *lineage
        ),
        series_number=series_number,
        series_description=series_description[: 64 - len(suffix)] + suffix,
    )
