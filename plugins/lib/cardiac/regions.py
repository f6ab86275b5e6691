"""AHA segment maps for the analysed slices of a short-axis stack.

Shared by every analysis that reports values per AHA segment (native T1, LGE scar): RV
insertion points are searched on each slice; a slice where they are not found borrows those
of the nearest slice that has them (re-centred on its own LV), which is what a reader does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from plugins.api import Label, LabelImage, LoadedSeries, QCFlag, Severity
from plugins.lib.cardiac.aha import segment_map
from plugins.lib.cardiac.insertion import InsertionPoints, lv_centre, rv_insertion_points

logger = logging.getLogger(__name__)

__all__ = ["SHORT_AXIS_LEVELS", "RegionalCode", "SliceSegments", "slice_segment_maps"]

SHORT_AXIS_LEVELS: Final = ("basal", "mid", "apical")
"""Slice levels that have AHA segments."""


class RegionalCode:
    """Stable QC codes of the regional step."""

    INSERTION_BORROWED = "rv_insertion_borrowed"
    NO_INSERTION = "rv_insertion_not_found"


@dataclass(frozen=True)
class SliceSegments:
    """The AHA segments of one analysed slice.

    Attributes
    ----------
    frame_index
        Index into ``LoadedSeries.frames``.
    level
        basal, mid or apical.
    segments
        AHA segment number (1-16) of every myocardial pixel, 0 elsewhere.
    insertion
        The RV insertion points used.
    borrowed_from
        Frame whose insertion points were used when this slice had none found, else ``None``.
    """

    frame_index: int
    level: str
    segments: npt.NDArray[np.int8]
    insertion: InsertionPoints
    borrowed_from: int | None = None


def slice_segment_maps(
    series: LoadedSeries,
    slices: Sequence[tuple[int, str, LabelImage]],
) -> tuple[list[SliceSegments], list[QCFlag]]:
    """AHA segment maps of the slices that have a short-axis level.

    Parameters
    ----------
    series
        The analysed series (geometry of the frames).
    slices
        ``(frame_index, level, labels)`` per analysed slice; in ``labels`` every pixel of
        the LV wall must be :attr:`~plugins.api.Label.MYOCARDIUM` (merge scar into it
        first), with the LV and RV blood pools labelled.  Slices without a basal, mid or
        apical level are skipped.

    Returns
    -------
    tuple
        One :class:`SliceSegments` per slice that could be divided, and the QC flags raised
        (insertion points borrowed, or found on no slice).
    """
    flags: list[QCFlag] = []
    usable = [s for s in slices if s[1] in SHORT_AXIS_LEVELS]
    found: dict[int, InsertionPoints] = {}
    for frame_index, _level, labels in usable:
        frame = series.frames[frame_index]
        points = rv_insertion_points(
            labels, frame.pixel_spacing, orientation=frame.image_orientation
        )
        if points is not None:
            found[frame_index] = points
    if not found:
        if usable:
            flags.append(
                QCFlag(
                    RegionalCode.NO_INSERTION,
                    Severity.WARNING,
                    "RV insertion points were not found on any slice: no AHA segment values.",
                )
            )
        return [], flags

    maps: list[SliceSegments] = []
    for frame_index, level, labels in usable:
        frame = series.frames[frame_index]
        points = found.get(frame_index)
        borrowed: int | None = None
        if points is None:
            borrowed = min(
                found,
                key=lambda i: abs(series.frames[i].slice_location - frame.slice_location),
            )
            points = found[borrowed].with_centre(lv_centre(labels))
            flags.append(
                QCFlag(
                    RegionalCode.INSERTION_BORROWED,
                    Severity.INFO,
                    f"RV insertion points not found on this slice; those of frame "
                    f"{borrowed + 1} were used for its AHA segments.",
                    frame_index=frame_index,
                )
            )
        try:
            segments = segment_map(
                labels,
                level,
                points,
                orientation=frame.image_orientation,
                pixel_spacing=frame.pixel_spacing,
            )
        except ValueError as exc:
            logger.info("no AHA segments on frame %d: %s", frame_index, exc)
            continue
        maps.append(SliceSegments(frame_index, level, segments, points, borrowed))
    return maps, flags


def merged_wall(labels: LabelImage) -> LabelImage:
    """``labels`` with scar and MVO relabelled as myocardium (the whole LV wall)."""
    merged = labels.copy()
    merged[np.isin(labels, (Label.SCAR, Label.MVO))] = Label.MYOCARDIUM
    return merged
