"""End to end: a reader's corrected SEG sent to the node is matched and measured.

The node analyses a T1 map and delivers its SEG.  A "viewer" (highdicom, as OHIF's or 3D
Slicer's SEG export would) writes a corrected SEG: the node's segments on the same source
images with some myocardium pixels moved, in a new series, under a new SOP Instance UID and
another manufacturer, and stores it to the node.  The node must record the agreement: the
Dice per segment and the ΔT1 over the corrected myocardium, here computed independently
from the arrays the test edited and the stored map.  The reader's SEG series is shown as a
correction (matched, with the agreement; or unmatched, with the reason) in ``cmr-node
status``, the status endpoint and the log, never as a series no analysis wanted.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from bench.latency import Completeness, write_t1map_study
from models.training.lgeseg.site_data import load_dicom_seg
from plugins.api import Label
from tests.netutil import REPO, NodeProcess, PacsScp, free_port, send_files, wait_for

pytestmark = pytest.mark.e2e

RESULT_TIMEOUT_S = 120.0
MYOCARDIUM_TYPE = ("SCT", "74281007")


def _delivered_seg(node: NodeProcess) -> str | None:
    rows = node.query("SELECT o.state, o.kind, o.path FROM outbox o JOIN jobs j ON j.id=o.job_id"
                      " WHERE j.state='done'")
    if rows and all(r["state"] == "sent" for r in rows):
        return next(str(r["path"]) for r in rows if r["kind"] == "seg")
    return None


def _corrected_seg(node_seg_path: str, sources: list, rng: np.random.Generator
                   ) -> tuple[hd.seg.Segmentation, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The reader's SEG, and the node's and the reader's masks by segment label."""
    node_seg = hd.seg.segread(node_seg_path)
    uids = [str(ds.SOPInstanceUID) for ds in sources]
    numbers = [int(item.SegmentNumber) for item in node_seg.SegmentSequence]
    ours = node_seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=numbers,
        assert_missing_frames_are_empty=True,
    ).astype(bool)
    theirs = ours.copy()
    labels = [str(item.SegmentLabel) for item in node_seg.SegmentSequence]
    types = [(str(item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator),
              str(item.SegmentedPropertyTypeCodeSequence[0].CodeValue))
             for item in node_seg.SegmentSequence]
    myo = types.index(MYOCARDIUM_TYPE)
    # The reader removes 25 wall pixels of the first analysed image and adds 15 of background.
    frame = int(np.flatnonzero(ours[..., myo].any(axis=(1, 2)))[0])
    wall = np.argwhere(ours[frame, :, :, myo])
    outside = np.argwhere(~ours[frame].any(axis=-1))  # background of every segment
    for r, c in wall[rng.choice(len(wall), 25, replace=False)]:
        theirs[frame, r, c, myo] = False
    for r, c in outside[rng.choice(len(outside), 15, replace=False)]:
        theirs[frame, r, c, myo] = True
    descriptions = []
    for index, item in enumerate(node_seg.SegmentSequence):
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        kind = item.SegmentedPropertyTypeCodeSequence[0]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=index + 1,
            segment_label=labels[index],
            segmented_property_category=hd.sr.CodedConcept(
                category.CodeValue, category.CodingSchemeDesignator, category.CodeMeaning),
            segmented_property_type=hd.sr.CodedConcept(
                kind.CodeValue, kind.CodingSchemeDesignator, kind.CodeMeaning),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        ))
    corrected = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=theirs,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=9001,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Viewer vendor",
        manufacturer_model_name="Viewer",
        software_versions="1.0",
        device_serial_number="1",
        content_creator_name="Reader^One",
        series_description="Corrected segmentation",
    )
    return (corrected, {lab: ours[..., i] for i, lab in enumerate(labels)},
            {lab: theirs[..., i] for i, lab in enumerate(labels)})


def _seg_of_other_images(sources: list) -> hd.seg.Segmentation:
    """A reader's myocardium SEG on copies of ``sources`` as another series of the study
    (new Series and SOP UIDs): images the node never received, let alone segmented."""
    series_uid = generate_uid()
    copies = []
    for ds in sources:
        other = copy.deepcopy(ds)
        other.SeriesInstanceUID = series_uid
        other.SOPInstanceUID = generate_uid()
        copies.append(other)
    mask = np.zeros((len(copies), int(copies[0].Rows), int(copies[0].Columns)), dtype=bool)
    mask[:, 10:20, 10:20] = True
    return hd.seg.Segmentation(
        source_images=copies,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=1,
            segment_label="LV myocardium",
            segmented_property_category=hd.sr.CodedConcept("91723000", "SCT",
                                                           "Anatomical Structure"),
            segmented_property_type=hd.sr.CodedConcept(MYOCARDIUM_TYPE[1], MYOCARDIUM_TYPE[0],
                                                       "Myocardium"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )],
        series_instance_uid=generate_uid(),
        series_number=9002,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Viewer vendor",
        manufacturer_model_name="Viewer",
        software_versions="1.0",
        device_serial_number="1",
        series_description="Segmentation of other images",
    )


def _short_uid(uid: str, width: int = 24) -> str:
    """A UID as ``cmr-node status`` prints it."""
    return uid if len(uid) <= width else "…" + uid[-(width - 1):]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def test_a_corrected_seg_gives_an_agreement_record(tmp_path: Path) -> None:
    paths = write_t1map_study(8080, tmp_path / "t1", Completeness.KNOWN)
    sources = sorted((dcmread(p) for p in paths), key=lambda ds: int(ds.InstanceNumber))
    pacs = PacsScp(tmp_path / "pacs").start()
    node = NodeProcess(tmp_path / "node", pacs.port, http_port=free_port())
    try:
        node.start(timeout=120)
        assert send_files(paths, node.port, calling="SCANNER_7") == [0] * len(paths)
        seg_path = wait_for(lambda: _delivered_seg(node), RESULT_TIMEOUT_S, interval=0.2)
        corrected, ours, theirs = _corrected_seg(seg_path, sources, np.random.default_rng(3))
        corrected_path = tmp_path / "corrected.dcm"
        corrected.save_as(corrected_path)
        # The node's own SEG coming back (a PACS forwarding everything) is no correction.
        assert send_files([Path(seg_path)], node.port, calling="PACS") == [0]
        assert send_files([corrected_path], node.port, calling="VIEWER") == [0]
        [record] = wait_for(lambda: node.query("SELECT * FROM corrections"), RESULT_TIMEOUT_S,
                            interval=0.2)
        # A reader's SEG of images the node never segmented: a correction it cannot match.
        stray = _seg_of_other_images(sources)
        stray_path = tmp_path / "stray.dcm"
        stray.save_as(stray_path)
        assert send_files([stray_path], node.port, calling="VIEWER") == [0]
        wait_for(lambda: node.query("SELECT 1 FROM series WHERE series_instance_uid=? AND"
                                    " state='correction'", (str(stray.SeriesInstanceUID),)),
                 RESULT_TIMEOUT_S, interval=0.2)
        wait_for(lambda: node.query("SELECT 1 FROM series WHERE series_instance_uid=? AND"
                                    " state NOT IN ('receiving', 'complete')",
                                    (str(dcmread(seg_path).SeriesInstanceUID),)),
                 RESULT_TIMEOUT_S, interval=0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/status",
                                    timeout=10) as reply:
            status = json.loads(reply.read())
        shown = subprocess.run([sys.executable, "-m", "node", "status", "--config",
                                str(node.config_path), "--limit", "50"], cwd=REPO,
                               capture_output=True, text=True, timeout=120, check=True).stdout
        log = node.log_tail(200_000)
    finally:
        node.stop()
        pacs.stop()

    # Shown as corrections: matched with its agreement, unmatched with the reason.
    series = {s["series_instance_uid"]: s for s in status["series"]}
    corrected_row = series[str(corrected.SeriesInstanceUID)]
    stray_row = series[str(stray.SeriesInstanceUID)]
    assert corrected_row["state"] == stray_row["state"] == "correction"
    assert corrected_row["route_reason"].startswith(
        f"reader correction, matched to job {record['job_id']} (t1map): ")
    assert "Dice 0.9" in corrected_row["route_reason"]
    assert "unmatched: SEG" in stray_row["route_reason"]
    assert "references no series the node segmented" in stray_row["route_reason"]
    # The node's own SEG sent back stays what it was: a series no analysis takes.
    assert series[str(dcmread(seg_path).SeriesInstanceUID)]["state"] == "unrouted"
    kinds = {(e["kind"], e["series_instance_uid"]) for e in status["events"]}
    assert ("correction", str(corrected.SeriesInstanceUID)) in kinds
    assert ("correction_unmatched", str(stray.SeriesInstanceUID)) in kinds
    assert not {("unrouted", str(corrected.SeriesInstanceUID)),
                ("unrouted", str(stray.SeriesInstanceUID))} & kinds
    for row in (corrected_row, stray_row):
        [line] = [text for text in shown.splitlines()
                  if _short_uid(row["series_instance_uid"]) in text and "reader SEG" in text]
        assert " correction " in line and "unrouted" not in line
    for uid in (corrected.SeriesInstanceUID, stray.SeriesInstanceUID):
        assert f"series {uid} is a reader's SEG: reader correction" in log
        assert f"series {uid} not analysed" not in log

    assert record["sop_instance_uid"] == str(corrected.SOPInstanceUID)
    assert (record["calling_ae"], record["reader_ae"]) == ("SCANNER_7", "VIEWER")
    assert record["station"] == str(sources[0].StationName)
    assert record["creator"] == "Reader^One"
    figures = json.loads(record["agreement"])
    expected = {label: _dice(ours[label], theirs[label]) for label in ours
                if ours[label].any() or theirs[label].any()}
    assert figures["dice"] == pytest.approx(expected, abs=1e-12)
    myo = next(label for label, value in expected.items() if value < 1.0)
    assert 0.9 < expected[myo] < 1.0
    t1 = np.stack([ds.pixel_array * float(ds.get("RescaleSlope", 1))
                   + float(ds.get("RescaleIntercept", 0)) for ds in sources]).astype(float)
    delta = t1[theirs[myo]].mean() - t1[ours[myo]].mean()
    assert delta != 0.0
    assert figures["delta_t1_ms"] == pytest.approx(delta, abs=1e-6)
    [scanner] = status["corrections"]
    assert (scanner["station"], scanner["calling_ae"], scanner["corrections"]) == (
        str(sources[0].StationName), "SCANNER_7", 1)
    assert scanner["median_dice"][myo] == pytest.approx(expected[myo], abs=1e-12)
    assert scanner["drift"] == []

    # The corrected case is exported for site fine-tuning, in the layout it reads.
    out = tmp_path / "export"
    done = subprocess.run([sys.executable, "-m", "node", "corrections", "export", str(out),
                           "--config", str(node.config_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [case] = json.loads((out / "corrections.json").read_text())
    assert dcmread(out / case["folder"] / "seg.dcm").SOPInstanceUID == corrected.SOPInstanceUID
    pairs = {pair.name: pair for pair in load_dicom_seg(out)}
    for index, ds in enumerate(sources):
        wall = pairs[str(ds.SOPInstanceUID)].labels == int(Label.MYOCARDIUM)
        assert np.array_equal(wall, theirs[myo][index])
