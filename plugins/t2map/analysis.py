"""Native T2-map analysis (myocardial oedema): LV segmentation, myocardial T2, quality control.

A pure function of a :class:`~plugins.api.LoadedSeries` holding T2 maps in ms (a T2-prepared
bSSFP map as Siemens MyoMaps, Philips and GE reconstruct it, or any other T2 map).

Segmentation
------------
T2 maps show blood bright and myocardium dark, as a magnitude LGE image does.  The segmenter is
given in ``options["segmenter"]``; the node gives (:mod:`node.analyses.t2map`), of the two
committed networks, the two-stage LGE segmenter (:mod:`models.runtime.lgeseg.two_stage`:
localiser then segmenter, each input normalised to its own 1st / 99th percentiles, trained on
domain-randomised phantom and Sunnybrook label maps) without its scar-enhancement rule, run as
for a magnitude image with its scar labels counted as myocardium.  On 18 phantom T2-map slices
(3 subjects at 1.5 and 3 T, :func:`models.phantoms.maps.t2_map`) its myocardium had a median
Dice of 0.94 against the phantom labels (all slices >= 0.7); the T1-map U-Net, which reads
physical T1 values without normalisation, found no myocardium on raw T2 maps (Dice 0 on every
slice) and a median Dice of 0.80 (14 of 18 slices >= 0.7) after mapping T2 linearly onto
T1-like values, so it is not used.  On 60 further lesion-free slices (10 subjects per field)
the median Dice was 0.91; two slices (Dice 0.03 and 0.0) were mis-segmented and are caught by
the QC below (no core / implausible T2); over the 57 usable slices the slice mean T2 differed
from the phantom's tissue T2 by -3.0 ms [-18.2, +7.8] at 1.5 T and +1.5 ms [-6.9, +44.7] at 3 T
(the same core on the exact labels: -4.6 [-20.4, +1.4] and -1.2 [-8.1, +1.7]).  Neither network
has seen a real T2 map: the values are to be checked on a site's own maps before clinical use.

Values
------
T2 statistics are taken over the conservative mid-wall core of the T1-map analysis
(:func:`plugins.t1map.analysis.conservative_core`: the middle of the wall, away from the
blood pool, whose T2 is several times the myocardium's, and from epicardial fat), per slice,
pooled over the usable slices (global), and per AHA segment (:mod:`plugins.lib.cardiac`).
The concept is DCM 113065 "T2", the member of CID 218, CID 7180 and CID 7469 (pydicom's
PS3.16 tables) that the T1 path's DCM 113063 "T1" is for T1.

Reference range
---------------
Normal myocardial T2 depends on vendor, sequence and field strength (pooled healthy means 52
ms at 1.5 T and 46 ms at 3 T across 42 studies, with vendor and sequence as significant
covariates: Hanson CA et al., Radiology 2020;297:344-351).  No published range is shipped:
the abstracts found that match a product T2-prepared bSSFP map (von Knobelsdorff-Brenkenhoff
F et al., J Cardiovasc Magn Reson 2013;15:53, Siemens 3 T: slice means 44.1 / 45.1 / 46.9
ms; Wassmuth R et al., J Cardiovasc Magn Reson 2013;15:27, Siemens 1.5 T) give no standard
deviation of the healthy mean there, so no z-score can be derived from them.  A site adds its
own range under ``[analysis.t2map.normal_ranges.<name>]`` (same fields as the T1 map's,
``sequence_family = "t2_prep"``); without one the result says
:data:`plugins.t1map.reference.NO_RANGE_TEXT` and gives values only.

Quality control
---------------
Flags (:class:`QCCode`): map not in ms; slice not segmented; segmentation uncertain; too few
core pixels; slice T2 outside :data:`PLAUSIBLE_T2_MS` (not a diagnostic range: a bound
beyond which the value is more likely a wrong image or a failed fit than myocardium); no
usable slice; no reference range.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from plugins.api import (
    AnalysisError,
    AnalysisResult,
    Code,
    Label,
    LoadedSeries,
    Measurement,
    Provenance,
    QCFlag,
    SegmentationOutput,
    Severity,
    SliceResult,
    injected,
)
from plugins.lge.segmenter import LgeContrast, LgeSegmenter
from plugins.lib import codes
from plugins.lib.cardiac.aha import SEGMENT_NAMES, assign_levels, segment_statistics
from plugins.lib.cardiac.regions import slice_segment_maps
from plugins.t1map.analysis import conservative_core
from plugins.t1map.reference import (
    NO_RANGE_TEXT,
    ReferenceRange,
    describe_missing,
    parse_site_ranges,
)

logger = logging.getLogger(__name__)

__all__ = ["ALGORITHM_NAME", "NAME", "T2", "VERSION", "QCCode", "analyse"]

NAME: Final = "t2map"
VERSION: Final = "0.1.0"
ALGORITHM_NAME: Final = "cmr-node t2map"

T2: Final = Code("113065", "DCM", "T2")
"""DCM 113065 "T2" (CID 218 / 7180 / 7469 in pydicom's PS3.16 tables), as DCM 113063 for T1."""
T2_Z_SCORE: Final = Code("t2-z-score", codes.PRIVATE_SCHEME, "T2 z-score against the normal range")

PLAUSIBLE_T2_MS: Final = (25.0, 120.0)
"""Slice means outside this are flagged as implausible for myocardium (about half and more
than twice the pooled healthy means of Hanson et al. 2020; oedema raises T2 by far less than
that).  A plausibility bound chosen for QC, not a normal range."""
MIN_CORE_PIXELS: Final = 20
"""Fewer core pixels than this make a slice unusable (as for the T1 map)."""
MIN_SEGMENT_PIXELS: Final = 10
MAX_UNCERTAINTY: Final = 0.35
"""Network uncertainty above this flags the slice (as for the T1 map)."""
DISPLAY_WINDOW_MS: Final = (0.0, 150.0)
"""Grey window of the summary image: myocardium mid-grey, blood white."""
_MYOCARDIAL_LABELS: Final = (int(Label.MYOCARDIUM), int(Label.SCAR), int(Label.MVO))


class QCCode:
    """Stable QC codes of the T2-map analysis."""

    UNITS_NOT_MS = "units_not_ms"
    SLICE_NOT_SEGMENTED = "slice_not_segmented"
    SEGMENTATION_UNCERTAIN = "segmentation_uncertain"
    FEW_CORE_PIXELS = "few_core_pixels"
    T2_IMPLAUSIBLE = "t2_implausible"
    NO_USABLE_SLICE = "no_usable_slice"
    NO_REFERENCE_RANGE = "no_reference_range"


SEGMENTS: Final = (codes.SEGMENT_LV_BLOOD_POOL, codes.SEGMENT_MYOCARDIUM,
                   codes.SEGMENT_RV_BLOOD_POOL)


@dataclass(frozen=True)
class _Slice:
    frame_index: int
    labels: npt.NDArray[np.uint8]
    core: npt.NDArray[np.bool_]
    values: npt.NDArray[np.float64]
    area_mm2: float
    uncertainty: float | None


def _segment(segmenter: LgeSegmenter, pixels: npt.NDArray[np.float32],
             spacing: tuple[float, float]) -> SegmentationOutput:
    output: SegmentationOutput = segmenter.segment(pixels, spacing, LgeContrast.MAGNITUDE)
    labels = np.where(np.isin(output.labels, _MYOCARDIAL_LABELS), np.uint8(Label.MYOCARDIUM),
                      output.labels).astype(np.uint8)
    return SegmentationOutput(labels, output.uncertainty, output.reason, output.details)


def _statistic(values: npt.NDArray[np.float64], kind: str) -> float | None:
    if values.size == 0:
        return None
    if kind == "sd":
        return float(np.std(values, ddof=1)) if values.size > 1 else None
    return float(np.median(values)) if kind == "median" else float(np.mean(values))


def _t2_measurements(prefix: str, values: npt.NDArray[np.float64], reason: str | None
                     ) -> list[Measurement]:
    found = []
    for kind, derivation in (("mean", codes.MEAN), ("median", codes.MEDIAN),
                             ("sd", codes.STANDARD_DEVIATION)):
        value = None if reason else _statistic(values, kind)
        found.append(Measurement(
            key=f"{prefix}myocardium_t2_{kind}_ms", name=T2, value=value,
            unit=codes.UCUM_MILLISECOND, region=Label.MYOCARDIUM, derivation=derivation,
            reason=reason if value is None else None,
        ))
    return found


def _reference(series: LoadedSeries, options: Mapping[str, Any]
               ) -> tuple[ReferenceRange | None, str]:
    try:
        site = parse_site_ranges(options.get("normal_ranges"))
    except ValueError as exc:
        raise AnalysisError(f"[analysis.t2map] {exc}") from exc
    acq = series.acquisition
    field = acq.field_strength_t if acq.field_strength_t is not None else series.field_strength_t
    if field is not None:
        for candidate in site:
            if candidate.matches(acq.vendor, acq.sequence_family, field):
                return candidate, candidate.source
    return None, describe_missing(acq, field)


def analyse(series: LoadedSeries, options: Mapping[str, Any]) -> AnalysisResult:
    """Segment the LV on every T2-map slice and measure myocardial T2.

    Parameters
    ----------
    series
        T2 maps in ms (``SourceFrame.units == "ms"``).
    options
        ``segmenter`` (required): the LV segmenter, an
        :class:`~plugins.lge.segmenter.LgeSegmenter` run as for a magnitude LGE image.
        ``normal_ranges``: the site's reference ranges (see the module description).

    Raises
    ------
    AnalysisError
        If the series has no frame, the segmenter is missing, or a site range is malformed.
    """
    if not series.frames:
        raise AnalysisError("The series has no images.")
    segmenter: LgeSegmenter = injected(options, "segmenter", "the LV segmenter")
    flags: list[QCFlag] = []
    units = {frame.units for frame in series.frames}
    if units != {"ms"}:
        flags.append(QCFlag(QCCode.UNITS_NOT_MS, Severity.FAILURE,
                            f"The map's values are in {', '.join(sorted(units))}, not ms; it is"
                            " not analysed."))
        return _result(series, (), (), flags, {"display_window": DISPLAY_WINDOW_MS},
                       segmenter)
    reference, reference_text = _reference(series, options)
    usable: list[_Slice] = []
    slices: list[tuple[int, npt.NDArray[np.uint8], list[Measurement]]] = []
    for index, frame in enumerate(series.frames):
        pixels = np.asarray(frame.pixels, dtype=np.float32)
        output = _segment(segmenter, pixels, frame.pixel_spacing)
        labels = output.labels
        myocardium = labels == Label.MYOCARDIUM
        if output.reason is not None or not myocardium.any():
            flags.append(QCFlag(QCCode.SLICE_NOT_SEGMENTED, Severity.WARNING,
                                f"No LV myocardium found ({output.reason or 'empty output'}).",
                                index))
            continue
        if output.uncertainty is not None and output.uncertainty > MAX_UNCERTAINTY:
            flags.append(QCFlag(QCCode.SEGMENTATION_UNCERTAIN, Severity.WARNING,
                                f"Segmentation uncertainty {output.uncertainty:.2f} exceeds "
                                f"{MAX_UNCERTAINTY:g}; review the contours.", index))
        core = conservative_core(labels, frame.pixel_spacing)
        values = pixels[core].astype(np.float64)
        values = values[np.isfinite(values)]
        area = float(myocardium.sum()) * frame.pixel_spacing[0] * frame.pixel_spacing[1]
        reason = None
        if values.size < MIN_CORE_PIXELS:
            reason = f"fewer than {MIN_CORE_PIXELS} core pixels ({values.size})"
            flags.append(QCFlag(QCCode.FEW_CORE_PIXELS, Severity.WARNING,
                                f"Only {values.size} myocardial core pixels; the slice's T2 is"
                                " not reported.", index))
        measurements = _t2_measurements("", values, reason)
        measurements += [
            Measurement("myocardium_area_mm2", codes.AREA, round(area, 1),
                        codes.UCUM_SQUARE_MILLIMETER, Label.MYOCARDIUM),
            Measurement("myocardium_core_pixels", codes.NUMBER_OF_PIXELS, float(values.size),
                        codes.UCUM_PIXELS, Label.MYOCARDIUM),
        ]
        slices.append((index, labels, measurements))
        if reason is not None:
            continue
        mean = float(np.mean(values))
        if not PLAUSIBLE_T2_MS[0] <= mean <= PLAUSIBLE_T2_MS[1]:
            flags.append(QCFlag(QCCode.T2_IMPLAUSIBLE, Severity.WARNING,
                                f"Mean myocardial T2 {mean:.0f} ms lies outside "
                                f"{PLAUSIBLE_T2_MS[0]:g}-{PLAUSIBLE_T2_MS[1]:g} ms: check the map"
                                " and the contours.", index))
            continue
        usable.append(_Slice(index, labels, core, pixels.astype(np.float64), area,
                             output.uncertainty))
    levels = _levels(series, slices)
    slice_results = tuple(
        SliceResult(index, labels, tuple(measurements), levels.get(index, "unknown"),
                    conservative_core(labels, series.frames[index].pixel_spacing))
        for index, labels, measurements in slices
    )
    extra: dict[str, Any] = {"display_window": DISPLAY_WINDOW_MS,
                             "reference_range": (reference.as_dict() if reference is not None
                                                 else NO_RANGE_TEXT),
                             "reference_text": reference_text}
    if not usable:
        flags.append(QCFlag(QCCode.NO_USABLE_SLICE, Severity.FAILURE,
                            "No slice gave a usable myocardial T2."))
        return _result(series, slice_results, (), flags, extra, segmenter)
    if reference is None:
        flags.append(QCFlag(QCCode.NO_REFERENCE_RANGE, Severity.INFO, reference_text))
    pooled = np.concatenate([s.values[s.core & np.isfinite(s.values)] for s in usable])
    measurements = _t2_measurements("global_", pooled, None)
    if reference is not None:
        mean = float(np.mean(pooled))
        measurements.append(Measurement("global_myocardium_t2_z_score", T2_Z_SCORE,
                                        round(reference.z_score(mean), 2), codes.UCUM_NO_UNITS,
                                        Label.MYOCARDIUM))
    aha, segment_flags = _segments(series, usable, levels)
    flags += segment_flags
    if aha is not None:
        extra["aha"] = aha
        measurements += _segment_measurements(aha)
    return _result(series, slice_results, tuple(measurements), flags, extra, segmenter)


def _levels(series: LoadedSeries,
            slices: Sequence[tuple[int, npt.NDArray[np.uint8], list[Measurement]]]
            ) -> dict[int, str]:
    if not slices:
        return {}
    locations = [series.frames[i].slice_location for i, _, _ in slices]
    areas: list[float | None] = [
        float((labels == Label.LV_BLOOD_POOL).sum()) for _, labels, _ in slices
    ]
    found = assign_levels(locations, areas)
    return {index: level for (index, _, _), level in zip(slices, found, strict=True)}


def _segments(series: LoadedSeries, usable: Sequence[_Slice], levels: Mapping[int, str]
              ) -> tuple[dict[str, Any] | None, list[QCFlag]]:
    divided, flags = slice_segment_maps(
        series, [(s.frame_index, levels.get(s.frame_index, "unknown"), s.labels)
                 for s in usable])
    if not divided:
        return None, flags
    by_frame = {s.frame_index: s for s in usable}
    stats = segment_statistics([by_frame[d.frame_index].values for d in divided],
                               [d.segments for d in divided],
                               mask=[by_frame[d.frame_index].core for d in divided])
    segments: dict[str, Any] = {}
    for number, st in sorted(stats.items()):
        enough = st.n_pixels >= MIN_SEGMENT_PIXELS and st.mean is not None
        segments[str(number)] = {
            "name": SEGMENT_NAMES[number],
            "n_pixels": st.n_pixels,
            "mean": round(float(st.mean), 1) if enough and st.mean is not None else None,
            "sd": round(float(st.sd), 1) if enough and st.sd is not None else None,
            "median": round(float(st.median), 1) if enough and st.median is not None else None,
        }
    return {
        "model": "AHA 16-segment (Cerqueira et al., Circulation 2002;105:539-542)",
        "quantity": "T2", "unit": "ms", "region": "conservative myocardial core",
        "segments": segments,
    }, flags


def _segment_measurements(aha: Mapping[str, Any]) -> list[Measurement]:
    found = []
    for number, item in aha["segments"].items():
        few = None if item["mean"] is not None else (
            f"fewer than {MIN_SEGMENT_PIXELS} core pixels in the segment")
        for key, derivation in (("mean", codes.MEAN), ("sd", codes.STANDARD_DEVIATION)):
            found.append(Measurement(
                key=f"segment_{number}_t2_{key}_ms", name=T2, value=item[key],
                unit=codes.UCUM_MILLISECOND, region=Label.MYOCARDIUM, derivation=derivation,
                reason=few if item[key] is None else None,
                site=codes.AHA_SEGMENT_SITES[int(number)],
            ))
    return found


def _provenance(segmenter: LgeSegmenter) -> Provenance:
    method = (
        "LV segmentation of each T2 map by the two-stage LGE network (run as for a magnitude"
        " image, scar labels counted as myocardium); T2 statistics over a conservative"
        " mid-wall myocardial core, per slice, pooled over slices and per AHA segment."
    )
    return Provenance(ALGORITHM_NAME, VERSION, method, model_name=segmenter.name,
                      model_version=segmenter.version, model_sha256=segmenter.weights_sha256)


def _result(series: LoadedSeries, slices: tuple[SliceResult, ...],
            measurements: tuple[Measurement, ...], flags: list[QCFlag],
            extra: Mapping[str, Any], segmenter: LgeSegmenter) -> AnalysisResult:
    return AnalysisResult(
        analysis=NAME, series_instance_uid=series.series_instance_uid, segments=SEGMENTS,
        slices=slices, measurements=measurements, qc_flags=tuple(flags),
        provenance=_provenance(segmenter), extra=extra,
    )
