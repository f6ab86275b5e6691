"""LGE (late gadolinium enhancement) analysis plugin: scar quantification on short-axis stacks.

The node calls :func:`analyse` with a loaded PSIR or magnitude LGE series.  See
:mod:`plugins.lge.analysis` for the measurements, classification and QC,
:mod:`plugins.lge.quantify` for the classical scar methods and
:mod:`plugins.lge.segmenter` for the replaceable segmentation interface.
"""

from __future__ import annotations

import logging

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

logger = logging.getLogger(__name__)


def warm_up() -> None:
    """Load the trained LGE segmenters (torch; the LGE-only and LGE + cine U-Nets and the
    committed two-stage localiser + segmenter) now, and run each two-stage network once so
    that ``segmenter = "two-stage"`` meets its first series warm."""
    from models.runtime.lgeseg.fusion_segmenter import default_fusion_segmenter
    from models.runtime.lgeseg.segmenter import default_segmenter
    from models.runtime.lgeseg.two_stage import cached_default
    from models.runtime.segmentation import ModelUnavailableError

    default_segmenter()
    default_fusion_segmenter()
    try:
        cached_default().rehearse()
    except (ModelUnavailableError, ImportError) as exc:
        logger.warning("two-stage LGE segmenter not preloaded: %s", exc)


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
    "warm_up",
]
