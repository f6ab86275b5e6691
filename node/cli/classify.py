"""``cmr-node classify train``: train a site's infarct model (clinical + LGE image features).

``cmr-node classify train --table T.csv --outcome COL --out model.json [--folds K]
[--bootstrap N] [--seed S] [--outcome-definition TEXT]``

Training is :mod:`models.training.classify.train`; the model format and its use at analysis time
:mod:`plugins.lge.infarct_model`.  This module only wires them to the command line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from node import __version__
from node.cli.groups import add_command_group, add_training_command

__all__ = ["add_classify_commands"]


def add_classify_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``classify train`` on ``subparsers`` (of ``ArgumentParser.add_subparsers()``);
    returns the ``classify`` parser, whose command sets ``func(args) -> int``."""
    parser, sub = add_command_group(subparsers, "classify",
                                    "infarct classifier: train a site model")
    add_training_command(
        sub, "train an infarct model from a cohort table", cmd_train,
        table_help="CSV: one row per patient, clinical and image feature columns",
        outcome_help="outcome column (1 infarct, 0 not)",
        folds=5, folds_help="stratified cross-validation folds",
        bootstrap_help="bootstrap resamples of the CV AUC interval",
    )
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    """Train and write an infarct model."""
    from models.training.classify.train import ClassifyTrainingError, train_from_csv

    try:
        report = train_from_csv(
            args.table, args.outcome, args.out, outcome_definition=args.outcome_definition,
            folds=args.folds, bootstrap=args.bootstrap, seed=args.seed,
            software={"cmr-node": __version__},
        )
    except ClassifyTrainingError as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    model = report.model
    t = model.training
    calibration = t["calibration"]
    print(f"infarct model written to {args.out}: {t['cohort_size']} patients, "
          f"{t['events']} with outcome; features: {', '.join(model.features)}")
    print(f"{t['folds']}-fold CV AUC {report.cv_auc:.3f} (95 % CI {report.cv_auc_ci95[0]:.3f}-"
          f"{report.cv_auc_ci95[1]:.3f}); calibration slope {calibration['slope']:.3f}, "
          f"intercept {calibration['intercept']:.3f}; Brier {calibration['brier_after']:.3f}")
    for name, coefficient in sorted(zip(model.features, model.coefficients, strict=True),
                                    key=lambda item: -abs(item[1])):
        print(f"  {coefficient:+.4f}  {name} (per SD)")
    print(f"sha256 {model.sha256}")
    return 0
