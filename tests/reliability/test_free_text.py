"""Free text (descriptions, comments, names) stays out of the node's logs, end to end.

Image Comments, descriptions and names can hold patient information; the logs name UIDs,
states and reasons, never such values (the catalog keeps routing reasons for the status
endpoint, which needs authentication beyond loopback).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from tests.hardening.util import write_brain_series
from tests.netutil import NodeProcess, send_files, wait_for

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
