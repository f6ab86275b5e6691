"""Delivery: the outbox senders that bring outputs to each destination (C-STORE or DICOMweb).

:mod:`.sender` delivers by C-STORE and retries until each destination accepts each object;
:mod:`.dicomweb` sends by STOW-RS and pulls retrospective cohorts by QIDO-RS / WADO-RS.  It may
import ``network``, ``catalog`` and :mod:`node.settings`.
"""
