"""Helpers of the hardening suite: synthetic series, streaming senders, misbehaving PACS."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pynetdicom import _config
from pynetdicom.dsutils import split_dataset

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_noncardiac import non_cardiac_mr_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from node.network.dimse import NoDelayAE
from tests.netutil import NodeProcess, PacsScp

#: Fewest outputs of one analysed T1 map series: SEG, SR and the summary Secondary Capture.
OUTPUTS_PER_T1_SERIES = 3
SMALL_SHAPE = (64, 64)


def write_brain_series(folder: Path, seed: int, n_slices: int) -> list[Path]:
    """A non-cardiac MR series (no analysis accepts it) of small images."""
    datasets = non_cardiac_mr_series_datasets(
        study=StudyInfo.synthetic(seed),
        rng=np.random.default_rng(seed),
        n_slices=n_slices,
        shape=SMALL_SHAPE,
    )
    return write_series(datasets, folder / f"brain-{seed}")


def write_t1_series(folder: Path, seed: int, *, vendor: str = "siemens") -> list[Path]:
    """A three-slice MOLLI T1 map series of a lesion-free heart (the node analyses it)."""
    rng = np.random.default_rng(seed)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(
        rng, field_strength_t=1.5, levels=("basal", "mid", "apical"), heart=heart
    )
    datasets = t1map_series_datasets(
        slices, vendor=vendor, field_strength_t=1.5, rng=rng, study=StudyInfo.synthetic(seed)
    )
    return write_series(datasets, folder / f"t1-{seed}")


def sop_uid(path: Path) -> str:
    """SOP Instance UID of a file."""
    return str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
               .SOPInstanceUID)


@dataclass
class StreamResult:
    """What a streaming sender saw: the status of each instance it sent, in order."""

    statuses: list[tuple[Path, int | None]] = field(default_factory=list)
    error: str | None = None

    @property
    def acknowledged(self) -> list[Path]:
        """Files the node answered Success for."""
        return [p for p, s in self.statuses if s == 0]


def send_stream(
    paths: Sequence[Path],
    port: int,
    result: StreamResult,
    *,
    called: str = "CMRNODE",
    calling: str = "SCANNER",
    dimse_timeout: float = 30.0,
    raw: bool = False,
) -> StreamResult:
    """C-STORE files on one association, recording each status as soon as it arrives.

    Only the files' meta information is parsed here; with ``raw`` the bytes after it are sent
    as they are (for corrupted files). Stops at the first missing response (the association
    died); never raises.
    """
    metas = [split_dataset(Path(p))[0] for p in paths]
    ae = NoDelayAE(ae_title=calling)
    ae.dimse_timeout = dimse_timeout
    ae.network_timeout = dimse_timeout
    for sop_class in sorted({str(m.MediaStorageSOPClassUID) for m in metas}):
        syntaxes = sorted(
            {str(m.TransferSyntaxUID) for m in metas
             if str(m.MediaStorageSOPClassUID) == sop_class}
        )
        ae.add_requested_context(sop_class, syntaxes)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
    except Exception as exc:  # a refused connection
        result.error = f"cannot associate: {exc}"
        return result
    if not assoc.is_established:
        result.error = "association not established"
        return result
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = raw
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            code = int(status.Status) if "Status" in status else None
            result.statuses.append((path, code))
            if code is None:
                result.error = "no response"
                break
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        if assoc.is_established:
            assoc.release()
    return result


def send_concurrently(chunks: Sequence[Sequence[Path]], port: int) -> list[StreamResult]:
    """One association per chunk, all at once; returns each association's statuses."""
    results = [StreamResult() for _ in chunks]
    threads = [
        threading.Thread(target=send_stream, args=(chunk, port, result), daemon=True)
        for chunk, result in zip(chunks, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return results


@dataclass
class FaultyPacs(PacsScp):
    """A test PACS that can be slow, or hang without ever answering a C-STORE.

    ``delay_s`` is slept before each answer; while ``hang`` is set a C-STORE is not
    answered (the handler blocks until ``hang`` is cleared) and nothing is kept.
    """

    delay_s: float = 0.0
    hang: threading.Event = field(default_factory=threading.Event)
    hung_requests: int = 0

    def _on_store(self, event: Any) -> int:
        if self.hang.is_set():
            with self._lock:
                self.hung_requests += 1
            while self.hang.is_set():
                time.sleep(0.05)
            return 0xA700  # the requestor has long given up; keep nothing
        if self.delay_s:
            time.sleep(self.delay_s)
        return super()._on_store(event)


def configure(node: NodeProcess, *, replace: dict[str, str] | None = None) -> NodeProcess:
    """Write the node's configuration, then replace lines of it (``old line -> new line``)."""
    node.write_config()
    text = node.config_path.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} not in the generated configuration"
        text = text.replace(old, new)
    node.config_path.write_text(text)
    return node


def instance_uids(node: NodeProcess) -> list[str]:
    """SOP Instance UIDs the node's catalog holds (one row per instance)."""
    return [r["sop_instance_uid"] for r in node.query("SELECT sop_instance_uid FROM instances")]


def spool_files(node: NodeProcess) -> list[Path]:
    """Instance files in the node's spool."""
    spool = node.data_dir / "spool"
    return sorted(spool.rglob("*.dcm")) if spool.exists() else []
