"""Types shared by every analysis plugin: what a plugin receives and what it returns.

An analysis plugin is a pure function ``analyse(series: LoadedSeries, options) ->
AnalysisResult``.  It opens no file or socket and writes no DICOM.  The node loads the series
(``node.inputs.loader``), calls the plugin, then hands the result to the writers (SEG, SR, summary
image) and to ``results.json``.

Coordinates: every 2-D array is indexed ``[row, column]`` exactly as the source image's pixel
data, so a mask can be written on the source frame without resampling.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

FloatImage = npt.NDArray[np.float32]
LabelImage = npt.NDArray[np.uint8]


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


UNWRITTEN_SOP_INSTANCE_UID: Final = "unwritten-derived-object"
"""``sop_instance_uid`` of the frames of an object a plugin derives for the node to write
(e.g. the T1 maps fitted from MOLLI source images).

The node's writer gives that object its Series and SOP Instance UIDs (new ones for each
analysis generation) and keeps the frame numbers the plugin gave; wherever the result names
such a frame, the node names the written object instead.  Not a DICOM UID, so no archive,
viewer or ``results.json`` reader can mistake it for the identity of a stored object.
"""


@dataclass(frozen=True)
class SourceFrame:
    """One 2-D image of a series, in physical units, with its geometry.

    Attributes
    ----------
    pixels
        Values in ``units`` (for a T1 map: milliseconds), float32, shape (rows, columns).
        Rescale slope/intercept or real-world value mapping already applied.
    sop_instance_uid, sop_class_uid
        Identify the stored instance the frame comes from
        (:data:`UNWRITTEN_SOP_INSTANCE_UID` for a frame of an object the node has yet to
        write).
    frame_number
        1-based frame number inside a multi-frame instance, ``None`` for single-frame.
    image_position
        ImagePositionPatient of the first pixel (mm).
    image_orientation
        ImageOrientationPatient: row direction cosines then column direction cosines.
    pixel_spacing
        (spacing between rows, spacing between columns) in mm, as DICOM PixelSpacing.
    slice_thickness
        SliceThickness in mm, if present.
    units
        UCUM code of ``pixels`` ("ms" for T1 maps, "1" for unitless signal).
    attributes
        Per-frame header facts a plugin may use (InversionTime, TriggerTime, EchoTime,
        ImageType, InstanceNumber, ...), keyed by DICOM keyword.
    """

    pixels: FloatImage
    sop_instance_uid: str
    sop_class_uid: str
    frame_number: int | None
    image_position: tuple[float, float, float]
    image_orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    slice_thickness: float | None
    units: str
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        """Unit normal of the image plane (row cosines x column cosines)."""
        row = np.asarray(self.image_orientation[:3], dtype=np.float64)
        col = np.asarray(self.image_orientation[3:], dtype=np.float64)
        n = np.cross(row, col)
        return n / np.linalg.norm(n)

    @property
    def slice_location(self) -> float:
        """Position of the plane along its own normal (mm)."""
        return float(np.dot(self.normal, np.asarray(self.image_position, dtype=np.float64)))


class ContrastPhase(enum.StrEnum):
    """Whether a series was acquired before or after a gadolinium contrast agent."""

    NATIVE = "native"
    POST_CONTRAST = "post_contrast"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Acquisition:
    """What the node learnt about how a series was acquired, from the vendor's header.

    Filled by the node (``node.vendor``) from standard and private attributes; an analysis
    uses it to choose a matching reference range and to name the sequence in its outputs.
    Every field may be unknown: a value is never guessed.

    Attributes
    ----------
    vendor
        Normalised manufacturer: "siemens", "philips", "ge", "canon", "united_imaging" or
        "unknown".
    sequence_family
        Normalised sequence family ("molli", "shmolli", "sasha", "smart1map",
        "look_locker", "ir_gre_lge", "ir_tfe_lge", "psir", "bssfp_cine", "perfusion",
        "t2_prep", ...) or "unknown".
    field_strength_t
        Nominal field strength rounded to the usual values (1.5, 3.0 ...), ``None`` if unknown.
    contrast
        Native or post-contrast, when the header tells.
    evidence
        Short human-readable statements of the header facts each field was derived from.
    """

    vendor: str = "unknown"
    sequence_family: str = "unknown"
    field_strength_t: float | None = None
    contrast: ContrastPhase = ContrastPhase.UNKNOWN
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedSeries:
    """A complete series as a plugin sees it.

    Attributes
    ----------
    study_instance_uid, series_instance_uid
        The input identifiers.
    frames
        The series' 2-D frames, sorted by ``slice_location`` (ascending), then by
        InstanceNumber.
    header
        Series-level facts by DICOM keyword (Modality, Manufacturer,
        MagneticFieldStrength, SeriesDescription, ProtocolName, ImageType,
        ContrastBolusAgent, ...).
    acquisition
        Vendor, sequence family, field strength and contrast phase as the node read them
        from the header (all unknown when the series was built without the node).
    """

    study_instance_uid: str
    series_instance_uid: str
    frames: tuple[SourceFrame, ...]
    header: Mapping[str, Any]
    acquisition: Acquisition = field(default_factory=Acquisition)

    @property
    def field_strength_t(self) -> float | None:
        """MagneticFieldStrength in tesla, if the header has it."""
        value = self.header.get("MagneticFieldStrength")
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """A coded concept (value, scheme designator, meaning), e.g. SNOMED CT or DCM."""

    value: str
    scheme: str
    meaning: str


class Label(enum.IntEnum):
    """Values of the label images a plugin returns. 0 is always background."""

    BACKGROUND = 0
    LV_BLOOD_POOL = 1
    MYOCARDIUM = 2
    RV_BLOOD_POOL = 3
    SCAR = 4
    MVO = 5


@dataclass(frozen=True)
class SegmentDefinition:
    """How one label value is written as a DICOM SEG segment."""

    label: Label
    name: str
    category: Code
    property_type: Code
    colour_rgb: tuple[int, int, int]
    anatomic_region: Code | None = None
    includes: tuple[Label, ...] = ()
    """Further label values that belong to this segment (the LV myocardium of an LGE result
    includes its scar and MVO), so segments may overlap as they do for a reader."""

    def mask(self, labels: LabelImage) -> npt.NDArray[np.bool_]:
        """The pixels of ``labels`` that belong to this segment."""
        return np.isin(labels, (int(self.label), *(int(v) for v in self.includes)))


class Severity(enum.StrEnum):
    """How strongly a quality-control flag should temper trust in a value."""

    INFO = "info"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True)
class QCFlag:
    """A quality-control finding attached to a result or one slice of it.

    Attributes
    ----------
    code
        Stable machine-readable identifier, e.g. ``"t1_out_of_range"``.
    severity
        ``FAILURE`` means the value it concerns should not be used.
    message
        One sentence a reader understands.
    frame_index
        Index into ``LoadedSeries.frames`` when the flag concerns one slice.
    """

    code: str
    severity: Severity
    message: str
    frame_index: int | None = None


@dataclass(frozen=True)
class Measurement:
    """One number with its meaning.

    Attributes
    ----------
    name
        Concept measured (e.g. DCM "T1" or a local code), written as the SR concept name.
    value
        The number; ``None`` when it could not be measured (``reason`` says why).
    unit
        UCUM unit (code value = ``unit.value``), e.g. ``Code("ms", "UCUM", "millisecond")``.
    region
        Label of the region measured (myocardium, LV blood pool, ...).
    derivation
        Statistic, e.g. DCM 121401 "Mean", 209942 "Median", 386136009 "Standard Deviation".
    key
        Stable key used in ``results.json`` (e.g. ``"myocardium_t1_mean_ms"``).
    reason
        Why ``value`` is ``None``.
    site
        Part of the region the value concerns, e.g. an AHA segment (CID 3717), written as
        the SR finding site; ``None`` for the whole region.
    """

    key: str
    name: Code
    value: float | None
    unit: Code
    region: Label
    derivation: Code | None = None
    reason: str | None = None
    site: Code | None = None


@dataclass(frozen=True)
class SliceResult:
    """What a plugin found on one frame.

    Attributes
    ----------
    frame_index
        Index into ``LoadedSeries.frames``.
    labels
        Label image (``Label`` values), same shape as the frame.
    measurements
        Per-slice values (mean, median, SD of myocardial T1, blood-pool T1, areas ...).
    level
        "basal", "mid", "apical" or "unknown" for short axis; "4ch" etc. for long axis.
    analysed_region
        Optional mask (bool, same shape) of the pixels the myocardial statistics used
        (the conservative core), for display and audit.
    probabilities
        The segmenter's per-pixel probabilities (see :attr:`SegmentationOutput.probabilities`);
        empty when the method gives none.
    """

    frame_index: int
    labels: LabelImage
    measurements: tuple[Measurement, ...]
    level: str = "unknown"
    analysed_region: npt.NDArray[np.bool_] | None = None
    probabilities: Mapping[Label, FloatImage] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """What produced a result; written into every output.

    Attributes
    ----------
    algorithm_name, algorithm_version
        The analysis (e.g. ``"cmr-node t1map"``, ``"0.1.0"``).
    method
        One or two sentences describing how the segmentation and values were obtained.
    model_name, model_version, model_sha256
        The network weights used, or ``None`` for a classical method (then
        ``model_sha256`` is ``None`` and ``method`` says so).
    """

    algorithm_name: str
    algorithm_version: str
    method: str
    model_name: str | None = None
    model_version: str | None = None
    model_sha256: str | None = None


@dataclass(frozen=True)
class Finding:
    """A coded qualitative finding about the whole study (e.g. myocardial infarct present).

    Written as a TID 1501 group of qualitative evaluations in the summary SR.

    Attributes
    ----------
    key
        Stable key (the ``extra`` entry of ``results.json`` holding the details).
    concept, value
        What was assessed and the answer (e.g. SCT 22298006 "Myocardial infarction",
        SCT 52101004 "Present").
    summary
        One line a reader understands.
    qualifiers
        Further coded (concept, value) pairs: pattern, territory, certainty.
    evidence
        Sentences giving the facts the finding rests on.
    measurements
        The numbers it rests on.
    """

    key: str
    concept: Code
    value: Code
    summary: str
    qualifiers: tuple[tuple[Code, Code], ...] = ()
    evidence: tuple[str, ...] = ()
    measurements: tuple[Measurement, ...] = ()


DISCLAIMER = (
    "Research software: not for diagnostic use until validated by the site. "
    "Automatically generated; review contours before relying on values."
)


@dataclass(frozen=True)
class AnalysisResult:
    """The complete outcome of one analysis of one series.

    Attributes
    ----------
    analysis
        Plugin name (``"t1map"``, ``"lge"``).
    series_instance_uid
        The input series.
    segments
        Segment definitions for every label value used in the slices' label images.
    slices
        One entry per analysed frame (frames not analysed are absent and flagged).
    measurements
        Series-level values (global mean T1, %scar ...).
    qc_flags
        All flags, series-level and per slice.
    provenance
        Algorithm, version, weights hash.
    extra
        JSON-serialisable details for ``results.json`` (per-segment tables etc.).
    findings
        Coded study-level findings.
    """

    analysis: str
    series_instance_uid: str
    segments: tuple[SegmentDefinition, ...]
    slices: tuple[SliceResult, ...]
    measurements: tuple[Measurement, ...]
    qc_flags: tuple[QCFlag, ...]
    provenance: Provenance
    extra: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    """Coded study-level findings (e.g. the LGE infarct call)."""

    @property
    def has_failure(self) -> bool:
        """Whether any QC flag has FAILURE severity."""
        return any(flag.severity is Severity.FAILURE for flag in self.qc_flags)


@dataclass(frozen=True)
class SegmentationOutput:
    """What a segmenter returns for one slice.

    Attributes
    ----------
    labels
        Label image (:class:`Label` values: LV blood pool, myocardium, RV blood pool when
        found, and for LGE scar and MVO), same shape as the input image.
    uncertainty
        Optional scalar in [0, 1] for the slice (0 confident, 1 no evidence).
    reason
        Why nothing was segmented, if ``labels`` holds no myocardium.
    details
        JSON-serialisable facts about how the segmentation was found (for audit).
    probabilities
        Per-pixel probability, in [0, 1] and float32 on the source grid, that a pixel belongs
        to the region of a label together with the labels its segment includes
        (``Label.MYOCARDIUM``: myocardium, scar or MVO; ``Label.SCAR``: scar or MVO), as the
        network gave it before post-processing.  Empty for methods without probabilities
        and for slices not segmented (``reason`` set).
    """

    labels: LabelImage
    uncertainty: float | None = None
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    probabilities: Mapping[Label, FloatImage] = field(default_factory=dict)


class AnalysisError(Exception):
    """The series cannot be analysed; the message is a reason a person understands."""


def injected(options: Mapping[str, Any], key: str, what: str) -> Any:
    """The object the caller gave as ``options[key]``: a segmentation network, which an
    analysis never builds itself (the node builds it from the site's settings,
    :mod:`node.analyses`, and tests give their own).

    Parameters
    ----------
    options
        The analysis's options.
    key
        The option holding the object.
    what
        What the object is, for the error message (e.g. "the LV segmenter").

    Raises
    ------
    AnalysisError
        When the option is missing, or holds a name instead of an object.
    """
    value = options.get(key)
    if value is None or isinstance(value, str):
        given = "missing" if value is None else f"the name {value!r}, not an object"
        raise AnalysisError(
            f"options[{key!r}] is {given}: {what} is given by the caller (the node builds it"
            " from the site's settings in node.analyses)"
        )
    return value


class AnalysisPlugin(Protocol):
    """What the node needs from an analysis plugin module."""

    NAME: str
    VERSION: str

    def analyse(self, series: LoadedSeries, options: Mapping[str, Any]) -> AnalysisResult:
        """Analyse a complete series; raise ``AnalysisError`` with a reason if impossible."""
        ...


def frames_by_location(frames: Sequence[SourceFrame]) -> list[int]:
    """Indices of ``frames`` sorted by slice location along the first frame's normal."""
    if not frames:
        return []
    normal = frames[0].normal
    locations = [float(np.dot(normal, np.asarray(f.image_position))) for f in frames]
    return sorted(range(len(frames)), key=lambda i: locations[i])
