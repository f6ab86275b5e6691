"""Heart localisation per short-axis stack: one consistent LV chain through the slices.

The slices of a short-axis stack share the LV long axis: from one slice to the next the LV
centre moves little and the heart's size changes smoothly.  A per-slice localiser that is
fooled on one slice (stomach, aorta or the RV taken for the heart, or nothing found) is
therefore corrected by its neighbours.  :func:`choose_chain` picks, among every slice's heart
candidates (centre, diameter, score), the chain that best trades the localiser's own
confidence against smooth centre and size through the stack (dynamic programming over the
candidates, skipped slices allowed at a cost); slices left without a chosen candidate get a
centre and diameter interpolated from the chain (:func:`fill_chain`).

Centres are compared in one common frame: when the slices' ImagePositionPatient and
ImageOrientationPatient are given, the analysis places each slice's pixel grid in the first
slice's (row, column) axes (:func:`plugins.lib.stack_geometry.in_plane_offsets`), so a shifted
field of view does not look like a moving heart; without geometry the slices are assumed to
share one pixel grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CENTRE_SD",
    "SIZE_SD",
    "SKIP_COST",
    "ChainPoint",
    "HeartCandidate",
    "choose_chain",
    "fill_chain",
    "locate_stack",
]

CENTRE_SD: Final = 0.35
"""Expected LV centre shift between adjacent slices, in heart diameters (one SD)."""
SIZE_SD: Final = 0.30
"""Expected change of log heart diameter between adjacent slices (one SD)."""
SKIP_COST: Final = 1.0
"""Cost of leaving one slice out of the chain (as costly as a shift of 1 SD)."""
MIN_RELATIVE_SCORE: Final = 1e-3
"""Floor of a candidate's score relative to the best candidate of its slice."""


@dataclass(frozen=True)
class HeartCandidate:
    """One localiser heart candidate of a slice.

    Attributes
    ----------
    centre
        (row, column) in the slice's source pixels.
    diameter
        Equivalent diameter of the heart (LV + myocardium), source pixels.
    score
        The localiser's confidence (summed heart probability); only ratios matter.
    aspect
        How many times wider (columns) than high (rows) the heart is, in source pixels.
    """

    centre: tuple[float, float]
    diameter: float
    score: float
    aspect: float = 1.0


@dataclass(frozen=True)
class ChainPoint:
    """Where a slice's heart is, as the stack says.

    Attributes
    ----------
    centre, diameter
        In the slice's own source pixels.
    candidate
        Index of the slice's candidate on the chain, or ``None`` when the point was
        interpolated (or extrapolated) from the chain's other slices.
    """

    centre: tuple[float, float]
    diameter: float
    candidate: int | None


def _pair_cost(a: HeartCandidate, b: HeartCandidate, shift_a: npt.NDArray[np.float64],
               shift_b: npt.NDArray[np.float64], gap: int) -> float:
    distance = float(np.hypot(*(np.add(b.centre, shift_b) - np.add(a.centre, shift_a))))
    scale = math.sqrt(a.diameter * b.diameter)
    size = math.log(b.diameter / a.diameter)
    return ((distance / (CENTRE_SD * scale)) ** 2 + (size / SIZE_SD) ** 2) / gap


def choose_chain(
    candidates: Sequence[Sequence[HeartCandidate]],
    offsets: Sequence[tuple[float, float]] | None = None,
    skip_cost: float = SKIP_COST,
) -> list[int | None]:
    """The candidate of each slice on the most consistent LV chain through the stack.

    The chain minimises the sum of (a) each chosen candidate's ``-log`` score relative to its
    slice's best candidate, (b) between consecutive chosen slices the squared centre shift (in
    :data:`CENTRE_SD` heart diameters) plus the squared log size change (in
    :data:`SIZE_SD`), divided by their slice gap, and (c) ``skip_cost`` per slice left out.

    Parameters
    ----------
    candidates
        Per slice, in stack order, its heart candidates (possibly none).
    offsets
        Per slice, its grid offset in the common frame
        (:func:`plugins.lib.stack_geometry.in_plane_offsets`); ``None`` for slices sharing
        one pixel grid.
    skip_cost
        Cost of a slice without a chosen candidate.

    Returns
    -------
    list of int or None
        Per slice, the index of its chosen candidate, or ``None``.
    """
    n = len(candidates)
    shifts = [np.zeros(2) if offsets is None else np.asarray(offsets[i], dtype=np.float64)
              for i in range(n)]
    nodes = [(i, k) for i in range(n) for k in range(len(candidates[i]))
             if candidates[i][k].score > 0.0 and candidates[i][k].diameter > 0.0]
    unary = {}
    for i, k in nodes:
        slice_best = max(c.score for c in candidates[i])
        unary[(i, k)] = -math.log(max(candidates[i][k].score / slice_best, MIN_RELATIVE_SCORE))
    # cost[(i, k)]: cheapest chain ending at candidate k of slice i (slices before skipped
    # or chained); back[(i, k)]: its predecessor.
    cost: dict[tuple[int, int], float] = {}
    back: dict[tuple[int, int], tuple[int, int] | None] = {}
    for i, k in nodes:
        here = candidates[i][k]
        best, link = skip_cost * i, None
        for (j, m), previous in cost.items():
            if j >= i:
                continue
            gap = i - j
            total = (previous + skip_cost * (gap - 1)
                     + _pair_cost(candidates[j][m], here, shifts[j], shifts[i], gap))
            if total < best:
                best, link = total, (j, m)
        cost[(i, k)] = best + unary[(i, k)]
        back[(i, k)] = link
    if not cost:
        return [None] * n
    end = min(cost, key=lambda node: cost[node] + skip_cost * (n - 1 - node[0]))
    if cost[end] + skip_cost * (n - 1 - end[0]) >= skip_cost * n:
        return [None] * n
    chosen: list[int | None] = [None] * n
    node: tuple[int, int] | None = end
    while node is not None:
        chosen[node[0]] = node[1]
        node = back[node]
    return chosen


def fill_chain(
    candidates: Sequence[Sequence[HeartCandidate]],
    chosen: Sequence[int | None],
    offsets: Sequence[tuple[float, float]] | None = None,
) -> list[ChainPoint | None]:
    """Every slice's heart on the chain: its chosen candidate, or centre and diameter
    interpolated linearly (in slice order, in the common frame; log diameter) between the
    nearest chosen slices, or copied from the nearest one at the ends.  All ``None`` when
    no slice has a chosen candidate."""
    n = len(candidates)
    shifts = [np.zeros(2) if offsets is None else np.asarray(offsets[i], dtype=np.float64)
              for i in range(n)]
    known = [i for i in range(n) if chosen[i] is not None]
    if not known:
        return [None] * n
    points: list[ChainPoint | None] = []
    common = {}
    for i in known:
        k = chosen[i]
        assert k is not None
        c = candidates[i][k]
        common[i] = (np.add(c.centre, shifts[i]), math.log(c.diameter))
    for i in range(n):
        k = chosen[i]
        if k is not None:
            c = candidates[i][k]
            points.append(ChainPoint(c.centre, c.diameter, k))
            continue
        below = [j for j in known if j < i]
        above = [j for j in known if j > i]
        if below and above:
            j, m = below[-1], above[0]
            w = (i - j) / (m - j)
            centre = (1.0 - w) * common[j][0] + w * common[m][0]
            log_d = (1.0 - w) * common[j][1] + w * common[m][1]
        else:
            centre, log_d = common[below[-1] if below else above[0]]
        local = np.asarray(centre) - shifts[i]
        points.append(ChainPoint((float(local[0]), float(local[1])), math.exp(log_d), None))
    return points


def locate_stack(
    candidates: Sequence[Sequence[HeartCandidate]],
    offsets: Sequence[tuple[float, float]] | None = None,
    skip_cost: float = SKIP_COST,
) -> list[ChainPoint | None]:
    """:func:`choose_chain`, then :func:`fill_chain`: the heart of every slice of a stack."""
    return fill_chain(candidates, choose_chain(candidates, offsets, skip_cost), offsets)
