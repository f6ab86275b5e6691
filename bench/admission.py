"""Admission: how long a scanner's store takes while idle connections are held open.

``python -m bench.admission`` starts the node; ``--repeat`` times, it opens ``--idle`` new TCP
connections that never send an A-ASSOCIATE-RQ (a port scanner, a misbehaving peer) and at
once times a scanner's association and C-STORE of one instance (the node closes silent
connections after its request timeout, so each store meets a fresh crowd of them). The
figures are printed as JSON.
The functional check is ``tests/reliability/test_admission.py``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE

from tests.hardening.util import write_brain_series
from tests.netutil import NodeProcess

SCANNER_TIMEOUT_S = 5.0


def store_seconds(port: int, path: Path) -> float | None:
    """Seconds from association request to the C-STORE response (None: it failed)."""
    ds = dcmread(path)
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = SCANNER_TIMEOUT_S
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    started = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title="CMRNODE")
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(ds)
        elapsed = time.perf_counter() - started
        return elapsed if "Status" in status and int(status.Status) == 0 else None
    finally:
        assoc.release()


def main(argv: Sequence[str] | None = None) -> int:
    """Print the store times with idle connections open; exit 1 if a store failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.admission", description=__doc__)
    parser.add_argument("--idle", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cmr-admission-") as tmp:
        paths = write_brain_series(Path(tmp) / "in", 5, args.repeat)
        node = NodeProcess(Path(tmp) / "node", None, warm_up="rehearse").start(timeout=120)
        idle: list[socket.socket] = []
        times: list[float | None] = []
        try:
            for path in paths:
                idle += [socket.create_connection(("127.0.0.1", node.port), timeout=5)
                         for _ in range(args.idle)]
                times.append(store_seconds(node.port, path))
        finally:
            for sock in idle:
                sock.close()
            node.stop()
    done = [t for t in times if t is not None]
    print(json.dumps({
        "idle_connections": args.idle,
        "stores": len(times),
        "failed": len(times) - len(done),
        "median_s": round(statistics.median(done), 3) if done else None,
        "max_s": round(max(done), 3) if done else None,
    }, indent=2))
    return 1 if len(done) != len(times) else 0


if __name__ == "__main__":
    raise SystemExit(main())
