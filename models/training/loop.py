"""The training loop shared by the network trainers: losses, learning-rate schedule, grid
Dice and :func:`run_training` (AdamW, warm-up and cosine decay, checkpoint chosen on
validation, wall-clock safety stop)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["RunSettings", "TrainingOutcome", "cosine_learning_rate", "dice_loss", "grid_dice",
           "run_training"]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RunSettings:
    """What every network's training run is set by: its cache, data sizes, the schedule of
    :func:`run_training` and the seed (each trainer's settings add their own fields)."""

    cache_dir: str = "/tmp/training_cache"
    train_subjects: int = 500
    val_subjects: int = 16
    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 50
    validate_every: int = 200
    max_minutes: float = 40.0
    """Safety stop (wall clock); the run is reproducible only if it finishes its steps."""
    seed: int = 20261122
    dice_weight: float = 1.0

    def schedule(self) -> dict[str, Any]:
        """The keyword arguments of :func:`run_training` that these settings fix."""
        return {"steps": self.steps, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "warmup_steps": self.warmup_steps,
                "validate_every": self.validate_every, "max_minutes": self.max_minutes}


def dice_loss(logits: torch.Tensor, target: torch.Tensor, n_classes: int,
              weights: Sequence[float] | None = None) -> torch.Tensor:
    """1 - (weighted) mean soft Dice over the foreground classes (batch pooled).

    ``weights`` gives one weight per foreground class (classes 1..n-1); equal if ``None``.
    """
    import torch
    from torch.nn import functional

    prob = torch.softmax(logits, dim=1)
    one_hot = functional.one_hot(target, n_classes).permute(0, 3, 1, 2).to(prob.dtype)
    dims = (0, 2, 3)
    intersection = (prob * one_hot).sum(dims)
    total = prob.sum(dims) + one_hot.sum(dims)
    dice = (2.0 * intersection + 1.0) / (total + 1.0)
    if weights is None:
        return 1.0 - dice[1:].mean()
    w = torch.tensor(list(weights), dtype=dice.dtype)
    return 1.0 - (dice[1:] * w).sum() / w.sum()


def cosine_learning_rate(step: int, peak: float, warmup_steps: int, total_steps: int,
                         floor: float = 0.02) -> float:
    """Linear warm-up to ``peak``, then cosine decay to ``floor * peak`` at ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def grid_dice(model: torch.nn.Module, images: F32, labels: npt.NDArray[np.int64],
              classes: Sequence[int]) -> float:
    """Mean per-image Dice of the union of ``classes`` (network grid, argmax, eval mode)."""
    import torch

    model.eval()
    with torch.inference_mode():
        pred = model(torch.from_numpy(images)).argmax(1).numpy()
    model.train()
    scores = []
    for p, t in zip(pred, labels, strict=True):
        a, b = np.isin(p, classes), np.isin(t, classes)
        scores.append(2.0 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1))
    return float(np.mean(scores))


@dataclass
class TrainingOutcome:
    """What :func:`run_training` returns.

    Attributes
    ----------
    best_state
        State dict of the best validation checkpoint.
    best_score, best_step
        Its validation score and step.
    steps_completed
        Steps run (fewer than asked if the wall-clock limit stopped the run).
    history
        One entry per validation: step, running loss, score, minutes.
    """

    best_state: dict[str, Any]
    best_score: float
    best_step: int
    steps_completed: int
    history: list[dict[str, float]] = field(default_factory=list)


def run_training(
    model: torch.nn.Module,
    batches: Iterator[tuple[F32, npt.NDArray[np.int64]]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    validate: Callable[[torch.nn.Module], float],
    *,
    steps: int,
    learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
    validate_every: int,
    max_minutes: float,
    score_name: str = "val_score",
) -> TrainingOutcome:
    """AdamW training with cosine schedule, keeping the best validation checkpoint.

    Parameters
    ----------
    model
        Network (trained in place, channels-last).
    batches
        Endless iterator of (inputs (b, c, g, g), targets (b, g, g)).
    loss_fn
        Loss of (logits, targets).
    validate
        Score of the model (higher is better), called every ``validate_every`` steps and
        at the end.
    steps, learning_rate, weight_decay, warmup_steps
        Schedule (:func:`cosine_learning_rate`).
    validate_every
        Steps between validations.
    max_minutes
        Wall-clock safety stop (the run is reproducible only if it finishes its steps).
    score_name
        Key of the score in the history entries.
    """
    import torch

    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                  weight_decay=weight_decay)
    best_score, best_step = -1.0, -1
    best_state: dict[str, Any] | None = None
    history: list[dict[str, float]] = []
    running = 0.0
    started = time.perf_counter()
    model.train()
    step = 0
    for step in range(steps):
        images, labels = next(batches)
        x = torch.from_numpy(images).to(memory_format=torch.channels_last)
        y = torch.from_numpy(labels)
        for group in optimiser.param_groups:
            group["lr"] = cosine_learning_rate(step, learning_rate, warmup_steps, steps)
        loss = loss_fn(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        value = loss.item()
        running = 0.98 * running + 0.02 * value if step else value
        out_of_time = (time.perf_counter() - started) / 60.0 > max_minutes
        last = step + 1 == steps or out_of_time
        if (step + 1) % validate_every == 0 or last:
            score = validate(model)
            elapsed = time.perf_counter() - started
            history.append({"step": step + 1, "loss": round(running, 4),
                            score_name: round(score, 4), "minutes": round(elapsed / 60.0, 2)})
            logger.info("step %d loss %.4f %s %.4f (%.1f min)", step + 1, running,
                        score_name, score, elapsed / 60.0)
            if score >= best_score:
                best_score, best_step = score, step + 1
                best_state = {k: v.detach().clone().contiguous()
                              for k, v in model.state_dict().items()}
        if out_of_time:
            logger.warning("time limit of %.0f min reached after %d of %d steps", max_minutes,
                           step + 1, steps)
            break
    if best_state is None:
        raise RuntimeError("Training ran no validation step")
    return TrainingOutcome(best_state, best_score, best_step, step + 1, history)
