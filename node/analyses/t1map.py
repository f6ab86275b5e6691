"""Native T1 map (``plugins.t1map``): the U-Net, LVRR covariates in, re-analysed after LGE.

Network: the committed T1-map U-Net (:mod:`models.runtime.t1seg.segmenter`) as ``segmenter``;
when it is unavailable (weights missing or altered, torch absent) the classical segmenter, with the
INFO flag saying so as ``segmenter_flag``.  The MOLLI fit and the ECV analysis segment their
maps with the same (:func:`t1_networks`).

Options from the study: the LVRR covariates (:mod:`node.inputs.covariates`) supplied for the study
(sidecar file, REST, ``--covariates``), completed by the scar extent and septal mid-wall LGE
of the study's own LGE analysis.  An invalid sidecar gives ``covariates_error`` (the plugin
reports it).  When an LGE analysis of the study gives covariates after the map was analysed,
the map is analysed again so that its LVRR probability uses them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from node.analyses.base import AnalysisDescriptor, Requeue, StudyFacts, supplied_or_error
from node.inputs.covariates import analysis_covariate_options, lge_covariates, merge_covariates
from plugins.t1map.segmenter import ClassicalSegmenter


def t1_networks(options: Mapping[str, Any]) -> dict[str, Any]:
    """The T1-map segmenter (``segmenter``, and ``segmenter_flag`` when the trained U-Net is
    unavailable and the classical segmenter is given instead); nothing when ``options``
    already hold a segmenter."""
    if options.get("segmenter") is not None:
        return {}
    # The trained U-Net if its weights are present and verified; torch loads only here.
    from models.runtime.t1seg.segmenter import default_segmenter

    segmenter, unavailable = default_segmenter()
    if segmenter is None:
        return {"segmenter": ClassicalSegmenter(), "segmenter_flag": unavailable}
    return {"segmenter": segmenter}


def load_t1_networks() -> None:
    """Load the trained segmenter (torch and weights) and the radiomics library now."""
    from models.runtime.t1seg.segmenter import default_segmenter

    default_segmenter()
    with contextlib.suppress(ImportError):  # the optional radiomics extra
        import radiomics  # noqa: F401  (import cost paid before the first series)


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
    networks=t1_networks,
    warm_up=load_t1_networks,
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
