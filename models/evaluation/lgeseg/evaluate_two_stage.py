"""Held-out phantom evaluation of the two-stage (sim-to-real) LGE segmenter.

``python -m models.evaluation.lgeseg.evaluate_two_stage [--stacks 64] [--locator PT] [--segmenter
PT] [--max-candidates N] [--scar-rule 3sd|none|...] [--localisation stack|slice] [--cascade]``
scores the held-out phantom stacks of :mod:`models.evaluation.lgeseg.evaluate` (seeds from 950000,
the same intensity mappings and design) with
:class:`models.runtime.lgeseg.two_stage.TwoStageLgeSegmenter` and prints the same tables (myocardium
and scar Dice, per cent scar slope / r / bias, presence accuracy); ``--json`` writes the summary.
With ``--cascade`` the stacks go through
:class:`models.runtime.lgeseg.cascade.CascadeLgeSegmenter` (the committed one-stage U-Net where it
is sure of the stack, else the two-stage segmenter).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from models.evaluation.lgeseg.evaluate import DEFAULT_STACKS, evaluate_stacks, summarise, tables
from models.runtime.lgeseg.cascade import CascadeLgeSegmenter
from models.runtime.lgeseg.segmenter import UNetLgeSegmenter
from models.runtime.lgeseg.two_stage import (
    DEFAULT_LOCATOR,
    DEFAULT_SEGMENTER,
    MAX_CANDIDATES,
    SCAR_RULE,
    TwoStageLgeSegmenter,
)
from models.training.lgeseg.data import EVAL_SEED_START
from plugins.lge.quantify import CONFIRMATION_RULES
from plugins.lge.segmenter import LgeSegmenter

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=DEFAULT_STACKS)
    parser.add_argument("--seed-start", type=int, default=EVAL_SEED_START)
    parser.add_argument("--locator", type=Path, default=DEFAULT_LOCATOR)
    parser.add_argument("--segmenter", type=Path, default=DEFAULT_SEGMENTER)
    parser.add_argument("--max-candidates", type=int, default=MAX_CANDIDATES)
    parser.add_argument("--scar-rule", choices=(*CONFIRMATION_RULES, "none"), default=SCAR_RULE)
    parser.add_argument("--localisation", choices=("stack", "slice"), default="stack",
                        help="heart localised per stack (default) or per slice")
    parser.add_argument("--cascade", action="store_true",
                        help="one-stage U-Net first, two-stage where it is unsure")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.seed_start < EVAL_SEED_START:
        parser.error(f"seeds below {EVAL_SEED_START} are training or validation seeds")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)
    segmenter = TwoStageLgeSegmenter(
        args.locator, args.segmenter, max_candidates=args.max_candidates,
        scar_rule=None if args.scar_rule == "none" else args.scar_rule)
    evaluated: LgeSegmenter = segmenter
    if args.cascade:
        evaluated = CascadeLgeSegmenter(UNetLgeSegmenter(), segmenter)
    started = time.perf_counter()
    slices, stacks = evaluate_stacks(
        evaluated, args.stacks, args.seed_start,  # type: ignore[arg-type]
        per_stack=args.localisation == "stack")
    summary = summarise(slices, stacks)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "segmenter": f"{evaluated.name} {evaluated.version}",
            "weights_sha256": evaluated.weights_sha256,
            "locator_sha256": segmenter.locator_sha256,
            "max_candidates": segmenter.max_candidates,
            "scar_rule": segmenter.scar_rule,
            "localisation": args.localisation,
            "held_out_seeds": [args.seed_start, args.seed_start + args.stacks - 1],
            "summary": summary,
            "stacks": [asdict(s) for s in stacks],
            "minutes": round((time.perf_counter() - started) / 60.0, 1),
        }, indent=2) + "\n")
    logger.info("\n%s", tables(summary))


if __name__ == "__main__":
    main()
