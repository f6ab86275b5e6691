"""The ECV result's measurements and tables: per slice, global (core-pixel-weighted) and per
AHA segment, and the per-slice table of ``extra["ecv"]``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from plugins.api import Code, Label, LoadedSeries, Measurement, QCFlag, SourceFrame
from plugins.ecv.alignment import FramePair
from plugins.ecv.measure import SliceValues
from plugins.lib import codes
from plugins.lib.cardiac.aha import SEGMENT_NAMES, segment_statistics
from plugins.lib.cardiac.regions import slice_segment_maps

MIN_SEGMENT_PIXELS: Final = 10
"""Segments with fewer core pixels get no value."""
ECV_DISPLAY_RANGE: Final = (15.0, 45.0)
"""Fixed colour scale (%) of the ECV bullseye: normal ~25 % in the lower third."""
LAMBDA_DISPLAY_RANGE: Final = (0.25, 0.85)

ECV: Final = Code("ecv", codes.PRIVATE_SCHEME, "Extracellular volume fraction")
PARTITION_COEFFICIENT: Final = Code(
    "partition-coefficient", codes.PRIVATE_SCHEME, "Partition coefficient (lambda)"
)
DELTA_R1: Final = Code("delta-r1", codes.PRIVATE_SCHEME, "R1 change after contrast")
T1_POST: Final = Code("t1-post-contrast", codes.PRIVATE_SCHEME, "Post-contrast T1")
UCUM_PER_SECOND: Final = Code("/s", "UCUM", "per second")

_NO_HCT_REASON: Final = (
    "no haematocrit supplied for the study (ECV needs a measured value)"
)


def _ecv_measurement(
    key: str, value: float | None, haematocrit: float | None, *,
    derivation: Code | None = codes.MEAN, site: Code | None = None,
) -> Measurement:
    return Measurement(
        key=key, name=ECV,
        value=None if haematocrit is None or value is None else round(100.0 * value, 2),
        unit=codes.UCUM_PERCENT, region=Label.MYOCARDIUM, derivation=derivation,
        reason=_NO_HCT_REASON if haematocrit is None else (
            None if value is not None else "too few core pixels"
        ),
        site=site,
    )


def slice_measurements(
    sv: SliceValues, haematocrit: float | None, source: str | None
) -> tuple[Measurement, ...]:
    """The ECV, λ, ΔR1 and T1 values of one slice."""
    lam = sv.partition
    return (
        _ecv_measurement(
            "myocardium_ecv_percent", None if haematocrit is None else lam * (1 - haematocrit),
            haematocrit,
        ),
        Measurement("myocardium_partition_coefficient", PARTITION_COEFFICIENT, round(lam, 4),
                    codes.UCUM_NO_UNITS, Label.MYOCARDIUM, codes.MEAN),
        Measurement("myocardium_delta_r1_per_s", DELTA_R1, round(sv.delta_r1_myo, 4),
                    UCUM_PER_SECOND, Label.MYOCARDIUM, codes.MEAN),
        Measurement("lv_blood_delta_r1_per_s", DELTA_R1, round(sv.delta_r1_blood, 4),
                    UCUM_PER_SECOND, Label.LV_BLOOD_POOL, codes.MEDIAN),
        Measurement("myocardium_t1_post_mean_ms", T1_POST, round(sv.t1_post_myo, 1),
                    codes.UCUM_MILLISECOND, Label.MYOCARDIUM, codes.MEAN),
        Measurement("lv_blood_t1_post_median_ms", T1_POST, round(sv.t1_post_blood, 1),
                    codes.UCUM_MILLISECOND, Label.LV_BLOOD_POOL, codes.MEDIAN),
        Measurement("myocardium_t1_native_mean_ms", codes.T1, round(sv.t1_native_myo, 1),
                    codes.UCUM_MILLISECOND, Label.MYOCARDIUM, codes.MEAN),
        Measurement("lv_blood_t1_native_median_ms", codes.T1, round(sv.t1_native_blood, 1),
                    codes.UCUM_MILLISECOND, Label.LV_BLOOD_POOL, codes.MEDIAN),
    )


def global_measurements(
    usable: Sequence[SliceValues], haematocrit: float | None, source: str | None
) -> list[Measurement]:
    """Global ECV and λ: the core-pixel-weighted mean of the usable slices."""
    if not usable:
        reason = "no post-contrast slice gave usable values"
        return [
            Measurement("global_myocardium_ecv_percent", ECV, None, codes.UCUM_PERCENT,
                        Label.MYOCARDIUM, codes.MEAN, reason=reason),
            Measurement("global_myocardium_partition_coefficient", PARTITION_COEFFICIENT, None,
                        codes.UCUM_NO_UNITS, Label.MYOCARDIUM, codes.MEAN, reason=reason),
        ]
    weights = np.asarray([v.core_pixels for v in usable], np.float64)
    lam = float(np.average([v.partition for v in usable], weights=weights))
    return [
        _ecv_measurement(
            "global_myocardium_ecv_percent",
            None if haematocrit is None else lam * (1 - haematocrit), haematocrit,
        ),
        Measurement("global_myocardium_partition_coefficient", PARTITION_COEFFICIENT,
                    round(lam, 4), codes.UCUM_NO_UNITS, Label.MYOCARDIUM, codes.MEAN),
    ]


def build_aha_block(
    series: LoadedSeries, usable: Sequence[SliceValues], haematocrit: float | None
) -> tuple[dict[str, Any] | None, list[QCFlag]]:
    """The AHA block of ``extra["aha"]`` (ECV, or λ without a haematocrit), or None, and
    the flags of slices whose segments could not be placed."""
    divided, flags = slice_segment_maps(
        series, [(v.frame_index, v.level, v.labels) for v in usable]
    )
    if not divided:
        return None, flags
    by_frame = {v.frame_index: v for v in usable}
    scale = 100.0 if haematocrit is not None else 1.0
    stats = segment_statistics(
        [by_frame[d.frame_index].pixel_ecv.astype(np.float64) * scale for d in divided],
        [d.segments for d in divided],
        mask=[by_frame[d.frame_index].core for d in divided],
    )
    digits = 1 if haematocrit is not None else 3
    segments: dict[str, Any] = {}
    for number, st in sorted(stats.items()):
        enough = st.n_pixels >= MIN_SEGMENT_PIXELS and st.mean is not None
        segments[str(number)] = {
            "name": SEGMENT_NAMES[number],
            "n_pixels": st.n_pixels,
            "mean": round(float(st.mean), digits) if enough and st.mean is not None else None,
            "sd": round(float(st.sd), digits) if enough and st.sd is not None else None,
            "median": (
                round(float(st.median), digits) if enough and st.median is not None else None
            ),
        }
    block: dict[str, Any] = {
        "model": "AHA 16-segment (Cerqueira et al., Circulation 2002;105:539-542)",
        "quantity": "ECV" if haematocrit is not None else "Partition coefficient",
        "unit": "%" if haematocrit is not None else "1",
        "region": "conservative myocardial core (from the native map)",
        "min_segment_pixels": MIN_SEGMENT_PIXELS,
        "segments": segments,
        "display_range": ECV_DISPLAY_RANGE if haematocrit is not None else LAMBDA_DISPLAY_RANGE,
        "insertion_points": {str(d.frame_index): d.insertion.as_dict() for d in divided},
    }
    return block, flags


def segment_measurements(
    block: Mapping[str, Any], haematocrit: float | None, source: str | None
) -> list[Measurement]:
    """The per-segment mean and SD of the AHA block as measurements."""
    found: list[Measurement] = []
    for number, item in block["segments"].items():
        site = codes.AHA_SEGMENT_SITES[int(number)]
        few = None if item["mean"] is not None else (
            f"fewer than {MIN_SEGMENT_PIXELS} core pixels in the segment"
        )
        for key, value, derivation in (
            ("mean", item["mean"], codes.MEAN),
            ("sd", item["sd"], codes.STANDARD_DEVIATION),
        ):
            if haematocrit is not None:
                found.append(Measurement(
                    key=f"segment_{number}_ecv_{key}_percent", name=ECV, value=value,
                    unit=codes.UCUM_PERCENT, region=Label.MYOCARDIUM, derivation=derivation,
                    reason=few, site=site,
                ))
            else:
                found.append(Measurement(
                    key=f"segment_{number}_partition_coefficient_{key}",
                    name=PARTITION_COEFFICIENT, value=value, unit=codes.UCUM_NO_UNITS,
                    region=Label.MYOCARDIUM, derivation=derivation, reason=few, site=site,
                ))
    return found


def table_row(
    frame: SourceFrame, pair: FramePair, sv: SliceValues | None, haematocrit: float | None
) -> dict[str, Any]:
    """One row of the per-slice table of ``extra["ecv"]``."""
    row: dict[str, Any] = {
        "frame_index": pair.post_index,
        "sop_instance_uid": frame.sop_instance_uid,
        "slice_location_mm": round(frame.slice_location, 2),
        "native_frame_index": pair.native_index,
        "pair_distance_mm": round(pair.distance_mm, 2),
    }
    if sv is None:
        row["status"] = "not measured"
        return row
    row.update({
        "status": "analysed",
        "level": sv.level,
        "shift_px": [round(sv.shift_px[0], 2), round(sv.shift_px[1], 2)],
        "shift_mm": round(sv.shift_mm, 2),
        "core_pixels": sv.core_pixels,
        "myocardium_t1_native_ms": round(sv.t1_native_myo, 1),
        "myocardium_t1_post_ms": round(sv.t1_post_myo, 1),
        "blood_t1_native_ms": round(sv.t1_native_blood, 1),
        "blood_t1_post_ms": round(sv.t1_post_blood, 1),
        "myocardium_delta_r1_per_s": round(sv.delta_r1_myo, 4),
        "blood_delta_r1_per_s": round(sv.delta_r1_blood, 4),
        "partition_coefficient": round(sv.partition, 4),
        "ecv_percent": (
            None if haematocrit is None else round(100 * sv.partition * (1 - haematocrit), 2)
        ),
    })
    return row
