"""Spool recovery at start: spool files the catalog does not know are recorded, unreadable
ones set aside, before the listener accepts associations."""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom import dcmread

from node.catalog.catalog import Catalog
from node.receive.instance import instance_record, parse_header, validate_instance

logger = logging.getLogger(__name__)


def reconcile_spool(spool_dir: Path, catalog: Catalog) -> tuple[int, int]:
    """Record spool files the catalog does not know; set aside unreadable ones.

    The spool file is fsynced before a C-STORE is acknowledged, the catalog row after it
    with ``synchronous=NORMAL``: a power loss can lose the row, never the file. This runs at
    start, before the listener accepts associations. A partial file left by a crash during
    a write (never acknowledged) fails to parse and is moved to ``spool/../quarantine``.

    Returns
    -------
    tuple of int
        (files recovered, files quarantined).
    """
    known = catalog.known_paths()
    recovered = quarantined = 0
    for path in sorted(spool_dir.rglob("*.dcm")) if spool_dir.exists() else []:
        if str(path) in known:
            continue
        try:
            raw = path.read_bytes()
            meta = dcmread(path, stop_before_pixels=True).file_meta
            transfer_syntax = str(meta.TransferSyntaxUID)
            received = parse_header(raw, transfer_syntax)
            ds = received.dataset
            validate_instance(received, str(ds.SOPClassUID), str(ds.SOPInstanceUID))
            calling = str(meta.get("SourceApplicationEntityTitle", "")).strip() or None
            record = instance_record(ds, path, len(raw), calling, transfer_syntax)
        except Exception as exc:
            target = spool_dir.parent / "quarantine" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
            quarantined += 1
            catalog.record_event("spool_quarantined", None, f"{path.name}: {exc}")
            continue
        catalog.record_instance(record, now=path.stat().st_mtime)
        catalog.record_event(
            "spool_recovered", record.series_instance_uid, f"{path.name} recorded at start"
        )
        recovered += 1
    if recovered or quarantined:
        logger.warning(
            "spool reconciliation: %d files recorded, %d quarantined", recovered, quarantined
        )
    return recovered, quarantined

