"""The durable catalog (SQLite): instances, series, jobs, outbox and an event log.

Every state change is committed here before the node acknowledges it to a peer (WAL journal).
With ``synchronous=NORMAL`` a committed transaction survives a crash of the process
(``kill -9``); a power loss may undo the last transactions, which is safe because each of
them can be redone: received instances are rebuilt from the fsynced spool at start
(``node.receive.spool_recovery.reconcile_spool``), a job that loses its "done" runs again, and
an output that loses its "sent" is sent again with the same UIDs.

States
------
series:  receiving -> complete -> routed | unrouted | correction   (a late instance re-opens
         it: receiving, generation + 1; correction: a reader's SEG, node.corrections.intake)
jobs:    queued -> running -> done | failed            (superseded when a newer generation of the
         same series is queued; running -> queued again after a crash)
outbox:  pending -> sent | failed | superseded

The catalog is assembled from its parts: :mod:`.store` (the database and the event log),
:mod:`.series` (instances and series), :mod:`.job_queue` (jobs), :mod:`.outbox` (outputs and
their delivery, reader corrections) and :mod:`.queries` (read-only views).
"""

from __future__ import annotations

from node.catalog.job_queue import JobQueue
from node.catalog.outbox import Outbox
from node.catalog.queries import StatusQueries
from node.catalog.series import SeriesRecords


class Catalog(SeriesRecords, JobQueue, Outbox, StatusQueries):
    """Thread-safe access to the catalog, on SQLite (default) or PostgreSQL.

    Parameters
    ----------
    location
        An SQLite file (one node process, or processes of one machine), or a
        ``postgresql://`` URL: one durable queue for a node and any number of worker
        processes on any machines (:mod:`node.catalog.pgdb`).  The SQL is the same on both engines;
        writes are serialised on both.
    keep_values
        Keep quoted header values in routing reasons, job errors and events (a debug
        setting); by default they are withheld as in the logs
        (:func:`node.catalog.audit.withhold_values`).
    """
