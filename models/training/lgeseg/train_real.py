"""Train the two stages of the sim-to-real LGE segmenter on domain-randomised samples.

``--stage locate`` trains the localiser (whole image on a
:data:`~models.runtime.lgeseg.two_stage.LOCATE_GRID` grid; background / LV blood pool / myocardium),
``--stage segment`` the segmenter (heart-centred crop on a
:data:`~models.runtime.lgeseg.two_stage.SEGMENT_GRID` grid; the six LGE classes).  Samples come from
:mod:`models.training.lgeseg.synth` on the label maps of :mod:`models.training.lgeseg.synth_cache`
(phantom subjects from seed 300000, rendered into ``--cache`` if absent, and the CC0 Sunnybrook
slices).  Checkpoints are chosen on a fixed set of samples of held-out phantom subjects (seeds
700000-700007, the LGE checkpoint-selection block).  No real LGE image is used.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from models.runtime.segmentation import load_unet
from models.training.lgeseg.data import VAL_SEED_START
from models.training.lgeseg.synth import IGNORE, LOCATE_FILL, batch, locate_sample, segment_sample
from models.training.lgeseg.synth_cache import (
    SYNTH_SEED_START,
    LabelMapSlice,
    load_phantom_maps,
    render_phantom_maps,
    sunnybrook_maps,
)
from models.training.loop import run_training
from models.training.record import save_best, seed_run, write_record

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["STAGE_CLASSES", "masked_loss", "train"]

STAGE_CLASSES: Final = {"locate": 3, "segment": 6}
CLASS_WEIGHTS: Final = {"locate": (1.0, 1.0, 1.5), "segment": (1.0, 1.0, 1.0, 1.0, 3.0, 3.0)}
DICE_WEIGHTS: Final = {"locate": (1.0, 1.0), "segment": (1.0, 1.0, 0.5, 2.0, 0.5)}
VAL_SUBJECTS: Final = 8
VAL_SAMPLES: Final = 64
DEFAULT_SUNNYBROOK: Final = Path(__file__).resolve().parents[4] / "shared" / "data" / \
    "sunnybrook" / "sunnybrook_lv_myo_subset.npz"


def masked_loss(logits: torch.Tensor, target: torch.Tensor, stage: str) -> torch.Tensor:
    """Weighted cross-entropy + soft Dice (foreground classes and whole myocardium),
    pixels marked :data:`~models.training.lgeseg.synth.IGNORE` left out."""
    import torch
    from torch.nn import functional

    n = STAGE_CLASSES[stage]
    weights = torch.tensor(CLASS_WEIGHTS[stage], dtype=logits.dtype)
    ce = functional.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE)
    valid = (target != IGNORE).unsqueeze(1).to(logits.dtype)
    prob = torch.softmax(logits, dim=1) * valid
    one_hot = functional.one_hot(torch.where(target == IGNORE, 0, target), n)
    one_hot = one_hot.permute(0, 3, 1, 2).to(logits.dtype) * valid
    dims = (0, 2, 3)
    dice = (2.0 * (prob * one_hot).sum(dims) + 1.0) / (prob.sum(dims) + one_hot.sum(dims) + 1.0)
    w = torch.tensor(DICE_WEIGHTS[stage], dtype=dice.dtype)
    loss = ce + 1.0 - (dice[1:] * w).sum() / w.sum()
    if stage == "segment":
        p_myo = prob[:, [2, 4, 5]].sum(1)
        t_myo = one_hot[:, [2, 4, 5]].sum(1)
        myo = (2.0 * (p_myo * t_myo).sum() + 1.0) / (p_myo.sum() + t_myo.sum() + 1.0)
        loss = loss + (1.0 - myo)
    return loss


def _validation(stage: str, cache: Path) -> tuple[npt.NDArray[np.float32],
                                                  npt.NDArray[np.int64]]:
    directory = cache / "val"
    if not list(directory.glob("phantom_maps_*.npz")):
        render_phantom_maps(directory, VAL_SUBJECTS, seed_start=VAL_SEED_START)
    items = load_phantom_maps(directory)
    rng = np.random.default_rng(12345)
    make = locate_sample if stage == "locate" else segment_sample
    pairs = [make(rng, items[i % len(items)], physics_share=0.5) for i in range(VAL_SAMPLES)]
    return (np.stack([p[0] for p in pairs])[:, None].astype(np.float32),
            np.stack([p[1] for p in pairs]).astype(np.int64))


def _myocardium_dice(stage: str, images: npt.NDArray[np.float32],
                     labels: npt.NDArray[np.int64]) -> Any:
    import torch

    myo = (2,) if stage == "locate" else (2, 4, 5)

    def score(model: torch.nn.Module) -> float:
        model.eval()
        with torch.inference_mode():
            pred = torch.argmax(model(torch.from_numpy(images)), dim=1).numpy()
        model.train()
        p, t = np.isin(pred, myo), np.isin(labels, myo)
        return float(2.0 * (p & t).sum() / max(p.sum() + t.sum(), 1))

    return score


def load_items(cache: Path, sunnybrook: Path | None, n_subjects: int) -> list[LabelMapSlice]:
    """Phantom label maps (rendered into ``cache`` if absent) and the Sunnybrook slices."""
    if not list(cache.glob("phantom_maps_*.npz")):
        render_phantom_maps(cache, n_subjects)
    items = load_phantom_maps(cache)
    if sunnybrook is not None and sunnybrook.exists():
        items += sunnybrook_maps(sunnybrook) * 4
    return items


def train(stage: str, out: Path, cache: Path, sunnybrook: Path | None, *, steps: int,
          max_minutes: float, batch_size: int, learning_rate: float, seed: int,
          n_subjects: int, base_channels: int, version: str,
          init_weights: Path | None = None, physics_share: float = 0.3) -> dict[str, Any]:
    """Train one stage; write ``out`` (state dict) and ``out.json`` (provenance).

    ``init_weights`` (a state dict with its provenance JSON beside it) starts the training
    from earlier weights of the same stage instead of a random initialisation.
    """
    import torch

    from models.runtime.unet import UNet, UNetConfig

    seed_run(seed)
    items = load_items(cache, sunnybrook, n_subjects)
    n_sunnybrook = sum(item.source == "sunnybrook" for item in items) // 4
    logger.info("%d label maps (%d Sunnybrook slices, each 4x)", len(items), n_sunnybrook)
    val_images, val_labels = _validation(stage, cache)
    config = UNetConfig(in_channels=1, n_classes=STAGE_CLASSES[stage],
                        base_channels=base_channels, depth=4, dropout=0.1)
    model = UNet(config)
    initial: dict[str, Any] | None = None
    if init_weights is not None:
        start, start_record, start_sha = load_unet(init_weights,
                                                   init_weights.with_suffix(".json"))
        if start.config != config:
            raise SystemExit(f"{init_weights} is not a {config} network")
        model.load_state_dict(start.state_dict())
        initial = {"file": init_weights.name, "sha256": start_sha,
                   "model_version": start_record.get("model_version")}
    rng = np.random.default_rng(seed)

    def batches() -> Any:
        while True:
            yield batch(rng, items, batch_size, stage, physics_share)

    started = time.perf_counter()
    outcome = run_training(
        model, batches(), lambda logits, target: masked_loss(logits, target, stage),
        _myocardium_dice(stage, val_images, val_labels), steps=steps,
        learning_rate=learning_rate, weight_decay=1e-4, warmup_steps=100,
        validate_every=250, max_minutes=max_minutes, score_name="val_myo_dice")
    minutes = (time.perf_counter() - started) / 60.0
    weights_sha256 = save_best(model, outcome, out)
    record: dict[str, Any] = {
        "model_name": f"cmr-node LGE sim-to-real {stage}",
        "model_version": version,
        "stage": stage,
        "weights_file": out.name,
        "weights_sha256": weights_sha256,
        "architecture": config.to_dict(),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "command": "python -m models.training.lgeseg.train_real " + " ".join(sys.argv[1:]),
        "training_data": {
            "phantom_subjects": f"seeds {SYNTH_SEED_START}-{SYNTH_SEED_START + n_subjects - 1}"
                                " (models.phantoms.lge.make_lge_stack, 8 slices each)",
            "phantom_slices": len(items) - 4 * n_sunnybrook,
            "sunnybrook_slices": n_sunnybrook,
            "sunnybrook_licence": "CC0 1.0; Radau P et al., MIDAS Journal 2009, "
                                  "http://hdl.handle.net/10380/3070",
            "real_lge_used": False,
            "appearance": "models.training.lgeseg.synth (SynthSeg-style domain randomisation, "
                          f"{100 * physics_share:.0f} % physics-rendered phantom images)",
        },
        "initial_weights": initial,
        "geometry": {"locate_fill": list(LOCATE_FILL)},
        "checkpoint_selection": f"myocardium Dice on {VAL_SAMPLES} samples of phantom seeds "
                                f"{VAL_SEED_START}-{VAL_SEED_START + VAL_SUBJECTS - 1}",
        "best_step": outcome.best_step,
        "steps_run": outcome.steps_completed,
        "steps_planned": steps,
        "best_val_myo_dice": round(outcome.best_score, 4),
        "training_minutes": round(minutes, 1),
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "history": outcome.history,
    }
    write_record(record, out, out.with_suffix(".json"))
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line: train one stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=tuple(STAGE_CLASSES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/lgereal_cache"))
    parser.add_argument("--sunnybrook", type=Path, default=DEFAULT_SUNNYBROOK)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--max-minutes", type=float, default=40.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--version", default="2.0.0")
    parser.add_argument("--physics-share", type=float, default=0.3,
                        help="share of phantom samples showing the physics-rendered image")
    parser.add_argument("--init-weights", type=Path, default=None,
                        help="start from these weights of the same stage (JSON beside them)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    record = train(args.stage, args.out, args.cache, args.sunnybrook, steps=args.steps,
                   max_minutes=args.max_minutes, batch_size=args.batch_size,
                   learning_rate=args.learning_rate, seed=args.seed,
                   n_subjects=args.subjects, base_channels=args.base_channels,
                   version=args.version, init_weights=args.init_weights,
                   physics_share=args.physics_share)
    logger.info("%s: best step %d, val myocardium Dice %.3f, %.1f min", args.stage,
                record["best_step"], record["best_val_myo_dice"], record["training_minutes"])


if __name__ == "__main__":
    main()
