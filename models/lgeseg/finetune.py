"""Site fine-tuning of the two-stage LGE segmenter on a site's own labelled slices.

``python -m models.lgeseg.finetune --images DIR --labels DIR --out site_segment.pt``
adapts the segmenter stage (the localiser is kept) to PNG slices with label PNGs of the same
name (EMIDEC convention by default: 0 background, 1 LV cavity, 2 myocardium, 3 infarct,
4 MVO; the ``label_map`` argument of :func:`load_pairs` for others).  Training samples
are heart-centred crops of the real images with the same geometric jitter as the
sim-to-real training (rotation, mirroring, crop size and centre as a localiser errs) and
mild intensity changes (gamma, noise).
Background within ``--unknown-near-mm`` millimetres of the myocardium can be left *unknown* for the
loss (default 0: the site's background, its RV included, counts as background).  The
weights are written with a provenance JSON: the base weights'
SHA-256, the SHA-256 of the training data, the number of cases and slices, the command and
the validation figures if a validation set was given.  They stay at the site: select them
with ``TwoStageLgeSegmenter(segmenter=PATH)``; every output names the weights' version and
SHA-256.

``--cross-validate K`` shows what fine-tuning buys on a labelled set: K folds by case, each
fine-tuned on the other cases and scored on its own (myocardium and scar Dice, slices
segmented); the fold weights are written under ``--out``'s directory and are never the
committed weights (on the EMIDEC dev split they must not be: its licence is NC-SA).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.lgeseg.evaluate_real import score_slice
from models.lgeseg.synth import (
    CROP_FACTOR,
    IGNORE,
    SEGMENT_GRID,
    heart_centre_and_diameter,
    normalise_grid,
)
from models.lgeseg.two_stage import DEFAULT_LOCATOR, DEFAULT_SEGMENTER, TwoStageLgeSegmenter
from models.segmentation import cosine_learning_rate, sha256_of
from plugins.api import Label

logger = logging.getLogger(__name__)

__all__ = ["EMIDEC_LABELS", "Pair", "cross_validate", "finetune", "load_pairs"]

EMIDEC_LABELS: Final = {0: int(Label.BACKGROUND), 1: int(Label.LV_BLOOD_POOL),
                        2: int(Label.MYOCARDIUM), 3: int(Label.SCAR), 4: int(Label.MVO)}
"""Site label value -> :class:`plugins.api.Label` (EMIDEC convention)."""
UNKNOWN_NEAR_MYOCARDIUM_MM: Final = 0.0
"""Default distance from the myocardium within which background is unknown for the loss.
0: all background counts (a first cross-validation with 30 mm, meant to spare an unlabelled
RV, let the network thicken the myocardium: Dice 0.31 against 0.40 without fine-tuning)."""
ASSUMED_SPACING_MM: Final = 1.25
_CASE = re.compile(r"^(.*?)_slice\d+\.png$")

Pair = tuple[str, str, npt.NDArray[np.float32], npt.NDArray[np.uint8]]
"""(case, file name, image, labels in :class:`plugins.api.Label` values)."""


def load_pairs(images: Path, labels: Path, label_map: Mapping[int, int] = EMIDEC_LABELS
               ) -> list[Pair]:
    """Every image PNG with a label PNG of the same name; case = name before ``_slice``."""
    from PIL import Image

    pairs: list[Pair] = []
    for path in sorted(images.glob("*.png")):
        label_path = labels / path.name
        if not label_path.exists():
            continue
        raw = np.asarray(Image.open(label_path), dtype=np.uint8)
        lut = np.zeros(256, dtype=np.uint8)
        for site, ours in label_map.items():
            lut[site] = ours
        match = _CASE.match(path.name)
        pairs.append((match.group(1) if match else path.stem, path.name,
                      np.asarray(Image.open(path).convert("L"), dtype=np.float32), lut[raw]))
    return pairs


def data_sha256(pairs: Sequence[Pair]) -> str:
    """SHA-256 over the names, images and labels of the training pairs."""
    digest = hashlib.sha256()
    for _, name, image, labels in pairs:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def real_sample(rng: np.random.Generator, image: npt.NDArray[np.float32],
                labels: npt.NDArray[np.uint8], spacing_mm: float,
                unknown_near_mm: float = UNKNOWN_NEAR_MYOCARDIUM_MM,
                ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """A jittered heart-centred crop of a real slice and its target (unknown = 255)."""
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
    return normalise_grid(crop), np.asarray(target, dtype=np.uint8)


def finetune(pairs: Sequence[Pair], out: Path, *, base: Path = DEFAULT_SEGMENTER,
             steps: int = 300, learning_rate: float = 5e-4, batch_size: int = 8,
             seed: int = 0, spacing_mm: float = ASSUMED_SPACING_MM,
             validation: Mapping[str, Any] | None = None,
             freeze_batch_norm: bool = True,
             unknown_near_mm: float = UNKNOWN_NEAR_MYOCARDIUM_MM) -> dict[str, Any]:
    """Fine-tune the segmenter stage from ``base`` on ``pairs``; write ``out`` + JSON.

    ``freeze_batch_norm`` keeps the base network's batch-norm statistics (small site sets).
    """
    import torch

    from models.lgeseg.train_real import masked_loss
    from models.segmentation import load_unet

    torch.manual_seed(seed)
    model, base_record, base_sha = load_unet(base, base.with_suffix(".json"))
    model.train()
    if freeze_batch_norm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    usable = [p for p in pairs if heart_centre_and_diameter(p[3]) is not None]
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    started = time.perf_counter()
    for step in range(steps):
        chosen = [usable[int(i)] for i in rng.integers(0, len(usable), batch_size)]
        samples = [real_sample(rng, p[2], p[3], spacing_mm, unknown_near_mm)
                   for p in chosen]
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
    record = dict(base_record)
    record.pop("history", None)
    record.update({
        "model_version": f"{base_record['model_version']}+site",
        "weights_file": out.name,
        "weights_sha256": sha256_of(out),
        "base_weights_sha256": base_sha,
        "base_model_version": base_record["model_version"],
        "site_data_sha256": data_sha256(usable),
        "site_cases": len({p[0] for p in usable}),
        "site_slices": len(usable),
        "finetune_steps": steps,
        "freeze_batch_norm": freeze_batch_norm,
        "unknown_near_myocardium_mm": unknown_near_mm,
        "finetune_minutes": round((time.perf_counter() - started) / 60.0, 1),
        "command": "python -m models.lgeseg.finetune " + " ".join(sys.argv[1:]),
        "validation": dict(validation) if validation is not None else None,
        "note": "site weights: not for redistribution beyond the licence of the site data",
    })
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _score(segmenter: TwoStageLgeSegmenter, pairs: Sequence[Pair], spacing_mm: float
           ) -> list[dict[str, Any]]:
    back = {int(v): k for k, v in EMIDEC_LABELS.items()}
    lut = np.zeros(256, dtype=np.uint8)
    for ours, site in back.items():
        lut[ours] = site
    rows = []
    for case, name, image, labels in pairs:
        row = score_slice(segmenter, case, 0, image, lut[labels], spacing_mm)
        rows.append({"case": case, "name": name, "segmented": row.segmented,
                     "myo_dice": row.myo_dice, "scar_dice": row.scar_dice})
    return rows


def cross_validate(pairs: Sequence[Pair], folds: int, out_dir: Path, *, steps: int,
                   spacing_mm: float = ASSUMED_SPACING_MM,
                   unknown_near_mm: float = UNKNOWN_NEAR_MYOCARDIUM_MM) -> dict[str, Any]:
    """K-fold (by case) fine-tuning and scoring, base model scored on the same folds."""
    cases = sorted({p[0] for p in pairs})
    base = TwoStageLgeSegmenter()
    results: list[dict[str, Any]] = []
    base_rows: list[dict[str, Any]] = []
    for fold in range(folds):
        test_cases = set(cases[fold::folds])
        train = [p for p in pairs if p[0] not in test_cases]
        test = [p for p in pairs if p[0] in test_cases]
        weights = out_dir / f"fold{fold}_segment.pt"
        finetune(train, weights, steps=steps, spacing_mm=spacing_mm, seed=fold,
                 unknown_near_mm=unknown_near_mm)
        tuned = TwoStageLgeSegmenter(DEFAULT_LOCATOR, weights)
        rows = _score(tuned, test, spacing_mm)
        base_rows += _score(base, test, spacing_mm)
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

    return {"folds": folds, "steps": steps, "fine_tuned": summary(results),
            "base": summary(base_rows), "slices": results}


def main(argv: list[str] | None = None) -> None:
    """Command line: fine-tune, or cross-validate fine-tuning."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--spacing", type=float, default=ASSUMED_SPACING_MM)
    parser.add_argument("--cross-validate", type=int, default=0, metavar="K")
    parser.add_argument("--unknown-near-mm", type=float, default=UNKNOWN_NEAR_MYOCARDIUM_MM)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)
    pairs = load_pairs(args.images, args.labels)
    if args.cross_validate:
        result = cross_validate(pairs, args.cross_validate, args.out.parent, steps=args.steps,
                                spacing_mm=args.spacing, unknown_near_mm=args.unknown_near_mm)
        args.out.with_suffix(".cv.json").write_text(json.dumps(result, indent=2) + "\n")
        logger.info("base %s; fine-tuned %s", result["base"], result["fine_tuned"])
        return
    record = finetune(pairs, args.out, steps=args.steps, spacing_mm=args.spacing,
                      unknown_near_mm=args.unknown_near_mm)
    logger.info("wrote %s (SHA-256 %s)", args.out, record["weights_sha256"])


if __name__ == "__main__":
    main()
