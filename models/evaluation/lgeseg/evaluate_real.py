"""Real-image evaluation of an LGE segmenter: EMIDEC development split and Sunnybrook cine.

``python -m models.evaluation.lgeseg.evaluate_real [--segmenter two-stage|one-stage|cascade] [--json
PATH] [--locator PT] [--segmenter-weights PT] [--max-candidates N] [--scar-rule 3sd|none|...]``

- **EMIDEC dev split** (``../shared/data/emidec-dev``; 20 real LGE cases, CC BY-NC-SA 4.0,
  Lalande et al., Data 2020;5(4):89): 8-bit PNG slices without pixel spacing; every slice is
  given to ``LgeSegmenter.segment`` as the LGE analysis gives a frame (magnitude contrast, an
  assumed spacing of :data:`ASSUMED_SPACING_MM`, which only the post-processing limits in mm
  use).  Reported: slices segmented (no rejection reason), myocardium Dice (a rejected slice
  counts 0), scar Dice (slices with scar in the truth or the output), per case the per cent
  scar of the myocardium (network labels: scar + MVO over myocardium + scar + MVO, summed
  over the case's segmented slices, as the analysis' network method; truth over all slices)
  with least-squares slope, intercept, Pearson r and mean bias, and normal-vs-infarct case
  accuracy with the analysis' own presence rule (``plugins.lge.analysis.PRESENCE_PERCENT`` =
  1 % scar; fixed before any real image was seen, not chosen on this split).
- **Honest failure** (issue 14 item 7): a slice is *failed* when its myocardium Dice is below
  :data:`FAILED_DICE` (rejected slices included); *flagged* when the segmenter rejected it or
  its uncertainty exceeds the analysis' ``MAX_UNCERTAINTY``.  Counted: failed and flagged,
  failed but not flagged (silent failures), flagged but fine.
- **Infarct call** (issue 15): per case the image-only call of
  :func:`plugins.lge.infarct.assess_infarct` (wall layer of each lesion from the network
  labels; no AHA segments, since the PNGs have no geometry), scored as accuracy (an
  indeterminate call counts as wrong), sensitivity and specificity; the same rule on the
  expert labels measures the rule apart from the segmentation.
- **Sunnybrook** (CC0 real cine with LV / myocardium masks): slices segmented and
  myocardium Dice (cine, not LGE: a check of anatomy, not of scar).

The split is for measuring and choosing only; nothing here trains.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.evaluation.lgeseg.evaluate import regression
from models.training.lgeseg.real_scores import (
    ASSUMED_SPACING_MM,
    EMIDEC_MYO,
    EMIDEC_SCAR,
    RealSlice,
    score_output,
)
from plugins.lge.analysis import MAX_UNCERTAINTY, PRESENCE_PERCENT
from plugins.lge.infarct import InfarctCall, assess_infarct
from plugins.lge.quantify import (
    DEFAULT_N_SD,
    Layer,
    Lesion,
)
from plugins.lge.segmenter import LgeContrast, LgeSegmenter

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DATA",
    "FAILED_DICE",
    "evaluate_emidec",
    "evaluate_sunnybrook",
    "load_emidec",
    "summarise_emidec",
]

DEFAULT_DATA: Final = Path(__file__).resolve().parents[4] / "shared" / "data"
FAILED_DICE: Final = 0.5
"""Myocardium Dice below which a slice counts as failed."""
_NAME = re.compile(r"(Case_[NP]\d+)_slice(\d+)\.png$")


def load_emidec(root: Path) -> list[tuple[str, int, npt.NDArray[np.float32],
                                          npt.NDArray[np.uint8]]]:
    """(case, slice index, image, labels) of every EMIDEC PNG pair, sorted."""
    from PIL import Image

    items = []
    for path in sorted((root / "images").glob("Case_*.png")):
        match = _NAME.search(path.name)
        if match is None:
            continue
        image = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        labels = np.asarray(Image.open(root / "labels" / path.name), dtype=np.uint8)
        items.append((match.group(1), int(match.group(2)), image, labels))
    return items


def score_slice(segmenter: LgeSegmenter, case: str, index: int,
                image: npt.NDArray[np.float32], truth: npt.NDArray[np.uint8],
                spacing_mm: float, myo_truth: Sequence[int] = EMIDEC_MYO,
                scar_truth: Sequence[int] = EMIDEC_SCAR) -> RealSlice:
    """Segment one slice as the LGE analysis does and score it against its labels."""
    output = segmenter.segment(image, (spacing_mm, spacing_mm), LgeContrast.MAGNITUDE)
    return score_output(output, case, index, truth, myo_truth, scar_truth, image,
                        spacing_mm)


def score_cases(segmenter: LgeSegmenter,
                items: Sequence[tuple[str, int, npt.NDArray[np.float32], npt.NDArray[np.uint8],
                                      float]],
                per_stack: bool, myo_truth: Sequence[int] = EMIDEC_MYO,
                scar_truth: Sequence[int] = EMIDEC_SCAR) -> list[RealSlice]:
    """Segment and score (case, index, image, labels, spacing) items: slice by slice, or,
    with ``per_stack`` and a segmenter that has ``segment_stack``, each case as one stack
    in index order (no slice geometry: the slices of a case share one pixel grid)."""
    segment_stack = getattr(segmenter, "segment_stack", None)
    if not per_stack or segment_stack is None:
        return [score_slice(segmenter, case, index, image, labels, spacing, myo_truth,
                            scar_truth)
                for case, index, image, labels, spacing in items]
    cases: dict[str, list[tuple[str, int, npt.NDArray[np.float32], npt.NDArray[np.uint8],
                                float]]] = defaultdict(list)
    for item in items:
        cases[item[0]].append(item)
    scored: list[RealSlice] = []
    for case in cases:
        stack = sorted(cases[case], key=lambda item: item[1])
        outputs = segment_stack([item[2] for item in stack],
                                [(item[4], item[4]) for item in stack], LgeContrast.MAGNITUDE)
        scored.extend(score_output(output, case, index, labels, myo_truth, scar_truth, image,
                                   spacing)
                      for output, (_, index, image, labels, spacing) in zip(outputs, stack,
                                                                            strict=True))
    return scored


def evaluate_emidec(segmenter: LgeSegmenter, root: Path,
                    spacing_mm: float = ASSUMED_SPACING_MM,
                    per_stack: bool = True) -> list[RealSlice]:
    """Every EMIDEC slice segmented (per case stack when ``per_stack``) and scored."""
    return score_cases(segmenter, [(case, index, image, labels, spacing_mm)
                                   for case, index, image, labels in load_emidec(root)],
                       per_stack)


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def case_call(rows: Sequence[RealSlice], *, truth: bool = False) -> InfarctCall:
    """The image-only infarct call of one case from its slices (network or expert labels)."""
    # Areas in pixels and a slab of 1000 "units": volumes in pixel-slabs, the same for every
    # slice, so the per cent of the myocardium the call uses is exact.
    found = [Lesion(r.slice_index, area, Layer(layer), {}, None, False)
             for r in rows for layer, area in (r.true_lesions if truth else r.pred_lesions)]
    return assess_infarct(
        found, slab_mm=1000.0,
        myocardium_volume_ml=float(sum(r.true_myo_px if truth else r.pred_myo_px for r in rows)),
        enhanced_volume_ml=float(sum(r.true_scar_px if truth else r.pred_scar_px for r in rows)),
        presence_percent=PRESENCE_PERCENT, slices_analysed=sum(
            truth or r.segmented for r in rows),
        slices_not_segmented=0 if truth else sum(not r.segmented for r in rows),
    ).call


def call_scores(cases: Sequence[tuple[bool, InfarctCall]]) -> dict[str, Any]:
    """Accuracy, sensitivity, specificity (indeterminate counts as wrong) and coverage."""
    infarcts = [c for truth, c in cases if truth]
    normals = [c for truth, c in cases if not truth]
    right = sum(c is InfarctCall.PRESENT for c in infarcts) + sum(
        c is InfarctCall.ABSENT for c in normals)
    decided = [(t, c) for t, c in cases if c is not InfarctCall.INDETERMINATE]
    return {
        "accuracy": round(right / len(cases), 4) if cases else None,
        "sensitivity": round(sum(c is InfarctCall.PRESENT for c in infarcts) / len(infarcts), 4)
        if infarcts else None,
        "specificity": round(sum(c is InfarctCall.ABSENT for c in normals) / len(normals), 4)
        if normals else None,
        "indeterminate": len(cases) - len(decided),
        "accuracy_of_decided": round(sum((c is InfarctCall.PRESENT) == t for t, c in decided)
                                     / len(decided), 4) if decided else None,
    }


def summarise_emidec(slices: Sequence[RealSlice]) -> dict[str, Any]:
    """Slice, case and failure-flag figures of the EMIDEC evaluation."""
    cases: dict[str, list[RealSlice]] = defaultdict(list)
    for item in slices:
        cases[item.case].append(item)
    per_case: list[dict[str, Any]] = []
    for case, rows in sorted(cases.items()):
        true_pct = 100.0 * sum(r.true_scar_px for r in rows) / max(
            sum(r.true_myo_px for r in rows), 1)
        pred_myo = sum(r.pred_myo_px for r in rows)
        pred_pct = 100.0 * sum(r.pred_scar_px for r in rows) / pred_myo if pred_myo else 0.0
        nsd_pct = 100.0 * sum(r.pred_nsd_px for r in rows) / pred_myo if pred_myo else 0.0
        per_case.append({
            "case": case,
            "infarct": case.startswith("Case_P"),
            "slices": len(rows),
            "segmented": sum(r.segmented for r in rows),
            "myo_dice": _mean([r.myo_dice for r in rows]),
            "true_scar_percent": round(true_pct, 2),
            "predicted_scar_percent": round(pred_pct, 2),
            "predicted_infarct": pred_pct >= PRESENCE_PERCENT,
            "infarct_call": str(case_call(rows)),
            "infarct_call_on_expert_labels": str(case_call(rows, truth=True)),
            "nsd_scar_percent": round(nsd_pct, 2),
            "nsd_infarct": nsd_pct >= PRESENCE_PERCENT,
        })
    failed = [not (r.myo_dice >= FAILED_DICE) for r in slices]
    flagged = [r.flagged for r in slices]
    scar_dices = [r.scar_dice for r in slices if r.scar_dice is not None]
    timings = [r.inference_ms for r in slices if r.inference_ms is not None]
    fit = regression([c["true_scar_percent"] for c in per_case],
                     [c["predicted_scar_percent"] for c in per_case])
    return {
        "slices": len(slices),
        "segmented": sum(r.segmented for r in slices),
        "segmented_fraction": round(sum(r.segmented for r in slices) / max(len(slices), 1), 4),
        "myo_dice_mean": _mean([r.myo_dice for r in slices]),
        "myo_dice_median": round(float(np.median([r.myo_dice for r in slices])), 4)
        if slices else None,
        "myo_dice_segmented_mean": _mean([r.myo_dice for r in slices if r.segmented]),
        "scar_dice_mean": _mean([d for d in scar_dices if d is not None]),
        "scar_dice_slices": len(scar_dices),
        "scar_percent_fit": fit,
        "case_accuracy": round(float(np.mean([c["infarct"] == c["predicted_infarct"]
                                              for c in per_case])), 4) if per_case else None,
        "nsd_scar_percent_fit": regression([c["true_scar_percent"] for c in per_case],
                                           [c["nsd_scar_percent"] for c in per_case]),
        "nsd_case_accuracy": round(float(np.mean([c["infarct"] == c["nsd_infarct"]
                                                  for c in per_case])), 4) if per_case else None,
        "nsd_rule": f"analysis n-SD, n = {DEFAULT_N_SD:g} (plugins.lge.quantify.DEFAULT_N_SD)",
        "case_rule": f"infarct if network %scar >= {PRESENCE_PERCENT:g} % "
                     "(plugins.lge.analysis.PRESENCE_PERCENT; not chosen on this split)",
        "infarct_call": call_scores([(c["infarct"], InfarctCall(c["infarct_call"]))
                                     for c in per_case]),
        "infarct_call_on_expert_labels": call_scores([
            (c["infarct"], InfarctCall(c["infarct_call_on_expert_labels"])) for c in per_case]),
        "failure": {
            "failed_below_dice": FAILED_DICE,
            "flag_rule": f"rejected, or uncertainty > {MAX_UNCERTAINTY}",
            "failed": int(sum(failed)),
            "failed_flagged": int(sum(f and g for f, g in zip(failed, flagged, strict=True))),
            "failed_silent": int(sum(f and not g for f, g in zip(failed, flagged,
                                                                 strict=True))),
            "flagged": int(sum(flagged)),
            "flagged_but_fine": int(sum(g and not f for f, g in zip(failed, flagged,
                                                                    strict=True))),
        },
        "inference_ms_mean": _mean(timings),
        "cases": per_case,
    }


def evaluate_sunnybrook(segmenter: LgeSegmenter, npz: Path,
                        per_stack: bool = True) -> dict[str, Any]:
    """Slices segmented and myocardium Dice on the Sunnybrook cine slices (each case's
    slices one stack when ``per_stack``)."""
    data = np.load(npz)
    rows = score_cases(
        segmenter,
        [(str(case), k, image.astype(np.float32), labels, float(spacing))
         for k, (image, labels, spacing, case) in enumerate(zip(
             data["images"], data["labels"], data["spacing_mm"], data["case"], strict=True))],
        per_stack, myo_truth=(2,), scar_truth=())
    return {
        "slices": len(rows),
        "segmented": sum(r.segmented for r in rows),
        "myo_dice_mean": _mean([r.myo_dice for r in rows]),
        "myo_dice_segmented_mean": _mean([r.myo_dice for r in rows if r.segmented]),
    }


def make_segmenter(name: str, **two_stage: Any) -> LgeSegmenter:
    """``one-stage`` (the committed 1.x U-Net), ``two-stage`` (sim-to-real) or ``cascade``
    (:mod:`models.runtime.lgeseg.cascade`: the first where it is sure of the stack, else the second)
    segmenter; ``two_stage`` are keyword arguments of
    :class:`models.runtime.lgeseg.two_stage.TwoStageLgeSegmenter`."""
    from models.runtime.lgeseg.segmenter import UNetLgeSegmenter

    if name == "one-stage":
        return UNetLgeSegmenter()
    from models.runtime.lgeseg.two_stage import TwoStageLgeSegmenter

    if name == "cascade":
        from models.runtime.lgeseg.cascade import CascadeLgeSegmenter

        return CascadeLgeSegmenter(UNetLgeSegmenter(), TwoStageLgeSegmenter(**two_stage))
    return TwoStageLgeSegmenter(**two_stage)


def table(summary: dict[str, Any]) -> str:
    """Markdown row of the headline figures."""
    e, fit, f = summary["emidec"], summary["emidec"]["scar_percent_fit"], \
        summary["emidec"]["failure"]
    s = summary.get("sunnybrook") or {}
    return (
        "| segmenter | slices segmented | myo Dice | scar Dice | %scar r | slope | bias | "
        "case acc. | n-SD %scar r / case acc. | failed (flagged / silent) | flagged but fine | "
        "Sunnybrook seg. / Dice |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {summary['segmenter']} | {e['segmented']}/{e['slices']} | {e['myo_dice_mean']} | "
        f"{e['scar_dice_mean']} | {fit.get('r')} | {fit.get('slope')} | "
        f"{fit.get('bias_percent')} | "
        f"{e['case_accuracy']} | {e['nsd_scar_percent_fit'].get('r')} / "
        f"{e['nsd_case_accuracy']} | {f['failed']} ({f['failed_flagged']} / {f['failed_silent']})"
        f" | {f['flagged_but_fine']} | {s.get('segmented')}/{s.get('slices')} / "
        f"{s.get('myo_dice_mean')} |")


def main(argv: list[str] | None = None) -> None:
    """Command line: evaluate one segmenter on the real data and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory holding emidec-dev/ and sunnybrook/")
    parser.add_argument("--segmenter", choices=("two-stage", "one-stage", "cascade"),
                        default="two-stage")
    parser.add_argument("--spacing", type=float, default=ASSUMED_SPACING_MM)
    parser.add_argument("--locator", type=Path, default=None,
                        help="two-stage localiser weights (default: committed)")
    parser.add_argument("--segmenter-weights", type=Path, default=None,
                        help="two-stage segmenter weights (default: committed)")
    parser.add_argument("--max-candidates", type=int, default=None)
    parser.add_argument("--scar-rule", default=None,
                        help="two-stage scar confirmation: 2sd, 3sd, 5sd, fwhm or none")
    parser.add_argument("--localisation", choices=("stack", "slice"), default="stack",
                        help="two-stage: heart localised per case stack (default) or per slice")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options: dict[str, Any] = {"locator": args.locator, "segmenter": args.segmenter_weights}
    if args.max_candidates is not None:
        options["max_candidates"] = args.max_candidates
    if args.scar_rule is not None:
        options["scar_rule"] = None if args.scar_rule == "none" else args.scar_rule
    segmenter = make_segmenter(args.segmenter, **options)
    emidec = args.data / "emidec-dev"
    if not (emidec / "images").is_dir():
        raise SystemExit(f"EMIDEC dev split not found under {emidec}")
    per_stack = args.localisation == "stack"
    slices = evaluate_emidec(segmenter, emidec, args.spacing, per_stack)
    summary: dict[str, Any] = {
        "segmenter": f"{segmenter.name} {segmenter.version}",
        "weights_sha256": segmenter.weights_sha256,
        "assumed_spacing_mm": args.spacing,
        "localisation": args.localisation,
        "emidec": summarise_emidec(slices),
        "emidec_slices": [asdict(s) for s in slices],
    }
    npz = args.data / "sunnybrook" / "sunnybrook_lv_myo_subset.npz"
    summary["sunnybrook"] = evaluate_sunnybrook(segmenter, npz, per_stack) if npz.exists() else None
    logger.info("%s", table(summary))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
