"""Native T1 per AHA segment (16-segment model) from the analysed short-axis slices."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from plugins import codes
from plugins.api import Label, LoadedSeries, Measurement, QCFlag, SliceResult
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


@dataclass(frozen=True)
class NormalRange:
    """Normal native myocardial T1 (mean and SD over healthy subjects) for one field strength.

    Attributes
    ----------
    field_strength_t
        1.5 or 3 (tesla).
    mean_ms, sd_ms
        Mean and standard deviation of healthy myocardial T1.
    source
        Where the range comes from (publication, or the site's own validation).
    """

    field_strength_t: float
    mean_ms: float
    sd_ms: float
    source: str

    def z_score(self, t1_ms: float) -> float:
        """Standard deviations of ``t1_ms`` from the normal mean."""
        return (t1_ms - self.mean_ms) / self.sd_ms


PUBLISHED_NORMAL_RANGES: Final[Mapping[float, NormalRange]] = {
    1.5: NormalRange(
        1.5, 950.0, 21.0,
        "MOLLI, Dabir D et al., J Cardiovasc Magn Reson 2014;16:69 (International T1 "
        "Multicenter study); replace with the site's local range (Messroghli DR et al., "
        "J Cardiovasc Magn Reson 2017;19:75)",
    ),
    3.0: NormalRange(
        3.0, 1052.0, 23.0,
        "MOLLI, Dabir D et al., J Cardiovasc Magn Reson 2014;16:69 (International T1 "
        "Multicenter study); replace with the site's local range (Messroghli DR et al., "
        "J Cardiovasc Magn Reson 2017;19:75)",
    ),
}
"""Default normal ranges by field strength; ``options["normal_ranges"]`` overrides them."""


def normal_range(
    field_strength_t: float | None, overrides: Mapping[str, Any] | None = None
) -> NormalRange | None:
    """The normal range for a field strength: the site's (``overrides``) or the published one.

    Parameters
    ----------
    field_strength_t
        Field strength of the series; ``None`` gives no range.
    overrides
        ``{"1.5": {"mean_ms": ..., "sd_ms": ..., "source": ...}, "3": {...}}`` from the
        analysis options.

    Raises
    ------
    ValueError
        If an override lacks a positive SD or a mean.
    """
    if field_strength_t is None:
        return None
    ranges: dict[float, NormalRange] = dict(PUBLISHED_NORMAL_RANGES)
    for key, item in (overrides or {}).items():
        try:
            field = float(key)
            mean, sd = float(item["mean_ms"]), float(item["sd_ms"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"normal_ranges[{key!r}] needs a field strength key and mean_ms and sd_ms"
            ) from exc
        if sd <= 0:
            raise ValueError(f"normal_ranges[{key!r}].sd_ms must be positive")
        ranges[field] = NormalRange(field, mean, sd, str(item.get("source", "site setting")))
    nearest = min(ranges, key=lambda f: abs(f - field_strength_t))
    if abs(nearest - field_strength_t) > 0.5:
        return None
    return ranges[nearest]


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
    normal: NormalRange | None = None,
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
        Normal range giving each segment's z-score, if known.

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
        "normal_range": None if normal is None else {
            "field_strength_t": normal.field_strength_t,
            "mean_ms": normal.mean_ms,
            "sd_ms": normal.sd_ms,
            "source": normal.source,
        },
    }
    return block, flags


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
