"""Train the T1-map U-Net on phantom maps: ``python -m models.t1seg.train``.

Reproducible: the phantom cache is rendered from fixed subject seeds, and the network
initialisation, batch order and augmentations come from fixed seeds; training runs on one
CPU thread.  The weights are written to ``models/weights/t1map_unet.pt`` and their provenance
(generator fingerprint, seed ranges, settings, data sizes, SHA-256) to ``t1map_unet.json``;
``python -m models.t1seg.evaluate`` adds the held-out metrics to that JSON.

Checkpoint selection uses a validation set of subjects (seeds from :data:`VAL_SEED_START`)
disjoint from both the training cache and the evaluation set.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from models.t1seg.data import (
    CHUNK_SUBJECTS,
    EVAL_SEED_START,
    GENERATOR_FILES,
    LEVELS_PER_SUBJECT,
    TRAIN_SEED_START,
    AugmentationSettings,
    CachedSlice,
    generate_cache,
    generator_fingerprint,
    iterate_batches,
    load_cache,
    make_batch,
    phantom_subject,
)
from models.t1seg.segmenter import (
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
from models.unet import UNet, UNetConfig, count_parameters
from plugins.api import Label

logger = logging.getLogger(__name__)

__all__ = ["TrainSettings", "dice_loss", "train"]

MODEL_VERSION: Final = "1.0.0"
ARCHITECTURE: Final = UNetConfig(base_channels=8, depth=4, dropout=0.1)
"""8-16-32-64-128 channels: the widest network whose training fits ~35 min on one thread."""
VAL_SEED_START: Final = 800_000
"""Subject seeds of the checkpoint-selection set (disjoint from training and evaluation)."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines a training run."""

    cache_dir: str = "/tmp/t1seg_cache"
    train_subjects: int = 1000
    val_subjects: int = 24
    steps: int = 2800
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 50
    validate_every: int = 200
    max_minutes: float = 40.0
    """Safety stop (wall clock); the run is reproducible only if it finishes its steps."""
    seed: int = 20261122
    dice_weight: float = 1.0
    architecture: UNetConfig = field(default_factory=lambda: ARCHITECTURE)
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes (batch pooled)."""
    prob = torch.softmax(logits, dim=1)
    one_hot = functional.one_hot(target, N_CLASSES).permute(0, 3, 1, 2).to(prob.dtype)
    dims = (0, 2, 3)
    intersection = (prob * one_hot).sum(dims)
    total = prob.sum(dims) + one_hot.sum(dims)
    dice = (2.0 * intersection + 1.0) / (total + 1.0)
    return 1.0 - dice[1:].mean()


def _grid_dice(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    with torch.inference_mode():
        pred = model(torch.from_numpy(images)).argmax(1).numpy()
    model.train()
    scores = []
    for p, t in zip(pred, labels, strict=True):
        a, b = p == Label.MYOCARDIUM, t == Label.MYOCARDIUM
        scores.append(2.0 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1))
    return float(np.mean(scores))


def _learning_rate(settings: TrainSettings, step: int) -> float:
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(settings.steps - settings.warmup_steps, 1)
    return settings.learning_rate * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _validation_set(settings: TrainSettings) -> tuple[np.ndarray, np.ndarray]:
    items = [
        CachedSlice(p.t1_ms, p.labels, p.pixel_spacing, p.field_strength_t, p.level)
        for k in range(settings.val_subjects)
        for p in phantom_subject(VAL_SEED_START + k)
    ]
    rng = np.random.default_rng(settings.seed + 1)
    return make_batch(items, list(range(len(items))), rng, settings.augmentation)


def train(settings: TrainSettings, weights: Path = DEFAULT_WEIGHTS,
          metadata: Path = DEFAULT_METADATA) -> dict[str, Any]:
    """Train, write the weights and provenance record, return the record."""
    torch.set_num_threads(1)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    started = time.perf_counter()
    cache = Path(settings.cache_dir)
    generate_cache(cache, settings.train_subjects, TRAIN_SEED_START)
    items = load_cache(cache, math.ceil(settings.train_subjects / CHUNK_SUBJECTS))
    logger.info("training cache: %d slices (%.0f s)", len(items), time.perf_counter() - started)
    val_images, val_labels = _validation_set(settings)

    model = UNet(settings.architecture)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    rng = np.random.default_rng(settings.seed)
    batches = iterate_batches(items, settings.batch_size, rng, settings.augmentation)
    best_dice, best_step, best_state = -1.0, -1, None
    history: list[dict[str, float]] = []
    running = 0.0
    train_started = time.perf_counter()
    model.train()
    for step in range(settings.steps):
        images, labels = next(batches)
        x = torch.from_numpy(images).to(memory_format=torch.channels_last)
        y = torch.from_numpy(labels)
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(settings, step)
        logits = model(x)
        loss = functional.cross_entropy(logits, y) + settings.dice_weight * dice_loss(logits, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        value = loss.item()
        running = 0.98 * running + 0.02 * value if step else value
        out_of_time = (time.perf_counter() - train_started) / 60.0 > settings.max_minutes
        last = step + 1 == settings.steps or out_of_time
        if (step + 1) % settings.validate_every == 0 or last:
            dice = _grid_dice(model, val_images, val_labels)
            elapsed = time.perf_counter() - train_started
            history.append({"step": step + 1, "loss": round(running, 4),
                            "val_myocardium_dice_grid": round(dice, 4),
                            "minutes": round(elapsed / 60.0, 2)})
            logger.info("step %d loss %.4f val myocardium Dice %.4f (%.1f min)", step + 1,
                        running, dice, elapsed / 60.0)
            if dice >= best_dice:
                best_dice, best_step = dice, step + 1
                best_state = {k: v.detach().clone().contiguous()
                              for k, v in model.state_dict().items()}
        if out_of_time:
            logger.warning("time limit of %.0f min reached after %d of %d steps",
                           settings.max_minutes, step + 1, settings.steps)
            break
    steps_done = step + 1
    assert best_state is not None
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(best_state, weights)
    model.load_state_dict(best_state)
    record = {
        "model_name": MODEL_NAME,
        "model_version": MODEL_VERSION,
        "weights_file": weights.name,
        "weights_sha256": sha256_of(weights),
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
        },
        "training": {
            **{k: v for k, v in asdict(settings).items()
               if k not in {"architecture", "augmentation"}},
            "augmentation": asdict(settings.augmentation),
            "loss": "cross-entropy + soft Dice (LV blood, myocardium, RV blood)",
            "optimiser": "AdamW, linear warm-up then cosine decay to 2 % of the peak rate",
            "threads": 1,
            "steps_completed": steps_done,
            "best_step": best_step,
            "best_val_myocardium_dice_grid": round(best_dice, 4),
            "history": history,
            "minutes": round((time.perf_counter() - started) / 60.0, 1),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "command": "python -m models.t1seg.train",
    }
    metadata.write_text(json.dumps(record, indent=2) + "\n")
    logger.info("wrote %s (sha256 %s) and %s", weights, record["weights_sha256"], metadata)
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainSettings()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--cache-dir", default=defaults.cache_dir)
    parser.add_argument("--max-minutes", type=float, default=defaults.max_minutes)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = TrainSettings(cache_dir=args.cache_dir, steps=args.steps,
                             max_minutes=args.max_minutes)
    train(settings, args.weights, args.weights.with_suffix(".json"))


if __name__ == "__main__":
    main()
