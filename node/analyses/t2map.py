"""Native T2 map (``plugins.t2map``): the two-stage network, then the standard outputs (SEG,
SRs, summary image); no companion, no re-analysis trigger.

Network: the committed two-stage LGE segmenter (:mod:`models.runtime.lgeseg.two_stage`) without its
scar-enhancement rule, as ``segmenter`` (why this network: :mod:`plugins.t2map.analysis`);
when it is unavailable the analysis fails.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from node.analyses.base import AnalysisDescriptor
from plugins.api import AnalysisError
from plugins.lge.segmenter import LgeSegmenter


@functools.cache
def t2_segmenter() -> LgeSegmenter:
    """The committed two-stage LGE network, without its scar-enhancement rule (loaded once)."""
    from models.runtime.lgeseg.two_stage import TwoStageLgeSegmenter

    return TwoStageLgeSegmenter(scar_rule=None)


def t2_networks(options: Mapping[str, Any]) -> dict[str, Any]:
    """``segmenter``: the T2 map's network (kept when ``options`` already hold one).

    Raises
    ------
    AnalysisError
        If the network is unavailable.
    """
    if options.get("segmenter") is not None:
        return {}
    try:
        return {"segmenter": t2_segmenter()}
    except Exception as exc:  # weights missing or torch absent: the analysis says so
        raise AnalysisError(f"the segmentation network is unavailable: {exc}") from exc


def load_t2_network() -> None:
    """Load the segmentation network (torch and weights) ahead of the first series."""
    t2_segmenter()


DESCRIPTOR = AnalysisDescriptor(
    name="t2map",
    networks=t2_networks,
    warm_up=load_t2_network,
    key_numbers=("global_myocardium_t2_mean_ms",),
)
