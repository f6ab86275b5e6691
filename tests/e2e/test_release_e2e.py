"""End to end: a series is complete when the scanner releases the association that sent it.

The node runs as its own process with ``stable_age_s = 30`` (the default), so a series that
completes within a few seconds of its release completed by the release, not by the quiet-time
fallback. The scanner is a pynetdicom association driven step by step (store, release, abort).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from node.network.dimse import NoDelayAE
from tests.netutil import NodeProcess, PacsScp, wait_for

pytestmark = pytest.mark.e2e

STABLE_AGE_S = 30.0
#: Bound on release -> series complete, far under STABLE_AGE_S (not a timing target: the
#: node's grace is 2 s, the rest is slack for a loaded CI machine).
RELEASED_WITHIN_S = 15.0
#: Bound on analysis and delivery (the machine may be loaded; not a timing target).
RESULT_TIMEOUT_S = 120.0
#: How long a series that must not be complete yet is watched.
NOT_YET_S = 6.0
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _t1map_series(tmp: Path, seed: int) -> list[Path]:
    """A 3-slice MOLLI T1 map series without ImagesInAcquisition (no count in the headers)."""
    rng = np.random.default_rng(seed)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, levels=("basal", "mid", "apical"),
                                 heart=heart)
    datasets = t1map_series_datasets(slices, vendor="siemens", field_strength_t=1.5, rng=rng,
                                     study=StudyInfo.synthetic(seed))
    for ds in datasets:
        if "ImagesInAcquisition" in ds:
            del ds.ImagesInAcquisition
    return list(write_series(datasets, tmp / f"series-{seed}"))


def _series_uid(paths: list[Path]) -> str:
    return str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)


class Scanner:
    """One association to the node, driven step by step."""

    def __init__(self, node: NodeProcess, paths: list[Path]) -> None:
        ae = NoDelayAE(ae_title="SCANNER")
        for sop_class in sorted({str(dcmread(p, stop_before_pixels=True).SOPClassUID)
                                 for p in paths}):
            ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1"])
        self.assoc: Any = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
        assert self.assoc.is_established

    def send(self, *paths: Path) -> None:
        for path in paths:
            status = self.assoc.send_c_store(path)
            assert int(status.Status) == 0

    def release(self) -> float:
        self.assoc.release()
        return time.time()

    def abort(self) -> float:
        self.assoc.abort()
        return time.time()


def _completed_at(node: NodeProcess, series_uid: str) -> float | None:
    rows = node.query("SELECT state, completed_at FROM series WHERE series_instance_uid=?",
                      (series_uid,))
    if not rows or rows[0]["state"] == "receiving":
        return None
    return float(rows[0]["completed_at"])


def _delivered(node: NodeProcess, generation: int) -> int:
    """Outputs delivered by the done job of ``generation`` once all are sent (else 0)."""
    rows = node.query(
        "SELECT o.state FROM outbox o JOIN jobs j ON o.job_id = j.id"
        " WHERE j.generation=? AND j.state='done'", (generation,))
    return len(rows) if rows and all(r["state"] == "sent" for r in rows) else 0


def _wait_completed(node: NodeProcess, series_uid: str, timeout: float) -> float:
    return float(wait_for(lambda: _completed_at(node, series_uid), timeout, interval=0.1))


@pytest.fixture()
def node(tmp_path: Path, pacs: PacsScp) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=STABLE_AGE_S).start()
    yield proc
    proc.stop()


def test_released_series_without_count_reaches_pacs_long_before_stable_age(
    tmp_path: Path, node: NodeProcess, pacs: PacsScp
) -> None:
    paths = _t1map_series(tmp_path, 501)
    scanner = Scanner(node, paths)
    scanner.send(*paths)
    released = scanner.release()
    uid = _series_uid(paths)
    assert _wait_completed(node, uid, RELEASED_WITHIN_S) - released < RELEASED_WITHIN_S
    assert "3 instances, association released" in node.log_tail(100_000)
    # The analysis time depends on the machine's load, so only its arrival is awaited.
    n_outputs = wait_for(lambda: _delivered(node, 0), RESULT_TIMEOUT_S, interval=0.1)
    assert len(pacs.received()) == n_outputs
    assert any(r.sop_class_uid == SEG_CLASS for r in pacs.received())


def test_several_series_in_one_association_each_complete_on_release(
    tmp_path: Path, node: NodeProcess
) -> None:
    first, second = _t1map_series(tmp_path, 502), _t1map_series(tmp_path, 503)
    scanner = Scanner(node, first + second)
    scanner.send(*first, *second)
    released = scanner.release()
    for paths in (first, second):
        assert _wait_completed(node, _series_uid(paths), RELEASED_WITHIN_S) - released < (
            RELEASED_WITHIN_S
        )


def test_series_over_two_associations_completes_only_after_both_released(
    tmp_path: Path, node: NodeProcess
) -> None:
    paths = _t1map_series(tmp_path, 504)
    uid = _series_uid(paths)
    one, two = Scanner(node, paths), Scanner(node, paths)
    one.send(paths[0])
    two.send(paths[1])
    one.release()
    time.sleep(NOT_YET_S)
    assert _completed_at(node, uid) is None, "complete while another association carried it"
    two.send(paths[2])
    released = two.release()
    assert _wait_completed(node, uid, RELEASED_WITHIN_S) - released < RELEASED_WITHIN_S
    rows = node.query("SELECT COUNT(*) AS n FROM instances WHERE series_instance_uid=?", (uid,))
    assert rows[0]["n"] == 3


def test_aborted_association_leaves_the_series_to_the_quiet_time(
    tmp_path: Path, pacs: PacsScp
) -> None:
    stable_age = 10.0
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=stable_age).start()
    try:
        paths = _t1map_series(tmp_path, 505)
        uid = _series_uid(paths)
        scanner = Scanner(node, paths)
        scanner.send(*paths)
        last_stored = time.time()
        scanner.abort()
        time.sleep(NOT_YET_S)
        assert _completed_at(node, uid) is None, "an aborted transfer completed the series"
        completed = _wait_completed(node, uid, stable_age + RELEASED_WITHIN_S)
        assert completed - last_stored >= stable_age * 0.9
    finally:
        node.stop()


def test_late_instance_after_release_reopens_and_replaces_outputs(
    tmp_path: Path, node: NodeProcess, pacs: PacsScp
) -> None:
    paths = _t1map_series(tmp_path, 506)
    first = Scanner(node, paths)
    first.send(*paths[:2])
    first.release()
    n_first = wait_for(lambda: _delivered(node, 0), RESULT_TIMEOUT_S, interval=0.1)
    first_uids = set(pacs.count_by_uid())
    assert len(pacs.received()) == n_first
    late = Scanner(node, paths)
    late.send(paths[2])
    released = late.release()
    reopened = wait_for(lambda: node.query(
        "SELECT completed_at FROM series WHERE series_instance_uid=? AND generation=1"
        " AND state!='receiving'", (_series_uid(paths),)), RELEASED_WITHIN_S, interval=0.1)
    assert float(reopened[0]["completed_at"]) - released < RELEASED_WITHIN_S
    assert wait_for(lambda: _delivered(node, 1), RESULT_TIMEOUT_S, interval=0.1) == n_first
    # A re-analysis is a new generation with new UIDs (node.outputs.uids: a PACS keeping the first
    # copy of a UID would keep the stale objects); the earlier ones stay.
    new_uids = set(pacs.count_by_uid()) - first_uids
    assert len(new_uids) == len(first_uids), "re-analysis did not send a new set of objects"
    seg = next(ds for uid, ds in pacs.latest_by_uid().items()
               if str(ds.SOPClassUID) == SEG_CLASS and uid in new_uids)
    referenced = {
        str(ref.ReferencedSOPInstanceUID)
        for frame in seg.PerFrameFunctionalGroupsSequence
        for item in frame.DerivationImageSequence
        for ref in item.SourceImageSequence
    }
    late_uid = str(dcmread(paths[2], stop_before_pixels=True).SOPInstanceUID)
    assert late_uid in referenced
    jobs = node.query("SELECT generation, state FROM jobs ORDER BY id")
    assert [(r["generation"], r["state"]) for r in jobs] == [(0, "done"), (1, "done")]


def test_series_of_breath_hold_acquisitions_is_not_completed_by_one_acquisitions_count(
    tmp_path: Path, node: NodeProcess
) -> None:
    """ImagesInAcquisition counts one acquisition's images (PS3.3 C.7.6.1): a T1 map acquired
    one breath-hold per slice announces 1 on each slice. Sent in one association, the series
    must complete once, with its three slices, at the release — not after its first slice,
    re-opened by each of the others."""
    paths = _t1map_series(tmp_path, 507)
    for number, path in enumerate(paths, start=1):
        ds = dcmread(path)
        ds.ImagesInAcquisition = 1
        ds.AcquisitionNumber = number
        ds.save_as(path)
    uid = _series_uid(paths)
    scanner = Scanner(node, paths)
    scanner.send(*paths)
    time.sleep(NOT_YET_S)  # the association stays open, longer than the count grace
    assert _completed_at(node, uid) is None, "completed by one acquisition's count"
    released = scanner.release()
    assert _wait_completed(node, uid, RELEASED_WITHIN_S) - released < RELEASED_WITHIN_S
    rows = node.query("SELECT generation, instance_count FROM series WHERE series_instance_uid=?",
                      (uid,))
    assert [(r["generation"], r["instance_count"]) for r in rows] == [(0, 3)]
    assert node.query("SELECT * FROM events WHERE kind='series_reopened'") == []
