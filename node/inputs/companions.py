"""Companion series: the other series of a study that an analysis needs besides its own.

Some analyses read more than the series they run on: ECV needs the native T1 map of the same
slices (role ``native_t1map``); the LGE analysis uses the short-axis cine of the same slices
(``cine``) for its LGE + cine network; a MOLLI fit is compared with the scanner's own T1 map
(``scanner_map``).  The plugins stay pure: the node finds the companions, loads them with
:mod:`node.inputs.loader` and passes them as ``options["companions"][role]`` (a
:class:`~plugins.api.LoadedSeries`), with ``options["companion_reasons"][role]`` saying why a
role has none.

A role is a :class:`CompanionSpec`: which routed analysis a candidate must have, or, for
series the node does not analyse (cine), a header test of its own (:func:`looks_like_cine`
over the candidate's first file; every complete series of the study is tried, routed or
not, so a site rule routing cines to an analysis does not switch the LGE-cine fusion off),
and a geometric test against the job's series.  Candidates are tried newest first; the first
that passes wins.  Which analysis asks for which roles is declared in its descriptor
(:mod:`node.analyses`).  The node (catalog: series of the study and their routed analysis)
and ``cmr-node analyse`` (the grouped input) describe candidates the same way
(:class:`Candidate`), so both find the same companions.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from node.inputs.loader import load_series_files
from plugins.api import AnalysisError, LoadedSeries, SourceFrame

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_SLICE_DISTANCE_MM",
    "Candidate",
    "CompanionLookup",
    "CompanionRole",
    "CompanionSpec",
    "cine_of_slices",
    "companion_options",
    "covers_any_slice",
    "covers_slices",
    "find_companions",
    "looks_like_cine",
]

MAX_SLICE_DISTANCE_MM: Final = 2.0
"""A companion covers a slice of the job's series when one of its planes lies this close."""
PARALLEL_COSINE: Final = 0.99
"""Normals with |cos| above this are parallel (same orientation)."""
CINE_NAME: Final = re.compile(
    r"cine|(?<![a-z0-9])retro(?![a-z0-9])|tru-?fi|tfi2d|b?ssfp|fiesta|b-?tfe|balanced",
    re.IGNORECASE)
"""SeriesDescription / ProtocolName / SequenceName of a bSSFP cine (Siemens ``cine_tf2d``,
``trufi``; Philips ``sBTFE``; GE ``FIESTA CINE``)."""
NOT_CINE_NAME: Final = re.compile(
    r"perf|first[ _-]?pass|(?<![a-z0-9])(lge|psir|de|mde|tag(ging)?|grid|flow|pc|"
    r"molli|shmolli|scout)(?![a-z0-9])|t1[ _-]?map|t2[ _-]?map", re.IGNORECASE)
"""Names of multi-phase series that are not a cine (perfusion, tagging, flow, mapping)."""
DEFAULT_THICKNESS_MM: Final = 8.0
"""Slice thickness assumed when the job's series has none (half of it is the tolerance)."""


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
    selects: Callable[[Candidate], bool] | None = None
    """Header test of a candidate before it is loaded.  With ``analyses`` empty the role is
    filled from any complete series of the study that passes this test (cine), whether the
    routing rules send it to an analysis or not: routing a cine somewhere must not take it
    away from the LGE-cine fusion."""

    @property
    def by_header(self) -> bool:
        """Whether the role is filled by a header test, independently of routing."""
        return not self.analyses

    def accepts(self, candidate: Candidate) -> bool:
        """Whether ``candidate`` is worth loading for this role."""
        if self.analyses and candidate.analysis not in self.analyses:
            return False
        return self.selects is None or self.selects(candidate)

    def source_text(self) -> str:
        """Which series can fill the role, for messages."""
        if self.analyses:
            return f"no series routed to {' or '.join(self.analyses)}"
        return "no complete series of the study looks like one"


def _first_header(candidate: Candidate) -> Any | None:
    for path in candidate.paths[:1]:
        try:
            return dcmread(path, stop_before_pixels=True)
        except (OSError, InvalidDicomError, ValueError) as exc:
            logger.info("candidate %s: cannot read %s (%s)", candidate.series_instance_uid,
                        path, exc)
    return None


def looks_like_cine(candidate: Candidate) -> bool:
    """Whether a (not analysed) candidate series looks like a bSSFP cine from its first file.

    A cine has no inversion time, is named like one (:data:`CINE_NAME`) or declares
    several cardiac phases (CardiacNumberOfImages >= 2), and is not named like perfusion,
    tagging, flow, LGE or mapping (:data:`NOT_CINE_NAME`).
    """
    header = _first_header(candidate)
    if header is None:
        return False
    names = " ".join(str(header.get(k, "") or "") for k in (
        "SeriesDescription", "ProtocolName", "SequenceName")) + " " + candidate.description
    if NOT_CINE_NAME.search(names) or str(header.get("InversionTime", "") or "").strip():
        return False
    try:
        phases = int(float(str(header.get("CardiacNumberOfImages", "") or 0)))
    except ValueError:
        phases = 0
    return bool(CINE_NAME.search(names)) or phases >= 2


def cine_of_slices(target: LoadedSeries, candidate: LoadedSeries) -> str | None:
    """Whether ``candidate`` is a multi-phase series with a plane parallel to a slice of
    ``target`` within half its slice thickness; ``None`` if so, else the reason."""
    if not candidate.frames:
        return "it has no frames"
    positions: dict[int, set[float]] = {}
    for frame in candidate.frames:
        value = frame.attributes.get("TriggerTime")
        try:
            time_ms = float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            time_ms = None
        if time_ms is not None:
            positions.setdefault(round(frame.slice_location), set()).add(round(time_ms, 1))
    if not any(len(times) >= 2 for times in positions.values()):
        return "it is not a cine (no slice position with two or more trigger times)"
    if not _parallel(target, candidate):
        return "it has another orientation"
    for frame in target.frames:
        half = 0.5 * float(frame.slice_thickness or DEFAULT_THICKNESS_MM)
        for other in candidate.frames:
            if abs(float(np.dot(frame.normal, other.normal))) <= PARALLEL_COSINE:
                continue
            offset = (np.asarray(frame.image_position, np.float64)
                      - np.asarray(other.image_position, np.float64))
            if abs(float(np.dot(frame.normal, offset))) <= half:
                return None
    return "it has no slice within half a slice thickness of any of the job's slices"


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
    specs: Sequence[CompanionSpec],
    target: LoadedSeries,
    candidates: Sequence[Candidate],
    *,
    loader: Callable[[Sequence[Path]], LoadedSeries] | None = None,
) -> CompanionLookup:
    """Find and load the companions ``analysis`` needs for ``target``.

    Parameters
    ----------
    specs
        The roles the job's analysis asks for.
    target
        The job's series, loaded.
    candidates
        The other series of the study (the job's own series is skipped).
    loader
        Loads a candidate from its paths (default: :func:`node.inputs.loader.load_series_files`
        with the candidate's routed analysis).

    Returns
    -------
    CompanionLookup
        Per role the newest matching series, or the reason none matched.
    """
    found = CompanionLookup()
    for spec in specs:
        pool = sorted(
            (
                c for c in candidates
                if c.series_instance_uid != target.series_instance_uid and spec.accepts(c)
            ),
            key=lambda c: c.received,
            reverse=True,
        )
        if not pool:
            found.reasons[spec.role] = (
                f"the study has no {spec.description} ({spec.source_text()})"
            )
            continue
        rejected: list[str] = []
        for candidate in pool:
            try:
                loaded = (loader(candidate.paths) if loader is not None
                          else _load(candidate.paths, candidate.analysis))
            except AnalysisError as exc:
                rejected.append(f"{_label(candidate)}: cannot be loaded ({exc})")
                continue
            why = spec.matches(target, loaded)
            if why is None:
                found.series[spec.role] = loaded
                found.sources[spec.role] = candidate.series_instance_uid
                logger.info(
                    "series %s: %s is series %s", target.series_instance_uid,
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
    specs: Sequence[CompanionSpec],
    paths: Sequence[Path],
    candidates: Sequence[Candidate],
) -> dict[str, Any]:
    """Plugin options with the companions of a job (empty when it needs none).

    Parameters
    ----------
    specs
        The roles the job's analysis asks for.
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
    if not specs:
        return {}
    try:
        target = _load(paths)
    except AnalysisError as exc:
        logger.info("no companions looked up: the series cannot be loaded (%s)", exc)
        return {}
    return find_companions(specs, target, candidates).options()


def _load(paths: Sequence[Path], analysis: str | None = None) -> LoadedSeries:
    """A series loaded with the images its routed ``analysis`` needs (a native T1 map
    series that also holds source images gives its maps, :mod:`node.inputs.selection`)."""
    series, _ = load_series_files(paths, analysis)
    return series


def _label(candidate: Candidate) -> str:
    text = f"series {candidate.series_instance_uid}"
    return f"{text} '{candidate.description}'" if candidate.description else text
