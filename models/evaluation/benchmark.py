"""Inference time and memory of a segmenter, as the evaluations report them."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["benchmark_segment"]


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
