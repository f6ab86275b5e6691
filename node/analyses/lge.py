"""LGE scar quantification (``plugins.lge``), with the short-axis cine as companion.

Companion: the cine of the same slices, for the LGE + cine network.  It is found by a header
test (:func:`node.inputs.companions.looks_like_cine`) among every complete series of the study,
routed or not.  When such a series completes after the study's LGE was analysed without a
cine (flag ``cine_not_used``), the LGE is analysed again.

Options from the study: its clinical variables (sidecar, REST or ``--covariates``;
:mod:`node.inputs.covariates`) as :class:`~plugins.lge.clinical.ClinicalVariables`, for the site
infarct model (``[analysis.lge] infarct_model``).  An invalid sidecar gives
``clinical_error`` (the plugin reports it); posting variables for the study analyses its LGE
again (:func:`node.status.report.post_covariates`).
"""

from __future__ import annotations

from typing import Any

from node.analyses.base import AnalysisDescriptor, Arrival, StudyFacts, supplied_or_error
from node.inputs.companions import CompanionRole, CompanionSpec, cine_of_slices, looks_like_cine
from node.inputs.covariates import clinical_options, has_clinical
from plugins.lge.qc import QCCode

CINE = CompanionSpec(
    CompanionRole.CINE, (), cine_of_slices, "short-axis cine of the same slices",
    selects=looks_like_cine,
)



def study_clinical(facts: StudyFacts) -> dict[str, Any]:
    """The study's clinical variables, as plugin options (nothing when none were supplied)."""
    if facts.study_uid is None:
        return {}
    supplied = supplied_or_error(facts, "clinical variables", "clinical_error", has_clinical)
    if isinstance(supplied, dict):
        return supplied
    return clinical_options(supplied)


DESCRIPTOR = AnalysisDescriptor(
    name="lge",
    study_options=study_clinical,
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
