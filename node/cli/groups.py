"""What the sub-command groups of ``cmr-node`` share: a group's parser, the site configuration
arguments, and the arguments of a command that trains a model from a cohort table."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_command_group(subparsers: Any, name: str, help: str) -> tuple[argparse.ArgumentParser, Any]:
    """Register the group ``cmr-node NAME ...`` on a parser's subparsers.

    Parameters
    ----------
    subparsers
        The object returned by ``ArgumentParser.add_subparsers()``.
    name, help
        The group's name and its line in ``cmr-node --help``.

    Returns
    -------
    tuple
        The group's parser, and its subparsers (a command is required; its name is
        ``args.<name>_command``).
    """
    parser = subparsers.add_parser(name, help=help)
    return parser, parser.add_subparsers(dest=f"{name}_command", required=True)


def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``p`` with the site configuration (``--config``) and ``--data-dir`` arguments."""
    p.add_argument("--config", help="site configuration (TOML); default $CMR_NODE_CONFIG")
    p.add_argument("--data-dir", dest="data_dir", help="override node.data_dir")
    return p


def add_training_command(
    sub: Any,
    help: str,
    func: Callable[[argparse.Namespace], int],
    *,
    table_help: str,
    outcome_help: str,
    folds: int,
    folds_help: str,
    bootstrap_help: str,
) -> argparse.ArgumentParser:
    """Register ``train``: a model trained from a cohort table (one row per patient).

    Parameters
    ----------
    sub
        The group's subparsers (:func:`add_command_group`).
    help
        The command's line in the group's help.
    func
        What the command runs (``func(args) -> int``).
    table_help, outcome_help, folds_help, bootstrap_help
        Help of ``--table``, ``--outcome``, ``--folds`` and ``--bootstrap``.
    folds
        Default number of cross-validation folds.

    Returns
    -------
    argparse.ArgumentParser
        The ``train`` parser: ``--table``, ``--outcome``, ``--out``,
        ``--outcome-definition``, ``--folds``, ``--bootstrap``, ``--seed``.
    """
    p: argparse.ArgumentParser = sub.add_parser("train", help=help)
    p.add_argument("--table", required=True, help=table_help)
    p.add_argument("--outcome", required=True, help=outcome_help)
    p.add_argument("--out", required=True, help="model file to write (JSON)")
    p.add_argument("--outcome-definition", help="what outcome 1 means (default: column name)")
    p.add_argument("--folds", type=int, default=folds, help=folds_help)
    p.add_argument("--bootstrap", type=int, default=1000, help=bootstrap_help)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=func)
    return p
