"""The small series the node rehearses its analyses on at start (``node/defaults/warmup``).

The node's warm-up (:mod:`node.jobs.warmup`) analyses one series of each analysis that has one
before the first real series arrives, so that the first job does not pay the first imports and
inferences.  The node does not generate them at run time (the phantom generator is test and
training tooling): they are committed DICOM files, written by this module.  Regenerate them
after a change of the phantom generator with::

    make warmup-series      # python -m models.phantoms.warmup --out node/defaults/warmup

``tests/node/test_warmup.py`` regenerates them and checks that the committed files are the
same data sets.  The files are stored with the Deflated Explicit VR Little Endian transfer
syntax: pydicom inflates them on reading, so the node loads the same data set (and the same
native pixel data) as from the uncompressed files, at about half the size.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_lge import lge_series_datasets
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.lge import make_lge_stack
from models.phantoms.t1map import make_t1map_stack

logger = logging.getLogger(__name__)

__all__ = ["LGE_WARM_UP_SLICES", "WARM_UP_SEED", "main", "warmup_datasets", "write_warmup_series"]

WARM_UP_SEED = 16
"""Seed of the phantom series (any fixed value: the rehearsal's results are discarded)."""
LGE_WARM_UP_SLICES = 4
"""Slices of the LGE phantom: enough for every step of the analysis, fewer than a real stack."""
FIELD_STRENGTH_T = 1.5


def _t1map_datasets() -> list[Dataset]:
    rng = np.random.default_rng(WARM_UP_SEED)
    _, slices = make_t1map_stack(rng, field_strength_t=FIELD_STRENGTH_T,
                                 levels=("basal", "mid", "apical"))
    return t1map_series_datasets(slices, vendor="siemens", field_strength_t=FIELD_STRENGTH_T,
                                 rng=rng, study=StudyInfo.synthetic(WARM_UP_SEED))


def _lge_datasets() -> list[Dataset]:
    rng = np.random.default_rng(WARM_UP_SEED)
    _, slices = make_lge_stack(rng, n_slices=LGE_WARM_UP_SLICES,
                               field_strength_t=FIELD_STRENGTH_T)
    return lge_series_datasets(slices, vendor="siemens", study=StudyInfo.synthetic(WARM_UP_SEED))


def warmup_datasets() -> dict[str, list[Dataset]]:
    """Per analysis rehearsed at start, the instances of its series: a 3-slice Siemens native
    T1 map (``t1map``) and a 4-slice Siemens PSIR LGE stack (``lge``) at 1.5 T."""
    return {"t1map": _t1map_datasets(), "lge": _lge_datasets()}


def write_warmup_series(out: Path) -> list[Path]:
    """Write each analysis's series into ``out/<analysis>/`` (deflated); returns the files.

    Files of a previous generation in those folders are replaced.
    """
    written: list[Path] = []
    for analysis, datasets in warmup_datasets().items():
        folder = out / analysis
        for old in folder.glob("*.dcm"):
            old.unlink()
        for ds in datasets:
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        written += write_series(datasets, folder)
    logger.info("wrote %d warm-up files to %s", len(written), out)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the warm-up series; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m models.phantoms.warmup",
        description="Write the phantom series the node rehearses its analyses on at start.",
    )
    parser.add_argument("--out", type=Path, default=Path("node/defaults/warmup"),
                        help="folder (one sub-folder per analysis; default node/defaults/warmup)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        write_warmup_series(args.out)
    except OSError as exc:
        logger.error("cannot write the warm-up series: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
