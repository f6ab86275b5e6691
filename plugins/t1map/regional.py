"""Native T1 per AHA segment (16-segment model) from the analysed short-axis slices."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from plugins.api import LoadedSeries, QCFlag, SliceResult
from plugins.cardiac.aha import SEGMENT_NAMES, segment_statistics
from plugins.cardiac.regions import slice_segment_maps

logger = logging.getLogger(__name__)

#: Segments with fewer core pixels than this get no value (too few to average).
MIN_SEGMENT_PIXELS = 10
#: Centre of healthy native MOLLI myocardial T1 (ms) by field strength (1.5 T: 950-1050,
#: 3 T: 1100-1250; see plugins/t1map/segmenter.py) and the half-width of the bullseye's
#: fixed colour scale. A fixed scale keeps a 20 ms spread from looking like a regional
#: pattern; the span covers normal to clearly raised T1.
NORMAL_T1_CENTRE_MS = {1.5: 1000.0, 3.0: 1175.0}
DISPLAY_HALF_SPAN_MS = 150.0


def display_range(field_strength_t: float | None, means: Sequence[float]) -> tuple[float, float]:
    """Fixed colour scale of the T1 bullseye: normal centre +/- 150 ms for the field."""
    if field_strength_t is None:
        centre = float(np.median(means)) if means else 1000.0
    else:
        nearest = min(NORMAL_T1_CENTRE_MS, key=lambda f: abs(f - field_strength_t))
        centre = NORMAL_T1_CENTRE_MS[nearest]
    return centre - DISPLAY_HALF_SPAN_MS, centre + DISPLAY_HALF_SPAN_MS


def aha_t1(
    series: LoadedSeries,
    slices: Sequence[SliceResult],
    scale: float,
    field_strength_t: float | None = None,
) -> tuple[dict[str, Any] | None, list[QCFlag]]:
    """Mean, SD and median T1 per AHA segment over the slices' conservative cores.

    Parameters
    ----------
    series
        The analysed series (pixels, spacing, orientation).
    slices
        Slice results with label images, levels and core masks; slices without a
        basal/mid/apical level are not used.
    scale
        Factor from stored pixel values to ms (1 for maps in ms).
    field_strength_t
        Chooses the fixed colour scale of the bullseye.

    Returns
    -------
    tuple
        The ``extra["aha"]`` block (``None`` when no slice could be divided into
        segments) and the QC flags raised on the way.
    """
    usable = [s for s in slices if s.analysed_region is not None]
    by_frame = {s.frame_index: s for s in usable}
    divided, flags = slice_segment_maps(
        series, [(s.frame_index, s.level, s.labels) for s in usable]
    )
    if not divided:
        return None, flags
    values: list[npt.NDArray[np.float32]] = []
    maps: list[npt.NDArray[np.int8]] = []
    masks: list[npt.NDArray[np.bool_]] = []
    insertion: dict[str, Any] = {}
    for item in divided:
        region = by_frame[item.frame_index].analysed_region
        assert region is not None
        frame = series.frames[item.frame_index]
        values.append(np.asarray(frame.pixels, dtype=np.float32) * np.float32(scale))
        maps.append(item.segments)
        masks.append(region)
        insertion[str(item.frame_index)] = item.insertion.as_dict()
    stats = segment_statistics(values, maps, mask=masks)
    segments: dict[str, Any] = {}
    for number, st in sorted(stats.items()):
        enough = st.n_pixels >= MIN_SEGMENT_PIXELS
        segments[str(number)] = {
            "name": SEGMENT_NAMES[number],
            "n_pixels": st.n_pixels,
            "mean": _round(st.mean) if enough else None,
            "sd": _round(st.sd) if enough else None,
            "median": _round(st.median) if enough else None,
        }
    block = {
        "model": "AHA 16-segment (Cerqueira et al., Circulation 2002;105:539-542)",
        "quantity": "T1",
        "unit": "ms",
        "region": "conservative myocardial core",
        "min_segment_pixels": MIN_SEGMENT_PIXELS,
        "segments": segments,
        "display_range": display_range(
            field_strength_t, [v["mean"] for v in segments.values() if v["mean"] is not None]
        ),
        "insertion_points": insertion,
    }
    return block, flags


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
