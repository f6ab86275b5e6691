"""Which series each open association carries: the release of an association as a signal that
the scanner has finished sending them.

Scanners send a series (often a whole study) in one association and release it (A-RELEASE,
PS3.8 7.2) when done; an association that ends otherwise (A-ABORT, connection lost) is a broken
transfer and says nothing about completeness.

* One association carrying several series: each of them is released with it.
* One series over several associations (one association per image, or two in parallel): it is
  released only when no open association still carries it, i.e. by the last release.
* An association that ends without release frees its series without releasing them: a series
  it carried is released only by a later association that carries it again and is released;
  otherwise the tracker's quiet-time fallback (``stable_age_s``) completes it.
* A scanner that keeps one association open for a whole exam releases nothing until the exam
  ends: its series complete by the announced count or the quiet-time fallback meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class AssociationLedger:
    """The series carried by each open association, kept by the listener.

    Keys are opaque association handles (the listener uses pynetdicom's ``Association``
    object of the event). Thread-safe: every association runs in its own thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._carried: dict[Hashable, set[str]] = {}
        self._open: dict[str, int] = {}

    def carry(self, association: Hashable, series_uid: str) -> bool:
        """Record that ``association`` stored an instance of ``series_uid``; whether it is the
        association's first instance of that series."""
        with self._lock:
            series = self._carried.setdefault(association, set())
            if series_uid in series:
                return False
            series.add(series_uid)
            self._open[series_uid] = self._open.get(series_uid, 0) + 1
            return True

    def close(self, association: Hashable) -> list[str]:
        """Forget an association that ended; the series it carried that no other open
        association carries, sorted (empty when it carried none or was already closed)."""
        with self._lock:
            series = self._carried.pop(association, set())
            freed = []
            for series_uid in series:
                left = self._open[series_uid] - 1
                if left:
                    self._open[series_uid] = left
                else:
                    del self._open[series_uid]
                    freed.append(series_uid)
        return sorted(freed)

    def is_open(self, association: Hashable) -> bool:
        """Whether ``association`` has stored an instance and has not been closed."""
        with self._lock:
            return association in self._carried

    def carries(self, series_uid: str) -> bool:
        """Whether an open association has stored an instance of ``series_uid``."""
        with self._lock:
            return series_uid in self._open

    def open_associations(self) -> int:
        """Open associations that have stored at least one instance."""
        with self._lock:
            return len(self._carried)
