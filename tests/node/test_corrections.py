"""Agreement figures of a reader correction and the per-scanner drift rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.corrections.agreement import (
    MYOCARDIUM_ROLE,
    SCAR_ROLE,
    CorrectionError,
    agreement,
    dice,
    drift,
    summarise,
)
from node.corrections.intake import Segment, match_segments


def _ring(shape: tuple[int, int], inner: float, outer: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    radius = np.hypot(rows - shape[0] / 2, cols - shape[1] / 2)
    return (radius >= inner) & (radius < outer)


def test_dice_of_known_overlaps() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :] = True  # 4 pixels
    b[0, :2] = True  # 2 pixels, both in a
    assert dice(a, b) == pytest.approx(2 * 2 / 6)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) is None
    with pytest.raises(CorrectionError):
        dice(a, np.zeros((3, 3), bool))


def test_agreement_pools_images_and_measures_t1_and_scar_differences() -> None:
    wall = _ring((32, 32), 6, 10)
    wider = _ring((32, 32), 6, 11)
    scar = wall & (np.indices((32, 32))[1] > 20)
    more_scar = wall & (np.indices((32, 32))[1] > 18)
    t1 = np.where(_ring((32, 32), 10, 11), 1500.0, 1000.0)  # the extra rim is "blood"
    node = {"myo": {"a#1": wall, "b#1": wall}, "scar": {"a#1": scar}}
    reader = {"myo": {"a#1": wider, "b#1": wall}, "scar": {"a#1": more_scar}}
    roles = {MYOCARDIUM_ROLE: "myo", SCAR_ROLE: "scar"}
    found = agreement(node, reader, roles, {"a#1": t1, "b#1": t1})
    expected_myo = 2 * (2 * wall.sum()) / (2 * wall.sum() + wider.sum() + wall.sum())
    assert found.dice["myo"] == pytest.approx(expected_myo)
    assert found.dice["scar"] == pytest.approx(dice(scar, more_scar))
    rim = (wider & ~wall).sum()
    expected_t1 = (1000.0 * (2 * wall.sum()) + 1500.0 * rim) / (2 * wall.sum() + rim) - 1000.0
    assert found.delta_t1_ms == pytest.approx(expected_t1)
    expected_scar = (100 * more_scar.sum() / (wider.sum() + wall.sum())
                     - 100 * scar.sum() / (2 * wall.sum()))
    assert found.delta_scar_percent == pytest.approx(expected_scar)
    assert found.images == 2


def test_drift_fires_only_on_a_drop_of_the_latest_median() -> None:
    steady = [0.85] * 10 + [0.84] * 10
    assert drift(steady) is None
    dropped = [0.85] * 10 + [0.78] * 10
    assert drift(dropped) == pytest.approx((0.85, 0.78))
    assert drift(dropped[:19]) is None, "fewer than two windows: no verdict"
    one_bad = [0.85] * 10 + [0.85] * 9 + [0.1]
    assert drift(one_bad) is None, "the median ignores a single bad case"
    records = [{"station": "MR1", "calling_ae": "A", "agreement": {"dice": {"myo": d}}}
               for d in dropped]
    records.append({"station": "MR2", "calling_ae": "B", "agreement": {"dice": {"myo": 0.5}}})
    scanners = summarise(records)
    assert scanners[("MR1", "A")].count == 20 and "myo" in scanners[("MR1", "A")].drift
    assert scanners[("MR2", "B")].drift == {}


def test_reader_segments_match_by_type_then_region_then_label() -> None:
    blood = ("SCT", "87612001")
    node = {1: Segment(1, "LV blood pool", blood, ("SCT", "LV")),
            2: Segment(2, "LV myocardium", ("SCT", "74281007"), ("SCT", "LV")),
            3: Segment(3, "RV blood pool", blood, ("SCT", "RV"))}
    reader = {7: Segment(7, "rv", blood, ("SCT", "RV")),
              8: Segment(8, "Myo", ("SCT", "74281007"), None),
              9: Segment(9, "lv blood pool", blood, None)}
    assert match_segments(node, reader) == {1: 9, 2: 8, 3: 7}


def test_status_and_metrics_show_a_drifting_scanner(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    from node.catalog.catalog import Catalog
    from node.catalog.series import InstanceRecord
    from node.status.metrics import metrics_text
    from node.status.report import corrections_report, format_report, status_report

    catalog = Catalog(catalog_location)
    catalog.record_instance(InstanceRecord("1.1", "1.3", "1.2", "1.2.840.10008.5.1.4.1.1.4",
                                           None, tmp_path / "a.dcm", 1, "MR1AE", "MR", "T1",
                                           None))
    assert catalog.complete_series("1.3", 0)
    [job_id] = catalog.route_series("1.3", 0, ["t1map"], "test")
    values = [0.85] * 10 + [0.70] * 10
    for i, value in enumerate(values):
        assert catalog.record_correction({
            "sop_instance_uid": f"9.{i}", "series_instance_uid": f"9.{i}", "path": "x",
            "job_id": job_id, "source_series_uid": "1.3", "analysis": "t1map",
            "station": "MR1", "calling_ae": "MR1AE", "reader_ae": "VIEWER", "creator": "R",
            "received_at": 1000.0 + i,
            "agreement": {"dice": {"LV myocardium": value}, "delta_t1_ms": 2.0,
                          "delta_scar_percent": None, "images": 3},
        })
    assert not catalog.record_correction({
        "sop_instance_uid": "9.0", "series_instance_uid": "9.0", "path": "x", "job_id": job_id,
        "source_series_uid": "1.3", "analysis": "t1map", "received_at": 1.0,
        "agreement": {"dice": {}}}), "the same SEG is recorded once"
    assert [r["sop_instance_uid"] for r in catalog.corrections(limit=2)] == ["9.18", "9.19"]
    [scanner] = corrections_report(catalog)
    assert scanner["corrections"] == 20
    assert scanner["median_dice"]["LV myocardium"] == pytest.approx(0.775)
    assert scanner["median_delta_t1_ms"] == 2.0
    assert len(scanner["drift"]) == 1 and "0.700" in scanner["drift"][0]
    text = format_report(status_report(catalog))
    assert "MR1 / MR1AE: 20 corrections" in text and "DRIFT WARNING LV myocardium" in text
    metrics = metrics_text(catalog)
    assert ('cmr_node_correction_drift{station="MR1",calling_ae="MR1AE",'
            'segment="LV myocardium"} 1') in metrics
    catalog.close()


def test_a_reader_seg_is_shown_as_a_correction_not_unrouted(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    import highdicom as hd
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from bench.latency import Completeness, write_t1map_study
    from node.catalog.catalog import Catalog
    from node.catalog.series import InstanceRecord
    from node.routing import load_rules
    from node.service import route_complete_series
    from node.status.report import format_report, status_report

    sources = [dcmread(p) for p in write_t1map_study(31, tmp_path / "t1", Completeness.KNOWN)]
    mask = np.zeros((len(sources), int(sources[0].Rows), int(sources[0].Columns)), bool)
    mask[:, 5:9, 5:9] = True
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=1, segment_label="LV myocardium",
            segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical"),
            segmented_property_type=hd.sr.CodedConcept("74281007", "SCT", "Myocardium"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)],
        series_instance_uid=generate_uid(), series_number=900, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="Viewer", manufacturer_model_name="V",
        software_versions="1", device_serial_number="1")
    path = tmp_path / "reader-seg.dcm"
    seg.save_as(path)
    series_uid = str(seg.SeriesInstanceUID)
    catalog = Catalog(catalog_location)
    catalog.record_instance(InstanceRecord(
        str(seg.SOPInstanceUID), series_uid, str(seg.StudyInstanceUID), str(seg.SOPClassUID),
        None, path, path.stat().st_size, "VIEWER", "SEG", "reader", 1))
    assert catalog.complete_series(series_uid, 0)
    rules = load_rules()
    assert route_complete_series(catalog, rules, frozenset({"t1map", "lge"}), series_uid,
                                 0) == []
    [row] = [s for s in catalog.recent_series() if s["series_instance_uid"] == series_uid]
    assert row["state"] == "correction"
    assert row["route_reason"].startswith("reader correction, unmatched: SEG ")
    assert "references no series the node segmented" in row["route_reason"]
    kinds = [e["kind"] for e in catalog.recent_events()]
    assert "correction_unmatched" in kinds and "unrouted" not in kinds
    text = format_report(status_report(catalog))
    [line] = [t for t in text.splitlines() if series_uid[-20:] in t and "->" in t]
    assert " correction " in line and "-> reader SEG: reader correction, unmatched" in line
    catalog.close()
