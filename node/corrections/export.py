"""The corrected cases, for site fine-tuning (``cmr-node corrections export DIR``).

Each source series the readers corrected becomes one folder ``DIR/<n>-<analysis>/`` with the
latest correction (``seg.dcm``, the reader's DICOM SEG as received) and its source images
(``sources/``), the layout ``cmr-node models finetune --images DIR --format dicom-seg`` reads
(:func:`models.training.lgeseg.site_data.load_dicom_seg`: one SEG per source image, hence only the
latest correction of a series).  ``corrections.json`` lists what was exported with the
agreement of each case.  Files are copied; the spool is not changed.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from node.catalog.catalog import Catalog

__all__ = ["ExportError", "export_corrections"]

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The corrections cannot be exported; the message says why."""


def export_corrections(catalog: Catalog, out_dir: Path, analysis: str | None = None
                       ) -> list[dict[str, Any]]:
    """Copy the latest correction of each corrected series and its source images.

    Parameters
    ----------
    catalog
        The node's catalog (corrections, instances).
    out_dir
        Folder to write into; must be empty or absent.
    analysis
        Only corrections of this analysis' results (e.g. ``"lge"``); all when None.

    Returns
    -------
    list of dict
        One entry per exported case: folder, SEG and source series UIDs, analysis, station,
        calling AE and agreement.

    Raises
    ------
    ExportError
        If ``out_dir`` is not empty or a file of a case is missing from the spool.
    """
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} is not empty")
    latest: dict[str, dict[str, Any]] = {}
    for record in catalog.corrections():
        if analysis is None or record["analysis"] == analysis:
            latest[str(record["source_series_uid"])] = record  # oldest first: the last wins
    cases = []
    for number, (source, record) in enumerate(sorted(latest.items()), start=1):
        folder = out_dir / f"{number:04d}-{record['analysis']}"
        sources = catalog.instance_paths(source)
        files = [Path(record["path"]), *sources]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise ExportError(f"correction {record['sop_instance_uid']}: {len(missing)} files"
                              f" missing from the spool, e.g. {missing[0]}")
        (folder / "sources").mkdir(parents=True)
        shutil.copy2(files[0], folder / "seg.dcm")
        for index, path in enumerate(sources):
            shutil.copy2(path, folder / "sources" / f"{index:04d}.dcm")
        cases.append({
            "folder": folder.name, "seg_sop_instance_uid": record["sop_instance_uid"],
            "source_series_uid": source, "analysis": record["analysis"],
            "station": record["station"], "calling_ae": record["calling_ae"],
            "agreement": record["agreement"],
        })
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "corrections.json").write_text(json.dumps(cases, indent=2) + "\n")
    logger.info("exported %d corrected cases to %s", len(cases), out_dir)
    return cases
