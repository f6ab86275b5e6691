"""``cmr-node radiomics ...`` commands: train a rad-score model, export features, LVRR.

``cmr-node radiomics train --table T.csv --outcome COL --out model.json [--bootstrap N] [--seed S]``
``cmr-node radiomics export DIR_OR_RESULTS... --out features.csv``
``cmr-node radiomics lvrr --covariates x.json [--radscore V] [--model NAME] [--json]``

Training is :mod:`models.training.radscore.train`, the export :mod:`node.outputs.radiomics_export`,
the LVRR models :mod:`plugins.lib.radiomics.lvrr`; this module only wires them to the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from node import __version__
from node.cli.groups import add_command_group, add_training_command
from node.outputs.radiomics_export import export_features

__all__ = ["add_radiomics_commands"]


def add_radiomics_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``radiomics train|export|lvrr`` on ``subparsers`` (of
    ``ArgumentParser.add_subparsers()``); returns the ``radiomics`` parser, whose commands
    set ``func(args) -> int``."""
    parser, sub = add_command_group(subparsers, "radiomics", "T1 radiomics: train, export, LVRR")
    add_training_command(
        sub, "train a rad-score model from a cohort table", cmd_train,
        table_help="CSV: one row per patient", outcome_help="outcome column (0/1)",
        folds=10, folds_help="cross-validation folds", bootstrap_help="bootstrap resamples",
    )

    p = sub.add_parser("export", help="export radiomic features of analysed studies to CSV")
    p.add_argument("paths", nargs="+", help="results.json files or folders searched for them")
    p.add_argument("--out", required=True, help="CSV to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("lvrr", help="LVRR probability from the published models")
    p.add_argument("--covariates", required=True, help="JSON object of covariates")
    p.add_argument("--radscore", type=float, help="rad-score (overrides the JSON)")
    p.add_argument("--model", help="published model name (default: the richest available)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_lvrr)
    return parser


# ------------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    """Train and write a rad-score model."""
    from models.training.radscore.train import TrainingError, train_from_csv

    try:
        report = train_from_csv(
            args.table, args.outcome, args.out,
            outcome_definition=args.outcome_definition, bootstrap=args.bootstrap,
            folds=args.folds, seed=args.seed, software={"cmr-node": __version__},
        )
    except TrainingError as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    t = report.model.training
    print(
        f"rad-score model written to {args.out}: {len(report.model.features)} feature(s) "
        f"selected; {t.cohort_size} patients, {t.events} with outcome"
    )
    print(f"lambda {t.penalty_lambda:.4g}; mean {t.folds}-fold CV AUC {t.cv_auc:.3f}; "
          f"apparent AUC {t.apparent_auc:.3f}")
    print(f"optimism-corrected AUC {t.optimism_corrected_auc:.3f} "
          f"(95 % CI {t.optimism_corrected_auc_ci95[0]:.3f}-"
          f"{t.optimism_corrected_auc_ci95[1]:.3f}, {t.bootstrap_resamples} bootstrap resamples)")
    for name, coefficient in zip(report.model.features, report.model.coefficients, strict=True):
        print(f"  {coefficient:+.4f}  {name}")
    print(f"sha256 {report.model.sha256}")
    return 0


# ------------------------------------------------------------------------------------ export


def cmd_export(args: argparse.Namespace) -> int:
    """Export radiomic features to CSV."""
    count = export_features(list(args.paths), Path(args.out))
    print(f"{count} series with radiomic features written to {args.out}")
    return 0 if count else 1


# ------------------------------------------------------------------------------------ lvrr


def cmd_lvrr(args: argparse.Namespace) -> int:
    """Print the LVRR probability of the richest (or the named) published model."""
    from plugins.lib.radiomics.lvrr import CovariateError, best_available_model, lvrr_probability

    try:
        covariates = json.loads(Path(args.covariates).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"cannot read covariates: {exc}", file=sys.stderr)
        return 2
    if not isinstance(covariates, dict):
        print("the covariates file must hold a JSON object", file=sys.stderr)
        return 2
    if args.radscore is not None:
        covariates["radscore"] = args.radscore
    try:
        name = args.model or best_available_model(covariates)
        if name is None:
            print("no published model has all its covariates in the input", file=sys.stderr)
            return 1
        result = lvrr_probability(name, covariates)
    except (CovariateError, KeyError) as exc:
        print(f"invalid input: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(result.text)
    return 0
