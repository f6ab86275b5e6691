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
the Parametric Map writer when a haematocrit is known.  The plugin proposes no identity for
that map: the node gives every output object its UIDs (new ones for each analysis
generation) and lists them with its outputs in ``results.json``.

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

Modules
-------
This module holds the entry point, its inputs (native companion, haematocrit) and the
result's provenance; the pairing and alignment are :mod:`plugins.ecv.alignment`'s, the
per-slice measurement :mod:`plugins.ecv.measure`'s, the measurements and tables of the result
:mod:`plugins.ecv.report`'s and the flag codes :mod:`plugins.ecv.qc`'s.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from plugins.api import (
    AnalysisError,
    AnalysisResult,
    LoadedSeries,
    Provenance,
    QCFlag,
    Severity,
    SliceResult,
)
from plugins.ecv.alignment import MAX_PAIR_DISTANCE_MM, MAX_SHIFT_MM, pair_frames
from plugins.ecv.measure import (
    BLOOD_MARGIN_MM,
    LARGE_SHIFT_MM,
    MIN_BLOOD_DELTA_R1_PER_S,
    PLAUSIBLE_ECV,
    SliceValues,
    measure_pair,
    value_flags,
)
from plugins.ecv.qc import QCCode
from plugins.ecv.report import (
    build_aha_block,
    global_measurements,
    segment_measurements,
    slice_measurements,
    table_row,
)
from plugins.t1map import analysis as t1map_analysis
from plugins.t1map.frames import source_image_frames, unit_scale

logger = logging.getLogger(__name__)

__all__ = [
    "ALGORITHM_NAME",
    "COMPANION_NATIVE",
    "HAEMATOCRIT_RANGE",
    "NAME",
    "VERSION",
    "EcvMaps",
    "HaematocritError",
    "analyse",
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
    haematocrit
        The haematocrit used.
    """

    frame_indices: tuple[int, ...]
    ecv_percent: tuple[npt.NDArray[np.float32], ...]
    haematocrit: float

    def __str__(self) -> str:
        """Short description (what ``results.json`` shows instead of the arrays)."""
        return f"<ECV maps: {len(self.ecv_percent)} frame(s), haematocrit {self.haematocrit:.2f}>"


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


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

    post_scale, _ = unit_scale(series.frames)
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
    native_scale, _ = unit_scale(native.frames)
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
    excluded = source_image_frames(series.frames)
    pairs, unpaired = pair_frames(series, native, native_slices, excluded)
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

    values: list[SliceValues] = []
    for pair in pairs:
        sv, slice_flags = measure_pair(
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
        table.append(table_row(series.frames[pair.post_index], pair, sv, haematocrit))
        if sv is None:
            continue
        slice_flags = value_flags(sv, haematocrit)
        flags.extend(slice_flags)
        slices.append(SliceResult(
            frame_index=sv.frame_index,
            labels=sv.labels,
            measurements=slice_measurements(sv, haematocrit, hct_source),
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
    measurements = global_measurements(usable, haematocrit, hct_source)
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
    aha_block, aha_flags = build_aha_block(series, usable, haematocrit)
    flags.extend(aha_flags)
    if aha_block is not None:
        extra["aha"] = aha_block
        measurements.extend(segment_measurements(aha_block, haematocrit, hct_source))
    if haematocrit is not None and usable:
        extra["ecv"]["maps"] = EcvMaps(
            frame_indices=tuple(v.frame_index for v in usable),
            ecv_percent=tuple((100.0 * v.pixel_ecv).astype(np.float32) for v in usable),
            haematocrit=haematocrit,
        )
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
