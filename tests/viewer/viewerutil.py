"""Helpers of the real-viewer test: tools, a DICOMweb Orthanc, the browser driver, and
reading back what the SEG and SR hold and what a screenshot shows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from scipy import ndimage
from skimage.color import lab2rgb

from tests.netutil import REPO, free_port, wait_for

SKIP_ENV = "CMR_NODE_SKIP_VIEWER"
"""Set to 1 to skip the real-viewer tests where their tools are not installed."""
VIEWER_DIR_ENV = "CMR_NODE_VIEWER_DIR"
CHROMIUM_ENV = "CMR_NODE_CHROMIUM"

DEFAULT_VIEWER_DIR = REPO / "build" / "viewer"
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DRIVER_SCRIPT = Path(__file__).with_name("drive_ohif.cjs")
SETUP_HINT = (
    "run deploy/viewer/setup.sh (as root) to install Chromium, node, OHIF and playwright-core"
)

ORTHANC_STOP_TIMEOUT_S = 15.0
"""Orthanc takes about 3.5 s to stop after SIGTERM."""

SEG_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
TRACKING_UNIQUE_IDENTIFIER = "112040"
MEASUREMENT_GROUP = "125007"
FINDING_SITE = "363698007"

OHIF_MAX_LABEL_LINES = 5
"""OHIF 3.13 draws at most this many lines in an SR annotation's label (its
``DICOMSRDisplayTool._getTextBoxLinesFromLabels``): the NUM items in order, then the finding
site; the rest is not shown."""


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewerTools:
    """Where the programs of the real-viewer test are, and what is missing."""

    viewer_dir: Path
    chromium: Path
    node: str | None
    orthanc: str | None

    @classmethod
    def discover(cls) -> ViewerTools:
        """Find the tools (environment overrides, then the project's install folder)."""
        viewer_dir = Path(os.environ.get(VIEWER_DIR_ENV) or DEFAULT_VIEWER_DIR)
        return cls(
            viewer_dir=viewer_dir,
            chromium=Path(os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM),
            node=shutil.which("node"),
            orthanc=shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin"),
        )

    @property
    def ohif_dist(self) -> Path:
        """OHIF's prebuilt app."""
        return self.viewer_dir / "ohif"

    @property
    def node_modules(self) -> Path:
        """Where playwright-core is installed."""
        return self.viewer_dir / "node_modules"

    def missing(self) -> list[str]:
        """Human-readable reasons why the test cannot run; empty when all is there."""
        reasons = []
        if not os.access(self.chromium, os.X_OK):
            reasons.append(f"no Chromium at {self.chromium}")
        if self.node is None:
            reasons.append("no node on PATH")
        if not (self.ohif_dist / "index.html").is_file():
            reasons.append(f"no OHIF build in {self.ohif_dist}")
        if not (self.node_modules / "playwright-core" / "package.json").is_file():
            reasons.append(f"no playwright-core in {self.node_modules}")
        if self.orthanc is None:
            reasons.append("no Orthanc binary")
        if not DICOMWEB_PLUGIN.is_file():
            reasons.append(f"no Orthanc DICOMweb plugin at {DICOMWEB_PLUGIN}")
        return reasons


# --------------------------------------------------------------------------------------------
# Orthanc with DICOMweb
# --------------------------------------------------------------------------------------------


class OrthancError(RuntimeError):
    """Orthanc did not start or refused an upload."""


@dataclass
class DicomWebOrthanc:
    """Debian's Orthanc with only the DICOMweb plugin, on free loopback ports, temp storage."""

    workdir: Path
    binary: str
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base address of the REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "orthanc.log"

    def start(self, timeout: float = 60.0) -> DicomWebOrthanc:
        """Write the configuration, start Orthanc and wait until it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        storage = self.workdir / "storage"
        config = {
            "Name": "cmr-node-viewer-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "VIEWERTEST",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SaveJobs": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
            },
        }
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2))
        env = {**os.environ, "TCP_NODELAY": "1"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            wait_for(self._ready, timeout, interval=0.2)
        except TimeoutError as exc:
            self.stop()
            raise OrthancError(
                f"Orthanc did not answer within {timeout} s; log:\n{self.log_tail()}"
            ) from exc
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise OrthancError(f"Orthanc exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/dicom-web/studies", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def upload(self, path: Path) -> str:
        """Store one DICOM file (REST ``POST /instances``); return Orthanc's instance id."""
        request = urllib.request.Request(
            f"{self.url}/instances",
            data=path.read_bytes(),
            headers={"Content-Type": "application/dicom"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                body = json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise OrthancError(f"Orthanc refused {path}: {exc}") from exc
        return str(body["ID"])

    def stop(self) -> None:
        """Stop Orthanc (SIGTERM, then SIGKILL) and wait until it has exited."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=ORTHANC_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=ORTHANC_STOP_TIMEOUT_S)
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


# --------------------------------------------------------------------------------------------
# The browser driver
# --------------------------------------------------------------------------------------------


class DriverError(RuntimeError):
    """The browser driver did not finish its steps."""


def run_driver(tools: ViewerTools, plan: dict[str, Any], out_dir: Path, timeout: float) -> dict:
    """Run ``drive_ohif.cjs`` with ``plan``; return its result (``result.json``).

    Raises
    ------
    DriverError
        When the driver fails or times out; the message carries its error, the page's
        console errors and the paths of the screenshots taken.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_path = out_dir / "plan.json"
    plan_path.write_text(json.dumps({**plan, "outDir": str(out_dir)}, indent=2))
    assert tools.node is not None
    env = {**os.environ, "NODE_PATH": str(tools.node_modules)}
    # Its own process group, so that a time-out also ends the Chromium it started.
    proc = subprocess.Popen(
        [tools.node, str(DRIVER_SCRIPT), str(plan_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DriverError(f"the browser driver did not finish within {timeout} s") from exc
    result_path = out_dir / "result.json"
    if not result_path.is_file():
        raise DriverError(
            f"the browser driver wrote no result (exit {proc.returncode}):\n"
            f"{stdout[-2000:]}\n{stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(result_path.read_text())
    if proc.returncode != 0 or result.get("error"):
        raise DriverError(
            f"the browser driver failed after steps {[s['name'] for s in result['steps']]}: "
            f"{result.get('error')}\nconsole errors: {result.get('console')}\n"
            f"page text: {result.get('failureText', '')[:1500]}\n"
            f"screenshots: {result.get('screenshots')}\nstderr: {stderr[-2000:]}"
        )
    return result


# --------------------------------------------------------------------------------------------
# Geometry: image pixels on the page
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageMapping:
    """Where image coordinates land on the page (CSS pixels = screenshot pixels).

    Image coordinates are (column, row) with (0, 0) the top-left corner of the image, as in
    DICOM SCOORD and in cornerstone's ``imageToWorldCoords``: the centre of pixel (r, c) is
    at (c + 0.5, r + 0.5).
    """

    origin: npt.NDArray[np.float64]
    column_step: npt.NDArray[np.float64]
    row_step: npt.NDArray[np.float64]
    canvas: tuple[float, float, float, float]
    """left, top, width, height of the viewport's canvas on the page."""

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PageMapping:
        """Build from a viewport state recorded by the driver."""
        origin = np.asarray(state["origin"], dtype=np.float64)
        canvas = state["canvas"]
        return cls(
            origin=origin,
            column_step=np.asarray(state["columnStep"], dtype=np.float64) - origin,
            row_step=np.asarray(state["rowStep"], dtype=np.float64) - origin,
            canvas=(canvas["left"], canvas["top"], canvas["width"], canvas["height"]),
        )

    @property
    def pixel_size(self) -> float:
        """Length on the page of one image pixel (mean of both directions)."""
        return float((np.linalg.norm(self.column_step) + np.linalg.norm(self.row_step)) / 2)

    def to_page(self, columns_rows: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map (n, 2) image coordinates (column, row) to (n, 2) page coordinates (x, y)."""
        points = np.asarray(columns_rows, dtype=np.float64).reshape(-1, 2)
        return (
            self.origin
            + points[:, :1] * self.column_step[np.newaxis]
            + points[:, 1:] * self.row_step[np.newaxis]
        )

    def on_canvas(self, page_points: npt.NDArray[np.float64], margin: float = 2.0) -> npt.NDArray:
        """Which page points lie inside the canvas (``margin`` pixels from its edges)."""
        left, top, width, height = self.canvas
        x, y = page_points[:, 0], page_points[:, 1]
        return (
            (x >= left + margin)
            & (x < left + width - margin)
            & (y >= top + margin)
            & (y < top + height - margin)
        )


def mask_page_points(mask: npt.NDArray[np.bool_], mapping: PageMapping) -> npt.NDArray:
    """Page coordinates of the centres of the ``True`` pixels of an image-sized mask."""
    rows, columns = np.nonzero(mask)
    return mapping.to_page(np.column_stack([columns, rows]) + 0.5)


# --------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------


def cielab_to_rgb(dicom_lab: Sequence[int]) -> npt.NDArray[np.float64]:
    """Convert a DICOM CIELab triplet (each 0-65535) to RGB in 0-255."""
    lightness = dicom_lab[0] * 100.0 / 65535.0
    a = dicom_lab[1] * 255.0 / 65535.0 - 128.0
    b = dicom_lab[2] * 255.0 / 65535.0 - 128.0
    rgb = lab2rgb(np.array([[[lightness, a, b]]], dtype=np.float64))[0, 0]
    return np.asarray(rgb * 255.0, dtype=np.float64)


def tinted(
    pixels: npt.NDArray, colour: npt.NDArray[np.float64], min_chroma: float = 20.0,
    min_cosine: float = 0.9,
) -> npt.NDArray[np.bool_]:
    """Which RGB pixels carry the hue of ``colour`` (blended with any grey underneath).

    A grey image blended with a colour at any opacity keeps the colour's direction away from
    grey, so a pixel is tinted when its own direction from grey is close to the colour's and
    it is far enough from grey.
    """
    values = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    chroma = values - values.mean(axis=1, keepdims=True)
    target = colour - colour.mean()
    norms = np.linalg.norm(chroma, axis=1) * np.linalg.norm(target)
    cosine = np.divide(chroma @ target, norms, out=np.zeros(len(values)), where=norms > 0)
    spread = values.max(axis=1) - values.min(axis=1)
    return np.asarray((spread >= min_chroma) & (cosine >= min_cosine))


def sample(image: npt.NDArray, page_points: npt.NDArray[np.float64]) -> npt.NDArray:
    """RGB values of a screenshot (rows, columns, 3+) at page points (nearest pixel)."""
    x = np.clip(np.floor(page_points[:, 0]).astype(int), 0, image.shape[1] - 1)
    y = np.clip(np.floor(page_points[:, 1]).astype(int), 0, image.shape[0] - 1)
    return np.asarray(image[y, x, :3])


def coloured_near(
    image: npt.NDArray, page_points: npt.NDArray[np.float64], radius: int = 2,
    min_chroma: float = 60.0,
) -> npt.NDArray[np.bool_]:
    """Which page points have a strongly coloured (non-grey) screenshot pixel nearby."""
    rgb = np.asarray(image[..., :3], dtype=np.int16)
    coloured = (rgb.max(axis=2) - rgb.min(axis=2)) >= min_chroma
    grown = ndimage.binary_dilation(coloured, iterations=radius)
    x = np.clip(np.floor(page_points[:, 0]).astype(int), 0, image.shape[1] - 1)
    y = np.clip(np.floor(page_points[:, 1]).astype(int), 0, image.shape[0] - 1)
    return np.asarray(grown[y, x])


# --------------------------------------------------------------------------------------------
# What the SEG and SR hold
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegSegment:
    """One segment of a SEG."""

    number: int
    label: str
    property_code: str
    colour: npt.NDArray[np.float64] | None


def seg_segments(seg: Dataset) -> list[SegSegment]:
    """The segments of a SEG, with their recommended display colour in RGB (0-255)."""
    segments = []
    for item in seg.SegmentSequence:
        lab = item.get("RecommendedDisplayCIELabValue")
        segments.append(
            SegSegment(
                number=int(item.SegmentNumber),
                label=str(item.SegmentLabel),
                property_code=str(item.SegmentedPropertyTypeCodeSequence[0].CodeValue),
                colour=cielab_to_rgb([int(v) for v in lab]) if lab is not None else None,
            )
        )
    return segments


def seg_masks(seg: Dataset, source_sop_instance_uid: str) -> dict[int, npt.NDArray[np.bool_]]:
    """The SEG's masks on one source image: segment number -> boolean (rows, columns)."""
    if str(seg.SOPClassUID) != SEG_CLASS_UID:
        raise ValueError(f"not a Segmentation Storage instance: {seg.SOPClassUID}")
    frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
    masks: dict[int, npt.NDArray[np.bool_]] = {}
    for index, functional_groups in enumerate(seg.PerFrameFunctionalGroupsSequence):
        sources = [
            str(source.ReferencedSOPInstanceUID)
            for derivation in functional_groups.DerivationImageSequence
            for source in derivation.SourceImageSequence
        ]
        if source_sop_instance_uid not in sources:
            continue
        number = int(functional_groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        frame = frames[index] > 0
        masks[number] = masks[number] | frame if number in masks else frame
    return masks


@dataclass(frozen=True)
class SrGroup:
    """One planar-ROI measurement group of a TID 1500 report."""

    tracking_uid: str
    tracking_identifier: str
    source_sop_instance_uid: str
    graphic_type: str
    polygon: npt.NDArray[np.float64]
    """SCOORD points (column, row), the top-left corner of the image at (0, 0)."""
    numbers: tuple[tuple[str, float, str], ...]
    """(concept meaning, value, unit code value) of each NUM item."""
    finding_site: str | None
    """Code meaning of the group's finding site."""


def _concept(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue)


def _walk(items: Iterable[Dataset]) -> Iterable[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def sr_planar_groups(sr: Dataset) -> list[SrGroup]:
    """The measurement groups of a TID 1500 report that carry an image region (SCOORD)."""
    groups = []
    for item in _walk(sr.ContentSequence):
        if item.ValueType != "CONTAINER" or _concept(item) != MEASUREMENT_GROUP:
            continue
        children = list(item.get("ContentSequence", []))
        regions = [c for c in children if c.ValueType == "SCOORD"]
        if not regions:
            continue
        region = regions[0]
        source = region.ContentSequence[0].ReferencedSOPSequence[0]
        numbers = tuple(
            (
                str(c.ConceptNameCodeSequence[0].CodeMeaning),
                float(c.MeasuredValueSequence[0].NumericValue),
                str(c.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue),
            )
            for c in children
            if c.ValueType == "NUM" and c.get("MeasuredValueSequence")
        )
        groups.append(
            SrGroup(
                tracking_uid=next(
                    str(c.UID) for c in children
                    if c.ValueType == "UIDREF" and _concept(c) == TRACKING_UNIQUE_IDENTIFIER
                ),
                tracking_identifier=next(
                    (str(c.TextValue) for c in children if c.ValueType == "TEXT"), ""
                ),
                source_sop_instance_uid=str(source.ReferencedSOPInstanceUID),
                graphic_type=str(region.GraphicType),
                polygon=np.asarray(region.GraphicData, dtype=np.float64).reshape(-1, 2),
                numbers=numbers,
                finding_site=next(
                    (
                        str(c.ConceptCodeSequence[0].CodeMeaning)
                        for c in children
                        if c.ValueType == "CODE" and _concept(c) == FINDING_SITE
                    ),
                    None,
                ),
            )
        )
    return groups


def ohif_value_text(concept: str, value: float, unit: str) -> str:
    """The text OHIF 3.13 draws for a NUM item of an SR annotation.

    OHIF writes ``Number(value).toFixed(2)`` (rounding halves away from zero) followed by the
    unit's code value, and no number for a value of 0.
    """
    number = (
        ""
        if value == 0
        else str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    )
    return f"{concept}: {number} {unit}"


def ohif_label_lines(group: SrGroup) -> list[str]:
    """The lines OHIF 3.13 draws in the label of an SR group's contour.

    The NUM items in order, then the finding site as ``"363698007: <meaning>"`` (OHIF writes
    the concept's code value), cut after ``OHIF_MAX_LABEL_LINES`` lines.
    """
    lines = [ohif_value_text(*number) for number in group.numbers]
    if group.finding_site is not None:
        lines.append(f"{FINDING_SITE}: {group.finding_site}")
    return lines[:OHIF_MAX_LABEL_LINES]
