"""The research export of radiomic features: per series and per cohort.

Beside a T1-map series' ``results.json`` the node writes its full feature vector as
``features.json`` and a one-row ``features.csv`` (:func:`write_series_features`);
``cmr-node radiomics export`` gathers the rows of many ``results.json`` files into one CSV
(:func:`export_features`).  A T1-map entry (``"analysis": "t1map"``) contributes a row when it
carries a radiomics block, at ``entry["radiomics"]`` (one series entry as the node's workers
write it) or ``entry["extra"]["radiomics"]`` (the offline ``{"series": [...]}`` form)::

    {"features": {name: value or null, ...},
     "slice": {"frame_index": ..., "sop_instance_uid": ..., "slice_location_mm": ...,
               "level": ...},
     "preprocessing": {...}}

as written by :meth:`plugins.lib.radiomics.features.FeatureVector.as_block`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from node.catalog.spool import write_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURES_CSV",
    "FEATURES_JSON",
    "ID_COLUMNS",
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
    write_atomic(json_path, text.encode("utf-8"))
    row = _row(entry, block, RESULTS_FILE)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    csv_path = folder / FEATURES_CSV
    write_atomic(csv_path, buffer.getvalue().encode("utf-8"))
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
