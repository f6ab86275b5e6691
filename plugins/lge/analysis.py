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
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import (
    AnalysisError,
    AnalysisResult,
    Code,
    FloatImage,
    Label,
    LabelImage,
    LoadedSeries,
    Measurement,
    Provenance,
    QCFlag,
    SegmentationOutput,
    SegmentDefinition,
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
from plugins.lge.infarct import InfarctAssessment, assess_infarct, infarct_finding
from plugins.lge.quantify import (
    DEFAULT_N_SD,
    ENHANCED_LABELS,
    FWHM_FLOOR_SD,
    MYOCARDIAL_LABELS,
    N_SD_RANGE,
    Layer,
    Lesion,
    RemoteReference,
    fwhm_scar,
    lesions,
    nsd_scar,
    remote_reference,
    signal_zero,
)
from plugins.lge.segmenter import LgeContrast, LgeSegmenter
from plugins.lib import codes
from plugins.lib.cardiac.aha import SEGMENT_NAMES, assign_levels, transmurality
from plugins.lib.cardiac.regions import SliceSegments, merged_wall, slice_segment_maps
from plugins.lib.stack_geometry import in_plane_offsets
from plugins.lib.uncertainty import MAX_UNCERTAIN_AREA_RATIO, uncertain_area_ratio

logger = logging.getLogger(__name__)

NAME: Final = "lge"
VERSION: Final = "0.1.0"
ALGORITHM_NAME: Final = "cmr-node lge"

MYOCARDIAL_DENSITY_G_PER_ML: Final = 1.05
"""Density of myocardium (g/ml)."""
PRESENCE_PERCENT: Final = 1.0
"""LGE is called present when scar is at least this per cent of LV mass."""
MAX_UNCERTAINTY: Final = 0.35
"""Segmentation uncertainty above which a slice is flagged (as for the T1 network)."""
MAX_NULLING_RATIO: Final = 0.3
"""Remote myocardium brighter than this fraction of the blood pool (both above zero signal)
is poorly nulled (a wrong inversion time): magnitude thresholds then underestimate scar."""
INVERTED_NULLING_RATIO: Final = 1.0
"""Remote myocardium brighter than the blood pool itself: the inversion time was far from the
myocardial null (or the whole myocardium enhances, as in cardiac amyloidosis), scar has no
contrast against it, and scar extent is not reported (SCMR post-processing recommendations:
quantify LGE only on images with nulled remote myocardium)."""
LV_MASS_PLAUSIBLE_G: Final = (40.0, 400.0)
"""LV myocardial mass outside this range is implausible for an adult LV stack."""
MAX_METHOD_SPREAD_POINTS: Final = 10.0
"""Network, n-SD and FWHM %scar further apart than this (percentage points) are flagged."""
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
PARALLEL_COSINE: Final = 0.99
"""Frames whose normals' cosine is at least this belong to one stack."""
DEFAULT_SLICE_SPACING_MM: Final = 10.0
"""Slab of a single slice without SliceThickness (typical LGE spacing)."""


class QCCode:
    """Stable QC codes of the LGE analysis."""

    SLICE_NOT_SEGMENTED = "slice_not_segmented"
    SEGMENTATION_UNCERTAIN = "segmentation_uncertain"
    PIXEL_UNCERTAINTY_HIGH = "pixel_uncertainty_high"
    SCAR_OUTSIDE_MYOCARDIUM = "scar_outside_myocardium"
    LV_MASS_IMPLAUSIBLE = "lv_mass_implausible"
    POOR_NULLING = "poor_myocardial_nulling"
    INVERTED_NULLING = "myocardium_brighter_than_blood"
    METHODS_DISAGREE = "scar_methods_disagree"
    REMOTE_BORROWED = "remote_reference_borrowed"
    REMOTE_NOT_FOUND = "remote_reference_not_found"
    SINGLE_SLICE = "single_slice_volume"
    NO_SLICE_ANALYSED = "no_slice_analysed"
    MODEL_UNAVAILABLE = "trained_model_unavailable"
    NOT_PARALLEL_STACK = "not_parallel_stack"
    CONTRAST_ASSUMED = "contrast_assumed"
    BOTH_RECONSTRUCTIONS = "both_reconstructions_in_series"
    REPEATED_POSITION = "repeated_slice_position"
    CINE_FUSION = "cine_fusion"
    CINE_NOT_USED = "cine_not_used"
    FUSION_UNAVAILABLE = "fusion_model_unavailable"
    INFARCT_MODEL_UNUSABLE = "infarct_model_unusable"


class SegmentationMode(enum.StrEnum):
    """Which inputs segmented a slice (``extra["slices"][i]["mode"]``)."""

    LGE = "lge"
    """The LGE image alone (LGE-only network)."""
    LGE_CINE = "lge+cine"
    """The LGE image and the matched cine image (two-channel network)."""


COMPANION_CINE: Final = "cine"
"""Role of the study's short-axis cine series in ``options["companions"]``."""


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


class ScarMethod(enum.StrEnum):
    """How scar was delineated."""

    NETWORK = "network"
    NSD = "n-SD"
    FWHM = "FWHM"


SEGMENTS: Final[tuple[SegmentDefinition, ...]] = (
    codes.SEGMENT_LGE_MYOCARDIUM,
    codes.SEGMENT_SCAR,
    codes.SEGMENT_MVO,
    codes.SEGMENT_LV_BLOOD_POOL,
    codes.SEGMENT_RV_BLOOD_POOL,
)

_PSIR_TOKENS: Final = frozenset({"PSIR", "R_IR", "REAL", "PHASE_SENSITIVE", "PSMDE"})
_MAGNITUDE_TOKENS: Final = frozenset({"M", "MAG", "MAGNITUDE", "M_IR", "M_SE"})
_PSIR_NAME: Final = re.compile(r"psir|psmde|phase[ _-]?sens", re.IGNORECASE)
_MAGNITUDE_NAME: Final = re.compile(r"(?<![a-z])mag", re.IGNORECASE)


MAGNITUDE_ASSUMED: Final = (
    "no PSIR or magnitude marker in ImageType or names and no negative pixel: magnitude assumed"
)


def contrast_from_names(
    image_type: Sequence[str] | None, names: Sequence[str]
) -> tuple[LgeContrast | None, str]:
    """PSIR or magnitude from ImageType values and series names, or ``None`` if they don't say.

    Parameters
    ----------
    image_type
        ImageType values.
    names
        SeriesDescription, ProtocolName and similar texts.

    Returns
    -------
    tuple
        The contrast (``None`` when undecided) and the evidence, for the record.
    """
    tokens = {str(t).upper() for t in (image_type or ())}
    if tokens & _PSIR_TOKENS:
        return LgeContrast.PSIR, f"ImageType {'/'.join(sorted(tokens & _PSIR_TOKENS))}"
    description = " ".join(str(n) for n in names if n)
    if _PSIR_NAME.search(description) and not _MAGNITUDE_NAME.search(description):
        return LgeContrast.PSIR, f"series name {description.strip()!r}"
    if tokens & _MAGNITUDE_TOKENS or _MAGNITUDE_NAME.search(description):
        return LgeContrast.MAGNITUDE, "ImageType or series name marks magnitude"
    return None, "no PSIR or magnitude marker in ImageType or names"


def detect_contrast(series: LoadedSeries) -> tuple[LgeContrast, str]:
    """PSIR or magnitude from ImageType, names and pixel signs, with the evidence used."""
    image_type = series.header.get("ImageType") or (
        series.frames[0].attributes.get("ImageType") if series.frames else None
    )
    names = [str(series.header.get(k) or "") for k in ("SeriesDescription", "ProtocolName")]
    contrast, evidence = contrast_from_names(image_type, names)
    if contrast is LgeContrast.PSIR:
        return contrast, evidence
    if any(float(np.nanmin(f.pixels)) < 0.0 for f in series.frames):
        return LgeContrast.PSIR, "negative pixel values (signed real reconstruction)"
    if contrast is None:
        return LgeContrast.MAGNITUDE, MAGNITUDE_ASSUMED
    return contrast, evidence


@dataclass
class _Slice:
    index: int
    frame: SourceFrame
    labels: LabelImage
    uncertainty: float | None
    details: Mapping[str, Any]
    zero: float
    remote: RemoteReference | None = None
    scar: dict[ScarMethod, npt.NDArray[np.bool_]] | None = None
    mvo: dict[ScarMethod, npt.NDArray[np.bool_]] | None = None
    fwhm_threshold: float | None = None
    level: str = "unknown"
    mode: SegmentationMode = SegmentationMode.LGE
    cine: Mapping[str, Any] | None = None
    probabilities: Mapping[Label, FloatImage] = field(default_factory=dict)

    @property
    def pixel_area(self) -> float:
        return float(self.frame.pixel_spacing[0] * self.frame.pixel_spacing[1])

    @property
    def myocardium(self) -> npt.NDArray[np.bool_]:
        return np.isin(self.labels, MYOCARDIAL_LABELS)

    @property
    def lv_blood(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.labels == Label.LV_BLOOD_POOL)

    def area(self, mask: npt.NDArray[np.bool_]) -> float:
        return float(mask.sum()) * self.pixel_area


SAME_POSITION_MM: Final = 0.5
"""Frames closer than this along the stack normal are the same slice position."""


def stack_frames(series: LoadedSeries, prefer: LgeContrast) -> tuple[list[int], list[QCFlag]]:
    """The frames to analyse: one per position of the short-axis stack, base order by location.

    Frames of another orientation (long-axis views stored in the series) are left out; when a
    series holds both reconstructions (Philips stores PSIR and magnitude together) only the
    preferred one is kept; of repeated images at one position the last acquired is kept.
    """
    flags: list[QCFlag] = []
    normals = [f.normal for f in series.frames]
    groups: list[list[int]] = []
    for index, normal in enumerate(normals):
        for group in groups:
            if abs(float(np.dot(normals[group[0]], normal))) >= PARALLEL_COSINE:
                group.append(index)
                break
        else:
            groups.append([index])
    stack = max(groups, key=len)
    if len(stack) < len(series.frames):
        flags.append(QCFlag(
            QCCode.NOT_PARALLEL_STACK, Severity.INFO,
            f"{len(series.frames) - len(stack)} frame(s) are not parallel to the short-axis "
            "stack (long-axis views) and were not analysed.",
        ))
    kinds = {
        i: contrast_from_names(series.frames[i].attributes.get("ImageType"), [])[0]
        for i in stack
    }
    if {LgeContrast.PSIR, LgeContrast.MAGNITUDE} <= set(kinds.values()):
        kept = [i for i in stack if kinds[i] in (prefer, None)]
        flags.append(QCFlag(
            QCCode.BOTH_RECONSTRUCTIONS, Severity.INFO,
            f"The series holds PSIR and magnitude images; the {prefer.name} images were "
            f"analysed ({len(stack) - len(kept)} other frame(s) left out).",
        ))
        stack = kept
    by_position: dict[int, list[int]] = {}
    for i in stack:
        key = round(series.frames[i].slice_location / SAME_POSITION_MM)
        by_position.setdefault(key, []).append(i)
    chosen = []
    repeated = 0
    for indices in by_position.values():
        latest = max(indices, key=lambda i: (
            _number(series.frames[i].attributes.get("InstanceNumber")),
            series.frames[i].frame_number or 0,
        ))
        chosen.append(latest)
        repeated += len(indices) - 1
    if repeated:
        flags.append(QCFlag(
            QCCode.REPEATED_POSITION, Severity.INFO,
            f"{repeated} image(s) repeat a slice position; the last acquired of each position "
            "was analysed.",
        ))
    chosen.sort(key=lambda i: series.frames[i].slice_location)
    return chosen, flags


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _network_used(segmenter: LgeSegmenter, outputs: Iterable[SegmentationOutput]
                  ) -> tuple[LgeSegmenter, str | None]:
    """The network of a cascade (a segmenter with ``networks()``, as
    :mod:`models.lgeseg.cascade`) that segmented the stack and why it was chosen;
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


def _keep_wall_scar(labels: LabelImage) -> tuple[LabelImage, int]:
    """Labels with enhancement outside the main LV wall removed; and how many pixels were."""
    wall = np.isin(labels, MYOCARDIAL_LABELS)
    components, count = ndimage.label(wall)
    if count <= 1:
        return labels, 0
    sizes = ndimage.sum(wall, components, range(1, count + 1))
    main = components == (int(np.argmax(sizes)) + 1)
    outside = np.isin(labels, ENHANCED_LABELS) & ~main
    cleaned = labels.copy()
    cleaned[outside] = Label.BACKGROUND
    return cleaned, int(outside.sum())


def _slice_spacing(slices: Sequence[_Slice]) -> tuple[float, str]:
    locations = sorted({round(s.frame.slice_location, 1) for s in slices})
    if len(locations) >= 2:
        gaps = np.diff(locations)
        return float(np.median(gaps)), "median distance between slice centres"
    thickness = slices[0].frame.slice_thickness if slices else None
    if thickness:
        return float(thickness), "SliceThickness of the single slice"
    return DEFAULT_SLICE_SPACING_MM, "assumed (single slice without SliceThickness)"


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
    provenance = _provenance(segmenter, n_sd)
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
    analysed: list[_Slice] = []
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
        labels, outside = _keep_wall_scar(labels)
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
        analysed.append(_Slice(index, frame, labels, output.uncertainty, dict(output.details),
                               signal_zero(image, contrast), mode=mode, cine=cine_row,
                               probabilities=output.probabilities))
    used = [s for s in analysed if s.mode is SegmentationMode.LGE_CINE]
    flags.extend(_cine_flags(cine, analysed, len(stack)))
    provenance = _provenance(segmenter, n_sd, cine.segmenter if used else None,
                             (len(used), len(analysed) - len(used)),
                             None if chosen_because is None
                             else f"{_network_text(cascade)}: {chosen_because}")
    if not analysed:
        return _empty_result(series, flags, provenance, "no slice could be segmented", contrast)

    _quantify_slices(analysed, n_sd, flags)
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

    spacing_mm, spacing_source = _slice_spacing(analysed)
    if len({round(s.frame.slice_location, 1) for s in analysed}) < 2:
        flags.append(QCFlag(
            QCCode.SINGLE_SLICE, Severity.WARNING,
            f"Only one slice position: volumes and masses use a {spacing_mm:g} mm slab "
            f"({spacing_source}) and do not describe the whole LV.",
        ))
    totals = _totals(analysed, spacing_mm)
    flags.extend(_series_flags(analysed, totals))
    by_frame = {s.index: s for s in analysed}
    aha = _aha_block(divided, by_frame)
    found = _lesions(analysed, divided)
    classification = _classify(found, totals[ScarMethod.NETWORK]["percent"])
    withheld = next((f.message for f in flags if f.code == QCCode.INVERTED_NULLING), None)
    if withheld is not None:
        classification = {"present": None, "not_assessed_reason": withheld}

    slices = tuple(
        SliceResult(
            frame_index=s.index,
            labels=s.labels,
            measurements=_withheld(_slice_measurements(s), withheld),
            level=s.level,
            analysed_region=s.remote.mask if s.remote is not None else None,
            probabilities=s.probabilities,
        )
        for s in analysed
    )
    measurements = _withheld((*_series_measurements(totals), *_segment_measurements(aha)),
                             withheld)
    extra: dict[str, Any] = {
        "display_name": "LGE scar",
        "shaded_region": f"remote myocardium (reference of the {n_sd:g}-SD threshold)",
        "slices": [_slice_row(s, spacing_mm) for s in analysed],
        "lge": {
            "contrast": str(contrast),
            "contrast_evidence": evidence,
            "n_sd": n_sd,
            "slice_spacing_mm": round(spacing_mm, 2),
            "slice_spacing_source": spacing_source,
            "myocardial_density_g_per_ml": MYOCARDIAL_DENSITY_G_PER_ML,
            "methods": {str(m): _rounded(v) for m, v in totals.items()},
            "presence_percent": PRESENCE_PERCENT,
            **classification,
            "lesions": [_lesion_row(lesion) for lesion in found],
            "cine": _cine_summary(cine, analysed),
            "networks": _networks(segmenter, cine.segmenter, analysed),
        },
    }
    if aha is not None:
        extra["aha"] = aha
    infarct = _infarct(found, totals, spacing_mm, aha, flags, withheld, len(analysed))
    combined = _combined_infarct(options, totals, analysed, spacing_mm, withheld, flags)
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


def _combined_infarct(options: Mapping[str, Any],
                      totals: Mapping[ScarMethod, Mapping[str, float]],
                      analysed: Sequence[_Slice], spacing_mm: float, withheld: str | None,
                      flags: list[QCFlag]) -> dict[str, Any]:
    """The site model's probability of infarction from the clinical variables and the image
    features (``options["infarct_model"]``, ``options["clinical"]``), or why there is none."""
    from plugins.lge.clinical import ClinicalVariables
    from plugins.lge.infarct_model import (
        CLINICAL_FEATURES,
        NO_MODEL_MESSAGE,
        InfarctModel,
        InfarctModelError,
        combined_probability,
        load_infarct_model,
    )

    configured = options.get("infarct_model")
    if not configured:
        return {"available": False, "configured": False, "reason": NO_MODEL_MESSAGE}
    if options.get("clinical_error"):
        return {"available": False, "configured": True,
                "reason": f"The study's clinical variables were refused "
                          f"({options['clinical_error']}): the infarct call is from the images "
                          "alone."}
    clinical = options.get("clinical")
    if isinstance(clinical, ClinicalVariables):
        clinical = clinical.features()
    if not isinstance(clinical, Mapping) or not clinical:
        return {"available": False, "configured": True,
                "reason": "No clinical variables supplied for the study: the infarct call is "
                          "from the images alone."}
    if withheld is not None:
        return {"available": False, "configured": True,
                "reason": f"Image features withheld: {withheld}"}
    net = totals[ScarMethod.NETWORK]
    values = {
        "scar_percent": net["percent"],
        "enhanced_volume_ml": net["scar_volume_ml"],
        "myocardium_volume_ml": net["myocardium_volume_ml"],
        "lv_volume_ml": sum(s.area(s.lv_blood) for s in analysed) * spacing_mm / 1000.0,
    }
    try:
        unknown = sorted(str(k) for k in clinical if str(k) not in CLINICAL_FEATURES)
        if unknown:
            raise InfarctModelError(f"unknown clinical variable(s) {', '.join(unknown)}; "
                                    f"known: {', '.join(CLINICAL_FEATURES)}")
        values |= {str(k): float(v) for k, v in clinical.items()}
        model = configured if isinstance(configured, InfarctModel) \
            else load_infarct_model(str(configured))
        result = combined_probability(model, values)
    except (InfarctModelError, TypeError, ValueError) as exc:
        flags.append(QCFlag(QCCode.INFARCT_MODEL_UNUSABLE, Severity.WARNING,
                            f"The site infarct model could not be applied: {exc}"))
        return {"available": False, "configured": True, "reason": str(exc)}
    return {**result.as_json(), "configured": True,
            "clinical_source": options.get("clinical_source")}


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


def _quantify_slices(analysed: Sequence[_Slice], n_sd: float, flags: list[QCFlag]) -> None:
    for item in analysed:
        item.remote = remote_reference(
            np.asarray(item.frame.pixels, dtype=np.float32), item.labels, item.frame.pixel_spacing
        )
    pooled = [s.remote for s in analysed if s.remote is not None]
    for item in analysed:
        image = np.asarray(item.frame.pixels, dtype=np.float32)
        spacing = item.frame.pixel_spacing
        myo, blood = item.myocardium, item.lv_blood
        network = np.isin(item.labels, ENHANCED_LABELS)
        network_mvo = np.asarray(item.labels == Label.MVO)
        remote = item.remote
        if remote is None and pooled:
            remote = min(pooled, key=lambda r: abs(r.mean - float(np.median(image[myo]))))
            flags.append(QCFlag(
                QCCode.REMOTE_BORROWED, Severity.INFO,
                "Too little unenhanced myocardium on this slice for a remote reference; the "
                "closest reference of another slice was used for n-SD.",
                frame_index=item.index,
            ))
        if remote is None:
            flags.append(QCFlag(
                QCCode.REMOTE_NOT_FOUND, Severity.WARNING,
                "No remote myocardium on any slice: the n-SD method could not be applied here.",
                frame_index=item.index,
            ))
            nsd = np.zeros_like(myo)
            nsd_mvo = np.zeros_like(myo)
        else:
            nsd, nsd_mvo = nsd_scar(image, myo, blood, remote, n_sd, spacing)
        fwhm, fwhm_mvo, threshold = fwhm_scar(
            image, myo, blood, network | nsd, item.zero, spacing,
            floor=None if remote is None else remote.mean + FWHM_FLOOR_SD * remote.sd,
        )
        # MVO is not enhanced, so no threshold sees it; readers add it to the scar by hand.
        nsd_mvo, fwhm_mvo = nsd_mvo | (network_mvo & ~nsd), fwhm_mvo | (network_mvo & ~fwhm)
        nsd, fwhm = nsd | nsd_mvo, fwhm | fwhm_mvo
        item.scar = {ScarMethod.NETWORK: network | network_mvo, ScarMethod.NSD: nsd,
                     ScarMethod.FWHM: fwhm}
        item.mvo = {ScarMethod.NETWORK: network_mvo, ScarMethod.NSD: nsd_mvo,
                    ScarMethod.FWHM: fwhm_mvo}
        item.fwhm_threshold = threshold


def _totals(analysed: Sequence[_Slice], spacing_mm: float) -> dict[ScarMethod, dict[str, float]]:
    myo_ml = sum(s.area(s.myocardium) for s in analysed) * spacing_mm / 1000.0
    totals: dict[ScarMethod, dict[str, float]] = {}
    for method in ScarMethod:
        scar_ml = sum(s.area(s.scar[method]) for s in analysed if s.scar) * spacing_mm / 1000.0
        mvo_ml = sum(s.area(s.mvo[method]) for s in analysed if s.mvo) * spacing_mm / 1000.0
        totals[method] = {
            "myocardium_volume_ml": myo_ml,
            "myocardium_mass_g": myo_ml * MYOCARDIAL_DENSITY_G_PER_ML,
            "scar_volume_ml": scar_ml,
            "scar_mass_g": scar_ml * MYOCARDIAL_DENSITY_G_PER_ML,
            "percent": 100.0 * scar_ml / myo_ml if myo_ml > 0 else 0.0,
            "mvo_mass_g": mvo_ml * MYOCARDIAL_DENSITY_G_PER_ML,
            "mvo_percent": 100.0 * mvo_ml / myo_ml if myo_ml > 0 else 0.0,
        }
    return totals


def _nulling_ratio(analysed: Sequence[_Slice]) -> float | None:
    """Median over slices of remote-myocardium over LV blood-pool signal (above zero signal)."""
    ratios = []
    for s in analysed:
        blood = s.lv_blood
        if s.remote is None or not blood.any():
            continue
        blood_signal = float(np.median(s.frame.pixels[blood])) - s.zero
        if blood_signal > 0:
            ratios.append((s.remote.mean - s.zero) / blood_signal)
    return float(np.median(ratios)) if ratios else None


def _withheld(measurements: Sequence[Measurement], reason: str | None
              ) -> tuple[Measurement, ...]:
    """``measurements`` with every scar and MVO value removed and ``reason`` given instead."""
    if reason is None:
        return tuple(measurements)
    return tuple(
        replace(m, value=None, reason=reason)
        if m.region in (Label.SCAR, Label.MVO) else m
        for m in measurements)


def _series_flags(analysed: Sequence[_Slice],
                  totals: Mapping[ScarMethod, Mapping[str, float]]) -> list[QCFlag]:
    flags: list[QCFlag] = []
    mass = totals[ScarMethod.NETWORK]["myocardium_mass_g"]
    low, high = LV_MASS_PLAUSIBLE_G
    if len(analysed) >= 3 and not low <= mass <= high:
        flags.append(QCFlag(
            QCCode.LV_MASS_IMPLAUSIBLE, Severity.WARNING,
            f"LV myocardial mass {mass:.0f} g is outside {low:.0f}-{high:.0f} g: check coverage "
            "and contours.",
        ))
    ratio = _nulling_ratio(analysed)
    if ratio is not None and ratio > INVERTED_NULLING_RATIO:
        flags.append(QCFlag(
            QCCode.INVERTED_NULLING, Severity.FAILURE,
            f"Remote myocardium is {100 * ratio:.0f} % of the blood-pool signal, brighter than "
            "the blood: the inversion time was far from the myocardial null, or the whole "
            "myocardium enhances (e.g. cardiac amyloidosis). Scar has no contrast against "
            "such myocardium, so scar extent is not reported.",
        ))
    elif ratio is not None and ratio > MAX_NULLING_RATIO:
        flags.append(QCFlag(
            QCCode.POOR_NULLING, Severity.WARNING,
            f"Remote myocardium is {100 * ratio:.0f} % of the blood-pool "
            f"signal (nulled myocardium: < {100 * MAX_NULLING_RATIO:.0f} %): the inversion time "
            "was probably wrong; threshold methods may underestimate scar.",
        ))
    percents = [totals[m]["percent"] for m in ScarMethod]
    if max(percents) - min(percents) > MAX_METHOD_SPREAD_POINTS:
        text = ", ".join(f"{m} {totals[m]['percent']:.1f} %" for m in ScarMethod)
        flags.append(QCFlag(
            QCCode.METHODS_DISAGREE, Severity.WARNING,
            f"Scar extent differs between methods by more than {MAX_METHOD_SPREAD_POINTS:g} "
            f"points ({text}): review the scar contours.",
        ))
    return flags


def _aha_block(divided: Sequence[SliceSegments],
               by_frame: Mapping[int, _Slice]) -> dict[str, Any] | None:
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


def _lesions(analysed: Sequence[_Slice], divided: Sequence[SliceSegments]) -> list[Lesion]:
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


def _classify(found: Sequence[Lesion], percent: float) -> dict[str, Any]:
    """Location, pattern and septal mid-wall LGE from the lesions."""
    if percent < PRESENCE_PERCENT or not found:
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


def _measurement(key: str, name: Code, value: float | None, unit: Code, region: Label,
                 site: Code | None = None, digits: int = 1) -> Measurement:
    return Measurement(key=key, name=name, value=None if value is None else round(value, digits),
                       unit=unit, region=region, site=site)


def _series_measurements(totals: Mapping[ScarMethod, Mapping[str, float]]) -> list[Measurement]:
    net = totals[ScarMethod.NETWORK]
    return [
        _measurement("lv_myocardium_volume_ml", codes.VOLUME, net["myocardium_volume_ml"],
                     codes.UCUM_MILLILITER, Label.MYOCARDIUM),
        _measurement("lv_myocardium_mass_g", codes.MASS, net["myocardium_mass_g"],
                     codes.UCUM_GRAM, Label.MYOCARDIUM),
        _measurement("scar_volume_ml", codes.VOLUME, net["scar_volume_ml"],
                     codes.UCUM_MILLILITER, Label.SCAR, digits=2),
        _measurement("scar_mass_g", codes.MASS, net["scar_mass_g"], codes.UCUM_GRAM, Label.SCAR,
                     digits=2),
        _measurement("scar_percent_lv_mass", codes.SCAR_EXTENT, net["percent"],
                     codes.UCUM_PERCENT, Label.SCAR),
        _measurement("scar_percent_lv_mass_nsd", codes.SCAR_EXTENT_NSD,
                     totals[ScarMethod.NSD]["percent"], codes.UCUM_PERCENT, Label.SCAR),
        _measurement("scar_percent_lv_mass_fwhm", codes.SCAR_EXTENT_FWHM,
                     totals[ScarMethod.FWHM]["percent"], codes.UCUM_PERCENT, Label.SCAR),
        _measurement("mvo_mass_g", codes.MASS, net["mvo_mass_g"], codes.UCUM_GRAM, Label.MVO,
                     digits=2),
        _measurement("mvo_percent_lv_mass", codes.MVO_EXTENT, net["mvo_percent"],
                     codes.UCUM_PERCENT, Label.MVO),
    ]


def _segment_measurements(aha: Mapping[str, Any] | None) -> list[Measurement]:
    if aha is None:
        return []
    found: list[Measurement] = []
    for number, item in aha["segments"].items():
        site = codes.AHA_SEGMENT_SITES[int(number)]
        found.append(_measurement(f"segment_{number}_scar_percent", codes.AREA_FRACTION,
                                  item["scar_percent"], codes.UCUM_PERCENT, Label.SCAR, site))
        found.append(_measurement(
            f"segment_{number}_max_transmurality_percent", codes.MAX_TRANSMURALITY,
            item["max_transmurality_percent"], codes.UCUM_PERCENT, Label.SCAR, site))
    return found


def _slice_measurements(s: _Slice) -> tuple[Measurement, ...]:
    assert s.scar is not None
    myo = s.area(s.myocardium)
    scar = s.area(s.scar[ScarMethod.NETWORK])
    wall = _measurement("myocardium_area_mm2", codes.AREA, myo, codes.UCUM_SQUARE_MILLIMETER,
                        Label.MYOCARDIUM)
    if scar == 0.0:  # nothing to outline; results.json still lists the zero
        return (wall,)
    return (
        wall,
        _measurement("scar_area_mm2", codes.AREA, scar, codes.UCUM_SQUARE_MILLIMETER,
                     Label.SCAR),
        _measurement("scar_percent_of_slice", codes.AREA_FRACTION,
                     100.0 * scar / myo if myo else None, codes.UCUM_PERCENT, Label.SCAR),
    )


def _slice_row(s: _Slice, spacing_mm: float) -> dict[str, Any]:
    assert s.scar is not None and s.mvo is not None
    return {
        "frame_index": s.index,
        "sop_instance_uid": s.frame.sop_instance_uid,
        "frame_number": s.frame.frame_number,
        "slice_location_mm": round(s.frame.slice_location, 2),
        "level": s.level,
        "mode": str(s.mode),
        "cine": dict(s.cine) if s.cine is not None else None,
        "myocardium_area_mm2": round(s.area(s.myocardium), 1),
        "lv_blood_pool_area_mm2": round(s.area(s.lv_blood), 1),
        "scar_area_mm2": {str(m): round(s.area(v), 1) for m, v in s.scar.items()},
        "mvo_area_mm2": {str(m): round(s.area(v), 1) for m, v in s.mvo.items()},
        "slab_mm": round(spacing_mm, 2),
        "signal_zero": s.zero,
        "remote": None if s.remote is None else {
            "mean": round(s.remote.mean, 2), "sd": round(s.remote.sd, 2),
            "pixels": int(s.remote.mask.sum()),
            "arc_deg": [round(a, 1) for a in s.remote.arc_deg],
        },
        "fwhm_threshold": None if s.fwhm_threshold is None else round(s.fwhm_threshold, 2),
        "segmentation_uncertainty": None if s.uncertainty is None else round(s.uncertainty, 3),
        "segmenter": dict(s.details),
    }


def _lesion_row(lesion: Lesion) -> dict[str, Any]:
    return {
        "frame_index": lesion.frame_index,
        "area_mm2": round(lesion.area_mm2, 1),
        "layer": str(lesion.layer),
        "segments": {str(k): v for k, v in sorted(lesion.segments.items())},
        "septal_fraction": None if lesion.septal_fraction is None
        else round(lesion.septal_fraction, 2),
        "at_rv_insertion": lesion.at_insertion,
    }


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in values.items()}


def _network_text(segmenter: LgeSegmenter) -> str:
    text = f"{segmenter.name} {segmenter.version}"
    if segmenter.weights_sha256:
        text += f" (weights sha256 {segmenter.weights_sha256})"
    return text


def _provenance(segmenter: LgeSegmenter, n_sd: float, fusion: LgeSegmenter | None = None,
                counts: tuple[int, int] = (0, 0), chosen_by: str | None = None) -> Provenance:
    """The method record; with ``fusion`` (used on ``counts[0]`` slices, the LGE-only
    segmenter on ``counts[1]``) both networks are named and the fusion network is the model;
    ``chosen_by`` says which cascade chose the LGE-only network and why."""
    if fusion is None:
        segmentation = f"LV myocardium, scar and MVO by {segmenter.name} {segmenter.version}"
        if chosen_by:
            segmentation += f" (chosen by {chosen_by})"
    else:
        with_cine, alone = counts
        segmentation = (
            f"LV myocardium, scar and MVO by {_network_text(fusion)} from the LGE and the "
            f"matched cine image on {with_cine} slice(s)"
        )
        if alone:
            segmentation += f" and by {_network_text(segmenter)} from the LGE alone on {alone}"
    method = (
        f"{segmentation}; scar also by "
        f"{n_sd:g}-SD over automatically found remote myocardium and by FWHM; volumes from slice "
        f"areas x spacing between slices; mass at {MYOCARDIAL_DENSITY_G_PER_ML} g/ml."
    )
    model = fusion if fusion is not None else segmenter
    if model.weights_sha256 is None:
        return Provenance(ALGORITHM_NAME, VERSION, method)
    return Provenance(ALGORITHM_NAME, VERSION, method, model_name=model.name,
                      model_version=model.version, model_sha256=model.weights_sha256)


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
    localises the heart per stack (``segment_stack``, as :mod:`models.lgeseg.two_stage`), with
    the frames' ImagePositionPatient / ImageOrientationPatient placing the slices; else
    empty (each slice is then segmented alone)."""
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


def _cine_flags(cine: _CineContext, analysed: Sequence[_Slice], n_stack: int
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


def _cine_summary(cine: _CineContext, analysed: Sequence[_Slice]) -> dict[str, Any]:
    used = sum(s.mode is SegmentationMode.LGE_CINE for s in analysed)
    return {
        "series_instance_uid": cine.series_uid,
        "slices_with_cine": used,
        "slices_lge_only": len(analysed) - used,
        "reason": cine.reason,
    }


def _networks(segmenter: LgeSegmenter, fusion: LgeSegmenter | None,
              analysed: Sequence[_Slice]) -> list[dict[str, Any]]:
    """Name, version, weights hash and slice count of each network that segmented slices."""
    rows = []
    for mode, network in ((SegmentationMode.LGE, segmenter),
                          (SegmentationMode.LGE_CINE, fusion)):
        count = sum(s.mode is mode for s in analysed)
        if network is None or not count:
            continue
        rows.append({"mode": str(mode), "name": network.name, "version": network.version,
                     "weights_sha256": network.weights_sha256, "slices": count})
    return rows


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

