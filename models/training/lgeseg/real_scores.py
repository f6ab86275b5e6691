"""Scores of an LGE segmentation of a real slice against expert labels.

Shared by the real-image evaluation (:mod:`models.evaluation.lgeseg.evaluate_real`) and the
site fine-tuning's cross-validation (:mod:`models.training.lgeseg.finetune`): myocardium and
scar Dice, pixel counts, the wall layer of every scar lesion and the analysis' n-SD scar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from models.runtime.segmentation import mask_dice
from plugins.api import Label, SegmentationOutput
from plugins.lge.analysis import MAX_UNCERTAINTY
from plugins.lge.quantify import (
    DEFAULT_N_SD,
    MYOCARDIAL_LABELS,
    lesions,
    nsd_scar,
    remote_reference,
)

__all__ = [
    "ASSUMED_SPACING_MM",
    "EMIDEC_MYO",
    "EMIDEC_SCAR",
    "OUR_MYO",
    "OUR_SCAR",
    "RealSlice",
    "nsd_pixels",
    "score_output",
]

ASSUMED_SPACING_MM: Final = 1.25
"""Pixel spacing given for the EMIDEC PNGs (their README: roughly 1.1-1.4 mm per pixel)."""
EMIDEC_MYO: Final = (2, 3, 4)
EMIDEC_SCAR: Final = (3, 4)
OUR_MYO: Final = (2, 4, 5)
OUR_SCAR: Final = (4, 5)

@dataclass(frozen=True)
class RealSlice:
    """Scores of one real slice."""

    case: str
    slice_index: int
    segmented: bool
    reason: str | None
    myo_dice: float
    scar_dice: float | None
    uncertainty: float | None
    flagged: bool
    true_myo_px: int
    true_scar_px: int
    pred_myo_px: int
    pred_scar_px: int
    inference_ms: float | None
    pred_lesions: tuple[tuple[str, float], ...] = ()
    """(wall layer, area in pixels) of each network scar lesion."""
    true_lesions: tuple[tuple[str, float], ...] = ()
    """(wall layer, area in pixels) of each expert scar lesion."""
    pred_nsd_px: int = 0
    """Myocardium pixels above the analysis' n-SD threshold (remote reference)."""


def _layers(labels: npt.NDArray[np.uint8], myo: Sequence[int], scar: Sequence[int],
            blood: int) -> tuple[tuple[str, float], ...]:
    """(layer, area in pixels) of the scar lesions of a label image, as the analysis finds
    them (square pixels: relative wall depth does not depend on their size)."""
    found = lesions(0, np.isin(labels, scar), np.isin(labels, myo), labels == blood, (1.0, 1.0))
    return tuple((str(lesion.layer), round(lesion.area_mm2, 2)) for lesion in found)


def nsd_pixels(image: npt.NDArray[np.float32], labels: npt.NDArray[np.uint8],
               spacing_mm: float, n_sd: float = DEFAULT_N_SD) -> int:
    """Scar pixels (MVO included) by the analysis' n-SD method on the segmenter's
    myocardium: remote reference of the slice's own labels, n-SD threshold, network MVO
    added (``plugins.lge.analysis``; no remote borrowed from other slices)."""
    spacing = (spacing_mm, spacing_mm)
    myocardium = np.isin(labels, MYOCARDIAL_LABELS)
    remote = remote_reference(image, labels, spacing)
    if remote is None or not myocardium.any():
        return 0
    scar, _ = nsd_scar(image, myocardium, labels == Label.LV_BLOOD_POOL, remote, n_sd,
                       spacing)
    return int((scar | (labels == Label.MVO)).sum())


def score_output(output: SegmentationOutput, case: str, index: int,
                 truth: npt.NDArray[np.uint8], myo_truth: Sequence[int] = EMIDEC_MYO,
                 scar_truth: Sequence[int] = EMIDEC_SCAR,
                 image: npt.NDArray[np.float32] | None = None,
                 spacing_mm: float = ASSUMED_SPACING_MM) -> RealSlice:
    """Score one slice's segmentation against its labels (and, given the ``image``, its
    n-SD scar, :func:`nsd_pixels`)."""
    labels = np.asarray(output.labels)
    pred_myo = np.isin(labels, OUR_MYO)
    pred_scar = np.isin(labels, OUR_SCAR)
    segmented = output.reason is None and bool(pred_myo.any())
    true_myo = np.isin(truth, myo_truth)
    true_scar = np.isin(truth, scar_truth)
    flagged = (not segmented) or (output.uncertainty is not None
                                  and output.uncertainty > MAX_UNCERTAINTY)
    has_scar = bool(true_scar.any() or pred_scar.any())
    ms = output.details.get("inference_ms") if output.details else None
    return RealSlice(
        case=case, slice_index=index, segmented=segmented, reason=output.reason,
        myo_dice=round(mask_dice(pred_myo, true_myo) if segmented else 0.0, 4),
        scar_dice=round(mask_dice(pred_scar, true_scar), 4) if has_scar else None,
        uncertainty=None if output.uncertainty is None else round(float(output.uncertainty), 3),
        flagged=flagged, true_myo_px=int(true_myo.sum()), true_scar_px=int(true_scar.sum()),
        pred_myo_px=int(pred_myo.sum()) if segmented else 0,
        pred_scar_px=int(pred_scar.sum()) if segmented else 0,
        inference_ms=None if ms is None else float(ms),
        pred_lesions=_layers(labels, OUR_MYO, OUR_SCAR, int(Label.LV_BLOOD_POOL))
        if segmented else (),
        true_lesions=_layers(truth, myo_truth, scar_truth, 1) if scar_truth else (),
        pred_nsd_px=nsd_pixels(image, labels, spacing_mm) if segmented and image is not None
        else 0,
    )
