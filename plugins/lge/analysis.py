"""LGE analysis: LV myocardium and scar, %scar by three methods, AHA segments, location, pattern.

For every slice of a short-axis LGE stack the segmenter given in the options (the node gives
the trained network the site chose, :mod:`node.analyses.lge`; the two-channel LGE + cine
network for slices that have a matched image in the study's cine, see
:mod:`plugins.lge.cine`) gives LV blood pool, myocardium, RV blood pool, scar and MVO.  Scar is
then also measured with the two classical thresholds readers use (n-SD over automatically
found remote myocardium, and FWHM), so the report gives a range.  Volumes are slice areas
times the spacing between slice centres (the stack is treated as contiguous slabs, the
convention of short-axis volumetry); mass uses 1.05 g/ml (Vogel-Claussen J et al.,
"Left ventricular papillary muscle mass: relationship to left ventricular mass and volumes
by magnetic resonance imaging", J Comput Assist Tomogr 2006;30:426).  %scar = scar mass /
LV myocardial mass x 100, microvascular obstruction counted as scar and reported on its own.

Location and pattern follow the categories of the dilated-cardiomyopathy LVRR studies:
location absent / septal only / non-septal only / septal and non-septal / RV insertion point
only; pattern subendocardial, mid-wall, subepicardial, transmural, focal or multiple; and
whether septal mid-wall LGE is present.

Scar is quantified only where the image can show it: when the remote myocardium is brighter
than the LV blood pool (:data:`INVERTED_NULLING_RATIO`; a far too short inversion time, or
diffusely enhancing myocardium as in amyloidosis), every scar and MVO value is withheld with
the reason and a FAILURE flag; the contours and LV mass are still reported.

This module holds the method: segmenters, cine, the per-slice loop and the infarct call.  The
frames analysed are :mod:`plugins.lge.stack`'s, the contrast :mod:`plugins.lge.contrast`'s,
the scar of each slice and the stack's totals and checks :mod:`plugins.lge.measure`'s, the AHA
segments, location and pattern :mod:`plugins.lge.regional`'s, the measurements, tables and
provenance :mod:`plugins.lge.report`'s, the site model's combined call
:mod:`plugins.lge.combined`'s and the flag codes :mod:`plugins.lge.qc`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from plugins.api import (
    AnalysisError,
    AnalysisResult,
    Label,
    LoadedSeries,
    Measurement,
    Provenance,
    QCFlag,
    SegmentationOutput,
    Severity,
    SliceResult,
    SourceFrame,
    injected,
)
from plugins.lge.cine import (
    CineMatch,
    UnmatchedReason,
    align_cine,
    pair_cine_frames,
    resample_to_frame,
    trigger_time,
)
from plugins.lge.combined import combined_infarct
from plugins.lge.contrast import MAGNITUDE_ASSUMED, detect_contrast
from plugins.lge.infarct import InfarctAssessment, assess_infarct, infarct_finding
from plugins.lge.measure import (
    MYOCARDIAL_DENSITY_G_PER_ML,
    AnalysedSlice,
    ScarMethod,
    SegmentationMode,
    keep_wall_scar,
    quantify_slices,
    scar_totals,
    series_qc_flags,
    slice_spacing,
    without_scar_values,
)
from plugins.lge.qc import QCCode
from plugins.lge.quantify import (
    DEFAULT_N_SD,
    MYOCARDIAL_LABELS,
    N_SD_RANGE,
    Lesion,
    signal_zero,
)
from plugins.lge.regional import aha_block, classify, find_lesions
from plugins.lge.report import (
    NAME,
    SEGMENTS,
    build_provenance,
    lesion_row,
    network_rows,
    network_text,
    rounded,
    segment_measurements,
    series_measurements,
    slice_measurements,
    slice_row,
)
from plugins.lge.segmenter import LgeContrast, LgeSegmenter
from plugins.lge.stack import stack_frames
from plugins.lib import codes
from plugins.lib.cardiac.aha import assign_levels
from plugins.lib.cardiac.regions import merged_wall, slice_segment_maps
from plugins.lib.stack_geometry import in_plane_offsets
from plugins.lib.uncertainty import MAX_UNCERTAIN_AREA_RATIO, uncertain_area_ratio

logger = logging.getLogger(__name__)


PRESENCE_PERCENT: Final = 1.0
"""LGE is called present when scar is at least this per cent of LV mass."""
MAX_UNCERTAINTY: Final = 0.35
"""Segmentation uncertainty above which a slice is flagged (as for the T1 network)."""


COMPANION_CINE: Final = "cine"
"""Role of the study's short-axis cine series in ``options["companions"]``."""


def _network_used(segmenter: LgeSegmenter, outputs: Iterable[SegmentationOutput]
                  ) -> tuple[LgeSegmenter, str | None]:
    """The network of a cascade (a segmenter with ``networks()``, as
    :mod:`models.runtime.lgeseg.cascade`) that segmented the stack and why it was chosen;
    ``segmenter`` itself and ``None`` for any other segmenter."""
    networks = getattr(segmenter, "networks", None)
    if networks is None:
        return segmenter, None
    for output in outputs:
        chosen = output.details.get("cascade") or {}
        for network in networks():
            if (network.name == chosen.get("network")
                    and network.version == chosen.get("network_version")):
                return network, str(chosen.get("reason", ""))
    return segmenter, None


def _n_sd(options: Mapping[str, Any]) -> float:
    value = float(options.get("n_sd", DEFAULT_N_SD))
    low, high = N_SD_RANGE
    if not low <= value <= high:
        raise AnalysisError(f"n_sd = {value:g} is outside the accepted range {low:g}-{high:g}")
    return value


def analyse(series: LoadedSeries, options: Mapping[str, Any]) -> AnalysisResult:
    """Segment myocardium and scar on every slice and quantify scar by three methods.

    Parameters
    ----------
    series
        A short-axis LGE stack (PSIR or magnitude), one image per slice position.
    options
        Settings (``segmenter`` is required, the others optional):

        ``segmenter``
            Required: the :class:`~plugins.lge.segmenter.LgeSegmenter`.  The node gives the
            network the site chose (``[analysis.lge] segmenter``, :mod:`node.analyses.lge`);
            a cascade (a segmenter with ``networks()``) names in the provenance the network
            that segmented the stack.  A segmenter with ``segment_stack`` gets the whole
            stack at once, with the frames' geometry
            (:func:`plugins.lib.stack_geometry.in_plane_offsets`).
        ``n_sd``
            n of the n-SD method (default 5, accepted 2-6).
        ``contrast``
            ``"psir"`` or ``"magnitude"``, overriding detection from the headers.
        ``prefer``
            Which reconstruction to analyse when the series holds both (default PSIR).
        ``companions`` / ``companion_reasons`` / ``companion_series``
            From the node (:mod:`node.inputs.companions`): ``["cine"]`` is the study's short-axis
            cine series, or the reason there is none.  Every slice with a cine image at its
            position is segmented by the two-channel LGE + cine network
            (:mod:`plugins.lge.cine` pairs, resamples and aligns it); the others by the
            LGE-only network.  Each slice's mode is in ``extra["slices"][i]["mode"]``.
        ``cine_segmenter``
            Required with a cine companion (and ``use_cine``): the segmenter for slices with
            a matched cine (the node gives the trained LGE + cine network), or ``None`` when
            that network is unavailable (every slice is then segmented from the LGE alone)
            with ``cine_segmenter_flag``, the QC flag saying why.
        ``use_cine``
            ``False`` segments every slice from the LGE alone (default ``True``).
        ``infarct_model`` / ``clinical`` / ``clinical_source``
            A site infarct model (path or :class:`~plugins.lge.infarct_model.InfarctModel`,
            ``cmr-node classify train``) and the study's clinical variables
            (:class:`~plugins.lge.clinical.ClinicalVariables`, or feature name → number):
            with both, ``extra["infarct"]["combined"]`` holds the model's probability of
            infarction and its largest contributions; otherwise the reason there is none.
        ``clinical_error``
            Why the study's supplied clinical variables were refused (reported as the reason
            there is no combined probability).

    Returns
    -------
    plugins.api.AnalysisResult
        Per-slice labels (network scar and MVO), remote reference regions and areas;
        series volumes, masses and %scar by each method; per AHA segment %scar and maximum
        transmurality; location and pattern in ``extra["lge"]``; QC flags.

    Raises
    ------
    plugins.api.AnalysisError
        If the series has no frames, a required option is missing or an option is invalid.
    """
    if not series.frames:
        raise AnalysisError(f"Series {series.series_instance_uid} has no frames to analyse.")
    n_sd = _n_sd(options)
    segmenter: LgeSegmenter = injected(options, "segmenter", "the LGE segmenter")
    flags: list[QCFlag] = []
    if options.get("contrast"):
        contrast, evidence = LgeContrast(str(options["contrast"]).lower()), "option"
    else:
        contrast, evidence = detect_contrast(series)
    provenance = build_provenance(segmenter, n_sd)
    if evidence == MAGNITUDE_ASSUMED:
        flags.append(QCFlag(
            QCCode.CONTRAST_ASSUMED, Severity.INFO,
            "The headers do not say whether this is a PSIR or a magnitude reconstruction; it "
            "was treated as magnitude (zero signal at 0).",
        ))

    stack, stack_flags = stack_frames(
        series, LgeContrast(str(options.get("prefer", LgeContrast.PSIR)).lower())
    )
    flags.extend(stack_flags)
    cine = _cine_context(options, flags)
    alone = _stack_outputs(series, stack, contrast, segmenter)
    cascade = segmenter
    segmenter, chosen_because = _network_used(segmenter, alone.values())
    # The LGE + cine network learnt from the same phantoms as the one-stage U-Net: on a
    # stack the cascade gave to the two-stage network, its slices count only where it is sure.
    fused_must_be_sure = (chosen_because is not None
                          and segmenter is getattr(cascade, "fallback", None))
    analysed: list[AnalysedSlice] = []
    for index in stack:
        frame = series.frames[index]
        image = np.asarray(frame.pixels, dtype=np.float32)
        output, mode, cine_row = _segment_slice(frame, image, contrast, segmenter, cine,
                                                alone.get(index), fused_must_be_sure)
        labels = np.asarray(output.labels, dtype=np.uint8)
        if output.reason or not np.isin(labels, MYOCARDIAL_LABELS).any():
            flags.append(QCFlag(
                QCCode.SLICE_NOT_SEGMENTED, Severity.FAILURE,
                f"The LV could not be segmented ({output.reason or 'no myocardium'}); the "
                "slice is not counted in volumes or scar.",
                frame_index=index,
            ))
            continue
        labels, outside = keep_wall_scar(labels)
        if outside:
            flags.append(QCFlag(
                QCCode.SCAR_OUTSIDE_MYOCARDIUM, Severity.WARNING,
                f"{outside} enhanced pixel(s) outside the LV wall were found and not counted.",
                frame_index=index,
            ))
        if output.uncertainty is not None and output.uncertainty > MAX_UNCERTAINTY:
            flags.append(QCFlag(
                QCCode.SEGMENTATION_UNCERTAIN, Severity.WARNING,
                f"The network is unsure of this slice (uncertainty {output.uncertainty:.2f} > "
                f"{MAX_UNCERTAINTY}); check the contours.",
                frame_index=index,
            ))
        ratio = uncertain_area_ratio(output.probabilities, labels)
        if ratio is not None and ratio > MAX_UNCERTAIN_AREA_RATIO:
            flags.append(QCFlag(
                QCCode.PIXEL_UNCERTAINTY_HIGH, Severity.WARNING,
                f"The network's uncertain pixels cover {100 * ratio:.0f} % of the segmented "
                f"myocardium's area (> {100 * MAX_UNCERTAIN_AREA_RATIO:.0f} %); check the "
                "contours where the summary image shades them.",
                frame_index=index,
            ))
        analysed.append(AnalysedSlice(index, frame, labels, output.uncertainty,
                                      dict(output.details), signal_zero(image, contrast),
                                      mode=mode, cine=cine_row,
                                      probabilities=output.probabilities))
    used = [s for s in analysed if s.mode is SegmentationMode.LGE_CINE]
    flags.extend(_cine_flags(cine, analysed, len(stack)))
    provenance = build_provenance(segmenter, n_sd, cine.segmenter if used else None,
                             (len(used), len(analysed) - len(used)),
                             None if chosen_because is None
                             else f"{network_text(cascade)}: {chosen_because}")
    if not analysed:
        return _empty_result(series, flags, provenance, "no slice could be segmented", contrast)

    quantify_slices(analysed, n_sd, flags)
    levels = assign_levels(
        [s.frame.slice_location for s in analysed],
        [s.area(s.lv_blood) for s in analysed],
    )
    for item, level in zip(analysed, levels, strict=True):
        item.level = level
    divided, regional_flags = slice_segment_maps(
        series, [(s.index, s.level, merged_wall(s.labels)) for s in analysed]
    )
    flags.extend(regional_flags)

    spacing_mm, spacing_source = slice_spacing(analysed)
    if len({round(s.frame.slice_location, 1) for s in analysed}) < 2:
        flags.append(QCFlag(
            QCCode.SINGLE_SLICE, Severity.WARNING,
            f"Only one slice position: volumes and masses use a {spacing_mm:g} mm slab "
            f"({spacing_source}) and do not describe the whole LV.",
        ))
    totals = scar_totals(analysed, spacing_mm)
    flags.extend(series_qc_flags(analysed, totals))
    by_frame = {s.index: s for s in analysed}
    aha = aha_block(divided, by_frame)
    found = find_lesions(analysed, divided)
    classification = classify(found, totals[ScarMethod.NETWORK]["percent"],
                              PRESENCE_PERCENT)
    withheld = next((f.message for f in flags if f.code == QCCode.INVERTED_NULLING), None)
    if withheld is not None:
        classification = {"present": None, "not_assessed_reason": withheld}

    slices = tuple(
        SliceResult(
            frame_index=s.index,
            labels=s.labels,
            measurements=without_scar_values(slice_measurements(s), withheld),
            level=s.level,
            analysed_region=s.remote.mask if s.remote is not None else None,
            probabilities=s.probabilities,
        )
        for s in analysed
    )
    measurements = without_scar_values((*series_measurements(totals), *segment_measurements(aha)),
                             withheld)
    extra: dict[str, Any] = {
        "display_name": "LGE scar",
        "shaded_region": f"remote myocardium (reference of the {n_sd:g}-SD threshold)",
        "slices": [slice_row(s, spacing_mm) for s in analysed],
        "lge": {
            "contrast": str(contrast),
            "contrast_evidence": evidence,
            "n_sd": n_sd,
            "slice_spacing_mm": round(spacing_mm, 2),
            "slice_spacing_source": spacing_source,
            "myocardial_density_g_per_ml": MYOCARDIAL_DENSITY_G_PER_ML,
            "methods": {str(m): rounded(v) for m, v in totals.items()},
            "presence_percent": PRESENCE_PERCENT,
            **classification,
            "lesions": [lesion_row(lesion) for lesion in found],
            "cine": _cine_summary(cine, analysed),
            "networks": network_rows(segmenter, cine.segmenter, analysed),
        },
    }
    if aha is not None:
        extra["aha"] = aha
    infarct = _infarct(found, totals, spacing_mm, aha, flags, withheld, len(analysed))
    combined = combined_infarct(options, totals, analysed, spacing_mm, withheld, flags)
    extra["infarct"] = {**infarct.as_json(), "combined": combined}
    return AnalysisResult(
        analysis=NAME,
        series_instance_uid=series.series_instance_uid,
        segments=SEGMENTS,
        slices=slices,
        measurements=measurements,
        qc_flags=tuple(flags),
        provenance=provenance,
        extra=extra,
        findings=(infarct_finding(infarct, combined),),
    )


_SCAR_QC: Final = frozenset({
    QCCode.SEGMENTATION_UNCERTAIN, QCCode.SCAR_OUTSIDE_MYOCARDIUM, QCCode.LV_MASS_IMPLAUSIBLE,
    QCCode.POOR_NULLING, QCCode.METHODS_DISAGREE, QCCode.REMOTE_NOT_FOUND,
})
"""QC codes that lower the confidence of the infarct call."""


def _infarct(found: Sequence[Lesion], totals: Mapping[ScarMethod, Mapping[str, float]],
             spacing_mm: float, aha: Mapping[str, Any] | None, flags: Sequence[QCFlag],
             withheld: str | None, n_analysed: int) -> InfarctAssessment:
    """The image-only infarct call (:mod:`plugins.lge.infarct`) of the analysed stack."""
    net = totals[ScarMethod.NETWORK]
    transmural = [s["max_transmurality_percent"] for s in (aha or {}).get("segments", {})
                  .values() if s.get("max_transmurality_percent") is not None]
    return assess_infarct(
        found,
        slab_mm=spacing_mm,
        myocardium_volume_ml=net["myocardium_volume_ml"],
        enhanced_volume_ml=net["scar_volume_ml"],
        presence_percent=PRESENCE_PERCENT,
        slices_analysed=n_analysed,
        slices_not_segmented=sum(f.code == QCCode.SLICE_NOT_SEGMENTED for f in flags),
        method_percents={str(m): totals[m]["percent"] for m in ScarMethod},
        max_transmurality_percent=max(transmural) if transmural else None,
        withheld_reason=withheld,
        scar_warnings=sorted({f.code for f in flags if f.code in _SCAR_QC
                              and f.severity is not Severity.INFO}),
    )


@dataclass(frozen=True)
class _CineContext:
    """The study's cine for this analysis: series, its UID, the network and why not."""

    series: LoadedSeries | None
    series_uid: str | None
    segmenter: LgeSegmenter | None
    reason: str | None
    looked_up: bool


def _cine_context(options: Mapping[str, Any], flags: list[QCFlag]) -> _CineContext:
    """The cine companion and the two-channel network (or why slices use the LGE alone)."""
    companions = options.get("companions")
    reasons = options.get("companion_reasons")
    sources = options.get("companion_series")
    found = companions.get(COMPANION_CINE) if isinstance(companions, Mapping) else None
    reason = reasons.get(COMPANION_CINE) if isinstance(reasons, Mapping) else None
    looked_up = found is not None or reason is not None
    if found is not None and not isinstance(found, LoadedSeries):
        found, reason = None, f"the cine companion is not a loaded series ({type(found)})"
    uid = None
    if found is not None:
        uid = str(sources.get(COMPANION_CINE)) if isinstance(sources, Mapping) and sources.get(
            COMPANION_CINE) else found.series_instance_uid
    if found is None:
        return _CineContext(None, None, None, str(reason or UnmatchedReason.NO_CINE), looked_up)
    if not options.get("use_cine", True):
        return _CineContext(found, uid, None, "the cine is not used (option use_cine off)",
                            looked_up)
    if "cine_segmenter" not in options:
        raise AnalysisError(
            "options['cine_segmenter'] is missing: with a cine companion the LGE + cine"
            " segmenter (or None when it is unavailable) is given by the caller (the node"
            " builds it in node.analyses)"
        )
    fusion: LgeSegmenter | None = options["cine_segmenter"]
    if fusion is None:
        unavailable = options.get("cine_segmenter_flag")
        if isinstance(unavailable, QCFlag):
            flags.append(unavailable)
        return _CineContext(found, uid, None, "the LGE + cine network is unavailable",
                            looked_up)
    return _CineContext(found, uid, fusion, None, looked_up)


def _stack_outputs(series: LoadedSeries, stack: Sequence[int], contrast: LgeContrast,
                   segmenter: LgeSegmenter) -> dict[int, SegmentationOutput]:
    """LGE-only outputs of the whole stack at once, by frame index, when the segmenter
    localises the heart per stack (``segment_stack``, as
    :mod:`models.runtime.lgeseg.two_stage`), with the frames' ImagePositionPatient /
    ImageOrientationPatient placing the slices; else empty (each slice is then segmented
    alone)."""
    segment_stack = getattr(segmenter, "segment_stack", None)
    if segment_stack is None or not stack:
        return {}
    frames = [series.frames[i] for i in stack]
    offsets = in_plane_offsets([f.image_position for f in frames],
                               [f.image_orientation for f in frames],
                               [f.pixel_spacing for f in frames])
    outputs = segment_stack([np.asarray(f.pixels, dtype=np.float32) for f in frames],
                            [f.pixel_spacing for f in frames], contrast, offsets)
    return dict(zip(stack, outputs, strict=True))


def _segment_slice(
    frame: SourceFrame, image: npt.NDArray[np.float32], contrast: LgeContrast,
    segmenter: LgeSegmenter, cine: _CineContext, alone: SegmentationOutput | None = None,
    fused_must_be_sure: bool = False,
) -> tuple[SegmentationOutput, SegmentationMode, dict[str, Any]]:
    """Segment one slice with its matched cine when there is one, else from the LGE alone
    (``alone``: that LGE-only output, already computed with the stack).  The LGE + cine
    output is replaced by the LGE-only one when it was rejected or, with
    ``fused_must_be_sure``, when its uncertainty exceeds :data:`MAX_UNCERTAINTY`."""
    def lge_only() -> SegmentationOutput:
        return alone if alone is not None else segmenter.segment(image, frame.pixel_spacing,
                                                                 contrast)

    if cine.series is None or cine.segmenter is None:
        return lge_only(), SegmentationMode.LGE, {"used": False, "reason": cine.reason}
    match = pair_cine_frames(frame, cine.series)
    if not isinstance(match, CineMatch):
        return (lge_only(), SegmentationMode.LGE,
                {"used": False, "series_instance_uid": cine.series_uid,
                 "reason": f"{match.reason}: {match.detail}"})
    cine_frame = cine.series.frames[match.cine_index]
    on_grid = resample_to_frame(
        cine_frame.pixels, cine_frame.image_position, cine_frame.image_orientation,
        cine_frame.pixel_spacing, (int(image.shape[0]), int(image.shape[1])),
        frame.image_position, frame.image_orientation, frame.pixel_spacing)
    aligned, registration = align_cine(image, on_grid, frame.pixel_spacing)
    row: dict[str, Any] = {
        "used": True,
        "series_instance_uid": cine.series_uid,
        "sop_instance_uid": cine_frame.sop_instance_uid,
        "frame_number": cine_frame.frame_number,
        "distance_mm": round(match.distance_mm, 2),
        "trigger_time_ms": match.trigger_time_ms,
        "lge_trigger_time_ms": trigger_time(frame),
        "phase_difference_ms": None if match.phase_difference_ms is None
        else round(match.phase_difference_ms, 1),
        "shift_mm": [round(v, 2) for v in registration.shift_mm],
        "registration": registration.note,
        "registration_accepted": registration.accepted,
    }
    output = cine.segmenter.segment(image, frame.pixel_spacing, contrast, aligned)
    unsure = (fused_must_be_sure and output.uncertainty is not None
              and output.uncertainty > MAX_UNCERTAINTY)
    if output.reason or unsure or not np.isin(output.labels, MYOCARDIAL_LABELS).any():
        fallback = lge_only()
        if not fallback.reason and np.isin(fallback.labels, MYOCARDIAL_LABELS).any():
            row["used"] = False
            rejected = output.reason or (
                f"uncertainty {output.uncertainty:.2f} > {MAX_UNCERTAINTY} on a stack the "
                "one-stage network was not sure of" if unsure else "no myocardium")
            row["reason"] = (f"the LGE + cine output was rejected ({rejected}); the LGE-only "
                             "network segmented the slice")
            return fallback, SegmentationMode.LGE, row
    return output, SegmentationMode.LGE_CINE, row


def _cine_flags(cine: _CineContext, analysed: Sequence[AnalysedSlice], n_stack: int
                ) -> list[QCFlag]:
    """One INFO flag saying which slices used the matched cine, or why none did."""
    used = [s for s in analysed if s.mode is SegmentationMode.LGE_CINE]
    if used and cine.segmenter is not None:
        alone = len(analysed) - len(used)
        text = (f"{len(used)} of {len(analysed)} segmented slice(s) used the matched cine "
                f"(series {cine.series_uid}) with {cine.segmenter.name} "
                f"{cine.segmenter.version}")
        if alone:
            reasons = sorted({str(s.cine.get("reason")) for s in analysed
                              if s.mode is SegmentationMode.LGE and s.cine})
            text += f"; {alone} used the LGE alone ({'; '.join(reasons)})"
        return [QCFlag(QCCode.CINE_FUSION, Severity.INFO, text + ".")]
    if not cine.looked_up and cine.series is None:
        return []
    reasons = sorted({str(s.cine.get("reason")) for s in analysed if s.cine}) or [
        str(cine.reason)]
    return [QCFlag(
        QCCode.CINE_NOT_USED, Severity.INFO,
        f"No slice used a cine image; all {n_stack} slice(s) were segmented from the LGE "
        f"alone ({'; '.join(reasons)}).",
    )]


def _cine_summary(cine: _CineContext, analysed: Sequence[AnalysedSlice]) -> dict[str, Any]:
    used = sum(s.mode is SegmentationMode.LGE_CINE for s in analysed)
    return {
        "series_instance_uid": cine.series_uid,
        "slices_with_cine": used,
        "slices_lge_only": len(analysed) - used,
        "reason": cine.reason,
    }


def _empty_result(series: LoadedSeries, flags: list[QCFlag], provenance: Provenance,
                  reason: str, contrast: LgeContrast) -> AnalysisResult:
    flags = [*flags, QCFlag(QCCode.NO_SLICE_ANALYSED, Severity.FAILURE,
                            f"No slice was analysed: {reason}.")]
    measurements = tuple(
        Measurement(key=key, name=name, value=None, unit=unit, region=region, reason=reason)
        for key, name, unit, region in (
            ("lv_myocardium_mass_g", codes.MASS, codes.UCUM_GRAM, Label.MYOCARDIUM),
            ("scar_percent_lv_mass", codes.SCAR_EXTENT, codes.UCUM_PERCENT, Label.SCAR),
        )
    )
    infarct = assess_infarct((), slab_mm=0.0, myocardium_volume_ml=0.0, enhanced_volume_ml=0.0,
                             presence_percent=PRESENCE_PERCENT, slices_analysed=0,
                             slices_not_segmented=sum(f.code == QCCode.SLICE_NOT_SEGMENTED
                                                      for f in flags))
    return AnalysisResult(
        analysis=NAME,
        series_instance_uid=series.series_instance_uid,
        segments=SEGMENTS,
        slices=(),
        measurements=measurements,
        qc_flags=tuple(flags),
        provenance=provenance,
        extra={"display_name": "LGE scar", "slices": [],
               "lge": {"contrast": str(contrast), "not_analysed_reason": reason},
               "infarct": infarct.as_json()},
        findings=(infarct_finding(infarct),),
    )

