"""MOLLI source images of a loaded series: slices, inversion times, heart rate, scanner map.

Where vendors put the inversion time
------------------------------------
* **InversionTime (0018,0082)** on every source image: Siemens MyoMaps / MOLLI WIP, Philips
  classic MR images, GE, and this project's phantom writer
  (:func:`models.phantoms.dicom_maps.molli_source_series_datasets`).  Enhanced MR images
  (Philips multi-frame) carry it per frame in the MR Modifier functional group
  (InversionTimes), which :mod:`node.inputs.loader` copies into the frame's ``InversionTime``.
* **ImageComments** as text such as ``"TI 123"``, ``"TI: 123.5"``, ``"TI=123ms"``,
  ``"MOLLI_TI_123"``: older
  Siemens MOLLI works-in-progress write the effective TI only there (InversionTime then
  holds the nominal first TI for every image).  A frame attribute ``SeriesDescription``
  of the same form is read too (single-image series merged into one).
* **TriggerTime**: some Look-Locker style acquisitions store the time after the inversion
  as the trigger delay.  Used last, only when it gives enough distinct times, and reported.

The first source that gives every frame of every slice a time and enough distinct times
wins; the checks (range, distinct count, duplicates) then apply to it.

Heart rate comes from HeartRate (0018,1088) or NominalInterval (0018,1062, the R-R interval
in ms) when the loader passes them on, otherwise from the spacing of consecutive inversion
times in acquisition order: within one inversion MOLLI samples once per heartbeat, so the
most common positive TI step is the R-R interval.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from plugins.api import AnalysisError, LoadedSeries, SourceFrame

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_TI_MS",
    "MIN_DISTINCT_TIS",
    "MolliSlice",
    "MolliSource",
    "SourceProblem",
    "TiSource",
    "extract_source",
    "is_map_frame",
    "parse_ti_text",
]

MIN_DISTINCT_TIS: Final = 5
"""Fewest distinct inversion times for a trustworthy three-parameter fit.  MOLLI 5(3)3 has 8,
the post-contrast 4(1)3(1)2 has 9, ShMOLLI 7; five leaves two degrees of freedom beyond the
three parameters and still samples both sides of the null."""
MAX_TI_MS: Final = 6000.0
"""Largest plausible inversion time: 5(3)3 at 40 bpm reaches ~6 s after its inversion."""
LOCATION_TOLERANCE_MM: Final = 0.5
"""Frames closer than this along the normal are the same slice position."""
PARALLEL_COSINE: Final = 0.99
"""Normals with |cos| above this are parallel."""
RR_RANGE_MS: Final = (300.0, 2000.0)
"""TI steps accepted as an R-R interval when estimating the heart rate (200-30 bpm)."""
HEART_RATE_RANGE_BPM: Final = (20.0, 250.0)
"""Header heart rates outside this are treated as missing (0 is common for 'not recorded')."""

_TI_TEXT = re.compile(
    r"(?<![a-z0-9])ti[\s_]*[:=]?\s*(\d+(?:\.\d+)?)\s*(?:ms|msec)?(?![0-9.])", re.IGNORECASE
)
_MAP_IMAGE_TYPE = re.compile(r"^T1[ _]?MAP$|^T1$", re.IGNORECASE)
_MS_PER_MINUTE = 60000.0


class TiSource:
    """Names of the places an inversion time was read from."""

    INVERSION_TIME = "InversionTime"
    IMAGE_COMMENTS = "ImageComments"
    SERIES_DESCRIPTION = "SeriesDescription"
    TRIGGER_TIME = "TriggerTime"


@dataclass(frozen=True)
class SourceProblem:
    """Why one slice position cannot be fitted.

    Attributes
    ----------
    location_mm
        Slice position along the normal.
    reason
        A sentence a person understands.
    """

    location_mm: float
    reason: str


@dataclass(frozen=True)
class MolliSlice:
    """The source images of one slice position.

    Attributes
    ----------
    frame_indices
        Indices into ``LoadedSeries.frames`` in acquisition order.
    inversion_times_ms
        One TI per frame, same order.
    location_mm
        Position along the slice normal.
    map_frame_index
        Index of the scanner's own T1 map frame at this position, if the series holds one.
    """

    frame_indices: tuple[int, ...]
    inversion_times_ms: tuple[float, ...]
    location_mm: float
    map_frame_index: int | None = None

    def images(self, series: LoadedSeries) -> npt.NDArray[np.float32]:
        """The source images stacked as (n_ti, rows, columns)."""
        return np.stack([series.frames[i].pixels for i in self.frame_indices]).astype(np.float32)

    def reference(self, series: LoadedSeries) -> SourceFrame:
        """The first source frame (its geometry is the slice's)."""
        return series.frames[self.frame_indices[0]]


@dataclass(frozen=True)
class MolliSource:
    """What a MOLLI source series offers for fitting.

    Attributes
    ----------
    slices
        Slice positions with usable inversion times, ordered along the normal.
    problems
        Slice positions that cannot be fitted, with reasons.
    ti_source
        Where the inversion times were read (:class:`TiSource`).
    map_frame_indices
        Frames that are the scanner's own T1 map (not fitted).
    heart_rate_bpm
        Heart rate, or ``None`` if it cannot be determined.
    heart_rate_source
        ``"HeartRate"``, ``"NominalInterval"`` or ``"inversion time spacing"``.
    notes
        Non-fatal observations (e.g. frames ignored), for audit.
    """

    slices: tuple[MolliSlice, ...]
    problems: tuple[SourceProblem, ...]
    ti_source: str
    map_frame_indices: tuple[int, ...]
    heart_rate_bpm: float | None
    heart_rate_source: str | None
    notes: tuple[str, ...] = field(default_factory=tuple)


def parse_ti_text(text: Any) -> float | None:
    """An inversion time written as text (``"TI 123"``, ``"TI: 123.5 ms"``, ``"TI=80"``).

    Parameters
    ----------
    text
        ImageComments or a description; anything else gives ``None``.

    Returns
    -------
    float or None
        The time in ms, or ``None`` if the text names no single TI.
    """
    if not isinstance(text, str):
        return None
    values = {float(m.group(1)) for m in _TI_TEXT.finditer(text)}
    return values.pop() if len(values) == 1 else None


def is_map_frame(frame: SourceFrame) -> bool:
    """Whether a frame's ImageType says it is a T1 map (not a source image)."""
    image_type = frame.attributes.get("ImageType") or ()
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    if len(values) == 1 and isinstance(values[0], str) and "\\" in values[0]:
        values = values[0].split("\\")
    return any(_MAP_IMAGE_TYPE.match(str(v).strip()) for v in values)


def extract_source(series: LoadedSeries) -> MolliSource:
    """Group the source frames of a MOLLI series by slice and read their inversion times.

    Parameters
    ----------
    series
        A loaded MOLLI source series (possibly with the scanner's T1 map frames mixed in).

    Returns
    -------
    MolliSource
        Usable slices, the slices that cannot be fitted (with reasons), heart rate.

    Raises
    ------
    plugins.api.AnalysisError
        If no slice position has usable inversion times; the message gives the reasons.
    """
    if not series.frames:
        raise AnalysisError(f"Series {series.series_instance_uid} has no frames.")
    map_frames = [i for i, f in enumerate(series.frames) if is_map_frame(f)]
    source_frames = [i for i in range(len(series.frames)) if i not in set(map_frames)]
    if not source_frames:
        raise AnalysisError(
            "Every frame of the series is a T1 map (ImageType T1 MAP / T1): there are no "
            "source images to fit; analyse it as a T1 map instead."
        )
    notes: list[str] = []
    off_plane = _off_plane(series.frames, source_frames)
    if off_plane:
        notes.append(f"{len(off_plane)} frame(s) not parallel to the main stack were ignored")
        source_frames = [i for i in source_frames if i not in off_plane]

    groups = _group_by_location(series.frames, source_frames)
    ti_source, times = _inversion_times(series, groups)
    if ti_source is None:
        raise AnalysisError(
            "No inversion times: the source images carry no InversionTime, no 'TI <ms>' in "
            "ImageComments and no TriggerTime that varies between images, so the recovery "
            "curve cannot be fitted."
        )

    map_by_location = {round(series.frames[i].slice_location, 1): i for i in map_frames}
    slices: list[MolliSlice] = []
    problems: list[SourceProblem] = []
    for location, members in groups:
        tis = [times.get(i) for i in members]
        problem = _check_times(tis, location, ti_source)
        if problem is not None:
            problems.append(problem)
            continue
        slices.append(
            MolliSlice(
                frame_indices=tuple(members),
                inversion_times_ms=tuple(float(t) for t in tis if t is not None),
                location_mm=location,
                map_frame_index=_nearest_map(location, map_by_location),
            )
        )
    matched_maps = {s.map_frame_index for s in slices if s.map_frame_index is not None}
    unmatched = len(map_frames) - len(matched_maps)
    if unmatched:
        notes.append(
            f"{unmatched} scanner T1 map frame(s) lie at no fitted slice position and were "
            "not compared"
        )
    if not slices:
        reasons = "; ".join(f"slice at {p.location_mm:.1f} mm: {p.reason}" for p in problems)
        raise AnalysisError(f"No slice has usable inversion times ({ti_source}): {reasons}")

    heart_rate, hr_source = _heart_rate(series, slices)
    logger.debug(
        "MOLLI source %s: %d slice(s), %d problem(s), TIs from %s, heart rate %s (%s)",
        series.series_instance_uid,
        len(slices),
        len(problems),
        ti_source,
        heart_rate,
        hr_source,
    )
    return MolliSource(
        slices=tuple(slices),
        problems=tuple(problems),
        ti_source=ti_source,
        map_frame_indices=tuple(map_frames),
        heart_rate_bpm=heart_rate,
        heart_rate_source=hr_source,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------------


def _off_plane(frames: Sequence[SourceFrame], indices: Sequence[int]) -> set[int]:
    """Frames not parallel to the most common orientation."""
    best: list[int] = []
    for reference in indices:
        normal = frames[reference].normal
        members = [
            i for i in indices if abs(float(np.dot(frames[i].normal, normal))) > PARALLEL_COSINE
        ]
        if len(members) > len(best):
            best = members
    return set(indices) - set(best)


def _instance_number(frame: SourceFrame) -> int:
    value = frame.attributes.get("InstanceNumber")
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _group_by_location(
    frames: Sequence[SourceFrame], indices: Sequence[int]
) -> list[tuple[float, list[int]]]:
    """(location, frame indices in acquisition order) per slice position."""
    if not indices:
        return []
    normal = frames[indices[0]].normal
    located = sorted(
        indices, key=lambda i: float(np.dot(normal, np.asarray(frames[i].image_position)))
    )
    groups: list[tuple[float, list[int]]] = []
    for i in located:
        location = float(np.dot(normal, np.asarray(frames[i].image_position)))
        if groups and abs(location - groups[-1][0]) <= LOCATION_TOLERANCE_MM:
            groups[-1][1].append(i)
        else:
            groups.append((location, [i]))
    return [
        (loc, sorted(members, key=lambda i: (_acquisition_key(frames[i]), i)))
        for loc, members in groups
    ]


def _acquisition_key(frame: SourceFrame) -> tuple[int, int, int]:
    """Order of acquisition: InstanceNumber, then temporal position, then frame number."""
    temporal = frame.attributes.get("TemporalPositionIndex")
    try:
        temporal_index = int(temporal) if temporal is not None else 0
    except (TypeError, ValueError):
        temporal_index = 0
    return (_instance_number(frame), temporal_index, frame.frame_number or 0)


def _nearest_map(location: float, maps: Mapping[float, int]) -> int | None:
    for map_location, index in maps.items():
        if abs(map_location - location) <= LOCATION_TOLERANCE_MM:
            return index
    return None


# --------------------------------------------------------------------------------------------
# Inversion times
# --------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _times_from(
    series: LoadedSeries, indices: Iterable[int], source: str
) -> dict[int, float | None]:
    out: dict[int, float | None] = {}
    for i in indices:
        attributes = series.frames[i].attributes
        if source in (TiSource.IMAGE_COMMENTS, TiSource.SERIES_DESCRIPTION):
            out[i] = parse_ti_text(attributes.get(source))
        else:
            out[i] = _number(attributes.get(source))
    return out


def _inversion_times(
    series: LoadedSeries, groups: Sequence[tuple[float, list[int]]]
) -> tuple[str | None, dict[int, float | None]]:
    """The first TI source that times every frame with enough distinct values per slice."""
    indices = [i for _, members in groups for i in members]
    fallback: tuple[str | None, dict[int, float | None]] = (None, {})
    for source in (
        TiSource.INVERSION_TIME,
        TiSource.IMAGE_COMMENTS,
        TiSource.SERIES_DESCRIPTION,
        TiSource.TRIGGER_TIME,
    ):
        times = _times_from(series, indices, source)
        if not any(t is not None for t in times.values()):
            continue
        complete = all(
            all(times[i] is not None for i in members)
            and len({times[i] for i in members}) >= MIN_DISTINCT_TIS
            for _, members in groups
        )
        if complete:
            return source, times
        if fallback[0] is None and source != TiSource.TRIGGER_TIME:
            fallback = (source, times)  # reported with its defects if nothing better exists
    return fallback


def _check_times(tis: Sequence[float | None], location: float, source: str) -> SourceProblem | None:
    """Why the TIs of one slice cannot be fitted, or None."""
    missing = sum(t is None for t in tis)
    if missing:
        return SourceProblem(
            location, f"{missing} of {len(tis)} source image(s) have no inversion time ({source})"
        )
    values = [float(t) for t in tis if t is not None]
    outside = [t for t in values if not 0.0 < t <= MAX_TI_MS]
    if outside:
        return SourceProblem(
            location,
            f"inversion time(s) {', '.join(f'{t:g}' for t in outside)} ms outside the "
            f"plausible range (0, {MAX_TI_MS:g}] ms",
        )
    distinct = sorted(set(values))
    duplicates = sorted({t for t in values if values.count(t) > 1})
    if duplicates:
        return SourceProblem(
            location,
            f"inversion time(s) {', '.join(f'{t:g}' for t in duplicates)} ms occur more than "
            "once (repeated or mixed acquisitions, e.g. motion-corrected and original images "
            "together); each MOLLI image has its own TI",
        )
    if len(distinct) < MIN_DISTINCT_TIS:
        return SourceProblem(
            location,
            f"only {len(distinct)} distinct inversion time(s); a T1 fit needs at least "
            f"{MIN_DISTINCT_TIS}",
        )
    return None


# --------------------------------------------------------------------------------------------
# Heart rate
# --------------------------------------------------------------------------------------------


def _header_value(series: LoadedSeries, keyword: str) -> float | None:
    value = _number(series.header.get(keyword))
    if value is None:
        for frame in series.frames:
            value = _number(frame.attributes.get(keyword))
            if value is not None:
                break
    return value


def _heart_rate(
    series: LoadedSeries, slices: Sequence[MolliSlice]
) -> tuple[float | None, str | None]:
    low, high = HEART_RATE_RANGE_BPM
    rate = _header_value(series, "HeartRate")
    if rate is not None and low <= rate <= high:
        return rate, "HeartRate"
    interval = _header_value(series, "NominalInterval")
    if interval is not None and interval > 0 and low <= _MS_PER_MINUTE / interval <= high:
        return _MS_PER_MINUTE / interval, "NominalInterval"
    steps = [
        later - earlier
        for s in slices
        for earlier, later in zip(s.inversion_times_ms, s.inversion_times_ms[1:], strict=False)
        if RR_RANGE_MS[0] <= later - earlier <= RR_RANGE_MS[1]
    ]
    if len(steps) < 2:
        return None, None
    return _MS_PER_MINUTE / float(np.median(steps)), "inversion time spacing"
