"""``cmr-node radiomics ...`` commands: train a rad-score model, export features, LVRR.

``cmr-node radiomics train --table T.csv --outcome COL --out model.json [--bootstrap N] [--seed S]``
``cmr-node radiomics export DIR_OR_RESULTS... --out features.csv``
``cmr-node radiomics lvrr --covariates x.json [--radscore V] [--model NAME] [--json]``

The export reads ``results.json`` files (the offline ``{"series": [...]}`` form or one
series entry as the node's workers write it).  A T1-map entry (``"analysis": "t1map"``)
contributes a row when it carries a radiomics block, at ``entry["radiomics"]`` or
``entry["extra"]["radiomics"]``::

    {"features": {name: value or null, ...},
     "slice": {"frame_index": ..., "sop_instance_uid": ..., "slice_location_mm": ...,
               "level": ...},
     "preprocessing": {...}}

as written by :meth:`plugins.radiomics.features.FeatureVector.as_block`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURES_CSV",
    "FEATURES_JSON",
    "ID_COLUMNS",
    "add_radiomics_commands",
    "collect_rows",
    "export_features",
    "write_series_features",
]

RESULTS_FILE: Final = "results.json"
FEATURES_JSON: Final = "features.json"
FEATURES_CSV: Final = "features.csv"
FEATURES_SCHEMA: Final = "cmr-node/radiomics-features/1"
ID_COLUMNS: Final[tuple[str, ...]] = (
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "frame_index",
    "slice_location_mm",
    "level",
    "source",
)
"""Identifier columns written before the features in an export."""


def add_radiomics_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``radiomics train|export|lvrr`` on a parser's subparsers.

    Parameters
    ----------
    subparsers
        The object returned by ``ArgumentParser.add_subparsers()``.

    Returns
    -------
    argparse.ArgumentParser
        The ``radiomics`` parser; each command sets ``func(args) -> int``.
    """
    parser = subparsers.add_parser("radiomics", help="T1 radiomics: train, export, LVRR")
    sub = parser.add_subparsers(dest="radiomics_command", required=True)

    p = sub.add_parser("train", help="train a rad-score model from a cohort table")
    p.add_argument("--table", required=True, help="CSV: one row per patient")
    p.add_argument("--outcome", required=True, help="outcome column (0/1)")
    p.add_argument("--out", required=True, help="model file to write (JSON)")
    p.add_argument("--outcome-definition", help="what outcome 1 means (default: column name)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--folds", type=int, default=10, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

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
    from plugins.radiomics.training import TrainingError, train_from_csv

    try:
        report = train_from_csv(
            args.table, args.outcome, args.out,
            outcome_definition=args.outcome_definition, bootstrap=args.bootstrap,
            folds=args.folds, seed=args.seed,
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


def _results_files(paths: list[str]) -> Iterator[Path]:
    for item in paths:
        path = Path(item)
        if path.is_dir():
            yield from sorted(path.rglob(RESULTS_FILE))
        elif path.is_file():
            yield path
        else:
            logger.warning("%s does not exist", path)


def _entries(document: Any) -> list[Mapping[str, Any]]:
    if isinstance(document, Mapping):
        series = document.get("series")
        if isinstance(series, list):
            return [e for e in series if isinstance(e, Mapping)]
        return [document]
    return []


def _block(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    block = entry.get("radiomics")
    if block is None and isinstance(entry.get("extra"), Mapping):
        block = entry["extra"].get("radiomics")
    if isinstance(block, Mapping) and isinstance(block.get("features"), Mapping):
        return block
    return None


def _row(entry: Mapping[str, Any], block: Mapping[str, Any], source: str) -> dict[str, Any]:
    """One export row: identifiers, then the features (NaN/None as an empty cell)."""
    slice_info = block.get("slice") or {}
    row: dict[str, Any] = {
        "study_instance_uid": entry.get("study_instance_uid", ""),
        "series_instance_uid": entry.get("series_instance_uid", ""),
        "sop_instance_uid": slice_info.get("sop_instance_uid", ""),
        "frame_index": slice_info.get("frame_index", ""),
        "slice_location_mm": slice_info.get("slice_location_mm", ""),
        "level": slice_info.get("level", ""),
        "source": source,
    }
    for name, value in block["features"].items():
        row[str(name)] = "" if value is None else value
    return row


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _json_number(value: Any) -> Any:
    """JSON form of numpy scalars (``json.dumps`` default)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def write_series_features(
    entry: Mapping[str, Any], folder: Path, block: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write one analysed T1 map's full feature vector as ``features.json`` and ``.csv``.

    Parameters
    ----------
    entry
        The series' ``results.json`` entry (identifiers, and ``extra["radiomics"]``).
    folder
        The series' result folder (next to ``results.json`` and the DICOM outputs).
    block
        The radiomics block at full precision (``AnalysisResult.extra["radiomics"]``);
        default: the entry's, whose numbers ``results.json`` rounds to 3 decimals.

    Returns
    -------
    list of Path
        The files written; empty when the entry has no feature vector.
    """
    if block is None or not isinstance(block.get("features"), Mapping):
        block = _block(entry)
    if entry.get("analysis") != "t1map" or block is None:
        return []
    document = {
        "schema": FEATURES_SCHEMA,
        "study_instance_uid": entry.get("study_instance_uid", ""),
        "series_instance_uid": entry.get("series_instance_uid", ""),
        "slice": dict(block.get("slice") or {}),
        "preprocessing": dict(block.get("preprocessing") or {}),
        "radscore": block.get("radscore"),
        "lvrr": block.get("lvrr"),
        "features": dict(block["features"]),
    }
    json_path = folder / FEATURES_JSON
    text = json.dumps(document, indent=2, allow_nan=False, default=_json_number)
    _write_atomic(json_path, text.encode("utf-8"))
    row = _row(entry, block, RESULTS_FILE)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    csv_path = folder / FEATURES_CSV
    _write_atomic(csv_path, buffer.getvalue().encode("utf-8"))
    logger.info("%d features of series %s written to %s", len(block["features"]),
                entry.get("series_instance_uid"), folder)
    return [json_path, csv_path]


def collect_rows(paths: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Rows of identifiers and features from results files.

    Parameters
    ----------
    paths
        ``results.json`` files or folders searched recursively for them.

    Returns
    -------
    feature_names, rows
        Feature names (order of first appearance) and one row per T1-map series with a
        radiomics block; a series found twice keeps its last occurrence.
    """
    names: dict[str, None] = {}
    rows: dict[str, dict[str, Any]] = {}
    for path in _results_files(paths):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("skipping %s: %s", path, exc)
            continue
        for entry in _entries(document):
            if entry.get("analysis") != "t1map":
                continue
            block = _block(entry)
            if block is None:
                continue
            row = _row(entry, block, str(path))
            for name in block["features"]:
                names.setdefault(str(name), None)
            key = str(row["series_instance_uid"]) or f"{path}#{len(rows)}"
            if key in rows:
                logger.info("series %s found again in %s; keeping the later", key, path)
            rows[key] = row
    return list(names), list(rows.values())


def export_features(paths: list[str], out: Path) -> int:
    """Write the features of every T1-map series found to a CSV; returns the row count."""
    names, rows = collect_rows(paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*ID_COLUMNS, *names], restval="")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def cmd_export(args: argparse.Namespace) -> int:
    """Export radiomic features to CSV."""
    count = export_features(list(args.paths), Path(args.out))
    print(f"{count} series with radiomic features written to {args.out}")
    return 0 if count else 1


# ------------------------------------------------------------------------------------ lvrr


def cmd_lvrr(args: argparse.Namespace) -> int:
    """Print the LVRR probability of the richest (or the named) published model."""
    from plugins.radiomics.lvrr import CovariateError, best_available_model, lvrr_probability

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
