"""What the node does for one analysis, declared in one object: :class:`AnalysisDescriptor`.

A plugin (``plugins.<name>``) is a pure function of a loaded series and its options.  Its
node-side descriptor (``node.analyses.<name>``) says everything else the node must do for it:

* ``study_options``: options taken from the study's data (covariates, haematocrit ...),
  on top of the site's ``[analysis.<name>]`` settings;
* ``companions``: the other series of the study it reads, by role (:mod:`node.inputs.companions`);
* ``networks``: the segmentation networks the plugin is given in its options, built from
  the site's settings (a plugin imports nothing from ``models``);
* ``warm_up``: loads those networks (and libraries) at start, ahead of the first series;
* ``requeues``: which finished analyses of the same study queue it again;
* ``arrivals``: which newly completed series of the study queue it again;
* ``build_outputs``: the DICOM objects written for its result (default: SEG, SRs, summary
  image; analyses that derive images add Parametric Maps);
* ``key_numbers``: the results.json keys the status views show.

The listener's workers (:mod:`node.jobs.worker`), ``cmr-node analyse`` (:mod:`node.cli.main`) and
the Orthanc mode (which runs the same workers) call :func:`node.analyses.assemble_options`, so the
options of a series do not depend on how it arrived.  The study's data come through
:class:`StudyFacts`, which each caller fills from what it has (the catalog, or the input
folder and ``--covariates``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydicom import Dataset

from node.inputs.companions import Candidate, CompanionSpec
from node.inputs.covariates import CovariatesError, SuppliedCovariates
from node.outputs.writers import Lineage, OutputObject, WriterSettings, build_outputs
from plugins.api import AnalysisResult, LoadedSeries

logger = logging.getLogger(__name__)

__all__ = [
    "AnalysisDescriptor",
    "Arrival",
    "CovariateSource",
    "OutputBuilder",
    "Requeue",
    "StudyFacts",
    "standard_outputs",
]


class CovariateSource(Protocol):
    """Where supplied study values are looked up (sidecar folder, ``--covariates`` file)."""

    def lookup(
        self, study_uid: str | None, accession: str | None = None
    ) -> SuppliedCovariates | None:
        """The values supplied for a study; raises ``CovariatesError`` when invalid."""
        ...


def _no_lge() -> SuppliedCovariates | None:
    return None


def _no_candidates(specs: Sequence[CompanionSpec]) -> Sequence[Candidate]:
    return ()


def _no_report(kind: str, message: str) -> None:
    return None


@dataclass(frozen=True)
class StudyFacts:
    """What the node knows of a job's study when it assembles the job's options.

    Attributes
    ----------
    study_uid, accession
        StudyInstanceUID and AccessionNumber of the job's series.
    sources
        Where supplied values (covariates, haematocrit) are looked up, most preferred first.
    lge_covariates
        The LVRR covariates the study's own LGE analysis gives, if any (called lazily).
    candidates
        The study's other series that may fill the given companion roles (called lazily).
    report
        Records an event about the study's inputs (``kind``, ``message``), e.g. an invalid
        sidecar; the offline command has nowhere to record it.
    """

    study_uid: str | None
    accession: str | None = None
    sources: Sequence[CovariateSource] = ()
    lge_covariates: Callable[[], SuppliedCovariates | None] = _no_lge
    candidates: Callable[[Sequence[CompanionSpec]], Sequence[Candidate]] = _no_candidates
    report: Callable[[str, str], None] = _no_report

    def supplied(
        self, wanted: Callable[[SuppliedCovariates], bool] | None = None
    ) -> SuppliedCovariates | None:
        """The first source's values for the study (that pass ``wanted``), or None.

        Raises
        ------
        CovariatesError
            When a source holds invalid values for the study.
        """
        for source in self.sources:
            found = source.lookup(self.study_uid, self.accession)
            if found is not None and (wanted is None or wanted(found)):
                return found
        return None


OutputBuilder = Callable[
    [AnalysisResult, LoadedSeries, Sequence[Dataset], WriterSettings, "Lineage | None"],
    tuple[LoadedSeries, list[OutputObject]],
]
"""Builds the DICOM outputs of a result; returns them and the series their frame indices
refer to (the source series, or images the analysis derived).  The lineage (analysis
generation and the SR it replaces) gives a re-analysis its own UIDs and its predecessor."""


def standard_outputs(
    result: AnalysisResult, series: LoadedSeries, sources: Sequence[Dataset],
    settings: WriterSettings, lineage: Lineage | None = None,
) -> tuple[LoadedSeries, list[OutputObject]]:
    """SEG, planar-ROI SR, summary SR and summary image on the source images."""
    return series, build_outputs(result, series, sources, settings=settings, lineage=lineage)


@dataclass(frozen=True)
class Requeue:
    """The analysis is queued again when another analysis of its study finished.

    Attributes
    ----------
    after
        The analysis whose finished job triggers it.
    reason
        Recorded with the re-analysis; ``{job}`` and ``{series}`` are the finished job's id
        and series.
    states
        States of this analysis's latest jobs that are queued again.
    when
        Test on the finished job's results.json entry (None: always).
    """

    after: str
    reason: str
    states: tuple[str, ...] = ("done", "running")
    when: Callable[[Mapping[str, Any]], bool] | None = None


@dataclass(frozen=True)
class Arrival:
    """The analysis is queued again when a series that may fill a companion role completes.

    Attributes
    ----------
    spec
        The role; a completed series passing ``spec.accepts`` triggers it.
    done_with_flag
        Only done jobs whose result carries this QC flag (it had no such companion then)
        are queued again, with running ones.
    reason
        Recorded with the re-analysis; ``{series}`` is the completed series.
    """

    spec: CompanionSpec
    done_with_flag: str
    reason: str


def _no_options(facts: StudyFacts) -> dict[str, Any]:
    return {}


def _no_networks(options: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def _nothing_to_load() -> None:
    return None


@dataclass(frozen=True)
class AnalysisDescriptor:
    """Everything the node does for one analysis besides calling its plugin.

    Attributes
    ----------
    name
        The plugin's name (``plugins.get_plugin``) and the routing rules' analysis name.
    study_options
        Options from the study's data, merged over the site's settings.
    companions
        Companion roles (:mod:`node.inputs.companions`).
    networks
        The plugin's segmentation networks as options (e.g. ``segmenter``), built from the
        options assembled so far (the site's settings, the study's, the companions); an
        option already holding an object is kept.  Raises ``AnalysisError`` when a network
        the site selected is unavailable.
    warm_up
        Loads what the analysis needs (networks, libraries) ahead of the first series.
    requeues
        Finished analyses of the study that queue this one again.
    arrivals
        Completed series of the study that queue this one again.
    build_outputs
        The DICOM outputs of a result.
    key_numbers
        results.json keys of the global values the status views show.
    analysed_first
        ``cmr-node analyse`` runs it before the study's other series, because other
        analyses read its results (where the node re-queues them after it).
    """

    name: str
    study_options: Callable[[StudyFacts], dict[str, Any]] = _no_options
    companions: tuple[CompanionSpec, ...] = ()
    networks: Callable[[Mapping[str, Any]], dict[str, Any]] = _no_networks
    warm_up: Callable[[], None] = _nothing_to_load
    requeues: tuple[Requeue, ...] = ()
    arrivals: tuple[Arrival, ...] = ()
    build_outputs: OutputBuilder = standard_outputs
    key_numbers: tuple[str, ...] = field(default=())
    analysed_first: bool = False


def supplied_or_error(
    facts: StudyFacts, what: str, error_key: str,
    wanted: Callable[[SuppliedCovariates], bool] | None = None,
) -> SuppliedCovariates | dict[str, Any] | None:
    """The study's supplied values, or the options reporting why they were refused.

    An invalid source is logged and reported (``covariates_invalid``) and gives
    ``{error_key: message}``.
    """
    try:
        return facts.supplied(wanted)
    except CovariatesError as exc:
        logger.warning("%s of study %s refused: %s", what, facts.study_uid, exc)
        facts.report("covariates_invalid", str(exc))
        return {error_key: str(exc)}
