"""The status views show the few key numbers of a job and its worst QC flag."""

from __future__ import annotations

from node.jobs.worker import _short_summary
from node.status.report import format_report, key_numbers_text

T1_RESULTS = {
    "analysis": "t1map",
    "global": {
        "global_myocardium_t1_mean_ms": {"value": 1012.5, "unit": "ms"},
        "global_myocardium_t1_sd_ms": {"value": 41.0, "unit": "ms"},
        **{f"segment_{i}_t1_mean_ms": {"value": 1000.0 + i, "unit": "ms"} for i in range(1, 17)},
    },
    "qc_flags": [
        {"code": "slices_missing", "severity": "info"},
        {"code": "t1_heterogeneous", "severity": "warning"},
        {"code": "segmentation_uncertain", "severity": "warning"},
    ],
}
LGE_RESULTS = {
    "analysis": "lge",
    "global": {
        "scar_percent_lv_mass": {"value": 12.3},
        "scar_mass_g": {"value": 14.1},
        "lv_myocardium_mass_g": {"value": 115.0},
    },
    "qc_flags": [{"code": "cine_not_used", "severity": "info"},
                 {"code": "no_myocardium", "severity": "failure"}],
}


def test_summary_keeps_key_numbers_and_the_worst_flag() -> None:
    t1 = _short_summary(T1_RESULTS)
    assert t1["key_numbers"] == {"global_myocardium_t1_mean_ms": 1012.5}
    assert t1["worst_flag"] == "t1_heterogeneous (warning)"
    assert len(t1["values"]) == 18  # all values stay for the detailed views
    lge = _short_summary(LGE_RESULTS)
    assert lge["key_numbers"] == {"scar_percent_lv_mass": 12.3, "scar_mass_g": 14.1}
    assert lge["worst_flag"] == "no_myocardium (failure)"
    ecv = _short_summary({"analysis": "ecv", "global": {
        "global_myocardium_ecv_percent": {"value": 27.0},
        "global_myocardium_partition_coefficient": {"value": 0.45}}})
    assert ecv["key_numbers"] == {"global_myocardium_ecv_percent": 27.0}
    assert ecv["worst_flag"] is None


def test_status_text_shows_key_numbers_not_every_measurement() -> None:
    summary = _short_summary(T1_RESULTS)
    text = key_numbers_text(summary)
    assert text == "myocardium_t1_mean_ms=1012.5, worst QC: t1_heterogeneous (warning)"
    report = {
        "version": "x",
        "counts": {"instances": {"stored": 3}, "series": {}, "jobs": {}, "outbox": {}},
        "series": [], "outbox": [], "events": [],
        "jobs": [{"id": 1, "analysis": "t1map", "state": "done", "attempts": 1,
                  "timings": {"total_s": 2.0}, "series_instance_uid": "1.2.3",
                  "summary": summary}],
    }
    job_line = next(line for line in format_report(report).splitlines() if "1.2.3" in line)
    assert "segment_" not in job_line and "sd_ms" not in job_line
    assert "1012.5" in job_line
    # A summary recorded before key numbers were kept: its flag codes only.
    assert key_numbers_text({"values": {"a": 1}, "qc_flags": ["x"]}) == "QC: x"
