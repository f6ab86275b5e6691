"""The node's DICOM listener: a Storage SCP (C-STORE) and Verification SCP (C-ECHO), its server
lifecycle and the admission and end of its associations.

What it stores and answers is :mod:`node.receive.storage`'s (an instance is written to the
spool atomically and recorded in the catalog *before* the response is sent, so a Success
status means the instance survives a crash); how a received instance is parsed and checked is
:mod:`node.receive.instance`'s.


Associations: the called AE title must be the node's (``[listener] require_called_aet``); a
TCP connection takes an association slot only once it has spoken
(node.network.dimse.AdmittingServer).
The series each association stored are kept (node.receive.associations); when it is released
(A-RELEASE), those no other open association carries are passed to ``on_released``, a signal
that the scanner has finished sending them. An aborted or lost association signals nothing.
"""


from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from pydicom import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node.catalog.audit import AuditLog, withhold_values_in_logs
from node.catalog.catalog import Catalog
from node.catalog.series import SeriesState
from node.network.dimse import AdmissionPolicy, AdmittingServer, NoDelayAE, SharedSocketServer
from node.network.tls import server_context
from node.receive.associations import AssociationLedger
from node.receive.dul import tune_association
from node.receive.presentation import cheap_copy_contexts
from node.receive.storage import InstanceStorage
from node.settings import Settings

logger = logging.getLogger(__name__)


class StorageListener:
    """The node's Storage and Verification SCP.

    Parameters
    ----------
    settings
        AE title, address, allowed calling AE titles, spool folder, free-space limit.
    catalog
        Where each stored instance is recorded.
    on_stored
        Called after an instance is stored and recorded (from the association thread).
    audit
        The audit trail of associations and refusals.
    on_released
        Called with the series UIDs an association carried, once it is released (A-RELEASE)
        and no other open association carries them (from the association thread; must not
        block).
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        on_stored: Callable[[SeriesState, Dataset], None],
        audit: AuditLog | None = None,
        on_released: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._on_stored = on_stored
        self._audit = audit
        self._on_released = on_released
        self.associations = AssociationLedger()
        withhold_values_in_logs()
        self._storage = InstanceStorage(settings, catalog, self._instance_stored, audit)
        self._server: AdmittingServer | None = None
        self._thread: threading.Thread | None = None
        self.ae = NoDelayAE(ae_title=settings.ae_title)
        self.ae.maximum_pdu_size = 0  # no limit: fewer, larger P-DATA PDUs
        self.ae.network_timeout = 60
        self.ae.acse_timeout = 30
        self.ae.dimse_timeout = 60
        self.ae.maximum_associations = settings.listener.max_associations
        self.ae.require_called_aet = settings.listener.require_called_aet
        if settings.allowed_calling_aets:
            self.ae.require_calling_aet = list(settings.allowed_calling_aets)
        self.ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the listener is bound to."""
        if self._server is None:
            raise RuntimeError("listener not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self, shared_socket: socket.socket | None = None) -> tuple[str, int]:
        """Start accepting associations in a background thread; returns the bound address.

        Parameters
        ----------
        shared_socket
            A listening socket to accept on (shared with other receiver processes,
            node.receive.receivers) instead of binding ``listen_host:listen_port``.
        """
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._storage.handle_store),
            (evt.EVT_C_ECHO, self._storage.handle_echo),
            (evt.EVT_CONN_OPEN, tune_association),
            (evt.EVT_ACCEPTED, self._log_association, ["accepted"]),
            (evt.EVT_REJECTED, self._log_association, ["rejected"]),
            (evt.EVT_RELEASED, self._association_released),
            (evt.EVT_ABORTED, self._association_broken, ["aborted"]),
            (evt.EVT_CONN_CLOSE, self._association_broken, ["connection closed"]),
        ]
        address = (self._settings.listen_host, self._settings.listen_port)
        tls = self._settings.tls
        server_class: type[AdmittingServer] = AdmittingServer
        if shared_socket is not None:
            server_class = type("SharedSocket", (SharedSocketServer,),
                                {"shared_socket": shared_socket})
        server = self.ae.make_server(
            address,
            evt_handlers=handlers,
            server_class=server_class,
            ssl_context=server_context(tls) if tls.listener else None,
        )
        assert isinstance(server, AdmittingServer)
        server.contexts = cheap_copy_contexts(server.contexts)  # copied per association
        listener = self._settings.listener
        server.policy = AdmissionPolicy(
            request_timeout_s=listener.request_timeout_s,
            max_waiting_per_address=listener.max_waiting_per_address,
            max_associations_per_address=listener.max_associations_per_address,
        )
        server.on_refused = self._refused_by_admission
        self._server = server
        self.ae._servers.append(server)  # pynetdicom's shutdown() expects its own bookkeeping
        self._thread = threading.Thread(
            target=server.serve_forever, name="dicom-listener", daemon=True
        )
        self._thread.start()
        logger.info(
            "DICOM listener %s on %s:%d%s",
            self._settings.ae_title,
            *self.address,
            " (TLS" + (", client certificate required)" if tls.require_client_certificate
                       else ")") if tls.listener else "",
        )
        return self.address

    def stop(self) -> None:
        """Stop accepting associations and close the socket."""
        if self._server is not None:
            self._server.shutdown()  # also closes the socket
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ------------------------------------------------------------------ handlers

    def _log_association(self, event: Any, outcome: str) -> None:
        requestor = event.assoc.requestor
        # The title the peer asked for (A-ASSOCIATE-RQ); the acceptor's own title when absent.
        called = str(getattr(requestor.primitive, "called_ae_title", None)
                     or event.assoc.acceptor.ae_title).strip()
        logger.info(
            "association %s: calling AE %s from %s:%s",
            outcome,
            requestor.ae_title,
            requestor.address,
            requestor.port,
        )
        if self._audit is not None:
            self._audit.record(
                "association",
                outcome=outcome,
                calling_ae=requestor.ae_title,
                called_ae=called,
                address=requestor.address,
                port=requestor.port,
            )
        if outcome == "rejected":
            self._catalog.record_event(
                "association_rejected",
                None,
                # AE titles name devices, not patients: shown unquoted so they stay readable.
                f"calling AE {requestor.ae_title.strip() or '(blank)'} to called AE"
                f" {called or '(blank)'}"
                f" from {requestor.address} rejected",
            )

    def _refused_by_admission(self, address: str, reason: str) -> None:
        """A request the admission rejected before it became an association (per-address
        limit): recorded like pynetdicom's rejections."""
        if self._audit is not None:
            self._audit.record("association", outcome="rejected", address=address,
                               reason=reason)
        self._catalog.record_event(
            "association_rejected", None, f"association from {address} rejected: {reason}"
        )

    def _association_released(self, event: Any) -> None:
        """A-RELEASE: the series the association carried that no other one carries are done."""
        released = self.associations.close(event.assoc)
        if released and self._on_released is not None:
            logger.debug("association from %s released series %s",
                         event.assoc.requestor.ae_title, released)
            self._on_released(released)

    def _association_broken(self, event: Any, how: str) -> None:
        """A-ABORT or connection lost (also after a release): forget the association; its
        series are left to the quiet-time fallback."""
        broken = self.associations.close(event.assoc)
        if broken:
            logger.info("association from %s ended without release (%s) after storing %d"
                        " series: their completion waits for the quiet time",
                        event.assoc.requestor.ae_title, how, len(broken))

    def _instance_stored(self, assoc: Any, state: SeriesState, ds: Dataset) -> None:
        """An instance is stored and recorded: its series is carried by ``assoc``."""
        self.associations.carry(assoc, state.series_instance_uid)
        self._on_stored(state, ds)
