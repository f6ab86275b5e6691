"""DICOM networking helpers shared by the listener and the senders.

Status values are those of PS3.4 Annex B.2.3 (Storage Service Class) and PS3.7 Annex C.
Both sides of every association disable Nagle's algorithm (``TCP_NODELAY``): DIMSE exchanges
many small PDUs, and with Nagle on, throughput drops 10-70x (see STACK.md).
"""

from __future__ import annotations

import enum
import logging
import socket
from typing import Any

from pynetdicom import AE
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


class NoDelayAE(AE):
    """A pynetdicom AE whose outgoing associations use TCP_NODELAY."""

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
