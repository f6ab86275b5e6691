"""The command line: offline ``analyse`` (the entry point the project is judged with),
``route`` dry runs and ``status``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli.main import main
from tests.netutil import REPO, dciodvfy_errors

#: Per-slice tolerance of myocardial mean T1 against the phantom's tissue T1 when the slice
#: carries no warning flag; see tests/e2e/test_node_e2e.py for the justification.
T1_TOLERANCE_MS = 25.0


def _study(out: Path, vendor: str, seed: int, field: float = 1.5) -> dict:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "models.phantoms",
            "--out",
            str(out),
            "--vendor",
            vendor,
            "--seed",
            str(seed),
            "--field",
            str(field),
            "--with-negatives",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return json.loads((out / "truth.json").read_text())


@pytest.mark.parametrize(
    "vendor, seed, field", [("siemens", 11, 1.5), ("philips", 12, 3.0), ("ge", 13, 1.5)]
)
def test_analyse_writes_outputs_and_results_and_explains_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vendor: str, seed: int, field: float
) -> None:
    truth = _study(tmp_path / "in", vendor, seed, field)
    out = tmp_path / "out"
    assert main(["analyse", str(tmp_path / "in"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "cmr-node/results/1"
    by_uid = {s["series_instance_uid"]: s for s in results["series"]}
    expected_series = truth["series"]
    assert len(by_uid) == len(expected_series)

    analysed = [s for s in results["series"] if s["status"] == "analysed"]
    skipped = [s for s in results["series"] if s["status"] == "skipped"]
    routed = {s["series_instance_uid"]: s["expected_analysis"] for s in expected_series
              if s.get("expected_analysis")}
    # The T1 map, the MOLLI source images the node fits itself, the post-contrast map (ECV)
    # and the T2 map.
    assert sorted(routed.values()) == ["ecv", "molli", "t1map", "t2map"]
    assert {s["series_instance_uid"]: s["analysis"] for s in analysed} == routed
    assert len(skipped) == len(expected_series) - len(routed)
    for s in skipped:
        assert s["reason"], s
        assert f"'{s['series_description']}'" in printed
    expected = [s for s in expected_series if s.get("expected_analysis") == "t1map"]
    entry = next(s for s in analysed if s["analysis"] == "t1map")
    assert entry["analysis"] == "t1map"
    assert entry["provenance"]["algorithm_name"] and entry["provenance"]["algorithm_version"]
    truth_by_sop = {i["sop_instance_uid"]: i for i in expected[0]["instances"]}
    assert {s["sop_instance_uid"] for s in entry["slices"]} == set(truth_by_sop)
    for s in entry["slices"]:
        t = truth_by_sop[s["sop_instance_uid"]]
        assert s["level"] == t["level"]
        mean = s["measurements"]["myocardium_t1_mean_ms"]["value"]
        warned = any(f["severity"] in ("warning", "failure") for f in s["qc_flags"])
        if not warned:
            # Against what an expert's mid-wall region reads on the noise-free map.
            expected = t["truth"]["myocardium_t1_midwall_map_ms"]
            assert abs(mean - expected) <= T1_TOLERANCE_MS, (s["level"], mean, expected)
    assert entry["global"]["global_myocardium_t1_mean_ms"]["unit"] == "ms"
    for kind, item in entry["outputs"].items():
        path = out / item["file"]
        assert path.exists(), kind
        assert dciodvfy_errors(path) == [], (kind, path)
    assert f"{len(routed)} of" in printed and "series analysed" in printed


def test_analyse_of_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["analyse", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_analyse_keeps_going_past_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = tmp_path / "in"
    _study(inp, "siemens", 21)
    (inp / "garbage.dcm").write_bytes(b"not dicom at all")
    out = tmp_path / "out"
    assert main(["analyse", str(inp), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "garbage.dcm: not a readable DICOM file" in printed
    results = json.loads((out / "results.json").read_text())
    assert sum(s["status"] == "analysed" for s in results["series"]) == 4  # T1, MOLLI, ECV, T2


def test_route_explains_each_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _study(tmp_path / "in", "siemens", 31)
    assert main(["route", str(tmp_path / "in")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("== series") == 6
    assert "t1map" in printed and "post-contrast" in printed.lower()


def test_status_reads_the_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node.catalog.catalog import Catalog
    from tests.node.test_catalog import _record

    cat = Catalog(tmp_path / "data" / "catalog.sqlite3")
    cat.record_instance(_record(tmp_path, "1.1"))
    cat.complete_series("1.2.3", 0)
    cat.route_series("1.2.3", 0, [], "t1map: not identified")
    cat.close()
    assert main(["status", "--data-dir", str(tmp_path / "data")]) == 0
    text = capsys.readouterr().out
    assert "unrouted" in text and "t1map: not identified" in text
    assert main(["status", "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["series"] == {"unrouted": 1}
    assert main(["status", "--data-dir", str(tmp_path / "empty")]) == 1


def test_a_bad_rules_file_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'extends = "default"\n[[t1map.identify]]\nid = "x"\n'
        'attribute = "NoSuchKeyword"\nregex = "a"\n'
    )
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nrules_file = "{rules}"\n')
    assert main(["route", str(tmp_path), "--config", str(config)]) == 2
    assert "configuration error" in capsys.readouterr().err
