"""LGE scar quantification (``plugins.lge``), with the short-axis cine as companion.

Companion: the cine of the same slices, for the LGE + cine network.  It is found by a header
test (:func:`node.companions.looks_like_cine`) among every complete series of the study,
routed or not.  When such a series completes after the study's LGE was analysed without a
cine (flag ``cine_not_used``), the LGE is analysed again.
"""

from __future__ import annotations

from node.analyses.base import AnalysisDescriptor, Arrival
from node.companions import CompanionRole, CompanionSpec, cine_of_slices, looks_like_cine
from plugins.lge.analysis import QCCode

CINE = CompanionSpec(
    CompanionRole.CINE, (), cine_of_slices, "short-axis cine of the same slices",
    selects=looks_like_cine,
)

DESCRIPTOR = AnalysisDescriptor(
    name="lge",
    companions=(CINE,),
    arrivals=(
        Arrival(
            CINE, QCCode.CINE_NOT_USED,
            "cine series {series} completed after the LGE analysis, which had no cine: the"
            " LGE + cine network can now segment its slices",
        ),
    ),
    key_numbers=("scar_percent_lv_mass", "scar_mass_g"),
    analysed_first=True,
)
