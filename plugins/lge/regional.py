"""Where the LGE lies: per AHA segment %scar and transmurality, the lesions, and the location
and pattern of the heart's LGE as readers classify it."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from plugins.lge.measure import AnalysedSlice, ScarMethod
from plugins.lge.quantify import Layer, Lesion, lesions
from plugins.lib.cardiac.aha import SEGMENT_NAMES, transmurality
from plugins.lib.cardiac.regions import SliceSegments

SEPTAL_SEGMENTS: Final = frozenset({2, 3, 8, 9, 14})
"""AHA segments of the interventricular septum."""
SIDE_FRACTION: Final = 0.1
"""Less than this fraction of scar on one side (septal / non-septal) counts as none there."""
MULTIPLE_LAYER_FRACTION: Final = 0.2
"""Pattern "multiple": at least two wall layers each hold this fraction of the scar area."""
FOCAL_SEGMENT_FRACTION: Final = 0.9
"""Pattern "focal": at least this fraction of the scar lies in one AHA segment."""
MIN_SEPTAL_MIDWALL_MM2: Final = 10.0
"""Septal mid-wall LGE is present when such lesions cover at least this area."""


class Location(enum.StrEnum):
    """Where LGE lies, as readers classify it."""

    ABSENT = "absent"
    SEPTAL = "septal only"
    NON_SEPTAL = "non-septal only"
    BOTH = "septal and non-septal"
    RV_INSERTION = "RV insertion point only"
    UNKNOWN = "unknown (no RV insertion points)"


class Pattern(enum.StrEnum):
    """The LGE pattern of the heart."""

    NONE = "none"
    SUBENDOCARDIAL = "subendocardial"
    MID_WALL = "mid-wall"
    SUBEPICARDIAL = "subepicardial"
    TRANSMURAL = "transmural"
    FOCAL = "focal"
    MULTIPLE = "multiple"


def aha_block(divided: Sequence[SliceSegments],
               by_frame: Mapping[int, AnalysedSlice]) -> dict[str, Any] | None:
    """``extra["aha"]``: network %scar and maximum transmurality per AHA segment."""
    if not divided:
        return None
    myo_area: dict[int, float] = {}
    scar_area: dict[int, float] = {}
    max_transmural: dict[int, float] = {}
    for item in divided:
        sl = by_frame[item.frame_index]
        assert sl.scar is not None
        scar = sl.scar[ScarMethod.NETWORK]
        extent = transmurality(scar, item.segments, centre=item.insertion.centre,
                               pixel_spacing=sl.frame.pixel_spacing)
        for number in (int(n) for n in np.unique(item.segments) if n > 0):
            in_segment = item.segments == number
            myo_area[number] = myo_area.get(number, 0.0) + sl.area(in_segment)
            scar_area[number] = scar_area.get(number, 0.0) + sl.area(in_segment & scar)
            fraction = extent[number].max_fraction if number in extent else None
            if fraction is not None:
                max_transmural[number] = max(max_transmural.get(number, 0.0), fraction)
    segments: dict[str, Any] = {}
    for number in sorted(myo_area):
        percent = 100.0 * scar_area[number] / myo_area[number] if myo_area[number] else 0.0
        transmural = max_transmural.get(number)
        segments[str(number)] = {
            "name": SEGMENT_NAMES[number],
            "myocardium_area_mm2": round(myo_area[number], 1),
            "scar_percent": round(percent, 1),
            "max_transmurality_percent": None if transmural is None
            else round(100.0 * transmural, 1),
            "mean": round(percent, 1),
        }
    return {
        "model": "AHA 16-segment (Cerqueira et al., Circulation 2002;105:539-542)",
        "quantity": "Scar",
        "unit": "%",
        "region": "network scar (MVO included) as per cent of the segment's myocardium",
        "segments": segments,
        "display_range": (0.0, 100.0),
        "insertion_points": {str(i.frame_index): i.insertion.as_dict() for i in divided},
    }


def find_lesions(analysed: Sequence[AnalysedSlice], divided: Sequence[SliceSegments]
                 ) -> list[Lesion]:
    """The network scar's lesions of every slice, with their segments and layer."""
    maps = {item.frame_index: item for item in divided}
    found: list[Lesion] = []
    for s in analysed:
        assert s.scar is not None
        item = maps.get(s.index)
        found.extend(lesions(
            s.index,
            s.scar[ScarMethod.NETWORK],
            s.myocardium,
            s.lv_blood,
            s.frame.pixel_spacing,
            segments=item.segments if item is not None else None,
            insertion=item.insertion if item is not None else None,
        ))
    return found


def classify(found: Sequence[Lesion], percent: float, presence_percent: float
              ) -> dict[str, Any]:
    """Location, pattern and septal mid-wall LGE from the lesions (none below
    ``presence_percent`` %scar)."""
    if percent < presence_percent or not found:
        return {"present": False, "location": str(Location.ABSENT),
                "pattern": str(Pattern.NONE), "septal_midwall": False}
    total = sum(lesion.area_mm2 for lesion in found)
    if all(lesion.at_insertion for lesion in found):
        location = Location.RV_INSERTION
    else:
        sided = [lesion for lesion in found if lesion.septal_fraction is not None]
        septal = sum(lesion.area_mm2 * (lesion.septal_fraction or 0.0) for lesion in sided)
        counted = sum(lesion.area_mm2 for lesion in sided)
        other = counted - septal
        if counted == 0:
            location = Location.UNKNOWN
        elif septal < SIDE_FRACTION * counted:
            location = Location.NON_SEPTAL
        elif other < SIDE_FRACTION * counted:
            location = Location.SEPTAL
        else:
            location = Location.BOTH
    by_layer: dict[Layer, float] = {}
    for lesion in found:
        by_layer[lesion.layer] = by_layer.get(lesion.layer, 0.0) + lesion.area_mm2
    major = [layer for layer, area in by_layer.items() if area >= MULTIPLE_LAYER_FRACTION * total]
    per_segment: dict[int, int] = {}
    for lesion in found:
        for n, c in lesion.segments.items():
            per_segment[n] = per_segment.get(n, 0) + c
    segment_pixels = sum(per_segment.values())
    if len(major) >= 2:
        pattern = Pattern.MULTIPLE
    elif segment_pixels and max(per_segment.values()) >= FOCAL_SEGMENT_FRACTION * segment_pixels:
        pattern = Pattern.FOCAL
    else:
        pattern = Pattern(str(max(by_layer, key=lambda layer: by_layer[layer])))
    septal_midwall_area = sum(
        lesion.area_mm2 for lesion in found
        if lesion.layer is Layer.MID_WALL and (lesion.septal_fraction or 0.0) >= 0.5
    )
    return {
        "present": True,
        "location": str(location),
        "pattern": str(pattern),
        "layers_mm2": {str(k): round(v, 1) for k, v in by_layer.items()},
        "septal_midwall": septal_midwall_area >= MIN_SEPTAL_MIDWALL_MM2,
        "septal_midwall_area_mm2": round(septal_midwall_area, 1),
    }
