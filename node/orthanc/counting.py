"""Series completed inside Orthanc by the instance count their headers announce.

Orthanc hands a series to the node when it declares it stable (``STABLE_SERIES``: ``StableAge``
seconds without a new instance).  Most scanners announce how many images an acquisition holds
(ImagesInAcquisition), and the node's own listener completes a series once exactly that many
instances arrived and ``[node] count_grace_s`` passed without another
(:class:`~node.completion.tracker.CountState`; a series holding more instances than announced
is OVERRUN and waits for the other signals).  :class:`CountCompletion` applies the same rule to
Orthanc's ``NEW_INSTANCE`` changes, so such a series is handed over ``count_grace_s`` after its
last instance rather than ``StableAge`` after it.  Orthanc's plugin SDK has no end-of-association
event, so the listener's release signal has no counterpart here: a series without a count, or
whose count is not reached exactly, is handed over at ``STABLE_SERIES`` as before.

Orthanc's own ``COMPLETED_SERIES`` change follows another rule (its expected number of
instances comes from ImagesInAcquisition times NumberOfTemporalPositions, or
CardiacNumberOfImages, and ignores instances beyond it), hence a count of the node's own.

What is read per instance comes from Orthanc's index, never from the stored file:
``/instances/{id}`` for its series, and for the first instance of a series ``/series/{id}``
(ImagesInAcquisition is one of Orthanc's series-level main DICOM tags, taken from the series'
first instance; the instances already stored seed the count) and, when the series announces a
count, the SOP class the instance was stored with (an enhanced multi-frame object's count is of
frames: node.receive.instance.expected_count).

A series completed by its count and unchanged since is not handed over again at its
``STABLE_SERIES``; an instance after the completion clears that mark, so Orthanc's next
``STABLE_SERIES`` (or the count reached anew) hands the series over again and the catalog opens
a new generation, as a late instance does with the listener.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node.completion.tracker import CountState
from node.receive.instance import expected_count

logger = logging.getLogger(__name__)

__all__ = ["FORGET_AFTER_S", "THREAD_NAME", "CountCompletion"]

#: Seconds without an instance after which a series Orthanc never declared stable (deleted
#: meanwhile) is forgotten.
FORGET_AFTER_S = 6 * 3600.0
#: Name of the thread that ends the grace of counted series.
THREAD_NAME = "orthanc-count"
IDLE_WAIT_S = 60.0


@dataclass
class _Series:
    """What the counter knows of one Orthanc series."""

    series_uid: str
    expected: int | None
    instances: set[str] = field(default_factory=set)
    last_instance_at: float = 0.0
    completed: bool = False
    """Handed over by its count, and no instance arrived since."""

    @property
    def count(self) -> CountState:
        return CountState.of_counts(len(self.instances), self.expected)


class CountCompletion:
    """Hands an Orthanc series over once the instance count its headers announce is reached.

    Parameters
    ----------
    api
        The ``orthanc`` module (or a stand-in with ``RestApiGet`` and ``OrthancException``).
    count_grace_s
        Seconds without a further instance after the count is reached at which the series is
        complete.
    on_complete
        Called with the Orthanc series ID when the series is complete by its count; runs in the
        counter's thread while the counter is locked, so it must be short (the node records an
        intake row).
    forget_after_s
        Seconds without an instance after which a series that never became stable is forgotten.
    """

    def __init__(
        self,
        api: Any,
        count_grace_s: float,
        on_complete: Callable[[str], None],
        *,
        forget_after_s: float = FORGET_AFTER_S,
    ) -> None:
        self._api = api
        self._grace_s = count_grace_s
        self._on_complete = on_complete
        self._forget_after_s = forget_after_s
        self._series: dict[str, _Series] = {}
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the thread that completes series whose grace has passed."""
        if self._thread is not None and self._thread.is_alive():
            return
        with self._changed:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (series counted so far stay counted; their ``STABLE_SERIES``
        still hands them over)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        """The counter's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ Orthanc's changes

    def instance_stored(self, instance_id: str) -> None:
        """Count an instance Orthanc stored (its ``NEW_INSTANCE`` change).

        Never raises for a resource Orthanc no longer knows (deleted meanwhile): the instance
        is then not counted and the series is left to its ``STABLE_SERIES``.
        """
        try:
            instance = self._get(f"/instances/{instance_id}")
            series_id = str(instance["ParentSeries"])
            with self._changed:
                known = series_id in self._series
            fresh = None if known else self._read_series(series_id, instance_id)
        except (self._api.OrthancException, KeyError, TypeError, ValueError) as exc:
            logger.debug("instance %s not counted: %s", instance_id, exc)
            return
        now = time.monotonic()
        with self._changed:
            series = self._series.get(series_id)
            if series is None:
                if fresh is None:  # forgotten between the two looks: counted at its next one
                    return
                series = self._series[series_id] = fresh
            if series.completed:
                logger.debug("series %s: instance %s after its completion by count",
                             series.series_uid, instance_id)
                series.completed = False
            if series.expected is not None:
                series.instances.add(instance_id)
            series.last_instance_at = now
            if series.count is CountState.REACHED:
                self._changed.notify_all()

    def series_stable(self, series_id: str) -> bool:
        """Orthanc declared a series stable: forget it, and say whether it was completed by its
        count with no instance since (then it need not be handed over again)."""
        with self._changed:
            series = self._series.pop(series_id, None)
        return series is not None and series.completed

    def count_state(self, series_id: str) -> CountState | None:
        """The count state of a series being counted (None: not counted)."""
        with self._changed:
            series = self._series.get(series_id)
            return None if series is None else series.count

    # ------------------------------------------------------------------ internals

    def _get(self, uri: str) -> Any:
        return json.loads(self._api.RestApiGet(uri))

    def _read_series(self, series_id: str, instance_id: str) -> _Series:
        """A series seen for the first time: its UID, announced count and stored instances."""
        series = self._get(f"/series/{series_id}")
        tags = series.get("MainDicomTags") or {}
        announced = tags.get("ImagesInAcquisition")
        expected = None
        if announced not in (None, ""):
            try:
                sop_class = bytes(
                    self._api.RestApiGet(f"/instances/{instance_id}/metadata/SopClassUid")
                ).decode("ascii", "replace").strip()
            except self._api.OrthancException:
                sop_class = ""
            expected = expected_count(sop_class, str(announced))
        instances = set(series.get("Instances") or ()) if expected is not None else set()
        return _Series(str(tags.get("SeriesInstanceUID") or series_id), expected, instances)

    def _run(self) -> None:
        with self._changed:
            while not self._stopping:
                try:
                    wait_s = self._complete_due(time.monotonic())
                except Exception:  # the thread must outlive a bug; STABLE_SERIES remains
                    logger.exception("completion by count failed")
                    wait_s = IDLE_WAIT_S
                self._changed.wait(timeout=wait_s)

    def _complete_due(self, now: float) -> float:
        """Hand over every series whose grace has passed (the counter locked); returns the
        seconds until the next one is due."""
        next_s = IDLE_WAIT_S
        for series_id, series in list(self._series.items()):
            if now - series.last_instance_at > self._forget_after_s:
                del self._series[series_id]
                continue
            if series.completed or series.count is not CountState.REACHED:
                continue
            due = series.last_instance_at + self._grace_s
            if due > now:
                next_s = min(next_s, due - now)
                continue
            series.completed = True
            logger.info("series %s complete: count %d reached", series.series_uid,
                        len(series.instances))
            try:
                self._on_complete(series_id)
            except Exception:
                logger.exception("handing over series %s (count reached) failed; left to its "
                                 "STABLE_SERIES", series.series_uid)
                del self._series[series_id]
        return next_s
