"""Train the LGE U-Net on phantom stacks: ``python -m models.training.lgeseg.train``.

Reproducible: the phantom cache is rendered from fixed subject seeds, and the network
initialisation, batch order and augmentations come from fixed seeds; training runs on one
CPU thread.  The weights are written to ``models/weights/lge_unet.pt`` and their provenance
(generator fingerprint, seed ranges, settings, data sizes, SHA-256) to ``lge_unet.json``;
``python -m models.evaluation.lgeseg.evaluate`` adds the held-out metrics to that JSON.

Checkpoint selection uses validation stacks (seeds from
:data:`~models.training.lgeseg.data.VAL_SEED_START`) disjoint from both the training cache and the
evaluation set.  Whether microvascular obstruction is output as its own label is decided
here: only if the selected checkpoint reaches an MVO Dice of :data:`MIN_MVO_DICE` on the
validation stacks (otherwise MVO is merged into scar, and the record says so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional

from models.runtime.lgeseg.segmenter import (
    DEFAULT_METADATA,
    DEFAULT_WEIGHTS,
    GRID_SIZE,
    GRID_SPACING_MM,
    MODEL_NAME,
    MYOCARDIAL,
    N_CLASSES,
    NORMALISED_RANGE,
    PERCENTILES,
)
from models.runtime.unet import UNet, UNetConfig, count_parameters
from models.training.augment import augmented_batch, augmented_batches
from models.training.cache import cached_items
from models.training.cli import start_logging, training_parser
from models.training.lgeseg.data import (
    CHUNK_SUBJECTS,
    EVAL_SEED_START,
    GENERATOR_FILES,
    TRAIN_SEED_START,
    TRAIN_SLICES_PER_STACK,
    VAL_SEED_START,
    AugmentationSettings,
    augment,
    cached,
    eval_stack,
    generate_cache,
    generator_fingerprint,
    load_cache,
)
from models.training.loop import RunSettings, TrainingOutcome, dice_loss, run_training
from models.training.record import (
    provenance_common,
    save_best,
    seed_run,
    settings_record,
    write_record,
)
from plugins.api import Label

logger = logging.getLogger(__name__)

__all__ = ["LgeFit", "TrainSettings", "fit_lge", "lge_loss", "scar_by_blood", "train",
           "validation_scores"]

MODEL_VERSION: Final = "1.0.0"
ARCHITECTURE: Final = UNetConfig(in_channels=1, n_classes=N_CLASSES, base_channels=8, depth=4,
                                 dropout=0.1)
"""8-16-32-64-128 channels, as the T1-map network: fits the time budget on one thread."""
DICE_WEIGHTS: Final = (1.0, 1.0, 1.0, 2.0, 0.5)
"""Soft-Dice weights of LV blood, myocardium, RV blood, scar and MVO."""
CE_WEIGHTS: Final = (1.0, 1.0, 1.0, 1.0, 3.0, 3.0)
"""Cross-entropy class weights (background ... MVO): bright scar looks like blood pool and
is rare, so without extra weight the network calls it blood (first run: scar Dice 0)."""
BORDER_PX: Final = 2
"""Grid pixels (3 mm) from the LV blood pool within which scar counts as bordering it."""
MIN_MVO_DICE: Final = 0.5
"""Validation MVO Dice needed to output MVO as its own label."""


@dataclass(frozen=True)
class TrainSettings(RunSettings):
    """Everything that determines a training run."""

    cache_dir: str = "/tmp/lgeseg_cache"
    train_subjects: int = 600
    steps: int = 1900
    max_minutes: float = 33.5
    architecture: UNetConfig = field(default_factory=lambda: ARCHITECTURE)
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)


def lge_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
             border_scar_weight: float = 0.0) -> torch.Tensor:
    """Class-weighted cross-entropy + weighted soft Dice + soft Dice of the whole myocardium.

    The last term (myocardium = non-scarred + scar + MVO) drives the geometry the
    post-processing uses, however the myocardium is split into scar and non-scar.
    ``border_scar_weight`` adds that much cross-entropy weight to scar pixels within
    :data:`BORDER_PX` grid pixels of the LV blood pool: subendocardial scar is as bright as
    the blood next to it, and calling it blood pool is the costliest %scar error.
    """
    class_weights = torch.tensor(CE_WEIGHTS, dtype=logits.dtype)
    if border_scar_weight > 0.0:
        per_pixel = functional.cross_entropy(logits, target, weight=class_weights,
                                             reduction="none")
        extra = 1.0 + border_scar_weight * scar_by_blood(target)
        ce = (per_pixel * extra).sum() / (class_weights[target] * extra).sum()
    else:
        ce = functional.cross_entropy(logits, target, weight=class_weights)
    classes = dice_loss(logits, target, N_CLASSES, DICE_WEIGHTS)
    prob = torch.softmax(logits, dim=1)
    myo_prob = prob[:, list(MYOCARDIAL)].sum(1)
    myo_true = torch.zeros_like(myo_prob)
    for label in MYOCARDIAL:
        myo_true = myo_true + (target == label).to(myo_prob.dtype)
    union = (2.0 * (myo_prob * myo_true).sum() + 1.0) / (myo_prob.sum() + myo_true.sum() + 1.0)
    return ce + dice_weight * (classes + (1.0 - union))


def scar_by_blood(target: torch.Tensor) -> torch.Tensor:
    """1.0 at scar or MVO pixels within :data:`BORDER_PX` pixels of the LV blood pool."""
    blood = (target == int(Label.LV_BLOOD_POOL)).to(torch.float32)[:, None]
    size = 2 * BORDER_PX + 1
    near = functional.max_pool2d(blood, size, stride=1, padding=BORDER_PX)[:, 0] > 0
    scar = (target == int(Label.SCAR)) | (target == int(Label.MVO))
    return (scar & near).to(torch.float32)


def validation_scores(model: torch.nn.Module, images: npt.NDArray[np.float32],
                      labels: npt.NDArray[np.int64]) -> dict[str, float]:
    """Grid Dice of the validation set.

    Returns
    -------
    dict
        ``myocardium`` (mean per image, myocardium incl. scar and MVO), ``scar`` and
        ``mvo`` (pooled over all images: most have none), ``score`` (mean of the first
        two; the checkpoint criterion).
    """
    model.eval()
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(images), 32):
            predictions.append(model(torch.from_numpy(images[start:start + 32])).argmax(1))
    model.train()
    pred = torch.cat(predictions).numpy()
    myo_scores = []
    for p, t in zip(pred, labels, strict=True):
        a, b = np.isin(p, MYOCARDIAL), np.isin(t, MYOCARDIAL)
        myo_scores.append(2.0 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1))

    def pooled(values: tuple[int, ...]) -> float:
        a, b = np.isin(pred, values), np.isin(labels, values)
        return 2.0 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1)

    myo = float(np.mean(myo_scores))
    scar = pooled((int(Label.SCAR), int(Label.MVO)))
    return {"myocardium": myo, "scar": scar, "mvo": pooled((int(Label.MVO),)),
            "score": 0.5 * (myo + scar)}


@dataclass(frozen=True)
class LgeFit:
    """What :func:`fit_lge` returns.

    Attributes
    ----------
    outcome
        The training loop's outcome.
    weights_sha256
        SHA-256 of the written best checkpoint.
    final
        :func:`validation_scores` of the best checkpoint.
    minutes
        Minutes of the training loop.
    """

    outcome: TrainingOutcome
    weights_sha256: str
    final: dict[str, float]
    minutes: float

    def mvo_record(self) -> dict[str, Any]:
        """Whether MVO is output as its own label (validation MVO Dice reaches
        :data:`MIN_MVO_DICE`), and why, for the provenance record."""
        mvo_output = self.final["mvo"] >= MIN_MVO_DICE
        return {"mvo_output": bool(mvo_output),
                "mvo_note": (f"validation MVO Dice {self.final['mvo']:.2f} "
                             f"{'>=' if mvo_output else '<'} {MIN_MVO_DICE}: MVO is "
                             f"{'labelled separately' if mvo_output else 'merged into scar'}")}


def fit_lge(model: torch.nn.Module,
            batches: Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]],
            loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            val_images: npt.NDArray[np.float32], val_labels: npt.NDArray[np.int64],
            settings: RunSettings, weights: Path) -> LgeFit:
    """Train an LGE network on ``batches``, choosing the checkpoint by the validation score
    (:func:`validation_scores`), write the best checkpoint to ``weights`` and score it."""
    started = time.perf_counter()
    outcome = run_training(
        model, batches, loss_fn,
        lambda m: validation_scores(m, val_images, val_labels)["score"],
        **settings.schedule(), score_name="val_score")
    minutes = (time.perf_counter() - started) / 60.0
    weights_sha256 = save_best(model, outcome, weights)
    return LgeFit(outcome, weights_sha256, validation_scores(model, val_images, val_labels),
                  minutes)


def _validation_set(settings: TrainSettings
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    items = [cached(item) for k in range(settings.val_subjects)
             for item in eval_stack(VAL_SEED_START + k)]
    rng = np.random.default_rng(settings.seed + 1)
    return augmented_batch(items, list(range(len(items))),
                           lambda item: augment(item, rng, settings.augmentation))


def train(settings: TrainSettings, weights: Path = DEFAULT_WEIGHTS,
          metadata: Path = DEFAULT_METADATA) -> dict[str, Any]:
    """Train, write the weights and provenance record, return the record."""
    seed_run(settings.seed)
    started = time.perf_counter()
    items = cached_items(Path(settings.cache_dir), settings.train_subjects, CHUNK_SUBJECTS,
                         generate_cache, load_cache, TRAIN_SLICES_PER_STACK)
    val_images, val_labels = _validation_set(settings)
    logger.info("training cache: %d slices, validation %d slices (%.0f s)", len(items),
                len(val_images), time.perf_counter() - started)

    model = UNet(settings.architecture)
    rng = np.random.default_rng(settings.seed)
    fit = fit_lge(model, augmented_batches(items, settings.batch_size, rng,
                                           lambda item: augment(item, rng, settings.augmentation)),
                  lambda logits, target: lge_loss(logits, target, settings.dice_weight),
                  val_images, val_labels, settings, weights)
    outcome, final = fit.outcome, fit.final
    record = {
        "model_name": MODEL_NAME,
        "model_version": MODEL_VERSION,
        "weights_file": weights.name,
        "weights_sha256": fit.weights_sha256,
        "architecture": settings.architecture.to_dict(),
        "parameters": count_parameters(model),
        "classes": {str(int(label)): label.name.lower() for label in Label},
        **fit.mvo_record(),
        "input": {
            "normalisation": f"per image: percentiles {PERCENTILES[0]:g} and "
                             f"{PERCENTILES[1]:g} mapped to 0 and 1, clipped to "
                             f"{list(NORMALISED_RANGE)} (offset and scale invariant)",
            "grid_size": GRID_SIZE,
            "grid_spacing_mm": GRID_SPACING_MM,
            "grid_centre": "source image centre",
            "padding": "median of the image border",
            "resampling": "linear to the grid; probabilities linear back to source pixels",
            "contrasts": ["psir", "magnitude"],
        },
        "data": {
            "generator": "models.phantoms.lge.make_lge_stack",
            "generator_source_sha256": generator_fingerprint(),
            "generator_files": [f"models/phantoms/{name}" for name in GENERATOR_FILES],
            "design": "field 1.5 T for even seeds, 3 T for odd; scar pattern cycles through "
                      "all 8 (none included) with seed // 2; spacing 1.0-2.5 mm, FOV "
                      "290-400 mm, non-square matrices; both PSIR and magnitude of every "
                      "training slice",
            "train_seeds": [TRAIN_SEED_START, TRAIN_SEED_START + settings.train_subjects - 1],
            "train_slices_per_stack": TRAIN_SLICES_PER_STACK,
            "train_slices": len(items),
            "validation_seeds": [VAL_SEED_START, VAL_SEED_START + settings.val_subjects - 1],
            "validation_slices": int(val_images.shape[0]),
            "evaluation_seeds_start": EVAL_SEED_START,
            "real_data": "none",
        },
        "training": provenance_common({
            **settings_record(settings),
            "loss": f"cross-entropy (class weights {list(CE_WEIGHTS)}) + soft Dice (LV, "
                    f"myocardium, RV, scar, MVO weighted {list(DICE_WEIGHTS)}) + soft Dice "
                    "of the whole myocardium",
            "optimiser": "AdamW, linear warm-up then cosine decay to 2 % of the peak rate",
            "threads": 1,
            "steps_completed": outcome.steps_completed,
            "best_step": outcome.best_step,
            "best_val_score": round(outcome.best_score, 4),
            "best_val_grid_dice": {k: round(v, 4) for k, v in final.items()},
            "history": outcome.history,
            "training_loop_minutes": round(fit.minutes, 1),
            "minutes": round((time.perf_counter() - started) / 60.0, 1),
        }),
        "command": "python -m models.training.lgeseg.train",
    }
    write_record(record, weights, metadata)
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    args = training_parser(__doc__.splitlines()[0], TrainSettings(),
                           DEFAULT_WEIGHTS).parse_args(argv)
    start_logging()
    settings = TrainSettings(cache_dir=args.cache_dir, steps=args.steps,
                             max_minutes=args.max_minutes, learning_rate=args.learning_rate)
    train(settings, args.weights, args.weights.with_suffix(".json"))


if __name__ == "__main__":
    main()
