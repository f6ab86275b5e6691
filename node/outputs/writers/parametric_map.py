"""DICOM Parametric Maps of the T1 fitted by the node from MOLLI source images.

:func:`build_parametric_maps` turns the fitted maps of a ``molli`` result
(``result.extra["molli"]["maps"]``, a :class:`plugins.molli.analysis.FittedMaps`) into two
Parametric Map instances, each in its own series:

``parametric-map``
    T1 in ms: one multi-frame instance, one frame per fitted slice, stored as 16-bit
    unsigned integers of :data:`T1_STEP_MS` with a Real World Value Mapping in UCUM "ms",
    LUT label "T1" and quantity DCM 113063 "T1" (CID 7180).
``parametric-map-fit``
    The goodness of fit, R^2 (DCM 126220 "R2-Coefficient", CID 7180), unitless, stored in
    steps of :data:`R_SQUARED_STEP`.

and, for an ``ecv`` result with a haematocrit, :func:`build_ecv_map`:

``parametric-map-ecv``
    The pixel-wise ECV in per cent (private quantity "Extracellular volume fraction", no
    standard concept exists), stored in steps of :data:`ECV_STEP_PERCENT`, one frame per
    analysed post-contrast slice, referencing the post-contrast T1 map images.

The MOLLI maps reference the MOLLI source images they were fitted from.  Each map gets its
Series and SOP Instance UIDs as the SEG, SRs and summary image do
(:func:`node.outputs.uids.derived_object_identity`: input series, analysis and version, kind, digest
of the input instances, analysis *generation*), so a re-analysis sends new maps in new
series while running one generation again (a restart) rebuilds identical ones.  The plugins
propose no identity for the maps: the fitted frames of a ``molli`` result carry
:data:`plugins.api.UNWRITTEN_SOP_INSTANCE_UID`, and :func:`fitted_series` gives the fitted
series whose frames reference the T1 map as built (its SOP Instance UID, the frame numbers
the plugin gave), for the SEG, SRs, summary image and ``results.json``
(:func:`node.jobs.pipeline.result_summary`, which lists each map's UIDs among the outputs).
Integer storage is used (not float pixel data) because most viewers and
:mod:`node.inputs.loader` read integer pixel data with a real-world value mapping, and it is
lossless at these steps.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.sr.coding import Code as PydicomCode

from node.outputs.uids import DerivedObjectIdentity, content_digest, derived_object_identity
from node.outputs.writers import SHORT_DISCLAIMER, OutputObject, WriterError, WriterSettings
from plugins.api import DISCLAIMER, AnalysisResult, LoadedSeries, SourceFrame

logger = logging.getLogger(__name__)

__all__ = [
    "ECV_STEP_PERCENT",
    "KIND_ECV",
    "KIND_FIT",
    "KIND_T1",
    "R_SQUARED_STEP",
    "T1_STEP_MS",
    "build_ecv_map",
    "build_parametric_maps",
    "fitted_series",
    "map_identity",
    "parametric_map",
]

KIND_T1: Final = "parametric-map"
"""Output kind of the T1 Parametric Map."""
KIND_FIT: Final = "parametric-map-fit"
"""Output kind of the goodness-of-fit Parametric Map."""
KIND_ECV: Final = "parametric-map-ecv"
"""Output kind of the ECV Parametric Map."""
FILENAMES: Final[Mapping[str, str]] = {
    KIND_T1: "t1-map.dcm", KIND_FIT: "t1-fit-r2.dcm", KIND_ECV: "ecv-map.dcm"
}
SERIES_NUMBER_OFFSETS: Final[Mapping[str, int]] = {KIND_T1: 5000, KIND_FIT: 6000, KIND_ECV: 5000}
"""Added to the source SeriesNumber (SEG, SR and summary use 1000-4000)."""
MAX_SERIES_NUMBER: Final = 2**31 - 1

T1_STEP_MS: Final = 0.1
"""T1 per stored unit: 0.05 ms quantisation error, T1 up to 6553.5 ms in 16 bits."""
R_SQUARED_STEP: Final = 1e-4
"""R^2 per stored unit (0..1 in 0..10000); negative R^2 (fit worse than a constant) is 0."""
UINT16_MAX: Final = 65535
ECV_STEP_PERCENT: Final = 0.01
"""ECV per stored unit (0-100 % in 0-10000)."""

UCUM_MS: Final = PydicomCode("ms", "UCUM", "millisecond")
UCUM_NO_UNITS: Final = PydicomCode("1", "UCUM", "no units")
QUANTITY_T1: Final = PydicomCode("113063", "DCM", "T1")
"""CID 7180 "Abstract Multi-dimensional Image Model Component Semantics": T1."""
QUANTITY_R_SQUARED: Final = PydicomCode("126220", "DCM", "R2-Coefficient")
"""CID 7180: coefficient of determination of a model fit."""
QUANTITY_ECV: Final = PydicomCode("ecv", "99CMRNODE", "Extracellular volume fraction")
"""No standard concept for myocardial ECV exists in CID 7180; private, as in the SR."""
UCUM_PERCENT: Final = PydicomCode("%", "UCUM", "percent")
CONTENT_LABEL_ECV: Final = "ECV_MAP"
WINDOW_ECV_PERCENT: Final = (35.0, 70.0)
"""(centre, width) of the ECV display window: 0-70 %, normal myocardium in the lower half."""
CONTENT_LABEL_T1: Final = "T1_MAP"
CONTENT_LABEL_FIT: Final = "T1_FIT_R2"
WINDOW_T1_MS: Final[Mapping[str, tuple[float, float]]] = {
    "1.5": (1300.0, 1300.0),
    "3": (1500.0, 1500.0),
}
"""(centre, width) of the default display window by field strength, as vendors set them."""


DESCRIPTIONS: Final[Mapping[str, str]] = {
    KIND_T1: "cmr-node MOLLI T1 map (fit)",
    KIND_FIT: "cmr-node MOLLI T1 fit R2",
    KIND_ECV: "cmr-node ECV map",
}


def map_identity(
    result: AnalysisResult,
    sources: Sequence[pydicom.Dataset],
    kind: str,
    series_number: int,
    generation: int = 0,
) -> DerivedObjectIdentity:
    """The UIDs, number and description of the ``kind`` map of ``result``.

    As for the SEG and SRs (:func:`node.outputs.writers.output_identity`): they depend on the input
    series, the analysis and its version, ``kind``, the input instances (``sources``) and the
    analysis ``generation`` only; a re-analysis' SeriesDescription says "(rev N)".
    """
    return derived_object_identity(
        result.series_instance_uid,
        result.analysis,
        result.provenance.algorithm_version,
        kind,
        series_number=series_number,
        series_description=DESCRIPTIONS[kind],
        content=content_digest(str(ds.SOPInstanceUID) for ds in sources),
        generation=generation,
    )


def fitted_series(result: AnalysisResult, t1_map: pydicom.Dataset) -> LoadedSeries:
    """The fitted T1 series of a ``molli`` result, its frames referencing ``t1_map``.

    The SEG, SRs, summary image and ``results.json`` are built on this series: they then
    reference the T1 map as built (its generation's SOP Instance UID, with the frame numbers
    the plugin gave the fitted frames), never the plugin's placeholder
    (:data:`plugins.api.UNWRITTEN_SOP_INSTANCE_UID`).
    """
    series: LoadedSeries = _fitted_maps(result).series
    uid = str(t1_map.SOPInstanceUID)
    frames = tuple(dataclasses.replace(frame, sop_instance_uid=uid) for frame in series.frames)
    return dataclasses.replace(series, frames=frames)


def build_parametric_maps(
    result: AnalysisResult,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    generation: int = 0,
) -> list[OutputObject]:
    """Build the T1 and goodness-of-fit Parametric Maps of a MOLLI fit result.

    Parameters
    ----------
    result
        A ``molli`` analysis result whose ``extra["molli"]["maps"]`` holds the fitted maps.
    sources
        The datasets of the MOLLI source series (at least the fitted source images).
    settings
        Identity of the node.
    generation
        The analysis generation of the source series (:class:`node.outputs.writers.Lineage`): part
        of the maps' UIDs.

    Returns
    -------
    list[OutputObject]
        The T1 map (kind :data:`KIND_T1`) then the R^2 map (kind :data:`KIND_FIT`).

    Raises
    ------
    WriterError
        If the result holds no fitted maps, a fitted source image is not among
        ``sources``, or highdicom rejects the inputs.
    """
    maps = _fitted_maps(result)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    referenced: list[pydicom.Dataset] = []
    for uid in dict.fromkeys(u for per_slice in maps.source_sop_instance_uids for u in per_slice):
        if uid not in by_uid:
            raise WriterError(f"Source image {uid} of the MOLLI fit is not among the sources.")
        referenced.append(by_uid[uid])
    if not referenced:
        raise WriterError("The MOLLI result has no fitted slice; no Parametric Map to write.")
    series: LoadedSeries = maps.series
    base_number = _series_number(referenced[0])
    t1_id = map_identity(result, sources, KIND_T1, _offset(base_number, KIND_T1), generation)
    fit_id = map_identity(result, sources, KIND_FIT, _offset(base_number, KIND_FIT), generation)

    # Planes in the order of the frame numbers the analysis gave the fitted frames.
    order = sorted(range(len(series.frames)), key=lambda i: series.frames[i].frame_number or 0)
    t1_stored = np.stack(
        [_quantise(np.asarray(maps.t1_ms[i], np.float64), T1_STEP_MS) for i in order]
    )
    r2_stored = np.stack(
        [
            _quantise(np.clip(np.asarray(maps.r_squared[i], np.float64), 0.0, 1.0), R_SQUARED_STEP)
            for i in order
        ]
    )
    planes = [series.frames[i] for i in order]
    window = WINDOW_T1_MS["3" if (series.field_strength_t or 1.5) > 2 else "1.5"]
    t1_map = parametric_map(
        planes,
        referenced,
        t1_stored,
        mapping=hd.pm.RealWorldValueMapping(
            lut_label="T1",
            lut_explanation="T1 (ms), MOLLI fit with Look-Locker correction",
            unit=UCUM_MS,
            value_range=(0, UINT16_MAX),
            slope=T1_STEP_MS,
            intercept=0.0,
            quantity_definition=QUANTITY_T1,
        ),
        window=(window[0] / T1_STEP_MS, window[1] / T1_STEP_MS),
        identity=t1_id,
        settings=settings,
        content_label=CONTENT_LABEL_T1,
    )
    fit_map = parametric_map(
        planes,
        referenced,
        r2_stored,
        mapping=hd.pm.RealWorldValueMapping(
            lut_label="R2",
            lut_explanation="Goodness of fit R^2 of the MOLLI T1 fit",
            unit=UCUM_NO_UNITS,
            value_range=(0, round(1.0 / R_SQUARED_STEP)),
            slope=R_SQUARED_STEP,
            intercept=0.0,
            quantity_definition=QUANTITY_R_SQUARED,
        ),
        window=(0.5 / R_SQUARED_STEP, 1.0 / R_SQUARED_STEP),
        identity=fit_id,
        settings=settings,
        content_label=CONTENT_LABEL_FIT,
    )
    logger.debug(
        "Parametric Maps %s (T1) and %s (R2), generation %d: %d frame(s)",
        t1_id.sop_instance_uid,
        fit_id.sop_instance_uid,
        generation,
        t1_stored.shape[0],
    )
    return [
        OutputObject(KIND_T1, t1_map, FILENAMES[KIND_T1]),
        OutputObject(KIND_FIT, fit_map, FILENAMES[KIND_FIT]),
    ]


def build_ecv_map(
    result: AnalysisResult,
    series: LoadedSeries,
    sources: Sequence[pydicom.Dataset],
    *,
    settings: WriterSettings,
    generation: int = 0,
) -> list[OutputObject]:
    """Build the ECV Parametric Map of an ``ecv`` result, if it has one.

    Parameters
    ----------
    result
        An ``ecv`` result; ``extra["ecv"]["maps"]`` (a :class:`plugins.ecv.EcvMaps`) is
        present only when a haematocrit was known.
    series
        The analysed post-contrast series.
    sources
        Its datasets.
    settings
        Identity of the node.
    generation
        The analysis generation of the post-contrast series: part of the map's UIDs.

    Returns
    -------
    list[OutputObject]
        The ECV map (kind :data:`KIND_ECV`), or nothing when the result has no ECV maps.

    Raises
    ------
    WriterError
        If a referenced post-contrast image is not among ``sources`` or highdicom rejects
        the inputs.
    """
    block = result.extra.get("ecv")
    maps = block.get("maps") if isinstance(block, Mapping) else None
    required = ("frame_indices", "ecv_percent")
    if maps is None or not all(hasattr(maps, name) for name in required):
        return []
    if not maps.frame_indices:
        return []
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    frames = [series.frames[i] for i in maps.frame_indices]
    referenced: list[pydicom.Dataset] = []
    for uid in dict.fromkeys(f.sop_instance_uid for f in frames):
        if uid not in by_uid:
            raise WriterError(f"Post-contrast image {uid} of the ECV result is not a source.")
        referenced.append(by_uid[uid])
    # highdicom stores planes descending along the row x column normal (see the MOLLI maps).
    order = sorted(range(len(frames)), key=lambda k: -frames[k].slice_location)
    planes = [frames[k] for k in order]
    stored = np.stack([
        _quantise(np.clip(np.asarray(maps.ecv_percent[k], np.float64), 0.0, 100.0),
                  ECV_STEP_PERCENT)
        for k in order
    ])
    ecv_map = parametric_map(
        planes,
        referenced,
        stored,
        mapping=hd.pm.RealWorldValueMapping(
            lut_label="ECV",
            lut_explanation=f"ECV (%), haematocrit {maps.haematocrit:.2f}",
            unit=UCUM_PERCENT,
            value_range=(0, round(100.0 / ECV_STEP_PERCENT)),
            slope=ECV_STEP_PERCENT,
            intercept=0.0,
            quantity_definition=QUANTITY_ECV,
        ),
        window=(WINDOW_ECV_PERCENT[0] / ECV_STEP_PERCENT,
                WINDOW_ECV_PERCENT[1] / ECV_STEP_PERCENT),
        identity=map_identity(result, sources, KIND_ECV,
                              _offset(_series_number(referenced[0]), KIND_ECV), generation),
        settings=settings,
        content_label=CONTENT_LABEL_ECV,
    )
    return [OutputObject(KIND_ECV, ecv_map, FILENAMES[KIND_ECV])]


def _check_frame_order(pm: hd.pm.ParametricMap, planes: Sequence[SourceFrame]) -> None:
    """Raise if the map's frame k is not at the position of the k-th plane given.

    The SEG and SR reference the fitted frames by frame number; highdicom sorts planes by
    position, so a different sort convention would silently misplace every contour.
    """
    for number, (item, plane) in enumerate(
        zip(pm.PerFrameFunctionalGroupsSequence, planes, strict=True), 1
    ):
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        if not np.allclose(position, plane.image_position, atol=1e-3):
            raise WriterError(
                f"Frame {number} of the Parametric Map lies at {position}, but the "
                f"plane given for it at {list(plane.image_position)}: the frame "
                "order expected by the analysis and the writer's disagree."
            )


def _fitted_maps(result: AnalysisResult) -> Any:
    block = result.extra.get("molli")
    maps = block.get("maps") if isinstance(block, Mapping) else None
    required = ("series", "t1_ms", "r_squared", "source_sop_instance_uids")
    if maps is None or not all(hasattr(maps, name) for name in required):
        raise WriterError(
            f"The {result.analysis} result of series {result.series_instance_uid} holds no "
            "fitted MOLLI maps (extra['molli']['maps']); only a molli result has them."
        )
    return maps


def _quantise(values: npt.NDArray[np.float64], step: float) -> npt.NDArray[np.uint16]:
    finite = np.where(np.isfinite(values), values, 0.0)
    return np.clip(np.rint(finite / step), 0, UINT16_MAX).astype(np.uint16)


def _series_number(ds: pydicom.Dataset) -> int:
    try:
        return max(int(ds.get("SeriesNumber", 0) or 0), 0)
    except (TypeError, ValueError):
        return 0


def _offset(base: int, kind: str) -> int:
    number = base + SERIES_NUMBER_OFFSETS[kind]
    return number if number <= MAX_SERIES_NUMBER else SERIES_NUMBER_OFFSETS[kind]


def parametric_map(
    planes: Sequence[SourceFrame],
    referenced: Sequence[pydicom.Dataset],
    stored: npt.NDArray[np.uint16] | npt.NDArray[np.float32],
    *,
    mapping: hd.pm.RealWorldValueMapping,
    window: tuple[float, float],
    identity: DerivedObjectIdentity,
    settings: WriterSettings,
    content_label: str,
) -> hd.pm.ParametricMap:
    """One Parametric Map instance of ``stored`` (one frame per plane, in the planes' order)
    on the ``referenced`` source images, with the node's identity, the disclaimer and the
    sources' body part and laterality.

    Raises
    ------
    WriterError
        If highdicom rejects the inputs or reorders the planes.
    """
    first = planes[0]
    thickness = first.slice_thickness
    try:
        pm = hd.pm.ParametricMap(
            source_images=list(referenced),
            pixel_array=stored,
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=settings.manufacturer,
            manufacturer_model_name=settings.manufacturer_model_name,
            software_versions=settings.software_versions,
            device_serial_number=settings.device_serial_number,
            contains_recognizable_visual_features=False,
            real_world_value_mappings=[mapping],
            voi_lut_transformations=[
                hd.VOILUTTransformation(window_center=window[0], window_width=window[1])
            ],
            content_description=SHORT_DISCLAIMER,
            content_label=content_label,
            pixel_measures=hd.PixelMeasuresSequence(
                pixel_spacing=first.pixel_spacing,
                slice_thickness=thickness if thickness is not None else 1.0,
            ),
            plane_orientation=hd.PlaneOrientationSequence(
                coordinate_system=hd.CoordinateSystemNames.PATIENT,
                image_orientation=first.image_orientation,
            ),
            plane_positions=[
                hd.PlanePositionSequence(
                    coordinate_system=hd.CoordinateSystemNames.PATIENT,
                    image_position=frame.image_position,
                )
                for frame in planes
            ],
            series_description=identity.series_description,
            institution_name=settings.institution_name,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise WriterError(f"Cannot build the Parametric Map {content_label}: {exc}") from exc
    _check_frame_order(pm, planes)
    pm.ImageComments = DISCLAIMER
    for keyword in ("BodyPartExamined", "Laterality"):
        value = referenced[0].get(keyword)
        if value:
            setattr(pm, keyword, value)
    return pm
