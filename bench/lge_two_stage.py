"""Inference time of the whole LGE segmentation path on one core: ``python -m bench.lge_two_stage``.

Every stack is segmented as the LGE analysis does by default (``segmenter = "cascade"``,
:class:`models.runtime.lgeseg.cascade.CascadeLgeSegmenter`: the 1.1.0 U-Net until it is unsure of
the stack, then :meth:`models.runtime.lgeseg.two_stage.TwoStageLgeSegmenter.segment_stack`:
localiser on every slice, stack chain, heart crops with eight test-time views and
re-centring, stretch correction, post-processing, scar confirmation, twice: whole image and
with half-size tiles); the time per slice is
the stack's wall-clock time over its slices.  In between, the two-stage path as it was
before the cascade (two views, identity and mirror; whole-image localisation only) and the
committed 1.1.0 U-Net alone segment the same slices, as references (the second shows how
loaded the machine was).  One
torch thread; the load average is recorded.

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
    from models.evaluation.lgeseg.evaluate_real import DEFAULT_DATA, load_emidec
    from models.training.lgeseg.real_scores import ASSUMED_SPACING_MM

    emidec = DEFAULT_DATA / "emidec-dev"
    if (emidec / "images").is_dir():
        cases: dict[str, list[tuple[int, np.ndarray]]] = defaultdict(list)
        for case, index, image, _ in load_emidec(emidec):
            cases[case].append((index, image))
        spacing = (ASSUMED_SPACING_MM, ASSUMED_SPACING_MM)
        return [(f"EMIDEC {case}", [image for _, image in sorted(items, key=lambda i: i[0])],
                 [spacing] * len(items), LgeContrast.MAGNITUDE)
                for case, items in sorted(cases.items())][:limit]
    from models.evaluation.lgeseg.evaluate import loader_view
    from models.training.lgeseg.data import EVAL_SEED_START, eval_stack

    found = []
    for seed in range(EVAL_SEED_START, EVAL_SEED_START + limit):
        stack = eval_stack(seed)
        found.append((f"phantom {seed}", [loader_view(item, seed) for item in stack],
                      [item.pixel_spacing for item in stack],
                      LgeContrast(str(stack[0].contrast))))
    return found


def _one_by_one(segmenter: Any, images: list[np.ndarray], spacings: list[tuple[float, float]],
                contrast: LgeContrast) -> list[Any]:
    return [segmenter.segment(image, spacing, contrast)
            for image, spacing in zip(images, spacings, strict=True)]


def run(limit: int, out: Path) -> dict[str, Any]:
    """Time the two-stage path and the 1.1.0 U-Net on ``limit`` stacks; write ``out``."""
    import torch

    from models.runtime.lgeseg.cascade import CascadeLgeSegmenter
    from models.runtime.lgeseg.segmenter import UNetLgeSegmenter
    from models.runtime.lgeseg.two_stage import TwoStageLgeSegmenter

    torch.set_num_threads(1)
    unet = UNetLgeSegmenter()
    cascade = CascadeLgeSegmenter(unet, TwoStageLgeSegmenter())
    two_views = TwoStageLgeSegmenter(test_time_views=2, tiled_hypothesis=False)
    stacks = _stacks(limit)
    warm = stacks[0]
    cascade.segment_stack(warm[1][:2], warm[2][:2], warm[3])
    two_views.segment_stack(warm[1][:2], warm[2][:2], warm[3])
    load_before = os.getloadavg()
    per_slice: list[float] = []
    two_views_per_slice: list[float] = []
    unet_per_slice: list[float] = []
    rows: list[dict[str, Any]] = []

    def timed(segment: Any, *args: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        found = segment(*args)
        return found, 1000.0 * (time.perf_counter() - started)

    for name, images, spacings, contrast in stacks:
        outputs, ms = timed(cascade.segment_stack, images, spacings, contrast)
        _, two_ms = timed(two_views.segment_stack, images, spacings, contrast)
        _, unet_ms = timed(_one_by_one, unet, images, spacings, contrast)
        ms, two_ms, unet_ms = (v / len(images) for v in (ms, two_ms, unet_ms))
        per_slice.append(ms)
        two_views_per_slice.append(two_ms)
        unet_per_slice.append(unet_ms)
        stretch = outputs[0].details.get("stretch_corrected")
        network = outputs[0].details["cascade"]["network"]
        rows.append({"stack": name, "slices": len(images), "network": network,
                     "cascade_ms_per_slice": round(ms, 1),
                     "two_stage_two_views_ms_per_slice": round(two_ms, 1),
                     "unet_1_1_ms_per_slice": round(unet_ms, 1), "stretch_corrected": stretch})
        logger.info("%s: %d slices, cascade %.0f ms/slice (%s), two-stage with 2 views %.0f, "
                    "1.1.0 %.0f ms/slice (stretch %s)", name, len(images), ms, network, two_ms,
                    unet_ms, stretch)
    result = {
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "stacks": len(stacks),
        "slices": sum(r["slices"] for r in rows),
        "cascade_median_ms_per_slice": round(statistics.median(per_slice), 1),
        "two_stage_two_views_median_ms_per_slice": round(statistics.median(
            two_views_per_slice), 1),
        "unet_1_1_median_ms_per_slice": round(statistics.median(unet_per_slice), 1),
        "ratio_cascade_to_unet": round(statistics.median(
            a / b for a, b in zip(per_slice, unet_per_slice, strict=True)), 2),
        "ratio_cascade_to_two_views": round(statistics.median(
            a / b for a, b in zip(per_slice, two_views_per_slice, strict=True)), 2),
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
    logger.info("cascade %.1f ms/slice, two-stage with 2 views %.1f, 1.1.0 %.1f (ratios %.2f "
                "to 1.1.0, %.2f to 2 views), load %s -> %s",
                result["cascade_median_ms_per_slice"],
                result["two_stage_two_views_median_ms_per_slice"],
                result["unet_1_1_median_ms_per_slice"], result["ratio_cascade_to_unet"],
                result["ratio_cascade_to_two_views"], result["load_average_before"],
                result["load_average_after"])


if __name__ == "__main__":
    main()
