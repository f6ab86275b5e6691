"""Evaluate the LGE U-Net on held-out phantom stacks.

``python -m models.evaluation.lgeseg.evaluate``.

The held-out stacks (:func:`models.training.lgeseg.data.eval_stack`, seeds from
:data:`~models.training.lgeseg.data.EVAL_SEED_START`, never used in training or checkpoint
selection) have 8-12 slices from base to apex; every block of 32 seeds holds every scar
pattern (no scar included) at 1.5 T and 3 T in PSIR and in magnitude contrast.  Each image
is handed to :meth:`UNetLgeSegmenter.segment` as a DICOM loader would: unchanged, with
Siemens' +4096 PSIR offset, or scaled (seed % 3), so the offset / scale invariance is
exercised.

Per slice: myocardium Dice (myocardium = non-scarred + scar + MVO) and LV Dice against the
exact phantom labels on the source pixel grid; scar Dice over the slices where truth or
prediction has scar.  Rejected slices count as Dice 0 and contribute no myocardium.  Per
stack: %scar = scar (MVO included) / myocardium, areas summed over the slices (equal slice
spacing, so volumes), predicted against truth
(:func:`models.phantoms.lge.lge_case_truth`): least-squares slope, intercept, Pearson r,
bias and scar-presence (> 1 %) accuracy, by contrast, field and pattern.  Also an inference
benchmark (ms per slice, peak resident memory, one thread, fresh process).  Results go to
the weights' JSON under ``"evaluation"`` and are printed as Markdown tables.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.evaluation.benchmark import benchmark_segment, evaluation_parser, start_evaluation
from models.phantoms.lge import LgeSlice, lge_case_truth
from models.runtime.lgeseg.segmenter import DEFAULT_WEIGHTS as LGE_WEIGHTS
from models.runtime.lgeseg.segmenter import MYOCARDIAL, UNetLgeSegmenter
from models.training.lgeseg.data import EVAL_SEED_START, eval_stack
from plugins.api import Label
from plugins.lge.segmenter import LgeContrast

logger = logging.getLogger(__name__)

__all__ = [
    "SCAR_PRESENCE_PERCENT",
    "SliceScore",
    "StackScore",
    "benchmark",
    "evaluate_stacks",
    "loader_view",
    "regression",
    "summarise",
]

DEFAULT_STACKS: Final = 64
SCAR_PRESENCE_PERCENT: Final = 1.0
"""A stack "has scar" above this %scar."""
SIEMENS_PSIR_OFFSET: Final = 4096.0
INTENSITY_MAPPINGS: Final = ("plain", "siemens_offset", "scaled")
"""How the image reaches the segmenter, by seed % 3 (offset only for PSIR)."""


@dataclass
class SliceScore:
    """Outcome on one held-out slice."""

    seed: int
    index: int
    contrast: str
    field_strength_t: float
    level: str
    pattern: str
    spacing_mm: float
    segmented: bool
    myocardium_dice: float
    lv_dice: float
    scar_dice: float | None
    """``None`` when neither truth nor prediction has scar."""
    true_scar_mm2: float
    predicted_scar_mm2: float
    true_myocardium_mm2: float
    predicted_myocardium_mm2: float
    true_mvo_px: int
    mvo_dice: float | None
    uncertainty: float | None
    inference_ms: float


@dataclass
class StackScore:
    """%scar of one held-out stack."""

    seed: int
    contrast: str
    field_strength_t: float
    pattern: str
    mapping: str
    slices: int
    segmented: int
    true_scar_percent: float
    predicted_scar_percent: float


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 1.0


def loader_view(item: LgeSlice, seed: int) -> npt.NDArray[np.float32]:
    """The image as a DICOM loader would hand it over for this seed's intensity mapping."""
    mapping = INTENSITY_MAPPINGS[seed % len(INTENSITY_MAPPINGS)]
    image = item.image.astype(np.float32)
    if mapping == "siemens_offset" and item.contrast == "psir":
        return image + np.float32(SIEMENS_PSIR_OFFSET)
    if mapping == "scaled":
        return image * np.float32(3.1)
    return image


def evaluate_stacks(
    segmenter: UNetLgeSegmenter,
    n_stacks: int = DEFAULT_STACKS,
    seed_start: int = EVAL_SEED_START,
    mvo_segmenter: UNetLgeSegmenter | None = None,
    per_stack: bool = False,
) -> tuple[list[SliceScore], list[StackScore]]:
    """Score the segmenter on ``n_stacks`` held-out stacks.

    ``mvo_segmenter`` (the same weights with MVO output forced on) scores MVO on slices
    that have it, when the main segmenter merges MVO into scar.  With ``per_stack``, a
    segmenter that has ``segment_stack`` (:mod:`models.runtime.lgeseg.two_stage`) segments each
    stack at once (its slices share one pixel grid).
    """
    slice_scores: list[SliceScore] = []
    stack_scores: list[StackScore] = []
    for k in range(n_stacks):
        seed = seed_start + k
        stack = eval_stack(seed)
        truth = lge_case_truth(stack)
        pattern = str(truth["scar_pattern"])
        scar_total, myo_total, segmented = 0.0, 0.0, 0
        segment_stack = getattr(segmenter, "segment_stack", None) if per_stack else None
        outputs = None if segment_stack is None else segment_stack(
            [loader_view(item, seed) for item in stack], [item.pixel_spacing for item in stack],
            LgeContrast(str(stack[0].contrast)))
        for index, item in enumerate(stack):
            image = loader_view(item, seed)
            contrast = LgeContrast(str(item.contrast))
            output = (segmenter.segment(image, item.pixel_spacing, contrast) if outputs is None
                      else outputs[index])
            labels = output.labels
            area = item.pixel_spacing[0] * item.pixel_spacing[1]
            pred_myo, true_myo = np.isin(labels, MYOCARDIAL), np.isin(item.labels, MYOCARDIAL)
            scar_labels = (int(Label.SCAR), int(Label.MVO))
            pred_scar = np.isin(labels, scar_labels)
            true_scar = np.isin(item.labels, scar_labels)
            true_mvo = item.labels == Label.MVO
            mvo_dice = None
            if true_mvo.any():
                mvo_labels = labels
                if mvo_segmenter is not None:
                    mvo_labels = mvo_segmenter.segment(image, item.pixel_spacing,
                                                       contrast).labels
                mvo_dice = _dice(mvo_labels == Label.MVO, true_mvo)
            segmented += int(pred_myo.any())
            scar_total += float(pred_scar.sum()) * area
            myo_total += float(pred_myo.sum()) * area
            slice_scores.append(SliceScore(
                seed=seed, index=index, contrast=str(item.contrast),
                field_strength_t=item.field_strength_t, level=item.level, pattern=pattern,
                spacing_mm=float(np.mean(item.pixel_spacing)),
                segmented=bool(pred_myo.any()),
                myocardium_dice=_dice(pred_myo, true_myo) if true_myo.any() else float(
                    not pred_myo.any()),
                lv_dice=_dice(labels == Label.LV_BLOOD_POOL, item.labels == Label.LV_BLOOD_POOL),
                scar_dice=(_dice(pred_scar, true_scar) if (pred_scar.any() or true_scar.any())
                           else None),
                true_scar_mm2=float(true_scar.sum()) * area,
                predicted_scar_mm2=float(pred_scar.sum()) * area,
                true_myocardium_mm2=float(true_myo.sum()) * area,
                predicted_myocardium_mm2=float(pred_myo.sum()) * area,
                true_mvo_px=int(true_mvo.sum()),
                mvo_dice=mvo_dice,
                uncertainty=output.uncertainty,
                inference_ms=float(output.details.get("inference_ms", 0.0)),
            ))
        stack_scores.append(StackScore(
            seed=seed, contrast=str(stack[0].contrast),
            field_strength_t=stack[0].field_strength_t, pattern=pattern,
            mapping=INTENSITY_MAPPINGS[seed % len(INTENSITY_MAPPINGS)], slices=len(stack),
            segmented=segmented, true_scar_percent=float(truth["scar_percent"]),
            predicted_scar_percent=100.0 * scar_total / myo_total if myo_total else 0.0,
        ))
        logger.info("stack %d/%d (%s, %s): %%scar true %.1f predicted %.1f", k + 1, n_stacks,
                    stack[0].contrast, pattern, truth["scar_percent"],
                    stack_scores[-1].predicted_scar_percent)
    return slice_scores, stack_scores


def regression(true: Sequence[float], predicted: Sequence[float]) -> dict[str, float | None]:
    """Least-squares ``predicted = intercept + slope * true``, Pearson r, bias, presence accuracy.

    ``slope``, ``intercept`` and ``r`` are ``None`` when ``true`` does not vary.
    """
    x, y = np.asarray(true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    result: dict[str, float | None] = {
        "stacks": float(len(x)),
        "bias_percent": round(float(np.mean(y - x)), 2),
        "mean_abs_error_percent": round(float(np.mean(np.abs(y - x))), 2),
        "presence_accuracy": round(float(np.mean((x > SCAR_PRESENCE_PERCENT) ==
                                                 (y > SCAR_PRESENCE_PERCENT))), 3),
        "slope": None, "intercept": None, "r": None,
    }
    if len(x) > 2 and float(np.std(x)) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        result["slope"] = round(float(slope), 3)
        result["intercept"] = round(float(intercept), 2)
        result["r"] = round(float(np.corrcoef(x, y)[0, 1]), 3) if float(np.std(y)) > 0 else 0.0
    return result


def _slice_group(rows: Sequence[SliceScore]) -> dict[str, Any]:
    dice = np.array([s.myocardium_dice for s in rows])
    scar = [s.scar_dice for s in rows if s.scar_dice is not None]
    true_scar = sum(s.true_scar_mm2 > 0 for s in rows)
    pooled_inter = sum(min(s.true_scar_mm2, s.predicted_scar_mm2) for s in rows)
    mvo = [s.mvo_dice for s in rows if s.mvo_dice is not None]
    return {
        "slices": len(rows),
        "segmented": sum(s.segmented for s in rows),
        "myocardium_dice_mean": round(float(dice.mean()), 4),
        "myocardium_dice_sd": round(float(dice.std()), 4),
        "myocardium_dice_p10": round(float(np.percentile(dice, 10)), 4),
        "lv_dice_mean": round(float(np.mean([s.lv_dice for s in rows])), 4),
        "scar_dice_mean": round(float(np.mean(scar)), 4) if scar else None,
        "scar_slices": len(scar),
        "true_scar_slices": int(true_scar),
        "scar_area_overlap_ratio": (round(pooled_inter / max(sum(s.true_scar_mm2
                                                                  for s in rows), 1e-9), 3)),
        "mvo_dice_mean": round(float(np.mean(mvo)), 4) if mvo else None,
        "mvo_slices": len(mvo),
        "uncertainty_mean": round(float(np.mean([s.uncertainty for s in rows
                                                 if s.uncertainty is not None])), 3),
    }


def _always(score: SliceScore | StackScore) -> bool:
    return True


def _has(attribute: str, value: object, score: SliceScore | StackScore) -> bool:
    return bool(getattr(score, attribute) == value)


def summarise(slices: Sequence[SliceScore], stacks: Sequence[StackScore]) -> dict[str, Any]:
    """Slice metrics by group and %scar regression by group."""
    slice_groups: dict[str, Callable[[SliceScore], bool]] = {"all": _always}
    stack_groups: dict[str, Callable[[StackScore], bool]] = {"all": _always}
    for contrast in ("psir", "magnitude"):
        slice_groups[contrast] = functools.partial(_has, "contrast", contrast)
        stack_groups[contrast] = functools.partial(_has, "contrast", contrast)
    for field in (1.5, 3.0):
        slice_groups[f"{field:g} T"] = functools.partial(_has, "field_strength_t", field)
        stack_groups[f"{field:g} T"] = functools.partial(_has, "field_strength_t", field)
    for level in ("basal", "mid", "apical"):
        slice_groups[level] = functools.partial(_has, "level", level)
    for mapping in INTENSITY_MAPPINGS:
        stack_groups[mapping] = functools.partial(_has, "mapping", mapping)
    by_slice = {}
    for name, keep in slice_groups.items():
        chosen = [s for s in slices if keep(s)]
        if chosen:
            by_slice[name] = _slice_group(chosen)
    by_stack: dict[str, Any] = {}
    for name, keep_stack in stack_groups.items():
        rows = [s for s in stacks if keep_stack(s)]
        if rows:
            by_stack[name] = regression([s.true_scar_percent for s in rows],
                                        [s.predicted_scar_percent for s in rows])
    by_pattern = {}
    for pattern in sorted({s.pattern for s in stacks}):
        rows = [s for s in stacks if s.pattern == pattern]
        by_pattern[pattern] = {
            "stacks": len(rows),
            "true_scar_percent_mean": round(float(np.mean([s.true_scar_percent
                                                           for s in rows])), 2),
            "predicted_scar_percent_mean": round(float(np.mean([s.predicted_scar_percent
                                                                for s in rows])), 2),
            "mean_abs_error_percent": round(float(np.mean([
                abs(s.predicted_scar_percent - s.true_scar_percent) for s in rows])), 2),
            "myocardium_dice_mean": round(float(np.mean([
                x.myocardium_dice for x in slices if x.pattern == pattern])), 4),
            "scar_dice_mean": _mean_or_none([x.scar_dice for x in slices
                                             if x.pattern == pattern]),
        }
    return {"slices": by_slice, "scar_percent": by_stack, "patterns": by_pattern}


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None


def benchmark(weights: Path = LGE_WEIGHTS, n_slices: int = 20) -> dict[str, float]:
    """ms per slice of :meth:`UNetLgeSegmenter.segment` and peak RSS, on one thread.

    Run in a fresh process (see :func:`main`) so the memory figure is the model's own.
    """
    items = [item for k in range(3) for item in eval_stack(EVAL_SEED_START + k)][:n_slices]
    return benchmark_segment(
        lambda: UNetLgeSegmenter(weights),
        [(item.image, item.pixel_spacing, LgeContrast(str(item.contrast))) for item in items])


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def tables(summary: Mapping[str, Any]) -> str:
    """Markdown tables of a :func:`summarise` result."""
    lines = [
        "| group | slices | segmented | myo Dice mean ± SD | myo Dice p10 | LV Dice | "
        "scar Dice (slices) | MVO Dice (slices) | uncertainty |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, g in summary["slices"].items():
        lines.append(
            f"| {name} | {g['slices']} | {g['segmented']} | {g['myocardium_dice_mean']:.3f} ± "
            f"{g['myocardium_dice_sd']:.3f} | {g['myocardium_dice_p10']:.3f} | "
            f"{g['lv_dice_mean']:.3f} | {_fmt(g['scar_dice_mean'])} ({g['scar_slices']}) | "
            f"{_fmt(g['mvo_dice_mean'])} ({g['mvo_slices']}) | {g['uncertainty_mean']:.3f} |")
    lines += [
        "",
        "| stacks | n | %scar slope | intercept (%) | r | bias (%) | mean \\|error\\| (%) | "
        "presence (> 1 %) accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, g in summary["scar_percent"].items():
        lines.append(
            f"| {name} | {int(g['stacks'])} | {_fmt(g['slope'])} | {_fmt(g['intercept'], 2)} | "
            f"{_fmt(g['r'])} | {g['bias_percent']:+.2f} | {g['mean_abs_error_percent']:.2f} | "
            f"{g['presence_accuracy']:.3f} |")
    lines += [
        "",
        "| pattern | stacks | true %scar | predicted %scar | mean \\|error\\| (%) | myo Dice | "
        "scar Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in summary["patterns"].items():
        lines.append(
            f"| {name} | {g['stacks']} | {g['true_scar_percent_mean']:.1f} | "
            f"{g['predicted_scar_percent_mean']:.1f} | {g['mean_abs_error_percent']:.2f} | "
            f"{g['myocardium_dice_mean']:.3f} | {_fmt(g['scar_dice_mean'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = evaluation_parser(__doc__.splitlines()[0], LGE_WEIGHTS)
    parser.add_argument("--stacks", type=int, default=DEFAULT_STACKS)
    parser.add_argument("--seed-start", type=int, default=EVAL_SEED_START,
                        help="first held-out seed (any seed from EVAL_SEED_START is held out); "
                             "results of other blocks go to the JSON under "
                             "evaluation_seeds_<start>")
    args = parser.parse_args(argv)
    start_evaluation()
    if args.benchmark:
        print(json.dumps(benchmark(args.weights)))
        return
    segmenter = UNetLgeSegmenter(args.weights)
    mvo_segmenter = (None if segmenter.mvo_output
                     else UNetLgeSegmenter(args.weights, mvo_output=True))
    started = time.perf_counter()
    if args.seed_start < EVAL_SEED_START:
        parser.error(f"seeds below {EVAL_SEED_START} are training or validation seeds")
    slices, stacks = evaluate_stacks(segmenter, args.stacks, args.seed_start,
                                     mvo_segmenter=mvo_segmenter)
    summary = summarise(slices, stacks)
    uncertainty = np.array([s.uncertainty for s in slices], dtype=np.float64)
    dice = np.array([s.myocardium_dice for s in slices])
    bench = json.loads(subprocess.run(
        [sys.executable, "-m", "models.evaluation.lgeseg.evaluate", "--benchmark", "--weights",
         str(args.weights)], check=True,
        capture_output=True, text=True).stdout.strip().splitlines()[-1])
    evaluation = {
        "held_out_seeds": [args.seed_start, args.seed_start + args.stacks - 1],
        "held_out_stacks": len(stacks),
        "held_out_slices": len(slices),
        "mvo_output": segmenter.mvo_output,
        "summary": summary,
        "uncertainty_dice_correlation": round(float(np.corrcoef(uncertainty, dice)[0, 1]), 3),
        "stacks": [asdict(s) for s in stacks],
        "benchmark": bench,
        "minutes": round((time.perf_counter() - started) / 60.0, 1),
        "command": "python -m models.evaluation.lgeseg.evaluate" + (
            f" --seed-start {args.seed_start}" if args.seed_start != EVAL_SEED_START else ""),
    }
    if not args.no_write:
        metadata = args.weights.with_suffix(".json")
        record = json.loads(metadata.read_text())
        key = ("evaluation" if args.seed_start == EVAL_SEED_START
               else f"evaluation_seeds_{args.seed_start}")
        record[key] = evaluation
        metadata.write_text(json.dumps(record, indent=2) + "\n")
    print(tables(summary))
    print()
    print("Uncertainty vs slice myocardium Dice, r =", evaluation["uncertainty_dice_correlation"])
    print("Inference benchmark:", json.dumps(bench))
    worst = sorted(slices, key=lambda s: s.myocardium_dice)[:5]
    print("Worst slices:", json.dumps([asdict(s) for s in worst], indent=1))


if __name__ == "__main__":
    main()
