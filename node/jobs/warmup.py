"""Warm-up at start, so that the first series is analysed as fast as the next ones.

Loading the weights (each analysis descriptor's ``warm_up``, :mod:`node.analyses`) is not
enough: the first analysis of a process also pays the imports of its writers and libraries
(highdicom, scikit-image, pyradiomics), highdicom's tables of the standard, the first
inference of each network and the first feature extraction: 1.3 s of the first 3.54 s time to
result of a 3-slice T1 map (issue 16). The warm-up therefore also analyses one small synthetic
series of each analysis that has one (:data:`REHEARSAL_SERIES`: a 3-slice T1 map and a
4-slice LGE stack, committed DICOM files written by ``make warmup-series`` from the phantom
generator, :mod:`models.phantoms.warmup`), builds and writes its outputs into a temporary
folder and discards them. It runs in a background thread of each process that runs analysis
workers, after the listener accepts associations; a series that arrives meanwhile is analysed
as soon as a worker takes it (the two share the loaded models).

``[node] warm_up`` chooses how much is done (:class:`node.settings.WarmUp`): the rehearsal
(default), loading only, or nothing.  The rehearsal costs each start about a full analysis
of a T1 map and an LGE series in CPU time; a process started often for short work (the test
suite's nodes) loads only, or nothing.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path

from node.analyses import descriptor, with_networks
from node.jobs.pipeline import run_analysis, write_outputs
from node.outputs.writers import WriterSettings
from node.settings import WarmUp
from plugins import get_plugin

logger = logging.getLogger(__name__)

REHEARSAL_SERIES = Path(__file__).parents[1] / "defaults" / "warmup"
"""One folder of DICOM files per analysis whose first run is rehearsed (``t1map``, ``lge``;
the others only load), written by ``make warmup-series``."""


def rehearsal_series(analysis: str) -> list[Path]:
    """The files of the series ``analysis`` is rehearsed on (none: it only loads)."""
    return sorted((REHEARSAL_SERIES / analysis).glob("*.dcm"))


def load_analyses(names: Sequence[str]) -> None:
    """Import the named plugins and load what each needs (its descriptor's ``warm_up``:
    networks, libraries). Failures are logged, not raised: the first analysis will meet and
    report them."""
    for name in names:
        try:
            get_plugin(name)
            descriptor(name).warm_up()
            logger.debug("analysis %s ready", name)
        except Exception:
            logger.exception("warm-up of analysis %s failed", name)


_REHEARSING: ContextVar[bool] = ContextVar("cmr_node_warm_up_rehearsal", default=False)
"""True in the warm-up's context: its thread, and the threads an analysis hands work to in
its caller's context (``contextvars.copy_context().run``)."""


class _QuietRehearsal(logging.Filter):
    """Drops the INFO and DEBUG records logged in the warm-up's context (the rehearsal's
    analyses log as real ones would); warnings and errors pass, and so does every other
    thread's record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _REHEARSING.get()


def warm_up_analyses(names: Sequence[str], writer: WriterSettings,
                     loaded: threading.Event | None = None,
                     mode: WarmUp = WarmUp.REHEARSE) -> float:
    """Load the named analyses and rehearse their first run; returns the seconds taken.

    Failures are logged, not raised: the first real series meets and reports them. The
    rehearsal's own INFO lines are left out of the log; one line reports the warm-up.

    Parameters
    ----------
    names
        Analyses to load and rehearse.
    writer
        Settings of the rehearsal's (discarded) outputs.
    loaded
        Set once the analyses' modules and weights are loaded (also when loading failed), before
        the rehearsal: workers wait for it, because importing torch and reading weights holds
        the interpreter long enough to starve their heartbeats.
    mode
        Rehearse, load only, or nothing (``loaded`` is then set at once).
    """
    started = time.perf_counter()
    if mode == WarmUp.OFF:
        if loaded is not None:
            loaded.set()
        logger.info("analyses not warmed up (node.warm_up = off): the first job loads them")
        return 0.0
    quiet = _QuietRehearsal()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(quiet)
    rehearsing = _REHEARSING.set(True)
    try:
        try:
            load_analyses(names)
        finally:
            if loaded is not None:
                loaded.set()
        if mode == WarmUp.REHEARSE:
            _rehearse(names, writer)
        freeze_heap()
    finally:
        _REHEARSING.reset(rehearsing)
        for handler in handlers:
            handler.removeFilter(quiet)
    elapsed = time.perf_counter() - started
    logger.info("analyses %s in %.1f s: %s",
                "warmed up" if mode == WarmUp.REHEARSE else "loaded", elapsed,
                ", ".join(names) or "none")
    return elapsed


def freeze_heap() -> None:
    """Leave the objects alive now (modules, weights, tables) out of every later collection.

    An analysis and its outputs create a few hundred thousand objects, so Python's full
    collection runs every few jobs, and it went through the whole heap: 310,000 objects once
    both analyses are loaded, 0.12 s of CPU and up to 1 s of wall time on the shared 2-core
    machine, spent inside the job it fell into. After :func:`gc.freeze` it goes through what
    the jobs created only. Garbage is collected first, so only live objects are frozen.
    """
    gc.collect()
    gc.freeze()
    logger.debug("%d objects left out of garbage collection", gc.get_freeze_count())


def _rehearse(names: Sequence[str], writer: WriterSettings) -> None:
    with tempfile.TemporaryDirectory(prefix="cmr-node-warm-up-") as tmp:
        for name in names:
            paths = rehearsal_series(name)
            if not paths:
                continue
            try:
                run = run_analysis(paths, name, with_networks(name, {}), writer)
                write_outputs(run, Path(tmp) / name / "outputs")
            except Exception:
                logger.warning("warm-up run of analysis %s failed", name, exc_info=True)


def start_warm_up(names: Sequence[str], writer: WriterSettings,
                  loaded: threading.Event | None = None,
                  mode: WarmUp = WarmUp.REHEARSE) -> threading.Thread:
    """Run :func:`warm_up_analyses` in a background (daemon) thread."""
    thread = threading.Thread(target=warm_up_analyses, args=(list(names), writer, loaded, mode),
                              name="warm-up", daemon=True)
    thread.start()
    return thread
