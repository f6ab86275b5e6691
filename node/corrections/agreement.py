"""Agreement between the node's segmentation and a reader's correction of it.

A reader who corrects the node's SEG in a viewer (OHIF segmentation editing, 3D Slicer) and
stores the corrected SEG back sends the node a SEG on the same source images.  This module
holds the pure part: the masks of both SEGs per source image and segment, the agreement
figures, and their summary per scanner with the drift rule.  Reading, matching and recording
are in :mod:`node.corrections.intake`.

Figures of one correction (all computed over the source images either SEG labels):

``dice`` (by node segment label)
    Dice coefficient 2|A∩B| / (|A| + |B|) of the node's and the reader's mask; absent when
    both are empty.
``delta_t1_ms``
    mean of the stored T1 map over the reader's myocardium minus its mean over the node's
    myocardium (T1-map results only; both means from the same map and raw masks).
``delta_scar_percent``
    scar as a per cent of the myocardium (pixel counts) of the reader minus that of the node
    (LGE results only).

Drift rule (per scanner and segment): with at least ``2 * window`` corrections, the median
Dice of the latest ``window`` is below the median of all earlier ones by more than
``margin``.  Medians, so that one odd case does not raise it; ``window`` = 10 and ``margin`` =
0.05 are operational defaults to be tuned per site, not clinical thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Mask = npt.NDArray[np.bool_]
SegmentMasks = dict[str, Mask]
"""Mask of one segment on each source image, by SOP Instance UID (and frame, ``uid#n``)."""

DRIFT_WINDOW = 10
"""Latest corrections whose median Dice is compared with the earlier ones."""
DRIFT_MARGIN = 0.05
"""Drop of the median Dice (absolute) that counts as drift."""

MYOCARDIUM_ROLE = "myocardium"
SCAR_ROLE = "scar"


class CorrectionError(ValueError):
    """A SEG cannot be compared with the node's result; the message says why."""


def dice(a: Mask, b: Mask) -> float | None:
    """Return the Dice coefficient of two masks of one shape (None when both are empty)."""
    if a.shape != b.shape:
        raise CorrectionError(f"masks of shapes {a.shape} and {b.shape} cannot be compared")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def _stack(masks: SegmentMasks, keys: Sequence[str], shape: tuple[int, ...]) -> Mask:
    empty = np.zeros(shape, dtype=bool)
    return np.stack([masks.get(key, empty) for key in keys]) if keys else empty[None][:0]


def _shape(*segment_masks: SegmentMasks) -> tuple[int, ...]:
    shapes = {m.shape for masks in segment_masks for m in masks.values()}
    if len(shapes) > 1:
        raise CorrectionError(f"the SEG frames differ in size: {sorted(shapes)}")
    return shapes.pop() if shapes else (0, 0)


@dataclass(frozen=True)
class Agreement:
    """The agreement of one correction with the node's result.

    Attributes
    ----------
    dice
        By node segment label; segments empty in both SEGs are absent.
    delta_t1_ms
        Reader minus node mean T1 over the myocardium, or None.
    delta_scar_percent
        Reader minus node scar per cent of the myocardium, or None.
    images
        Number of source images compared.
    """

    dice: dict[str, float]
    delta_t1_ms: float | None
    delta_scar_percent: float | None
    images: int

    def as_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready mapping."""
        return {"dice": self.dice, "delta_t1_ms": self.delta_t1_ms,
                "delta_scar_percent": self.delta_scar_percent, "images": self.images}


def agreement(
    node: Mapping[str, SegmentMasks],
    reader: Mapping[str, SegmentMasks],
    roles: Mapping[str, str],
    t1_maps: Mapping[str, npt.NDArray[np.floating[Any]]] | None = None,
) -> Agreement:
    """Compare the node's segments with the reader's.

    Parameters
    ----------
    node, reader
        Masks by segment (node segment label; the reader's segments already matched to
        them) and source image.
    roles
        Node segment label of the ``"myocardium"`` and ``"scar"`` roles, where present.
    t1_maps
        T1 in ms of each source image (T1-map results), for ``delta_t1_ms``.

    Returns
    -------
    Agreement

    Raises
    ------
    CorrectionError
        If the masks (or maps) of one image differ in shape.
    """
    images = sorted({k for masks in (*node.values(), *reader.values()) for k in masks})
    shape = _shape(*node.values(), *reader.values())
    figures: dict[str, float] = {}
    for label in node:
        value = dice(_stack(node[label], images, shape),
                     _stack(reader.get(label, {}), images, shape))
        if value is not None:
            figures[label] = value
    myo = roles.get(MYOCARDIUM_ROLE)
    scar = roles.get(SCAR_ROLE)
    delta_t1 = None
    if t1_maps is not None and myo is not None:
        maps = [t1_maps[k] for k in images if k in t1_maps]
        if len(maps) == len(images) and images:
            if {m.shape for m in maps} != {shape}:
                raise CorrectionError("the T1 map and the SEG frames differ in size")
            values = np.stack(maps).astype(float)
            ours = _stack(node[myo], images, shape)
            theirs = _stack(reader.get(myo, {}), images, shape)
            if ours.any() and theirs.any():
                delta_t1 = float(values[theirs].mean() - values[ours].mean())
    delta_scar = None
    if myo is not None and scar is not None:
        percents = []
        for masks in (node, reader):
            wall = int(_stack(masks.get(myo, {}), images, shape).sum())
            lesion = int(_stack(masks.get(scar, {}), images, shape).sum())
            percents.append(100.0 * lesion / wall if wall else math.nan)
        if not any(math.isnan(p) for p in percents):
            delta_scar = percents[1] - percents[0]
    return Agreement(figures, delta_t1, delta_scar, len(images))


@dataclass
class ScannerAgreement:
    """The corrections of the results of one scanner, oldest first.

    Attributes
    ----------
    station, calling_ae
        StationName of the source images and the AE title that sent them.
    count
        Corrections recorded.
    dice
        Dice values by node segment label, oldest first.
    delta_t1_ms, delta_scar_percent
        The differences recorded, oldest first.
    drift
        By segment label: (median of the earlier, median of the latest window) where the
        drift rule fires.
    """

    station: str
    calling_ae: str
    count: int = 0
    dice: dict[str, list[float]] = field(default_factory=dict)
    delta_t1_ms: list[float] = field(default_factory=list)
    delta_scar_percent: list[float] = field(default_factory=list)
    drift: dict[str, tuple[float, float]] = field(default_factory=dict)


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def drift(
    values: Sequence[float], window: int = DRIFT_WINDOW, margin: float = DRIFT_MARGIN
) -> tuple[float, float] | None:
    """Apply the drift rule to Dice values in time order.

    Returns
    -------
    tuple of float or None
        (median of the earlier values, median of the latest ``window``) when the latter is
        lower by more than ``margin`` and there are at least ``2 * window`` values; else None.
    """
    if window < 1 or len(values) < 2 * window:
        return None
    earlier, latest = _median(values[:-window]), _median(values[-window:])
    return (earlier, latest) if earlier - latest > margin else None


def summarise(
    records: Sequence[Mapping[str, Any]],
    window: int = DRIFT_WINDOW,
    margin: float = DRIFT_MARGIN,
) -> dict[tuple[str, str], ScannerAgreement]:
    """Group correction records per scanner and apply the drift rule.

    Parameters
    ----------
    records
        Oldest first, each with ``station``, ``calling_ae`` and ``agreement``
        (:meth:`Agreement.as_json`).
    window, margin
        Parameters of the drift rule (:func:`drift`).
    """
    scanners: dict[tuple[str, str], ScannerAgreement] = {}
    for record in records:
        key = (str(record.get("station") or ""), str(record.get("calling_ae") or ""))
        scanner = scanners.setdefault(key, ScannerAgreement(*key))
        scanner.count += 1
        figures = record.get("agreement") or {}
        for label, value in (figures.get("dice") or {}).items():
            scanner.dice.setdefault(label, []).append(float(value))
        if figures.get("delta_t1_ms") is not None:
            scanner.delta_t1_ms.append(float(figures["delta_t1_ms"]))
        if figures.get("delta_scar_percent") is not None:
            scanner.delta_scar_percent.append(float(figures["delta_scar_percent"]))
    for scanner in scanners.values():
        for label, values in scanner.dice.items():
            fired = drift(values, window, margin)
            if fired is not None:
                scanner.drift[label] = fired
    return scanners
