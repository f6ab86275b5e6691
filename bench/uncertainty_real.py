"""Does the LGE network's per-pixel uncertainty point at its errors?  EMIDEC dev, measured.

``python -m bench.uncertainty_real [--data DIR] [--json PATH]``

Per EMIDEC development case (``../shared/data/emidec-dev``, 20 real LGE cases, CC BY-NC-SA
4.0, Lalande et al., Data 2020;5(4):89; measuring and choosing only, nothing trains) the
slices are segmented as one stack by the committed two-stage network (assumed 1.25 mm
pixels, as :mod:`models.evaluation.lgeseg.evaluate_real`), and its myocardium and scar probabilities
(:attr:`plugins.api.SegmentationOutput.probabilities`) are compared with the expert labels:

* reliability: per probability decile, the mean probability and the share of pixels the
  expert labelled (a calibrated network has both equal);
* the uncertain band (binary entropy >= :data:`~plugins.lib.uncertainty.UNCERTAIN_ENTROPY_BITS`):
  the error rate of the thresholded probability inside and outside it, and the share of all
  wrong pixels it holds;
* per slice: :func:`~plugins.lib.uncertainty.uncertain_area_ratio` against myocardium Dice
  (Spearman), and the mean Dice of the slices above and below thresholds of the ratio (how
  :data:`~plugins.lib.uncertainty.MAX_UNCERTAIN_AREA_RATIO` was chosen).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from models.evaluation.lgeseg.evaluate_real import DEFAULT_DATA, load_emidec
from models.training.lgeseg.real_scores import ASSUMED_SPACING_MM, EMIDEC_MYO, EMIDEC_SCAR, OUR_MYO
from plugins.api import Label
from plugins.lge.segmenter import LgeContrast
from plugins.lib.uncertainty import (
    UNCERTAIN_ENTROPY_BITS,
    binary_entropy,
    uncertain_area_ratio,
)

logger = logging.getLogger(__name__)

RATIO_THRESHOLDS = (0.5, 0.75, 1.0, 1.25, 1.5)
DECILES = np.linspace(0.0, 1.0, 11)


class _Tally:
    """Pixel counts of one region over every slice."""

    def __init__(self) -> None:
        self.count = np.zeros(10)
        self.labelled = np.zeros(10)
        self.probability = np.zeros(10)
        self.wrong_in_band = self.in_band = self.wrong_outside = self.outside = 0

    def add(self, p: npt.NDArray[np.float32], truth: npt.NDArray[np.bool_]) -> None:
        bins = np.clip(np.digitize(p, DECILES) - 1, 0, 9)
        self.count += np.bincount(bins.ravel(), minlength=10)
        self.labelled += np.bincount(bins.ravel(), weights=truth.ravel(), minlength=10)
        self.probability += np.bincount(bins.ravel(), weights=p.ravel(), minlength=10)
        band = binary_entropy(p) >= UNCERTAIN_ENTROPY_BITS
        wrong = (p >= 0.5) != truth
        self.wrong_in_band += int((band & wrong).sum())
        self.in_band += int(band.sum())
        self.wrong_outside += int((~band & wrong).sum())
        self.outside += int((~band).sum())

    def summary(self) -> dict[str, Any]:
        used = self.count > 0
        return {
            "reliability_mean_p_vs_labelled": [
                (round(float(p), 3), round(float(o), 3), int(n))
                for p, o, n in zip(self.probability[used] / self.count[used],
                                   self.labelled[used] / self.count[used],
                                   self.count[used], strict=True)
            ],
            "error_rate_in_band": round(self.wrong_in_band / max(self.in_band, 1), 4),
            "error_rate_outside_band": round(self.wrong_outside / max(self.outside, 1), 5),
            "wrong_pixels_in_band_share": round(
                self.wrong_in_band / max(self.wrong_in_band + self.wrong_outside, 1), 3),
            "band_pixels": self.in_band,
        }


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total


def measure(data: Path) -> dict[str, Any]:
    """Segment every EMIDEC dev case and compare the probabilities with the labels."""
    from models.runtime.lgeseg.site_weights import two_stage_segmenter

    segmenter = two_stage_segmenter(None)
    cases: dict[str, list[Any]] = defaultdict(list)
    for item in load_emidec(data / "emidec-dev"):
        cases[item[0]].append(item)
    tallies = {"myocardium": _Tally(), "scar": _Tally()}
    slices: list[dict[str, Any]] = []
    spacing = (ASSUMED_SPACING_MM, ASSUMED_SPACING_MM)
    for case in sorted(cases):
        stack = sorted(cases[case], key=lambda item: item[1])
        outputs = segmenter.segment_stack([item[2] for item in stack], [spacing] * len(stack),
                                          LgeContrast.MAGNITUDE)
        for output, (_, index, _, truth) in zip(outputs, stack, strict=True):
            true_myo, true_scar = np.isin(truth, EMIDEC_MYO), np.isin(truth, EMIDEC_SCAR)
            row: dict[str, Any] = {"case": case, "slice": index,
                                   "segmented": output.reason is None}
            if output.probabilities:
                tallies["myocardium"].add(output.probabilities[Label.MYOCARDIUM], true_myo)
                tallies["scar"].add(output.probabilities[Label.SCAR], true_scar)
                row["myocardium_dice"] = _dice(np.isin(output.labels, OUR_MYO), true_myo)
                row["uncertain_area_ratio"] = uncertain_area_ratio(output.probabilities,
                                                                   output.labels)
            slices.append(row)
        logger.info("%s: %d slices", case, len(stack))
    scored = [s for s in slices if s.get("uncertain_area_ratio") is not None]
    ratio = [s["uncertain_area_ratio"] for s in scored]
    dice = [s["myocardium_dice"] for s in scored]
    rho = stats.spearmanr(ratio, dice)
    by_threshold = {}
    for threshold in RATIO_THRESHOLDS:
        above = [s["myocardium_dice"] for s in scored if s["uncertain_area_ratio"] > threshold]
        rest = [s["myocardium_dice"] for s in scored if s["uncertain_area_ratio"] <= threshold]
        by_threshold[str(threshold)] = {
            "slices_above": len(above),
            "mean_dice_above": round(float(np.mean(above)), 3) if above else None,
            "mean_dice_at_or_below": round(float(np.mean(rest)), 3) if rest else None,
        }
    return {
        "cases": len(cases),
        "slices": len(slices),
        "segmented_slices": len(scored),
        "myocardium": tallies["myocardium"].summary(),
        "scar": tallies["scar"].summary(),
        "spearman_ratio_vs_dice": (round(float(rho.statistic), 3), float(rho.pvalue)),
        "ratio_quantiles_10_25_50_75_90": [round(float(q), 3) for q in
                                           np.quantile(ratio, [0.1, 0.25, 0.5, 0.75, 0.9])],
        "by_ratio_threshold": by_threshold,
        "per_slice": slices,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and write the JSON (and log the summary)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory holding emidec-dev/")
    parser.add_argument("--json", type=Path, default=Path("build/uncertainty_real.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.data / "emidec-dev" / "images").is_dir():
        logger.error("EMIDEC dev split not found under %s", args.data)
        return 1
    summary = measure(args.data)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1))
    logger.info("%s", json.dumps({k: v for k, v in summary.items() if k != "per_slice"},
                                 indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
