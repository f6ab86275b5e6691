"""Radiomics of the mid-ventricular native T1 map, and the rad-score when a site model exists.

The published study (native T1 radiomics in non-ischaemic DCM) selected 16 features by LASSO
but did not publish their coefficients: a rad-score is computed only from a model file a site
trained (``cmr-node radiomics train``) and named in the analysis options
(``radscore_model``). Without one the features are reported and the result says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from plugins.api import Label, LoadedSeries, QCFlag, Severity, SliceResult

logger = logging.getLogger(__name__)


class TextureCode:
    """Stable QC codes of the radiomics step."""

    NO_MID_SLICE = "radiomics_no_mid_slice"
    FAILED = "radiomics_failed"
    MODEL_INVALID = "radscore_model_invalid"


def mid_slice_radiomics(
    series: LoadedSeries,
    slices: Sequence[SliceResult],
    failed_frames: set[int],
    scale: float,
    options: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, list[QCFlag]]:
    """Radiomic features of the mid-ventricular slice's myocardium, and the rad-score.

    Parameters
    ----------
    series
        The analysed series.
    slices
        Slice results (label images, levels).
    failed_frames
        Frames whose measurements carry a FAILURE flag: never used.
    scale
        Factor from stored values to ms.
    options
        ``radiomics`` (default True) turns the step off when False; ``radscore_model``
        is the path of a site-trained rad-score model file.

    Returns
    -------
    tuple
        The ``extra["radiomics"]`` block (``None`` when the step did not run) and flags.
    """
    if not options.get("radiomics", True):
        return None, []
    try:
        from plugins.radiomics.features import (
            FeatureExtractionError,
            choose_mid_slice,
            extract_features,
        )
        from plugins.radiomics.model import NO_MODEL_MESSAGE, load_model, radscore
    except ImportError as exc:  # the optional radiomics extra is not installed
        return {"available": False, "reason": f"radiomics not installed: {exc}"}, []

    candidates = [s for s in slices if s.frame_index not in failed_frames]
    levels = [s.level for s in candidates]
    locations = [series.frames[s.frame_index].slice_location for s in candidates]
    chosen = choose_mid_slice(levels, locations) if candidates else None
    if chosen is None:
        flag = QCFlag(
            TextureCode.NO_MID_SLICE,
            Severity.INFO,
            "No usable mid-ventricular short-axis slice: radiomic features not computed.",
        )
        return {"available": False, "reason": flag.message}, [flag]
    sl = candidates[chosen]
    frame = series.frames[sl.frame_index]
    t1 = np.asarray(frame.pixels, dtype=np.float32) * np.float32(scale)
    try:
        vector = extract_features(t1, sl.labels == Label.MYOCARDIUM, frame.pixel_spacing)
    except (FeatureExtractionError, RuntimeError, ValueError) as exc:
        logger.warning("radiomics failed on frame %d: %s", sl.frame_index, exc)
        flag = QCFlag(
            TextureCode.FAILED,
            Severity.WARNING,
            f"Radiomic features could not be computed: {exc}",
            frame_index=sl.frame_index,
        )
        return {"available": False, "reason": flag.message}, [flag]
    block = vector.as_block(
        {
            "frame_index": sl.frame_index,
            "sop_instance_uid": frame.sop_instance_uid,
            "slice_location_mm": round(frame.slice_location, 3),
            "level": sl.level,
        }
    )
    block["available"] = True
    flags: list[QCFlag] = []
    model_path = options.get("radscore_model")
    if not model_path:
        block["radscore"] = {"available": False, "reason": NO_MODEL_MESSAGE}
        return block, flags
    try:
        model = load_model(str(model_path))
        block["radscore"] = {"available": True, **radscore(model, vector.features).as_json()}
    except (OSError, ValueError) as exc:
        flag = QCFlag(
            TextureCode.MODEL_INVALID,
            Severity.WARNING,
            f"The configured rad-score model cannot be used: {exc}",
        )
        flags.append(flag)
        block["radscore"] = {"available": False, "reason": flag.message}
    return block, flags
