"""Free text (descriptions, comments, names) stays out of the node's logs and status, end to
end.

Image Comments, descriptions and names can hold patient information; the logs, and the
routing reasons, job errors and events the catalog keeps for the status endpoint, name
UIDs, states, rules and attributes, never such values (unless the debug setting
``[node] values_in_reasons`` asks for them).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_lge import lge_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.lge import make_lge_stack
from tests.hardening.util import write_brain_series
from tests.netutil import NodeProcess, free_port, send_files, wait_for

pytestmark = pytest.mark.e2e

SECRETS = {
    "ImageComments": "SECRET-COMMENT Doe John 1970",
    "SeriesDescription": "localizer SECRET-DESCRIPTION Doe",
    "ProtocolName": "localizer SECRET-PROTOCOL",
    "PatientName": "SECRETNAME" * 8,  # longer than PN allows: pydicom warns, quoting it
}


def test_free_text_attributes_never_reach_the_log(tmp_path: Path) -> None:
    paths = write_brain_series(tmp_path / "in", 51, 2)
    for path in paths:
        ds = dcmread(path)
        for keyword, value in SECRETS.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
    node = NodeProcess(tmp_path / "node", None, stable_age_s=1.0).start(timeout=120)
    try:
        assert send_files(paths, node.port) == [0, 0]
        wait_for(lambda: node.query("SELECT 1 FROM series WHERE state IN ('unrouted','routed')"),
                 60)
    finally:
        node.stop()
    logs = node.log_tail(10_000_000)
    for path in (node.data_dir / "logs").glob("*"):
        logs += path.read_text(errors="replace")
    assert "series" in logs  # the log was written
    for secret in ("SECRET-COMMENT", "SECRET-DESCRIPTION", "SECRET-PROTOCOL", "SECRETNAME"):
        assert secret not in logs, secret


LGE_SECRET = "O'Brien SECRET-LGE-DESCRIPTION"
"""Added to the descriptions, with a quote inside: it must not end the withheld value early."""


def _lge_pair(folder: Path) -> tuple[list[Path], list[Path]]:
    """PSIR and magnitude reconstructions of one LGE stack, LGE_SECRET in their descriptions."""
    rng = np.random.default_rng(5)
    _case, slices = make_lge_stack(rng, n_slices=3, scar_pattern="none")
    study = StudyInfo.synthetic(5)
    series = []
    for contrast in ("psir", "magnitude"):
        datasets = lge_series_datasets(slices, vendor="siemens", study=study, contrast=contrast)
        for ds in datasets:
            ds.SeriesDescription = f"{ds.SeriesDescription} {LGE_SECRET}"
            ds.ImageComments = SECRETS["ImageComments"]
        series.append(write_series(datasets, folder / contrast))
    return series[0], series[1]


def _status(node: NodeProcess) -> dict[str, Any]:
    token = (node.data_dir / "http-token").read_text().strip()
    request = urllib.request.Request(f"http://127.0.0.1:{node.http_port}/status",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


REASON_KEYS = {"route_reason", "error", "message", "last_error"}


def _reasons(report: Any) -> list[str]:
    """Every reason, error and event message in a status report (not the description
    column, which names the series on purpose)."""
    if isinstance(report, dict):
        return [str(v) for k, v in report.items() if k in REASON_KEYS and v] + [
            text for v in report.values() for text in _reasons(v)]
    if isinstance(report, list):
        return [text for v in report for text in _reasons(v)]
    return []


def _reasons_after_pairing(tmp_path: Path, node_config: str) -> tuple[str, str]:
    """The magnitude series' routing reason in the catalog, and every reason in the status,
    after its PSIR partner was routed (worker_count 0: nothing is analysed)."""
    psir, magnitude = _lge_pair(tmp_path / "in")
    node = NodeProcess(tmp_path / "node", None, stable_age_s=1.0, http_port=free_port(),
                       node_config=f"worker_count = 0\n{node_config}").start(timeout=120)
    uid = str(dcmread(magnitude[0], stop_before_pixels=True).SeriesInstanceUID)
    try:
        assert set(send_files(psir, node.port)) == {0}
        wait_for(lambda: node.query("SELECT 1 FROM series WHERE state='routed'"), 60)
        assert set(send_files(magnitude, node.port)) == {0}
        [row] = wait_for(lambda: node.query(
            "SELECT route_reason FROM series WHERE series_instance_uid=? AND state='unrouted'",
            (uid,)), 60)
        return str(row["route_reason"]), "\n".join(_reasons(_status(node)))
    finally:
        node.stop()


def test_routing_reasons_in_the_status_name_rules_not_header_text(tmp_path: Path) -> None:
    reason, status = _reasons_after_pairing(tmp_path, "")
    assert "another reconstruction of the same LGE acquisition" in reason  # the reason is there
    assert reason in status
    for text in (reason, status):
        for secret in ("SECRET-LGE-DESCRIPTION", "Brien", "SECRET-COMMENT"):
            assert secret not in text, secret
    assert "lge: matched by lge/" in status  # the PSIR's rule, by name


def test_header_text_in_reasons_when_the_debug_setting_asks(tmp_path: Path) -> None:
    reason, _status_reasons = _reasons_after_pairing(tmp_path, "values_in_reasons = true")
    assert LGE_SECRET in reason
