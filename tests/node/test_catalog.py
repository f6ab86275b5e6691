"""The catalog's state machine: series generations, job supersession, outbox delivery."""

from __future__ import annotations

from pathlib import Path

from node.catalog import Catalog, InstanceRecord, OutputFile


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


def test_series_counts_and_reopens_with_new_generation(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3")
    s1 = cat.record_instance(_record(tmp_path, "1.1", expected=2))
    s2 = cat.record_instance(_record(tmp_path, "1.2"))
    assert (s1.instance_count, s2.instance_count, s2.expected_count) == (1, 2, 2)
    assert cat.complete_series("1.2.3", 0)
    assert not cat.complete_series("1.2.3", 0), "completing twice must be refused"
    late = cat.record_instance(_record(tmp_path, "1.3"))
    assert late.reopened and late.generation == 1 and late.instance_count == 3
    assert not cat.complete_series("1.2.3", 0), "a stale timer must not complete generation 1"
    assert cat.complete_series("1.2.3", 1)


def test_resent_instance_is_counted_once(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3")
    cat.record_instance(_record(tmp_path, "1.1"))
    state = cat.record_instance(_record(tmp_path, "1.1"))
    assert state.instance_count == 1


def test_newer_generation_supersedes_queued_job_and_running_job_outputs(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3")
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


def test_interrupted_jobs_are_requeued(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3")
    cat.record_instance(_record(tmp_path, "1.1"))
    cat.complete_series("1.2.3", 0)
    cat.route_series("1.2.3", 0, ["t1map"], "matched")
    assert cat.claim_job() is not None
    cat.close()
    reopened = Catalog(tmp_path / "c.sqlite3")
    assert reopened.claim_job() is None
    assert reopened.requeue_interrupted() == 1
    job = reopened.claim_job()
    assert job is not None and job.attempts == 2


def test_outbox_failure_backoff_then_success(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3")
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


def test_unrouted_series_keeps_its_reason(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3")
    cat.record_instance(_record(tmp_path, "1.1"))
    cat.complete_series("1.2.3", 0)
    assert cat.route_series("1.2.3", 0, [], "no rule matched: not a T1 map") == []
    [series] = cat.recent_series()
    assert series["state"] == "unrouted"
    assert series["route_reason"] == "no rule matched: not a T1 map"
