"""Deterministic identifiers for the objects the node derives from an input series.

Every UID the node writes for a result depends only on the input series, the analysis
(name and version) and what the object is.  Re-running the same analysis version on the same
series therefore produces objects with the same SeriesInstanceUID and SOPInstanceUID, and a
PACS replaces the earlier copies instead of storing duplicates.

The UIDs are name-based UUIDs (RFC 4122 version 5) under the ``2.25`` root (ISO/IEC 9834-8,
DICOM PS3.5 B.2), so they are valid, at most 44 characters long, and do not need an
organisational root.
"""

from __future__ import annotations

import json
import logging
import uuid
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
        SeriesDescription to give the output series; cut to 64 characters.

    Returns
    -------
    DerivedObjectIdentity
        UIDs that depend only on (series, analysis, version, kind).
    """
    return DerivedObjectIdentity(
        series_instance_uid=derived_uid(input_series_uid, analysis, version, "series", kind),
        sop_instance_uid=derived_uid(input_series_uid, analysis, version, "instance", kind),
        series_number=series_number,
        series_description=series_description[:64],
    )
