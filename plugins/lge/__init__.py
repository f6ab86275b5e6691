"""LGE (late gadolinium enhancement) analysis plugin: scar quantification on short-axis stacks.

The node calls :func:`analyse` with a loaded PSIR or magnitude LGE series.  See
:mod:`plugins.lge.analysis` for the method, :mod:`plugins.lge.measure` for the scar of each
slice and the stack's totals, :mod:`plugins.lge.regional` for the AHA segments, location and
pattern, :mod:`plugins.lge.report` for the measurements and provenance,
:mod:`plugins.lge.quantify` for the classical scar methods and
:mod:`plugins.lge.segmenter` for the replaceable segmentation interface.
"""

from __future__ import annotations

from plugins.lge.analysis import analyse
from plugins.lge.contrast import contrast_from_names, detect_contrast
from plugins.lge.measure import ScarMethod
from plugins.lge.qc import QCCode
from plugins.lge.regional import Location, Pattern
from plugins.lge.report import ALGORITHM_NAME, NAME, VERSION
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
