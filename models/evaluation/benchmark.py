"""What the network evaluations share: the inference benchmark and the command line."""

from __future__ import annotations

import argparse
import logging
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["benchmark_segment", "evaluation_parser", "start_evaluation"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def benchmark_segment(load: Callable[[], Any], calls: Sequence[tuple[Any, ...]]
                      ) -> dict[str, float]:
    """ms per ``segment`` call and peak RSS, on one thread.

    Parameters
    ----------
    load
        Builds the segmenter (its memory counts from here).
    calls
        Arguments of every timed ``segmenter.segment(*args)``; the first is also run once
        untimed before them (warm-up).

    Returns
    -------
    dict
        ``slices``, ``ms_per_slice_mean``, ``ms_per_slice_p95``, ``peak_rss_mb``,
        ``rss_before_model_mb``, ``threads``.  Run in a fresh process so that the memory
        figures are the model's own.
    """
    import torch

    torch.set_num_threads(1)
    baseline_mb = _rss_mb()
    segmenter = load()
    segmenter.segment(*calls[0])
    times = []
    for args in calls:
        started = time.perf_counter()
        segmenter.segment(*args)
        times.append(1000.0 * (time.perf_counter() - started))
    return {
        "slices": len(times),
        "ms_per_slice_mean": round(float(np.mean(times)), 1),
        "ms_per_slice_p95": round(float(np.percentile(times, 95)), 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "rss_before_model_mb": round(baseline_mb, 1),
        "threads": 1,
    }


def evaluation_parser(description: str, weights: Path) -> argparse.ArgumentParser:
    """A parser with ``--weights`` (default ``weights``), ``--benchmark`` and ``--no-write``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--weights", type=Path, default=weights)
    parser.add_argument("--benchmark", action="store_true",
                        help="only run the inference benchmark and print it as JSON")
    parser.add_argument("--no-write", action="store_true", help="do not update the JSON")
    return parser


def start_evaluation() -> None:
    """INFO logging with times and logger names, and torch on one thread."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
