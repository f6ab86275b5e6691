"""Faults: the node killed mid-receive and mid-send, disk full, PACS refusing or hanging,
the catalog locked by another process. After each, nothing acknowledged is lost, nothing is
delivered twice under another UID, and the node serves again.

(Killing the node during analysis is ``tests/e2e/test_node_e2e.py``.)
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.hardening.util import (
    OUTPUTS_PER_T1_SERIES,
    FaultyPacs,
    StreamResult,
    configure,
    instance_uids,
    send_stream,
    sop_uid,
    spool_files,
    write_brain_series,
    write_t1_series,
)
from tests.netutil import NodeProcess, PacsScp, wait_for

pytestmark = pytest.mark.e2e

A700 = 0xA700
RESULT_TIMEOUT_S = 120.0


def _outbox(node: NodeProcess) -> list[dict[str, object]]:
    return [dict(r) for r in node.query("SELECT * FROM outbox")]


def _all_sent(node: NodeProcess, n: int = OUTPUTS_PER_T1_SERIES) -> bool:
    rows = _outbox(node)
    return len(rows) >= n and all(r["state"] == "sent" for r in rows)


def _assert_delivered_once(node: NodeProcess, pacs: PacsScp) -> None:
    counts = pacs.count_by_uid()
    outbox_uids = {str(r["sop_instance_uid"]) for r in _outbox(node)}
    assert set(counts) == outbox_uids
    assert all(n == 1 for n in counts.values()), counts
    jobs = node.query("SELECT state, attempts FROM jobs")
    assert [(j["state"], j["attempts"]) for j in jobs] == [("done", 1)]


# ---------------------------------------------------------------------------- SIGKILL


def test_kill_during_receive_keeps_every_acknowledged_instance(tmp_path: Path) -> None:
    paths = write_brain_series(tmp_path / "in", seed=11, n_slices=150)
    node = NodeProcess(tmp_path / "node", None).start()
    try:
        first = StreamResult()
        sender = threading.Thread(target=send_stream, args=(paths, node.port, first))
        sender.start()
        wait_for(lambda: len(first.statuses) >= 40, 60, interval=0.005)
        node.kill()
        sender.join(timeout=60)
        acknowledged = {sop_uid(p) for p in first.acknowledged}
        assert 40 <= len(acknowledged) < len(paths), "the kill did not interrupt the transfer"
        assert first.error is not None

        node.start()
        stored = dict(
            (r["sop_instance_uid"], r["path"])
            for r in node.query("SELECT sop_instance_uid, path FROM instances")
        )
        missing = acknowledged - set(stored)
        assert not missing, f"{len(missing)} acknowledged instances lost"
        for uid in acknowledged:
            assert str(dcmread(stored[uid]).SOPInstanceUID) == uid  # complete, readable

        again = send_stream(paths, node.port, StreamResult())  # the scanner re-sends all
        assert [s for _, s in again.statuses] == [0] * len(paths)
        uids = instance_uids(node)
        assert Counter(uids) == Counter({sop_uid(p): 1 for p in paths})
        assert len(spool_files(node)) == len(paths)
        series = node.query("SELECT instance_count, state FROM series")
        assert [(s["instance_count"]) for s in series] == [len(paths)]
        wait_for(lambda: node.query("SELECT 1 FROM series WHERE state='unrouted'"), 30)
    finally:
        node.stop()


def test_kill_during_sending_delivers_after_restart_with_same_uids(tmp_path: Path) -> None:
    pacs = FaultyPacs(tmp_path / "pacs", delay_s=1.0)
    pacs.start()
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=1.0).start()
    try:
        paths = write_t1_series(tmp_path / "in", seed=21)
        assert [s for _, s in send_stream(paths, node.port, StreamResult()).statuses] == [0] * 3
        wait_for(lambda: len(pacs.received()) >= 1, RESULT_TIMEOUT_S, interval=0.01)
        node.kill()  # the next C-STORE is in progress at the (slow) PACS
        before = dict(pacs.count_by_uid())
        assert len(before) < OUTPUTS_PER_T1_SERIES, "everything was delivered before the kill"
        pacs.delay_s = 0.0
        node.start()
        wait_for(lambda: _all_sent(node), RESULT_TIMEOUT_S)
        time.sleep(1.0)
        counts = pacs.count_by_uid()
        outbox_uids = {str(r["sop_instance_uid"]) for r in _outbox(node)}
        assert set(counts) == outbox_uids, "a re-delivery carried new UIDs"
        assert len(counts) >= OUTPUTS_PER_T1_SERIES
        # Duplicates only where DICOM cannot avoid them: an object the PACS kept while its
        # acknowledgement was lost, or acknowledged before the node could record it.
        assert sum(counts.values()) - len(counts) <= 2, counts
        jobs = node.query("SELECT state, attempts FROM jobs")
        assert [(j["state"], j["attempts"]) for j in jobs] == [("done", 1)], "analysed twice"
    finally:
        node.stop()
        pacs.stop()


# ---------------------------------------------------------------------------- disk full


@contextlib.contextmanager
def _tmpfs(path: Path, size_mb: int) -> Iterator[bool]:
    """A tmpfs of ``size_mb`` at ``path``; yields False when mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )
    try:
        yield proc.returncode == 0
    finally:
        if proc.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the file system is full; returns it."""
    filler = folder / "filler.bin"
    block = b"\0" * (256 * 1024)
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError), filler.open("ab") as fh:  # the last pages, byte-wise
        for _ in range(1 << 20):
            fh.write(b"\0" * 512)
            fh.flush()
    return filler


def test_disk_full_answers_out_of_resources_and_resumes(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", None)
    with _tmpfs(node.data_dir, 24) as mounted:
        if not mounted:  # not root: the free-space threshold stands in for a full disk
            configure(node, replace={"min_free_disk_mb = 1": "min_free_disk_mb = 100000000"})
        else:
            configure(node, replace={"min_free_disk_mb = 1": "min_free_disk_mb = 0"})
        node.start()
        try:
            good = write_brain_series(tmp_path / "in", seed=31, n_slices=4)
            refused = write_brain_series(tmp_path / "in", seed=32, n_slices=6)
            if mounted:
                assert [s for _, s in send_stream(good, node.port, StreamResult()).statuses] \
                    == [0] * 4
                filler = _fill(node.data_dir)
            result = send_stream(refused, node.port, StreamResult())
            assert [s for _, s in result.statuses] == [A700] * len(refused), result
            assert node.echo_ok()
            refused_uids = {sop_uid(p) for p in refused}
            assert not refused_uids & set(instance_uids(node)), "refused but recorded"
            good_uids = {sop_uid(g) for g in good}
            spool = node.data_dir / "spool"
            leftovers = [
                p for p in (spool.rglob("*") if spool.exists() else [])
                if p.is_file() and sop_uid_of_spool(p) not in good_uids
            ]
            assert leftovers == [], "half-stored files left in the spool"

            if mounted:
                filler.unlink()  # space returns
            else:
                node.stop()
                configure(node)
                node.start()
            again = send_stream(refused, node.port, StreamResult())
            assert [s for _, s in again.statuses] == [0] * len(refused)
            assert refused_uids <= set(instance_uids(node))
            wait_for(
                lambda: node.query(
                    "SELECT 1 FROM series WHERE state='unrouted' AND instance_count=?",
                    (len(refused),),
                ),
                30,
            )
            # While the disk was full the catalog could not record the refusals; the log has them.
            reason = "node disk full" if mounted else "node disk space below limit"
            assert reason in node.log_tail(10**7)
        finally:
            node.stop()


def sop_uid_of_spool(path: Path) -> str | None:
    """SOP Instance UID of a spool file, None when it is not a readable DICOM file."""
    try:
        return sop_uid(path)
    except Exception:
        return None


# ---------------------------------------------------------------------------- PACS faults


def test_pacs_refusing_then_accepting_gets_each_output_once(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs", status=A700).start()
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=1.0).start()
    try:
        paths = write_t1_series(tmp_path / "in", seed=41)
        assert [s for _, s in send_stream(paths, node.port, StreamResult()).statuses] == [0] * 3

        def refused_with(code: int, attempts: int) -> bool:
            rows = _outbox(node)
            return len(rows) >= OUTPUTS_PER_T1_SERIES and all(
                r["state"] == "pending" and r["last_status"] == code
                and int(r["attempts"]) >= attempts  # type: ignore[call-overload]
                for r in rows
            )

        wait_for(lambda: refused_with(A700, 2), RESULT_TIMEOUT_S)
        pacs.status = 0xC000
        wait_for(lambda: refused_with(0xC000, 3), 60)
        assert pacs.received() == []
        pacs.status = 0x0000
        wait_for(lambda: _all_sent(node), 60)
        time.sleep(1.0)
        _assert_delivered_once(node, pacs)
    finally:
        node.stop()
        pacs.stop()


def test_pacs_timing_out_then_recovering_gets_each_output_once(tmp_path: Path) -> None:
    pacs = FaultyPacs(tmp_path / "pacs")
    pacs.hang.set()
    pacs.start()
    node = configure(
        NodeProcess(tmp_path / "node", pacs.port, stable_age_s=1.0),
        replace={"network_timeout_s = 10": "network_timeout_s = 2"},
    ).start()
    try:
        paths = write_t1_series(tmp_path / "in", seed=51)
        assert [s for _, s in send_stream(paths, node.port, StreamResult()).statuses] == [0] * 3
        wait_for(
            lambda: pacs.hung_requests >= 2
            and any("no response" in str(r["last_error"]) for r in _outbox(node)),
            RESULT_TIMEOUT_S,
        )
        assert all(r["state"] == "pending" for r in _outbox(node))
        pacs.hang.clear()
        wait_for(lambda: _all_sent(node), 60)
        time.sleep(1.0)
        _assert_delivered_once(node, pacs)
    finally:
        node.stop()
        pacs.stop()


# ---------------------------------------------------------------------------- SQLite locked

LOCK_SCRIPT = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO events(at, kind, message) VALUES (?, 'test_lock', 'held')",
             (time.time(),))
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
print("released", flush=True)
"""
LOCK_HOLD_S = 5.0


def test_catalog_locked_by_another_process_never_acknowledges_unstored(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", None).start()
    try:
        paths = write_brain_series(tmp_path / "in", seed=61, n_slices=4)
        catalog = node.data_dir / "catalog.sqlite3"
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCK_SCRIPT, str(catalog), str(LOCK_HOLD_S)],
            stdout=subprocess.PIPE, text=True,
        )
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        started = time.monotonic()
        result = send_stream(paths[:2], node.port, StreamResult())
        elapsed = time.monotonic() - started
        locker.wait(timeout=30)
        stored = set(instance_uids(node))
        for path, status in result.statuses:
            assert status in (0, A700), status
            if status == 0:
                assert sop_uid(path) in stored, "Success answered for an unstored instance"
            else:
                assert sop_uid(path) not in stored
        assert len(result.statuses) == 2
        assert elapsed >= LOCK_HOLD_S * 0.8 or any(s != 0 for _, s in result.statuses)
        # Recovered: the rest goes through at once.
        again = send_stream(paths, node.port, StreamResult())
        assert [s for _, s in again.statuses] == [0] * len(paths)
        assert {sop_uid(p) for p in paths} <= set(instance_uids(node))
        assert node.echo_ok()
    finally:
        node.stop()
