"""Benchmark of the T1-map radiomics: ``python -m bench.radiomics_time``.

Prints the time to extract the 869 features of one mid-ventricular phantom T1-map slice,
including the IBSI preprocessing (resampling to 1 x 1 mm, N4 bias-field correction, μ ± 3σ
clipping, bin width 5), on one thread: the median of several runs after a warm-up (imports
and pyradiomics' filter set-up are paid once per process, at node start).  Also times the
rad-score and the LVRR probability, which are negligible.  Target: <= 1 s per slice.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Extraction time target per slice including preprocessing (issue 6).
TARGET_S = 1.0
SEED = 20240606


def time_extraction(runs: int = 5) -> dict[str, Any]:
    """Wall and CPU time of the feature extraction of one phantom mid-ventricular slice.

    Parameters
    ----------
    runs
        Timed runs after one warm-up run; the median is the figure.

    Returns
    -------
    dict
        ``median_s``, ``min_s``, ``max_s``, ``cpu_median_s``, ``features``, ``runs``,
        ``target_s``, ``passed`` (median ≤ target), ``shape`` and ``roi_pixels``.
    """
    from bench.molli_fit import one_thread
    from models.phantoms.t1map import make_t1map_slice
    from plugins.api import Label
    from plugins.lib.radiomics.features import extract_features

    phantom = make_t1map_slice(np.random.default_rng(SEED), field_strength_t=1.5, level="mid")
    roi = phantom.labels == Label.MYOCARDIUM
    walls: list[float] = []
    cpus: list[float] = []
    with one_thread():
        vector = extract_features(phantom.t1_ms, roi, phantom.pixel_spacing)  # warm-up
        for _ in range(runs):
            wall, cpu = time.perf_counter(), time.process_time()
            vector = extract_features(phantom.t1_ms, roi, phantom.pixel_spacing)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    median = statistics.median(walls)
    return {
        "shape": list(phantom.t1_ms.shape),
        "pixel_spacing_mm": [float(s) for s in phantom.pixel_spacing],
        "roi_pixels": int(roi.sum()),
        "features": len(vector),
        "runs": runs,
        "median_s": median,
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_median_s": statistics.median(cpus),
        "target_s": TARGET_S,
        "passed": median <= TARGET_S,
    }


def line(timing: dict[str, Any]) -> str:
    """The benchmark's one-line summary."""
    return (
        f"T1 radiomics, {timing['features']} features of one slice incl. preprocessing, one "
        f"thread: median {timing['median_s']:.2f} s over {timing['runs']} runs (min "
        f"{timing['min_s']:.2f}, max {timing['max_s']:.2f}; CPU {timing['cpu_median_s']:.2f} s) "
        f"- target <= {timing['target_s']:g} s: {'PASS' if timing['passed'] else 'FAIL'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print the extraction time; exit 0 when the target is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a line")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    timing = time_extraction(args.runs)
    print(json.dumps(timing, indent=2) if args.json else line(timing))
    return 0 if timing["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
