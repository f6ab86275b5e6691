"""LGE (late gadolinium enhancement) analysis plugin: scar quantification on short-axis stacks.

The node calls :func:`analyse` with a loaded PSIR or magnitude LGE series.  See
:mod:`plugins.lge.analysis` for the measurements, classification and QC,
:mod:`plugins.lge.quantify` for the classical scar methods and
:mod:`plugins.lge.segmenter` for the replaceable segmentation interface.
"""

from __future__ import annotations

from plugins.lge.analysis import (
    ALGORITHM_NAME,
    NAME,
    VERSION,
    Location,
    Pattern,
    QCCode,
    ScarMethod,
    analyse,
    contrast_from_names,
    detect_contrast,
)
from plugins.lge.segmenter import LgeContrast, LgeSegmenter

__all__ = [
    "ALGORITHM_NAME",
    "NAME",
    "VERSION",
    "LgeContrast",
    "LgeSegmenter",
    "Location",
    "Pattern",
    "QCCode",
    "ScarMethod",
    "analyse",
    "contrast_from_names",
    "detect_contrast",
]
