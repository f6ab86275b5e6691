"""Companion series: the other series of a study that an analysis needs besides its own.

Some analyses read more than the series they run on: ECV needs the native T1 map of the same
slices (role ``native_t1map``); an LGE-cine fusion will need the cine of the same slices
(``cine``); a MOLLI fit is compared with the scanner's own T1 map (``scanner_map``).  The
plugins stay pure: the node finds the companions, loads them with :mod:`node.loader` and
passes them as ``options["companions"][role]`` (a :class:`~plugins.api.LoadedSeries`), with
``options["companion_reasons"][role]`` saying why a role has none.

A role is a :class:`CompanionSpec`: which routed analysis (or other series property) a
candidate must have, and a geometric test against the job's series.  Candidates are tried
newest first; the first that passes wins.  The node (catalog: series of the study and their
routed analysis) and ``cmr-node analyse`` (the grouped input) describe candidates the same
way (:class:`Candidate`), so both find the same companions.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from node.loader import load_series_files
from plugins.api import AnalysisError, LoadedSeries, SourceFrame

logger = logging.getLogger(__name__)

__all__ = [
    "COMPANION_SPECS",
    "MAX_SLICE_DISTANCE_MM",
    "Candidate",
    "CompanionRole",
    "CompanionSpec",
    "companion_options",
    "covers_slices",
    "needed_roles",
]

MAX_SLICE_DISTANCE_MM: Final = 2.0
"""A companion covers a slice of the job's series when one of its planes lies this close."""
PARALLEL_COSINE: Final = 0.99
"""Normals with |cos| above this are parallel (same orientation)."""


class CompanionRole(enum.StrEnum):
    """Roles a companion series can play (keys of ``options["companions"]``)."""

    NATIVE_T1MAP = "native_t1map"
    """The native T1 map of the same slices (for ECV)."""
    CINE = "cine"
    """The cine of the same slices (LGE-cine fusion)."""
    SCANNER_MAP = "scanner_map"
    """The scanner's T1 map computed from a MOLLI source series."""


@dataclass(frozen=True)
class Candidate:
    """A series of the same study that may be a companion.

    Attributes
    ----------
    series_instance_uid
        The series.
    analysis
        The analysis it was routed to, or ``None`` (not routed, or not routable).
    paths
        Its instance files.
    received
        Ordering key, larger is newer (catalog receipt time, or SeriesDate+SeriesTime).
    description
        SeriesDescription, for messages.
    """

    series_instance_uid: str
    analysis: str | None
    paths: Sequence[Path]
    received: float = 0.0
    description: str = ""


Matcher = Callable[[LoadedSeries, LoadedSeries], str | None]
"""Geometric test of a loaded candidate against the job's series: ``None`` if it fits, else
the reason it does not."""


def covers_slices(target: LoadedSeries, candidate: LoadedSeries) -> str | None:
    """Whether ``candidate`` has a parallel plane within :data:`MAX_SLICE_DISTANCE_MM` of
    every plane of ``target``; ``None`` if so, else the reason."""
    missing = [
        frame for frame in target.frames
        if not any(_near(frame, other) for other in candidate.frames)
    ]
    if not missing:
        return None
    if not _parallel(target, candidate):
        return "it has another orientation"
    locations = ", ".join(f"{f.slice_location:.1f}" for f in missing[:5])
    return (
        f"it has no slice within {MAX_SLICE_DISTANCE_MM:g} mm of {len(missing)} of the "
        f"{len(target.frames)} slice(s) (at {locations} mm)"
    )


def covers_any_slice(target: LoadedSeries, candidate: LoadedSeries) -> str | None:
    """Like :func:`covers_slices`, but one shared slice position is enough."""
    if any(_near(f, o) for f in target.frames for o in candidate.frames):
        return None
    if not _parallel(target, candidate):
        return "it has another orientation"
    return f"it has no slice within {MAX_SLICE_DISTANCE_MM:g} mm of any of the job's slices"


def _parallel(target: LoadedSeries, candidate: LoadedSeries) -> bool:
    return any(
        abs(float(np.dot(f.normal, o.normal))) > PARALLEL_COSINE
        for f in target.frames for o in candidate.frames
    )


def _near(a: SourceFrame, b: SourceFrame) -> bool:
    if abs(float(np.dot(a.normal, b.normal))) <= PARALLEL_COSINE:
        return False
    offset = np.asarray(a.image_position, np.float64) - np.asarray(b.image_position, np.float64)
    return abs(float(np.dot(b.normal, offset))) <= MAX_SLICE_DISTANCE_MM


@dataclass(frozen=True)
class CompanionSpec:
    """How to find one companion role.

    Attributes
    ----------
    role
        The key in ``options["companions"]``.
    analyses
        Routed analyses a candidate may have (e.g. ``("t1map",)``).
    matches
        Geometric test of a loaded candidate.
    description
        What the role is, for messages ("native T1 map").
    """

    role: CompanionRole
    analyses: tuple[str, ...]
    matches: Matcher
    description: str


COMPANION_SPECS: Final[Mapping[str, tuple[CompanionSpec, ...]]] = {
    "ecv": (
        CompanionSpec(
            CompanionRole.NATIVE_T1MAP, ("t1map",), covers_any_slice,
            "native T1 map of the same slices",
        ),
    ),
    "molli": (
        CompanionSpec(
            CompanionRole.SCANNER_MAP, ("t1map",), covers_any_slice,
            "scanner T1 map of the same slices",
        ),
    ),
}
"""Companion roles per analysis.  Adding LGE-cine fusion is one entry:
``"lge": (CompanionSpec(CompanionRole.CINE, ("cine",), covers_any_slice, "cine"),)`` once
cine series are routed (or given a candidate test of their own)."""


def needed_roles(analysis: str) -> tuple[CompanionSpec, ...]:
    """The companion roles ``analysis`` asks for (empty for most analyses)."""
    return COMPANION_SPECS.get(analysis, ())


@dataclass
class CompanionLookup:
    """Companions found for one job: loaded series by role, and reasons for missing roles."""

    series: dict[str, LoadedSeries] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The plugin options carrying the companions (empty when none was asked for)."""
        if not self.series and not self.reasons:
            return {}
        return {
            "companions": dict(self.series),
            "companion_reasons": dict(self.reasons),
            "companion_series": dict(self.sources),
        }


def find_companions(
    analysis: str,
    target: LoadedSeries,
    candidates: Sequence[Candidate],
    *,
    loader: Callable[[Sequence[Path]], LoadedSeries] | None = None,
) -> CompanionLookup:
    """Find and load the companions ``analysis`` needs for ``target``.

    Parameters
    ----------
    analysis
        The job's analysis.
    target
        The job's series, loaded.
    candidates
        The other series of the study (the job's own series is skipped).
    loader
        Loads a candidate from its paths (default: :func:`node.loader.load_series_files`).

    Returns
    -------
    CompanionLookup
        Per role the newest matching series, or the reason none matched.
    """
    load = loader or _load
    found = CompanionLookup()
    for spec in needed_roles(analysis):
        pool = sorted(
            (
                c for c in candidates
                if c.series_instance_uid != target.series_instance_uid
                and c.analysis in spec.analyses
            ),
            key=lambda c: c.received,
            reverse=True,
        )
        if not pool:
            found.reasons[spec.role] = (
                f"the study has no {spec.description} (no series routed to "
                f"{' or '.join(spec.analyses)})"
            )
            continue
        rejected: list[str] = []
        for candidate in pool:
            try:
                loaded = load(candidate.paths)
            except AnalysisError as exc:
                rejected.append(f"{_label(candidate)}: cannot be loaded ({exc})")
                continue
            why = spec.matches(target, loaded)
            if why is None:
                found.series[spec.role] = loaded
                found.sources[spec.role] = candidate.series_instance_uid
                logger.info(
                    "%s of series %s: %s is series %s", analysis, target.series_instance_uid,
                    spec.role, candidate.series_instance_uid,
                )
                break
            rejected.append(f"{_label(candidate)}: {why}")
        else:
            found.reasons[spec.role] = (
                f"no {spec.description} fits ({'; '.join(rejected)})"
            )
    return found


def companion_options(
    analysis: str,
    paths: Sequence[Path],
    candidates: Sequence[Candidate],
) -> dict[str, Any]:
    """Plugin options with the companions of a job (empty when ``analysis`` needs none).

    Parameters
    ----------
    analysis
        The job's analysis.
    paths
        The job's series files (loaded here to compare geometry).
    candidates
        The other series of the study.

    Returns
    -------
    dict
        ``companions``, ``companion_reasons`` and ``companion_series`` (role → series UID),
        or ``{}``.  A job series that cannot be loaded gives ``{}``: the analysis itself
        then reports why.
    """
    if not needed_roles(analysis):
        return {}
    try:
        target = _load(paths)
    except AnalysisError as exc:
        logger.info("no companions looked up: the series cannot be loaded (%s)", exc)
        return {}
    return find_companions(analysis, target, candidates).options()


def _load(paths: Sequence[Path]) -> LoadedSeries:
    series, _ = load_series_files(paths)
    return series


def _label(candidate: Candidate) -> str:
    text = f"series {candidate.series_instance_uid}"
    return f"{text} '{candidate.description}'" if candidate.description else text
