"""Train the T1-map U-Net on phantom maps: ``python -m models.training.t1seg.train``.

Reproducible: the phantom cache is rendered from fixed subject seeds, and the network
initialisation, batch order and augmentations come from fixed seeds; training runs on one
CPU thread.  The weights are written to ``models/weights/t1map_unet.pt`` and their provenance
(generator fingerprint, seed ranges, settings, data sizes, SHA-256) to ``t1map_unet.json``;
``python -m models.evaluation.t1seg.evaluate`` adds the held-out metrics to that JSON.

Checkpoint selection uses a validation set of subjects (seeds from :data:`VAL_SEED_START`)
disjoint from both the training cache and the evaluation set.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch.nn import functional

from models.runtime.t1seg.segmenter import (
    DEFAULT_METADATA,
    DEFAULT_WEIGHTS,
    GRID_SIZE,
    GRID_SPACING_MM,
    MAX_T1_MS,
    MODEL_NAME,
    N_CLASSES,
    T1_SCALE_MS,
    sha256_of,
)
from models.runtime.unet import UNet, UNetConfig, count_parameters
from models.training.augment import augmented_batch, augmented_batches
from models.training.cache import cached_items
from models.training.cli import start_logging, training_parser
from models.training.loop import RunSettings, grid_dice, run_training
from models.training.loop import dice_loss as shared_dice_loss
from models.training.record import (
    provenance_common,
    save_best,
    seed_run,
    settings_record,
    write_record,
)
from models.training.t1seg.data import (
    CHUNK_SUBJECTS,
    EVAL_SEED_START,
    GENERATOR_FILES,
    LEVELS_PER_SUBJECT,
    TRAIN_SEED_START,
    AugmentationSettings,
    CachedSlice,
    augment,
    generate_cache,
    generator_fingerprint,
    load_cache,
    phantom_subject,
)
from models.training.t1seg.long_axis import (
    LONG_AXIS_EVAL_SEED_START,
    LONG_AXIS_GENERATOR_FILES,
    LONG_AXIS_TRAIN_SEED_START,
    LONG_AXIS_VAL_SEED_START,
    generate_long_axis_cache,
    load_long_axis_cache,
    long_axis_generator_fingerprint,
    long_axis_items,
)
from plugins.api import Label

logger = logging.getLogger(__name__)

__all__ = ["TrainSettings", "dice_loss", "train"]

MODEL_VERSION: Final = "1.0.0"
ARCHITECTURE: Final = UNetConfig(base_channels=8, depth=4, dropout=0.1)
"""8-16-32-64-128 channels: the widest network whose training fits ~35 min on one thread."""
VAL_SEED_START: Final = 800_000
"""Subject seeds of the checkpoint-selection set (disjoint from training and evaluation)."""


@dataclass(frozen=True)
class TrainSettings(RunSettings):
    """Everything that determines a training run."""

    cache_dir: str = "/tmp/t1seg_cache"
    train_subjects: int = 1000
    val_subjects: int = 24
    steps: int = 2800
    architecture: UNetConfig = field(default_factory=lambda: ARCHITECTURE)
    long_axis_views: int = 0
    """Four-chamber long-axis views added to the training items (one per subject seed from
    :data:`~models.training.t1seg.long_axis.LONG_AXIS_TRAIN_SEED_START`); 0 for short axis only."""
    long_axis_val_views: int = 24
    """Four-chamber views added to the validation set when ``long_axis_views`` > 0."""
    long_axis_cache_dir: str = "/tmp/t1seg_cache_4ch"
    init_weights: str | None = None
    """Weights to start from (fine-tuning) instead of a random initialisation."""
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes (batch pooled)."""
    return shared_dice_loss(logits, target, N_CLASSES)


def _validation_set(settings: TrainSettings) -> tuple[np.ndarray, np.ndarray]:
    items = [
        CachedSlice(p.t1_ms, p.labels, p.pixel_spacing, p.field_strength_t, p.level)
        for k in range(settings.val_subjects)
        for p in phantom_subject(VAL_SEED_START + k)
    ]
    if settings.long_axis_views > 0:
        items += long_axis_items(range(LONG_AXIS_VAL_SEED_START,
                                       LONG_AXIS_VAL_SEED_START + settings.long_axis_val_views))
    rng = np.random.default_rng(settings.seed + 1)
    return augmented_batch(items, list(range(len(items))),
                           lambda item: augment(item, rng, settings.augmentation))


def train(settings: TrainSettings, weights: Path = DEFAULT_WEIGHTS,
          metadata: Path = DEFAULT_METADATA) -> dict[str, Any]:
    """Train, write the weights and provenance record, return the record."""
    seed_run(settings.seed)
    started = time.perf_counter()
    items = cached_items(Path(settings.cache_dir), settings.train_subjects, CHUNK_SUBJECTS,
                         generate_cache, load_cache)
    n_short_axis = len(items)
    if settings.long_axis_views > 0:
        la_cache = Path(settings.long_axis_cache_dir)
        generate_long_axis_cache(la_cache, settings.long_axis_views, LONG_AXIS_TRAIN_SEED_START)
        items = items + load_long_axis_cache(la_cache, settings.long_axis_views)
    logger.info("training cache: %d slices (%.0f s)", len(items), time.perf_counter() - started)
    val_images, val_labels = _validation_set(settings)

    model = UNet(settings.architecture)
    init_sha256 = None
    if settings.init_weights is not None:
        model.load_state_dict(torch.load(settings.init_weights, map_location="cpu",
                                         weights_only=True))
        init_sha256 = sha256_of(Path(settings.init_weights))
        logger.info("fine-tuning from %s (sha256 %s)", settings.init_weights, init_sha256)
    rng = np.random.default_rng(settings.seed)

    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(logits, y) + settings.dice_weight * dice_loss(logits, y)

    outcome = run_training(
        model,
        augmented_batches(items, settings.batch_size, rng,
                          lambda item: augment(item, rng, settings.augmentation)),
        loss_fn,
        lambda m: grid_dice(m, val_images, val_labels, (int(Label.MYOCARDIUM),)),
        **settings.schedule(),
        score_name="val_myocardium_dice_grid",
    )
    weights_sha256 = save_best(model, outcome, weights)
    record = {
        "model_name": MODEL_NAME,
        "model_version": MODEL_VERSION,
        "weights_file": weights.name,
        "weights_sha256": weights_sha256,
        "architecture": settings.architecture.to_dict(),
        "parameters": count_parameters(model),
        "classes": {str(int(label)): label.name.lower() for label in
                    (Label.BACKGROUND, Label.LV_BLOOD_POOL, Label.MYOCARDIUM,
                     Label.RV_BLOOD_POOL)},
        "input": {
            "units": "ms",
            "scale_divisor_ms": T1_SCALE_MS,
            "clip_ms": [0.0, MAX_T1_MS],
            "grid_size": GRID_SIZE,
            "grid_spacing_mm": GRID_SPACING_MM,
            "grid_centre": "source image centre",
            "resampling": "linear to the grid; probabilities linear back to source pixels, "
                          "then argmax",
        },
        "data": {
            "generator": "models.phantoms.t1map.make_t1map_stack",
            "generator_source_sha256": generator_fingerprint(),
            "generator_files": [f"models/phantoms/{name}" for name in GENERATOR_FILES],
            "levels_per_subject": list(LEVELS_PER_SUBJECT),
            "field_strength": "1.5 T for even seeds, 3 T for odd seeds",
            "train_seeds": [TRAIN_SEED_START, TRAIN_SEED_START + settings.train_subjects - 1],
            "train_slices": len(items),
            "validation_seeds": [VAL_SEED_START, VAL_SEED_START + settings.val_subjects - 1],
            "validation_slices": int(val_images.shape[0]),
            "evaluation_seeds_start": EVAL_SEED_START,
            "real_data": "none (Sunnybrook cine used only as a sanity check in evaluation)",
            **({"long_axis": {
                "generator": "models.phantoms.long_axis.make_t1map_long_axis",
                "generator_files": [f"models/phantoms/{name}"
                                    for name in LONG_AXIS_GENERATOR_FILES],
                "generator_source_sha256": long_axis_generator_fingerprint(),
                "views_per_subject": 1,
                "train_seeds": [LONG_AXIS_TRAIN_SEED_START,
                                LONG_AXIS_TRAIN_SEED_START + settings.long_axis_views - 1],
                "train_slices": len(items) - n_short_axis,
                "short_axis_train_slices": n_short_axis,
                "validation_seeds": [LONG_AXIS_VAL_SEED_START,
                                     LONG_AXIS_VAL_SEED_START + settings.long_axis_val_views - 1],
                "evaluation_seeds_start": LONG_AXIS_EVAL_SEED_START,
            }} if settings.long_axis_views > 0 else {}),
        },
        "training": provenance_common({
            **settings_record(settings),
            "loss": "cross-entropy + soft Dice (LV blood, myocardium, RV blood)",
            "optimiser": "AdamW, linear warm-up then cosine decay to 2 % of the peak rate",
            "threads": 1,
            "steps_completed": outcome.steps_completed,
            "best_step": outcome.best_step,
            "best_val_myocardium_dice_grid": round(outcome.best_score, 4),
            "history": outcome.history,
            **({"initialised_from_sha256": init_sha256} if init_sha256 is not None else {}),
            "minutes": round((time.perf_counter() - started) / 60.0, 1),
        }),
        "command": "python -m models.training.t1seg.train",
    }
    write_record(record, weights, metadata)
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    defaults = TrainSettings()
    parser = training_parser(__doc__.splitlines()[0], defaults, DEFAULT_WEIGHTS)
    parser.add_argument("--long-axis-views", type=int, default=defaults.long_axis_views,
                        help="four-chamber views added to the training data (0: none)")
    parser.add_argument("--long-axis-cache-dir", default=defaults.long_axis_cache_dir)
    parser.add_argument("--init-weights", default=None,
                        help="start from these weights (fine-tuning)")
    args = parser.parse_args(argv)
    start_logging()
    settings = TrainSettings(cache_dir=args.cache_dir, steps=args.steps,
                             max_minutes=args.max_minutes,
                             long_axis_views=args.long_axis_views,
                             long_axis_cache_dir=args.long_axis_cache_dir,
                             init_weights=args.init_weights, learning_rate=args.learning_rate)
    train(settings, args.weights, args.weights.with_suffix(".json"))


if __name__ == "__main__":
    main()
