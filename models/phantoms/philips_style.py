"""A synthetic cardiac study written the way a Philips scanner really sends it.

What differs from the generator's tidy series (:mod:`models.phantoms.dicom_maps`), each a
convention the node must read (issue 19; sources in ``docs/vendor-conventions.md``):

* **Maps and source images in one series**: the native MOLLI series holds, per slice, the
  inversion-recovery source images (ImageType ``ORIGINAL\\PRIMARY\\M_IR\\M\\IR``) followed by
  the scanner's T1 map (``DERIVED\\PRIMARY\\T1\\T1``, real-world value mapping in ms).
* **Inversion time only in the private tag** (2005,1572), a 4-byte float, as the iBEAt
  pipelines read Philips T1-mapping images; no standard InversionTime (0018,0082), and so
  ScanningSequence GR only (InversionTime is type 2C on IR images).  The
  private creator of block (2005,15xx) is not publicly documented; "Philips MR Imaging DD
  006" is written so that the element is valid DICOM, and the node reads the element by its
  tag, as dcm2niix and iBEAt do.
* **Careless BodyPartExamined**: the region of the protocol the operator started from
  (default "ABDOMEN"), not the heart.
* **LGE without LGE naming**: an IR-TFE PSIR stack named ``IR_TFE_BH SA``.
* The post-contrast T1 maps are a series of their own in the same study.

Every instance is marked synthetic, as all phantom output.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydicom.dataset import Dataset

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_lge import lge_series_datasets
from models.phantoms.dicom_maps import (
    molli_source_series_datasets,
    postcontrast_t1map_series_datasets,
    t1map_series_datasets,
)
from models.phantoms.dicom_study import StudyInfo, Vendor, _uid
from models.phantoms.lge import make_lge_stack
from models.phantoms.maps import ContrastState
from models.phantoms.t1map import PhantomSlice, make_heart_case, make_t1map_stack

logger = logging.getLogger(__name__)

__all__ = [
    "PHILIPS_INVERSION_DELAY",
    "philips_molli_series_datasets",
    "write_philips_style_study",
]

PHILIPS_INVERSION_DELAY: Final = (0x2005, 0x1572)
"""Philips private inversion delay of T1-mapping images (FL, ms)."""
PHILIPS_BLOCK_15_CREATOR: Final = "Philips MR Imaging DD 006"
"""Private creator written at (2005,0015) (an assumption: not publicly documented)."""
CARELESS_BODY_PART: Final = "ABDOMEN"


def _philips_private_ti(ds: Dataset, ti_ms: float) -> None:
    ds.add_new(0x20050015, "LO", PHILIPS_BLOCK_15_CREATOR)
    ds.add_new(0x20051572, "FL", float(ti_ms))


def philips_molli_series_datasets(
    slices: Sequence[PhantomSlice],
    *,
    study: StudyInfo,
    series_number: int = 12,
    field_strength_t: float | None = None,
    rng: np.random.Generator | None = None,
    slice_gap_mm: float = 8.0,
    body_part: str = CARELESS_BODY_PART,
) -> list[Dataset]:
    """Native MOLLI series as Philips sends it: per slice the IR source images, then the map.

    Parameters
    ----------
    slices
        Phantom slices, base to apex.
    study
        Patient and study facts.
    series_number
        SeriesNumber (also enters the UIDs).
    field_strength_t
        MagneticFieldStrength; the slices' if ``None``.
    rng
        Noise of the source images; seeded from the study if ``None``.
    slice_gap_mm
        Distance between slices.
    body_part
        BodyPartExamined as the scanner leaves it.
    """
    generator = rng if rng is not None else np.random.default_rng([study.seed, series_number])
    maps = t1map_series_datasets(slices, vendor=Vendor.PHILIPS, study=study,
                                 series_number=series_number, field_strength_t=field_strength_t,
                                 slice_gap_mm=slice_gap_mm)
    series_uid = str(maps[0].SeriesInstanceUID)
    out: list[Dataset] = []
    for index, (phantom, map_ds) in enumerate(zip(slices, maps, strict=True)):
        sources = molli_source_series_datasets(
            phantom, vendor=Vendor.PHILIPS, study=study, series_number=series_number,
            field_strength_t=field_strength_t, rng=generator, slice_index=index,
            slice_gap_mm=slice_gap_mm,
        )
        for source in sources:
            ti = float(source.InversionTime)
            del source.InversionTime
            # Without InversionTime the MR Image module allows no IR in ScanningSequence
            # (InversionTime is type 2C on it); the inversion is read from the private TI.
            source.ScanningSequence = "GR"
            source.TriggerTime = map_ds.TriggerTime
            _philips_private_ti(source, ti)
        out.extend(sources)
        out.append(map_ds)
    for number, ds in enumerate(out, start=1):
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = str(maps[0].SeriesDescription)
        ds.ProtocolName = str(maps[0].ProtocolName)
        ds.SeriesNumber = str(series_number)
        ds.InstanceNumber = str(number)
        ds.SOPInstanceUID = _uid(study.seed, "instance", "philips_molli", series_number, number)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagesInAcquisition = str(len(out))
        ds.BodyPartExamined = body_part
    return out


def write_philips_style_study(
    out_dir: str | Path,
    *,
    seed: int = 0,
    field_strength_t: float = 1.5,
    n_slices: int = 3,
    n_lge_slices: int = 6,
    body_part: str = CARELESS_BODY_PART,
) -> dict[str, Any]:
    """Write a Philips-style study: native MOLLI (maps + sources), post-contrast maps, LGE.

    Returns
    -------
    dict
        ``series``: kind, series UID, files and expected analyses of each written series;
        ``truth``: per native slice the phantom's myocardial T1, the contrast state;
        ``native_slices`` and ``study``: the phantom slices and study facts, so that a test
        can write the same maps the tidy way.
    """
    root = Path(out_dir)
    study = StudyInfo.synthetic(seed)
    rng = np.random.default_rng([int(seed), 19])
    levels = ("basal", "mid", "apical")[:n_slices] if n_slices <= 3 else \
        tuple(["basal", "mid", "apical"][i * 3 // n_slices] for i in range(n_slices))
    heart = make_heart_case(rng, field_strength_t=field_strength_t, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=field_strength_t, levels=levels,
                                 heart=heart)
    contrast = ContrastState.sample(rng)
    native = philips_molli_series_datasets(slices, study=study, rng=rng, body_part=body_part)
    post = postcontrast_t1map_series_datasets(slices, vendor=Vendor.PHILIPS, study=study,
                                              rng=rng, contrast=contrast)
    _, lge_slices = make_lge_stack(rng, n_slices=n_lge_slices, heart=heart,
                                   scar_pattern="ischaemic_lad")
    lge = lge_series_datasets(lge_slices, vendor=Vendor.PHILIPS, study=study, contrast="psir",
                              description="IR_TFE_BH SA")
    for ds in lge:
        ds.ProtocolName = "IR_TFE_BH SA"
    records = []
    for kind, datasets, expected in (
        ("native_molli", native, ["t1map", "molli"]),
        ("post_t1map", post, ["ecv"]),
        ("lge_psir", lge, ["lge"]),
    ):
        for ds in datasets:
            ds.BodyPartExamined = body_part
        paths = write_series(datasets, root / kind)
        records.append({
            "kind": kind,
            "series_instance_uid": str(datasets[0].SeriesInstanceUID),
            "expected_analyses": expected,
            "files": [str(p) for p in paths],
        })
    logger.info("wrote a Philips-style study (%d series) to %s", len(records), root)
    return {
        "series": records,
        "truth": {
            "native_myocardium_t1_ms": [s.truth["myocardium_t1_true_ms"] for s in slices],
            "contrast": dataclasses.asdict(contrast),
        },
        "native_slices": slices,
        "study": study,
    }
