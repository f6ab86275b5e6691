"""DICOMweb: results sent by STOW-RS, and retrospective cohorts pulled by QIDO-RS / WADO-RS.

* A ``[[destination]]`` with ``kind = "dicomweb"`` and ``url`` (the service root, e.g.
  ``https://pacs.example.org/dicom-web``) receives every output by STOW-RS through the durable
  outbox, with the same retries as a C-STORE peer.  Credentials, if the server wants them, are
  ``username`` and the *name* of an environment variable holding the password
  (``password_env``), never the password itself in the configuration.
* ``cmr-node dicomweb URL --out OUT`` analyses studies of a DICOMweb archive: studies found by
  QIDO-RS (``--study`` UIDs, or ``--filter Key=Value`` search terms, MR studies by default) are
  retrieved series by series with WADO-RS into ``OUT/input/``, analysed exactly like
  ``cmr-node analyse`` (same routing, plugins, writers and ``results.json``), and with
  ``--stow`` the outputs are stored back into the archive.

The transport is :mod:`dicomweb_client`.  Series are retrieved in Explicit VR Little Endian
(``application/octet-stream`` bulk data), which every server can produce.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset, dcmread
from requests import RequestException, Session

from node.catalog.outbox import OutboxItem
from node.catalog.spool import safe_uid, write_atomic
from node.delivery.sender import DeliveryError
from node.settings import Destination

logger = logging.getLogger(__name__)

__all__ = [
    "DicomWebError",
    "StowDelivery",
    "make_client",
    "retrieve_study",
    "search_studies",
    "stow_files",
]

RETRIEVE_MEDIA_TYPES: Final = (("application/dicom", "1.2.840.10008.1.2.1"),)
"""Ask for Explicit VR Little Endian instances (Orthanc refuses some other negotiations)."""
DEFAULT_FILTERS: Final = {"ModalitiesInStudy": "MR"}
"""QIDO-RS search terms of a batch without --study or --filter."""


class DicomWebError(RuntimeError):
    """A DICOMweb request failed; the message names the request and the server's answer."""


def make_client(url: str, username: str | None = None, password: str | None = None
                ) -> DICOMwebClient:
    """A DICOMweb client for a service root, with HTTP basic authentication if given.

    The client's own retries are off (it would retry a refused connection for 30 s inside
    one call): the outbox retries with its backoff, and a batch reports the failure.
    """
    session = Session()
    if username:
        session.auth = (username, password or "")
    client = DICOMwebClient(url=url.rstrip("/"), session=session, timeout=(10, 120))
    client.set_http_retry_params(retry=False)
    return client


def _destination_client(destination: Destination) -> DICOMwebClient:
    if not destination.url:
        raise DeliveryError(f"destination {destination.name} has no url", None)
    password = os.environ.get(destination.password_env) if destination.password_env else None
    return make_client(destination.url, destination.username, password)


@dataclass
class StowDelivery:
    """Outbox handler of ``kind = "dicomweb"`` destinations: one STOW-RS request per object.

    A failed request raises :class:`~node.delivery.sender.DeliveryError` (the row is retried); a
    response listing the instance under FailedSOPSequence too.
    """

    clients: dict[str, DICOMwebClient] | None = None

    def __call__(self, destination: Destination, item: OutboxItem) -> str | None:
        """Store ``item`` at ``destination``; returns a warning text or None."""
        if self.clients is None:
            self.clients = {}
        client = self.clients.get(destination.name)
        if client is None:
            client = self.clients[destination.name] = _destination_client(destination)
        try:
            ds = dcmread(item.path)
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"output file unreadable: {exc}", None) from exc
        try:
            response = client.store_instances(datasets=[ds])
        except (RequestException, OSError, ValueError) as exc:
            raise DeliveryError(f"STOW-RS to {destination.url} failed: {exc}", None) from exc
        failed = getattr(response, "FailedSOPSequence", None) if response is not None else None
        if failed:
            reason = getattr(failed[0], "FailureReason", None)
            raise DeliveryError(f"STOW-RS refused {item.sop_instance_uid} (reason {reason})",
                                int(reason) if reason is not None else None)
        logger.info("stored %s %s at %s by STOW-RS", item.kind, item.sop_instance_uid,
                    destination.url)
        return None


def search_studies(client: DICOMwebClient, filters: Mapping[str, str] | None = None,
                   limit: int | None = None) -> list[str]:
    """StudyInstanceUIDs found by QIDO-RS (MR studies if no filter is given)."""
    try:
        found = client.search_for_studies(search_filters=dict(filters or DEFAULT_FILTERS),
                                          limit=limit)
    except (RequestException, OSError, ValueError) as exc:
        raise DicomWebError(f"QIDO-RS study search failed: {exc}") from exc
    uids = []
    for item in found:
        value = Dataset.from_json(item).get("StudyInstanceUID")
        if value:
            uids.append(str(value))
    return uids


def retrieve_study(client: DICOMwebClient, study_uid: str, folder: Path) -> list[Path]:
    """Every instance of a study, series by series (WADO-RS), written under ``folder``."""
    try:
        series = client.search_for_series(study_uid)
    except (RequestException, OSError, ValueError) as exc:
        raise DicomWebError(f"QIDO-RS series search of study {study_uid} failed: {exc}") from exc
    written: list[Path] = []
    for item in series:
        series_uid = str(Dataset.from_json(item).get("SeriesInstanceUID", ""))
        if not series_uid:
            continue
        try:
            datasets = client.retrieve_series(study_uid, series_uid,
                                              media_types=RETRIEVE_MEDIA_TYPES)
        except (RequestException, OSError, ValueError) as exc:
            raise DicomWebError(
                f"WADO-RS retrieval of series {series_uid} failed: {exc}"
            ) from exc
        target = folder / safe_uid(study_uid) / safe_uid(series_uid)
        for ds in datasets:
            path = target / f"{safe_uid(str(ds.SOPInstanceUID))}.dcm"
            buffer = _encode(ds)
            write_atomic(path, buffer)
            written.append(path)
        logger.info("retrieved %d instance(s) of series %s", len(datasets), series_uid)
    return written


def _encode(ds: Dataset) -> bytes:
    from pydicom.filebase import DicomBytesIO

    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def stow_files(client: DICOMwebClient, paths: Iterable[Path]) -> list[str]:
    """Store files by STOW-RS; returns their SOP Instance UIDs."""
    stored: list[str] = []
    for path in paths:
        ds = dcmread(path)
        try:
            response = client.store_instances(datasets=[ds])
        except (RequestException, OSError, ValueError) as exc:
            raise DicomWebError(f"STOW-RS of {path.name} failed: {exc}") from exc
        if response is not None and getattr(response, "FailedSOPSequence", None):
            raise DicomWebError(f"STOW-RS refused {path.name}")
        stored.append(str(ds.SOPInstanceUID))
    return stored


def parse_filters(items: Sequence[str]) -> dict[str, str]:
    """``Key=Value`` command-line search terms as a mapping."""
    filters: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DicomWebError(f"search filter {item!r} is not Key=Value")
        filters[key.strip()] = value.strip()
    return filters


def output_files(results: Mapping[str, Any], out: Path) -> list[Path]:
    """The output files that ``results.json`` lists for the analysed series."""
    files: list[Path] = []
    for entry in results.get("series", []):
        if entry.get("status") != "analysed":
            continue
        for item in (entry.get("outputs") or {}).values():
            name = item.get("file") if isinstance(item, Mapping) else None
            if name:
                files.append(out / name)
    return files
