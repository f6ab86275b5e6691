"""Native T1 per AHA segment (16-segment model) from the analysed short-axis slices."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from plugins.api import Label, LoadedSeries, Measurement, QCFlag, SliceResult
from plugins.lib import codes
from plugins.lib.cardiac.aha import SEGMENT_NAMES, segment_statistics
from plugins.lib.cardiac.regions import slice_segment_maps
from plugins.t1map.reference import ReferenceRange

logger = logging.getLogger(__name__)

#: Segments with fewer core pixels than this get no value (too few to average).
MIN_SEGMENT_PIXELS = 10
#: Centre of healthy native MOLLI myocardial T1 (ms) by field strength (1.5 T: 950-1050,
#: 3 T: 1100-1250; see plugins/t1map/segmenter.py) and the half-width of the bullseye's
#: fixed colour scale. A fixed scale keeps a 20 ms spread from looking like a regional
#: pattern; the span covers normal to clearly raised T1.
NORMAL_T1_CENTRE_MS = {1.5: 1000.0, 3.0: 1175.0}
DISPLAY_HALF_SPAN_MS = 150.0
#: Mid-ventricular anteroseptal and inferoseptal AHA segments.
SEPTAL_MID_SEGMENTS = (8, 9)


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
    normal: ReferenceRange | None = None,
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
    normal
        Reference range matching the series' vendor, sequence and field strength; without
        one no z-score is computed.

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
            "z_score": (
                round(normal.z_score(st.mean), 2)
                if enough and normal is not None and st.mean is not None
                else None
            ),
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
        "normal_range": None if normal is None else normal.as_dict(),
        "septal_midwall": _septal_midwall(stats),
    }
    return block, flags


def _septal_midwall(stats: Mapping[int, Any]) -> dict[str, Any] | None:
    """Pixel-weighted T1 of the mid-ventricular septal segments (8 and 9) over the core.

    The SCMR/EACVI consensus recommends a conservative septal region of interest on the
    mid-ventricular short-axis slice for native T1 (Messroghli DR et al., J Cardiovasc Magn
    Reson 2017;19:75): the septum is the thickest wall, away from the lateral wall's
    susceptibility artefacts near the lung.
    """
    parts = [stats[n] for n in SEPTAL_MID_SEGMENTS if n in stats and stats[n].mean is not None]
    n_pixels = sum(int(st.n_pixels) for st in parts)
    if n_pixels < MIN_SEGMENT_PIXELS:
        return None
    mean = sum(float(st.mean) * int(st.n_pixels) for st in parts) / n_pixels
    return {"segments": list(SEPTAL_MID_SEGMENTS), "n_pixels": n_pixels, "mean": _round(mean)}


def segment_measurements(block: Mapping[str, Any] | None) -> list[Measurement]:
    """Per-segment T1 mean and SD (and z-score) as measurements with an AHA finding site."""
    if block is None:
        return []
    found: list[Measurement] = []
    for number, item in block["segments"].items():
        site = codes.AHA_SEGMENT_SITES[int(number)]
        reason = None if item["mean"] is not None else (
            f"fewer than {MIN_SEGMENT_PIXELS} core pixels in the segment"
        )
        for key, value, derivation in (
            ("mean", item["mean"], codes.MEAN),
            ("sd", item["sd"], codes.STANDARD_DEVIATION),
        ):
            found.append(Measurement(
                key=f"segment_{number}_t1_{key}_ms", name=codes.T1, value=value,
                unit=codes.UCUM_MILLISECOND, region=Label.MYOCARDIUM, derivation=derivation,
                reason=reason, site=site,
            ))
        if item.get("z_score") is not None:
            found.append(Measurement(
                key=f"segment_{number}_t1_z_score", name=codes.T1_Z_SCORE,
                value=item["z_score"], unit=codes.UCUM_NO_UNITS, region=Label.MYOCARDIUM,
                site=site,
            ))
    return found


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
