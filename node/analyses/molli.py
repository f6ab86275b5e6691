"""MOLLI fit from inversion-recovery source images (``plugins.molli``).

Companion: the scanner's T1 map of the same slices (a series routed to ``t1map``), to
compare the fit with.  The fitted maps are written first, as Parametric Maps (new UIDs per
analysis generation, as every output); the SEG, SRs, summary and ``results.json`` reference
them instead of the source images.  The fitted maps are segmented by the T1-map segmenter
(:func:`node.analyses.t1map.t1_networks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydicom import Dataset

from node.analyses.base import AnalysisDescriptor
from node.analyses.t1map import load_t1_networks, t1_networks
from node.inputs.companions import CompanionRole, CompanionSpec, covers_any_slice
from node.outputs.writers import Lineage, OutputObject, WriterSettings, build_outputs
from plugins.api import AnalysisResult, LoadedSeries


def molli_outputs(
    result: AnalysisResult, series: LoadedSeries, sources: Sequence[Dataset],
    settings: WriterSettings, lineage: Lineage | None = None,
) -> tuple[LoadedSeries, list[OutputObject]]:
    """The fitted maps (Parametric Maps), then the usual outputs referencing them.

    The series returned is the fitted series with its frames naming the T1 map as written,
    which ``results.json`` names too.
    """
    fitted = result.extra.get("molli")
    if not (isinstance(fitted, Mapping) and "maps" in fitted):
        return series, build_outputs(result, series, sources, settings=settings,
                                     lineage=lineage)
    from node.outputs.writers.parametric_map import build_parametric_maps, fitted_series

    generation = lineage.generation if lineage is not None else 0
    maps = build_parametric_maps(result, sources, settings=settings, generation=generation)
    derived = fitted_series(result, maps[0].dataset)
    return derived, maps + build_outputs(result, derived, [maps[0].dataset], settings=settings,
                                         lineage=lineage)


DESCRIPTOR = AnalysisDescriptor(
    name="molli",
    companions=(
        CompanionSpec(
            CompanionRole.SCANNER_MAP, ("t1map",), covers_any_slice,
            "scanner T1 map of the same slices",
        ),
    ),
    networks=t1_networks,
    warm_up=load_t1_networks,
    build_outputs=molli_outputs,
    key_numbers=("global_myocardium_t1_mean_ms",),
)
