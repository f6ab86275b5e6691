"""ECV from a post-contrast T1 map (``plugins.ecv``): native map, haematocrit, ECV map.

Companion: the native T1 map of the same slices (a series routed to ``t1map``).  Options from
the study: its haematocrit (sidecar, REST or ``--covariates``; an invalid sidecar gives
``haematocrit_error``), over the site's configured value.  Besides the usual outputs the
pixel-wise ECV map is written as a Parametric Map.  When a native T1 map of the study has been
analysed, the study's done and failed ECV jobs are queued again (they may have lacked it).  The
native map is segmented by the T1-map segmenter (:func:`node.analyses.t1map.t1_networks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydicom import Dataset

from node.analyses.base import AnalysisDescriptor, Requeue, StudyFacts, supplied_or_error
from node.analyses.t1map import load_t1_networks, t1_networks
from node.inputs.companions import CompanionRole, CompanionSpec, covers_any_slice
from node.inputs.covariates import SuppliedCovariates, haematocrit_options
from node.outputs.writers import Lineage, OutputObject, WriterSettings, build_outputs
from plugins.api import AnalysisResult, LoadedSeries


def _has_haematocrit(supplied: SuppliedCovariates) -> bool:
    return bool(haematocrit_options(supplied))


def study_haematocrit(facts: StudyFacts) -> dict[str, Any]:
    """The study's haematocrit, as plugin options (nothing when none was supplied)."""
    if facts.study_uid is None:
        return {}
    supplied = supplied_or_error(facts, "haematocrit", "haematocrit_error", _has_haematocrit)
    if isinstance(supplied, dict):
        return supplied
    return haematocrit_options(supplied)


def ecv_outputs(
    result: AnalysisResult, series: LoadedSeries, sources: Sequence[Dataset],
    settings: WriterSettings, lineage: Lineage | None = None,
) -> tuple[LoadedSeries, list[OutputObject]]:
    """The usual outputs on the post-contrast images, then the ECV Parametric Map."""
    outputs = build_outputs(result, series, sources, settings=settings, lineage=lineage)
    block = result.extra.get("ecv")
    if isinstance(block, Mapping) and "maps" in block:
        from node.outputs.writers.parametric_map import build_ecv_map

        outputs += build_ecv_map(result, series, sources, settings=settings,
                                 generation=lineage.generation if lineage is not None else 0)
    return series, outputs


DESCRIPTOR = AnalysisDescriptor(
    name="ecv",
    study_options=study_haematocrit,
    companions=(
        CompanionSpec(
            CompanionRole.NATIVE_T1MAP, ("t1map",), covers_any_slice,
            "native T1 map of the same slices",
        ),
    ),
    requeues=(
        Requeue(
            after="t1map",
            reason="native T1 map analysed (job {job}, series {series}): the ECV of the"
            " study's post-contrast maps uses it",
            states=("done", "failed"),
        ),
    ),
    networks=t1_networks,
    warm_up=load_t1_networks,
    build_outputs=ecv_outputs,
    key_numbers=("global_myocardium_ecv_percent",),
)
