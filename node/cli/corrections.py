"""``cmr-node corrections export DIR [--analysis A]``: the corrected cases, for site
fine-tuning.

The export is :mod:`node.corrections.export`; this module only wires it to the command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from node.catalog.catalog import Catalog
from node.cli.groups import add_command_group, with_config
from node.corrections.export import ExportError, export_corrections

__all__ = ["add_corrections_commands"]


def cmd_export(args: argparse.Namespace) -> int:
    """Export the corrected cases of the node's catalog."""
    from node.settings import load_settings

    settings = load_settings(Path(args.config) if args.config else None)
    if args.data_dir:
        settings = settings.with_overrides(data_dir=Path(args.data_dir).resolve())
    catalog = Catalog(settings.catalog_location)
    try:
        cases = export_corrections(catalog, Path(args.out_dir), args.analysis)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        catalog.close()
    print(f"exported {len(cases)} corrected case(s) to {args.out_dir}"
          " (cmr-node models finetune --images DIR --format dicom-seg)")
    return 0


def add_corrections_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``corrections export`` on ``subparsers`` (of
    ``ArgumentParser.add_subparsers()``); returns the ``corrections`` parser, whose command
    sets ``func(args) -> int``."""
    parser, sub = add_command_group(subparsers, "corrections", "readers' corrections of node SEGs")
    p = with_config(sub.add_parser("export", help="write the corrected cases (DICOM SEG +"
                                                  " sources) for cmr-node models finetune"))
    p.add_argument("out_dir", metavar="DIR", help="empty or new folder")
    p.add_argument("--analysis", help="only corrections of this analysis (e.g. lge)")
    p.set_defaults(func=cmd_export)
    return parser
