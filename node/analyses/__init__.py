"""The node's side of every analysis, one module each, found by name.

Each module ``node.analyses.<name>`` declares ``DESCRIPTOR``, an
:class:`~node.analyses.base.AnalysisDescriptor` saying what the node does for the plugin
``plugins.<name>`` besides calling it (options from the study, companion series, re-analysis
triggers, outputs, status key numbers).  Adding an analysis adds one module here; nothing
else in the node names it.  An analysis without a module (a site's own plugin) gets the
defaults: its configured options, no companions, no networks, the standard outputs.

The functions below are what the workers, ``cmr-node analyse`` and the Orthanc mode call.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from node.analyses.base import (
    AnalysisDescriptor,
    Arrival,
    Requeue,
    StudyFacts,
    standard_outputs,
)
from node.inputs.companions import Candidate, companion_options

__all__ = [
    "AnalysisDescriptor",
    "Arrival",
    "Requeue",
    "StudyFacts",
    "arrivals",
    "assemble_options",
    "descriptor",
    "descriptors",
    "requeues_after",
    "standard_outputs",
    "with_networks",
]

_NOT_ANALYSES = frozenset({"base"})


@cache
def descriptors() -> Mapping[str, AnalysisDescriptor]:
    """Every declared analysis by name (the modules of this package)."""
    found: dict[str, AnalysisDescriptor] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_ANALYSES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        declared = getattr(module, "DESCRIPTOR", None)
        if not isinstance(declared, AnalysisDescriptor):
            raise TypeError(f"{module.__name__} declares no AnalysisDescriptor DESCRIPTOR")
        found[declared.name] = declared
    return found


def descriptor(analysis: str) -> AnalysisDescriptor:
    """The descriptor of ``analysis`` (defaults for an analysis without a module)."""
    return descriptors().get(analysis) or AnalysisDescriptor(name=analysis)


def assemble_options(
    analysis: str,
    configured: Mapping[str, Any],
    paths: Sequence[Path],
    facts: StudyFacts,
) -> dict[str, Any]:
    """The plugin options of one series: the site's, the study's data, the companions, and
    the segmentation networks the plugin uses (:func:`with_networks`).

    Parameters
    ----------
    analysis
        The analysis the series runs.
    configured
        The site's ``[analysis.<name>]`` settings.
    paths
        The series' files (companions are matched against its geometry).
    facts
        What the caller knows of the study.

    Raises
    ------
    plugins.api.AnalysisError
        When a network the site selected is unavailable.
    """
    declared = descriptor(analysis)
    options = dict(configured)
    options.update(declared.study_options(facts))
    if declared.companions:
        candidates: Sequence[Candidate] = facts.candidates(declared.companions)
        options.update(companion_options(declared.companions, paths, candidates))
    return with_networks(analysis, options)


def with_networks(analysis: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the segmentation networks of ``analysis`` added, as the node gives
    them to the plugin (objects already in ``options`` are kept).

    Raises
    ------
    plugins.api.AnalysisError
        When a network the options select is unavailable.
    """
    return {**options, **descriptor(analysis).networks(options)}


def requeues_after(
    finished: str, summary: Mapping[str, Any]
) -> list[tuple[str, Requeue]]:
    """The analyses of the study to queue again now that a ``finished`` job is done."""
    return [
        (name, rule)
        for name, declared in descriptors().items()
        for rule in declared.requeues
        if rule.after == finished and (rule.when is None or rule.when(summary))
    ]


def arrivals(available: frozenset[str] | None = None) -> list[tuple[str, Arrival]]:
    """Per analysis (of ``available``), the completed series that queue it again."""
    return [
        (name, rule)
        for name, declared in descriptors().items()
        if available is None or name in available
        for rule in declared.arrivals
    ]
