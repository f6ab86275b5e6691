"""Native T2 map (``plugins.t2map``): nothing beyond the site's options and the standard
outputs (SEG, SRs, summary image); no companion, no re-analysis trigger."""

from __future__ import annotations

from node.analyses.base import AnalysisDescriptor

DESCRIPTOR = AnalysisDescriptor(
    name="t2map",
    key_numbers=("global_myocardium_t2_mean_ms",),
)
