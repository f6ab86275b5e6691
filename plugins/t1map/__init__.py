"""Native T1-map analysis plugin: LV myocardial and blood-pool T1 with quality control.

The node calls :func:`analyse` with a loaded MOLLI (or similar) native T1 map series.  See
:mod:`plugins.t1map.analysis` for the measurements and QC, and :mod:`plugins.t1map.segmenter`
for the replaceable segmentation interface.
"""

from __future__ import annotations

from plugins.t1map.analysis import analyse, conservative_core, measurement_core
from plugins.t1map.qc import QCCode
from plugins.t1map.report import ALGORITHM_NAME, NAME, VERSION
from plugins.t1map.segmenter import ClassicalSegmenter, SegmentationOutput, Segmenter
from plugins.t1map.tissue import TissueRanges, tissue_ranges

__all__ = [
    "ALGORITHM_NAME",
    "NAME",
    "VERSION",
    "ClassicalSegmenter",
    "QCCode",
    "SegmentationOutput",
    "Segmenter",
    "TissueRanges",
    "analyse",
    "conservative_core",
    "measurement_core",
    "tissue_ranges",
]
