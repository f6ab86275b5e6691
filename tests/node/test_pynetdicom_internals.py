"""The private pynetdicom internals the listener tunes still exist and mean what it assumes.

``tune_association`` (node/receive/dul.py) sets, when a connection opens, two
private attributes of the association's DUL service provider (pynetdicom 3.0,
``pynetdicom/dul.py``):

* ``_run_loop_delay`` -- the DUL thread's sleep when it had nothing to do (1 ms by default);
  each C-STORE response waits for the next poll, so the listener shortens it
  (``DUL_POLL_S``);
* ``to_user_queue`` -- the queue from the DUL to the association (ACSE primitives); the
  listener replaces it with :class:`node.receive.dul.ConnectionAwareQueue`, whose blocking
  ``get`` ends when the connection is gone.  That queue reads ``dul.socket.socket``,
  ``dul._kill_thread`` and ``dul.is_alive()``.

Every test here fails when an upgrade of pynetdicom renames, retypes or stops using one of
them; then the tuning must be re-checked (or dropped) before the pin in
deploy/constraints.txt moves.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

import pynetdicom
from pydicom.uid import JPEG2000Lossless
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt, fsm
from pynetdicom.dul import DULServiceProvider
from pynetdicom.sop_class import MRImageStorage, Verification  # type: ignore[attr-defined]
from pynetdicom.transport import RequestHandler

from node.catalog.catalog import Catalog
from node.receive.dul import DUL_POLL_S, ConnectionAwareQueue
from node.receive.listener import StorageListener
from node.receive.presentation import CheapCopyContext, cheap_copy_contexts
from node.settings import Settings
from tests.netutil import free_port, wait_for


def test_dul_sleeps_its_run_loop_delay_when_idle() -> None:
    source = inspect.getsource(DULServiceProvider.run_reactor)
    assert "time.sleep(self._run_loop_delay)" in source
    init = inspect.getsource(DULServiceProvider.__init__)
    assert re.search(r"self\._run_loop_delay\s*=\s*0\.001\b", init)


def test_dul_reads_and_fsm_writes_to_user_queue_through_the_attribute() -> None:
    """A replaced queue is used only if every reader and writer looks the attribute up."""
    receive = inspect.getsource(DULServiceProvider.receive_pdu)
    assert "self.to_user_queue.get(" in receive
    peek = inspect.getsource(DULServiceProvider.peek_next_pdu)
    assert "self.to_user_queue.queue[0]" in peek
    writers = re.findall(r"(\w+)\.to_user_queue\.(\w+)\(", inspect.getsource(fsm))
    assert writers and set(writers) == {("dul", "put")}
    stored = re.findall(r"to_user_queue\s*=", inspect.getsource(pynetdicom.association))
    assert stored == []  # the association keeps no reference of its own to the queue


def test_live_association_is_tuned_and_the_connection_state_reads_hold(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", listen_port=free_port(), min_free_disk_mb=1)
    catalog = Catalog(settings.catalog_path)
    listener = StorageListener(settings, catalog, lambda state, ds: None)
    seen: dict[str, Any] = {}
    opened = threading.Event()

    def capture(event: Any) -> None:  # after the listener's own EVT_CONN_OPEN handler
        seen["dul"] = event.assoc.dul
        opened.set()

    listener.start()
    try:
        # bound after start: handlers run in the order they were bound
        assert listener._server is not None
        listener._server.bind(evt.EVT_C_ECHO, capture)
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", settings.listen_port, ae_title="CMRNODE")
        assert assoc.is_established
        status = assoc.send_c_echo()
        assert int(status.Status) == 0
        assert opened.wait(5)
        dul = seen["dul"]
        assert isinstance(dul, DULServiceProvider)
        assert isinstance(dul.to_user_queue, ConnectionAwareQueue)
        assert isinstance(dul.to_user_queue, queue.Queue)
        assert dul._run_loop_delay == DUL_POLL_S
        assert isinstance(dul._kill_thread, bool) and not dul._kill_thread
        assert dul.socket is not None and dul.socket.socket is not None
        assert dul.is_alive()
        assert not dul.to_user_queue._closed()
        assoc.release()
        # once the peer is gone the reads ConnectionAwareQueue relies on say so
        wait_for(lambda: dul.to_user_queue._closed(), 5.0, interval=0.05)
        started = time.monotonic()
        with contextlib.suppress(queue.Empty):
            dul.to_user_queue.get(timeout=30)
        assert time.monotonic() - started < 1.0  # not the 30 s asked for
    finally:
        listener.stop()
        catalog.close()


def test_each_association_deep_copies_the_server_contexts() -> None:
    """node.receive.presentation makes that copy cheap; it matters only while pynetdicom does it."""
    source = inspect.getsource(RequestHandler._create_association)
    assert "supported_contexts = deepcopy(self.server.contexts)" in source


def test_cheap_copies_equal_deep_copies_and_stay_apart() -> None:
    ae = AE()
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    originals = ae.supported_contexts
    cheap = cheap_copy_contexts(originals)
    copied = copy.deepcopy(cheap)
    assert len(copied) == len(originals)
    for a, b in zip(originals, copied, strict=True):
        assert vars(a) == vars(b)
        assert b._transfer_syntax is not a._transfer_syntax
    copied[0].result = 0
    copied[0].context_id = 1
    copied[0]._transfer_syntax.append("1.2.3.4")
    assert cheap[0].result is None and cheap[0].context_id is None
    assert "1.2.3.4" not in cheap[0].transfer_syntax


def test_the_listener_negotiates_with_cheap_copies(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", listen_port=free_port(), min_free_disk_mb=1)
    catalog = Catalog(settings.catalog_path)
    listener = StorageListener(settings, catalog, lambda state, ds: None)
    listener.start()
    try:
        assert listener._server is not None
        assert all(isinstance(c, CheapCopyContext) for c in listener._server.contexts)
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(MRImageStorage, JPEG2000Lossless)
        ae.add_requested_context(Verification)
        for _ in range(2):  # each association gets its own copy to negotiate on
            assoc = ae.associate("127.0.0.1", settings.listen_port, ae_title="CMRNODE")
            assert assoc.is_established
            accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0]))
                        for c in assoc.accepted_contexts}
            assert (str(MRImageStorage), str(JPEG2000Lossless)) in accepted
            assoc.release()
        assert all(c.result is None for c in listener._server.contexts)
    finally:
        listener.stop()
        catalog.close()
