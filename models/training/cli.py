"""The command-line options every network trainer shares."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ["start_logging", "training_parser"]


def training_parser(description: str, defaults: Any, weights: Path) -> argparse.ArgumentParser:
    """A parser with ``--steps``, ``--cache-dir``, ``--max-minutes``, ``--learning-rate``
    (defaults from the trainer's settings dataclass ``defaults``) and ``--weights``
    (default ``weights``; the provenance record goes beside it as ``.json``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--cache-dir", default=defaults.cache_dir)
    parser.add_argument("--max-minutes", type=float, default=defaults.max_minutes,
                        help="wall-clock safety stop")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--weights", type=Path, default=weights,
                        help="where the weights go (the provenance JSON beside them)")
    return parser


def start_logging() -> None:
    """INFO logging with times and logger names, as the trainers log their progress."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
