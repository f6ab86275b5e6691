"""DICOM networking helpers shared by the listener and the senders.

Status values are those of PS3.4 Annex B.2.3 (Storage Service Class) and PS3.7 Annex C.
Both sides of every association disable Nagle's algorithm (``TCP_NODELAY``): DIMSE exchanges
many small PDUs, and with Nagle on, throughput drops 10-70x (see STACK.md).

Every association the node requests (:class:`NoDelayAE`) also gets a correct pause handshake
between the caller and pynetdicom's reactor thread (:class:`ReactorCheckpoint`): pynetdicom
3.0.4 can lose a C-STORE response under CPU load (docs/pynetdicom-send-c-store-race.md).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

logger = logging.getLogger(__name__)


class StoreStatus(enum.IntEnum):
    """C-STORE response statuses the node sends or interprets."""

    SUCCESS = 0x0000
    #: Refused: Out of Resources (A7xx) - disk full, catalog unavailable.
    OUT_OF_RESOURCES = 0xA700
    #: Error: Data Set does not match SOP Class (A9xx).
    DATASET_MISMATCH = 0xA900
    #: Error: Cannot understand (Cxxx) - unparsable or incomplete data set.
    CANNOT_UNDERSTAND = 0xC000
    #: Processing failure (0110) - unexpected failure while storing.
    PROCESSING_FAILURE = 0x0110
    #: Duplicate SOP Instance (0111, PS3.7 Annex C) - the UID is stored with other content
    #: and the listener keeps the first.
    DUPLICATE_SOP_INSTANCE = 0x0111
    #: Error: Cannot understand (C001) - the instance contradicts its series (another
    #: patient, another modality).
    SERIES_CONFLICT = 0xC001
    #: Warning: Coercion of data elements.
    WARNING_COERCION = 0xB000
    #: Warning: Data Set does not match SOP Class.
    WARNING_MISMATCH = 0xB007
    #: Warning: Elements discarded.
    WARNING_DISCARDED = 0xB006


VERIFICATION_SUCCESS = 0x0000


def is_accepted(status: int) -> bool:
    """Whether a C-STORE response status means the peer kept the object (success/warning)."""
    return status == StoreStatus.SUCCESS or (status & 0xF000) == 0xB000


class StoreError(Exception):
    """An instance the listener refuses; carries the DICOM status to answer with.

    Parameters
    ----------
    status
        The C-STORE failure status.
    reason
        Short text for the ErrorComment (at most 64 characters are sent) and the event log.
    """

    def __init__(self, status: StoreStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def set_nodelay(sock: socket.socket) -> None:
    """Disable Nagle's algorithm on a TCP socket (no-op for other sockets)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # not TCP (e.g. a socketpair in tests)
        logger.debug("TCP_NODELAY not set: %s", exc)


class _NoDelayAssociationSocket(AssociationSocket):
    """Requestor socket with TCP_NODELAY."""

    def _create_socket(self, address: Any) -> socket.socket:
        sock = super()._create_socket(address)
        set_nodelay(sock)
        return sock


#: How often a caller waiting for the reactor to pause checks that the reactor still runs.
PAUSE_CHECK_S = 0.05


class ReactorCheckpoint(threading.Event):
    """The gate of a pynetdicom association's reactor, with a pause that waits for the reactor.

    pynetdicom 3.0.4 pauses an association's reactor thread before a DIMSE exchange (e.g.
    ``send_c_store``) by clearing ``Association._reactor_checkpoint`` and then polling
    ``Association._is_paused``.  The reactor sets ``_is_paused = True`` just before it waits on
    the checkpoint and ``False`` just after; between two exchanges the flag can still be True
    from the previous pause while the reactor, woken by the last ``set()``, has not yet run
    again.  The caller then sends its request, and the reactor's next
    ``dimse.get_msg(block=False)`` can take the response off the queue ("Received unexpected
    C-STORE service message"): the caller waits out its DIMSE timeout for nothing.

    Here :meth:`clear` (the pause) returns only once the reactor is blocked in :meth:`wait`,
    and a reactor woken by an earlier :meth:`set` but not yet running stays blocked: the
    ``_is_paused`` poll that follows the pause then reads a True that holds.  ``clear`` does
    not wait when called by the reactor thread itself (its network-timeout release) or when
    the reactor does not run.

    Parameters
    ----------
    reactor
        The association whose thread runs the reactor.
    """

    def __init__(self, reactor: threading.Thread) -> None:
        super().__init__()
        self._reactor = reactor
        self._gate = threading.Condition(threading.Lock())
        self._open = True
        self._blocked = 0

    def is_set(self) -> bool:
        """Whether the reactor may run."""
        with self._gate:
            return self._open

    def set(self) -> None:
        """Let the reactor run."""
        with self._gate:
            self._open = True
            self._gate.notify_all()

    def clear(self) -> None:
        """Pause the reactor: return once it is blocked at the checkpoint (or does not run)."""
        with self._gate:
            self._open = False
            if threading.current_thread() is self._reactor:
                return
            while not self._blocked and not self._open and self._reactor.is_alive():
                self._gate.wait(PAUSE_CHECK_S)

    def wait(self, timeout: float | None = None) -> bool:
        """Called by the reactor: block while paused (re-checked after every wake-up)."""
        with self._gate:
            self._blocked += 1
            self._gate.notify_all()
            try:
                return self._gate.wait_for(lambda: self._open, timeout)
            finally:
                self._blocked -= 1


def install_pause_handshake(assoc: Association) -> None:
    """Give a requested association the correct reactor pause (:class:`ReactorCheckpoint`).

    Raises
    ------
    RuntimeError
        When the association lacks pynetdicom 3.0's reactor checkpoint (pynetdicom changed:
        the workaround must be revisited; see docs/pynetdicom-send-c-store-race.md).
    """
    current = getattr(assoc, "_reactor_checkpoint", None)
    if not isinstance(current, threading.Event) or not hasattr(assoc, "_is_paused"):
        raise RuntimeError(
            "pynetdicom's Association has no _reactor_checkpoint/_is_paused: the pause"
            " handshake of node.network.dimse must be revisited for this pynetdicom version"
        )
    if isinstance(current, ReactorCheckpoint):
        return
    assoc._reactor_checkpoint = ReactorCheckpoint(assoc)
    current.set()  # a reactor still waiting on the old gate moves on to the new one


class NoDelayAE(AE):
    """A pynetdicom AE whose outgoing associations use TCP_NODELAY and a safe reactor pause."""

    def associate(self, *args: Any, **kwargs: Any) -> Association:
        """As :meth:`pynetdicom.ae.ApplicationEntity.associate`, with
        :func:`install_pause_handshake` on the association."""
        assoc = super().associate(*args, **kwargs)
        install_pause_handshake(assoc)
        return assoc

    def _create_socket(self, assoc: Any, address: Any, tls_args: Any) -> AssociationSocket:
        sock = _NoDelayAssociationSocket(assoc, address=address)
        sock.tls_args = tls_args
        return sock


class NoDelayServer(ThreadedAssociationServer):
    """Threaded association server whose accepted connections use TCP_NODELAY."""

    def get_request(self) -> tuple[socket.socket, Any]:
        client_socket, address = super().get_request()
        set_nodelay(client_socket)
        return client_socket, address


@dataclass(frozen=True)
class AdmissionPolicy:
    """How long and how many connections may wait before their A-ASSOCIATE-RQ.

    Attributes
    ----------
    request_timeout_s
        A connection whose whole A-ASSOCIATE-RQ (over TLS: handshake and first byte) has not
        come within this long is closed without ever becoming an association.
    max_waiting_per_address
        Connections from one address waiting for their A-ASSOCIATE-RQ; a newer one closes
        the oldest (a scanner reconnecting is never locked out by its own or a prober's idle
        connections).
    max_waiting
        Connections waiting for their A-ASSOCIATE-RQ, from all addresses together (the
        oldest is closed).
    max_associations_per_address
        Associations one address may hold at once (counting those being set up); one more
        is rejected with A-ASSOCIATE-RJ, transient, local limit exceeded.
    """

    request_timeout_s: float = 5.0
    max_waiting_per_address: int = 8
    max_waiting: int = 128
    max_associations_per_address: int = 12


#: PDU type of an A-ASSOCIATE-RQ (PS3.8 Section 9.3.2).
A_ASSOCIATE_RQ = 0x01
#: A-ASSOCIATE-RJ (PS3.8 Section 9.3.4): rejected-transient (2), DICOM UL service-provider
#: presentation related function (3), local-limit-exceeded (2) - what pynetdicom answers
#: when all ``maximum_associations`` are taken.
A_ASSOCIATE_RJ_LOCAL_LIMIT = struct.pack(">BBIBBBB", 0x03, 0, 4, 0, 0x02, 0x03, 0x02)
#: How long a rejected peer is given to close the connection (it must, PS3.8 9.2.2) before
#: the node closes it.
REJECTED_CLOSE_S = 2.0
#: An A-ASSOCIATE-RQ longer than this is admitted once this much of it has arrived (it must
#: fit the socket's receive buffer to be peeked at; a request with all 128 presentation
#: contexts of a storage SCU is about 15 KB).
ASSOCIATE_RQ_PEEK_LIMIT = 32 * 1024
#: How often a connection that sent part of its A-ASSOCIATE-RQ is looked at again.
PARTIAL_REQUEST_POLL_S = 0.01
#: Connections the kernel completes while the accepting thread is busy (``listen`` backlog;
#: socketserver's default of 5 makes a burst of idle connections drop a scanner's SYN, which
#: TCP only retries after 1 s).
LISTEN_BACKLOG = 128


class AdmittingServer(NoDelayServer):
    """An association server where only connections that have asked take association slots.

    pynetdicom's server makes an :class:`~pynetdicom.association.Association` of every TCP
    connection at once; an idle one holds one of the AE's ``maximum_associations`` slots for
    the whole ACSE timeout, so twenty idle connections make every scanner's association be
    rejected ("Local Limit Exceeded"), and so does a peer that sends one byte of a PDU and
    stalls.  Here the connection's thread first waits up to
    :attr:`AdmissionPolicy.request_timeout_s` for the peer's whole A-ASSOCIATE-RQ (read
    ahead with ``MSG_PEEK``, so pynetdicom still reads it; over TLS, where nothing can be
    peeked at, the handshake, done here rather than in the accepting thread where an idle TLS
    peer would block every other connection, and the request are read and then handed back
    to pynetdicom, :class:`ReplayingSSLSocket`); only then is the association made.
    Connections waiting so are bounded per address and in total, the oldest closed first.
    An address that holds :attr:`AdmissionPolicy.max_associations_per_address` associations
    has its next request rejected (transient, local limit exceeded) without taking a slot,
    so one peer never takes every one of the AE's ``maximum_associations``;
    :attr:`on_refused` is told.
    """

    policy = AdmissionPolicy()
    request_queue_size = LISTEN_BACKLOG
    on_refused: Callable[[str, str], None] | None = None
    """Called with the peer's address and the reason when a request is rejected here (from
    the connection's thread)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting_lock = threading.Lock()
        self._waiting: OrderedDict[int, tuple[str, socket.socket]] = OrderedDict()
        self._starting: Counter[str] = Counter()
        if self.ssl_context is not None:  # the request is read here, then given back
            self.ssl_context.sslsocket_class = ReplayingSSLSocket
        self.closed_unspoken = 0
        """Connections closed before they sent anything (counted for tests and status)."""

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection; a TLS handshake is left to the connection's own thread."""
        assert self.socket is not None
        client_socket, address = self.socket.accept()
        set_nodelay(client_socket)
        if self.ssl_context:
            client_socket = self.ssl_context.wrap_socket(
                client_socket, server_side=True, do_handshake_on_connect=False
            )
        return client_socket, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Make an association of the connection once its association request has arrived."""
        address = str(client_address[0]) if isinstance(client_address, tuple) else "?"
        if not self._admit(request, address):
            self.closed_unspoken += 1
            self.shutdown_request(request)
            return
        limit = self.policy.max_associations_per_address
        with self._waiting_lock:
            held = self._associations_of(address) + self._starting[address]
            if held < limit:
                self._starting[address] += 1
        if held >= limit:
            self._reject_over_limit(request, address, held)
            return
        try:
            super().process_request_thread(request, client_address)  # starts its thread
        finally:
            with self._waiting_lock:
                self._starting[address] -= 1
                if not self._starting[address]:
                    del self._starting[address]

    def _associations_of(self, address: str) -> int:
        """Running associations (pynetdicom acceptor threads) of one peer address."""
        return sum(1 for assoc in self.active_associations
                   if assoc.is_alive() and str(assoc.requestor.address) == address)

    def _reject_over_limit(self, sock: socket.socket, address: str, held: int) -> None:
        """Answer A-ASSOCIATE-RJ (local limit exceeded), let the peer close, close.

        The request is read meanwhile: closing on unread bytes resets the connection, and
        the peer could lose the rejection.
        """
        reason = (f"{held} associations of this address open (limit"
                  f" {self.policy.max_associations_per_address}): local limit exceeded")
        logger.info("association from %s rejected: %s", address, reason)
        if self.on_refused is not None:  # recorded before the peer learns of it
            self.on_refused(address, reason)
        try:
            sock.settimeout(REJECTED_CLOSE_S)
            sock.sendall(A_ASSOCIATE_RJ_LOCAL_LIMIT)
            deadline = time.monotonic() + REJECTED_CLOSE_S
            while time.monotonic() < deadline and sock.recv(65536):
                pass  # the request, then the peer's close
        except (OSError, ValueError) as exc:
            logger.debug("rejected connection from %s: %s", address, exc)
        finally:
            self.shutdown_request(sock)

    def _register(self, sock: socket.socket, address: str) -> None:
        policy = self.policy
        with self._waiting_lock:
            self._waiting[id(sock)] = (address, sock)
            same = [k for k, (a, _) in self._waiting.items() if a == address]
            evicted = [self._waiting.pop(key)[1]
                       for key in same[: max(0, len(same) - policy.max_waiting_per_address)]]
            while len(self._waiting) > policy.max_waiting:
                evicted.append(self._waiting.popitem(last=False)[1][1])
            # Under the lock: a connection taken out of the waiting set by its own thread to
            # become an association (see _admit) is never shut down here.
            for old in evicted:
                with contextlib.suppress(OSError):
                    old.shutdown(socket.SHUT_RDWR)  # wakes its thread, which closes it
        for _ in evicted:
            logger.info("connection from %s closed: too many connections waiting to associate",
                        address)

    def _admit(self, sock: socket.socket, address: str) -> bool:
        """Whether the peer sent its association request in time (False: closed, timed out,
        evicted)."""
        self._register(sock, address)
        try:
            asked = self._wait_for_request(sock, address)
        finally:
            with self._waiting_lock:
                still_waiting = self._waiting.pop(id(sock), None) is not None
            with contextlib.suppress(OSError):
                sock.settimeout(None)
        return asked and still_waiting  # else evicted meanwhile (and shut down)

    def _wait_for_request(self, sock: socket.socket, address: str) -> bool:
        """Wait up to the request timeout for the peer's association request (see class)."""
        deadline = time.monotonic() + self.policy.request_timeout_s
        try:
            if isinstance(sock, ReplayingSSLSocket):
                return self._read_tls_request(sock, address, deadline)
            sock.settimeout(self.policy.request_timeout_s)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._log_timeout(address)
                    return False
                readable, _, _ = select.select([sock], [], [], left)
                if not readable:
                    continue
                arrived = _request_arrived(sock)
                if arrived is not None:
                    return arrived
                time.sleep(min(PARTIAL_REQUEST_POLL_S, max(0.0, left)))
        except (OSError, ValueError, AttributeError) as exc:
            # reset, evicted (fd closed; a TLS socket's shutdown drops its TLS object, which
            # its handshake then lacks), TLS failure
            logger.info("connection from %s closed before associating: %s", address, exc)
            return False

    def _log_timeout(self, address: str) -> None:
        logger.info("connection from %s closed: no A-ASSOCIATE-RQ within %.0f s",
                    address, self.policy.request_timeout_s)

    def _read_tls_request(self, sock: ReplayingSSLSocket, address: str,
                          deadline: float) -> bool:
        """The TLS handshake and the whole A-ASSOCIATE-RQ within the deadline, read here
        (a TLS record cannot be peeked at) and put back for pynetdicom.

        A peer that trickles its handshake, or completes it and sends part of a request,
        is closed at the deadline like a plain-TCP one.
        """
        sock.setblocking(False)
        while True:
            try:
                sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not _wait_io(sock, deadline, write=False):
                    self._log_timeout(address)
                    return False
            except ssl.SSLWantWriteError:
                if not _wait_io(sock, deadline, write=True):
                    self._log_timeout(address)
                    return False
        received = b""
        while not _request_complete(received):
            if not sock.pending() and not _wait_io(sock, deadline, write=False):
                self._log_timeout(address)
                return False
            try:
                chunk = sock.recv(ASSOCIATE_RQ_PEEK_LIMIT)
            except ssl.SSLWantReadError:  # part of a record
                continue
            if not chunk:
                return False  # closed before completing its request
            received += chunk
        sock.unread(received)
        sock.setblocking(True)
        return True


class ReplayingSSLSocket(ssl.SSLSocket):
    """An accepted TLS connection whose first decrypted bytes, read by the admission
    (:class:`AdmittingServer`), are given again to the next reads (pynetdicom's)."""

    _replay = b""

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what the peer sends next."""
        self._replay = data + self._replay

    def pending(self) -> int:
        """Decrypted bytes readable without waiting (pynetdicom checks it as well as
        ``select``)."""
        return len(self._replay) + super().pending()

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """As :meth:`ssl.SSLSocket.recv`, the put-back bytes first."""
        if self._replay and not flags:
            data, self._replay = self._replay[:buflen], self._replay[buflen:]
            return data
        return super().recv(buflen, flags)


def _wait_io(sock: socket.socket, deadline: float, *, write: bool) -> bool:
    """Wait until the socket is readable (or writable) or the deadline passed (False)."""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    ready = select.select([], [sock], [], left)[1] if write else select.select(
        [sock], [], [], left)[0]
    return bool(ready) or time.monotonic() < deadline


def _request_complete(head: bytes) -> bool:
    """Whether received bytes hold a whole A-ASSOCIATE-RQ (or :data:`ASSOCIATE_RQ_PEEK_LIMIT`
    of it), or the start of another PDU type (pynetdicom answers it)."""
    if not head:
        return False
    if head[0] != A_ASSOCIATE_RQ:
        return True
    if len(head) < 6:
        return False
    return len(head) >= min(6 + int.from_bytes(head[2:6], "big"), ASSOCIATE_RQ_PEEK_LIMIT)


def _request_arrived(sock: socket.socket) -> bool | None:
    """Look at what a silent-until-now peer sent, without taking it off the socket.

    Returns True once a whole A-ASSOCIATE-RQ (or up to :data:`ASSOCIATE_RQ_PEEK_LIMIT` of
    it), or any other PDU type, has arrived (pynetdicom answers the latter), False when
    the peer closed the connection (before completing its request), None while a request
    is still incomplete.
    """
    try:
        head = sock.recv(6, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:  # woken without data
        return None
    if head == b"":
        return False
    if _request_complete(head):
        return True
    if len(head) >= 6:
        needed = min(6 + int.from_bytes(head[2:6], "big"), ASSOCIATE_RQ_PEEK_LIMIT)
        if _request_complete(sock.recv(needed, socket.MSG_PEEK | socket.MSG_DONTWAIT)):
            return True
    return False if _peer_closed(sock) else None


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the peer has shut its side down (its unread bytes can then never complete a
    request); Linux tells by ``POLLRDHUP``, elsewhere the request timeout ends the wait."""
    rdhup = getattr(select, "POLLRDHUP", 0)
    if not rdhup:
        return False
    poller = select.poll()
    poller.register(sock, rdhup)
    return any(events & (rdhup | select.POLLHUP) for _, events in poller.poll(0))


class SharedSocketServer(AdmittingServer):
    """An :class:`AdmittingServer` that accepts on a listening socket it is given
    (:attr:`shared_socket`, set on a subclass) instead of binding one: several receiver
    processes accept from one socket (node.receive.receivers).

    The socket is made non-blocking: every process waiting in ``select`` is woken by a new
    connection and only one ``accept`` succeeds; the others get ``BlockingIOError``, which
    socketserver ignores, instead of blocking their accepting thread.
    """

    shared_socket: socket.socket | None = None

    def server_bind(self) -> None:
        """Take the shared socket in place of the one socketserver made."""
        if self.shared_socket is None:
            raise RuntimeError("SharedSocketServer needs a shared_socket")
        if self.socket is not None:
            self.socket.close()
        self.socket = self.shared_socket
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """The shared socket is already listening."""
