"""Several receiver processes on one DICOM port (node.receive.receivers), the node its own process.

Which receiver serves a connection is read from ``/proc``: the process holding the socket
whose TCP peer is the test's end of the connection.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from node.network.dimse import NoDelayAE
from node.settings import SettingsError, load_settings
from tests.netutil import NodeProcess, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MR = "1.2.840.10008.5.1.4.1.1.4"
STABLE_AGE_S = 60.0
#: Bound on release -> series complete, far under STABLE_AGE_S (the grace is 1 s; slack for
#: a loaded machine, not a timing target).
RELEASED_WITHIN_S = 20.0
#: Connections opened at most to find one served by each receiver.
MAX_CONNECTIONS = 24


def _mr(series: str, study: str) -> Dataset:
    """A small MR instance without ImagesInAcquisition (no count: completion by release)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "MR"
    ds.PatientID = "RECV1"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.arange(256, dtype=np.uint16).tobytes()
    return ds


def _children(pid: int) -> list[int]:
    """Process ids of the direct children of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with (task / "children").open() as fh:
            found += [int(p) for p in fh.read().split()]
    return sorted(found)


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    """Inode of the node's side of the loopback TCP connection from ``remote_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                if int(local, 16) == local_port and int(remote, 16) == remote_port:
                    return fields[9]
    return None


def _serving(pids: list[int], node_port: int, client_port: int) -> int | None:
    """The process among ``pids`` that holds the node's end of a connection."""
    inode = _socket_inode(node_port, client_port)
    if inode is None:
        return None
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if f"socket:[{inode}]" in links:
            return pid
    return None


def _associate(node: NodeProcess) -> Any:
    ae = NoDelayAE(ae_title="SCANNER")
    ae.add_requested_context(MR, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=node.ae_title)
    assert assoc.is_established
    return assoc


def _client_port(assoc: Any) -> int:
    return int(assoc.dul.socket.socket.getsockname()[1])


def _one_per_receiver(node: NodeProcess, receivers: list[int]) -> dict[int, Any]:
    """Open associations until one is served by each receiver; the others are released."""
    chosen: dict[int, Any] = {}
    for _ in range(MAX_CONNECTIONS):
        assoc = _associate(node)
        pid = wait_for(lambda a=assoc: _serving(receivers, node.port, _client_port(a)), 5.0)
        if pid in chosen:
            assoc.release()
        else:
            chosen[pid] = assoc
        if len(chosen) == len(receivers):
            break
    assert len(chosen) == len(receivers), "connections never reached every receiver"
    return chosen


def _state(node: NodeProcess, series_uid: str) -> tuple[str, int] | None:
    rows = node.query("SELECT state, instance_count FROM series WHERE series_instance_uid=?",
                      (series_uid,))
    return (str(rows[0]["state"]), int(rows[0]["instance_count"])) if rows else None


def _complete(node: NodeProcess, series_uid: str) -> bool:
    state = _state(node, series_uid)
    return state is not None and state[0] != "receiving"


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path / "node", None, stable_age_s=STABLE_AGE_S,
                       extra_config="[listener]\nprocesses = 2\n").start()
    yield proc
    proc.stop()


def _receivers(node: NodeProcess, count: int = 2, gone: int | None = None) -> list[int]:
    """The node's receiver processes, once there are ``count`` (and ``gone`` is reaped)."""
    assert node.proc is not None
    parent = node.proc.pid

    def running() -> list[int] | None:
        children = _children(parent)
        return children if len(children) == count and gone not in children else None

    return list(wait_for(running, 30.0))


def test_two_associations_in_two_processes_both_series_complete_on_release(
    node: NodeProcess,
) -> None:
    receivers = _receivers(node)
    study = generate_uid()
    series = {pid: generate_uid() for pid in receivers}
    scanners = _one_per_receiver(node, receivers)
    for pid, assoc in scanners.items():
        for _ in range(3):
            assert int(assoc.send_c_store(_mr(series[pid], study)).Status) == 0
    time.sleep(2.0)  # longer than the release grace: open associations complete nothing
    assert not any(_complete(node, uid) for uid in series.values())
    for assoc in scanners.values():
        assoc.release()
    for uid in series.values():
        wait_for(lambda u=uid: _complete(node, u), RELEASED_WITHIN_S)
        assert _state(node, uid) is not None
        assert _state(node, uid)[1] == 3  # type: ignore[index]


def test_one_series_over_two_processes_completes_after_the_last_release(
    node: NodeProcess,
) -> None:
    receivers = _receivers(node)
    study, uid = generate_uid(), generate_uid()
    first, second = _one_per_receiver(node, receivers).values()
    assert int(first.send_c_store(_mr(uid, study)).Status) == 0
    assert int(second.send_c_store(_mr(uid, study)).Status) == 0
    first.release()
    time.sleep(4.0)  # several release graces
    assert not _complete(node, uid), "complete while an association in the other process carried it"
    second.release()
    wait_for(lambda: _complete(node, uid), RELEASED_WITHIN_S)


def test_killed_receiver_is_restarted_and_nothing_acknowledged_is_lost(
    node: NodeProcess,
) -> None:
    receivers = _receivers(node)
    study, uid = generate_uid(), generate_uid()
    scanners = _one_per_receiver(node, receivers)
    victim, survivor = receivers[0], receivers[1]
    sent = [_mr(uid, study) for _ in range(6)]
    acknowledged = []
    for ds in sent[:3]:
        assert int(scanners[victim].send_c_store(ds).Status) == 0
        acknowledged.append(str(ds.SOPInstanceUID))
    os.kill(victim, signal.SIGKILL)
    scanners[survivor].release()
    # The scanner's association is gone with its receiver: its next C-STORE fails.
    try:
        answered = "Status" in scanners[victim].send_c_store(sent[3])
    except RuntimeError:  # pynetdicom noticed the abort before the send
        answered = False
    assert not answered
    restarted = _receivers(node, gone=victim)
    assert survivor in restarted
    stored = {r["sop_instance_uid"] for r in node.query(
        "SELECT sop_instance_uid FROM instances WHERE series_instance_uid=?", (uid,))}
    assert set(acknowledged) <= stored
    # The scanner sends the rest again, on a new association, and releases it.
    again = _associate(node)
    for ds in sent[3:]:
        assert int(again.send_c_store(ds).Status) == 0
    again.release()
    wait_for(lambda: _complete(node, uid), RELEASED_WITHIN_S)
    assert _state(node, uid) is not None
    assert _state(node, uid)[1] == len(sent)  # type: ignore[index]
    events = node.query("SELECT kind FROM events WHERE kind='receiver_restarted'")
    assert len(events) == 1


def test_receivers_end_with_the_node(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", None, stable_age_s=STABLE_AGE_S,
                       extra_config="[listener]\nprocesses = 2\n").start()
    receivers = _receivers(node)
    node.kill()  # SIGKILL: the node cannot stop them itself

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and
                       "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
                       for pid in receivers)

    wait_for(gone, 10.0)
    restarted = NodeProcess(tmp_path / "node", None, port=node.port, stable_age_s=STABLE_AGE_S,
                            extra_config="[listener]\nprocesses = 2\n").start()  # port free
    restarted.stop()


@pytest.mark.parametrize(("value", "valid"), [(1, True), (2, True), (0, False), (65, False)])
def test_processes_setting_is_bounded(tmp_path: Path, value: int, valid: bool) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path}"\n[listener]\nprocesses = {value}\n')
    if valid:
        assert load_settings(config).listener.processes == value
    else:
        with pytest.raises(SettingsError, match=r"listener\.processes"):
            load_settings(config)
