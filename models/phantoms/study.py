"""A complete synthetic CMR study on disk: DICOM series plus ``truth.json``.

The same seed always gives the same files (UIDs, dates, pixels).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import (
    ecv_map_series_datasets,
    molli_source_series_datasets,
    postcontrast_t1map_series_datasets,
    t1map_enhanced_dataset,
    t1map_series_datasets,
    t2map_series_datasets,
)
from models.phantoms.dicom_noncardiac import non_cardiac_mr_series_datasets
from models.phantoms.dicom_study import SeriesKind, StudyInfo, Vendor
from models.phantoms.maps import ContrastState
from models.phantoms.t1map import PhantomSlice, make_t1map_stack
from models.phantoms.tissues import check_field_strength

logger = logging.getLogger(__name__)

TRUTH_FILE = "truth.json"

EXPECTED_ANALYSIS: dict[SeriesKind, str | None] = {
    SeriesKind.T1MAP: "t1map",
    SeriesKind.T1MAP_ENHANCED: "t1map",
    SeriesKind.MOLLI_SOURCE: "molli",
    SeriesKind.T2MAP: "t2map",
    SeriesKind.T1MAP_POST: "ecv",
    SeriesKind.ECV: None,
    SeriesKind.BRAIN_T2: None,
}
"""Which analysis a router should choose for each kind of series (None: none)."""


def _series_record(
    kind: SeriesKind, datasets: Sequence[Dataset], paths: Sequence[Path], root: Path,
    slices: Sequence[PhantomSlice] | None,
) -> dict[str, Any]:
    first = datasets[0]
    instances = []
    for index, (ds, path) in enumerate(zip(datasets, paths, strict=True)):
        record: dict[str, Any] = {
            "sop_instance_uid": str(ds.SOPInstanceUID),
            "instance_number": int(ds.InstanceNumber),
            "file": str(path.relative_to(root)),
        }
        if "InversionTime" in ds and ds.InversionTime not in (None, ""):
            record["inversion_time_ms"] = float(ds.InversionTime)
        if slices is not None and kind in (SeriesKind.T1MAP, SeriesKind.T2MAP,
                                           SeriesKind.T1MAP_POST, SeriesKind.ECV):
            record["level"] = slices[index].level
            record["truth"] = slices[index].truth
        instances.append(record)
    return {
        "kind": kind.value,
        "expected_analysis": EXPECTED_ANALYSIS[kind],
        "series_number": int(first.SeriesNumber),
        "series_instance_uid": str(first.SeriesInstanceUID),
        "series_description": str(first.SeriesDescription),
        "sop_class_uid": str(first.SOPClassUID),
        "directory": str(paths[0].parent.relative_to(root)),
        "instances": instances,
    }


def write_synthetic_study(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vendor: str | Vendor = Vendor.SIEMENS,
    field_strength_t: float = 1.5,
    with_negatives: bool = False,
    with_enhanced: bool = False,
) -> dict[str, Any]:
    """Write a synthetic study and its ``truth.json``; return the truth record.

    Parameters
    ----------
    out_dir
        Directory to create; each series goes into a sub-directory named after its kind.
    seed
        Determines the subject, the images and every identifier.
    vendor
        Scanner vendor imitated by all series.
    field_strength_t
        1.5 or 3.
    with_negatives
        Also write series that must not be analysed as native T1 maps (MOLLI source
        images, T2 map, post-contrast T1 map, ECV map, a brain series).
    with_enhanced
        Also write the T1 map as one multi-frame (Legacy Converted Enhanced MR) instance.

    Returns
    -------
    dict
        The content of ``truth.json``.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    field = check_field_strength(field_strength_t)
    v = Vendor(str(vendor).lower())
    rng = np.random.default_rng([int(seed), 1])
    study = StudyInfo.synthetic(seed)
    case, slices = make_t1map_stack(rng, field_strength_t=field)
    series: list[dict[str, Any]] = []

    def emit(kind: SeriesKind, datasets: list[Dataset],
             with_slices: Sequence[PhantomSlice] | None) -> None:
        paths = write_series(datasets, root / kind.value)
        series.append(_series_record(kind, datasets, paths, root, with_slices))

    t1 = t1map_series_datasets(slices, vendor=v, study=study, rng=rng, field_strength_t=field)
    gap = float(t1[0].SpacingBetweenSlices)
    emit(SeriesKind.T1MAP, t1, slices)
    if with_enhanced:
        emit(SeriesKind.T1MAP_ENHANCED, [t1map_enhanced_dataset(t1, study=study)], None)
    if with_negatives:
        contrast = ContrastState.sample(rng, case.tissues.diffuse_rise_ms)
        mid = len(slices) // 2
        emit(SeriesKind.MOLLI_SOURCE,
             molli_source_series_datasets(slices[mid], vendor=v, study=study, rng=rng,
                                          slice_index=mid, slice_gap_mm=gap), None)
        emit(SeriesKind.T2MAP,
             t2map_series_datasets(slices, vendor=v, study=study, rng=rng, slice_gap_mm=gap),
             slices)
        emit(SeriesKind.T1MAP_POST,
             postcontrast_t1map_series_datasets(slices, vendor=v, study=study, rng=rng,
                                                contrast=contrast, slice_gap_mm=gap), slices)
        emit(SeriesKind.ECV,
             ecv_map_series_datasets(slices, vendor=v, study=study, rng=rng,
                                     contrast=contrast, slice_gap_mm=gap), slices)
        emit(SeriesKind.BRAIN_T2,
             non_cardiac_mr_series_datasets(vendor=v, study=study, rng=rng,
                                            field_strength_t=field), None)
    truth: dict[str, Any] = {
        "synthetic": True,
        "seed": int(seed),
        "vendor": v.value,
        "field_strength_t": field,
        "patient_id": study.patient_id,
        "study_instance_uid": study.study_instance_uid,
        "subject": {
            "phenotype": case.phenotype.value,
            "myocardium_t1_true_ms": case.tissues.myocardium_t1_ms,
            "blood_t1_true_ms": case.tissues.blood_t1_ms,
            "haematocrit": case.tissues.haematocrit,
            "diffuse_rise_ms": case.tissues.diffuse_rise_ms,
            "n_lesions": len(case.lesions),
        },
        "series": series,
    }
    (root / TRUTH_FILE).write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    logger.info("wrote synthetic study (seed %d, %s, %.1f T) with %d series to %s",
                seed, v.value, field, len(series), root)
    return truth
