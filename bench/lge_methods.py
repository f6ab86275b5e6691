"""%scar of the LGE analysis against phantom truth, per method: ``python -m bench.lge_methods``.

Held-out phantom LGE stacks (seeds never used in training) are written as vendor-like DICOM,
loaded by the node's loader and analysed by the LGE plugin exactly as the node does.  For
each method (network, n-SD, FWHM) the per-stack %scar is regressed on the phantom's %scar
(slope, intercept, Pearson r, bias = mean difference, limits of agreement) and scar presence
(> 1 % of LV mass) is scored.  With ``--segmenter labels`` the phantom's own labels replace
the network, which isolates the threshold methods from segmentation error.

Writes ``build/lge_methods.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.phantoms.dicom_lge import lge_series_datasets
from models.phantoms.lge import lge_case_truth, make_lge_stack
from models.phantoms.lge_scar import ScarPattern
from node.analyses import with_networks
from node.inputs.loader import load_series
from plugins.api import FloatImage, LoadedSeries, SegmentationOutput
from plugins.lge import LgeContrast, ScarMethod, analyse
from plugins.lge.analysis import PRESENCE_PERCENT
from tests.netutil import REPO

logger = logging.getLogger(__name__)

SEED_START = 950_000
"""Evaluation seeds: disjoint from every training and validation range of models.training.lgeseg."""
VENDORS = ("siemens", "philips", "ge")
CONTRASTS = ("psir", "magnitude")
PATTERNS = tuple(ScarPattern)
DEFAULT_OUTPUT = REPO / "build" / "lge_methods.json"


def _key(image: FloatImage) -> str:
    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


class PhantomLabels:
    """Segmenter returning the phantom's exact labels (isolates the threshold methods)."""

    name = "phantom labels"
    version = "truth"
    weights_sha256 = None

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def segment(self, image: FloatImage, pixel_spacing: tuple[float, float],
                contrast: LgeContrast, cine: FloatImage | None = None) -> SegmentationOutput:
        labels = self.table.get(_key(image))
        if labels is None:
            return SegmentationOutput(np.zeros(image.shape, np.uint8), 1.0, "unknown image")
        return SegmentationOutput(labels.copy(), 0.0)


def make_case(seed: int) -> tuple[LoadedSeries, dict[str, Any], PhantomLabels]:
    """One held-out stack: loaded series, truth and the phantom-label segmenter."""
    index = seed - SEED_START
    rng = np.random.default_rng(seed)
    pattern = PATTERNS[index % len(PATTERNS)]
    contrast = CONTRASTS[(index // len(PATTERNS)) % 2]
    vendor = VENDORS[index % len(VENDORS)]
    field = 1.5 if index % 4 < 2 else 3.0
    n_slices = 8 + index % 5
    _case, slices = make_lge_stack(rng, n_slices=n_slices, field_strength_t=field,
                                   scar_pattern=pattern, contrast=contrast)
    datasets = lge_series_datasets(slices, vendor=vendor, contrast=contrast)
    series = load_series(datasets)
    by_uid = {str(ds.SOPInstanceUID): s.labels for ds, s in zip(datasets, slices, strict=True)}
    table = {_key(f.pixels): by_uid[f.sop_instance_uid] for f in series.frames}
    truth = {**lge_case_truth(slices), "vendor": vendor, "contrast": contrast,
             "n_slices": n_slices, "seed": seed}
    return series, truth, PhantomLabels(table)


def agreement(truth: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Slope, intercept, r, bias and 95 % limits of agreement of measured on truth."""
    x = np.asarray(truth, dtype=np.float64)
    y = np.asarray(measured, dtype=np.float64)
    slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    difference = y - x
    sd = float(difference.std(ddof=1))
    return {
        "slope": round(slope, 3),
        "intercept": round(intercept, 2),
        "r": round(float(np.corrcoef(x, y)[0, 1]), 3),
        "bias": round(float(difference.mean()), 2),
        "loa_low": round(float(difference.mean()) - 1.96 * sd, 2),
        "loa_high": round(float(difference.mean()) + 1.96 * sd, 2),
        "mae": round(float(np.abs(difference).mean()), 2),
    }


def evaluate(n_cases: int, segmenter_kind: str) -> dict[str, Any]:
    """Analyse ``n_cases`` held-out stacks and compare every method with the truth."""
    rows: list[dict[str, Any]] = []
    seconds: list[float] = []
    for seed in range(SEED_START, SEED_START + n_cases):
        series, truth, labels = make_case(seed)
        options: dict[str, Any] = (
            {"segmenter": labels} if segmenter_kind == "labels" else with_networks("lge", {}))
        started = time.perf_counter()
        result = analyse(series, options)
        seconds.append(time.perf_counter() - started)
        lge = result.extra["lge"]
        methods = lge.get("methods", {})
        row = {
            **{k: truth[k] for k in ("seed", "scar_pattern", "vendor", "contrast",
                                     "field_strength_t", "n_slices")},
            "truth_percent": round(float(truth["scar_percent"]), 2),
            "slices_analysed": len(result.slices),
            "location": lge.get("location"),
            "pattern": lge.get("pattern"),
            "flags": sorted({f.code for f in result.qc_flags}),
        }
        for method in ScarMethod:
            row[str(method)] = methods.get(str(method), {}).get("percent")
        rows.append(row)
        logger.info("seed %d %s: truth %.1f %%, %s", seed, truth["scar_pattern"],
                    truth["scar_percent"], {m: row[str(m)] for m in ScarMethod})
    summary: dict[str, Any] = {}
    usable = [r for r in rows if all(r[str(m)] is not None for m in ScarMethod)]
    truths = [r["truth_percent"] for r in usable]
    for method in ScarMethod:
        values = [float(r[str(method)]) for r in usable]
        present = [(t > PRESENCE_PERCENT) == (v > PRESENCE_PERCENT)
                   for t, v in zip(truths, values, strict=True)]
        summary[str(method)] = {
            **agreement(truths, values),
            "presence_accuracy": round(sum(present) / len(present), 3),
        }
    return {
        "segmenter": segmenter_kind,
        "cases": len(rows),
        "cases_with_all_methods": len(usable),
        "seconds_per_stack_median": round(statistics.median(seconds), 2),
        "presence_threshold_percent": PRESENCE_PERCENT,
        "methods": summary,
        "rows": rows,
    }


def table(report: dict[str, Any]) -> str:
    """The summary as text."""
    lines = [
        f"LGE %scar against phantom truth: {report['cases']} held-out stacks, segmentation by "
        f"{report['segmenter']}; {report['seconds_per_stack_median']} s per stack (median)",
        f"  {'method':<8} {'slope':>6} {'icpt':>6} {'r':>6} {'bias':>6} {'LoA':>15} "
        f"{'MAE':>5} {'presence acc':>12}",
    ]
    for method, m in report["methods"].items():
        lines.append(
            f"  {method:<8} {m['slope']:>6.3f} {m['intercept']:>6.2f} {m['r']:>6.3f} "
            f"{m['bias']:>6.2f} {m['loa_low']:>7.2f}..{m['loa_high']:<6.2f} {m['mae']:>5.2f} "
            f"{m['presence_accuracy']:>12.3f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation; exit status 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.lge_methods", description=__doc__)
    parser.add_argument("--cases", type=int, default=40, help="held-out stacks")
    parser.add_argument("--segmenter", choices=["network", "labels"], default="network")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    report = evaluate(args.cases, args.segmenter)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
