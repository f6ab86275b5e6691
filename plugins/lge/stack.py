"""The frames of an LGE series to analyse: one per position of its short-axis stack, in base
order, with the preferred reconstruction when the series holds both."""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from plugins.api import LoadedSeries, QCFlag, Severity
from plugins.lge.contrast import contrast_from_names
from plugins.lge.qc import QCCode
from plugins.lge.segmenter import LgeContrast

PARALLEL_COSINE: Final = 0.99
"""Frames whose normals' cosine is at least this belong to one stack."""
SAME_POSITION_MM: Final = 0.5
"""Frames closer than this along the stack normal are the same slice position."""


def stack_frames(series: LoadedSeries, prefer: LgeContrast) -> tuple[list[int], list[QCFlag]]:
    """The frames to analyse: one per position of the short-axis stack, base order by location.

    Frames of another orientation (long-axis views stored in the series) are left out; when a
    series holds both reconstructions (Philips stores PSIR and magnitude together) only the
    preferred one is kept; of repeated images at one position the last acquired is kept.
    """
    flags: list[QCFlag] = []
    normals = [f.normal for f in series.frames]
    groups: list[list[int]] = []
    for index, normal in enumerate(normals):
        for group in groups:
            if abs(float(np.dot(normals[group[0]], normal))) >= PARALLEL_COSINE:
                group.append(index)
                break
        else:
            groups.append([index])
    stack = max(groups, key=len)
    if len(stack) < len(series.frames):
        flags.append(QCFlag(
            QCCode.NOT_PARALLEL_STACK, Severity.INFO,
            f"{len(series.frames) - len(stack)} frame(s) are not parallel to the short-axis "
            "stack (long-axis views) and were not analysed.",
        ))
    kinds = {
        i: contrast_from_names(series.frames[i].attributes.get("ImageType"), [])[0]
        for i in stack
    }
    if {LgeContrast.PSIR, LgeContrast.MAGNITUDE} <= set(kinds.values()):
        kept = [i for i in stack if kinds[i] in (prefer, None)]
        flags.append(QCFlag(
            QCCode.BOTH_RECONSTRUCTIONS, Severity.INFO,
            f"The series holds PSIR and magnitude images; the {prefer.name} images were "
            f"analysed ({len(stack) - len(kept)} other frame(s) left out).",
        ))
        stack = kept
    by_position: dict[int, list[int]] = {}
    for i in stack:
        key = round(series.frames[i].slice_location / SAME_POSITION_MM)
        by_position.setdefault(key, []).append(i)
    chosen = []
    repeated = 0
    for indices in by_position.values():
        latest = max(indices, key=lambda i: (
            _number(series.frames[i].attributes.get("InstanceNumber")),
            series.frames[i].frame_number or 0,
        ))
        chosen.append(latest)
        repeated += len(indices) - 1
    if repeated:
        flags.append(QCFlag(
            QCCode.REPEATED_POSITION, Severity.INFO,
            f"{repeated} image(s) repeat a slice position; the last acquired of each position "
            "was analysed.",
        ))
    chosen.sort(key=lambda i: series.frames[i].slice_location)
    return chosen, flags


def _number(value: Any) -> float:
    """``value`` as a number (0 when it is none)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
