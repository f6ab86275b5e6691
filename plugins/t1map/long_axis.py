"""Long-axis (four-chamber) native T1 maps: septal and lateral wall T1.

A four-chamber view cuts the LV along its long axis through the interventricular septum and
the lateral wall, so it cannot be divided into AHA segments the way short-axis slices are;
instead the myocardium of the basal and mid thirds of the ventricle is split into the
**septal wall** (towards the right ventricle) and the **lateral wall**, and mean and SD T1
of the conservative mid-wall core of each are reported (the apical third is left out: at the
apex the wall is cut obliquely and partial volume dominates).

Which frames are long-axis
--------------------------
A frame is treated as a long-axis view when

* its plane is far from parallel to the short-axis stack of the series (the angle between
  the normals exceeds :data:`LONG_AXIS_MIN_ANGLE_DEG`) and that stack has at least two
  frames, or
* the series is named as a long-axis acquisition (SeriesDescription or ProtocolName contains
  ``4CH``, ``4 CH``, ``4-chamber``, ``HLA``, ``LAX`` ...; :data:`LONG_AXIS_NAME`), in which
  case every frame not belonging to a larger short-axis stack is long-axis.

Wall geometry
-------------
The LV long axis is the principal axis of the segmented LV blood pool; its apical end is the
end where the cavity is narrower (the LV tapers towards the apex).  The septal side is the
side of the axis on which the segmented RV blood pool lies; without an RV the septum cannot be
identified and no wall values are reported.  Positions along the axis are fractions of the
cavity length from the base (0, mitral plane) to the apex (1); the basal and mid thirds
(``0 <= u < 2/3``) are measured.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from plugins.api import (
    AnalysisError,
    Code,
    Label,
    LoadedSeries,
    Measurement,
    QCFlag,
    SegmentationOutput,
    Severity,
    SliceResult,
    SourceFrame,
)
from plugins.lib import codes
from plugins.t1map.segmenter import Segmenter
from plugins.t1map.tissue import TissueRanges

logger = logging.getLogger(__name__)

__all__ = [
    "LATERAL_WALL",
    "LEVEL_4CH",
    "LONG_AXIS_NAME",
    "SEPTUM",
    "LongAxisCode",
    "LongAxisFrameResult",
    "WallGeometry",
    "long_axis_frames",
    "long_axis_segmenter",
    "long_axis_series_measurements",
    "measure_long_axis",
    "wall_geometry",
]

LEVEL_4CH: Final = "4ch"
"""Level of four-chamber long-axis frames in results (SliceResult.level)."""

SEPTUM: Final = Code("589001", "SCT", "Interventricular septum")
"""Finding site of septal values (SNOMED CT body structure, as in pydicom's code tables)."""
LATERAL_WALL: Final = Code("lv-lateral-wall", codes.PRIVATE_SCHEME,
                           "Lateral wall of left ventricle")
"""Finding site of lateral-wall values (no SNOMED CT concept found in the code tables at hand:
private code)."""
SEPTAL_LATERAL_DIFFERENCE: Final = Code(
    "t1-septal-minus-lateral", codes.PRIVATE_SCHEME, "Septal minus lateral wall T1")

LONG_AXIS_NAME: Final = re.compile(
    r"(?<![0-9A-Z])(4\s*-?\s*CH(?:AMBER)?|4CV|FOUR[\s_-]*CHAMBER|HLA|LAX|LONG[\s_-]*AXIS)"
    r"(?![A-Z])",
    re.IGNORECASE,
)
"""Series names of long-axis (four-chamber) acquisitions."""

LONG_AXIS_MIN_ANGLE_DEG: Final = 45.0
"""Smallest angle between a frame's plane and the short-axis stack for a long-axis frame."""
APICAL_START: Final = 2.0 / 3.0
"""Fraction of the cavity length (base 0, apex 1) from which on the wall is apical."""
MIN_WALL_CORE_PIXELS: Final = 15
"""Fewer core pixels in a wall than this gives no value for it."""
MIN_RV_PIXELS: Final = 20
"""Fewer RV blood-pool pixels than this do not identify the septal side."""
MIN_CAVITY_PIXELS: Final = 20


class LongAxisCode:
    """Stable codes of the quality-control flags of long-axis frames."""

    SEPTUM_NOT_IDENTIFIED = "long_axis_septum_not_identified"
    FEW_WALL_PIXELS = "long_axis_few_wall_pixels"
    T1_OUT_OF_RANGE = "t1_out_of_range"
    SEGMENTATION_UNCERTAIN = "segmentation_uncertain"
    SLICE_UNSEGMENTABLE = "slice_unsegmentable"


@dataclass(frozen=True)
class WallGeometry:
    """The LV long axis found in a label image and the wall of each myocardial pixel.

    Attributes
    ----------
    axis
        Unit vector (row, col, in mm space) from base to apex.
    centre_mm
        Centre of the LV cavity (row, col) in mm.
    septal_sign
        +1 or -1: the sign of the perpendicular coordinate on the septal side; 0 when the
        septum was not identified (no RV blood pool).
    position
        float (rows, cols): fraction of the cavity length from base (0) to apex (1).
    side
        float (rows, cols): signed distance (mm) from the axis, positive on the septal side
        (zero everywhere when the septum was not identified).
    """

    axis: tuple[float, float]
    centre_mm: tuple[float, float]
    septal_sign: int
    position: npt.NDArray[np.float64]
    side: npt.NDArray[np.float64]

    def wall_masks(self, mask: npt.NDArray[np.bool_]
                   ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(septal, lateral) parts of ``mask`` in the basal and mid thirds."""
        if self.septal_sign == 0:
            empty = np.zeros_like(mask)
            return empty, empty
        lengthwise = (self.position >= 0.0) & (self.position < APICAL_START)
        return (mask & lengthwise & (self.side > 0.0),
                mask & lengthwise & (self.side < 0.0))


def wall_geometry(labels: npt.NDArray[np.uint8], spacing: tuple[float, float]
                  ) -> WallGeometry | None:
    """Long axis, apex direction and septal side of a four-chamber label image.

    Returns
    -------
    WallGeometry or None
        ``None`` when the LV blood pool is too small to define an axis.
    """
    cavity = labels == Label.LV_BLOOD_POOL
    if np.count_nonzero(cavity) < MIN_CAVITY_PIXELS:
        return None
    dy, dx = spacing
    rows, cols = np.nonzero(cavity)
    points = np.column_stack([rows * dy, cols * dx]).astype(np.float64)
    centre = points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((points - centre).T))
    axis = vectors[:, -1]  # largest variance: the long axis
    normal = np.array([-axis[1], axis[0]])
    along = (points - centre) @ axis
    across = (points - centre) @ normal
    low, high = np.percentile(along, [1.0, 99.0])
    span = max(high - low, 1e-6)
    end = 0.2 * span
    width_low = float(np.mean(np.abs(across[along < low + end])))
    width_high = float(np.mean(np.abs(across[along > high - end])))
    if width_high > width_low:  # the apex is the narrow end
        axis, normal = -axis, -normal
        low, high = -high, -low
    yy, xx = np.mgrid[0:labels.shape[0], 0:labels.shape[1]]
    offset_y = yy * dy - centre[0]
    offset_x = xx * dx - centre[1]
    t = offset_y * axis[0] + offset_x * axis[1]
    n = offset_y * normal[0] + offset_x * normal[1]
    position = (t - low) / span
    rv = labels == Label.RV_BLOOD_POOL
    sign = 0
    if np.count_nonzero(rv) >= MIN_RV_PIXELS:
        sign = 1 if float(n[rv].mean()) > 0.0 else -1
    return WallGeometry(
        axis=(float(axis[0]), float(axis[1])),
        centre_mm=(float(centre[0]), float(centre[1])),
        septal_sign=sign,
        position=position,
        side=n * sign,
    )


def long_axis_frames(series: LoadedSeries, stack: Sequence[int]) -> set[int]:
    """Indices of the frames to analyse as four-chamber long-axis views.

    Parameters
    ----------
    series
        The loaded series.
    stack
        Indices of the frames of the main (most populated) parallel stack.

    Returns
    -------
    set of int
        Long-axis frames (see the module documentation); empty for a short-axis series.
    """
    frames = series.frames
    stack_set = set(stack)
    found: set[int] = set()
    if len(stack) >= 2:
        reference = frames[stack[0]].normal
        limit = math.cos(math.radians(LONG_AXIS_MIN_ANGLE_DEG))
        found = {i for i in range(len(frames)) if i not in stack_set
                 and abs(float(np.dot(frames[i].normal, reference))) < limit}
    if _named_long_axis(series.header) or any(
            _named_long_axis(frame.attributes) for frame in frames):
        # A long-axis series: its frames, unless a short-axis stack of several slices
        # shares it (then only the frames off that stack).
        candidates = [i for i in range(len(frames)) if i not in stack_set] if (
            len(stack) >= 3) else list(range(len(frames)))
        found.update(candidates)
    return found


def long_axis_segmenter(segmenter: Segmenter) -> Segmenter:
    """The segmenter to use on long-axis frames.

    A segmenter with a ``for_long_axis()`` method (the trained U-Net: its plausibility check
    accepts an LV blood pool open to the left atrium) gives its long-axis variant; any other
    segmenter is used as it is.
    """
    variant = getattr(segmenter, "for_long_axis", None)
    if callable(variant):
        found: Segmenter = variant()
        return found
    return segmenter


def _named_long_axis(attributes: Mapping[str, Any]) -> bool:
    for keyword in ("SeriesDescription", "ProtocolName"):
        value = attributes.get(keyword)
        if isinstance(value, str) and LONG_AXIS_NAME.search(value):
            return True
    return False


@dataclass
class LongAxisFrameResult:
    """What the analysis found on one long-axis frame.

    Attributes
    ----------
    frame_index
        Index into the series' frames.
    slice_result
        Labels, measurements and core mask; ``None`` when nothing was segmented.
    flags
        Quality-control flags of the frame.
    table_row
        The frame's row of the per-slice table in ``AnalysisResult.extra``.
    septal_values, lateral_values
        Core T1 samples (ms) of each wall (empty when not measured).
    """

    frame_index: int
    slice_result: SliceResult | None
    flags: list[QCFlag]
    table_row: dict[str, Any]
    septal_values: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    lateral_values: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))


def _stat(values: npt.NDArray[np.float64], kind: str) -> float | None:
    if kind == "mean":
        return float(values.mean()) if values.size else None
    return float(values.std(ddof=1)) if values.size > 1 else None


def _wall_measurements(prefix: str, site: Code, values: npt.NDArray[np.float64],
                       reason: str | None) -> list[Measurement]:
    found = []
    for kind, derivation in (("mean", codes.MEAN), ("sd", codes.STANDARD_DEVIATION)):
        value = None if reason is not None else _stat(values, kind)
        found.append(Measurement(
            key=f"{prefix}_t1_{kind}_ms", name=codes.T1,
            value=None if value is None else round(value, 2), unit=codes.UCUM_MILLISECOND,
            region=Label.MYOCARDIUM, derivation=derivation,
            reason=reason if reason is not None else (
                None if value is not None else "too few pixels"),
            site=site,
        ))
    found.append(Measurement(
        key=f"{prefix}_core_pixels", name=codes.NUMBER_OF_PIXELS, value=float(values.size),
        unit=codes.UCUM_PIXELS, region=Label.MYOCARDIUM, site=site,
    ))
    return found


def _difference(septal: npt.NDArray[np.float64], lateral: npt.NDArray[np.float64],
                key: str, reason: str | None) -> Measurement:
    value = None
    if reason is None and septal.size and lateral.size:
        value = round(float(septal.mean() - lateral.mean()), 2)
    return Measurement(
        key=key, name=SEPTAL_LATERAL_DIFFERENCE, value=value, unit=codes.UCUM_MILLISECOND,
        region=Label.MYOCARDIUM,
        reason=None if value is not None else (reason or "a wall has no value"),
    )


def measure_long_axis(
    index: int,
    frame: SourceFrame,
    t1: npt.NDArray[np.float32],
    output: SegmentationOutput,
    core: npt.NDArray[np.bool_],
    ranges: TissueRanges,
    max_uncertainty: float,
) -> LongAxisFrameResult:
    """Septal and lateral wall T1 of one four-chamber frame.

    Parameters
    ----------
    index
        Frame index in the series.
    frame
        The frame (geometry and identifiers).
    t1
        The map in ms.
    output
        The segmenter's result for the frame.
    core
        Conservative mid-wall core of the segmented myocardium (as for short-axis slices).
    ranges
        T1 ranges for the field strength (plausibility of the wall values).
    max_uncertainty
        Segmenter uncertainty above which the contour is flagged.

    Returns
    -------
    LongAxisFrameResult
        Slice result with level :data:`LEVEL_4CH`, flags and table row.

    Raises
    ------
    plugins.api.AnalysisError
        If the segmenter's labels do not match the frame's shape.
    """
    labels = np.asarray(output.labels, dtype=np.uint8)
    if labels.shape != t1.shape:
        raise AnalysisError(
            f"Segmenter returned labels of shape {labels.shape} for a frame of shape {t1.shape}."
        )
    row: dict[str, Any] = {
        "frame_index": index,
        "sop_instance_uid": frame.sop_instance_uid,
        "frame_number": frame.frame_number,
        "slice_location_mm": round(frame.slice_location, 2),
        "level": LEVEL_4CH,
    }
    if not (labels == Label.MYOCARDIUM).any():
        row["status"] = "not segmented"
        flag = QCFlag(
            LongAxisCode.SLICE_UNSEGMENTABLE, Severity.FAILURE,
            "No LV myocardium found on this four-chamber frame"
            + (f": {output.reason}." if output.reason else ".") + " No values are reported for it.",
            frame_index=index,
        )
        return LongAxisFrameResult(index, None, [flag], row)
    flags: list[QCFlag] = []
    geometry = wall_geometry(labels, frame.pixel_spacing)
    reason: str | None = None
    if geometry is None:
        reason = "LV blood pool too small to find the long axis"
    elif geometry.septal_sign == 0:
        reason = "no RV blood pool segmented: the septum cannot be identified"
    if reason is not None:
        flags.append(QCFlag(
            LongAxisCode.SEPTUM_NOT_IDENTIFIED, Severity.WARNING,
            f"Four-chamber frame: {reason}; no septal or lateral wall T1 is reported.",
            frame_index=index,
        ))
    septal = lateral = np.zeros(labels.shape, dtype=bool)
    if geometry is not None and reason is None:
        septal, lateral = geometry.wall_masks(core)
    septal_values = np.asarray(t1[septal], dtype=np.float64)
    lateral_values = np.asarray(t1[lateral], dtype=np.float64)
    measurements: list[Measurement] = []
    for prefix, site, values in (("septal", SEPTUM, septal_values),
                                 ("lateral", LATERAL_WALL, lateral_values)):
        wall_reason = reason
        if wall_reason is None and values.size < MIN_WALL_CORE_PIXELS:
            wall_reason = (f"fewer than {MIN_WALL_CORE_PIXELS} core pixels in the "
                           f"{site.meaning.lower()}")
            flags.append(QCFlag(
                LongAxisCode.FEW_WALL_PIXELS, Severity.WARNING,
                f"Four-chamber frame: only {values.size} conservative-core pixels in the "
                f"{site.meaning.lower()}; no value is reported for it.", frame_index=index,
            ))
        measurements.extend(_wall_measurements(prefix, site, values, wall_reason))
        if wall_reason is None:
            low, high = ranges.myocardium
            mean = float(values.mean())
            if not low <= mean <= high:
                flags.append(QCFlag(
                    LongAxisCode.T1_OUT_OF_RANGE, Severity.WARNING,
                    f"{site.meaning} T1 {mean:.0f} ms is outside the physiological "
                    f"{low:.0f}-{high:.0f} ms range.", frame_index=index,
                ))
    measurements.append(_difference(septal_values, lateral_values,
                                    "septal_minus_lateral_t1_ms", reason))
    if output.uncertainty is not None and output.uncertainty > max_uncertainty:
        flags.append(QCFlag(
            LongAxisCode.SEGMENTATION_UNCERTAIN, Severity.WARNING,
            f"Segmentation of the four-chamber frame is uncertain (uncertainty "
            f"{output.uncertainty:.2f} > {max_uncertainty:.2f}): review the contour.",
            frame_index=index,
        ))
    row.update({
        "status": "analysed",
        "septal_t1_mean_ms": _round(_stat(septal_values, "mean")),
        "septal_t1_sd_ms": _round(_stat(septal_values, "sd")),
        "septal_core_pixels": int(septal_values.size),
        "lateral_t1_mean_ms": _round(_stat(lateral_values, "mean")),
        "lateral_t1_sd_ms": _round(_stat(lateral_values, "sd")),
        "lateral_core_pixels": int(lateral_values.size),
        "segmentation_uncertainty": _round(output.uncertainty, 3),
        "qc_flags": [flag.code for flag in flags],
        "segmenter": dict(output.details),
    })
    if geometry is not None:
        row["long_axis_direction"] = [round(v, 3) for v in geometry.axis]
    result = SliceResult(
        frame_index=index, labels=labels, measurements=tuple(measurements), level=LEVEL_4CH,
        analysed_region=np.asarray(septal | lateral, dtype=bool),
    )
    logger.debug("4ch frame %d: septum %s ms, lateral %s ms", index,
                 row["septal_t1_mean_ms"], row["lateral_t1_mean_ms"])
    return LongAxisFrameResult(index, result, flags, row, septal_values, lateral_values)


def long_axis_series_measurements(results: Sequence[LongAxisFrameResult]
                                  ) -> tuple[Measurement, ...]:
    """Septal and lateral wall T1 pooled over the long-axis frames of a series."""
    if not results:
        return ()
    septal = np.concatenate([r.septal_values for r in results])
    lateral = np.concatenate([r.lateral_values for r in results])
    found: list[Measurement] = []
    for prefix, site, values in (("four_chamber_septal", SEPTUM, septal),
                                 ("four_chamber_lateral", LATERAL_WALL, lateral)):
        reason = None if values.size >= MIN_WALL_CORE_PIXELS else (
            "no four-chamber frame with enough core pixels in this wall")
        found.extend(_wall_measurements(prefix, site, values, reason))
    found.append(_difference(septal, lateral, "four_chamber_septal_minus_lateral_t1_ms",
                             None if septal.size >= MIN_WALL_CORE_PIXELS
                             and lateral.size >= MIN_WALL_CORE_PIXELS else "a wall has no value"))
    return tuple(found)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)
