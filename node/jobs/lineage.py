"""Which analysis of a series a job is, and which delivered SRs its outputs replace.

A re-analysis (a late instance, posted covariates, a companion series that arrived later)
writes new objects (:mod:`node.outputs.uids`).  Its SRs name the SRs of the latest earlier
generation that reached a destination in their Predecessor Documents Sequence (0040,A360): an SR the
node built but never delivered is not referenced, since no archive or viewer holds it.

SEG and summary image: their IODs have no predecessor attribute (PS3.3 A.51, A.8); they get
new UIDs and a "(rev N)" SeriesDescription, and the re-analysis SR references the new SEG.
The earlier objects stay at the destinations (the node deletes nothing there).
"""

from __future__ import annotations

import logging

import pydicom
from pydicom.errors import InvalidDicomError

from node.catalog.catalog import Catalog
from node.catalog.job_queue import Job
from node.outputs.writers import Lineage, OutputKind

logger = logging.getLogger(__name__)

REPLACEABLE_KINDS = (OutputKind.SR.value, OutputKind.SR_SUMMARY.value)
"""Output kinds whose IOD has a Predecessor Documents Sequence."""


def job_lineage(catalog: Catalog, job: Job) -> Lineage:
    """Return the generation of ``job`` and the headers of the SRs it replaces.

    Parameters
    ----------
    catalog
        The catalog holding the job and the outbox of earlier generations.
    job
        The claimed job.

    Returns
    -------
    Lineage
        The job's generation; by kind, the header of the newest delivered SR of an earlier
        generation.  An unreadable earlier file is skipped with a warning (its SR is then
        not referenced).
    """
    delivered = catalog.delivered_outputs(
        job.series_instance_uid, job.analysis, job.generation, REPLACEABLE_KINDS
    )
    predecessors: dict[str, pydicom.Dataset] = {}
    for kind, path in delivered.items():
        try:
            predecessors[kind] = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, InvalidDicomError) as exc:
            logger.warning("job %d: replaced %s %s unreadable, not referenced: %s",
                           job.id, kind, path, exc)
    return Lineage(generation=job.generation, predecessors=predecessors)
