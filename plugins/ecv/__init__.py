"""Extracellular volume (ECV) plugin: post-contrast T1 map + native T1 map + haematocrit.

The node calls :func:`analyse` with a post-contrast T1-map series and, in
``options["companions"]["native_t1map"]``, the native T1 map of the same slices (found by
:mod:`node.inputs.companions`).  See :mod:`plugins.ecv.analysis`.
"""

from __future__ import annotations

from plugins.ecv.alignment import estimate_shift
from plugins.ecv.analysis import (
    ALGORITHM_NAME,
    COMPANION_NATIVE,
    HAEMATOCRIT_RANGE,
    NAME,
    VERSION,
    EcvMaps,
    HaematocritError,
    analyse,
    parse_haematocrit,
)
from plugins.ecv.qc import QCCode

__all__ = [
    "ALGORITHM_NAME",
    "COMPANION_NATIVE",
    "HAEMATOCRIT_RANGE",
    "NAME",
    "VERSION",
    "EcvMaps",
    "HaematocritError",
    "QCCode",
    "analyse",
    "estimate_shift",
    "parse_haematocrit",
]
