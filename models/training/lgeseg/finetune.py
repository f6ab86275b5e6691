"""Site fine-tuning of the two-stage LGE segmenter on a site's own labelled slices.

``cmr-node models finetune --images DIR [--labels DIR] --out site_segment.pt`` (or
``python -m models.training.lgeseg.finetune`` with the same arguments) adapts the segmenter stage
(the localiser is kept) to a site's labelled slices: PNG slices with label PNGs, NIfTI images
with NIfTI masks, or DICOM SEG objects with their source images
(:mod:`models.training.lgeseg.site_data`; EMIDEC label values by default, ``--label-map`` for
others).  Training samples are heart-centred crops of the real images with the same
geometric jitter as the sim-to-real training (rotation, mirroring, crop size and centre as a
localiser errs) and mild intensity changes (gamma, noise); ``--corruption-share`` of them also
get the sim-to-real training's image corruptions (resolution, blur, bias field, ghosts,
noise, gamma, 8-bit quantisation), so that the network does not learn the few training
cases' appearance.  ``--batch-norm trained`` adapts the batch-norm statistics to the site's
images.
Background within ``--unknown-near-mm`` millimetres of the myocardium can be left *unknown* for the
loss (default 0: the site's background, its RV included, counts as background).  The
weights are written with a provenance JSON: the base weights'
SHA-256, the SHA-256 of the training data, the number of cases and slices, the steps, the
command, the date and the validation figures (the cross-validation's, with
``--cross-validate``).  They stay at the site: select them with ``[analysis.lge] segmenter =
"two-stage"`` and ``segmenter_weights = PATH`` (:mod:`models.runtime.lgeseg.site_weights`); every
output names the weights' version and SHA-256.

``--cross-validate K`` shows what fine-tuning buys on a labelled set: K folds by case, each
fine-tuned on the other cases and scored on its own (myocardium and scar Dice, slices
segmented); then the weights are fine-tuned on every case with those figures in their
record.  The fold weights are written under ``--out``'s directory and are never the
committed weights (on the EMIDEC dev split they must not be: its licence is NC-SA).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.runtime.lgeseg.two_stage import (
    CROP_FACTOR,
    DEFAULT_LOCATOR,
    DEFAULT_SEGMENTER,
    SEGMENT_GRID,
    TwoStageLgeSegmenter,
    normalise_grid,
)
from models.runtime.segmentation import sha256_of
from models.training.lgeseg.real_scores import score_output
from models.training.lgeseg.site_data import (
    EMIDEC_LABELS,
    SiteDataError,
    SitePair,
    load_png,
    load_site_data,
    parse_label_map,
)
from models.training.lgeseg.synth import IGNORE, corrupt, heart_centre_and_diameter
from models.training.loop import cosine_learning_rate
from plugins.api import Label
from plugins.lge.segmenter import LgeContrast

logger = logging.getLogger(__name__)

__all__ = ["EMIDEC_LABELS", "Pair", "add_arguments", "cross_validate", "finetune",
           "load_pairs", "run"]

UNKNOWN_NEAR_MYOCARDIUM_MM: Final = 0.0
"""Default distance from the myocardium within which background is unknown for the loss.
0: all background counts (a first cross-validation with 30 mm, meant to spare an unlabelled
RV, let the network thicken the myocardium: Dice 0.31 against 0.40 without fine-tuning)."""
ASSUMED_SPACING_MM: Final = 1.25
"""Pixel spacing of slices whose format carries none (PNG)."""
STEPS: Final = 2000
"""Default number of fine-tuning steps (batches of 8; about 9 min on one core).  Chosen by
5-fold cross-validation on the EMIDEC dev split (``models/README.md``): 2,000 steps at
1e-3 with trained batch norm 0.783 myocardium Dice, 120 steps at 5e-4 with frozen batch
norm 0.730, the base 0.729; 4,000 steps gained 0.004 on one fold."""
LEARNING_RATE: Final = 1e-3
"""Default peak learning rate (AdamW, cosine schedule after 20 warm-up steps)."""
FREEZE_BATCH_NORM: Final = False
"""Default: adapt the batch-norm statistics to the site's images (``--batch-norm trained``)."""
CORRUPTION_SHARE: Final = 0.0
"""Default share of training crops given the sim-to-real image corruptions."""
OUR_MYO: Final = (int(Label.MYOCARDIUM), int(Label.SCAR), int(Label.MVO))
OUR_SCAR: Final = (int(Label.SCAR), int(Label.MVO))

Pair = SitePair
"""One labelled slice (:class:`models.training.lgeseg.site_data.SitePair`)."""
load_pairs = load_png
"""PNG slices and label PNGs (:func:`models.training.lgeseg.site_data.load_png`)."""


def _as_pairs(pairs: Sequence[Sequence[Any]]) -> list[SitePair]:
    """:class:`SitePair` rows (plain ``(case, name, image, labels)`` tuples accepted)."""
    return [p if isinstance(p, SitePair) else SitePair(*p) for p in pairs]


def data_sha256(pairs: Sequence[Sequence[Any]]) -> str:
    """SHA-256 over the names, images and labels of the training pairs."""
    digest = hashlib.sha256()
    for _, name, image, labels, _spacing in _as_pairs(pairs):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def real_sample(rng: np.random.Generator, image: npt.NDArray[np.float32],
                labels: npt.NDArray[np.uint8], spacing_mm: float,
                unknown_near_mm: float = UNKNOWN_NEAR_MYOCARDIUM_MM,
                corruption_share: float = 0.0,
                ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """A jittered heart-centred crop of a real slice and its target (unknown = 255);
    ``corruption_share`` of the crops also get the sim-to-real training's image corruptions
    (:func:`models.training.lgeseg.synth.corrupt`)."""
    found = heart_centre_and_diameter(labels)
    if found is None:
        raise ValueError("slice without a labelled heart")
    (row, col), diameter = found
    size = diameter * math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
    centre = np.array([row + rng.uniform(-0.15, 0.15) * diameter,
                       col + rng.uniform(-0.15, 0.15) * diameter])
    angle = rng.uniform(0.0, 2.0 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) * (CROP_FACTOR * size / SEGMENT_GRID)
    if rng.random() < 0.5:
        matrix = matrix @ np.diag([1.0, -1.0])
    offset = centre - matrix @ np.full(2, (SEGMENT_GRID - 1) / 2.0)
    out = (SEGMENT_GRID, SEGMENT_GRID)
    near = ndimage.distance_transform_edt(labels != Label.MYOCARDIUM) * spacing_mm < \
        unknown_near_mm
    target = np.where((labels == Label.BACKGROUND) & near, IGNORE, labels).astype(np.uint8)
    crop = ndimage.affine_transform(image, matrix, offset, out, order=1,
                                    cval=float(image.min()))
    target = ndimage.affine_transform(target, matrix, offset, out, order=0, cval=0)
    crop = crop - float(crop.min())
    crop = crop ** math.exp(rng.normal(0.0, 0.2))
    crop = crop + rng.uniform(0.0, 0.03) * float(crop.max() or 1.0) * rng.standard_normal(out)
    grid = normalise_grid(crop)
    if corruption_share > 0.0 and rng.random() < corruption_share:
        grid = normalise_grid(corrupt(rng, grid - float(grid.min()), np.zeros(out, dtype=bool)))
    return grid, np.asarray(target, dtype=np.uint8)


def finetune(pairs: Sequence[Sequence[Any]], out: Path, *, base: Path = DEFAULT_SEGMENTER,
             steps: int = STEPS, learning_rate: float = LEARNING_RATE, batch_size: int = 8,
             seed: int = 0, spacing_mm: float = ASSUMED_SPACING_MM,
             validation: Mapping[str, Any] | None = None,
             freeze_batch_norm: bool = FREEZE_BATCH_NORM,
             unknown_near_mm: float = UNKNOWN_NEAR_MYOCARDIUM_MM,
             corruption_share: float = CORRUPTION_SHARE,
             command: str | None = None, data_kind: str | None = None) -> dict[str, Any]:
    """Fine-tune the segmenter stage from ``base`` on ``pairs``; write ``out`` + JSON.

    ``spacing_mm`` is used for pairs without their own; ``freeze_batch_norm`` keeps the base
    network's batch-norm statistics instead of adapting them to the site's images;
    ``corruption_share`` of the crops get the sim-to-real corruptions; ``command`` and
    ``data_kind`` are recorded as given.
    """
    import torch

    from models.runtime.segmentation import load_unet
    from models.training.lgeseg.train_real import masked_loss

    if not 0.0 <= corruption_share <= 1.0:
        raise SiteDataError(f"the corruption share must lie in [0, 1], not {corruption_share}")
    torch.manual_seed(seed)
    model, base_record, base_sha = load_unet(base, base.with_suffix(".json"))
    model.train()
    if freeze_batch_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    usable = [p for p in _as_pairs(pairs) if heart_centre_and_diameter(p.labels) is not None]
    if not usable:
        raise SiteDataError("no slice has a labelled heart (LV blood pool and myocardium) "
                            "large enough to train on")
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    started = time.perf_counter()
    for step in range(steps):
        chosen = [usable[int(i)] for i in rng.integers(0, len(usable), batch_size)]
        samples = [real_sample(rng, p.image, p.labels, p.spacing_mm or spacing_mm,
                               unknown_near_mm, corruption_share) for p in chosen]
        x = torch.from_numpy(np.stack([s[0] for s in samples])[:, None])
        y = torch.from_numpy(np.stack([s[1] for s in samples]).astype(np.int64))
        for group in optimiser.param_groups:
            group["lr"] = cosine_learning_rate(step, learning_rate, 20, steps)
        loss = masked_loss(model(x), y, "segment")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if (step + 1) % 50 == 0:
            logger.info("fine-tuning step %d/%d loss %.3f", step + 1, steps, loss.item())
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    kept = ("model_name", "stage", "architecture", "parameters", "mvo_output", "locator")
    base_rest = {k: v for k, v in base_record.items() if k not in kept and k != "history"}
    record = {k: base_record[k] for k in kept if k in base_record}
    record.update({
        "model_version": f"{base_record['model_version']}+site",
        "weights_file": out.name,
        "weights_sha256": sha256_of(out),
        "base_weights_sha256": base_sha,
        "base_model_version": base_record["model_version"],
        "site_data_sha256": data_sha256(usable),
        "site_data_kind": data_kind,
        "site_cases": len({p.case for p in usable}),
        "site_slices": len(usable),
        "finetune_steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "freeze_batch_norm": freeze_batch_norm,
        "corruption_share": corruption_share,
        "unknown_near_myocardium_mm": unknown_near_mm,
        "finetune_minutes": round((time.perf_counter() - started) / 60.0, 1),
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "validation": dict(validation) if validation is not None else None,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "note": "site weights: not for redistribution beyond the licence of the site data",
        "base_record": base_rest,
    })
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _score(segmenter: TwoStageLgeSegmenter, pairs: Sequence[Pair], spacing_mm: float
           ) -> list[dict[str, Any]]:
    """Each case's slices segmented as one stack, as the LGE analysis does
    (:meth:`~models.runtime.lgeseg.two_stage.TwoStageLgeSegmenter.segment_stack`), in file-name
    order (the slice index of PNG and NIfTI names; SEG sources, named by UID, are then in no
    anatomical order, which only weakens the stack chain), and scored per slice."""
    rows = []
    by_case: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_case.setdefault(pair.case, []).append(pair)
    for case, stack in by_case.items():
        stack = sorted(stack, key=lambda pair: pair.name)
        spacings = [(p.spacing_mm or spacing_mm, p.spacing_mm or spacing_mm) for p in stack]
        outputs = segmenter.segment_stack([p.image for p in stack], spacings,
                                          LgeContrast.MAGNITUDE)
        for output, pair, spacing in zip(outputs, stack, spacings, strict=True):
            row = score_output(output, case, 0, pair.labels, OUR_MYO, OUR_SCAR, pair.image,
                               spacing[0])
            rows.append({"case": case, "name": pair.name, "segmented": row.segmented,
                         "myo_dice": row.myo_dice, "scar_dice": row.scar_dice})
    return rows


def cross_validate(pairs: Sequence[Sequence[Any]], folds: int, out_dir: Path, *, steps: int,
                   base: Path = DEFAULT_SEGMENTER, batch_size: int = 8,
                   spacing_mm: float = ASSUMED_SPACING_MM,
                   unknown_near_mm: float = UNKNOWN_NEAR_MYOCARDIUM_MM,
                   learning_rate: float = LEARNING_RATE,
                   freeze_batch_norm: bool = FREEZE_BATCH_NORM,
                   corruption_share: float = CORRUPTION_SHARE,
                   command: str | None = None) -> dict[str, Any]:
    """K-fold (by case) fine-tuning from ``base`` and scoring, ``base`` scored on the same
    folds; fold weights ``fold<k>_segment.pt`` in ``out_dir`` (``command`` and the fold in
    their records)."""
    pairs = _as_pairs(pairs)
    cases = sorted({p.case for p in pairs})
    if len(cases) < folds:
        raise SiteDataError(f"{folds}-fold cross-validation needs at least {folds} cases, "
                            f"got {len(cases)}")
    base_segmenter = TwoStageLgeSegmenter(DEFAULT_LOCATOR, base)
    results: list[dict[str, Any]] = []
    base_rows: list[dict[str, Any]] = []
    for fold in range(folds):
        test_cases = set(cases[fold::folds])
        train = [p for p in pairs if p.case not in test_cases]
        test = [p for p in pairs if p.case in test_cases]
        weights = out_dir / f"fold{fold}_segment.pt"
        finetune(train, weights, base=base, steps=steps, batch_size=batch_size,
                 spacing_mm=spacing_mm, seed=fold, unknown_near_mm=unknown_near_mm,
                 learning_rate=learning_rate, freeze_batch_norm=freeze_batch_norm,
                 corruption_share=corruption_share,
                 command=f"{command or 'cross_validate'} (fold {fold} of {folds}, test cases "
                         f"{', '.join(sorted(test_cases))})")
        tuned = TwoStageLgeSegmenter(DEFAULT_LOCATOR, weights)
        rows = _score(tuned, test, spacing_mm)
        base_rows += _score(base_segmenter, test, spacing_mm)
        for row in rows:
            row["fold"] = fold
        results += rows
        logger.info("fold %d: test cases %s, myo Dice %.3f", fold, sorted(test_cases),
                    float(np.mean([r["myo_dice"] for r in rows])))

    def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        scar = [r["scar_dice"] for r in rows if r["scar_dice"] is not None]
        return {"slices": len(rows), "segmented": int(sum(r["segmented"] for r in rows)),
                "myo_dice_mean": round(float(np.mean([r["myo_dice"] for r in rows])), 4),
                "scar_dice_mean": round(float(np.mean(scar)), 4) if scar else None}

    per_fold = [round(float(np.mean([r["myo_dice"] for r in results if r["fold"] == k])), 4)
                for k in range(folds)]
    return {"folds": folds, "steps": steps, "learning_rate": learning_rate,
            "freeze_batch_norm": freeze_batch_norm, "corruption_share": corruption_share,
            "fine_tuned": summary(results),
            "fine_tuned_myo_dice_per_fold": per_fold, "base": summary(base_rows),
            "slices": results}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The fine-tuning command's arguments (``cmr-node models finetune``)."""
    parser.add_argument("--images", type=Path, required=True,
                        help="PNG or NIfTI images, or DICOM SEG objects with their sources")
    parser.add_argument("--labels", type=Path,
                        help="label PNGs or NIfTI masks of the same names (not for DICOM SEG)")
    parser.add_argument("--format", dest="kind", default="auto",
                        choices=("auto", "png", "nifti", "dicom-seg"))
    parser.add_argument("--label-map", default=None, metavar="MAP",
                        help="site label value, segment number or segment label = lv | "
                        "myocardium | rv | scar | mvo | background, comma-separated "
                        "(default: EMIDEC values 1 LV, 2 myocardium, 3 scar, 4 MVO; SEG "
                        "segments by their codes)")
    parser.add_argument("--out", type=Path, required=True, help="weights file to write (.pt)")
    parser.add_argument("--base", type=Path, default=DEFAULT_SEGMENTER,
                        help="segmenter weights to start from (default: the committed ones)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE,
                        help="peak learning rate (AdamW, cosine schedule)")
    parser.add_argument("--batch-norm", choices=("frozen", "trained"),
                        default="frozen" if FREEZE_BATCH_NORM else "trained",
                        help="keep the base network's batch-norm statistics (frozen) or "
                        "adapt them to the site's images (trained)")
    parser.add_argument("--corruption-share", type=float, default=CORRUPTION_SHARE,
                        help="share of training crops also given the sim-to-real image "
                        "corruptions (resolution, blur, bias field, ghosts, noise, gamma, "
                        "8-bit quantisation)")
    parser.add_argument("--spacing", type=float, default=ASSUMED_SPACING_MM,
                        help="pixel spacing (mm) of slices without one (PNG)")
    parser.add_argument("--cross-validate", type=int, default=0, metavar="K",
                        help="K-fold cross-validation by case first; its figures go in the "
                        "provenance record")
    parser.add_argument("--unknown-near-mm", type=float, default=UNKNOWN_NEAR_MYOCARDIUM_MM)


def command_line(args: argparse.Namespace, program: str) -> str:
    """The command that gives ``args`` (recorded in the provenance)."""
    words = [program]
    for option in ("images", "labels", "kind", "label_map", "out", "base", "steps", "batch_size",
                   "learning_rate", "batch_norm", "corruption_share", "spacing",
                   "cross_validate", "unknown_near_mm"):
        value = getattr(args, option)
        if value is not None:
            flag = "--format" if option == "kind" else "--" + option.replace("_", "-")
            words += [flag, str(value)]
    return " ".join(words)


def run(args: argparse.Namespace, program: str) -> int:
    """Fine-tune (after cross-validating with ``--cross-validate``) as ``args`` say.

    Raises
    ------
    SiteDataError
        If the site data cannot be used.
    """
    import torch

    torch.set_num_threads(1)
    if args.out.resolve().parent == DEFAULT_SEGMENTER.resolve().parent:
        raise SiteDataError(f"site weights never go into {DEFAULT_SEGMENTER.parent}")
    label_map = parse_label_map(args.label_map) if args.label_map else None
    kind, pairs = load_site_data(args.kind, args.images, args.labels, label_map)
    logger.info("site data: %d slice(s) of %d case(s)", len(pairs), len({p.case for p in pairs}))
    validation = None
    if args.cross_validate:
        result = cross_validate(pairs, args.cross_validate, args.out.parent, steps=args.steps,
                                base=args.base, batch_size=args.batch_size,
                                spacing_mm=args.spacing, unknown_near_mm=args.unknown_near_mm,
                                learning_rate=args.learning_rate,
                                freeze_batch_norm=args.batch_norm == "frozen",
                                corruption_share=args.corruption_share,
                                command=command_line(args, program))
        args.out.with_suffix(".cv.json").write_text(json.dumps(result, indent=2) + "\n")
        logger.info("base %s; fine-tuned %s", result["base"], result["fine_tuned"])
        validation = {key: result[key] for key in
                      ("folds", "base", "fine_tuned", "fine_tuned_myo_dice_per_fold")}
    record = finetune(pairs, args.out, base=args.base, steps=args.steps,
                      batch_size=args.batch_size, learning_rate=args.learning_rate,
                      freeze_batch_norm=args.batch_norm == "frozen",
                      corruption_share=args.corruption_share, spacing_mm=args.spacing,
                      unknown_near_mm=args.unknown_near_mm,
                      validation=validation, command=command_line(args, program),
                      data_kind=kind)
    logger.info("wrote %s (SHA-256 %s)", args.out, record["weights_sha256"])
    return 0


def main(argv: list[str] | None = None) -> None:
    """``python -m models.training.lgeseg.finetune``: as ``cmr-node models finetune``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        sys.exit(run(args, "python -m models.training.lgeseg.finetune"))
    except SiteDataError as exc:
        logger.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
