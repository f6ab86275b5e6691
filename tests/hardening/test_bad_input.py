"""Bad input: every case of the generated corpus gets a clear DICOM status or a recorded
reason; none crashes the node or stalls the queue; a good series still goes through after.
Also a PACS that answers with warnings: outputs count as delivered, once, warning kept."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.corpus import CorpusCase, build_corpus, corpus_uids
from tests.hardening.util import (
    OUTPUTS_PER_T1_SERIES,
    StreamResult,
    send_stream,
    write_t1_series,
)
from tests.netutil import NodeProcess, PacsScp, wait_for

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 180.0
WARNING = 0xB000


@pytest.fixture()
def pacs(tmp_path: Path) -> Iterator[PacsScp]:
    server = PacsScp(tmp_path / "pacs").start()
    yield server
    server.stop()


def _settled(node: NodeProcess) -> bool:
    busy = node.query("SELECT 1 FROM jobs WHERE state IN ('queued', 'running')")
    receiving = node.query("SELECT 1 FROM series WHERE state = 'receiving'")
    pending = node.query("SELECT 1 FROM outbox WHERE state != 'sent'")
    return not (busy or receiving or pending)


def test_corpus_gets_clear_answers_and_queue_keeps_flowing(
    tmp_path: Path, pacs: PacsScp
) -> None:
    cases = build_corpus(tmp_path / "corpus")
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=1.0).start()
    try:
        answers: dict[str, list[int | None]] = {}
        for case in cases:
            result = send_stream(case.paths, node.port, StreamResult(), raw=case.raw)
            answers[case.name] = [s for _, s in result.statuses]
            assert result.error is None, (case.name, result.error)
            assert node.echo_ok(), f"node stopped answering after {case.name}"
        unclear = {
            name: codes for name, codes in answers.items()
            if not set(codes) <= next(c.allowed for c in cases if c.name == name)
        }
        assert unclear == {}, f"statuses outside the clear answers: {unclear}"

        good = write_t1_series(tmp_path / "good", seed=777)
        assert [s for _, s in send_stream(good, node.port, StreamResult()).statuses] == [0] * 3
        wait_for(lambda: _settled(node) and len(pacs.count_by_uid()) >= 3, SETTLE_TIMEOUT_S)
        assert node.proc is not None and node.proc.poll() is None, "node died"

        _check_outcomes(node, cases, answers)
        good_series = node.query(
            "SELECT j.state FROM jobs j JOIN instances i"
            " ON i.series_instance_uid = j.series_instance_uid WHERE i.sop_instance_uid = ?",
            (corpus_uids(CorpusCase("good", good, frozenset()))[0],),
        )
        assert {r["state"] for r in good_series} == {"done"}
        counts = pacs.count_by_uid()
        assert all(n == 1 for n in counts.values()), counts
    finally:
        node.stop()


def _check_outcomes(
    node: NodeProcess, cases: list[CorpusCase], answers: dict[str, list[int | None]]
) -> None:
    """A refused instance has a recorded refusal; a stored one ends in a recorded outcome."""
    refusals = " ".join(
        r["message"] for r in node.query("SELECT message FROM events WHERE kind='store_refused'")
    )
    stored = {
        r["sop_instance_uid"]: r["series_instance_uid"]
        for r in node.query("SELECT sop_instance_uid, series_instance_uid FROM instances")
    }
    series = {r["series_instance_uid"]: dict(r) for r in node.query("SELECT * FROM series")}
    jobs: dict[str, list[dict[str, object]]] = {}
    for r in node.query("SELECT * FROM jobs"):
        jobs.setdefault(r["series_instance_uid"], []).append(dict(r))
    for case in cases:
        for uid, status in zip(corpus_uids(case), answers[case.name], strict=True):
            outcome = _describe(status, uid, stored, series, jobs)
            logger.info("corpus %-26s 0x%04X %s", case.name, status or 0, outcome)
            if status != 0:
                assert uid is not None and uid in refusals, (case.name, "refusal not recorded")
                assert uid not in stored, f"{case.name}: refused but recorded"
                continue
            assert uid in stored, f"{case.name}: Success without a catalog row"
            row = series[stored[uid]]
            if row["state"] == "unrouted":
                assert row["route_reason"], f"{case.name}: not routed without a reason"
                continue
            assert row["state"] == "routed", (case.name, row["state"])
            assert case.analysable, f"{case.name} was routed to {row['analysis']}"
            for job in jobs[stored[uid]]:
                assert job["state"] in ("done", "failed", "superseded"), (case.name, job)
                if job["state"] == "failed":
                    assert job["error"], f"{case.name}: failed without a reason"


def _describe(
    status: int | None,
    uid: str | None,
    stored: dict[str, str],
    series: dict[str, dict[str, object]],
    jobs: dict[str, list[dict[str, object]]],
) -> str:
    """One line on what became of an instance (for the log of the corpus run)."""
    if status != 0 or uid not in stored:
        return "refused"
    row = series[stored[uid]]
    if row["state"] != "routed":
        return f"{row['state']}: {str(row['route_reason'])[:60]}"
    return "; ".join(f"{j['state']} {str(j['error'] or '')[:60]}" for j in jobs[stored[uid]])


def test_pacs_answering_warning_counts_as_delivered_once(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs", status=WARNING).start()
    node = NodeProcess(tmp_path / "node", pacs.port, stable_age_s=1.0).start()
    try:
        good = write_t1_series(tmp_path / "good", seed=778)
        assert [s for _, s in send_stream(good, node.port, StreamResult()).statuses] == [0] * 3
        wait_for(lambda: _settled(node) and node.query("SELECT 1 FROM outbox"),
                 SETTLE_TIMEOUT_S)
        time.sleep(1.0)
        rows = node.query("SELECT state, attempts, last_status, last_error FROM outbox")
        assert len(rows) >= OUTPUTS_PER_T1_SERIES
        assert all(r["state"] == "sent" and r["last_status"] == WARNING for r in rows)
        assert all("B000" in str(r["last_error"]) for r in rows), [dict(r) for r in rows]
        counts = pacs.count_by_uid()
        assert len(counts) == len(rows) and set(counts.values()) == {1}
    finally:
        node.stop()
        pacs.stop()
