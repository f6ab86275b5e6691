"""Evaluate the T1-map U-Net on held-out phantoms: ``python -m models.evaluation.t1seg.evaluate``.

The held-out subjects use seeds from :data:`~models.training.t1seg.data.EVAL_SEED_START`, never used
in training or checkpoint selection.  Each subject's basal, mid and apical maps are built into
a :class:`~plugins.api.LoadedSeries` and run through :func:`plugins.t1map.analysis.analyse`
once with the U-Net and once with the classical segmenter.  Per slice:

* myocardium (and LV / RV blood pool) Dice against the exact phantom labels, on the source
  pixel grid;
* **|ΔT1| contour**: mean map T1 over the predicted myocardium minus that over the true
  myocardium (the published U-Net's measure: contour-induced error);
* **|ΔT1| core**: the analysis' reported mean (conservative mid-wall core) minus the tissue
  T1 over the true core (as in ``tests/plugins/test_t1map.py``); its floor, the same core
  rule applied to the true labels, is reported as well, and so are the signed bias and the
  range of reported minus true T1;
* **ΔT1 septal mid-wall** (mid slices): the analysis' septal mid-wall T1 (AHA segments 8-9
  over the core) minus the tissue T1 over the true core within 60 degrees of the septum.

``--border realistic`` scores the same held-out subjects rendered with realistic myocardial
borders (:func:`models.phantoms.t1map_acquisition.sample_border_realism`: 6–8 mm slices, endocardial
motion, a trabecular layer), the cohort that exposes endocardial partial volume.

Four-chamber long-axis views (seeds from
:data:`~models.training.t1seg.long_axis.LONG_AXIS_EVAL_SEED_START`) are scored as level ``"4ch"``:
Dice as above, and |ΔT1| of the analysis' septal and lateral wall values against the tissue
T1 over the true-label core of each wall.  The group ``"short axis"`` holds the short-axis
slices only; ``"all"`` holds both views.

Slices the analysis fails (FAILURE flag, no value) are counted, not averaged.  Also: an
inference benchmark (ms per slice and peak resident memory, one thread, fresh process) and a
sanity check on the real Sunnybrook *cine* subset with intensities remapped to T1-like
values (cine, not T1; labels have no RV).  Results go to the weights' JSON under
``"evaluation"`` and are printed as Markdown tables.
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
from models.phantoms.long_axis import LongAxisSlice
from models.phantoms.t1map import PhantomSlice, make_t1map_stack
from models.phantoms.t1map_acquisition import sample_border_realism
from models.phantoms.t1map_synthesis import pixel_angles
from models.runtime.t1seg.segmenter import DEFAULT_WEIGHTS, UNetT1Segmenter
from models.training.t1seg.data import (
    EVAL_SEED_START,
    FIELD_STRENGTHS_T,
    LEVELS_PER_SUBJECT,
    phantom_subject,
)
from models.training.t1seg.long_axis import LONG_AXIS_EVAL_SEED_START, phantom_long_axis
from plugins.api import Label, LoadedSeries, Severity, SourceFrame
from plugins.t1map.analysis import analyse, conservative_core, measurement_core
from plugins.t1map.long_axis import LEVEL_4CH, wall_geometry
from plugins.t1map.segmenter import ClassicalSegmenter, Segmenter

logger = logging.getLogger(__name__)

__all__ = [
    "SliceScore",
    "benchmark",
    "evaluate_long_axis",
    "evaluate_phantoms",
    "evaluate_sunnybrook",
    "long_axis_series",
    "series_from_phantoms",
    "summarise",
]

DEFAULT_SUBJECTS: Final = 40
_REPO_SUNNYBROOK = (Path(__file__).resolve().parents[3] / "tests" / "data" / "sunnybrook"
                   / "sunnybrook_lv_myo_subset.npz")
SUNNYBROOK: Final = (_REPO_SUNNYBROOK if _REPO_SUNNYBROOK.exists()
                     else Path("/work/shared/data/sunnybrook/sunnybrook_lv_myo_subset.npz"))
"""Real Sunnybrook cine subset (CC0; see its README for attribution)."""
CINE_MYOCARDIUM_MS: Final = 1050.0
CINE_BLOOD_MS: Final = 1650.0


@dataclass
class SliceScore:
    """Outcome of one method on one held-out slice."""

    method: str
    seed: int
    field_strength_t: float
    level: str
    spacing_mm: float
    analysed: bool
    myocardium_dice: float
    lv_dice: float
    rv_dice: float
    delta_t1_contour_ms: float | None
    delta_t1_core_ms: float | None
    delta_t1_core_true_labels_ms: float | None
    uncertainty: float | None
    delta_t1_septal_ms: float | None = None
    """Four-chamber views: reported septal core mean minus the tissue T1 over the true
    septal core (lesions included)."""
    delta_t1_lateral_ms: float | None = None
    """Four-chamber views: the same for the lateral wall."""
    delta_t1_septal_midwall_ms: float | None = None
    """Short-axis mid slices: the reported septal mid-wall T1 minus the tissue T1 over the
    true core within 60 degrees of the septum."""


BORDER_SEED_OFFSET: Final = 1_000_000
"""The border realism of subject ``seed`` is drawn from ``seed + BORDER_SEED_OFFSET``."""


def realistic_border_subject(seed: int) -> list[PhantomSlice]:
    """The subject of :func:`~models.training.t1seg.data.phantom_subject` with realistic borders.

    Same field-strength rule (even seeds 1.5 T, odd 3 T); the anatomy and map are drawn
    anew with :func:`~models.phantoms.t1map_acquisition.sample_border_realism`.
    """
    rng = np.random.default_rng(seed)
    border = sample_border_realism(np.random.default_rng(seed + BORDER_SEED_OFFSET))
    _, slices = make_t1map_stack(rng, field_strength_t=FIELD_STRENGTHS_T[seed % 2],
                                 levels=LEVELS_PER_SUBJECT, border=border)
    return slices


def series_from_phantoms(slices: Sequence[PhantomSlice], uid: str) -> LoadedSeries:
    """A LoadedSeries of parallel phantom slices 8 mm apart (no DICOM round trip)."""
    frames = tuple(
        SourceFrame(
            pixels=np.asarray(s.t1_ms, dtype=np.float32),
            sop_instance_uid=f"{uid}.{index + 1}",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
            frame_number=None,
            image_position=(0.0, 0.0, 8.0 * index),
            image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            pixel_spacing=s.pixel_spacing,
            slice_thickness=8.0,
            units="ms",
            attributes={"InstanceNumber": index + 1},
        )
        for index, s in enumerate(slices)
    )
    header = {"Modality": "MR", "MagneticFieldStrength": slices[0].field_strength_t}
    return LoadedSeries(f"{uid}.0", f"{uid}.1", frames, header)


def _dice(a: npt.NDArray[np.bool_], b: npt.NDArray[np.bool_]) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 1.0


def _midwall_truth(phantom: PhantomSlice, core: npt.NDArray[np.bool_]) -> float | None:
    if not core.any() or phantom.rendered is None:
        return None
    rise = np.asarray(phantom.rendered.lesion_fraction * phantom.rendered.lesion_rise_ms,
                      dtype=np.float64)
    return float(phantom.truth["myocardium_t1_true_ms"] + rise[core].mean())


SEPTAL_HALF_WIDTH_RAD: Final = np.pi / 3.0


def _septal_truth(phantom: PhantomSlice, core: npt.NDArray[np.bool_]) -> float | None:
    """Tissue T1 (septal-lateral gradient and lesions included) over the septal true core."""
    if phantom.rendered is None or phantom.heart is None:
        return None
    angles = pixel_angles(phantom.rendered, phantom.heart).astype(np.float64)
    septal = core & (np.abs(np.angle(np.exp(1j * (angles - np.pi)))) < SEPTAL_HALF_WIDTH_RAD)
    if not septal.any():
        return None
    gradient = 0.5 * phantom.heart.tissues.septal_lateral_gradient_ms * -np.cos(angles)
    rise = phantom.rendered.lesion_fraction * phantom.rendered.lesion_rise_ms
    tissue = phantom.truth["myocardium_t1_true_ms"] + gradient + rise
    return float(np.mean(tissue[septal]))


def _score_slice(method: str, seed: int, phantom: PhantomSlice, labels: npt.NDArray[np.uint8],
                 core_mean: float | None, analysed: bool,
                 uncertainty: float | None) -> SliceScore:
    truth = phantom.labels
    myo, true_myo = labels == Label.MYOCARDIUM, truth == Label.MYOCARDIUM
    contour = None
    if myo.any():
        contour = float(phantom.t1_ms[myo].mean() - phantom.t1_ms[true_myo].mean())
    true_core = conservative_core(truth, phantom.pixel_spacing)
    target = _midwall_truth(phantom, true_core)
    core_error = None if core_mean is None or target is None else core_mean - target
    floor = None
    floor_core = measurement_core(phantom.t1_ms, truth, phantom.pixel_spacing)
    if target is not None and floor_core.any():
        floor = float(phantom.t1_ms[floor_core].mean()) - target
    return SliceScore(
        method=method, seed=seed, field_strength_t=phantom.field_strength_t,
        level=phantom.level, spacing_mm=float(np.mean(phantom.pixel_spacing)),
        analysed=analysed,
        myocardium_dice=_dice(myo, true_myo),
        lv_dice=_dice(labels == Label.LV_BLOOD_POOL, truth == Label.LV_BLOOD_POOL),
        rv_dice=_dice(labels == Label.RV_BLOOD_POOL, truth == Label.RV_BLOOD_POOL),
        delta_t1_contour_ms=contour, delta_t1_core_ms=core_error,
        delta_t1_core_true_labels_ms=floor, uncertainty=uncertainty,
    )


def evaluate_phantoms(segmenters: Mapping[str, Segmenter], n_subjects: int = DEFAULT_SUBJECTS,
                      seed_start: int = EVAL_SEED_START,
                      realistic_border: bool = False) -> list[SliceScore]:
    """Score every method on the basal/mid/apical slices of ``n_subjects`` held-out subjects.

    With ``realistic_border`` the subjects come from :func:`realistic_border_subject`.
    """
    scores: list[SliceScore] = []
    subject = realistic_border_subject if realistic_border else phantom_subject
    for k in range(n_subjects):
        seed = seed_start + k
        slices = subject(seed)
        series = series_from_phantoms(slices, f"2.25.{seed}")
        for method, segmenter in segmenters.items():
            result = analyse(series, {"segmenter": segmenter})
            by_frame = {s.frame_index: s for s in result.slices}
            for index, phantom in enumerate(slices):
                failed = any(f.severity is Severity.FAILURE and f.frame_index == index
                             for f in result.qc_flags)
                found = by_frame.get(index)
                labels = (found.labels if found is not None
                          else np.zeros(phantom.shape, np.uint8))
                core_mean = None
                uncertainty = None
                if found is not None and not failed:
                    core_mean = next((m.value for m in found.measurements
                                      if m.key == "myocardium_t1_mean_ms"), None)
                row: Mapping[str, Any] = next(
                    (r for r in result.extra["slices"] if r["frame_index"] == index), {})
                uncertainty = row.get("segmentation_uncertainty")
                score = _score_slice(method, seed, phantom, labels, core_mean,
                                     found is not None and not failed, uncertainty)
                septal = (result.extra.get("aha") or {}).get("septal_midwall")
                if phantom.level == "mid" and septal is not None:
                    target = _septal_truth(
                        phantom, conservative_core(phantom.labels, phantom.pixel_spacing))
                    if target is not None:
                        score.delta_t1_septal_midwall_ms = float(septal["mean"]) - target
                scores.append(score)
        logger.info("subject %d/%d done", k + 1, n_subjects)
    return scores


def long_axis_series(view: LongAxisSlice, uid: str) -> LoadedSeries:
    """A LoadedSeries of one four-chamber phantom view, named as scanners name it."""
    frame = SourceFrame(
        pixels=np.asarray(view.t1_ms, dtype=np.float32),
        sop_instance_uid=f"{uid}.1",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        frame_number=None,
        image_position=(0.0, 0.0, 0.0),
        image_orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        pixel_spacing=view.pixel_spacing,
        slice_thickness=8.0,
        units="ms",
        attributes={"InstanceNumber": 1},
    )
    header = {"Modality": "MR", "MagneticFieldStrength": view.field_strength_t,
              "SeriesDescription": "MOLLI_5(3)3_4CH_T1MAP"}
    return LoadedSeries(f"{uid}.0", f"{uid}.1", (frame,), header)


def _wall_targets(view: LongAxisSlice) -> dict[str, tuple[float | None, float | None]]:
    """Per wall: (tissue T1 over the true-label core, map mean over that core)."""
    truth = view.labels
    core = conservative_core(truth, view.pixel_spacing)
    geometry = wall_geometry(truth, view.pixel_spacing)
    out: dict[str, tuple[float | None, float | None]] = {"septal": (None, None),
                                                          "lateral": (None, None)}
    if geometry is None:
        return out
    rendered = view.rendered.rendered
    rise = np.asarray(rendered.lesion_fraction * rendered.lesion_rise_ms, dtype=np.float64)
    for name, mask in zip(("septal", "lateral"), geometry.wall_masks(core), strict=True):
        if mask.any():
            target = view.truth[f"{name}_t1_true_ms"] + float(rise[mask].mean())
            out[name] = (target, float(view.t1_ms[mask].mean()))
    return out


def evaluate_long_axis(segmenters: Mapping[str, Segmenter], n_views: int = DEFAULT_SUBJECTS,
                       seed_start: int = LONG_AXIS_EVAL_SEED_START) -> list[SliceScore]:
    """Score every method on ``n_views`` held-out four-chamber views (level ``"4ch"``).

    Dice as for short-axis slices; |ΔT1| core is the mean of the septal and lateral errors
    of the analysis' wall values (:mod:`plugins.t1map.long_axis`), each against the tissue
    T1 over the true-label core of that wall; the floor is the same with the true labels.
    """
    scores: list[SliceScore] = []
    for k in range(n_views):
        seed = seed_start + k
        view = phantom_long_axis(seed)
        series = long_axis_series(view, f"2.25.{seed}")
        targets = _wall_targets(view)
        for method, segmenter in segmenters.items():
            result = analyse(series, {"segmenter": segmenter})
            found = result.slices[0] if result.slices else None
            labels = found.labels if found is not None else np.zeros(view.shape, np.uint8)
            values = {m.key: m.value for m in found.measurements} if found is not None else {}
            errors: dict[str, float | None] = {}
            floors = []
            for wall in ("septal", "lateral"):
                target, floor = targets[wall]
                value = values.get(f"{wall}_t1_mean_ms")
                errors[wall] = None if value is None or target is None else value - target
                if floor is not None and target is not None:
                    floors.append(floor - target)
            measured = [e for e in errors.values() if e is not None]
            row: Mapping[str, Any] = result.extra["slices"][0] if result.extra["slices"] else {}
            truth = view.labels
            myo, true_myo = labels == Label.MYOCARDIUM, truth == Label.MYOCARDIUM
            scores.append(SliceScore(
                method=method, seed=seed, field_strength_t=view.field_strength_t,
                level=LEVEL_4CH, spacing_mm=float(np.mean(view.pixel_spacing)),
                analysed=bool(measured),
                myocardium_dice=_dice(myo, true_myo),
                lv_dice=_dice(labels == Label.LV_BLOOD_POOL, truth == Label.LV_BLOOD_POOL),
                rv_dice=_dice(labels == Label.RV_BLOOD_POOL, truth == Label.RV_BLOOD_POOL),
                delta_t1_contour_ms=(float(view.t1_ms[myo].mean() - view.t1_ms[true_myo].mean())
                                     if myo.any() else None),
                delta_t1_core_ms=float(np.mean(measured)) if measured else None,
                delta_t1_core_true_labels_ms=float(np.mean(floors)) if floors else None,
                uncertainty=row.get("segmentation_uncertainty"),
                delta_t1_septal_ms=errors["septal"], delta_t1_lateral_ms=errors["lateral"],
            ))
        logger.info("4ch view %d/%d done", k + 1, n_views)
    return scores


def _mean_abs(values: Sequence[float | None]) -> float | None:
    kept = [abs(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _has_level(score: SliceScore, level: str) -> bool:
    return score.level == level


def _is_short_axis(score: SliceScore) -> bool:
    return score.level != LEVEL_4CH


def _has_field(score: SliceScore, field: float) -> bool:
    return score.field_strength_t == field


def summarise(scores: Sequence[SliceScore]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method, per group (all, level, field strength): Dice and |ΔT1| statistics."""
    groups: dict[str, Callable[[SliceScore], bool]] = {"all": lambda s: True}
    groups["short axis"] = _is_short_axis
    for level in ("basal", "mid", "apical", LEVEL_4CH):
        groups[level] = functools.partial(_has_level, level=level)
    for field in (1.5, 3.0):
        groups[f"{field:g} T"] = functools.partial(_has_field, field=field)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method in sorted({s.method for s in scores}):
        summary[method] = {}
        for name, keep in groups.items():
            rows = [s for s in scores if s.method == method and keep(s)]
            if not rows:
                continue
            dice = np.array([s.myocardium_dice for s in rows])
            contour = [s.delta_t1_contour_ms for s in rows]
            core = [s.delta_t1_core_ms for s in rows if s.analysed]
            signed = [c for c in core if c is not None]
            septal = [s.delta_t1_septal_midwall_ms for s in rows
                      if s.delta_t1_septal_midwall_ms is not None]
            summary[method][name] = {
                "slices": len(rows),
                "analysed": sum(s.analysed for s in rows),
                "myocardium_dice_mean": round(float(dice.mean()), 4),
                "myocardium_dice_sd": round(float(dice.std()), 4),
                "myocardium_dice_p10": round(float(np.percentile(dice, 10)), 4),
                "lv_dice_mean": round(float(np.mean([s.lv_dice for s in rows])), 4),
                "rv_dice_mean": round(float(np.mean([s.rv_dice for s in rows])), 4),
                "abs_delta_t1_contour_ms": _round(_mean_abs(contour)),
                "delta_t1_contour_bias_ms": _round(_mean([c for c in contour
                                                          if c is not None])),
                "abs_delta_t1_core_ms": _round(_mean_abs(core)),
                "delta_t1_core_bias_ms": _round(_mean(signed)),
                "delta_t1_core_min_ms": _round(min(signed)) if signed else None,
                "delta_t1_core_max_ms": _round(max(signed)) if signed else None,
                "delta_t1_septal_midwall_bias_ms": _round(_mean(septal)),
                "abs_delta_t1_septal_midwall_ms": _round(_mean_abs(septal)),
                "abs_delta_t1_core_true_labels_ms": _round(_mean_abs(
                    [s.delta_t1_core_true_labels_ms for s in rows if s.analysed])),
                "uncertainty_mean": _round(_mean([s.uncertainty for s in rows
                                                  if s.uncertainty is not None]), 3),
            }
            if name == LEVEL_4CH:
                summary[method][name]["abs_delta_t1_septal_ms"] = _round(_mean_abs(
                    [s.delta_t1_septal_ms for s in rows]))
                summary[method][name]["abs_delta_t1_lateral_ms"] = _round(_mean_abs(
                    [s.delta_t1_lateral_ms for s in rows]))
    return summary


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def benchmark(weights: Path = DEFAULT_WEIGHTS, n_slices: int = 20) -> dict[str, float]:
    """ms per slice of :meth:`UNetT1Segmenter.segment` and peak RSS, on one thread.

    Run in a fresh process (see :func:`main`) so the memory figure is the model's own.
    """
    slices = [p for k in range(n_slices // 3 + 1) for p in phantom_subject(EVAL_SEED_START + k)]
    return benchmark_segment(
        lambda: UNetT1Segmenter(weights),
        [(p.t1_ms, p.pixel_spacing, p.field_strength_t) for p in slices[:n_slices]])


def cine_as_t1(image: npt.NDArray[np.generic], labels: npt.NDArray[np.uint8]
               ) -> npt.NDArray[np.float32]:
    """Linear remap of a cine frame so that its myocardium and LV blood look like T1 in ms.

    Uses the reference labels to anchor the mapping (median myocardium ->
    :data:`CINE_MYOCARDIUM_MS`, median blood -> :data:`CINE_BLOOD_MS`); a sanity check only.
    """
    x = np.asarray(image, dtype=np.float64)
    myo = float(np.median(x[labels == Label.MYOCARDIUM]))
    blood = float(np.median(x[labels == Label.LV_BLOOD_POOL]))
    gain = (CINE_BLOOD_MS - CINE_MYOCARDIUM_MS) / max(blood - myo, 1e-6)
    return np.clip(CINE_MYOCARDIUM_MS + (x - myo) * gain, 0.0, 4095.0).astype(np.float32)


def evaluate_sunnybrook(segmenters: Mapping[str, Segmenter], path: Path = SUNNYBROOK
                        ) -> dict[str, dict[str, float]]:
    """Myocardium and LV Dice on the real Sunnybrook cine subset (remapped to T1-like values)."""
    data = np.load(path)
    result: dict[str, dict[str, float]] = {}
    for method, segmenter in segmenters.items():
        myo_scores, lv_scores, found = [], [], 0
        for image, truth, spacing in zip(data["images"], data["labels"], data["spacing_mm"],
                                         strict=True):
            t1 = cine_as_t1(image, truth)
            output = segmenter.segment(t1, (float(spacing), float(spacing)), 1.5)
            found += int((output.labels == Label.MYOCARDIUM).any())
            myo_scores.append(_dice(output.labels == Label.MYOCARDIUM,
                                    truth == Label.MYOCARDIUM))
            lv_scores.append(_dice(output.labels == Label.LV_BLOOD_POOL,
                                   truth == Label.LV_BLOOD_POOL))
        result[method] = {
            "slices": len(myo_scores),
            "segmented": found,
            "myocardium_dice_mean": round(float(np.mean(myo_scores)), 4),
            "myocardium_dice_median": round(float(np.median(myo_scores)), 4),
            "lv_dice_mean": round(float(np.mean(lv_scores)), 4),
        }
    return result


def _table(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    lines = [
        "| method | group | slices | analysed | myo Dice mean ± SD | myo Dice p10 | LV Dice | "
        "RV Dice | mean \\|ΔT1\\| contour (ms) | ΔT1 contour bias (ms) | "
        "mean \\|ΔT1\\| core (ms) | ΔT1 core bias [min, max] (ms) | "
        "core floor, true labels (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, groups in summary.items():
        for name, g in groups.items():
            lines.append(
                f"| {method} | {name} | {g['slices']} | {g['analysed']} | "
                f"{g['myocardium_dice_mean']:.3f} ± {g['myocardium_dice_sd']:.3f} | "
                f"{g['myocardium_dice_p10']:.3f} | {g['lv_dice_mean']:.3f} | "
                f"{g['rv_dice_mean']:.3f} | {g['abs_delta_t1_contour_ms']} | "
                f"{g['delta_t1_contour_bias_ms']} | {g['abs_delta_t1_core_ms']} | "
                f"{g['delta_t1_core_bias_ms']} [{g['delta_t1_core_min_ms']}, "
                f"{g['delta_t1_core_max_ms']}] | {g['abs_delta_t1_core_true_labels_ms']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = evaluation_parser(__doc__.splitlines()[0], DEFAULT_WEIGHTS)
    parser.add_argument("--subjects", type=int, default=DEFAULT_SUBJECTS)
    parser.add_argument("--long-axis-views", type=int, default=DEFAULT_SUBJECTS,
                        help="held-out four-chamber views to score (0: none)")
    parser.add_argument("--no-classical", action="store_true")
    parser.add_argument("--border", choices=("plain", "realistic", "both"), default="plain",
                        help="phantom borders: the training renderer's, realistic ones "
                        "(slice thickness, endocardial motion, trabeculae), or both")
    args = parser.parse_args(argv)
    start_evaluation()
    if args.benchmark:
        print(json.dumps(benchmark(args.weights)))
        return
    unet = UNetT1Segmenter(args.weights)
    segmenters: dict[str, Segmenter] = {"U-Net": unet}
    if not args.no_classical:
        segmenters["classical"] = ClassicalSegmenter()
    started = time.perf_counter()
    scores = (evaluate_phantoms(segmenters, args.subjects)
              if args.border in ("plain", "both") else [])
    if args.long_axis_views > 0 and args.border != "realistic":
        scores += evaluate_long_axis(segmenters, args.long_axis_views)
    summary = summarise(scores)
    realistic = (summarise(evaluate_phantoms(segmenters, args.subjects,
                                             realistic_border=True))
                 if args.border in ("realistic", "both") else {})
    sunnybrook = evaluate_sunnybrook(segmenters) if SUNNYBROOK.exists() else {}
    bench = json.loads(subprocess.run(
        [sys.executable, "-m", "models.evaluation.t1seg.evaluate", "--benchmark", "--weights",
         str(args.weights)], check=True,
        capture_output=True, text=True).stdout.strip().splitlines()[-1])
    evaluation = {
        "held_out_seeds": [EVAL_SEED_START, EVAL_SEED_START + args.subjects - 1],
        "held_out_slices": len(scores) // len(segmenters),
        **({"held_out_long_axis_seeds": [LONG_AXIS_EVAL_SEED_START,
                                         LONG_AXIS_EVAL_SEED_START + args.long_axis_views - 1]}
           if args.long_axis_views > 0 else {}),
        "phantoms": summary,
        **({"phantoms_realistic_border": realistic} if realistic else {}),
        "sunnybrook_cine_remapped": sunnybrook,
        "benchmark": bench,
        "minutes": round((time.perf_counter() - started) / 60.0, 1),
        "command": "python -m models.evaluation.t1seg.evaluate",
    }
    if not args.no_write:
        metadata = args.weights.with_suffix(".json")
        record = json.loads(metadata.read_text())
        record["evaluation"] = evaluation
        metadata.write_text(json.dumps(record, indent=2) + "\n")
    print(_table(summary))
    if realistic:
        print()
        print("Realistic myocardial borders (slice thickness, endocardial motion, trabeculae):")
        print(_table(realistic))
    for method, groups in summary.items():
        if LEVEL_4CH in groups:
            g = groups[LEVEL_4CH]
            print(f"{method} 4ch: mean |ΔT1| septal {g['abs_delta_t1_septal_ms']} ms, "
                  f"lateral {g['abs_delta_t1_lateral_ms']} ms")
    print()
    print("Sunnybrook cine (real anatomy, intensities remapped; NOT T1):")
    print(json.dumps(sunnybrook, indent=2))
    print("Inference benchmark:", json.dumps(bench))
    worst = sorted((s for s in scores if s.method == "U-Net"),
                   key=lambda s: s.myocardium_dice)[:5]
    print("Worst U-Net slices:", json.dumps([asdict(s) for s in worst], indent=1))


if __name__ == "__main__":
    main()
