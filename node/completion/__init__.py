"""Completion: when a received series is whole, and which of a PSIR / magnitude pair to analyse.

:mod:`.tracker` declares a series complete (every announced instance, or a grace period after
the association that carried it was released); :mod:`.pairing` keeps one reconstruction of an
LGE acquisition.  It may import ``catalog`` and ``plugins``; routing and the job queue come
after it.
"""
