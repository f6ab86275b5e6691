"""Run set-up and the provenance record shared by the network trainers.

Every trainer runs on one CPU thread from fixed seeds (:func:`seed_run`), keeps the best
validation checkpoint (:func:`save_best`) and writes a provenance record next to the
weights (:func:`settings_record`, :func:`provenance_common`, :func:`write_record`): the
weights' SHA-256, the settings, the data and software versions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.runtime.segmentation import sha256_of

if TYPE_CHECKING:
    import torch

    from models.training.loop import TrainingOutcome

logger = logging.getLogger(__name__)

__all__ = ["provenance_common", "save_best", "seed_run", "settings_record", "write_record"]


def seed_run(seed: int) -> None:
    """One CPU thread and fixed seeds for torch and :mod:`random`."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    random.seed(seed)


def save_best(model: torch.nn.Module, outcome: TrainingOutcome, weights: Path) -> str:
    """Write the best checkpoint's state dict to ``weights``, load it into ``model`` and
    return the file's SHA-256."""
    import torch

    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(outcome.best_state, weights)
    model.load_state_dict(outcome.best_state)
    return sha256_of(weights)


def settings_record(settings: Any) -> dict[str, Any]:
    """A trainer's settings dataclass for the record: every field but the architecture, the
    augmentation settings as their own mapping."""
    fields = dataclasses.asdict(settings)
    return {**{k: v for k, v in fields.items() if k not in {"architecture", "augmentation"}},
            "augmentation": fields["augmentation"]}


def provenance_common(record: Mapping[str, Any]) -> dict[str, Any]:
    """Software versions to add to a provenance record's ``training`` section."""
    import torch

    return {**record, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def write_record(record: Mapping[str, Any], weights: Path, metadata: Path) -> None:
    """Write the provenance record (JSON) next to the weights."""
    metadata.write_text(json.dumps(record, indent=2) + "\n")
    logger.info("wrote %s (sha256 %s) and %s", weights, record["weights_sha256"], metadata)
