"""A stand-in for Orthanc's ``orthanc`` module: an in-memory store with the REST calls the node
uses, and a way to call the REST routes the plugin registers.

It holds real DICOM bytes and answers like Orthanc 1.10 does (JSON of ``/series/{id}`` and
``/instances/{id}``, ``/instances/{id}/file``, ``/instances/{id}/metadata/SopClassUid``,
``POST /instances`` with ``Status`` Success or AlreadyStored, ``OrthancException``
"Unknown resource" for a missing resource).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread


class FakeOrthancException(Exception):  # noqa: N818 (mirrors orthanc.OrthancException)
    """Raised by the REST calls, like ``orthanc.OrthancException``."""


class ChangeType:
    """The change types the node reacts to (values as in Orthanc's SDK)."""

    COMPLETED_SERIES = 0
    NEW_INSTANCE = 3
    NEW_SERIES = 5
    STABLE_SERIES = 8
    ORTHANC_STARTED = 10
    ORTHANC_STOPPED = 11


def orthanc_id(*uids: str) -> str:
    """An Orthanc-like resource ID (SHA-1 of the UIDs, in 5 groups of 8 hex digits)."""
    digest = hashlib.sha1("|".join(uids).encode()).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


@dataclass
class Output:
    """A fake ``RestOutput`` that records what a route answered."""

    status: int | None = None
    body: bytes = b""
    content_type: str | None = None
    allowed: str | None = None

    def AnswerBuffer(self, body: bytes | str, content_type: str) -> None:  # noqa: N802
        self.status = 200
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type

    def SendHttpStatusCode(self, status: int) -> None:  # noqa: N802
        self.status = status

    def SendMethodNotAllowed(self, allowed: str) -> None:  # noqa: N802
        self.status = 405
        self.allowed = allowed

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeOrthanc:
    """In-memory Orthanc with the module-level functions the node calls."""

    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    instance_series: dict[str, str] = field(default_factory=dict)
    series_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    series_study: dict[str, str] = field(default_factory=dict)
    routes: list[tuple[re.Pattern[str], Callable[..., None]]] = field(default_factory=list)
    explorer_js: str | None = None
    change_callbacks: list[Callable[[int, int, str], None]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[Exception] = field(default_factory=list)
    refuse_posts: bool = False
    logs: list[tuple[str, str]] = field(default_factory=list)

    OrthancException = FakeOrthancException
    ChangeType = ChangeType

    # ------------------------------------------------------------------ content

    def add(self, raw: bytes) -> tuple[str, str, str]:
        """Store DICOM bytes; returns (instance ID, series ID, status)."""
        ds = dcmread(io.BytesIO(raw), stop_before_pixels=True)
        patient = str(ds.get("PatientID", ""))
        study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        study_id = orthanc_id(patient, study_uid)
        series_id = orthanc_id(patient, study_uid, series_uid)
        instance_id = orthanc_id(patient, study_uid, series_uid, str(ds.SOPInstanceUID))
        status = "AlreadyStored" if instance_id in self.files else "Success"
        if status == "Success":
            self.files[instance_id] = raw
            self.instance_series[instance_id] = series_id
        if series_id not in self.series_tags:  # Orthanc keeps the first instance's
            self.series_tags[series_id] = {
                "SeriesInstanceUID": series_uid,
                "SeriesDescription": str(ds.get("SeriesDescription", "")),
                "Modality": str(ds.get("Modality", "")),
            }
            if ds.get("ImagesInAcquisition") not in (None, ""):
                self.series_tags[series_id]["ImagesInAcquisition"] = str(ds.ImagesInAcquisition)
        self.series_study[series_id] = study_id
        return instance_id, series_id, status

    def series_instances(self, series_id: str) -> list[str]:
        return [i for i, s in self.instance_series.items() if s == series_id]

    def _unknown(self) -> FakeOrthancException:
        return FakeOrthancException(17, "Unknown resource")

    # ------------------------------------------------------------------ the module's API

    def GetConfiguration(self) -> str:  # noqa: N802
        return json.dumps(self.config)

    def RestApiGet(self, uri: str) -> bytes:  # noqa: N802
        self.calls.append(("GET", uri))
        if self.fail_next:
            raise self.fail_next.pop(0)
        if m := re.fullmatch(r"/series/([^/]+)", uri):
            sid = m.group(1)
            if sid not in self.series_tags or not self.series_instances(sid):
                raise self._unknown()
            return json.dumps(
                {
                    "ID": sid,
                    "Instances": self.series_instances(sid),
                    "MainDicomTags": self.series_tags[sid],
                    "ParentStudy": self.series_study[sid],
                    "Type": "Series",
                }
            ).encode()
        if m := re.fullmatch(r"/instances/([^/]+)", uri):
            if m.group(1) not in self.files:
                raise self._unknown()
            ds = dcmread(io.BytesIO(self.files[m.group(1)]), stop_before_pixels=True)
            return json.dumps(
                {
                    "ID": m.group(1),
                    "MainDicomTags": {
                        "SOPInstanceUID": str(ds.SOPInstanceUID),
                        "InstanceNumber": str(ds.get("InstanceNumber", "")),
                    },
                    "ParentSeries": self.instance_series[m.group(1)],
                    "Type": "Instance",
                }
            ).encode()
        if m := re.fullmatch(r"/instances/([^/]+)/metadata/SopClassUid", uri):
            if m.group(1) not in self.files:
                raise self._unknown()
            ds = dcmread(io.BytesIO(self.files[m.group(1)]), stop_before_pixels=True)
            return str(ds.SOPClassUID).encode()
        if m := re.fullmatch(r"/instances/([^/]+)/file", uri):
            if m.group(1) not in self.files:
                raise self._unknown()
            return self.files[m.group(1)]
        if m := re.fullmatch(r"/studies/([^/]+)", uri):
            series = [s for s, st in self.series_study.items() if st == m.group(1)]
            if not series:
                raise self._unknown()
            return json.dumps({"ID": m.group(1), "Series": series, "Type": "Study"}).encode()
        raise self._unknown()

    def RestApiPost(self, uri: str, body: bytes | str) -> bytes:  # noqa: N802
        self.calls.append(("POST", uri))
        if uri == "/instances":
            if self.refuse_posts:
                raise FakeOrthancException(11, "Bad file format")
            raw = body.encode() if isinstance(body, str) else bytes(body)
            instance_id, series_id, status = self.add(raw)
            return json.dumps(
                {"ID": instance_id, "ParentSeries": series_id, "Status": status}
            ).encode()
        if uri == "/tools/lookup":
            uid = body.decode() if isinstance(body, bytes) else body
            found = [
                {"ID": sid, "Type": "Series"}
                for sid, tags in self.series_tags.items()
                if tags["SeriesInstanceUID"] == uid
            ]
            return json.dumps(found).encode()
        raise self._unknown()

    def RestApiDelete(self, uri: str) -> None:  # noqa: N802
        self.calls.append(("DELETE", uri))
        m = re.fullmatch(r"/instances/([^/]+)", uri)
        if not m or m.group(1) not in self.files:
            raise self._unknown()
        del self.files[m.group(1)]
        del self.instance_series[m.group(1)]

    def RegisterRestCallback(self, pattern: str, callback: Callable[..., None]) -> None:  # noqa: N802
        self.routes.append((re.compile(pattern), callback))

    def RegisterOnChangeCallback(self, callback: Callable[[int, int, str], None]) -> None:  # noqa: N802
        self.change_callbacks.append(callback)

    def ExtendOrthancExplorer(self, javascript: str) -> None:  # noqa: N802
        self.explorer_js = javascript

    def LogInfo(self, text: str) -> None:  # noqa: N802
        self.logs.append(("info", text))

    def LogWarning(self, text: str) -> None:  # noqa: N802
        self.logs.append(("warning", text))

    def LogError(self, text: str) -> None:  # noqa: N802
        self.logs.append(("error", text))

    # ------------------------------------------------------------------ test helpers

    def change(self, change_type: int, resource_id: str = "") -> None:
        for callback in self.change_callbacks:
            callback(change_type, 0, resource_id)

    def http(
        self,
        method: str,
        uri: str,
        body: bytes = b"",
        query: dict[str, str] | None = None,
    ) -> Output:
        """Call the REST route matching ``uri`` as Orthanc would (first full match wins)."""
        for pattern, callback in self.routes:
            m = pattern.fullmatch(uri)
            if m:
                output = Output()
                request: dict[str, Any] = {"method": method, "groups": m.groups(), "headers": {}}
                if method == "GET":
                    request["get"] = dict(query or {})
                else:
                    request["body"] = body
                callback(output, uri, **request)
                return output
        return Output(status=404)


OrthancException = FakeOrthancException
"""The exception type under the name the ``orthanc`` module gives it."""
