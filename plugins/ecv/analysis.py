"""Extracellular volume (ECV) from a post-contrast and a native T1 map of the same slices.

Method
------
1. **Native segmentation.** The native map (``options["companions"]["native_t1map"]``) is
   analysed by the unchanged :func:`plugins.t1map.analysis.analyse` (with the T1 segmenter
   given in the options: the node gives the trained U-Net).  Post-contrast maps have other
   T1 ranges than the network was trained on, so the LV labels, the conservative myocardial
   core and the slice levels come from the native map and are transferred to the
   post-contrast frames.
2. **Pairing.** Each post-contrast frame is paired with the analysed native frame of the same
   orientation whose plane lies within :data:`MAX_PAIR_DISTANCE_MM` of it (nearest wins).
3. **Alignment.** The native map is resampled onto the post-contrast pixel grid (patient
   coordinates), then aligned to it by an in-plane translation: phase correlation of the
   gradient magnitudes (insensitive to the inverted blood/myocardium contrast after
   gadolinium) over a window around the LV, searched within :data:`MAX_SHIFT_MM`.  The shift
   is reported; shifts above :data:`LARGE_SHIFT_MM` are flagged.
4. **Relaxation rates.** ΔR1 = 1/T1post − 1/T1native per pixel.  Per slice, the ROI method
   (Messroghli et al., JCMR 2017;19:75): mean T1 of the myocardial core and median T1 of the
   LV blood pool at least 2 mm from the endocardium, in both maps, give
   λ = ΔR1myocardium / ΔR1blood (the partition coefficient, which needs no haematocrit) and
   ECV = λ · (1 − Hct).  The pixel-wise ECV map divides each pixel's ΔR1 by the slice's blood
   ΔR1.  Per AHA segment: mean and SD of the pixel-wise map over the core.  Globally: the
   core-pixel-weighted mean of the slice values.

The haematocrit is never invented: without ``options["haematocrit"]`` the ECV is reported as
unavailable (with the reason) and λ alone is given.

Frames of the result
--------------------
Slice results, labels and flags index the frames of the *post-contrast* series (the input).
``extra["ecv"]["maps"]`` holds an :class:`EcvMaps` (the pixel-wise ECV on those frames) for
the Parametric Map writer when a haematocrit is known.

Quality control
---------------
* ``haematocrit_missing`` (WARNING): no haematocrit; ECV not computed, λ reported.
* ``haematocrit_invalid`` (WARNING): the supplied value was refused (the message says why).
* ``alignment_shift_large`` (WARNING, per slice): the native map had to be moved by more than
  :data:`LARGE_SHIFT_MM` (breath-hold position differs; contours less certain).
* ``alignment_uncertain`` (FAILURE, per slice): the correlation keeps rising beyond the
  search radius; the slice's values are not used.
* ``blood_delta_r1_low`` (WARNING; FAILURE below :data:`FAILURE_BLOOD_DELTA_R1_PER_S`): the
  blood's R1 rose by less than :data:`MIN_BLOOD_DELTA_R1_PER_S` — the map was acquired too
  late, with too little contrast, or is not post-contrast at all.
* ``ecv_out_of_range`` (WARNING, per slice): ECV (or λ without a haematocrit) outside
  :data:`PLAUSIBLE_ECV` (:data:`PLAUSIBLE_LAMBDA`).
* ``slice_not_paired`` (WARNING, per slice): no analysed native slice at this position.
* ``too_few_core_pixels`` (WARNING, per slice): fewer than :data:`MIN_CORE_PIXELS` valid core
  pixels after the transfer.
* The native analysis' own flags are kept with the prefix ``native_`` and no frame index
  (they concern the native frames).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import (
    AnalysisError,
    AnalysisResult,
    Code,
    Label,
    LoadedSeries,
    Measurement,
    Provenance,
    QCFlag,
    Severity,
    SliceResult,
    SourceFrame,
)
from plugins.lib import codes
from plugins.lib.cardiac.aha import SEGMENT_NAMES, segment_statistics
from plugins.lib.cardiac.regions import slice_segment_maps
from plugins.t1map import analysis as t1map_analysis

logger = logging.getLogger(__name__)

__all__ = [
    "ALGORITHM_NAME",
    "COMPANION_NATIVE",
    "HAEMATOCRIT_RANGE",
    "NAME",
    "VERSION",
    "EcvMaps",
    "HaematocritError",
    "QCCode",
    "analyse",
    "derived_map_uids",
    "estimate_shift",
    "parse_haematocrit",
]

NAME: Final = "ecv"
VERSION: Final = "0.1.0"
ALGORITHM_NAME: Final = "cmr-node ecv"

COMPANION_NATIVE: Final = "native_t1map"
"""Role of the native T1 map in ``options["companions"]``."""

HAEMATOCRIT_RANGE: Final = (0.15, 0.70)
"""Accepted haematocrit (fraction); 15-70 is read as per cent.  Outside it lies severe
anaemia or polycythaemia beyond which a laboratory value is more likely a typing error."""
MAX_PAIR_DISTANCE_MM: Final = 2.0
"""Largest distance between a post-contrast plane and its native partner: a quarter of the
usual 8 mm slice thickness, so the two sample the same tissue."""
MAX_SHIFT_MM: Final = 10.0
"""Search radius of the in-plane alignment: breath-hold positions of one study differ by a
few mm, rarely up to ~10 mm; beyond that the two maps do not show the same slice."""
LARGE_SHIFT_MM: Final = 5.0
"""Shift above which the slice is flagged: half a wall thickness; the transferred contours
are then only as good as the registration."""
MIN_BLOOD_DELTA_R1_PER_S: Final = 1.0
"""Blood R1 rise (1/s) below which the map is flagged.  10-20 min after 0.1-0.2 mmol/kg
gadolinium, blood T1 is 250-450 ms at 1.5 T (ΔR1 1.5-3.5 /s); ΔR1 < 1 /s (blood T1 above
~600 ms) means a late or low-dose acquisition, where λ's noise grows as 1/ΔR1blood."""
FAILURE_BLOOD_DELTA_R1_PER_S: Final = 0.3
"""Blood R1 rise below which ECV is not trustworthy at all (a native map sent as post-contrast
gives ~0)."""
PLAUSIBLE_ECV: Final = (0.15, 0.70)
"""ECV outside this range is flagged: normal myocardium is 0.22-0.30, diffuse fibrosis and
amyloidosis reach 0.40-0.70; below 0.15 no myocardium is known (misregistration, wrong
haematocrit or blood contamination)."""
PLAUSIBLE_LAMBDA: Final = (0.2, 1.4)
"""Partition coefficient range matching :data:`PLAUSIBLE_ECV` over haematocrits 0.3-0.5."""
MIN_CORE_PIXELS: Final = 20
"""Fewest valid core pixels for a slice value (as in the native T1 analysis)."""
MIN_SEGMENT_PIXELS: Final = 10
"""Segments with fewer core pixels get no value."""
MIN_BLOOD_PIXELS: Final = 5
BLOOD_MARGIN_MM: Final = 2.0
"""Blood-pool pixels closer than this to the endocardium are not used (partial volume)."""
REGISTRATION_WINDOW_MM: Final = 45.0
"""Half-size of the square window around the LV centre used for alignment."""
GRADIENT_SIGMA_PX: Final = 1.0
ECV_DISPLAY_RANGE: Final = (15.0, 45.0)
"""Fixed colour scale (%) of the ECV bullseye: normal ~25 % in the lower third."""
LAMBDA_DISPLAY_RANGE: Final = (0.25, 0.85)

UUID_ROOT: Final = "2.25."
UID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_OID, "cmr-node ecv parametric maps")

ECV: Final = Code("ecv", codes.PRIVATE_SCHEME, "Extracellular volume fraction")
PARTITION_COEFFICIENT: Final = Code(
    "partition-coefficient", codes.PRIVATE_SCHEME, "Partition coefficient (lambda)"
)
DELTA_R1: Final = Code("delta-r1", codes.PRIVATE_SCHEME, "R1 change after contrast")
T1_POST: Final = Code("t1-post-contrast", codes.PRIVATE_SCHEME, "Post-contrast T1")
UCUM_PER_SECOND: Final = Code("/s", "UCUM", "per second")
_MS_PER_S = 1000.0


class QCCode:
    """Stable codes of the quality-control flags this analysis raises."""

    HAEMATOCRIT_MISSING = "haematocrit_missing"
    HAEMATOCRIT_INVALID = "haematocrit_invalid"
    ALIGNMENT_SHIFT_LARGE = "alignment_shift_large"
    ALIGNMENT_UNCERTAIN = "alignment_uncertain"
    BLOOD_DELTA_R1_LOW = "blood_delta_r1_low"
    ECV_OUT_OF_RANGE = "ecv_out_of_range"
    SLICE_NOT_PAIRED = "slice_not_paired"
    TOO_FEW_CORE_PIXELS = "too_few_core_pixels"
    NO_SLICE_ANALYSED = "no_slice_analysed"


class HaematocritError(ValueError):
    """A haematocrit value cannot be used; the message says why."""


def parse_haematocrit(value: Any) -> float:
    """A haematocrit as a fraction.

    Parameters
    ----------
    value
        A number (or numeric text): a fraction in :data:`HAEMATOCRIT_RANGE` or the same in
        per cent (15-70), which is converted.

    Returns
    -------
    float
        The haematocrit as a fraction.

    Raises
    ------
    HaematocritError
        If ``value`` is not a finite number in either range.
    """
    if isinstance(value, bool):
        raise HaematocritError(f"haematocrit must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise HaematocritError(f"haematocrit must be a number, not {value!r}") from exc
    low, high = HAEMATOCRIT_RANGE
    if math.isfinite(number):
        if low <= number <= high:
            return number
        if 100 * low <= number <= 100 * high:
            return number / 100.0
    raise HaematocritError(
        f"haematocrit {value!r} is outside {low:g}-{high:g} (fraction) and "
        f"{100 * low:g}-{100 * high:g} (per cent)"
    )


@dataclass(frozen=True)
class EcvMaps:
    """Pixel-wise ECV of the analysed post-contrast frames, for the Parametric Map writer.

    Attributes
    ----------
    frame_indices
        Indices into the post-contrast series' frames.
    ecv_percent
        Per frame, ECV in per cent (0 where either map has no value).
    series_instance_uid, sop_instance_uid
        Identifiers the Parametric Map must carry (:func:`derived_map_uids`).
    haematocrit
        The haematocrit used.
    """

    frame_indices: tuple[int, ...]
    ecv_percent: tuple[npt.NDArray[np.float32], ...]
    series_instance_uid: str
    sop_instance_uid: str
    haematocrit: float

    def __str__(self) -> str:
        """Short description (what ``results.json`` shows instead of the arrays)."""
        return (
            f"<ECV maps: {len(self.ecv_percent)} frame(s), Parametric Map "
            f"{self.sop_instance_uid}>"
        )


def derived_map_uids(post_series_uid: str, version: str = VERSION) -> tuple[str, str]:
    """Deterministic (Series, SOP Instance) UIDs of the ECV Parametric Map of a series."""

    def uid(*parts: str) -> str:
        name = json.dumps([post_series_uid, NAME, version, *parts])
        return f"{UUID_ROOT}{uuid.uuid5(UID_NAMESPACE, name).int}"

    return uid("ecv-map", "series"), uid("ecv-map", "instance")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


@dataclass
class _Pair:
    post_index: int
    native_index: int
    distance_mm: float


@dataclass
class _SliceValues:
    frame_index: int
    native_index: int
    level: str
    labels: npt.NDArray[np.uint8]
    core: npt.NDArray[np.bool_]
    shift_px: tuple[float, float]
    shift_mm: float
    at_limit: bool
    t1_native_myo: float
    t1_post_myo: float
    t1_native_blood: float
    t1_post_blood: float
    delta_r1_myo: float
    delta_r1_blood: float
    core_pixels: int
    pixel_ecv: npt.NDArray[np.float32]
    """ECV fraction per pixel (λ per pixel without a haematocrit)."""

    @property
    def partition(self) -> float:
        return self.delta_r1_myo / self.delta_r1_blood


def analyse(series: LoadedSeries, options: Mapping[str, Any]) -> AnalysisResult:
    """ECV and partition coefficient of a post-contrast T1-map series.

    Parameters
    ----------
    series
        The post-contrast T1 map series (values in ms or s).
    options
        ``companions``
            Mapping with :data:`COMPANION_NATIVE`: the native T1 map of the same study
            (:class:`~plugins.api.LoadedSeries`).  ``companion_reasons`` may say why it is
            missing.
        ``haematocrit``, ``haematocrit_source``
            The patient's haematocrit (fraction or per cent) and where it came from.
        ``haematocrit_error``
            Why a supplied haematocrit was refused (reported as a flag).
        ``segmenter`` (required), ``segmenter_flag``, ``field_strength_t``,
        ``min_core_pixels``, ``normal_ranges``
            Passed to the native T1-map analysis.

    Returns
    -------
    plugins.api.AnalysisResult
        Per post-contrast slice: labels (from the native map), λ, ECV, T1 and ΔR1 values;
        global λ and ECV; per-segment ECV (``extra["aha"]``, quantity "ECV", unit "%"; λ
        without a haematocrit); ``extra["ecv"]`` with the pairing, shifts and maps.

    Raises
    ------
    plugins.api.AnalysisError
        If no native T1 map was supplied, the post-contrast series is empty or not in ms,
        or no post-contrast frame has a native partner.
    """
    if not series.frames:
        raise AnalysisError(f"Series {series.series_instance_uid} has no frames to analyse.")
    native = _native_companion(options)
    flags: list[QCFlag] = []
    haematocrit, hct_source = _haematocrit(options, flags)

    post_scale, _ = t1map_analysis._unit_scale(series.frames)
    if post_scale is None:
        units = ", ".join(sorted({f.units for f in series.frames}))
        raise AnalysisError(f"The post-contrast map's values are not T1 in ms (units {units}).")
    native_options = {
        key: options[key]
        for key in ("segmenter", "segmenter_flag", "field_strength_t", "min_core_pixels",
                    "normal_ranges")
        if key in options
    }
    native_options["radiomics"] = False
    base = t1map_analysis.analyse(native, native_options)
    native_scale, _ = t1map_analysis._unit_scale(native.frames)
    if native_scale is None:
        raise AnalysisError("The native T1 map's values are not T1 in ms; no ECV.")
    flags.extend(_native_flags(base))

    failed_native = {
        f.frame_index for f in base.qc_flags
        if f.severity is Severity.FAILURE and f.frame_index is not None
    }
    native_slices = {
        s.frame_index: s for s in base.slices
        if s.frame_index not in failed_native and s.analysed_region is not None
    }
    excluded = t1map_analysis.source_image_frames(series.frames)
    pairs, unpaired = _pair_frames(series, native, native_slices, excluded)
    for index in unpaired:
        flags.append(QCFlag(
            QCCode.SLICE_NOT_PAIRED, Severity.WARNING,
            f"No analysed native T1 slice lies within {MAX_PAIR_DISTANCE_MM:g} mm of this "
            "post-contrast slice: no ECV for it.",
            frame_index=index,
        ))
    if not pairs:
        raise AnalysisError(
            f"None of the {len(series.frames)} post-contrast frame(s) has an analysed native "
            f"T1 slice within {MAX_PAIR_DISTANCE_MM:g} mm in series "
            f"{native.series_instance_uid}: no ECV."
        )

    values: list[_SliceValues] = []
    for pair in pairs:
        sv, slice_flags = _measure_pair(
            series, native, native_slices[pair.native_index], pair,
            post_scale, native_scale, haematocrit,
        )
        flags.extend(slice_flags)
        if sv is not None:
            values.append(sv)
    slices: list[SliceResult] = []
    table: list[dict[str, Any]] = []
    for pair in pairs:
        sv = next((v for v in values if v.frame_index == pair.post_index), None)
        table.append(_table_row(series.frames[pair.post_index], pair, sv, haematocrit))
        if sv is None:
            continue
        slice_flags = _value_flags(sv, haematocrit)
        flags.extend(slice_flags)
        slices.append(SliceResult(
            frame_index=sv.frame_index,
            labels=sv.labels,
            measurements=_slice_measurements(sv, haematocrit, hct_source),
            level=sv.level,
            analysed_region=sv.core,
        ))
    failed = {
        f.frame_index for f in flags if f.severity is Severity.FAILURE and f.frame_index is not None
    }
    usable = [v for v in values if v.frame_index not in failed]
    if not usable:
        flags.append(QCFlag(
            QCCode.NO_SLICE_ANALYSED, Severity.FAILURE,
            "No post-contrast slice gave usable ECV values.",
        ))
    measurements = _global_measurements(usable, haematocrit, hct_source)
    extra: dict[str, Any] = {
        "display_name": "ECV",
        "shaded_region": "myocardial core used for ECV",
        "display_window": (0.0, 1000.0),
        "ecv": {
            "method": _method(haematocrit, hct_source),
            "native_series_instance_uid": native.series_instance_uid,
            "haematocrit": haematocrit,
            "haematocrit_source": hct_source,
            "slices": table,
        },
    }
    aha_block, aha_flags = _aha_block(series, usable, haematocrit)
    flags.extend(aha_flags)
    if aha_block is not None:
        extra["aha"] = aha_block
        measurements.extend(_segment_measurements(aha_block, haematocrit, hct_source))
    if haematocrit is not None and usable:
        series_uid, sop_uid = derived_map_uids(series.series_instance_uid)
        extra["ecv"]["maps"] = EcvMaps(
            frame_indices=tuple(v.frame_index for v in usable),
            ecv_percent=tuple((100.0 * v.pixel_ecv).astype(np.float32) for v in usable),
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
            haematocrit=haematocrit,
        )
        extra["ecv"]["uids"] = {"series_instance_uid": series_uid, "sop_instance_uid": sop_uid}
    logger.info(
        "ecv %s (native %s): %d/%d slice(s), haematocrit %s, %d flag(s)",
        series.series_instance_uid, native.series_instance_uid, len(usable), len(pairs),
        "none" if haematocrit is None else f"{haematocrit:.3f}", len(flags),
    )
    return AnalysisResult(
        analysis=NAME,
        series_instance_uid=series.series_instance_uid,
        segments=base.segments,
        slices=tuple(slices),
        measurements=tuple(measurements),
        qc_flags=tuple(flags),
        provenance=_provenance(base.provenance),
        extra=extra,
    )


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _native_companion(options: Mapping[str, Any]) -> LoadedSeries:
    companions = options.get("companions") or {}
    native = companions.get(COMPANION_NATIVE) if isinstance(companions, Mapping) else None
    if isinstance(native, LoadedSeries) and native.frames:
        return native
    reasons = options.get("companion_reasons") or {}
    reason = reasons.get(COMPANION_NATIVE) if isinstance(reasons, Mapping) else None
    raise AnalysisError(
        "ECV needs the native T1 map of the same slices from the same study, and none was "
        "found" + (f": {reason}" if reason else "") + "."
    )


def _haematocrit(
    options: Mapping[str, Any], flags: list[QCFlag]
) -> tuple[float | None, str | None]:
    raw = options.get("haematocrit")
    source = str(options.get("haematocrit_source") or "analysis configuration")
    error = options.get("haematocrit_error")
    if error:
        flags.append(QCFlag(
            QCCode.HAEMATOCRIT_INVALID, Severity.WARNING,
            f"The haematocrit supplied for this study was refused ({error}); ECV is not "
            "computed, the partition coefficient is.",
        ))
    if raw is None or raw == "":
        if not error:
            flags.append(QCFlag(
                QCCode.HAEMATOCRIT_MISSING, Severity.WARNING,
                "No haematocrit was supplied for this study: ECV is not computed; the "
                "partition coefficient (lambda) is reported instead.",
            ))
        return None, None
    try:
        return parse_haematocrit(raw), source
    except HaematocritError as exc:
        flags.append(QCFlag(
            QCCode.HAEMATOCRIT_INVALID, Severity.WARNING,
            f"The haematocrit from {source} was refused ({exc}); ECV is not computed, the "
            "partition coefficient is.",
        ))
        return None, None


def _native_flags(base: AnalysisResult) -> list[QCFlag]:
    """The native analysis' flags, renamed and detached from its frames."""
    found = []
    for flag in base.qc_flags:
        where = "" if flag.frame_index is None else f" (native frame {flag.frame_index + 1})"
        severity = flag.severity
        if flag.frame_index is not None and severity is Severity.FAILURE:
            severity = Severity.WARNING  # that slice is simply not paired
        found.append(QCFlag(
            f"native_{flag.code}", severity, f"Native T1 map{where}: {flag.message}"
        ))
    return found


def _pair_frames(
    post: LoadedSeries,
    native: LoadedSeries,
    native_slices: Mapping[int, SliceResult],
    excluded: set[int],
) -> tuple[list[_Pair], list[int]]:
    pairs: list[_Pair] = []
    unpaired: list[int] = []
    for index, frame in enumerate(post.frames):
        if index in excluded:
            continue
        best: _Pair | None = None
        for native_index in native_slices:
            distance = plane_distance_mm(frame, native.frames[native_index])
            if distance is None or distance > MAX_PAIR_DISTANCE_MM:
                continue
            if best is None or distance < best.distance_mm:
                best = _Pair(index, native_index, distance)
        if best is None:
            unpaired.append(index)
        else:
            pairs.append(best)
    return pairs, unpaired


def plane_distance_mm(a: SourceFrame, b: SourceFrame) -> float | None:
    """Distance between two parallel image planes (mm); ``None`` when not parallel."""
    if abs(float(np.dot(a.normal, b.normal))) < t1map_analysis.PARALLEL_COSINE:
        return None
    offset = np.asarray(a.image_position, np.float64) - np.asarray(b.image_position, np.float64)
    return abs(float(np.dot(b.normal, offset)))


# --------------------------------------------------------------------------------------------
# Geometry and alignment
# --------------------------------------------------------------------------------------------


def _same_grid(a: SourceFrame, b: SourceFrame) -> bool:
    return (
        a.pixels.shape == b.pixels.shape
        and np.allclose(a.pixel_spacing, b.pixel_spacing, atol=1e-4)
        and np.allclose(a.image_orientation, b.image_orientation, atol=1e-4)
        and float(np.linalg.norm(
            np.cross(
                np.asarray(a.image_position) - np.asarray(b.image_position), a.normal
            )
        )) < 1e-3
    )


def _grid_coordinates(target: SourceFrame, source: SourceFrame) -> npt.NDArray[np.float64]:
    """Pixel coordinates (row, column) in ``source`` of every pixel centre of ``target``."""
    rows, cols = target.pixels.shape
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    t_row = np.asarray(target.image_orientation[:3])
    t_col = np.asarray(target.image_orientation[3:])
    points = (
        np.asarray(target.image_position)[None, None, :]
        + (c * target.pixel_spacing[1])[..., None] * t_row
        + (r * target.pixel_spacing[0])[..., None] * t_col
    )
    offset = points - np.asarray(source.image_position)
    s_row = np.asarray(source.image_orientation[:3])
    s_col = np.asarray(source.image_orientation[3:])
    return np.stack([
        offset @ s_col / source.pixel_spacing[0],
        offset @ s_row / source.pixel_spacing[1],
    ])


def _resample(
    image: npt.NDArray[Any], coords: npt.NDArray[np.float64] | None, order: int
) -> npt.NDArray[Any]:
    if coords is None:
        return image
    return np.asarray(
        ndimage.map_coordinates(image, coords, order=order, mode="constant", cval=0),
        dtype=image.dtype,
    )


def estimate_shift(
    fixed: npt.NDArray[np.floating[Any]],
    moving: npt.NDArray[np.floating[Any]],
    spacing: tuple[float, float],
    *,
    centre: tuple[float, float] | None = None,
    max_shift_mm: float = MAX_SHIFT_MM,
    window_mm: float = REGISTRATION_WINDOW_MM,
) -> tuple[tuple[float, float], bool]:
    """In-plane translation that carries ``fixed`` onto ``moving``.

    Phase correlation of the gradient magnitudes (so contrast inversion does not matter) in
    a Hann-weighted window around ``centre``, with the peak searched within
    ``max_shift_mm`` and refined to sub-pixel by a parabola per axis.

    Parameters
    ----------
    fixed, moving
        Two images on the same pixel grid.
    spacing
        (row, column) pixel spacing in mm.
    centre
        (row, column) centre of the window; the image centre by default.
    max_shift_mm
        Search radius.
    window_mm
        Half-size of the square window.

    Returns
    -------
    tuple
        ``((d_row, d_col), at_limit)``: ``moving(p) ≈ fixed(p - d)`` in pixels, and whether
        the correlation rises beyond the search radius at the peak (the shift is then not
        trusted).
    """
    rows, cols = fixed.shape
    cr, cc = centre if centre is not None else ((rows - 1) / 2.0, (cols - 1) / 2.0)
    half_r = max(8, round(window_mm / spacing[0]))
    half_c = max(8, round(window_mm / spacing[1]))
    r0, r1 = max(0, round(cr) - half_r), min(rows, round(cr) + half_r)
    c0, c1 = max(0, round(cc) - half_c), min(cols, round(cc) + half_c)

    def edges(image: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        patch = np.nan_to_num(np.asarray(image[r0:r1, c0:c1], np.float64))
        grad = ndimage.gaussian_gradient_magnitude(patch, GRADIENT_SIGMA_PX)
        scale = float(np.percentile(grad, 99)) or 1.0
        grad = np.minimum(grad / scale, 1.0)
        window = np.outer(np.hanning(patch.shape[0]), np.hanning(patch.shape[1]))
        return np.asarray((grad - grad.mean()) * window)

    f_fixed = np.fft.fft2(edges(fixed))
    f_moving = np.fft.fft2(edges(moving))
    cross = f_moving * np.conj(f_fixed)
    magnitude = np.abs(cross)
    cross /= magnitude + 1e-3 * float(magnitude.max() or 1.0)
    surface = np.fft.ifft2(cross).real
    n_r, n_c = surface.shape
    dr = np.fft.fftfreq(n_r) * n_r
    dc = np.fft.fftfreq(n_c) * n_c
    distance = np.hypot(dr[:, None] * spacing[0], dc[None, :] * spacing[1])
    allowed = distance <= max_shift_mm
    search = np.where(allowed, surface, -np.inf)
    peak_r, peak_c = np.unravel_index(int(np.argmax(search)), search.shape)

    def refine(values: tuple[float, float, float]) -> float:
        left, mid, right = values
        denom = left - 2 * mid + right
        return 0.0 if denom >= 0 else float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))

    sub_r = refine((
        surface[(peak_r - 1) % n_r, peak_c], surface[peak_r, peak_c],
        surface[(peak_r + 1) % n_r, peak_c],
    ))
    sub_c = refine((
        surface[peak_r, (peak_c - 1) % n_c], surface[peak_r, peak_c],
        surface[peak_r, (peak_c + 1) % n_c],
    ))
    shift = (float(dr[peak_r]) + sub_r, float(dc[peak_c]) + sub_c)
    # The peak is trusted unless the correlation keeps rising beyond the search radius.
    at_limit = False
    for step_r in (-1, 0, 1):
        for step_c in (-1, 0, 1):
            nr, nc = (peak_r + step_r) % n_r, (peak_c + step_c) % n_c
            if not allowed[nr, nc] and surface[nr, nc] > surface[peak_r, peak_c]:
                at_limit = True
    return shift, at_limit


# --------------------------------------------------------------------------------------------
# Per-slice measurement
# --------------------------------------------------------------------------------------------


def _measure_pair(
    post: LoadedSeries,
    native: LoadedSeries,
    native_slice: SliceResult,
    pair: _Pair,
    post_scale: float,
    native_scale: float,
    haematocrit: float | None,
) -> tuple[_SliceValues | None, list[QCFlag]]:
    post_frame = post.frames[pair.post_index]
    native_frame = native.frames[pair.native_index]
    index = pair.post_index
    flags: list[QCFlag] = []
    coords = None if _same_grid(post_frame, native_frame) else _grid_coordinates(
        post_frame, native_frame
    )
    t1_post = np.asarray(post_frame.pixels, np.float32) * np.float32(post_scale)
    t1_native = _resample(
        np.asarray(native_frame.pixels, np.float32) * np.float32(native_scale), coords, 1
    )
    labels = _resample(np.asarray(native_slice.labels, np.uint8), coords, 0)
    core_src = native_slice.analysed_region
    assert core_src is not None
    core = _resample(core_src.astype(np.uint8), coords, 0).astype(bool)

    lv = labels == Label.LV_BLOOD_POOL
    wall = labels == Label.MYOCARDIUM
    heart = lv | wall
    centre = (
        tuple(float(v) for v in ndimage.center_of_mass(heart)) if heart.any() else None
    )
    shift, at_limit = estimate_shift(
        t1_native, t1_post, post_frame.pixel_spacing,
        centre=centre,  # type: ignore[arg-type]
    )
    if at_limit:
        flags.append(QCFlag(
            QCCode.ALIGNMENT_UNCERTAIN, Severity.FAILURE,
            f"The native and post-contrast maps could not be aligned within "
            f"{MAX_SHIFT_MM:g} mm (different slices or a large breath-hold difference): the "
            "transferred contours would be misplaced; no ECV for this slice.",
            frame_index=index,
        ))
        shift = (0.0, 0.0)
    shift_mm = float(np.hypot(shift[0] * post_frame.pixel_spacing[0],
                              shift[1] * post_frame.pixel_spacing[1]))
    if shift_mm > LARGE_SHIFT_MM:
        flags.append(QCFlag(
            QCCode.ALIGNMENT_SHIFT_LARGE, Severity.WARNING,
            f"The native map was moved by {shift_mm:.1f} mm to match the post-contrast map "
            f"(limit {LARGE_SHIFT_MM:g} mm): the breath-hold positions differ; review the "
            "transferred contours.",
            frame_index=index,
        ))
    if shift != (0.0, 0.0):
        t1_native = ndimage.shift(t1_native, shift, order=1, mode="constant", cval=0.0)
        labels = ndimage.shift(labels, shift, order=0, mode="constant", cval=0)
        core = ndimage.shift(core.astype(np.uint8), shift, order=0, mode="constant",
                             cval=0).astype(bool)
    valid = (t1_native > 0) & (t1_post > 0) & np.isfinite(t1_native) & np.isfinite(t1_post)
    core = core & valid & (labels == Label.MYOCARDIUM)
    lv = labels == Label.LV_BLOOD_POOL
    inner = ndimage.distance_transform_edt(lv, sampling=post_frame.pixel_spacing)
    blood = (inner >= BLOOD_MARGIN_MM) & valid
    if np.count_nonzero(blood) < MIN_BLOOD_PIXELS:
        blood = lv & valid
    if np.count_nonzero(blood) < MIN_BLOOD_PIXELS or np.count_nonzero(core) < MIN_CORE_PIXELS:
        flags.append(QCFlag(
            QCCode.TOO_FEW_CORE_PIXELS, Severity.WARNING,
            f"Only {int(np.count_nonzero(core))} myocardial core and "
            f"{int(np.count_nonzero(blood))} blood-pool pixels have values in both maps "
            f"(need {MIN_CORE_PIXELS} and {MIN_BLOOD_PIXELS}): no ECV for this slice.",
            frame_index=index,
        ))
        return None, flags
    t1n_myo = float(np.mean(t1_native[core]))
    t1p_myo = float(np.mean(t1_post[core]))
    t1n_blood = float(np.median(t1_native[blood]))
    t1p_blood = float(np.median(t1_post[blood]))
    d_myo = _MS_PER_S / t1p_myo - _MS_PER_S / t1n_myo
    d_blood = _MS_PER_S / t1p_blood - _MS_PER_S / t1n_blood
    if d_blood < MIN_BLOOD_DELTA_R1_PER_S:
        severity = (
            Severity.FAILURE if d_blood < FAILURE_BLOOD_DELTA_R1_PER_S else Severity.WARNING
        )
        flags.append(QCFlag(
            QCCode.BLOOD_DELTA_R1_LOW, severity,
            f"Blood R1 rose by only {d_blood:.2f} /s (T1 {t1n_blood:.0f} -> {t1p_blood:.0f} "
            f"ms; expected >= {MIN_BLOOD_DELTA_R1_PER_S:g} /s): the map was acquired too "
            "late or with little contrast, or is not post-contrast; ECV is imprecise"
            + (" and not usable." if severity is Severity.FAILURE else "."),
            frame_index=index,
        ))
    if d_blood <= 0:
        return None, flags
    with np.errstate(divide="ignore", invalid="ignore"):
        pixel = (_MS_PER_S / t1_post - _MS_PER_S / t1_native) / d_blood
    factor = 1.0 - haematocrit if haematocrit is not None else 1.0
    pixel_ecv = np.where(valid, np.clip(pixel * factor, 0.0, 1.0), 0.0).astype(np.float32)
    return _SliceValues(
        frame_index=index,
        native_index=pair.native_index,
        level=native_slice.level,
        labels=np.asarray(labels, np.uint8),
        core=core,
        shift_px=(float(shift[0]), float(shift[1])),
        shift_mm=shift_mm,
        at_limit=at_limit,
        t1_native_myo=t1n_myo,
        t1_post_myo=t1p_myo,
        t1_native_blood=t1n_blood,
        t1_post_blood=t1p_blood,
        delta_r1_myo=d_myo,
        delta_r1_blood=d_blood,
        core_pixels=int(np.count_nonzero(core)),
        pixel_ecv=pixel_ecv,
    ), flags


def _value_flags(sv: _SliceValues, haematocrit: float | None) -> list[QCFlag]:
    if haematocrit is not None:
        value, (low, high), what = sv.partition * (1 - haematocrit), PLAUSIBLE_ECV, "ECV"
        text = f"{100 * value:.1f} %"
        bounds = f"{100 * low:.0f}-{100 * high:.0f} %"
    else:
        value, (low, high), what = sv.partition, PLAUSIBLE_LAMBDA, "The partition coefficient"
        text, bounds = f"{value:.2f}", f"{low:g}-{high:g}"
    if low <= value <= high:
        return []
    return [QCFlag(
        QCCode.ECV_OUT_OF_RANGE, Severity.WARNING,
        f"{what} {text} is outside the plausible {bounds}: check the haematocrit, the "
        "alignment of the two maps and the contours.",
        frame_index=sv.frame_index,
    )]


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


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


def _slice_measurements(
    sv: _SliceValues, haematocrit: float | None, source: str | None
) -> tuple[Measurement, ...]:
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


def _global_measurements(
    usable: Sequence[_SliceValues], haematocrit: float | None, source: str | None
) -> list[Measurement]:
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


def _aha_block(
    series: LoadedSeries, usable: Sequence[_SliceValues], haematocrit: float | None
) -> tuple[dict[str, Any] | None, list[QCFlag]]:
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


def _segment_measurements(
    block: Mapping[str, Any], haematocrit: float | None, source: str | None
) -> list[Measurement]:
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


# --------------------------------------------------------------------------------------------
# Provenance and extra
# --------------------------------------------------------------------------------------------


def _table_row(
    frame: SourceFrame, pair: _Pair, sv: _SliceValues | None, haematocrit: float | None
) -> dict[str, Any]:
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


def _method(haematocrit: float | None, source: str | None) -> dict[str, Any]:
    return {
        "algorithm": ALGORITHM_NAME,
        "version": VERSION,
        "segmentation": "native T1 map (t1map analysis), labels transferred to the "
        "post-contrast frames",
        "pairing_max_distance_mm": MAX_PAIR_DISTANCE_MM,
        "alignment": f"in-plane translation, phase correlation of gradient magnitudes within "
        f"{MAX_SHIFT_MM:g} mm; flagged above {LARGE_SHIFT_MM:g} mm",
        "roi": "myocardial core mean T1 and LV blood median T1 (>= "
        f"{BLOOD_MARGIN_MM:g} mm from the endocardium) in both maps",
        "formula": "lambda = dR1 myocardium / dR1 blood; ECV = lambda * (1 - haematocrit)",
        "global": "core-pixel-weighted mean of the slice values",
        "segments": "mean and SD of the pixel-wise map over the core per AHA segment",
        "haematocrit": haematocrit,
        "haematocrit_source": source,
        "plausible_ecv": list(PLAUSIBLE_ECV),
        "min_blood_delta_r1_per_s": MIN_BLOOD_DELTA_R1_PER_S,
    }


def _provenance(base: Provenance) -> Provenance:
    return Provenance(
        algorithm_name=ALGORITHM_NAME,
        algorithm_version=VERSION,
        method=(
            f"ECV by cmr-node {NAME} {VERSION}: LV contours of the native T1 map transferred "
            "to the aligned post-contrast map; lambda from myocardial core and blood-pool "
            f"R1 changes, ECV = lambda x (1 - haematocrit). Native map: {base.method}"
        ),
        model_name=base.model_name,
        model_version=base.model_version,
        model_sha256=base.model_sha256,
    )
