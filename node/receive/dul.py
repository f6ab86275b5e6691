"""The listener's hold on pynetdicom's DUL (the association's network layer): a faster idle
poll, and an ACSE queue that stops waiting once the connection is gone, so that a silent or
closed connection does not hold an association slot."""

from __future__ import annotations

import queue
import time
from typing import Any

#: Poll interval of an association's DUL thread while idle (pynetdicom's default: 1 ms).
#: Each C-STORE response waits for this thread's next poll; 0.2 ms raises a single
#: association's throughput by about 40 % for ~3 % of a core while an association is open.
DUL_POLL_S = 0.0002

#: How often an association waiting for the peer checks that the connection is still open.
CONNECTION_CHECK_S = 0.1


class ConnectionAwareQueue(queue.Queue[Any]):
    """The queue from an association's DUL to its ACSE that stops waiting once the
    connection is gone.

    pynetdicom's acceptor waits the whole ACSE timeout for an A-ASSOCIATE-RQ even after the
    peer closed the connection or sent bytes that are not a PDU, and holds one of the
    listener's ``maximum_associations`` slots meanwhile: a handful of port probes or
    malformed requests would lock every scanner out for that long. Here a blocking ``get``
    raises :class:`queue.Empty` as soon as the transport is closed or the DUL thread has
    ended (pynetdicom ends it on an undecodable PDU) and nothing is queued.

    Parameters
    ----------
    dul
        The association's DUL service provider.
    previous
        The queue this one replaces (its items are taken over).
    """

    def __init__(self, dul: Any, previous: queue.Queue[Any]) -> None:
        super().__init__()
        self._dul = dul
        while True:
            try:
                self.put(previous.get_nowait())
            except queue.Empty:
                break

    def _closed(self) -> bool:
        """Whether nothing more can arrive: transport closed, or the DUL thread ended."""
        transport = self._dul.socket
        if transport is not None and transport.socket is None:
            return True
        return bool(self._dul._kill_thread) or not self._dul.is_alive()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """As :meth:`queue.Queue.get`; a wait also ends once the connection is closed."""
        if not block:
            return super().get(block=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = CONNECTION_CHECK_S
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            try:
                return super().get(block=True, timeout=step)
            except queue.Empty:
                if self._closed() or (deadline is not None and time.monotonic() >= deadline):
                    return super().get(block=False)


def tune_association(event: Any) -> None:
    """Shorten the DUL's idle poll and make its ACSE queue notice a closed connection.

    Both are private internals of pynetdicom 3.0 (``DULServiceProvider._run_loop_delay``
    and ``.to_user_queue``, pinned in deploy/constraints.txt);
    tests/node/test_pynetdicom_internals.py fails when an upgrade changes them or
    what the listener assumes of them.
    """
    dul = event.assoc.dul
    dul._run_loop_delay = DUL_POLL_S
    dul.to_user_queue = ConnectionAwareQueue(dul, dul.to_user_queue)
