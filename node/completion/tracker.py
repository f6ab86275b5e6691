"""Decides when a series is complete.

A series is complete when the number of instances announced in its headers
(ImagesInAcquisition) has arrived and ``count_grace_s`` passed without another (or the association
that carried it was released); or ``release_grace_s`` seconds after the association that
carried it was released (A-RELEASE; node.receive.associations) unless another association carries it
again meanwhile, or its announced count is not reached; or when no instance arrived for
``stable_age_s`` seconds —
:data:`INCOMPLETE_COUNT_FACTOR` times longer while an announced count is not reached yet, so a
scanner sending over several interleaved associations is not cut off (an instance that never
comes still lets the series complete).
A late instance re-opens the series (the catalog raises its generation) and the timer starts
again, so the series is analysed anew and its outputs replaced (a re-opened series completes
again by any of the three ways).

ImagesInAcquisition counts the images of one *acquisition* (DICOM PS3.3 C.7.6.1, General Image
Module: "Number of images that resulted from this acquisition of data"), and a series may hold
several acquisitions (Acquisition Number, same module): a MOLLI series or a slice-by-slice LGE
stack acquired one breath-hold per slice announces the images of each slice, not of the series.
The count therefore completes a series only when exactly that many instances have arrived and no
further one follows within ``count_grace_s``; a series holding more instances than announced
(:attr:`CountState.OVERRUN`) completes as if it announced nothing (release or quiet time).
Inside Orthanc the same rule completes a series (node.orthanc.counting), Orthanc's
``STABLE_SERIES`` taking the place of the quiet time; there is no release signal there.

A release completes a series only when its count is not known or reached: a scanner that
announces twelve images and releases after ten may send the rest in the next association,
and the count is the stronger statement. The grace covers scanners that open one association
per image: each new association that carries the series pushes the completion further.  A series
whose count is reached completes at the release itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import Enum

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from node.catalog.catalog import Catalog
from node.catalog.series import SeriesState

logger = logging.getLogger(__name__)

INCOMPLETE_COUNT_FACTOR = 4.0
"""How many times ``stable_age_s`` a series waits while fewer instances than its headers
announce have arrived."""


class CountState(Enum):
    """What the instance count announced in a series' headers says about the series."""

    UNKNOWN = "no count in the headers"
    SHORT = "fewer instances than announced"
    REACHED = "the announced count arrived"
    OVERRUN = "more instances than announced: the count is one acquisition's, not the series'"

    @classmethod
    def of(cls, state: SeriesState) -> CountState:
        """The count state of a series from its catalog state."""
        return cls.of_counts(state.instance_count, state.expected_count)

    @classmethod
    def of_counts(cls, instance_count: int, expected_count: int | None) -> CountState:
        """The count state of a series holding ``instance_count`` distinct instances whose
        headers announce ``expected_count`` (None or 0: no count)."""
        if not expected_count:
            return cls.UNKNOWN
        if instance_count < expected_count:
            return cls.SHORT
        if instance_count == expected_count:
            return cls.REACHED
        return cls.OVERRUN


class SeriesTracker:
    """Schedules the completion check of every series that is receiving instances.

    Parameters
    ----------
    catalog
        Source of truth for series state (survives restarts).
    stable_age_s
        Quiet time after which a series without a known instance count is complete.
    on_complete
        Called with (series UID, generation) once the series is marked complete; runs in a
        scheduler thread and may take time (routing reads headers).
    release_grace_s
        Seconds after the release of the last association carrying a series at which it is
        complete (0: releases are ignored).
    is_carried
        Whether an open association still carries a series (checked when the grace ends).
    count_grace_s
        Seconds without a further instance after the announced count arrived at which the
        series is complete (an instance within it shows the count was one acquisition's).
    """

    def __init__(
        self,
        catalog: Catalog,
        stable_age_s: float,
        on_complete: Callable[[str, int], None],
        *,
        release_grace_s: float = 0.0,
        is_carried: Callable[[str], bool] | None = None,
        count_grace_s: float = 0.0,
    ) -> None:
        self._catalog = catalog
        self._stable_age_s = stable_age_s
        self._on_complete = on_complete
        self._release_grace_s = release_grace_s
        self._is_carried = is_carried
        self._count_grace_s = count_grace_s
        self._lock = threading.Lock()
        self._armed: dict[str, float] = {}
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def start(self) -> None:
        """Start the scheduler and re-arm the series left receiving by a previous run."""
        self._scheduler.start()
        pending = self._catalog.receiving_series()
        for state in pending:
            self.instance_stored(state)
        if pending:
            logger.info("re-armed completion timers of %d series after start", len(pending))
        for series_uid, generation in self._catalog.completed_unrouted():
            logger.info("routing series %s left complete but unrouted", series_uid)
            self._scheduler.add_job(
                self._route_safely, args=[series_uid, generation], id=f"{series_uid}-route"
            )

    def stop(self) -> None:
        """Stop the scheduler (pending checks are re-armed at the next start)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def instance_stored(self, state: SeriesState) -> None:
        """Arm the completion check of the instance's series.

        One timer per series: it is armed by the first instance, re-armed when the announced
        count is reached (``count_grace_s`` later), and otherwise re-arms itself when it finds
        the series still receiving (cheap on the hot path: no scheduler call per instance).
        """
        count_reached = CountState.of(state) is CountState.REACHED
        with self._lock:
            armed = self._armed.get(state.series_instance_uid)
            if armed is not None and not count_reached:
                return
            due = state.last_received + self._quiet_s(state)
            self._armed[state.series_instance_uid] = due
        self._arm(state.series_instance_uid, due)

    def series_released(self, series_uids: list[str]) -> None:
        """The last association carrying these series was released: complete each whose
        announced count arrived now, and the others after the grace (a later release of the
        same series pushes their completion further)."""
        if self._release_grace_s <= 0:
            return
        now = time.time()
        for series_uid in series_uids:
            found = self._catalog.series_state(series_uid)
            reached = (found is not None and found[0] == "receiving"
                       and CountState.of(found[1]) is CountState.REACHED)
            due = now if reached else now + self._release_grace_s
            self._scheduler.add_job(
                self._check_released,
                trigger="date",
                run_date=datetime.fromtimestamp(due),
                args=[series_uid],
                id=f"{series_uid}-released",
                replace_existing=True,
            )

    def _check_released(self, series_uid: str) -> None:
        if self._is_carried is not None and self._is_carried(series_uid):
            return  # another association carries it: its release checks again
        found = self._catalog.series_state(series_uid)
        if found is None or found[0] != "receiving":
            return
        _, state = found
        if CountState.of(state) is CountState.SHORT:
            logger.info(
                "series %s released with %d of %d announced instances: waiting for the rest",
                series_uid, state.instance_count, state.expected_count,
            )  # fmt: skip
            return
        self._complete(series_uid, state, "association released")

    def _quiet_s(self, state: SeriesState) -> float:
        """Seconds without a new instance after which the series counts as complete."""
        count = CountState.of(state)
        if count is CountState.REACHED:
            return self._count_grace_s
        if count is CountState.SHORT:
            return self._stable_age_s * INCOMPLETE_COUNT_FACTOR
        return self._stable_age_s

    def _arm(self, series_uid: str, due: float) -> None:
        self._scheduler.add_job(
            self._check,
            trigger="date",
            run_date=datetime.fromtimestamp(due),
            args=[series_uid],
            id=series_uid,
            replace_existing=True,
        )

    def _check(self, series_uid: str) -> None:
        with self._lock:
            self._armed.pop(series_uid, None)
        found = self._catalog.series_state(series_uid)
        if found is None or found[0] != "receiving":
            return
        _, state = found
        count = CountState.of(state)
        quiet_until = state.last_received + self._quiet_s(state)
        if time.time() < quiet_until:
            with self._lock:
                if series_uid in self._armed:  # re-armed meanwhile by a count reached
                    return
                self._armed[series_uid] = quiet_until
            self._arm(series_uid, quiet_until)
            return
        if count is CountState.OVERRUN:
            logger.info("series %s holds %d instances, %d announced: count taken as one "
                        "acquisition's", series_uid, state.instance_count, state.expected_count)
        self._complete(series_uid, state,
                       "count from headers" if count is CountState.REACHED else "quiet time")

    def _complete(self, series_uid: str, state: SeriesState, how: str) -> None:
        """Mark the series complete (unless it moved on meanwhile) and route it."""
        if not self._catalog.complete_series(series_uid, state.generation):
            logger.debug("series %s moved on from generation %d", series_uid, state.generation)
            return
        logger.info(
            "series %s complete (generation %d, %d instances, %s)",
            series_uid,
            state.generation,
            state.instance_count,
            how,
        )
        self._route_safely(series_uid, state.generation)

    def _route_safely(self, series_uid: str, generation: int) -> None:
        try:
            self._on_complete(series_uid, generation)
        except Exception as exc:
            logger.exception("completion handling of series %s failed", series_uid)
            self._catalog.record_event(
                "complete_failed", series_uid, f"routing failed: {exc}; retry in 60 s"
            )
            self._scheduler.add_job(
                self._route_safely,
                trigger="date",
                run_date=datetime.now() + timedelta(seconds=60),
                args=[series_uid, generation],
                id=f"{series_uid}-retry",
                replace_existing=True,
            )
