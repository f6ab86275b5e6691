"""The command lines every network trainer shares: training options, cache rendering."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_cache", "start_logging", "training_parser"]


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


def render_cache(description: str, generate: Callable[..., None], default_count: int,
                 argv: Sequence[str] | None = None, *, count: str = "subjects",
                 chunks: bool = False) -> None:
    """Command line that renders a training cache: ``DIRECTORY [--{count} N] [--chunks K ...]``.

    Parameters
    ----------
    description
        Help text of the command.
    generate
        The cache writer, called as ``generate(directory, n)`` (with ``chunks=`` if
        ``chunks``).
    default_count
        Default number of subjects (or views).
    argv
        Arguments; the process's if ``None``.
    count
        Name of the count option.
    chunks
        Offer ``--chunks`` (render only these chunk numbers, e.g. in two processes).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("directory", type=Path)
    parser.add_argument(f"--{count}", dest="count", metavar="N", type=int,
                        default=default_count)
    if chunks:
        parser.add_argument("--chunks", type=int, nargs="*", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if chunks:
        generate(args.directory, args.count, chunks=args.chunks)
    else:
        generate(args.directory, args.count)
