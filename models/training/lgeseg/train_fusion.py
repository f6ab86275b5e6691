"""Train the two-channel LGE + cine U-Net: ``python -m models.training.lgeseg.train_fusion``.

The network is the LGE-only network's U-Net with two input channels (normalised LGE, matched
cine aligned on the LGE grid; :mod:`models.training.lgeseg.fusion_data`).  It starts from the
committed LGE-only weights (``lge_unet.pt``, hash checked): every layer is copied, the first
convolution's LGE channel too, and its cine channel starts at zero, so at step 0 the network
is exactly the LGE-only network and training only has to learn what the cine adds.  This is
what makes a useful two-channel network trainable within the time budget on one thread.

Reproducible: fixed subject seeds, initialisation, batch order and augmentation seeds, one
CPU thread.  Weights go to ``models/weights/lge_cine_unet.pt`` and their provenance
(generator fingerprint, seed ranges, settings, data sizes, SHA-256, the initial weights'
hash) to ``lge_cine_unet.json``; ``python -m bench.lge_fusion`` measures the
held-out metrics.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from models.runtime.lgeseg.fusion_segmenter import (
    DEFAULT_FUSION_METADATA,
    DEFAULT_FUSION_WEIGHTS,
    FUSION_MODEL_NAME,
)
from models.runtime.lgeseg.segmenter import (
    DEFAULT_METADATA,
    DEFAULT_WEIGHTS,
    GRID_SIZE,
    GRID_SPACING_MM,
    N_CLASSES,
    NORMALISED_RANGE,
    PERCENTILES,
)
from models.runtime.lgeseg.segmenter import MODEL_NAME as LGE_MODEL_NAME
from models.runtime.segmentation import load_unet
from models.runtime.unet import UNet, UNetConfig, count_parameters
from models.training.augment import augmented_batch, augmented_batches
from models.training.cache import cached_items
from models.training.cli import start_logging, training_parser
from models.training.lgeseg.data import EVAL_SEED_START, TRAIN_SLICES_PER_STACK
from models.training.lgeseg.fusion_data import (
    CHUNK_SUBJECTS,
    FUSION_GENERATOR_FILES,
    FUSION_TRAIN_SEED_START,
    FUSION_VAL_SEED_START,
    MAX_CENTRE_OFFSET_MM,
    MAX_MISREGISTRATION_MM,
    AugmentationSettings,
    CachedPair,
    augment_pair,
    cached_pair,
    fusion_fingerprint,
    generate_fusion_cache,
    load_fusion_cache,
    pair_stack,
)
from models.training.lgeseg.train import (
    CE_WEIGHTS,
    DICE_WEIGHTS,
    fit_lge,
    lge_loss,
    validation_scores,
)
from models.training.loop import RunSettings
from models.training.record import (
    provenance_common,
    seed_run,
    settings_record,
    write_record,
)
from plugins.api import Label

logger = logging.getLogger(__name__)

__all__ = ["FUSION_ARCHITECTURE", "FusionTrainSettings", "initial_state", "train_fusion"]

MODEL_VERSION: Final = "1.1.0"
FUSION_ARCHITECTURE: Final = UNetConfig(in_channels=2, n_classes=N_CLASSES, base_channels=8,
                                        depth=4, dropout=0.1)
"""The LGE-only architecture with a second (cine) input channel."""
FIRST_CONV: Final = "encoders.0.0.weight"
"""State-dict key of the first convolution (the only layer whose shape changes)."""


@dataclass(frozen=True)
class FusionTrainSettings(RunSettings):
    """Everything that determines a training run."""

    cache_dir: str = "/tmp/fusion/cache"
    train_subjects: int = 400
    steps: int = 1500
    learning_rate: float = 1e-3
    max_minutes: float = 33.5
    seed: int = 20261123
    border_scar_weight: float = 0.0
    """Extra cross-entropy weight of scar bordering the LV blood pool (:func:`lge_loss`)."""
    init_from_lge: bool = True
    """Start from the committed LGE-only weights (cine channel zero)."""
    init_weights: str | None = None
    """Other LGE-only weights to start from (their JSON beside them); None: the committed."""
    model_version: str = MODEL_VERSION
    command: str = "python -m models.training.lgeseg.train_fusion"
    """The command line recorded in the provenance."""
    lge_only_control: bool = False
    """Control run: the same data, schedule and initial weights with the LGE channel only
    (one-channel network), to tell the cine's contribution from that of more training."""
    architecture: UNetConfig = field(default_factory=lambda: FUSION_ARCHITECTURE)
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)


def initial_state(weights: Path = DEFAULT_WEIGHTS, metadata: Path = DEFAULT_METADATA,
                  widen: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The LGE-only network's state with the first convolution widened to two channels.

    Returns
    -------
    state, sha256
        State dict for :data:`FUSION_ARCHITECTURE` (cine-channel weights zero) and the
        SHA-256 of the LGE-only weights it came from.
    """
    model, _, sha = load_unet(weights, metadata)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if not widen:
        return state, sha
    first = state[FIRST_CONV]
    widened = torch.zeros((first.shape[0], 2, *first.shape[2:]), dtype=first.dtype)
    widened[:, :1] = first
    state[FIRST_CONV] = widened
    return state, sha


def _lineage(metadata: Path) -> list[dict[str, Any]]:
    """The initial weights' record and, in turn, those it started from (newest first)."""
    record = json.loads(metadata.read_text())
    entry = {"model_name": record.get("model_name"), "model_version": record.get("model_version"),
             "weights_sha256": record.get("weights_sha256"), "command": record.get("command")}
    earlier = (record.get("initial_weights") or {}).get("lineage")
    if earlier is None and record.get("initial_weights"):
        earlier = [{"weights_sha256": record["initial_weights"].get("sha256"),
                    "file": record["initial_weights"].get("file")}]
    return [entry, *(earlier or [])]


def _validation_set(settings: FusionTrainSettings
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    items: list[CachedPair] = []
    for k in range(settings.val_subjects):
        slices, cines = pair_stack(FUSION_VAL_SEED_START + k, evaluation=True)
        items.extend(cached_pair(s, c) for s, c in zip(slices, cines, strict=True))
    rng = np.random.default_rng(settings.seed + 1)
    images, labels = augmented_batch(
        items, list(range(len(items))), lambda item: augment_pair(item, rng, settings.augmentation),
        add_channel=False)
    return _channels(images, settings), labels


def _channels(images: npt.NDArray[np.float32], settings: FusionTrainSettings
              ) -> npt.NDArray[np.float32]:
    """The input channels the run trains on (only the LGE for the control run)."""
    if settings.lge_only_control:
        return np.ascontiguousarray(images[:, :1])
    return images


def _batches(items: list[CachedPair], settings: FusionTrainSettings, rng: np.random.Generator
             ) -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
    for images, labels in augmented_batches(
            items, settings.batch_size, rng,
            lambda item: augment_pair(item, rng, settings.augmentation), add_channel=False):
        yield _channels(images, settings), labels


def train_fusion(settings: FusionTrainSettings, weights: Path = DEFAULT_FUSION_WEIGHTS,
                 metadata: Path = DEFAULT_FUSION_METADATA) -> dict[str, Any]:
    """Train, write the weights and provenance record, return the record."""
    seed_run(settings.seed)
    started = time.perf_counter()
    items = cached_items(Path(settings.cache_dir), settings.train_subjects, CHUNK_SUBJECTS,
                         generate_fusion_cache, load_fusion_cache, TRAIN_SLICES_PER_STACK)
    val_images, val_labels = _validation_set(settings)
    logger.info("training cache: %d pairs, validation %d pairs (%.0f s)", len(items),
                len(val_images), time.perf_counter() - started)

    model = UNet(settings.architecture)
    init_sha = None
    lineage: list[dict[str, Any]] = []
    if settings.init_from_lge:
        if settings.init_weights:
            start = Path(settings.init_weights)
            state, init_sha = initial_state(start, start.with_suffix(".json"),
                                            widen=not settings.lge_only_control)
            lineage = _lineage(start.with_suffix(".json"))
        else:
            state, init_sha = initial_state(widen=not settings.lge_only_control)
            lineage = _lineage(DEFAULT_METADATA)
        model.load_state_dict(state)
    model.train()
    initial_scores = validation_scores(model, val_images, val_labels)
    logger.info("validation before training: %s", initial_scores)
    rng = np.random.default_rng(settings.seed)
    fit = fit_lge(model, _batches(items, settings, rng),
                  lambda logits, target: lge_loss(logits, target, settings.dice_weight,
                                                  settings.border_scar_weight),
                  val_images, val_labels, settings, weights)
    outcome, final = fit.outcome, fit.final
    record = {
        "model_name": LGE_MODEL_NAME if settings.lge_only_control else FUSION_MODEL_NAME,
        "model_version": settings.model_version,
        "weights_file": weights.name,
        "weights_sha256": fit.weights_sha256,
        "architecture": settings.architecture.to_dict(),
        "parameters": count_parameters(model),
        "classes": {str(int(label)): label.name.lower() for label in Label},
        **fit.mvo_record(),
        "initial_weights": {
            "file": (settings.init_weights or DEFAULT_WEIGHTS.name) if settings.init_from_lge
            else None,
            "sha256": init_sha,
            "note": ("LGE-only weights copied unchanged (one-channel fine-tuning on the "
                     "LGE images of the fusion cache)" if settings.lge_only_control else
                     "LGE-only weights copied; first convolution widened, cine channel zero"),
            "lineage": lineage,
        },
        "input": {
            "channels": ["lge"] if settings.lge_only_control else ["lge", "cine"],
            "normalisation": f"per image and channel: percentiles {PERCENTILES[0]:g} and "
                             f"{PERCENTILES[1]:g} mapped to 0 and 1, clipped to "
                             f"{list(NORMALISED_RANGE)} (offset and scale invariant)",
            "cine": "the cine frame at the LGE position nearest the LGE TriggerTime, "
                    "resampled onto the LGE pixel grid through the patient geometry and "
                    "translated by plugins.lge.cine.register_translation (Mattes MI, "
                    "bounded to 10 mm)",
            "grid_size": GRID_SIZE,
            "grid_spacing_mm": GRID_SPACING_MM,
            "grid_centre": "source (LGE) image centre",
            "padding": "median of each channel's image border",
            "resampling": "linear to the grid; probabilities linear back to source pixels",
            "contrasts": ["psir", "magnitude"],
        },
        "data": {
            "generator": "models.training.lgeseg.fusion_data.pair_stack (models.phantoms.lge + "
                         "models.phantoms.cine)",
            "generator_source_sha256": fusion_fingerprint(),
            "generator_files": [f"models/phantoms/{name}" for name in FUSION_GENERATOR_FILES],
            "design": "LGE stacks as the LGE-only network's (training_stack / eval_stack of "
                      "the seed); matched cine of the same subject and position from "
                      "default_rng([seed, 7]): own matrix, spacing 1.2-2.0 mm, FOV centre "
                      f"offset up to {MAX_CENTRE_OFFSET_MM:g} mm, breath-hold mismatch up to "
                      f"{MAX_MISREGISTRATION_MM:g} mm, own heart rate (SD 4 %), 20/25/30 "
                      "phases per RR, phase nearest the LGE TriggerTime",
            "train_seeds": [FUSION_TRAIN_SEED_START,
                            FUSION_TRAIN_SEED_START + settings.train_subjects - 1],
            "train_slices_per_stack": TRAIN_SLICES_PER_STACK,
            "train_pairs": len(items),
            "validation_seeds": [FUSION_VAL_SEED_START,
                                 FUSION_VAL_SEED_START + settings.val_subjects - 1],
            "validation_pairs": int(val_images.shape[0]),
            "evaluation_seeds_start": EVAL_SEED_START,
            "lge_only_training_seeds": [200000, 200599],
            "real_data": "none",
        },
        "training": provenance_common({
            **settings_record(settings),
            "loss": f"as the LGE-only network: cross-entropy (class weights "
                    f"{list(CE_WEIGHTS)}) + soft Dice (weights {list(DICE_WEIGHTS)}) + soft "
                    "Dice of the whole myocardium",
            "optimiser": "AdamW, linear warm-up then cosine decay to 2 % of the peak rate",
            "threads": 1,
            "initial_val_grid_dice": {k: round(v, 4) for k, v in initial_scores.items()},
            "steps_completed": outcome.steps_completed,
            "best_step": outcome.best_step,
            "best_val_score": round(outcome.best_score, 4),
            "best_val_grid_dice": {k: round(v, 4) for k, v in final.items()},
            "history": outcome.history,
            "training_loop_minutes": round(fit.minutes, 1),
            "minutes": round((time.perf_counter() - started) / 60.0, 1),
        }),
        "command": settings.command,
    }
    write_record(record, weights, metadata)
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    defaults = FusionTrainSettings()
    parser = training_parser(__doc__.splitlines()[0], defaults, DEFAULT_FUSION_WEIGHTS)
    parser.add_argument("--subjects", type=int, default=defaults.train_subjects)
    parser.add_argument("--init-weights", type=Path, default=None,
                        help="LGE-only weights to start from (JSON beside them), e.g. a "
                             "--lge-only-control run; default: the committed LGE-only network")
    parser.add_argument("--border-scar-weight", type=float, default=defaults.border_scar_weight,
                        help="extra cross-entropy weight of scar bordering the LV blood pool")
    parser.add_argument("--model-version", default=MODEL_VERSION,
                        help="version recorded in the provenance")
    parser.add_argument("--lge-only-control", action="store_true",
                        help="train the one-channel control (write it elsewhere: --weights)")
    args = parser.parse_args(argv)
    start_logging()
    control = bool(args.lge_only_control)
    settings = FusionTrainSettings(
        cache_dir=args.cache_dir, steps=args.steps, train_subjects=args.subjects,
        max_minutes=args.max_minutes, lge_only_control=control,
        border_scar_weight=args.border_scar_weight, learning_rate=args.learning_rate,
        model_version=args.model_version,
        command=" ".join(["python -m models.training.lgeseg.train_fusion",
                          *(argv or sys.argv[1:])]),
        init_weights=str(args.init_weights) if args.init_weights else None,
        architecture=dataclasses.replace(FUSION_ARCHITECTURE, in_channels=1) if control
        else FUSION_ARCHITECTURE)
    train_fusion(settings, args.weights, args.weights.with_suffix(".json"))


if __name__ == "__main__":
    main()
