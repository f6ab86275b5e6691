"""Proof in a real viewer: OHIF shows the node's SEG overlay and SR contours with their values.

A synthetic study goes through the real command line (``cmr-node analyse``); the T1-map
series, the SEG and the planar-ROI SR go into a real Orthanc with DICOMweb; OHIF (the pinned
npm build) is served on loopback with a same-origin proxy; headless Chromium opens the study
as a reader would, loads the SEG and the SR, and the test checks the screenshots and the
annotation layer against what the SEG and SR hold.  ``sr-summary.dcm`` is not uploaded: its
volumetric groups have no planar contour, and OHIF's loader shows nothing for such a report.

The node's uncertainty outputs (``[outputs] probability_seg`` and ``uncertainty_map``) are
uploaded too.  OHIF 3.13 does not display the FRACTIONAL SEG (its loader throws; the test
records that, so that an OHIF that learns it fails the test and is noticed); it overlays the
uncertainty Parametric Map on the T1-map volume in its "rainbow_2" colours, which the test
checks against the map's values.

The tools come from ``deploy/viewer/setup.sh``.  Where they are missing the tests fail with
the reason, unless ``CMR_NODE_SKIP_VIEWER=1`` is set.  Screenshots are taken in the pytest
temporary folder (their paths appear in the assertion messages) and copied to
``build/viewer/screenshots``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from scipy import ndimage

from tests.netutil import REPO
from tests.viewer.ohif_server import OhifServer
from tests.viewer.viewerutil import (
    SETUP_HINT,
    SKIP_ENV,
    DicomWebOrthanc,
    PageMapping,
    SrGroup,
    ViewerTools,
    coloured_near,
    mask_page_points,
    ohif_label_lines,
    run_driver,
    sample,
    seg_masks,
    seg_segments,
    sr_planar_groups,
    tinted,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHANTOM_SEED = 3
MYOCARDIUM = "74281007"
"""SNOMED CT code of the myocardium (the SEG must have this segment)."""

SITE_CONFIG = """
[outputs]
probability_seg = true
uncertainty_map = true
"""
"""The node's optional uncertainty outputs, both written for the viewer."""

ANALYSE_TIMEOUT_S = 120.0
DRIVER_TIMEOUT_S = 150.0
STEP_TIMEOUT_MS = 60_000
ARTEFACTS = "screenshots"
"""Folder under the viewer install folder (build/viewer) where the last run's screenshots
are kept, for CI artefacts and for people to look at."""

MIN_TINTED_INSIDE = 0.9
"""Share of a segment's pixels (sampled at their centres) that must show its colour."""
MAX_TINTED_OUTSIDE = 0.02
"""Share of pixels around a segment, or of the segment before the SEG was opened, allowed
to show its colour (the other segments have other hues; the image is greyscale)."""
BAND_PIXELS = (2, 10)
"""The band around a segment where its colour must not show: from 2 to 10 image pixels."""
MAX_CONTOUR_OFFSET_PX = 0.25
"""Largest allowed distance, in image pixels, between an SR contour point and the polyline
OHIF draws (OHIF and DICOM SCOORD both put the image's top-left corner at (0, 0), so a
half-pixel slip in the node's coordinates fails)."""
MIN_CONTOUR_PAINTED = 0.5
"""Share of an SR contour's points that must have painted (coloured) pixels next to them in
the screenshot; OHIF draws the contours dashed."""


@dataclass(frozen=True)
class ViewerRun:
    """What the browser saw, and what the node wrote."""

    result: dict[str, Any]
    seg: Dataset
    sr: Dataset
    out_dir: Path
    probability_seg: Dataset
    uncertainty_map: Dataset
    sources: tuple[Dataset, ...]

    def screenshot(self, name: str) -> np.ndarray:
        return np.asarray(Image.open(self.result["screenshots"][name]).convert("RGB"))

    def shot_path(self, name: str) -> str:
        return str(self.result["screenshots"][name])


def _tools_or_stop() -> ViewerTools:
    tools = ViewerTools.discover()
    missing = tools.missing()
    if missing:
        message = f"real-viewer test cannot run: {'; '.join(missing)} ({SETUP_HINT})"
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{message}; skipped because {SKIP_ENV}=1")
        pytest.fail(message)
    return tools


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    completed = subprocess.run(
        args, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert completed.returncode == 0, (
        f"{' '.join(args)} exited with {completed.returncode}:\n"
        f"{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
    )
    return completed


@pytest.fixture(scope="module")
def viewer_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerRun]:
    """Analyse a phantom study offline, serve it through Orthanc and OHIF, drive Chromium."""
    tools = _tools_or_stop()
    work = tmp_path_factory.mktemp("viewer")
    study_dir, node_out = work / "study", work / "node-out"
    _run([sys.executable, "-m", "models.phantoms", "--out", str(study_dir),
          "--seed", str(PHANTOM_SEED)], ANALYSE_TIMEOUT_S)
    # ``python -m node`` is the ``cmr-node`` command (the same ``node.cli.main.main``).
    config = work / "site.toml"
    config.write_text(SITE_CONFIG)
    _run([sys.executable, "-m", "node", "analyse", str(study_dir), "--out", str(node_out),
          "--config", str(config)], ANALYSE_TIMEOUT_S)
    analysed = [
        s for s in json.loads((node_out / "results.json").read_text())["series"]
        if s.get("analysis") == "t1map" and s.get("status") == "analysed"
    ]
    assert len(analysed) == 1, f"expected one analysed T1-map series in {node_out}"
    series_uid = analysed[0]["series_instance_uid"]
    outputs = node_out / series_uid
    seg_path, sr_path = outputs / "seg.dcm", outputs / "sr.dcm"
    probability_path, uncertainty_path = (outputs / "seg-probability.dcm",
                                          outputs / "uncertainty-map.dcm")
    for path in (seg_path, sr_path, probability_path, uncertainty_path):
        assert path.is_file(), f"no {path.name} in {outputs}"
    seg, sr = dcmread(seg_path), dcmread(sr_path)
    probability_seg, uncertainty_map = dcmread(probability_path), dcmread(uncertainty_path)
    sources = [
        path for path in sorted(study_dir.rglob("*.dcm"))
        if str(dcmread(path, stop_before_pixels=True).SeriesInstanceUID) == series_uid
    ]
    assert sources, f"no source images of series {series_uid} in {study_dir}"

    orthanc = DicomWebOrthanc(work / "orthanc", tools.orthanc or "Orthanc").start()
    server = OhifServer(tools.ohif_dist, orthanc.url)
    try:
        for path in [*sources, seg_path, sr_path, probability_path, uncertainty_path]:
            orthanc.upload(path)
        server.start()
        plan = {
            "viewerUrl": server.url,
            "studyUid": str(seg.StudyInstanceUID),
            "segSeriesNumber": int(seg.SeriesNumber),
            "srSeriesNumber": int(sr.SeriesNumber),
            "chromium": str(tools.chromium),
            "timeoutMs": STEP_TIMEOUT_MS,
            "probabilitySegSeriesNumber": int(probability_seg.SeriesNumber),
            "uncertaintyMapSeriesNumber": int(uncertainty_map.SeriesNumber),
        }
        result = run_driver(tools, plan, work / "browser", DRIVER_TIMEOUT_S)
    finally:
        server.stop()
        orthanc.stop()
        _keep_screenshots(work / "browser", tools.viewer_dir / ARTEFACTS)
    yield ViewerRun(result=result, seg=seg, sr=sr, out_dir=work / "browser",
                    probability_seg=probability_seg, uncertainty_map=uncertainty_map,
                    sources=tuple(dcmread(path) for path in sources))


def _keep_screenshots(source: Path, target: Path) -> None:
    """Copy the screenshots and the driver's result to the (git-ignored) build folder."""
    if not source.is_dir():
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix in (".png", ".json"):
            shutil.copy2(path, target / path.name)


def _tinted_counts(
    image: np.ndarray, state: dict[str, Any], mask: np.ndarray, colour: np.ndarray
) -> tuple[int, int, int, int]:
    """Pixels showing ``colour`` inside ``mask`` and in a band around it.

    The band lies ``BAND_PIXELS`` image pixels away from the mask.  Returns (tinted inside,
    inside, tinted in the band, band), counting image pixels whose centres lie on the
    viewport's canvas.
    """
    mapping = PageMapping.from_state(state)
    inside = mask_page_points(mask, mapping)
    inside = inside[mapping.on_canvas(inside)]
    near, far = BAND_PIXELS
    band = ndimage.binary_dilation(mask, iterations=far) & ~ndimage.binary_dilation(
        mask, iterations=near
    )
    outside = mask_page_points(band, mapping)
    outside = outside[mapping.on_canvas(outside)]
    return (
        int(tinted(sample(image, inside), colour).sum()),
        len(inside),
        int(tinted(sample(image, outside), colour).sum()),
        len(outside),
    )


def test_ohif_draws_each_seg_segment_where_the_seg_says(viewer_run: ViewerRun) -> None:
    segments = seg_segments(viewer_run.seg)
    assert MYOCARDIUM in {s.property_code for s in segments}, "the SEG has no myocardium"
    loaded = viewer_run.result["segmentations"]
    assert [s["segments"] for s in loaded] == [[s.label for s in segments]], (
        f"OHIF loaded {loaded}"
    )
    states = viewer_run.result["seg"]
    referenced = {
        str(source.ReferencedSOPInstanceUID)
        for groups in viewer_run.seg.PerFrameFunctionalGroupsSequence
        for derivation in groups.DerivationImageSequence
        for source in derivation.SourceImageSequence
    }
    assert referenced <= {s["sopInstanceUid"] for s in states}, "OHIF skipped a SEG'd image"
    for state in states:
        assert PageMapping.from_state(state).pixel_size > 2, f"image drawn too small: {state}"

    before = viewer_run.result["images"]["source"]
    before_masks = seg_masks(viewer_run.seg, before["sopInstanceUid"])
    for segment in segments:
        assert segment.colour is not None, f"segment {segment.label!r} has no display colour"
        counts = np.zeros(4, dtype=int)
        for index, state in enumerate(states):
            mask = seg_masks(viewer_run.seg, state["sopInstanceUid"]).get(segment.number)
            if mask is None or not mask.any():
                continue
            shot = viewer_run.screenshot(f"seg-image-{index + 1}")
            counts += _tinted_counts(shot, state, mask, segment.colour)
        hit_in, n_in, hit_out, n_out = (int(c) for c in counts)
        shots = [viewer_run.shot_path(f"seg-image-{i + 1}") for i in range(len(states))]
        colour = np.round(segment.colour).astype(int).tolist()
        assert n_in > 20, f"segment {segment.label!r}: too few pixels on the canvas ({n_in})"
        assert hit_in >= MIN_TINTED_INSIDE * n_in, (
            f"segment {segment.label!r}: only {hit_in} of its {n_in} pixels show its "
            f"colour {colour}: {shots}"
        )
        assert hit_out <= MAX_TINTED_OUTSIDE * n_out, (
            f"segment {segment.label!r}: {hit_out} of {n_out} pixels around it show its "
            f"colour {colour}: {shots}"
        )
        # The control: the same image before the SEG was opened shows no such colour.
        mask = before_masks.get(segment.number)
        if mask is not None and mask.any():
            hit, n, _, _ = _tinted_counts(
                viewer_run.screenshot("source"), before, mask, segment.colour
            )
            assert hit <= MAX_TINTED_OUTSIDE * n, (
                f"segment {segment.label!r}: {hit} of {n} pixels showed its colour before the "
                f"SEG was opened: {viewer_run.shot_path('source')}"
            )


def _drawn_contour(group: SrGroup, state: dict[str, Any]) -> tuple[float, np.ndarray]:
    """The drawn polyline nearest to an SR group's contour.

    Returns the largest distance, in image pixels, from a contour point to that polyline, and
    the polyline's points (page coordinates).
    """
    mapping = PageMapping.from_state(state)
    expected = mapping.to_page(group.polygon)
    best, best_points = np.inf, np.empty((0, 2))
    for polyline in state["polylines"]:
        drawn = np.asarray(polyline["points"], dtype=np.float64)
        if len(drawn) < 3:
            continue
        distances = np.linalg.norm(expected[:, None, :] - drawn[None, :, :], axis=2)
        offset = float(distances.min(axis=1).max()) / mapping.pixel_size
        if offset < best:
            best, best_points = offset, drawn
    return best, best_points


def test_ohif_shows_sr_contours_with_their_values(viewer_run: ViewerRun) -> None:
    groups = sr_planar_groups(viewer_run.sr)
    assert groups, "the SR has no planar-ROI groups"
    shown = {state["sopInstanceUid"]: state for state in viewer_run.result["sr"]}
    shots = {
        state["sopInstanceUid"]: viewer_run.result["screenshots"][f"sr-image-{i + 1}"]
        for i, state in enumerate(viewer_run.result["sr"])
    }
    t1_texts = 0
    for group in groups:
        assert group.source_sop_instance_uid in shown, (
            f"OHIF never showed image {group.source_sop_instance_uid} of SR group "
            f"{group.tracking_identifier!r}"
        )
        state = shown[group.source_sop_instance_uid]
        shot = shots[group.source_sop_instance_uid]
        labels = {a["uid"]: a["lines"] for a in state["annotations"]}
        assert group.tracking_uid in labels, (
            f"OHIF drew no annotation for SR group {group.tracking_identifier!r} "
            f"(drawn: {sorted(labels)}): {shot}"
        )
        expected = ohif_label_lines(group)
        assert labels[group.tracking_uid] == expected, (
            f"SR group {group.tracking_identifier!r}: OHIF shows {labels[group.tracking_uid]}, "
            f"expected {expected}: {shot}"
        )
        t1_texts += sum(1 for line in expected if line.startswith("T1: ") and line.endswith(" ms"))

        offset, drawn = _drawn_contour(group, state)
        assert offset <= MAX_CONTOUR_OFFSET_PX, (
            f"SR group {group.tracking_identifier!r}: no drawn polyline follows its contour "
            f"(nearest off by {offset:.1f} image pixels): {shot}"
        )
        drawn = drawn[PageMapping.from_state(state).on_canvas(drawn)]
        painted = coloured_near(np.asarray(Image.open(shot).convert("RGB")), drawn).mean()
        assert painted >= MIN_CONTOUR_PAINTED, (
            f"SR group {group.tracking_identifier!r}: only {painted:.0%} of its contour is "
            f"painted in the screenshot: {shot}"
        )
    assert t1_texts > 0, "no T1 value in ms was checked"


# --------------------------------------------------------------------------------------------
# Uncertainty outputs
# --------------------------------------------------------------------------------------------

FRACTIONAL_REFUSAL = "Fractional segmentations are not yet supported"
"""What OHIF 3.13's SEG loader (``@cornerstonejs/adapters``) throws for a FRACTIONAL SEG
whose stored values are not only 0 and MaximumFractionalValue (OHIF issue #1346)."""
MIN_CHROMA = 60
"""Smallest max-min RGB difference of a pixel counted as coloured (the images are grey)."""
SURE_UNCERTAINTY = 0.8
"""Map values (bits) from which OHIF's overlay (values x 100, opacity ramp to 0.99 at 90)
must colour the pixel."""
MIN_COLOURED_UNSURE = 0.8
"""Share of the pixels above :data:`SURE_UNCERTAINTY` that must show colour."""
MAX_COLOURED_SURE = 0.02
"""Share of the certain pixels, away from any uncertain one, allowed to show colour."""
CERTAIN_BELOW = 0.05
"""Map values (bits) below which a pixel counts as certain (OHIF's overlay: opacity 0.05)."""


def _chroma(pixels: np.ndarray) -> np.ndarray:
    values = pixels.astype(np.int16)
    return values.max(axis=1) - values.min(axis=1)


def _map_frame(run: ViewerRun, sop_instance_uid: str) -> np.ndarray:
    """The uncertainty map's frame at the position of a source image."""
    source = next(ds for ds in run.sources if str(ds.SOPInstanceUID) == sop_instance_uid)
    position = np.asarray(source.ImagePositionPatient, dtype=np.float64)
    pm = run.uncertainty_map
    values = pm.pixel_array.reshape(int(pm.NumberOfFrames), pm.Rows, pm.Columns)
    for index, item in enumerate(pm.PerFrameFunctionalGroupsSequence):
        at = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=np.float64)
        if np.allclose(at, position, atol=1e-3):
            return np.asarray(values[index], dtype=np.float64)
    raise AssertionError(f"the uncertainty map has no frame at image {sop_instance_uid}")


def test_ohif_does_not_display_the_fractional_seg(viewer_run: ViewerRun) -> None:
    """OHIF 3.13 shows no prompt and no overlay: "Loading SEG..." stays on the viewport and
    its SEG loader throws; the reader sees the uncertainty through the Parametric Map."""
    assert viewer_run.probability_seg.SegmentationType == "FRACTIONAL"
    record = viewer_run.result.get("probabilitySeg")
    assert record is not None and record["error"] is None, record
    assert not record["prompt"], "OHIF offered to open the FRACTIONAL SEG"
    assert any(FRACTIONAL_REFUSAL in line for line in record["console"]), record["console"]
    loaded = {label for s in record["segmentations"] for label in s["segments"]}
    probability_labels = {s.SegmentLabel for s in viewer_run.probability_seg.SegmentSequence}
    assert not loaded & probability_labels, f"OHIF loaded {record['segmentations']}"


def test_ohif_overlays_the_uncertainty_map_where_the_network_was_unsure(
    viewer_run: ViewerRun,
) -> None:
    record = viewer_run.result.get("uncertaintyMap")
    assert record is not None and record["error"] is None, record
    actors = record["viewport"]["actors"]
    assert len(actors) == 2 and any(a.startswith("pmap.") for a in actors), actors
    state = record["state"]
    shot = viewer_run.screenshot("uncertainty-map")
    shot_path = viewer_run.shot_path("uncertainty-map")
    uncertainty = _map_frame(viewer_run, state["sopInstanceUid"])
    mapping = PageMapping.from_state(state)

    def coloured(mask: np.ndarray, image: np.ndarray, mapping: PageMapping) -> tuple[int, int]:
        points = mask_page_points(mask, mapping)
        points = points[mapping.on_canvas(points)]
        return int((_chroma(sample(image, points)) >= MIN_CHROMA).sum()), len(points)

    unsure = uncertainty >= SURE_UNCERTAINTY
    sure = ~ndimage.binary_dilation(uncertainty >= CERTAIN_BELOW, iterations=3)
    hit, n = coloured(unsure, shot, mapping)
    assert n > 20, f"too few uncertain pixels on the shown image ({n}): {shot_path}"
    assert hit >= MIN_COLOURED_UNSURE * n, (
        f"only {hit} of {n} uncertain pixels are coloured: {shot_path}")
    hit, n = coloured(sure, shot, mapping)
    assert n > 1000, f"too few certain pixels on the shown image ({n}): {shot_path}"
    assert hit <= MAX_COLOURED_SURE * n, f"{hit} of {n} certain pixels are coloured: {shot_path}"
    # The control: the same image without the map showed no colour there.
    before = viewer_run.result["images"]["source"]
    if before["sopInstanceUid"] == state["sopInstanceUid"]:
        hit, n = coloured(unsure, viewer_run.screenshot("source"), PageMapping.from_state(before))
        assert hit <= MAX_COLOURED_SURE * n, "the source image alone was coloured"
