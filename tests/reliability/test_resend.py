"""Re-sends after a series was analysed, and deliveries cut by kill -9, end to end.

A newer generation of a series that fails must leave the older good result in place (its
outputs still delivered); a re-sent slice gets a readable outcome; a delivery interrupted
after the PACS stored the object leaves a record of the attempt.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.hardening.util import OUTPUTS_PER_T1_SERIES, write_t1_series
from tests.netutil import NodeProcess, PacsScp, free_port, send_files, wait_for

pytestmark = pytest.mark.e2e

RESULT_TIMEOUT_S = 180.0


def _jobs(node: NodeProcess) -> list[dict[str, Any]]:
    return [dict(r) for r in node.query(
        "SELECT id, generation, state, attempts, error FROM jobs ORDER BY generation, id")]


def _outbox(node: NodeProcess, generation: int) -> list[dict[str, Any]]:
    return [dict(r) for r in node.query(
        "SELECT o.* FROM outbox o JOIN jobs j ON j.id=o.job_id WHERE j.generation=?",
        (generation,))]


def _odd_slice(source: Path, target: Path) -> Path:
    """A new slice of the series at another position, with half the matrix size."""
    ds = dcmread(source)
    pixels = ds.pixel_array[::2, ::2].copy()
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(pixels.dtype).tobytes()
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + 80.0]
    ds.save_as(target, enforce_file_format=True)
    return target


def _same_position_new_uid(source: Path, target: Path) -> Path:
    """The slice sent again under a new SOP Instance UID (same position, same pixels)."""
    ds = dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(target, enforce_file_format=True)
    return target


def test_a_failing_newer_generation_keeps_the_good_result_delivered(tmp_path: Path) -> None:
    paths = write_t1_series(tmp_path / "in", seed=4101)
    pacs_port = free_port()  # the PACS is down at first: outputs stay pending
    node = NodeProcess(tmp_path / "node", pacs_port, stable_age_s=2.0).start(timeout=120)
    pacs: PacsScp | None = None
    try:
        assert send_files(paths, node.port) == [0] * len(paths)
        wait_for(lambda: any(j["state"] == "done" for j in _jobs(node))
                 and all(o["attempts"] >= 1 for o in _outbox(node, 0))
                 and len(_outbox(node, 0)) >= OUTPUTS_PER_T1_SERIES, RESULT_TIMEOUT_S)

        odd = _odd_slice(paths[0], tmp_path / "odd.dcm")
        assert send_files([odd], node.port) == [0]
        wait_for(lambda: any(j["generation"] == 1 and j["state"] == "failed"
                             for j in _jobs(node)), RESULT_TIMEOUT_S)
        [failed] = [j for j in _jobs(node) if j["generation"] == 1]
        assert "different sizes" in failed["error"]
        assert {o["state"] for o in _outbox(node, 0)} == {"pending"}, "good outputs dropped"
        assert [j["state"] for j in _jobs(node) if j["generation"] == 0] == ["done"]
        kept = node.query("SELECT message FROM events WHERE kind='result_kept'")
        assert kept and "stays current" in kept[0]["message"]

        pacs = PacsScp(tmp_path / "pacs", port=pacs_port).start()
        wait_for(lambda: {o["state"] for o in _outbox(node, 0)} == {"sent"}, RESULT_TIMEOUT_S)
        delivered = pacs.count_by_uid()
        assert set(delivered) == {o["sop_instance_uid"] for o in _outbox(node, 0)}
    finally:
        node.stop()
        if pacs is not None:
            pacs.stop()


def test_a_slice_resent_under_a_new_uid_never_replaces_the_result_by_a_failure(
    tmp_path: Path,
) -> None:
    """With the loader's newest-image-per-position (another branch) generation 1 is done;
    without it, it fails at once with a readable reason and generation 0 stays."""
    paths = write_t1_series(tmp_path / "in", seed=4102)
    pacs = PacsScp(tmp_path / "pacs").start()
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start(timeout=120)
    try:
        assert send_files(paths, node.port) == [0] * len(paths)
        wait_for(lambda: _outbox(node, 0) and {o["state"] for o in _outbox(node, 0)} == {"sent"},
                 RESULT_TIMEOUT_S)
        first_delivery = dict(pacs.count_by_uid())

        again = _same_position_new_uid(paths[1], tmp_path / "again.dcm")
        assert send_files([again], node.port) == [0]
        wait_for(lambda: any(j["generation"] == 1 and j["state"] in ("done", "failed")
                             for j in _jobs(node)), RESULT_TIMEOUT_S)
        [newer] = [j for j in _jobs(node) if j["generation"] == 1]
        if newer["state"] == "failed":
            assert newer["attempts"] == 1, "a writer error is not worth retrying"
            assert "share one slice position" in newer["error"]
            assert [j["state"] for j in _jobs(node) if j["generation"] == 0] == ["done"]
            assert node.query("SELECT 1 FROM events WHERE kind='result_kept'")
            assert pacs.count_by_uid() == first_delivery
        else:
            wait_for(lambda: {o["state"] for o in _outbox(node, 1)} == {"sent"},
                     RESULT_TIMEOUT_S)
    finally:
        node.stop()
        pacs.stop()


@dataclasses.dataclass
class _StoresThenStalls(PacsScp):
    """A PACS that keeps the object, then takes long to answer (a kill -9 lands between)."""

    stall_s: float = 60.0
    released: threading.Event = dataclasses.field(default_factory=threading.Event)

    def _on_store(self, event: Any) -> int:
        status = super()._on_store(event)
        self.released.wait(self.stall_s)
        return status


def test_a_delivery_cut_by_kill_leaves_a_record_of_the_attempt(tmp_path: Path) -> None:
    paths = write_t1_series(tmp_path / "in", seed=4103)
    pacs = _StoresThenStalls(tmp_path / "pacs").start()
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=2.0).start(timeout=120)
    try:
        assert send_files(paths, node.port) == [0] * len(paths)
        wait_for(lambda: len(pacs.received()) >= 1, RESULT_TIMEOUT_S, interval=0.05)
        started = time.time()
        node.kill()
        stored = pacs.received()[0].sop_instance_uid
        [row] = [o for o in _outbox(node, 0) if o["sop_instance_uid"] == stored]
        assert row["state"] == "pending"
        assert row["attempts"] == 1
        assert row.get("attempt_started_at") is not None
        assert row["attempt_started_at"] <= started
        assert "no answer recorded" in row["last_error"]
    finally:
        pacs.released.set()
        node.stop()
        pacs.stop()

