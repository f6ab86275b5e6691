"""A job's lease on PostgreSQL: a live worker keeps its job however late its heartbeat (its
analysis can starve the heartbeat thread of the interpreter under CPU load); a gone or hung
one loses it.

Real PostgreSQL sessions: the worker's name is held by its own catalog connection, as
``cmr-node worker`` holds it; closing that connection is what a killed process does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node.catalog.catalog import Catalog
from node.catalog.job_queue import HUNG_WORKER_LEASES
from tests.node.test_catalog import _queue_jobs
from tests.pgutil import PostgresServer

LEASE_S = 30.0


@pytest.fixture()
def url(postgres: PostgresServer) -> str:
    return postgres.create_database()


def test_a_live_workers_job_waits_for_its_late_heartbeat(tmp_path: Path, url: str) -> None:
    cat = Catalog(url)
    worker = Catalog(url)  # the worker process's own session
    try:
        assert worker.register_worker("host-a/w1")
        _queue_jobs(cat, tmp_path, 1)
        job = worker.claim_job(now=1000.0, worker="host-a/w1#0")
        assert job is not None
        assert cat.requeue_stale(LEASE_S, now=1000.0 + 3 * LEASE_S) == [], (
            "the worker still holds its name: its job must not be taken"
        )
        worker.close()  # the process is killed: the server drops its session and name
        assert cat.requeue_stale(LEASE_S, now=1000.0 + 3 * LEASE_S) == [job.id]
        [event] = cat.query("SELECT message FROM events WHERE kind='job_requeued'")
        assert event["message"].startswith(f"job {job.id}: no heartbeat for 90 s")
    finally:
        worker.close()
        cat.close()


def test_a_hung_workers_job_is_taken_after_many_leases(tmp_path: Path, url: str) -> None:
    cat = Catalog(url)
    worker = Catalog(url)
    try:
        assert worker.register_worker("host-b/w1")
        _queue_jobs(cat, tmp_path, 1)
        job = worker.claim_job(now=1000.0, worker="host-b/w1#0")
        assert job is not None
        hung = 1000.0 + HUNG_WORKER_LEASES * LEASE_S
        assert cat.requeue_stale(LEASE_S, now=hung - 1) == []
        assert cat.requeue_stale(LEASE_S, now=hung + 1) == [job.id]
    finally:
        worker.close()
        cat.close()


def test_another_workers_name_does_not_keep_a_job(tmp_path: Path, url: str) -> None:
    """Only the job's own worker's name counts (w1 alive says nothing of w10)."""
    cat = Catalog(url)
    worker = Catalog(url)
    try:
        assert worker.register_worker("host-a/w1")
        _queue_jobs(cat, tmp_path, 1)
        job = cat.claim_job(now=1000.0, worker="host-a/w10#0")
        assert job is not None
        assert cat.requeue_stale(LEASE_S, now=1000.0 + LEASE_S + 1) == [job.id]
    finally:
        worker.close()
        cat.close()
