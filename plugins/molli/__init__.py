"""MOLLI source-image plugin: pixel-wise T1 fit, then the T1-map analysis of the fitted maps.

The node calls :func:`analyse` with a loaded series of MOLLI inversion-recovery source
images.  See :mod:`plugins.molli.fit` for the fit, :mod:`plugins.molli.source` for reading
inversion times and heart rate, and :mod:`plugins.molli.analysis` for QC and outputs.
"""

from __future__ import annotations

from plugins.molli.analysis import (
    ALGORITHM_NAME,
    NAME,
    VERSION,
    FittedMaps,
    QCCode,
    analyse,
)
from plugins.molli.fit import FitResult, fit_molli
from plugins.molli.source import MolliSource, extract_source, parse_ti_text

__all__ = [
    "ALGORITHM_NAME",
    "NAME",
    "VERSION",
    "FitResult",
    "FittedMaps",
    "MolliSource",
    "QCCode",
    "analyse",
    "extract_source",
    "fit_molli",
    "parse_ti_text",
]
