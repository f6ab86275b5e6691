"""The shared training framework reproduces the trainers' numerics from before it existed.

A few steps of the T1-map, LGE, LGE + cine and two-stage (segment) trainers, with fixed seeds
on tiny phantom caches, one thread.  The expected values were produced by the code before
the models were split by lifecycle (main at 0acc655, modules ``models.t1seg.train``,
``models.lgeseg.train``, ``models.lgeseg.train_fusion``, ``models.lgeseg.train_real``) with
exactly these settings: running loss and validation score of every validation in the
history, and the SHA-256 of the best checkpoint's state dict as written by ``torch.save``
(whose archive is named after the file, so the file names are those of that run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

from models.training.lgeseg.train import TrainSettings as LgeSettings  # noqa: E402
from models.training.lgeseg.train import train as train_lge  # noqa: E402
from models.training.lgeseg.train_fusion import (  # noqa: E402
    FusionTrainSettings,
    train_fusion,
)
from models.training.lgeseg.train_real import train as train_real  # noqa: E402
from models.training.t1seg.train import TrainSettings as T1Settings  # noqa: E402
from models.training.t1seg.train import train as train_t1  # noqa: E402

T1_HISTORY = [(2.2397, 0.0), (2.2395, 0.0), (2.2385, 0.0), (2.2372, 0.0)]
T1_SHA256 = "0a54540670fe314ea6c8b0406c096d4f904f9bb32bb9f2193f0adab525d21cd7"
LGE_HISTORY = [(4.1706, 0.0), (4.1704, 0.0), (4.1687, 0.0), (4.166, 0.0)]
LGE_SHA256 = "d8301092aa6759260e58307104875dc6df415f32d0effa6f96249423ffaad803"
FUSION_HISTORY = [(0.4637, 0.4576), (0.4654, 0.4564), (0.4696, 0.4556)]
FUSION_SHA256 = "3c2b55f78b23318e9c918ef7d05521e5bc25b9be5ee3af96bc43055a2f8c6215"
REAL_HISTORY = [(3.5699, 0.0)]
REAL_SHA256 = "6ba2946e29e4e8d8f96a5475bcda1c7433b7b654f1d7f78050a7ee3dcbd0e6d6"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _history(record: dict, score: str) -> list[tuple[float, float]]:
    return [(h["loss"], h[score]) for h in record["history"]]


def test_t1_trainer_numerics(tmp_path: Path) -> None:
    settings = T1Settings(cache_dir=str(tmp_path / "cache"), train_subjects=2, val_subjects=1,
                          steps=4, batch_size=2, warmup_steps=2, validate_every=1,
                          max_minutes=30.0)
    record = train_t1(settings, tmp_path / "t1.pt", tmp_path / "t1.json")
    assert _history(record["training"], "val_myocardium_dice_grid") == T1_HISTORY
    assert record["weights_sha256"] == T1_SHA256


def test_lge_trainer_numerics(tmp_path: Path) -> None:
    settings = LgeSettings(cache_dir=str(tmp_path / "cache"), train_subjects=1, val_subjects=1,
                           steps=4, batch_size=2, warmup_steps=2, validate_every=1,
                           max_minutes=30.0)
    record = train_lge(settings, tmp_path / "lge.pt", tmp_path / "lge.json")
    assert _history(record["training"], "val_score") == LGE_HISTORY
    assert record["weights_sha256"] == LGE_SHA256


def test_fusion_trainer_numerics(tmp_path: Path) -> None:
    settings = FusionTrainSettings(cache_dir=str(tmp_path / "cache"), train_subjects=1,
                                   val_subjects=1, steps=3, batch_size=2, warmup_steps=2,
                                   validate_every=1, max_minutes=30.0)
    record = train_fusion(settings, tmp_path / "f.pt", tmp_path / "f.json")
    assert _history(record["training"], "val_score") == FUSION_HISTORY
    assert record["weights_sha256"] == FUSION_SHA256


def test_two_stage_trainer_numerics(tmp_path: Path) -> None:
    record = train_real("segment", tmp_path / "seg.pt", tmp_path / "rc", None, steps=3,
                        max_minutes=30.0, batch_size=2, learning_rate=2e-3, seed=0,
                        n_subjects=1, base_channels=4, version="test")
    assert _history(record, "val_myo_dice") == REAL_HISTORY
    assert record["weights_sha256"] == REAL_SHA256
