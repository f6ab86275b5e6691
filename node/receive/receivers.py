"""Several receiver processes behind one DICOM port (``[listener] processes = N``).

One Python process receives at most about one core's worth of C-STOREs: pynetdicom's DUL and
DIMSE layers and the listener's handler run under one GIL, and more associations only add
threads that contend for it.  With ``processes > 1`` the node's process binds and listens on
the DICOM port itself and starts that many receiver processes (``python -m node.receive.receivers``)
that all accept on this one socket, each running the unchanged store path of
:class:`node.receive.listener.StorageListener`: spool write with fsync and catalog row committed
before Success.  The kernel wakes every process waiting on the socket and the first to call
``accept`` takes the connection, so a process whose threads are busy takes fewer; a
connection queued on the socket is not lost when one receiver dies (unlike ``SO_REUSEPORT``,
where each process has its own queue).

What stays in the node's process: completion (node.completion.tracker), release grace, routing,
jobs and delivery.  Each receiver tells the node, over a socket pair, in order:

* ``("carry", association, series)`` -- the first instance of a series on an association;
* ``("stored", SeriesState)`` -- an instance stored and recorded;
* ``("ended", association, how)`` -- an association that carried instances was released
  (``how == "released"``) or ended otherwise;
* ``("log", record)`` -- its log records, written by the node's handlers (one log file, the
  same filters).

The node keeps the :class:`node.receive.associations.AssociationLedger` of every receiver's
associations, so a series carried by associations in two processes is released by the last
release.  What holds across processes: the catalog (SQLite WAL or PostgreSQL) is shared, so
duplicates and the series identity are judged against every instance stored by any receiver
(a receiver's cache of series identities only holds identities the catalog confirmed, which
never change); AE title checks, TLS and the audit trail (one ``O_APPEND`` file) are the same
in each receiver.  Admission limits (``max_associations``, ``max_waiting_per_address``) are
counted per receiver process.

A receiver dies with the node (``PR_SET_PDEATHSIG``, and end of file on its socket pair); a
receiver that dies is started again, and the associations it held are closed as broken
(their series complete by the quiet time or a later release).  An instance it was storing
was not acknowledged: the scanner sends it again, and a file it left without a catalog row
is replaced by that re-send or recorded by the spool reconciliation at the next start.

Status: off by default.  With 2 receivers, tests/reliability/test_load_burners.py (8
associations while two processes burn the CPU, on a shared 2-core machine at a load of 15-25)
failed in 2 of 4 runs: every receiver stopped for about 20 s with all its storing threads in
``os.fsync`` of a spool file, and the senders timed out; with one process it passed 2 of 2
runs that day.  The disk was shared and under pressure (``/proc/pressure/io`` "some" 18-40 %
over a minute), and fsync stalls of that disk were seen with one process before; whether two
receivers make them likelier is not yet known.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from pydicom import Dataset

from node.catalog.audit import AuditLog
from node.catalog.catalog import Catalog
from node.catalog.series import SeriesState
from node.network.dimse import LISTEN_BACKLOG
from node.receive.associations import AssociationLedger
from node.receive.listener import StorageListener
from node.settings import Settings

logger = logging.getLogger("node.receive.receivers")  # also when run as __main__

AUDIT_FILE = "audit.jsonl"
"""The audit trail under ``<data_dir>/logs`` (the node's, see node.service)."""
START_TIMEOUT_S = 60.0
"""How long the node waits for its receivers to be ready at start (the port listens once all
are)."""
STOP_TIMEOUT_S = 5.0
"""How long a receiver has to stop after SIGTERM before it is killed."""
RESTART_DELAY_S = (0.2, 10.0)
"""First and longest pause before a receiver that died is started again (doubled each time
it dies within a minute of its start)."""
STABLE_RUN_S = 60.0
"""A receiver that ran this long before dying is restarted after the first pause again."""
STOP_POLL_S = 0.5
"""How often a receiver's main thread looks for the stop request (signals are handled
between waits)."""
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal the process receives when its parent thread ends (Linux)."""


def storage_receiver(
    settings: Settings,
    catalog: Catalog,
    on_stored: Callable[[SeriesState, Dataset], None],
    audit: AuditLog | None = None,
    on_released: Callable[[list[str]], None] | None = None,
) -> StorageListener | ReceiverPool:
    """The node's DICOM receiver: the listener in this process, or ``[listener] processes``
    receiver processes (same parameters as :class:`node.receive.listener.StorageListener`)."""
    if settings.listener.processes <= 1:
        return StorageListener(settings, catalog, on_stored, audit=audit,
                               on_released=on_released)
    return ReceiverPool(settings, catalog, on_stored, on_released=on_released)


# ------------------------------------------------------------------------- node's side


@dataclass
class _Receiver:
    """One receiver slot: its process, its link, the associations it holds open."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    link: Connection | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    associations: set[tuple[int, int]] = field(default_factory=set)
    thread: threading.Thread | None = None


class ReceiverPool:
    """``[listener] processes`` receiver processes accepting on one DICOM port.

    Used as :class:`node.receive.listener.StorageListener` is: :meth:`start`, :meth:`stop`,
    :attr:`address`, :attr:`associations`.

    Parameters
    ----------
    settings
        The node's settings (sent to every receiver).
    catalog
        The node's catalog (receiver restarts are recorded there).
    on_stored
        Called for each instance a receiver stored; the header does not cross processes:
        the data set passed is empty.
    on_released
        Called with the series UIDs whose last carrying association was released.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        on_stored: Callable[[SeriesState, Dataset], None],
        on_released: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._on_stored = on_stored
        self._on_released = on_released
        self.associations = AssociationLedger()
        self._socket: socket.socket | None = None
        self._stopping = threading.Event()
        self._start_failed = threading.Event()
        self._lock = threading.Lock()
        self._receivers = [_Receiver(i) for i in range(settings.listener.processes)]
        self.restarts = 0
        """Receivers started again after dying (for tests and status)."""

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the receivers accept on."""
        if self._socket is None:
            raise RuntimeError("receivers not started")
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Bind the port, start every receiver and wait until each accepts.

        Raises
        ------
        RuntimeError
            When a receiver did not start within :data:`START_TIMEOUT_S`.
        """
        host = self._settings.listen_host
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, self._settings.listen_port))
        self._socket.set_inheritable(True)
        for receiver in self._receivers:
            receiver.thread = threading.Thread(
                target=self._supervise, args=(receiver,), name=f"receiver-{receiver.index}",
                daemon=True,
            )
            receiver.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        for receiver in self._receivers:
            while not receiver.ready.wait(STOP_POLL_S / 5):
                if self._start_failed.is_set() or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"receiver process {receiver.index} did not start"
                                       " (its error is on the node's standard error)")
        # Listening only now: no connection waits in the queue for the one receiver ready.
        self._socket.listen(LISTEN_BACKLOG)
        logger.info("DICOM listener %s on %s:%d (%d receiver processes)",
                    self._settings.ae_title, *self.address, len(self._receivers))
        return self.address

    def stop(self) -> None:
        """Stop every receiver (SIGTERM, then SIGKILL) and close the port."""
        self._stopping.set()
        with self._lock:
            procs = [r.proc for r in self._receivers if r.proc is not None]
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        for receiver in self._receivers:
            if receiver.thread is not None:
                receiver.thread.join(timeout=STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()

    def _supervise(self, receiver: _Receiver) -> None:
        """Run one receiver slot: start the process, relay its messages, restart it when it
        dies.  The process is started from this thread, which lives as long as the pool
        (``PR_SET_PDEATHSIG`` fires when the thread that started a process ends)."""
        delay = RESTART_DELAY_S[0]
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._spawn(receiver)
                self._relay(receiver)
            except Exception:
                logger.exception("receiver process %d failed", receiver.index)
            code = self._reap(receiver)
            if not receiver.ready.is_set():
                self._start_failed.set()  # ended before it accepted: settings, not chance
            if self._stopping.is_set():
                return
            self.restarts += 1
            logger.warning("receiver process %d ended (exit status %s): starting it again",
                           receiver.index, code)
            with contextlib.suppress(Exception):
                self._catalog.record_event(
                    "receiver_restarted", None,
                    f"receiver process {receiver.index} ended with status {code}; restarted",
                )
            delay = (RESTART_DELAY_S[0] if time.monotonic() - started > STABLE_RUN_S
                     else min(delay * 2, RESTART_DELAY_S[1]))
            self._stopping.wait(delay)

    def _spawn(self, receiver: _Receiver) -> None:
        assert self._socket is not None
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "node.receive.receivers", str(self._socket.fileno()),
                 str(theirs.fileno()), str(os.getpid()), str(receiver.index)],
                pass_fds=(self._socket.fileno(), theirs.fileno()),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        link = Connection(ours.detach())
        with self._lock:
            receiver.proc, receiver.link = proc, link
        if self._stopping.is_set():  # stop() began meanwhile and did not see this process
            proc.terminate()
            return
        link.send(self._settings)

    def _relay(self, receiver: _Receiver) -> None:
        """Act on the receiver's messages until its link ends (the process died or stops)."""
        assert receiver.link is not None and receiver.proc is not None
        pid = receiver.proc.pid
        while True:
            try:
                message = receiver.link.recv()
            except (EOFError, OSError):
                return
            try:
                self._dispatch(receiver, pid, message)
            except Exception:
                logger.exception("message %s of receiver process %d not handled",
                                 message[0], receiver.index)

    def _dispatch(self, receiver: _Receiver, pid: int, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "stored":
            self._on_stored(message[1], Dataset())
        elif kind == "carry":
            key = (pid, message[1])
            receiver.associations.add(key)
            self.associations.carry(key, message[2])
        elif kind == "ended":
            key = (pid, message[1])
            receiver.associations.discard(key)
            freed = self.associations.close(key)
            if message[2] == "released" and freed and self._on_released is not None:
                self._on_released(freed)
        elif kind == "log":
            record = logging.makeLogRecord(message[1])
            logging.getLogger(record.name).handle(record)
        elif kind == "ready":
            receiver.ready.set()

    def _reap(self, receiver: _Receiver) -> int | None:
        """Wait for a receiver whose link ended; close the associations it held."""
        with self._lock:
            proc, link = receiver.proc, receiver.link
            receiver.proc = receiver.link = None
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(timeout=STOP_TIMEOUT_S)
        if link is not None:
            link.close()
        broken = [self.associations.close(key) for key in receiver.associations]
        receiver.associations.clear()
        if any(broken) and not self._stopping.is_set():
            logger.info("receiver process %d ended with %d open associations: their series"
                        " complete by the quiet time", receiver.index, len(broken))
        return code


# --------------------------------------------------------------------- receiver's side


class _Link:
    """The receiver's end of its socket pair; sends are serialised across threads."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._connection.send(message)


class _ForwardingLedger(AssociationLedger):
    """The receiver's ledger: tells the node each association's first instance of a series."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self._link = link

    def carry(self, association: Any, series_uid: str) -> bool:
        first = super().carry(association, series_uid)
        if first:
            self._link.send(("carry", id(association), series_uid))
        return first


class _LinkHandler(logging.Handler):
    """Sends log records to the node, which writes them with its own handlers."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self._link = link

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(record.__dict__)
            fields["msg"], fields["args"] = record.getMessage(), None
            if record.exc_info:
                fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
            fields["exc_info"] = fields["stack_info"] = None
            self._link.send(("log", {k: v for k, v in fields.items() if _picklable(v)}))
        except Exception:  # the node is gone: nothing to log to
            self.handleError(record)


def _picklable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


class ReceiverListener(StorageListener):
    """The listener of a receiver process: stored instances and association ends are sent
    to the node (module docstring)."""

    def __init__(self, settings: Settings, catalog: Catalog, link: _Link,
                 audit: AuditLog | None) -> None:
        super().__init__(settings, catalog, self._stored, audit=audit)
        self._link = link
        self.associations = _ForwardingLedger(link)

    def _stored(self, state: SeriesState, _ds: Dataset) -> None:
        self._link.send(("stored", state))

    def _association_released(self, event: Any) -> None:
        self._ended(event, "released")

    def _association_broken(self, event: Any, how: str) -> None:
        self._ended(event, how)

    def _ended(self, event: Any, how: str) -> None:
        if not self.associations.is_open(event.assoc):
            return  # carried nothing, or already ended (a connection closes after release)
        carried = self.associations.close(event.assoc)
        if how != "released":
            logger.info("association from %s ended without release (%s) after storing %d"
                        " series: their completion waits for the quiet time",
                        event.assoc.requestor.ae_title, how, len(carried))
        self._link.send(("ended", id(event.assoc), how))


def _die_with_parent(parent_pid: int) -> None:
    """Be killed when the node's process ends (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the node ended before the line above
        os._exit(1)


def serve(listen_fd: int, link_fd: int, parent_pid: int, index: int) -> int:
    """Run one receiver process until SIGTERM or the end of its link (the node ended)."""
    _die_with_parent(parent_pid)
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # as the node: stacks on demand
    connection = Connection(link_fd)
    settings: Settings = connection.recv()
    link = _Link(connection)
    root = logging.getLogger()
    root.handlers[:] = [_LinkHandler(link)]
    root.setLevel(getattr(logging, settings.log_level.upper(), logging.INFO))
    for name in ("pynetdicom", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    catalog = Catalog(settings.catalog_location, keep_values=settings.values_in_reasons)
    audit = AuditLog(settings.data_dir / "logs" / AUDIT_FILE)
    listener = ReceiverListener(settings, catalog, link, audit)
    shared = socket.socket(fileno=listen_fd)
    listener.start(shared_socket=shared)
    link.send(("ready", os.getpid()))
    logger.debug("receiver process %d (pid %d) accepting", index, os.getpid())
    watcher = threading.Thread(target=_wait_for_eof, args=(connection, stop), daemon=True)
    watcher.start()
    while not stop.wait(STOP_POLL_S):
        pass
    listener.stop()
    catalog.close()
    audit.close()
    return 0


def _wait_for_eof(connection: Connection, stop: threading.Event) -> None:
    """Set ``stop`` when the node closes its end of the link (the node sends nothing else)."""
    with contextlib.suppress(EOFError, OSError, pickle.UnpicklingError):
        while connection.poll(None):
            connection.recv()
    stop.set()

if __name__ == "__main__":
    sys.exit(serve(*(int(arg) for arg in sys.argv[1:5])))
