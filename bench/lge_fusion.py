"""LGE-only against LGE + cine segmentation of held-out phantoms: ``python -m bench.lge_fusion``.

Every held-out study (seeds from 950000: the LGE-only network's evaluation stacks,
:func:`models.training.lgeseg.data.eval_stack`, never used to train either network) is written as
vendor-like DICOM: the LGE series (PSIR or magnitude; Siemens, Philips or GE encoding by
seed) and a short-axis cine series of the same subject with its own matrix (208 x 256) and
pixel spacing (1.4-1.8 mm), its own heart rate (the LGE's within a few per cent), four phases
(end-diastole, end-systole and the two cine phases around the LGE trigger time) and a
breath-hold mismatch of up to :data:`MAX_MISREGISTRATION_MM` per slice.  Both are loaded by
the node's loader and the LGE plugin analyses the LGE series twice, exactly as the node
does: once without the cine (LGE-only network) and once with the cine as its ``cine``
companion (pairing by position and trigger time, resampling through the patient geometry,
translation registration, two-channel network; a slice whose two-channel output is rejected
falls back to the LGE-only network).

Per mode: % of slices segmented, myocardium and scar Dice on the source grid against the
exact labels (an unsegmented slice counts 0), network %scar per stack against the
phantom's (slope, intercept, r, bias, limits of agreement) and scar presence (> 1 %)
accuracy, and analysis time per slice on one thread.  Writes ``build/lge_fusion.json`` and
prints a table; ``--record`` also stores the summary as ``"evaluation"`` in
``models/weights/lge_cine_unet.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench.lge_methods import agreement
from models.phantoms.cine import (
    END_SYSTOLE_PHASE,
    CineSlice,
    matched_cine_stack,
    sample_cine_acquisition,
)
from models.phantoms.dicom_lge import cine_series_datasets, lge_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.lge import LgeSlice, lge_case_truth
from models.runtime.lgeseg.fusion_segmenter import DEFAULT_FUSION_METADATA
from models.training.lgeseg.data import EVAL_SEED_START, eval_stack
from node.analyses import with_networks
from node.inputs.loader import load_series
from plugins.api import AnalysisResult, Label, LoadedSeries
from plugins.lge import analyse
from plugins.lge.analysis import PRESENCE_PERCENT
from plugins.lge.qc import QCCode
from tests.netutil import REPO

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT: Final = REPO / "build" / "lge_fusion.json"
DEFAULT_STACKS: Final = 64
VENDORS: Final = ("siemens", "philips", "ge")
CINE_SHAPE: Final = (208, 256)
CINE_SPACING_MM: Final = (1.4, 1.8)
CINE_PHASES: Final = 25
MAX_MISREGISTRATION_MM: Final = 6.0
CINE_STREAM: Final = 11
MODES: Final = ("lge", "lge+cine")
MYOCARDIAL: Final = (int(Label.MYOCARDIUM), int(Label.SCAR), int(Label.MVO))
SCAR: Final = (int(Label.SCAR), int(Label.MVO))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 1.0


def make_study(seed: int) -> tuple[list[LgeSlice], LoadedSeries, LoadedSeries, list[str],
                                   list[list[CineSlice]]]:
    """A held-out study: LGE slices, loaded LGE and cine series, LGE SOP UIDs, cine slices."""
    slices = eval_stack(seed)
    vendor = VENDORS[seed % len(VENDORS)]
    contrast = str(slices[0].contrast)
    info = StudyInfo.synthetic(seed)
    lge_datasets = lge_series_datasets(slices, vendor=vendor, study=info, contrast=contrast)
    rng = np.random.default_rng([seed, CINE_STREAM])
    lge_acq = slices[0].acquisition
    acq = sample_cine_acquisition(
        rng, lge_acq.heart_rate_bpm * (1.0 + float(rng.normal(0.0, 0.04))))
    step = acq.rr_ms / CINE_PHASES
    below = int(lge_acq.trigger_time_ms // step)
    phases = (0.0, END_SYSTOLE_PHASE, below / CINE_PHASES, (below + 1) / CINE_PHASES)
    spacing = round(float(rng.uniform(*CINE_SPACING_MM)), 3)
    cines = matched_cine_stack(rng, slices, phases=phases, acquisition=acq,
                               max_misregistration_mm=MAX_MISREGISTRATION_MM,
                               shape=CINE_SHAPE, pixel_spacing=(spacing, spacing))
    cine_datasets = cine_series_datasets(cines, vendor=vendor, study=info)
    uids = [str(ds.SOPInstanceUID) for ds in lge_datasets]
    return slices, load_series(lge_datasets), load_series(cine_datasets), uids, cines


def _score(result: AnalysisResult, series: LoadedSeries, slices: Sequence[LgeSlice],
           uids: Sequence[str], mode: str) -> tuple[list[dict[str, Any]], float]:
    """Per-slice scores (every slice of the stack) and the network %scar."""
    by_frame = {s.frame_index: s for s in result.slices}
    modes = {row["frame_index"]: row["mode"] for row in result.extra.get("slices", [])}
    rows = []
    for index, frame in enumerate(series.frames):
        item = slices[uids.index(frame.sop_instance_uid)]
        analysed = by_frame.get(index)
        labels = analysed.labels if analysed is not None else np.zeros_like(item.labels)
        pred_myo, true_myo = np.isin(labels, MYOCARDIAL), np.isin(item.labels, MYOCARDIAL)
        pred_scar, true_scar = np.isin(labels, SCAR), np.isin(item.labels, SCAR)
        rows.append({
            "requested": mode,
            "mode": modes.get(index),
            "segmented": bool(pred_myo.any()),
            "level": item.level,
            "myocardium_dice": _dice(pred_myo, true_myo),
            "scar_dice": (_dice(pred_scar, true_scar)
                          if pred_scar.any() or true_scar.any() else None),
        })
    methods = result.extra.get("lge", {}).get("methods", {})
    percent = methods.get("network", {}).get("percent")
    return rows, float(percent) if percent is not None else 0.0


def evaluate(n_stacks: int, seed_start: int = EVAL_SEED_START,
             fusion_weights: Path | None = None, lge_weights: Path | None = None,
             modes: Sequence[str] = MODES) -> dict[str, Any]:
    """Analyse ``n_stacks`` held-out studies with and without their cine.

    ``fusion_weights`` / ``lge_weights`` replace the committed LGE + cine / LGE-only weights
    (e.g. a candidate or control run); ``modes`` limits the comparison.
    """
    import torch

    torch.set_num_threads(1)
    fusion = lge_only = None
    if fusion_weights is not None:
        from models.runtime.lgeseg.fusion_segmenter import UNetFusionSegmenter

        fusion = UNetFusionSegmenter(fusion_weights)
    if lge_weights is not None:
        from models.runtime.lgeseg.segmenter import UNetLgeSegmenter

        lge_only = UNetLgeSegmenter(lge_weights)
    slice_rows: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    stacks: list[dict[str, Any]] = []
    ms_per_slice: dict[str, list[float]] = {m: [] for m in modes}
    for seed in range(seed_start, seed_start + n_stacks):
        slices, lge, cine, uids, cines = make_study(seed)
        truth = lge_case_truth(slices)
        stack: dict[str, Any] = {
            "seed": seed, "pattern": truth["scar_pattern"],
            "contrast": str(slices[0].contrast),
            "field_strength_t": slices[0].field_strength_t,
            "truth_percent": round(float(truth["scar_percent"]), 2),
            "misregistration_mm": round(float(np.mean([
                np.hypot(*c[-1].misregistration_mm) for c in cines])), 2),
        }
        for mode in modes:
            options: dict[str, Any] = (
                {"companions": {"cine": cine}} if mode == "lge+cine" else {})
            if fusion is not None and mode == "lge+cine":
                options["cine_segmenter"] = fusion
            if lge_only is not None:
                options["segmenter"] = lge_only
            options = with_networks("lge", options)  # the node's networks where none given
            started = time.perf_counter()
            result = analyse(lge, options)
            elapsed = time.perf_counter() - started
            ms_per_slice[mode].append(1000.0 * elapsed / len(lge.frames))
            rows, percent = _score(result, lge, slices, uids, mode)
            slice_rows[mode].extend(rows)
            stack[mode] = round(percent, 2)
            stack[f"{mode}_withheld"] = any(f.code == QCCode.INVERTED_NULLING
                                            for f in result.qc_flags)
            stack[f"{mode}_slices_with_cine"] = sum(r["mode"] == "lge+cine" for r in rows)
        stacks.append(stack)
        logger.info("seed %d %s: truth %.1f %%, %s", seed, stack["pattern"],
                    stack["truth_percent"], {m: stack[m] for m in modes})
    return {"stacks": n_stacks, "seed_range": [seed_start, seed_start + n_stacks - 1],
            "summary": summarise(slice_rows, stacks, ms_per_slice), "rows": stacks}


def segmentation_timing(n_slices: int = 20, seed_start: int = EVAL_SEED_START
                        ) -> dict[str, dict[str, float]]:
    """ms per slice of segmentation alone, one thread: the LGE-only network, and the fusion
    path (pairing, resampling through the geometry, registration, two-channel network)."""
    import torch

    from models.runtime.lgeseg.fusion_segmenter import UNetFusionSegmenter
    from models.runtime.lgeseg.segmenter import UNetLgeSegmenter
    from plugins.lge.cine import CineMatch, align_cine, pair_cine_frames, resample_to_frame
    from plugins.lge.segmenter import LgeContrast

    torch.set_num_threads(1)
    lge_only, fusion = UNetLgeSegmenter(), UNetFusionSegmenter()
    times: dict[str, list[float]] = {"lge": [], "lge+cine": [], "cine_alignment": []}
    seed = seed_start + 4
    while len(times["lge"]) < n_slices:
        slices, lge, cine, _, _ = make_study(seed)
        contrast = LgeContrast(str(slices[0].contrast))
        for frame in lge.frames:
            image = np.asarray(frame.pixels, dtype=np.float32)
            started = time.perf_counter()
            lge_only.segment(image, frame.pixel_spacing, contrast)
            times["lge"].append(1000.0 * (time.perf_counter() - started))
            started = time.perf_counter()
            match = pair_cine_frames(frame, cine)
            if not isinstance(match, CineMatch):
                raise RuntimeError(f"seed {seed}: no cine paired ({match.detail})")
            other = cine.frames[match.cine_index]
            on_grid = resample_to_frame(other.pixels, other.image_position,
                                        other.image_orientation, other.pixel_spacing,
                                        image.shape, frame.image_position,
                                        frame.image_orientation, frame.pixel_spacing)
            aligned, _ = align_cine(image, on_grid, frame.pixel_spacing)
            aligned_at = time.perf_counter()
            fusion.segment(image, frame.pixel_spacing, contrast, aligned)
            done = time.perf_counter()
            times["cine_alignment"].append(1000.0 * (aligned_at - started))
            times["lge+cine"].append(1000.0 * (done - started))
        seed += 1
    return {k: {"slices": len(v), "ms_mean": round(float(np.mean(v[:n_slices])), 1),
                "ms_p95": round(float(np.percentile(v[:n_slices], 95)), 1)}
            for k, v in times.items()}


def summarise(slice_rows: dict[str, list[dict[str, Any]]], stacks: Sequence[dict[str, Any]],
              ms_per_slice: dict[str, list[float]]) -> dict[str, Any]:
    """Per mode: slice metrics (all and by level), %scar agreement and timing."""
    truths = [float(s["truth_percent"]) for s in stacks]
    out: dict[str, Any] = {}
    for mode, rows in slice_rows.items():
        block: dict[str, Any] = {}
        for level in ("all", "basal", "mid", "apical"):
            chosen = [r for r in rows if level == "all" or r["level"] == level]
            if not chosen:
                continue
            scar = [r["scar_dice"] for r in chosen if r["scar_dice"] is not None]
            block[level] = {
                "slices": len(chosen),
                "segmented_percent": round(100.0 * np.mean([r["segmented"] for r in chosen]),
                                           1),
                "myocardium_dice_mean": round(float(np.mean(
                    [r["myocardium_dice"] for r in chosen])), 4),
                "scar_dice_mean": round(float(np.mean(scar)), 4) if scar else None,
                "scar_slices": len(scar),
            }
        values = [float(s[mode]) for s in stacks]
        present = [(t > PRESENCE_PERCENT) == (v > PRESENCE_PERCENT)
                   for t, v in zip(truths, values, strict=True)]
        reported = [k for k, s in enumerate(stacks) if not s.get(f"{mode}_withheld")]
        out[mode] = {
            "slices": block,
            "slices_with_cine": sum(r["mode"] == "lge+cine" for r in rows),
            "scar_percent": {**agreement(truths, values),
                             "presence_accuracy": round(sum(present) / len(present), 3)},
            "withheld_stacks": [stacks[k]["seed"] for k in range(len(stacks))
                                if k not in reported],
            "scar_percent_reported": {
                **agreement([truths[k] for k in reported], [values[k] for k in reported]),
                "presence_accuracy": round(sum(present[k] for k in reported)
                                           / max(len(reported), 1), 3)},
            "ms_per_slice_median": round(statistics.median(ms_per_slice[mode]), 1),
        }
    return out


def table(report: dict[str, Any]) -> str:
    """The summary as text."""
    lines = [
        f"LGE-only vs LGE + cine: {report['stacks']} held-out studies (seeds "
        f"{report['seed_range'][0]}-{report['seed_range'][1]}), through the LGE plugin",
        f"  {'mode':<9} {'slices':>6} {'segm %':>7} {'myo Dice':>8} {'scar Dice':>9} "
        f"{'slope':>6} {'r':>6} {'bias':>6} {'presence':>8} {'ms/slice':>8}",
    ]
    for mode, m in report["summary"].items():
        s = m["slices"]["all"]
        p = m["scar_percent"]
        scar = "-" if s["scar_dice_mean"] is None else f"{s['scar_dice_mean']:.3f}"
        lines.append(
            f"  {mode:<9} {s['slices']:>6} {s['segmented_percent']:>7.1f} "
            f"{s['myocardium_dice_mean']:>8.3f} {scar:>9} {p['slope']:>6.3f} {p['r']:>6.3f} "
            f"{p['bias']:>6.2f} {p['presence_accuracy']:>8.3f} {m['ms_per_slice_median']:>8.1f}"
        )
        q = m["scar_percent_reported"]
        lines.append(
            f"  {'reported':<9} {len(m['withheld_stacks']):>3} stack(s) withheld "
            f"(myocardium brighter than blood: {m['withheld_stacks']}); on the others slope "
            f"{q['slope']:.3f}, r {q['r']:.3f}, bias {q['bias']:.2f}, presence "
            f"{q['presence_accuracy']:.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; exit status 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.lge_fusion",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=DEFAULT_STACKS,
                        help="held-out studies (at least 32 for the report)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--seed-start", type=int, default=EVAL_SEED_START)
    parser.add_argument("--fusion-weights", type=Path, default=None,
                        help="LGE + cine weights to use instead of the committed ones")
    parser.add_argument("--lge-weights", type=Path, default=None,
                        help="LGE-only weights to use instead of the committed ones")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--timing-only", action="store_true",
                        help="only time the segmentation of 20 slices per mode (one thread)")
    parser.add_argument("--record", action="store_true",
                        help="store the summary in models/weights/lge_cine_unet.json")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(message)s")
    if args.timing_only:
        timing = segmentation_timing()
        print(json.dumps(timing, indent=2))
        if args.record:
            record = json.loads(DEFAULT_FUSION_METADATA.read_text())
            record.setdefault("evaluation", {})["segmentation_ms_one_thread"] = timing
            DEFAULT_FUSION_METADATA.write_text(json.dumps(record, indent=2) + "\n")
        return 0
    report = evaluate(args.stacks, args.seed_start, fusion_weights=args.fusion_weights,
                      lge_weights=args.lge_weights, modes=args.modes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.record:
        record = json.loads(DEFAULT_FUSION_METADATA.read_text())
        record["evaluation"] = {"command": "python -m bench.lge_fusion --record",
                                "stacks": report["stacks"],
                                "seed_range": report["seed_range"],
                                **report["summary"]}
        DEFAULT_FUSION_METADATA.write_text(json.dumps(record, indent=2) + "\n")
    print(table(report))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
