"""Native T1 map (``plugins.t1map``): LVRR covariates in, re-analysed after the study's LGE.

Options from the study: the LVRR covariates (:mod:`node.inputs.covariates`) supplied for the study
(sidecar file, REST, ``--covariates``), completed by the scar extent and septal mid-wall LGE
of the study's own LGE analysis.  An invalid sidecar gives ``covariates_error`` (the plugin
reports it).  When an LGE analysis of the study gives covariates after the map was analysed,
the map is analysed again so that its LVRR probability uses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.analyses.base import AnalysisDescriptor, Requeue, StudyFacts, supplied_or_error
from node.inputs.covariates import analysis_covariate_options, lge_covariates, merge_covariates


def covariate_options(facts: StudyFacts) -> dict[str, Any]:
    """The LVRR covariates of the study, as plugin options."""
    if facts.study_uid is None:
        return {}
    explicit = supplied_or_error(facts, "covariates", "covariates_error")
    if isinstance(explicit, dict):
        return {**explicit, "covariates_source": "sidecar file"}
    return analysis_covariate_options(merge_covariates(explicit, facts.lge_covariates()))


def _gives_covariates(summary: Mapping[str, Any]) -> bool:
    return bool(lge_covariates(summary))


DESCRIPTOR = AnalysisDescriptor(
    name="t1map",
    study_options=covariate_options,
    requeues=(
        Requeue(
            after="lge",
            reason="LGE analysis (job {job}, series {series}) of the study finished after the"
            " T1 map was analysed: LVRR covariates from LGE now available",
            when=_gives_covariates,
        ),
    ),
    key_numbers=("global_myocardium_t1_mean_ms",),
)
