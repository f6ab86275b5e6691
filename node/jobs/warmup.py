"""Warm-up at start, so that the first series is analysed as fast as the next ones.

Loading the weights (each plugin's ``warm_up``) is not enough: the first analysis of a process
also pays the imports of its writers and libraries (highdicom, scikit-image, pyradiomics),
highdicom's tables of the standard, the first inference of each network and the first feature
extraction: 1.3 s of the first 3.54 s time to result of a 3-slice T1 map (issue 16). The
warm-up therefore also analyses one synthetic phantom series (:mod:`models.phantoms`) of each
analysis that has one, builds and writes its outputs into a temporary folder and discards
them. It runs in a background thread of each process that runs analysis workers, after the
listener accepts associations; a series that arrives meanwhile is analysed as soon as a worker
takes it (the two share the loaded models).

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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from node.jobs.pipeline import run_analysis, write_outputs
from node.outputs.writers import WriterSettings
from node.settings import WarmUp
from plugins import warm_up as load_plugins

logger = logging.getLogger(__name__)

#: Seed of the phantom series analysed at start (any fixed value: the result is discarded).
WARM_UP_SEED = 16
#: Slices of the LGE phantom: enough for every step of the analysis, fewer than a real stack.
LGE_WARM_UP_SLICES = 4


def _t1map_series(folder: Path) -> list[Path]:
    from models.phantoms.dicom_series import StudyInfo, t1map_series_datasets, write_series
    from models.phantoms.t1map import make_t1map_stack

    rng = np.random.default_rng(WARM_UP_SEED)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, levels=("basal", "mid", "apical"))
    datasets = t1map_series_datasets(slices, vendor="siemens", field_strength_t=1.5, rng=rng,
                                     study=StudyInfo.synthetic(WARM_UP_SEED))
    return list(write_series(datasets, folder))


def _lge_series(folder: Path) -> list[Path]:
    from models.phantoms.dicom_series import StudyInfo, lge_series_datasets, write_series
    from models.phantoms.lge import make_lge_stack

    rng = np.random.default_rng(WARM_UP_SEED)
    _, slices = make_lge_stack(rng, n_slices=LGE_WARM_UP_SLICES, field_strength_t=1.5)
    datasets = lge_series_datasets(slices, vendor="siemens",
                                   study=StudyInfo.synthetic(WARM_UP_SEED))
    return list(write_series(datasets, folder))


#: Analyses whose first run is rehearsed on a phantom series (the others only load).
PHANTOM_SERIES: dict[str, Callable[[Path], list[Path]]] = {
    "t1map": _t1map_series,
    "lge": _lge_series,
}


class _QuietRehearsal(logging.Filter):
    """Drops the INFO and DEBUG records of one thread (the rehearsal's analyses log as real
    ones would); warnings and errors pass."""

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__()
        self._ident = thread.ident

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.thread != self._ident


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
    quiet = _QuietRehearsal(threading.current_thread())
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        try:
            load_plugins(names)
        finally:
            if loaded is not None:
                loaded.set()
        if mode == WarmUp.REHEARSE:
            _rehearse(names, writer)
        freeze_heap()
    finally:
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
            make = PHANTOM_SERIES.get(name)
            if make is None:
                continue
            try:
                run = run_analysis(make(Path(tmp) / name), name, {}, writer)
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
