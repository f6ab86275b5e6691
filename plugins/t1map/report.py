"""The T1-map result's identity and assembly: name and version, segments, provenance, the
reference-range block, the per-slice table, the method details, and the result of a series
that cannot be analysed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from plugins.api import (
    AnalysisResult,
    Label,
    LoadedSeries,
    Provenance,
    QCFlag,
    SegmentDefinition,
    Severity,
    SourceFrame,
)
from plugins.lib import codes
from plugins.t1map.measurements import SliceStats, stat, t1_measurements
from plugins.t1map.qc import QCCode
from plugins.t1map.reference import ReferenceRange, describe_missing
from plugins.t1map.segmenter import Segmenter
from plugins.t1map.tissue import TissueRanges

NAME: Final = "t1map"
VERSION: Final = "0.3.0"
ALGORITHM_NAME: Final = "cmr-node t1map"

SEGMENTS: Final[tuple[SegmentDefinition, ...]] = (
    codes.SEGMENT_LV_BLOOD_POOL,
    codes.SEGMENT_MYOCARDIUM,
    codes.SEGMENT_RV_BLOOD_POOL,
)


def build_provenance(segmenter: Segmenter, core_text: str) -> Provenance:
    """Provenance of the result: the segmenter, and ``core_text`` on the myocardial core."""
    if segmenter.weights_sha256 is None:
        method = (
            f"LV segmentation by {segmenter.name} {segmenter.version} (classical, no trained "
            "weights): field-strength-specific T1 thresholds, blood-pool detection and a polar "
            f"border search. {core_text}"
        )
        return Provenance(ALGORITHM_NAME, VERSION, method)
    method = (
        f"LV segmentation by the trained model {segmenter.name} {segmenter.version}. {core_text}"
    )
    return Provenance(
        ALGORITHM_NAME,
        VERSION,
        method,
        model_name=segmenter.name,
        model_version=segmenter.version,
        model_sha256=segmenter.weights_sha256,
    )


def empty_result(
    series: LoadedSeries, flags: list[QCFlag], provenance: Provenance, reason: str
) -> AnalysisResult:
    """A result without slices: ``reason`` as a FAILURE flag and absent global values."""
    flags = [
        *flags,
        QCFlag(
            QCCode.NO_SLICE_ANALYSED,
            Severity.FAILURE,
            f"No slice was analysed: {reason}.",
        ),
    ]
    measurements = (
        *t1_measurements("global_myocardium", Label.MYOCARDIUM, np.empty(0), reason),
        *t1_measurements(
            "global_lv_blood",
            Label.LV_BLOOD_POOL,
            np.empty(0),
            reason,
            statistics=(("mean", codes.MEAN),),
        ),
    )
    return AnalysisResult(
        analysis=NAME,
        series_instance_uid=series.series_instance_uid,
        segments=SEGMENTS,
        slices=(),
        measurements=tuple(measurements),
        qc_flags=tuple(flags),
        provenance=provenance,
        extra={"slices": [], "method": {"not_analysed_reason": reason}},
    )


def reference_block(
    series: LoadedSeries, field: float | None, normal: ReferenceRange | None
) -> dict[str, Any]:
    """``extra["reference_range"]``: the matching range, or why there is none."""
    acquisition = series.acquisition
    if normal is None:
        return {
            "available": False,
            "text": describe_missing(acquisition, field),
            "acquisition": {
                "vendor": acquisition.vendor,
                "sequence_family": acquisition.sequence_family,
                "field_strength_t": field,
            },
        }
    return {
        "available": True,
        "text": (
            f"{normal.vendor} {normal.sequence_family} {normal.field_strength_t:g} T: "
            f"{normal.mean_ms:g} +/- {normal.sd_ms:g} ms ({normal.source})"
        ),
        "range": normal.as_dict(),
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def table_row(
    frame: SourceFrame,
    index: int,
    level: str,
    stats: SliceStats | None,
    flags: Sequence[QCFlag],
) -> dict[str, Any]:
    """One row of the per-slice table of ``extra["slices"]``."""
    row: dict[str, Any] = {
        "frame_index": index,
        "sop_instance_uid": frame.sop_instance_uid,
        "frame_number": frame.frame_number,
        "slice_location_mm": round(frame.slice_location, 2),
        "level": level,
    }
    if stats is None:
        row["status"] = "not segmented"
        return row
    failed = any(flag.severity is Severity.FAILURE for flag in flags)
    row.update(
        {
            "status": "failed" if failed else "analysed",
            "myocardium_t1_mean_ms": _round(stat(stats.core_values, "mean")),
            "myocardium_t1_median_ms": _round(stat(stats.core_values, "median")),
            "myocardium_t1_sd_ms": _round(stat(stats.core_values, "sd")),
            "myocardium_core_pixels": int(stats.core_values.size),
            "myocardium_area_mm2": _round(stats.myocardium_area_mm2, 1),
            "lv_blood_pool_area_mm2": _round(stats.lv_area_mm2, 1),
            "lv_blood_t1_mean_ms": _round(stat(stats.blood_values, "mean")),
            "wall_thickness_median_mm": _round(stats.wall_thickness_mm),
            "ring_closure": _round(stats.ring_closure, 3),
            "segmentation_uncertainty": _round(stats.uncertainty, 3),
            "qc_flags": [flag.code for flag in flags],
            "segmenter": dict(stats.details),
        }
    )
    return row


def method_details(
    segmenter: Segmenter,
    field: float | None,
    ranges: TissueRanges,
    scale: float,
    core: dict[str, Any],
) -> dict[str, Any]:
    """``extra["method"]``: algorithm, segmenter, field strength, unit scale, T1 ranges, the
    myocardial core (``core``, from the analysis) and how the series values are pooled."""
    return {
        "algorithm": ALGORITHM_NAME,
        "version": VERSION,
        "segmenter": {
            "name": segmenter.name,
            "version": segmenter.version,
            "weights_sha256": segmenter.weights_sha256,
            "kind": "classical, no trained weights"
            if segmenter.weights_sha256 is None
            else "trained model",
        },
        "field_strength_t": field,
        "unit_scale_to_ms": scale,
        "ranges_ms": {
            "blood_search": list(ranges.blood),
            "myocardium_plausible": list(ranges.myocardium),
            "blood_plausible": list(ranges.blood_plausible),
        },
        "core": core,
        "blood": "LV blood pool at least 2 mm from the endocardium, papillary-muscle pixels "
        "(low tail) removed",
        "series_statistics": "pixel-weighted over the cores of all slices without FAILURE flags",
        "levels": "thirds of the ordered slice positions; the end with the larger LV cavity is "
        "basal; 'unknown' with fewer than three positions",
    }
