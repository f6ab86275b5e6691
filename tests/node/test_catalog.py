"""The catalog's state machine: series generations, job supersession, outbox delivery."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from node.catalog.catalog import Catalog
from node.catalog.job_queue import OutputFile
from node.catalog.series import InstanceRecord
from tests.pgutil import PostgresServer


def _record(
    tmp: Path, sop: str, series: str = "1.2.3", expected: int | None = None
) -> InstanceRecord:
    return InstanceRecord(
        sop_instance_uid=sop,
        series_instance_uid=series,
        study_instance_uid="1.2",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        path=tmp / f"{sop}.dcm",
        size_bytes=10,
        calling_aet="SCANNER",
        modality="MR",
        series_description="T1MAP",
        expected_count=expected,
    )


def test_series_counts_and_reopens_with_new_generation(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    cat = Catalog(catalog_location)
    s1 = cat.record_instance(_record(tmp_path, "1.1", expected=2))
    s2 = cat.record_instance(_record(tmp_path, "1.2"))
    assert (s1.instance_count, s2.instance_count, s2.expected_count) == (1, 2, 2)
    assert cat.complete_series("1.2.3", 0)
    assert not cat.complete_series("1.2.3", 0), "completing twice must be refused"
    late = cat.record_instance(_record(tmp_path, "1.3"))
    assert late.reopened and late.generation == 1 and late.instance_count == 3
    assert not cat.complete_series("1.2.3", 0), "a stale timer must not complete generation 1"
    assert cat.complete_series("1.2.3", 1)


def test_resent_instance_is_counted_once(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    cat = Catalog(catalog_location)
    cat.record_instance(_record(tmp_path, "1.1"))
    state = cat.record_instance(_record(tmp_path, "1.1"))
    assert state.instance_count == 1


def test_newer_generation_supersedes_queued_job_and_running_job_outputs(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    cat = Catalog(catalog_location)
    cat.record_instance(_record(tmp_path, "1.1"))
    cat.complete_series("1.2.3", 0)
    [job0] = cat.route_series("1.2.3", 0, ["t1map"], "matched")
    claimed = cat.claim_job()
    assert claimed is not None and claimed.id == job0 and claimed.attempts == 1
    cat.record_instance(_record(tmp_path, "1.2"))
    cat.complete_series("1.2.3", 1)
    [job1] = cat.route_series("1.2.3", 1, ["t1map"], "matched")
    out = OutputFile(tmp_path / "seg.dcm", "9.9", "1.2.840.10008.5.1.4.1.1.66.4", "seg")
    queued = cat.finish_job(claimed, [out], ["pacs"], result_dir=tmp_path, timings={}, summary={})
    assert not queued, "the older generation finishing late must not deliver"
    assert cat.due_outbox() == []
    job = cat.claim_job()
    assert job is not None and job.id == job1
    assert cat.finish_job(
        job, [out], ["pacs", "backup"], result_dir=tmp_path, timings={}, summary={}
    )
    due = cat.due_outbox()
    assert sorted(i.destination for i in due) == ["backup", "pacs"]


def test_interrupted_jobs_are_requeued(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    cat = Catalog(catalog_location)
    cat.record_instance(_record(tmp_path, "1.1"))
    cat.complete_series("1.2.3", 0)
    cat.route_series("1.2.3", 0, ["t1map"], "matched")
    assert cat.claim_job() is not None
    cat.close()
    reopened = Catalog(catalog_location)
    assert reopened.claim_job() is None
    assert reopened.requeue_interrupted("other-host/node") == 0, "another worker's job"
    assert reopened.requeue_interrupted("local") == 1
    job = reopened.claim_job()
    assert job is not None and job.attempts == 2


def test_outbox_failure_backoff_then_success(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    cat = Catalog(catalog_location)
    cat.record_instance(_record(tmp_path, "1.1"))
    cat.complete_series("1.2.3", 0)
    cat.route_series("1.2.3", 0, ["t1map"], "matched")
    job = cat.claim_job()
    assert job is not None
    out = OutputFile(tmp_path / "sr.dcm", "9.8", "1.2.840.10008.5.1.4.1.1.88.34", "sr")
    cat.finish_job(job, [out], ["pacs"], result_dir=tmp_path, timings={}, summary={})
    [item] = cat.due_outbox()
    cat.mark_send_failed(item.id, "cannot connect", None, next_attempt_at=1e12)
    assert cat.due_outbox() == []
    [item] = cat.due_outbox(now=2e12)
    assert item.attempts == 1
    cat.mark_sent(item.id, 0)
    assert cat.due_outbox(now=3e12) == []
    assert cat.counts()["outbox"] == {"sent": 1}


def test_unrouted_series_keeps_its_reason(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    cat = Catalog(catalog_location)
    cat.record_instance(_record(tmp_path, "1.1"))
    cat.complete_series("1.2.3", 0)
    assert cat.route_series("1.2.3", 0, [], "no rule matched: not a T1 map") == []
    [series] = cat.recent_series()
    assert series["state"] == "unrouted"
    assert series["route_reason"] == "no rule matched: not a T1 map"


def _job(cat: Catalog, job_id: int) -> dict[str, Any]:
    row = cat.job(job_id)
    assert row is not None, f"job {job_id} is missing"
    return row


def _queue_jobs(cat: Catalog, tmp_path: Path, n: int) -> None:
    for i in range(n):
        series = f"1.2.3.{i}"
        cat.record_instance(_record(tmp_path, f"1.1.{i}", series=series))
        cat.complete_series(series, 0)
        cat.route_series(series, 0, ["t1map"], "matched")


def test_job_taken_from_a_silent_worker_is_not_finished_by_it(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    cat = Catalog(catalog_location)
    _queue_jobs(cat, tmp_path, 1)
    slow = cat.claim_job(now=1000.0, worker="host-a/w#0")
    assert slow is not None and slow.worker == "host-a/w#0"
    assert cat.heartbeat([slow.id], "host-a/w", now=1010.0) == 1
    assert cat.requeue_stale(lease_s=30.0, now=1030.0) == [], "heartbeat 20 s ago: alive"
    assert cat.requeue_stale(lease_s=30.0, now=1041.0) == [slow.id]
    taker = cat.claim_job(now=1042.0, worker="host-b/w#1")
    assert taker is not None and taker.id == slow.id and taker.attempts == 2
    out = OutputFile(tmp_path / "seg.dcm", "9.9", "1.2.840.10008.5.1.4.1.1.66.4", "seg")
    assert not cat.finish_job(slow, [out], ["pacs"], result_dir=tmp_path, timings={},
                              summary={}), "the silent worker's late result must be dropped"
    cat.fail_job(slow, "late failure", retry_at=None)
    assert _job(cat, slow.id)["state"] == "running", "nor may its failure touch the job"
    assert cat.heartbeat([slow.id], "host-a/w") == 0, "the job is no longer host-a's"
    assert cat.finish_job(taker, [out], ["pacs"], result_dir=tmp_path, timings={}, summary={})
    assert [i.sop_instance_uid for i in cat.due_outbox()] == ["9.9"]
    assert any(e["kind"] == "job_requeued" for e in cat.recent_events())


def test_series_receipt_lists_calling_aets(tmp_path: Path, catalog_location: str | Path) -> None:
    cat = Catalog(catalog_location)
    cat.record_instance(_record(tmp_path, "1.1"))
    cat.record_instance(replace(_record(tmp_path, "1.2"), calling_aet="OTHER"))
    cat.record_instance(_record(tmp_path, "1.3"))
    assert cat.series_receipt("1.2.3") == {
        "study_instance_uid": "1.2", "instances": 3, "calling_aets": ["OTHER", "SCANNER"],
    }
    assert cat.series_receipt("9.9") is None


def test_reanalysis_returns_new_job_ids(tmp_path: Path, catalog_location: str | Path) -> None:
    cat = Catalog(catalog_location)
    _queue_jobs(cat, tmp_path, 2)
    for _ in range(2):
        job = cat.claim_job()
        assert job is not None
        cat.finish_job(job, [], [], result_dir=tmp_path, timings={"total": 1.5}, summary={})
    ids = cat.reanalyse_study("1.2", "t1map", "covariates arrived")
    assert len(ids) == 2 and len(set(ids)) == 2
    assert {_job(cat, i)["generation"] for i in ids} == {1}
    assert _job(cat, ids[0])["state"] == "queued"
    assert cat.study_jobs("1.2", "t1map", "done")[0]["timings"] == {"total": 1.5}


def test_reanalysis_can_be_limited_to_done_jobs_with_a_flag(
    tmp_path: Path, catalog_location: str | Path
) -> None:
    cat = Catalog(catalog_location)
    _queue_jobs(cat, tmp_path, 2)
    summaries = [{"qc_flags": ["cine_not_used"]}, {"qc_flags": ["cine_fusion"]}]
    finished = []
    for summary in summaries:
        job = cat.claim_job()
        assert job is not None
        cat.finish_job(job, [], [], result_dir=tmp_path, timings={}, summary=summary)
        finished.append(job)
    [new_id] = cat.reanalyse_study("1.2", "t1map", "cine arrived",
                                   done_with_flag="cine_not_used")
    assert _job(cat, new_id)["series_instance_uid"] == finished[0].series_instance_uid
    assert cat.reanalyse_study("1.2", "t1map", "again", done_with_flag="cine_not_used") == []


def test_schema_1_sqlite_catalog_gains_worker_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " series_instance_uid TEXT NOT NULL, analysis TEXT NOT NULL,"
            " generation INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'queued',"
            " attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0,"
            " created_at REAL NOT NULL, started_at REAL, finished_at REAL, error TEXT,"
            " timings TEXT, result_dir TEXT, summary TEXT,"
            " UNIQUE (series_instance_uid, analysis, generation));"
            "INSERT INTO jobs(series_instance_uid, analysis, generation, state, created_at)"
            " VALUES ('1.2.3', 't1map', 0, 'running', 1.0);"
        )
    conn.close()
    cat = Catalog(path)
    assert cat.requeue_interrupted("host/node") == 1, "a job of schema 1 has no worker"
    job = cat.claim_job(worker="host/node#0")
    assert job is not None and _job(cat, job.id)["worker"] == "host/node#0"
    assert cat.query("SELECT value FROM meta WHERE key='schema_version'") == [{"value": "2"}]


def _claim_all(location: str, worker: str, results: Any) -> None:
    cat = Catalog(location)
    while (job := cat.claim_job(worker=worker)) is not None:
        results.put((worker, job.id))
        time.sleep(0.01)
    cat.close()


def test_processes_sharing_a_postgres_queue_claim_each_job_once(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    location = postgres.create_database()
    cat = Catalog(location)
    _queue_jobs(cat, tmp_path, 40)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_claim_all, args=(location, f"w{i}", results)) for i in range(3)
    ]
    for process in workers:
        process.start()
    claims = [results.get(timeout=60) for _ in range(40)]
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    ids = [job_id for _, job_id in claims]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 40, "a job was claimed twice"
    assert len({worker for worker, _ in claims}) >= 2, "the load was not shared"
    assert cat.counts()["jobs"] == {"running": 40}


def test_postgres_catalog_reconnects_and_keeps_its_worker_name(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    location = postgres.create_database()
    cat = Catalog(location)
    assert cat.register_worker("host/w1")
    other = Catalog(location)
    assert not other.register_worker("host/w1"), "the name is held by the first catalog"
    pid = cat.query("SELECT pg_backend_pid() AS pid")[0]["pid"]
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):  # the operation in flight fails ...
        cat.counts()
    _queue_jobs(cat, tmp_path, 1)  # ... the next one runs on a new session
    assert cat.claim_job(worker="host/w1#0") is not None
    assert cat.query("SELECT pg_backend_pid() AS pid")[0]["pid"] != pid
    assert not other.register_worker("host/w1"), "the name was taken again on reconnection"
