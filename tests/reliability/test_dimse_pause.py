"""The reactor pause of requested associations (node.network.dimse): no C-STORE response is lost.

pynetdicom 3.0.4's ``send_c_store`` pauses the association's reactor thread with a handshake
that can read a stale "paused" flag (docs/pynetdicom-send-c-store-race.md).  Under CPU load
the reactor then takes the C-STORE response off the queue and the caller waits out its DIMSE
timeout.  The interleaving that load produces by chance is forced here: the reactor thread
is held for a moment just after it is let through its checkpoint, and the caller for a
moment between sending its request and reading the response (a thread preempted at those
two points), over a real association to a real SCP.
"""

from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom.association import Association

from node.network.dimse import NoDelayAE, ReactorCheckpoint, install_pause_handshake
from tests.netutil import PacsScp

pytestmark = pytest.mark.e2e

REACTOR_HELD_S = 0.15
"""How long the reactor is held after its checkpoint let it through (less than the caller)."""
CALLER_HELD_S = 0.4
"""How long the caller is held between its request and reading the response."""
DIMSE_TIMEOUT_S = 3.0


def _dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.PatientID = "RACE"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


class _HeldEvent(threading.Event):
    """pynetdicom's own checkpoint (an Event), with the reactor held after each wake-up."""

    def wait(self, timeout: float | None = None) -> bool:
        passed = super().wait(timeout)
        time.sleep(REACTOR_HELD_S)
        return passed


class _HeldCheckpoint(ReactorCheckpoint):
    """The node's checkpoint, with the reactor held after each wake-up."""

    def wait(self, timeout: float | None = None) -> bool:
        passed = super().wait(timeout)
        time.sleep(REACTOR_HELD_S)
        return passed


def _hold_caller(assoc: Association) -> None:
    """Hold the caller between sending a request and reading its response."""
    dimse = assoc.dimse
    original = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        if block and threading.current_thread() is not assoc:
            time.sleep(CALLER_HELD_S)
        return original(block=block)

    dimse.get_msg = get_msg  # type: ignore[method-assign]


def _store_three(pacs: PacsScp, checkpoint: str) -> list[int | None]:
    ae = NoDelayAE(ae_title="RACE")
    ae.dimse_timeout = DIMSE_TIMEOUT_S
    ae.add_requested_context(MRImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", pacs.port, ae_title=pacs.ae_title)
    assert assoc.is_established
    if checkpoint == "pynetdicom":
        assoc._reactor_checkpoint = _HeldEvent()
        assoc._reactor_checkpoint.set()
    else:
        assoc._reactor_checkpoint = _HeldCheckpoint(assoc)
    _hold_caller(assoc)
    statuses: list[int | None] = []
    try:
        for _ in range(3):
            status = assoc.send_c_store(_dataset())
            statuses.append(int(status.Status) if "Status" in status else None)
            if statuses[-1] is None:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def test_pynetdicom_pause_loses_the_response_when_the_reactor_is_late(tmp_path: Path) -> None:
    """The upstream race, reproduced: fails once pynetdicom fixes it (drop the workaround)."""
    pacs = PacsScp(tmp_path / "pacs").start()
    try:
        statuses = _store_three(pacs, "pynetdicom")
    finally:
        pacs.stop()
    assert statuses[-1] is None, "pynetdicom's pause no longer loses responses: see the doc"
    assert len(pacs.received()) == len(statuses)  # the SCP stored and answered every one


def test_node_pause_keeps_every_response_when_the_reactor_is_late(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs").start()
    try:
        statuses = _store_three(pacs, "node")
    finally:
        pacs.stop()
    assert statuses == [0, 0, 0]
    assert len(pacs.received()) == 3


def test_every_requested_association_gets_the_node_pause(tmp_path: Path) -> None:
    pacs = PacsScp(tmp_path / "pacs").start()
    try:
        ae = NoDelayAE(ae_title="RACE")
        ae.add_requested_context(MRImageStorage, [ExplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", pacs.port, ae_title=pacs.ae_title)
        assert isinstance(assoc._reactor_checkpoint, ReactorCheckpoint)
        assert int(assoc.send_c_store(_dataset()).Status) == 0
        assoc.release()
        assert assoc.is_released
    finally:
        pacs.stop()


def test_the_pynetdicom_internals_the_workaround_relies_on() -> None:
    """The pause protocol node.network.dimse assumes; a change in pynetdicom fails here first."""
    reactor = inspect.getsource(Association._run_reactor)
    paused = reactor.index("self._is_paused = True")
    assert reactor.index("self._reactor_checkpoint.wait()", paused) > paused
    assert "self.dimse.get_msg(block=False)" in reactor
    for method in (Association.send_c_store, Association.release, Association.send_c_echo):
        source = inspect.getsource(method)
        assert "self._reactor_checkpoint.clear()" in source
        assert "while not self._is_paused" in source
    init = inspect.getsource(Association.__init__)
    assert "self._reactor_checkpoint: threading.Event = threading.Event()" in init


def test_install_refuses_an_association_without_the_checkpoint() -> None:
    class Stranger(threading.Thread):
        pass

    with pytest.raises(RuntimeError, match="revisited"):
        install_pause_handshake(Stranger())  # type: ignore[arg-type]


def test_the_pause_waits_for_the_reactor_and_never_for_a_dead_one() -> None:
    stop = threading.Event()
    passes: list[float] = []

    def reactor_loop() -> None:
        while not stop.is_set():
            checkpoint.wait()
            passes.append(time.monotonic())
            time.sleep(0.001)

    reactor = threading.Thread(target=reactor_loop, daemon=True)
    checkpoint = ReactorCheckpoint(reactor)
    checkpoint.clear()  # not started: returns at once
    checkpoint.set()
    reactor.start()
    time.sleep(0.05)
    checkpoint.clear()  # returns only once the reactor is blocked at the gate
    assert checkpoint._blocked == 1
    count = len(passes)
    time.sleep(0.05)
    assert len(passes) == count  # nothing passed the gate while paused
    stop.set()
    checkpoint.set()
    reactor.join(5)
    assert not reactor.is_alive()
    checkpoint.clear()  # the reactor ended: returns at once
    assert not checkpoint.is_set()
