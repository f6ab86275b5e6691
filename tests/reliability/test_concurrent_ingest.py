"""Associations storing at the same time: every Success is on disk and in the catalog, even
when the node is killed (SIGKILL) right after the last response."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
from pydicom import dcmread

from bench.ingest import write_instance_set
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.t1map import make_t1map_stack
from tests.netutil import NodeProcess, send_files

ASSOCIATIONS = 4
INSTANCES = 15
#: Bound on a node start on a loaded 2-core machine.
START_TIMEOUT_S = 180.0
NO_ANALYSIS = "[analysis.t1map]\nenabled = false\n[analysis.lge]\nenabled = false\n"


def _data_set(raw: bytes) -> bytes:
    """A Part 10 file's bytes after its file meta information."""
    assert raw[128:132] == b"DICM"
    return raw[144 + struct.unpack("<I", raw[140:144])[0] :]


def test_every_success_of_concurrent_associations_survives_kill(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, levels=("mid",), shape=(64, 64))
    template = t1map_series_datasets(slices, vendor="siemens", field_strength_t=1.5, rng=rng)[0]
    sets = [
        write_instance_set(template, INSTANCES, tmp_path / f"set-{i}") for i in range(ASSOCIATIONS)
    ]
    node = NodeProcess(tmp_path / "node", None, stable_age_s=3600, extra_config=NO_ANALYSIS)
    node.start(timeout=START_TIMEOUT_S)
    statuses: list[list[int | None]] = [[] for _ in sets]
    barrier = threading.Barrier(len(sets))

    def send(index: int) -> None:
        barrier.wait(timeout=30)
        statuses[index] = send_files(sets[index], node.port, raw=True)

    try:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(sets))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        node.kill()  # right after the last response: no orderly shutdown
    finally:
        node.stop()
    acknowledged = [
        path
        for paths, answers in zip(sets, statuses, strict=True)
        for path, status in zip(paths, answers, strict=True)
        if status == 0
    ]
    assert len(acknowledged) == ASSOCIATIONS * INSTANCES
    rows = {
        r["sop_instance_uid"]: Path(r["path"])
        for r in node.query("SELECT sop_instance_uid, path FROM instances")
    }
    series = {r["series_instance_uid"]: r["instance_count"]
              for r in node.query("SELECT series_instance_uid, instance_count FROM series")}
    assert sorted(series.values()) == [INSTANCES] * ASSOCIATIONS
    for path in acknowledged:
        sent = path.read_bytes()
        sop_uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert sop_uid in rows
        assert _data_set(rows[sop_uid].read_bytes()) == _data_set(sent)
    # A restart finds nothing to recover: every row was committed before its Success.
    node.start(timeout=START_TIMEOUT_S)
    try:
        recovered = node.query("SELECT COUNT(*) AS n FROM events WHERE kind='spool_recovered'")
        assert recovered[0]["n"] == 0
    finally:
        node.stop()
