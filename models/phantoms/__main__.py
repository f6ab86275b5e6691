"""Command line: write a synthetic cardiac MR study (DICOM files plus truth.json).

Example::

    python -m models.phantoms --out /tmp/study --vendor philips --field 3 --seed 7 \\
        --with-negatives --with-lge
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from models.phantoms.dicom_lge import write_lge_study_series
from models.phantoms.dicom_study import Vendor
from models.phantoms.lge_scar import ScarPattern
from models.phantoms.study import TRUTH_FILE, write_synthetic_study


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the phantom command line."""
    parser = argparse.ArgumentParser(
        prog="python -m models.phantoms",
        description="Write a synthetic cardiac MR study: a MOLLI native T1-map series "
        "(and optionally other series) as DICOM files, plus truth.json.",
    )
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--vendor", choices=[v.value for v in Vendor], default="siemens")
    parser.add_argument("--field", type=float, choices=[1.5, 3.0], default=1.5,
                        help="field strength in tesla")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--with-negatives", action="store_true",
                        help="also write MOLLI source, T2 map, post-contrast T1, ECV and "
                        "brain series")
    parser.add_argument("--with-enhanced", action="store_true",
                        help="also write the T1 map as a multi-frame instance")
    parser.add_argument("--with-lge", action="store_true",
                        help="also write LGE PSIR and magnitude series, a matched cine series "
                        "and a TI scout of the same subject")
    parser.add_argument("--scar-pattern", choices=[p.value for p in ScarPattern], default=None,
                        help="scar of the LGE series (default: random, possibly none)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        truth = write_synthetic_study(
            args.out, seed=args.seed, vendor=args.vendor, field_strength_t=args.field,
            with_negatives=args.with_negatives, with_enhanced=args.with_enhanced,
        )
        if args.with_lge:
            lge = write_lge_study_series(
                args.out, seed=args.seed, vendor=args.vendor, field_strength_t=args.field,
                scar_pattern=args.scar_pattern,
            )
            truth["series"].extend(lge["series"])
            truth["lge"] = lge["lge"]
            (Path(args.out) / TRUTH_FILE).write_text(
                json.dumps(truth, indent=2, sort_keys=True) + "\n")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n_files = sum(len(s["instances"]) for s in truth["series"])
    print(f"wrote {len(truth['series'])} series ({n_files} files) and {TRUTH_FILE} "
          f"to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
