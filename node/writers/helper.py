"""A helper process that builds and encodes some outputs while the worker builds the others.

Building the outputs is pure Python (highdicom, pydicom), so the threads of one process take
turns on one core. The planar-ROI report and the summary image do not depend on the SEG: on a
machine with two cores or more they are built and encoded in one helper process while the
worker's thread builds the SEG and the summary report, which references the SEG. The objects
are the same (the same functions run on the same inputs); the helper returns each one
encoded, and its bytes are what is written.

The helper is one process for the whole node, started from a ``forkserver`` (forking a process
that runs listener and worker threads would copy their locks in whatever state they are in),
with the writer modules loaded in advance. Its log records are handled by the node's logging.
When the helper cannot be used (one core, or the process pool broke), the outputs are built in
the calling thread.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import pydicom
from pydicom.filebase import DicomBytesIO

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    from node.uids import DerivedObjectIdentity
    from node.writers import WriterSettings
    from plugins.api import AnalysisResult, LoadedSeries

logger = logging.getLogger(__name__)

#: Modules the forkserver imports once, so that every helper starts with them loaded.
PRELOAD = ["node.writers.sr", "node.writers.summary", "node.writers.seg"]

Builder = Callable[..., "pydicom.Dataset | None"]
"""A writer function: ``(result, series, sources, *, settings, identity) -> dataset``."""


def encode(ds: pydicom.Dataset) -> bytes:
    """A data set as DICOM file bytes (preamble, file meta, data set)."""
    buffer = DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _build_encoded(
    builder: Builder,
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    settings: WriterSettings,
    identity: DerivedObjectIdentity,
) -> bytes | None:
    """Run in the helper: build one output and encode it (None when the writer made none)."""
    ds = builder(result, series, sources, settings=settings, identity=identity)
    return None if ds is None else encode(ds)


def _init_helper(records: Queue[logging.LogRecord]) -> None:
    """Send every log record of the helper to the node's process."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(logging.INFO)
    logging.getLogger("highdicom").setLevel(logging.WARNING)


class _ParentHandler(logging.Handler):
    """Hands a record from the helper to the logger it was emitted on, in this process."""

    def emit(self, record: logging.LogRecord) -> None:
        logger_ = logging.getLogger(record.name)
        if logger_.isEnabledFor(record.levelno):
            logger_.handle(record)


class OutputHelper:
    """A process pool of one helper that builds outputs (see the module's description)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        self._records: Queue[logging.LogRecord] = context.Queue()
        self._listener = logging.handlers.QueueListener(self._records, _ParentHandler())
        self._listener.start()
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_init_helper,
            initargs=(self._records,),
        )  # fmt: skip

    def submit(
        self,
        builder: Builder,
        result: AnalysisResult,
        series: LoadedSeries,
        sources: Sequence[pydicom.Dataset],
        *,
        settings: WriterSettings,
        identity: DerivedObjectIdentity,
    ) -> Future[bytes | None]:
        """Start building one output in the helper; the future gives its encoded bytes."""
        return self._pool.submit(
            _build_encoded, builder, result, series, list(sources), settings, identity
        )

    def shutdown(self) -> None:
        """Stop the helper process and the log forwarding."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._listener.stop()


_helper: OutputHelper | None = None
_helper_lock = threading.Lock()
_helper_broken = False


def output_helper() -> OutputHelper | None:
    """The node's helper, started on first use; None on a single core or after it broke."""
    global _helper
    if _helper_broken or (os.cpu_count() or 1) < 2:
        return None
    with _helper_lock:
        if _helper is None:
            _helper = OutputHelper()
        return _helper


def helper_failed(exc: BaseException) -> None:
    """Stop using a helper whose process died (the caller builds the outputs itself)."""
    global _helper_broken
    logger.warning("output helper process failed (%s): outputs are built in the worker", exc)
    _helper_broken = True


def decode(encoded: bytes) -> pydicom.Dataset:
    """The data set of encoded file bytes."""
    return pydicom.dcmread(DicomBytesIO(encoded))


__all__ = ["BrokenProcessPool", "OutputHelper", "decode", "encode", "helper_failed",
           "output_helper"]
