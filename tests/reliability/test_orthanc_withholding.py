"""Orthanc mode withholds quoted header values from its reasons, events and logs as the
listener's mode does, and keeps them in reasons and events with ``[node] values_in_reasons``.

The plugin's intake against the fake ``orthanc`` module of tests/orthanc (real DICOM bytes,
Orthanc's REST answers); the value is free text put where a UID belongs, so that the intake's
refusal quotes it.
"""

from __future__ import annotations

import io
import logging
import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread

from node.orthanc.app import register
from node.orthanc.node import IntakeState
from tests.orthanc.conftest import brain_files
from tests.orthanc.fake_orthanc import FakeOrthanc

FREE_TEXT = "Doe^John"


@pytest.mark.parametrize("keep", [False, True], ids=["withheld", "values_in_reasons"])
def test_intake_reasons_events_and_logs_follow_values_in_reasons(
    tmp_path: Path, keep: bool, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path / "node"}"\nwarm_up = "off"\n'
                      f"values_in_reasons = {str(keep).lower()}\n")
    fake = FakeOrthanc(config={"CmrNode": {"Config": str(config)}})
    ds = dcmread(brain_files(tmp_path, seed=31)[0])
    ds.SeriesInstanceUID = FREE_TEXT
    raw = io.BytesIO()
    ds.save_as(raw, enforce_file_format=True)
    _, series_id, _ = fake.add(raw.getvalue())
    caplog.set_level(logging.INFO)
    registration = register(fake, configure_logging=False)
    node = registration.node
    try:
        node.series_stable(series_id)
        item = node.store.claim()
        assert item is not None
        outcome = node.run_intake(item)
        assert outcome is not None and outcome.state == IntakeState.FAILED
        conn = sqlite3.connect(str(node.settings.catalog_path))
        try:
            [(message,)] = conn.execute("SELECT message FROM orthanc_intake").fetchall()
        finally:
            conn.close()
        [event] = [e["message"] for e in node.catalog.recent_events()
                   if e["kind"] == "orthanc_intake_failed"]
        for text in (outcome.message, message, event):
            assert "not a valid DICOM UID" in text
            assert (FREE_TEXT in text) is keep, text
        logged = [r.getMessage() for r in caplog.records if "Orthanc series" in r.getMessage()]
        assert logged and all(FREE_TEXT not in line for line in logged), logged
    finally:
        node.close()
