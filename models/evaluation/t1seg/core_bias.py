"""Myocardial T1 core bias on realistic-border phantoms.

``python -m models.evaluation.t1seg.core_bias``.

Expert readers report native myocardial T1 over a conservative mid-wall region (Messroghli DR
et al., J Cardiovasc Magn Reson 2017;19:75).  This command measures how far each core rule of
:mod:`plugins.t1map.analysis` (``options["core"]``) reads from the tissue T1 on held-out
phantom subjects with realistic myocardial borders
(:func:`models.evaluation.t1seg.evaluate.realistic_border_subject`: 6–8 mm slices, 2–5 mm
endocardial motion, a trabecular layer; even seeds 1.5 T, odd seeds 3 T).  Every slice is segmented
once per segmenter; each rule is then applied by :func:`~plugins.t1map.analysis.analyse` to the
same contours.  Per slice it records the reported core mean minus

* **tissue**: the noise-free tissue T1 over the mid-wall of the true contours (remote T1 plus
  any lesion rise; the target of ``models.evaluation.t1seg.evaluate``), and
* **map**: the phantom's noise-free map (blur, acquired resolution, bias field and bands
  included) over that same true mid-wall: what a reader's mid-wall region shows without
  pixel noise.  Their difference is the phantom map's own partial volume, which no core
  drawn on the map can remove.

Slices the analysis fails (FAILURE flag) are counted, not averaged.  The median, mean and
range are reported per rule, field strength and slice level.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.evaluation.t1seg.evaluate import realistic_border_subject, series_from_phantoms
from models.phantoms.t1map import PhantomSlice
from models.training.t1seg.data import EVAL_SEED_START
from plugins.api import Severity
from plugins.t1map.analysis import CORE_RULES, analyse, conservative_core
from plugins.t1map.segmenter import ClassicalSegmenter, SegmentationOutput, Segmenter

logger = logging.getLogger(__name__)

__all__ = ["CoreBias", "measure_core_bias", "summarise_core_bias"]

DEFAULT_SUBJECTS: Final = 40
"""40 subjects: 60 slices per field strength, 40 per slice level."""


@dataclass(frozen=True)
class CoreBias:
    """One rule on one slice: the reported core T1 against the two references."""

    segmenter: str
    rule: str
    seed: int
    field_strength_t: float
    level: str
    analysed: bool
    reported_ms: float | None
    tissue_ms: float
    map_ms: float
    warnings: tuple[str, ...]
    core_pixels: int
    wall_thickness_mm: float

    @property
    def bias_tissue_ms(self) -> float | None:
        """Reported minus tissue T1 over the true mid-wall (``None`` when not analysed)."""
        return None if self.reported_ms is None else self.reported_ms - self.tissue_ms

    @property
    def bias_map_ms(self) -> float | None:
        """Reported minus the noise-free map over the true mid-wall."""
        return None if self.reported_ms is None else self.reported_ms - self.map_ms


class _OnceSegmenter:
    """A segmenter that segments each distinct map once, so that every rule sees one contour."""

    def __init__(self, inner: Segmenter) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self.weights_sha256 = inner.weights_sha256
        self._done: dict[str, SegmentationOutput] = {}

    def segment(self, t1_ms: npt.NDArray[np.float32], pixel_spacing: tuple[float, float],
                field_strength_t: float | None) -> SegmentationOutput:
        key = hashlib.sha256(np.ascontiguousarray(t1_ms).tobytes()).hexdigest()
        if key not in self._done:
            self._done[key] = self.inner.segment(t1_ms, pixel_spacing, field_strength_t)
        return self._done[key]


def true_midwall(phantom: PhantomSlice) -> tuple[npt.NDArray[np.bool_], float, float] | None:
    """Mid-wall of the true contours, tissue T1 and noise-free map T1 over it."""
    core = conservative_core(phantom.labels, phantom.pixel_spacing)
    if not core.any() or phantom.rendered is None or phantom.t1_noiseless_ms is None:
        return None
    rise = np.asarray(phantom.rendered.lesion_fraction * phantom.rendered.lesion_rise_ms,
                      dtype=np.float64)
    tissue = float(phantom.truth["myocardium_t1_true_ms"] + rise[core].mean())
    return core, tissue, float(phantom.t1_noiseless_ms[core].mean())


def measure_core_bias(
    segmenters: Mapping[str, Segmenter],
    seeds: Iterable[int],
    rules: Sequence[str] = CORE_RULES,
    subject: Any = realistic_border_subject,
) -> list[CoreBias]:
    """Score every rule with every segmenter on the basal/mid/apical slices of ``seeds``.

    ``subject(seed)`` gives the phantom slices of one subject (default: realistic borders).
    """
    rows: list[CoreBias] = []
    for seed in seeds:
        slices = subject(seed)
        series = series_from_phantoms(slices, f"2.25.{seed}")
        for name, inner in segmenters.items():
            once = _OnceSegmenter(inner)
            for rule in rules:
                result = analyse(series, {"segmenter": once, "core": rule,
                                          "cross_check": False, "radiomics": False})
                rows.extend(_rows(name, rule, seed, slices, result))
        logger.info("subject %d done", seed)
    return rows


def _rows(name: str, rule: str, seed: int, slices: Sequence[PhantomSlice],
          result: Any) -> list[CoreBias]:
    by_frame = {s.frame_index: s for s in result.slices}
    rows = []
    for index, phantom in enumerate(slices):
        reference = true_midwall(phantom)
        if reference is None:
            continue
        _, tissue, noise_free = reference
        flags = [f for f in result.qc_flags if f.frame_index == index]
        failed = any(f.severity is Severity.FAILURE for f in flags)
        found = by_frame.get(index)
        values = {m.key: m.value for m in found.measurements} if found is not None else {}
        reported = None if failed else values.get("myocardium_t1_mean_ms")
        rows.append(CoreBias(
            segmenter=name, rule=rule, seed=seed, field_strength_t=phantom.field_strength_t,
            level=phantom.level, analysed=reported is not None,
            reported_ms=None if reported is None else float(reported),
            tissue_ms=tissue, map_ms=noise_free,
            warnings=tuple(sorted({f.code for f in flags if f.severity is Severity.WARNING})),
            core_pixels=int(values.get("myocardium_core_pixels") or 0),
            wall_thickness_mm=float(phantom.truth["wall_thickness_mm"]),
        ))
    return rows


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return dict.fromkeys(("median", "mean", "sd", "min", "p5", "p95", "max"))
    array = np.asarray(values, dtype=np.float64)
    return {"median": round(float(np.median(array)), 1), "mean": round(float(array.mean()), 1),
            "sd": round(float(array.std()), 1),
            "min": round(float(array.min()), 1), "p5": round(float(np.percentile(array, 5)), 1),
            "p95": round(float(np.percentile(array, 95)), 1), "max": round(float(array.max()), 1)}


def summarise_core_bias(rows: Sequence[CoreBias]) -> list[dict[str, Any]]:
    """Per segmenter, rule, field strength and level (and "all"): counts and bias statistics."""
    out: list[dict[str, Any]] = []
    keys = sorted({(r.segmenter, r.rule) for r in rows})
    fields = sorted({r.field_strength_t for r in rows})
    for segmenter, rule in keys:
        for field in fields:
            for level in ("all", "basal", "mid", "apical"):
                group = [r for r in rows if r.segmenter == segmenter and r.rule == rule
                         and r.field_strength_t == field and level in ("all", r.level)]
                if not group:
                    continue
                tissue = [r.bias_tissue_ms for r in group if r.bias_tissue_ms is not None]
                floor = [r.map_ms - r.tissue_ms for r in group if r.analysed]
                out.append({
                    "segmenter": segmenter, "rule": rule, "field_strength_t": field,
                    "level": level, "slices": len(group),
                    "analysed": sum(r.analysed for r in group),
                    "warned": sum(bool(r.warnings) for r in group if r.analysed),
                    "bias_tissue_ms": _stats(tissue),
                    "bias_tissue_unwarned_ms": _stats([r.bias_tissue_ms for r in group
                                                       if r.bias_tissue_ms is not None
                                                       and not r.warnings]),
                    "bias_map_ms": _stats([r.bias_map_ms for r in group
                                           if r.bias_map_ms is not None]),
                    "map_minus_tissue_ms": _stats(floor),
                })
    return out


def _table(summary: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| segmenter | core | field | level | slices | analysed | warned | "
             "vs tissue: median [min, max] | 5th–95th pct | SD | "
             "unwarned: median [min, max] | vs noise-free map: median (SD) | "
             "map − tissue: median |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in summary:
        t, m, f = g["bias_tissue_ms"], g["bias_map_ms"], g["map_minus_tissue_ms"]
        u = g["bias_tissue_unwarned_ms"]
        lines.append(
            f"| {g['segmenter']} | {g['rule']} | {g['field_strength_t']:g} T | {g['level']} | "
            f"{g['slices']} | {g['analysed']} | {g['warned']} | "
            f"{t['median']} [{t['min']}, {t['max']}] | [{t['p5']}, {t['p95']}] | {t['sd']} | "
            f"{u['median']} [{u['min']}, {u['max']}] | {m['median']} ({m['sd']}) | "
            f"{f['median']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subjects", type=int, default=DEFAULT_SUBJECTS)
    parser.add_argument("--seed-start", type=int, default=EVAL_SEED_START)
    parser.add_argument("--no-classical", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows and summary here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from models.runtime.t1seg.segmenter import UNetT1Segmenter

    torch.set_num_threads(1)
    segmenters: dict[str, Segmenter] = {"U-Net": UNetT1Segmenter()}
    if not args.no_classical:
        segmenters["classical"] = ClassicalSegmenter()
    rows = measure_core_bias(segmenters, range(args.seed_start, args.seed_start + args.subjects))
    summary = summarise_core_bias(rows)
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"seeds": [args.seed_start, args.seed_start + args.subjects - 1],
             "summary": summary,
             "rows": [{**asdict(r), "bias_tissue_ms": r.bias_tissue_ms} for r in rows]},
            indent=1) + "\n")
    print(_table(summary))


if __name__ == "__main__":
    main()
