"""Writers: turn an :class:`~plugins.api.AnalysisResult` into DICOM objects for PACS.

:func:`build_outputs` is the only entry point the node needs.  It returns, for one result,

``seg``
    a DICOM Segmentation (binary, one segment per label used) on the source images,
``seg-probability``
    when enabled (``[outputs] probability_seg``) and the segmenter gave them, a FRACTIONAL
    Segmentation of the per-pixel probabilities (myocardium, scar) on the same images,
``parametric-map-uncertainty``
    when enabled (``[outputs] uncertainty_map``), a Parametric Map of the per-pixel
    uncertainty (binary entropy of those probabilities),
``sr``
    a TID 1500 Measurement Report with one planar ROI (TID 1410) per analysed slice and region,
    each with its contour drawn on the source image, so that viewers such as OHIF show it,
``sr-summary``
    a TID 1500 Measurement Report with the series-level values per SEG segment (TID 1411),
    the quality-control flags, the method and the disclaimer,
``summary-image``
    a Secondary Capture page (RGB, burned-in text) for viewers that show neither SEG nor SR.

Every object belongs to the input study, is its own series with deterministic UIDs
(:mod:`node.outputs.uids`: new ones for each analysis generation, see :class:`Lineage`), names the
algorithm, its version and weights, and says it is not for diagnostic use.
"""

from __future__ import annotations

import enum
import importlib.metadata
import logging
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from node.outputs.uids import DerivedObjectIdentity, content_digest, derived_object_identity
from plugins.api import AnalysisResult, Code, LoadedSeries, Provenance

logger = logging.getLogger(__name__)

__all__ = [
    "Lineage",
    "OptionalKind",
    "OutputKind",
    "OutputObject",
    "WriterError",
    "WriterSettings",
    "build_outputs",
    "package_version",
]

DISTRIBUTION_NAME = "cmr-node"
"""Name of the distribution whose version is written as SoftwareVersions."""

UNKNOWN_VERSION = "unknown"

MAX_SERIES_NUMBER = 2**31 - 1
"""Largest value of an IS attribute such as SeriesNumber."""

PROCEDURE_CARDIAC_MRI = Code("241620005", "SCT", "Magnetic resonance imaging of heart")
"""Default procedure reported in the SRs (CID 100 accepts SNOMED CT imaging procedures)."""

FAMILY_ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")
"""Algorithm family (CID 7162) of a method that uses network weights."""

FAMILY_MORPHOLOGICAL_OPERATIONS = Code("123104", "DCM", "Morphological Operations")
"""Algorithm family (CID 7162) assumed for a classical method unless the result says otherwise."""

SHORT_DISCLAIMER = "Research software: not for diagnostic use until site-validated"
"""The disclaimer cut to fit a 64-character (LO) attribute such as ContentDescription."""

CLASSICAL_METHOD = "classical"


class WriterError(Exception):
    """The result cannot be written as DICOM; the message says why."""


class OutputKind(enum.StrEnum):
    """The kinds of object built for one result."""

    SEG = "seg"
    SR = "sr"
    SR_SUMMARY = "sr-summary"
    SUMMARY_IMAGE = "summary-image"


class OptionalKind(enum.StrEnum):
    """Kinds of object built for a result only when the site enables them."""

    SEG_PROBABILITY = "seg-probability"
    """FRACTIONAL SEG of the segmenter's per-pixel probabilities (``[outputs]``)."""
    UNCERTAINTY_MAP = "parametric-map-uncertainty"
    """Parametric Map of the segmenter's per-pixel uncertainty (``[outputs]``)."""


SERIES_NUMBER_OFFSETS: dict[OutputKind | OptionalKind, int] = {
    OutputKind.SEG: 1000,
    OutputKind.SR: 2000,
    OutputKind.SR_SUMMARY: 3000,
    OutputKind.SUMMARY_IMAGE: 4000,
    OptionalKind.SEG_PROBABILITY: 7000,
    OptionalKind.UNCERTAINTY_MAP: 8000,
}
"""Added to the input SeriesNumber to number each output series."""

FILENAMES: dict[OutputKind | OptionalKind, str] = {
    OutputKind.SEG: "seg.dcm",
    OutputKind.SR: "sr.dcm",
    OutputKind.SR_SUMMARY: "sr-summary.dcm",
    OutputKind.SUMMARY_IMAGE: "summary.dcm",
    OptionalKind.SEG_PROBABILITY: "seg-probability.dcm",
    OptionalKind.UNCERTAINTY_MAP: "uncertainty-map.dcm",
}

DESCRIPTION_SUFFIXES: dict[OutputKind | OptionalKind, str] = {
    OutputKind.SEG: "SEG",
    OutputKind.SR: "SR contours",
    OutputKind.SR_SUMMARY: "SR summary",
    OutputKind.SUMMARY_IMAGE: "summary",
    OptionalKind.SEG_PROBABILITY: "probability SEG",
    OptionalKind.UNCERTAINTY_MAP: "uncertainty map",
}


def package_version() -> str:
    """Return the version of cmr-node, from the installed metadata or the source tree."""
    try:
        return importlib.metadata.version(DISTRIBUTION_NAME)
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    try:
        with pyproject.open("rb") as stream:
            return str(tomllib.load(stream)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        logger.warning("Cannot determine the cmr-node version; writing %r", UNKNOWN_VERSION)
        return UNKNOWN_VERSION


@dataclass(frozen=True)
class WriterSettings:
    """Identity of the node, written into every output object.

    Attributes
    ----------
    manufacturer, manufacturer_model_name, software_versions, device_serial_number
        General Equipment module of the outputs; also the device observer of the SRs.
    institution_name
        InstitutionName of the outputs, if set.
    procedure_reported
        Procedure Reported of the SRs (CID 100).
    probability_seg
        Also write the FRACTIONAL probability SEG of results that carry probabilities.
    uncertainty_map
        Also write the Parametric Map of their per-pixel uncertainty (viewers without
        FRACTIONAL SEG support, such as OHIF 3.13, show it).
    """

    manufacturer: str = "cmr-node"
    manufacturer_model_name: str = "cmr-node"
    software_versions: str = field(default_factory=package_version)
    device_serial_number: str = "0"
    institution_name: str | None = None
    procedure_reported: Code = PROCEDURE_CARDIAC_MRI
    probability_seg: bool = False
    uncertainty_map: bool = False


@dataclass(frozen=True)
class Lineage:
    """Which analysis of its input series a result is, and the documents it replaces.

    Attributes
    ----------
    generation
        The catalog's analysis generation of the input series (0: the first analysis); part
        of every output UID (:func:`node.outputs.uids.derived_object_identity`).
    predecessors
        By output kind (``"sr"``, ``"sr-summary"``): the header of the SR of an earlier
        generation this result's SR replaces, referenced in its Predecessor Documents
        Sequence (0040,A360).
    """

    generation: int = 0
    predecessors: Mapping[str, pydicom.Dataset] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputObject:
    """One DICOM object built from a result.

    Attributes
    ----------
    kind
        ``"seg"``, ``"sr"``, ``"sr-summary"`` or ``"summary-image"`` (:class:`OutputKind`).
    dataset
        The object, ready to be stored or sent.
    filename
        A file name for it, unique within one result (e.g. ``"seg.dcm"``).
    """

    kind: str
    dataset: pydicom.Dataset
    filename: str


def display_name(result: AnalysisResult) -> str:
    """Return the short name of the analysis used in descriptions (``extra["display_name"]``)."""
    name = result.extra.get("display_name")
    return str(name) if name else result.analysis


def algorithm_family(result: AnalysisResult) -> Code:
    """Return the algorithm family (CID 7162) of the method that produced ``result``.

    ``extra["algorithm_family"]`` (a mapping with ``value``, ``scheme``, ``meaning``) wins;
    otherwise a method with weights is "Artificial Intelligence" and a classical one
    "Morphological Operations".
    """
    family = result.extra.get("algorithm_family")
    if isinstance(family, Mapping):
        try:
            return Code(str(family["value"]), str(family["scheme"]), str(family["meaning"]))
        except KeyError as exc:
            raise WriterError(
                f"extra['algorithm_family'] lacks {exc}; it needs value, scheme and meaning."
            ) from exc
    if result.provenance.model_sha256:
        return FAMILY_ARTIFICIAL_INTELLIGENCE
    return FAMILY_MORPHOLOGICAL_OPERATIONS


def algorithm_parameters(provenance: Provenance) -> dict[str, str]:
    """Return the parameters that identify the method: model and weights hash, or classical."""
    if provenance.model_sha256 is None:
        return {"method": CLASSICAL_METHOD}
    parameters = {"weights_sha256": provenance.model_sha256}
    if provenance.model_name:
        parameters["model"] = provenance.model_name
    if provenance.model_version:
        parameters["model_version"] = provenance.model_version
    return parameters


def weights_text(provenance: Provenance) -> str:
    """Return a one-line description of the weights (or of the classical method)."""
    if provenance.model_sha256 is None:
        return "classical method (no network weights)"
    model = " ".join(p for p in (provenance.model_name, provenance.model_version) if p)
    return f"{model or 'model'} weights sha256 {provenance.model_sha256}"


def reference_range_text(result: AnalysisResult) -> str | None:
    """The result's statement about its reference range, if the analysis compares with one.

    ``result.extra["reference_range"]["text"]`` names the range and its source when one
    matched the series' vendor, sequence and field strength, or says "no reference range for
    this sequence" (values only); ``None`` for analyses without reference ranges.
    """
    block = result.extra.get("reference_range")
    if not isinstance(block, dict):
        return None
    text = block.get("text")
    return str(text) if text else None


def frame_description(result: AnalysisResult, frame_index: int) -> str:
    """Return how a frame is named to a reader: its level if analysed, and its 1-based number."""
    number = f"frame {frame_index + 1}"
    for slice_result in result.slices:
        if slice_result.frame_index == frame_index and slice_result.level != "unknown":
            return f"{slice_result.level}, {number}"
    return number


def _input_series_number(series: LoadedSeries, sources: Sequence[pydicom.Dataset]) -> int:
    candidates = [series.header.get("SeriesNumber")]
    candidates += [getattr(ds, "SeriesNumber", None) for ds in sources[:1]]
    for value in candidates:
        try:
            if value is not None and str(value).strip():
                return max(int(value), 0)
        except (TypeError, ValueError):
            continue
    return 0


def output_identity(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    kind: OutputKind | OptionalKind,
    generation: int = 0,
) -> DerivedObjectIdentity:
    """Return the deterministic identification of the ``kind`` output of ``result``.

    It depends on the input series, the analysis and its version, the analysed instances
    (``series.frames``) and the analysis ``generation``.
    """
    number = _input_series_number(series, sources) + SERIES_NUMBER_OFFSETS[kind]
    if number > MAX_SERIES_NUMBER:
        number = SERIES_NUMBER_OFFSETS[kind]
    return derived_object_identity(
        series.series_instance_uid,
        result.analysis,
        result.provenance.algorithm_version,
        kind.value,
        series_number=number,
        series_description=f"cmr-node {display_name(result)} {DESCRIPTION_SUFFIXES[kind]}",
        content=content_digest(frame.sop_instance_uid for frame in series.frames),
        generation=generation,
    )


def _check_inputs(
    result: AnalysisResult, series: LoadedSeries, sources: Sequence[pydicom.Dataset]
) -> None:
    if result.series_instance_uid != series.series_instance_uid:
        raise WriterError(
            f"The result is for series {result.series_instance_uid} but the loaded series is "
            f"{series.series_instance_uid}."
        )
    if not sources:
        raise WriterError("No source instances were given; outputs need their patient and study.")
    available = {str(ds.SOPInstanceUID) for ds in sources}
    for slice_result in result.slices:
        if not 0 <= slice_result.frame_index < len(series.frames):
            raise WriterError(
                f"Slice result refers to frame {slice_result.frame_index} but the series has "
                f"{len(series.frames)} frames."
            )
        frame = series.frames[slice_result.frame_index]
        if frame.sop_instance_uid not in available:
            raise WriterError(
                f"Source instance {frame.sop_instance_uid} of analysed frame "
                f"{slice_result.frame_index} is not among the source datasets."
            )
        if slice_result.labels.shape != frame.pixels.shape:
            raise WriterError(
                f"Label image of frame {slice_result.frame_index} has shape "
                f"{slice_result.labels.shape}, the frame {frame.pixels.shape}."
            )
    studies = {str(ds.StudyInstanceUID) for ds in sources}
    if studies != {series.study_instance_uid}:
        raise WriterError(
            f"Source instances belong to studies {sorted(studies)}, expected "
            f"{series.study_instance_uid}."
        )


def build_outputs(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    lineage: Lineage | None = None,
) -> list[OutputObject]:
    """Build the DICOM objects (SEG, SRs, summary image) for one analysis result.

    Parameters
    ----------
    result
        What the analysis found.
    series
        The series the analysis was run on.
    sources
        The datasets of the series' source instances (with pixel data), one per stored
        instance referenced by ``series.frames``.
    settings
        Identity of the node.
    lineage
        The analysis generation and the SRs this result replaces (default: the first
        analysis, replacing nothing).

    Returns
    -------
    list[OutputObject]
        In order SEG, probability SEG, uncertainty map, planar-ROI SR, summary SR, summary
        image.  SEG and planar-ROI SR are absent when no slice has any labelled pixel
        (nothing to draw), the probability SEG and uncertainty map when not enabled or no
        slice has probabilities; the summary SR and summary image are always present.

    Raises
    ------
    WriterError
        If the result, series and sources do not fit together or an object cannot be built.
    """
    # Imported here: the writer modules import this package's settings for type hints.
    from node.outputs.writers.seg import build_probability_segmentation, build_segmentation
    from node.outputs.writers.sr import build_roi_report, build_summary_report
    from node.outputs.writers.summary import build_summary_image

    _check_inputs(result, series, sources)
    lineage = Lineage() if lineage is None else lineage
    outputs: list[OutputObject] = []

    def identity(kind: OutputKind | OptionalKind) -> DerivedObjectIdentity:
        return output_identity(result, series, sources, kind, lineage.generation)

    def add(kind: OutputKind | OptionalKind, dataset: pydicom.Dataset) -> None:
        outputs.append(OutputObject(kind.value, dataset, FILENAMES[kind]))

    seg = build_segmentation(
        result,
        series,
        sources,
        settings=settings,
        identity=identity(OutputKind.SEG),
    )
    if seg is not None:
        add(OutputKind.SEG, seg)
    else:
        logger.warning(
            "Series %s: no labelled pixel on any slice, no SEG written",
            series.series_instance_uid,
        )

    if settings.probability_seg:
        probability_seg = build_probability_segmentation(
            result,
            series,
            sources,
            settings=settings,
            identity=identity(OptionalKind.SEG_PROBABILITY),
        )
        if probability_seg is not None:
            add(OptionalKind.SEG_PROBABILITY, probability_seg)
    if settings.uncertainty_map:
        from node.outputs.writers.uncertainty_map import build_uncertainty_map

        uncertainty = build_uncertainty_map(
            result,
            series,
            sources,
            settings=settings,
            identity=identity(OptionalKind.UNCERTAINTY_MAP),
        )
        if uncertainty is not None:
            add(OptionalKind.UNCERTAINTY_MAP, uncertainty)

    roi_report = build_roi_report(
        result,
        series,
        sources,
        settings=settings,
        identity=identity(OutputKind.SR),
        predecessor=lineage.predecessors.get(OutputKind.SR.value),
    )
    if roi_report is not None:
        add(OutputKind.SR, roi_report)
    else:
        logger.warning(
            "Series %s: no contour to draw, no planar-ROI SR written", series.series_instance_uid
        )

    add(
        OutputKind.SR_SUMMARY,
        build_summary_report(
            result,
            series,
            sources,
            settings=settings,
            identity=identity(OutputKind.SR_SUMMARY),
            segmentation=seg,
            predecessor=lineage.predecessors.get(OutputKind.SR_SUMMARY.value),
        ),
    )
    add(
        OutputKind.SUMMARY_IMAGE,
        build_summary_image(
            result,
            series,
            sources,
            settings=settings,
            identity=identity(OutputKind.SUMMARY_IMAGE),
        ),
    )
    logger.info(
        "Series %s: built %s",
        series.series_instance_uid,
        ", ".join(output.kind for output in outputs),
    )
    return outputs
