"""Inference time of the whole two-stage LGE path on one core: ``python -m bench.lge_two_stage``.

Every stack is segmented as the LGE analysis does with ``segmenter = "two-stage"``
(:meth:`models.lgeseg.two_stage.TwoStageLgeSegmenter.segment_stack`: localiser on every
slice, stack chain, heart crops with test-time flip and re-centring, stretch correction,
post-processing, scar confirmation); the time per slice is the stack's wall-clock time over
its slices.  The committed 1.1.0 U-Net segments the same slices in between, as a reference
that shows how loaded the machine was.  One torch thread; the load average is recorded.

Stacks: the EMIDEC dev split's cases when ``../shared/data/emidec-dev`` is present (real
images; measuring only), else held-out phantom stacks.  Writes ``build/lge_two_stage.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from plugins.lge.segmenter import LgeContrast
from tests.netutil import REPO

logger = logging.getLogger(__name__)

Stack = tuple[str, list[np.ndarray], list[tuple[float, float]], LgeContrast]


def _stacks(limit: int) -> list[Stack]:
    from models.lgeseg.evaluate_real import ASSUMED_SPACING_MM, DEFAULT_DATA, load_emidec

    emidec = DEFAULT_DATA / "emidec-dev"
    if (emidec / "images").is_dir():
        cases: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
        for case, index, image, _ in load_emidec(emidec):
            cases[case].append((index, image))
        spacing = (ASSUMED_SPACING_MM, ASSUMED_SPACING_MM)
        return [(f"EMIDEC {case}", [image for _, image in sorted(items, key=lambda i: i[0])],
                 [spacing] * len(items), LgeContrast.MAGNITUDE)
                for case, items in sorted(cases.items())][:limit]
    from models.lgeseg.data import EVAL_SEED_START, eval_stack
    from models.lgeseg.evaluate import loader_view

    found = []
    for seed in range(EVAL_SEED_START, EVAL_SEED_START + limit):
        stack = eval_stack(seed)
        found.append((f"phantom {seed}", [loader_view(item, seed) for item in stack],
                      [item.pixel_spacing for item in stack],
                      LgeContrast(str(stack[0].contrast))))
    return found


def run(limit: int, out: Path) -> dict[str, Any]:
    """Time the two-stage path and the 1.1.0 U-Net on ``limit`` stacks; write ``out``."""
    import torch

    from models.lgeseg.segmenter import UNetLgeSegmenter
    from models.lgeseg.two_stage import TwoStageLgeSegmenter

    torch.set_num_threads(1)
    two_stage, unet = TwoStageLgeSegmenter(), UNetLgeSegmenter()
    stacks = _stacks(limit)
    warm = stacks[0]
    two_stage.segment_stack(warm[1][:2], warm[2][:2], warm[3])
    unet.segment(warm[1][0], warm[2][0], warm[3])
    load_before = os.getloadavg()
    per_slice: list[float] = []
    unet_per_slice: list[float] = []
    rows: list[dict[str, Any]] = []
    for name, images, spacings, contrast in stacks:
        started = time.perf_counter()
        outputs = two_stage.segment_stack(images, spacings, contrast)
        ms = 1000.0 * (time.perf_counter() - started) / len(images)
        started = time.perf_counter()
        for image, spacing in zip(images, spacings, strict=True):
            unet.segment(image, spacing, contrast)
        unet_ms = 1000.0 * (time.perf_counter() - started) / len(images)
        per_slice.append(ms)
        unet_per_slice.append(unet_ms)
        stretch = outputs[0].details.get("stretch_corrected")
        rows.append({"stack": name, "slices": len(images), "two_stage_ms_per_slice": round(ms, 1),
                     "unet_1_1_ms_per_slice": round(unet_ms, 1), "stretch_corrected": stretch})
        logger.info("%s: %d slices, two-stage %.0f ms/slice, 1.1.0 %.0f ms/slice (stretch %s)",
                    name, len(images), ms, unet_ms, stretch)
    result = {
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "stacks": len(stacks),
        "slices": sum(r["slices"] for r in rows),
        "two_stage_median_ms_per_slice": round(statistics.median(per_slice), 1),
        "unet_1_1_median_ms_per_slice": round(statistics.median(unet_per_slice), 1),
        "ratio_two_stage_to_unet": round(statistics.median(
            a / b for a, b in zip(per_slice, unet_per_slice, strict=True)), 2),
        "per_stack": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "lge_two_stage.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(args.stacks, args.out)
    logger.info("two-stage %.1f ms/slice, 1.1.0 %.1f ms/slice (ratio %.2f), load %s -> %s",
                result["two_stage_median_ms_per_slice"], result["unet_1_1_median_ms_per_slice"],
                result["ratio_two_stage_to_unet"], result["load_average_before"],
                result["load_average_after"])


if __name__ == "__main__":
    main()
