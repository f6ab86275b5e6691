"""One analysis of one series, from files to written outputs: load -> analyse -> write.

The same function serves the listener's workers and the offline ``cmr-node analyse``; the
outputs an analysis writes are declared in its descriptor (:mod:`node.analyses`).

Every UID ``results.json`` (:func:`result_summary`) names is that of an input instance or of
an object the node wrote for the generation analysed: ``outputs`` gives each written object's
Series and SOP Instance UIDs, and a frame of an object derived by the plugin (the T1 maps a
``molli`` result fits, whose frames carry :data:`plugins.api.UNWRITTEN_SOP_INSTANCE_UID`) is
named by the SOP Instance UID and frame number of the object as written, in the slice table and
in the plugin's own tables (``extra``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.filebase import DicomBytesIO

from node import __version__
from node.analyses import descriptor
from node.catalog.job_queue import OutputFile
from node.catalog.spool import write_atomic
from node.inputs.loader import load_series_files
from node.outputs.writers import Lineage, OutputObject, WriterError, WriterSettings
from plugins import get_plugin
from plugins.api import (
    UNWRITTEN_SOP_INSTANCE_UID,
    AnalysisError,
    AnalysisResult,
    LoadedSeries,
    Measurement,
    QCFlag,
    SourceFrame,
)

logger = logging.getLogger(__name__)

RESULTS_SCHEMA = "cmr-node/results/1"
#: Threads writing and syncing output files while the next output is encoded.
OUTPUT_WRITE_THREADS = 4

#: Causes of writer errors (highdicom's messages) in words a reader of the job list follows.
WRITER_ERROR_CAUSES = {
    "Plane positions must not contain duplicates": (
        "two images of the series share one slice position (a slice sent again under a new"
        " SOP Instance UID?)"
    ),
}


class OutputWriteError(AnalysisError):
    """The analysis ran but its DICOM outputs cannot be written; the message says why.

    Writing is deterministic: such a job fails at once instead of being retried.
    """


def writer_failure(exc: WriterError) -> OutputWriteError:
    """The readable form of a writer error (cause first, the writer's words after)."""
    text = str(exc)
    for marker, cause in WRITER_ERROR_CAUSES.items():
        if marker in text:
            return OutputWriteError(f"the outputs cannot be written: {cause} ({text})")
    return OutputWriteError(f"the outputs cannot be written: {text}")


@dataclass
class PipelineRun:
    """Everything one analysis produced."""

    series: LoadedSeries
    result: AnalysisResult
    outputs: list[OutputObject]
    timings: dict[str, float] = field(default_factory=dict)


def writer_settings(
    manufacturer: str,
    institution_name: str | None,
    *,
    probability_seg: bool = False,
    uncertainty_map: bool = False,
) -> WriterSettings:
    """The node's identity as written into every output, and the optional outputs chosen."""
    return WriterSettings(
        manufacturer=manufacturer,
        manufacturer_model_name="cmr-node",
        software_versions=__version__,
        institution_name=institution_name,
        probability_seg=probability_seg,
        uncertainty_map=uncertainty_map,
    )


def run_analysis(
    paths: Sequence[Path],
    analysis: str,
    options: Mapping[str, Any],
    settings: WriterSettings,
    lineage: Lineage | None = None,
) -> PipelineRun:
    """Load a series from files, analyse it and build its DICOM outputs.

    ``lineage`` is the analysis generation and the SRs the outputs replace (default: the
    first analysis of the series, replacing nothing).

    Raises
    ------
    plugins.api.AnalysisError
        When the series cannot be loaded or analysed, or its outputs cannot be written
        (:class:`OutputWriteError`); the message is the reason.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    series, sources = load_series_files(paths, analysis)
    timings["load_s"] = time.perf_counter() - t0
    plugin = get_plugin(analysis)
    t1 = time.perf_counter()
    result = plugin.analyse(series, options)
    timings["analyse_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    try:
        series, outputs = descriptor(analysis).build_outputs(
            result, series, sources, settings, lineage
        )
    except WriterError as exc:
        raise writer_failure(exc) from exc
    timings["write_s"] = time.perf_counter() - t2
    logger.info(
        "%s of series %s: %d slices, %d QC flags, %d outputs in %.2f s",
        analysis,
        series.series_instance_uid,
        len(result.slices),
        len(result.qc_flags),
        len(outputs),
        time.perf_counter() - t0,
    )
    return PipelineRun(series, result, outputs, timings)


def encode_dataset(ds: Dataset) -> bytes:
    """A data set as DICOM file bytes (preamble, file meta, data set)."""
    buffer = DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_outputs(run: PipelineRun, out_dir: Path) -> list[OutputFile]:
    """Write every output object atomically into ``out_dir``; returns what the outbox sends.

    Every file is on disk (fsynced, as :func:`node.catalog.spool.write_atomic` promises) when this
    returns; a file is written and synced by a thread while the next object is encoded, so
    the syncs' waits overlap the encoding.

    Raises
    ------
    OSError
        When a file cannot be written.
    """
    files = []
    with ThreadPoolExecutor(max_workers=OUTPUT_WRITE_THREADS,
                            thread_name_prefix="output-write") as pool:
        written = []
        for obj in run.outputs:
            path = out_dir / obj.filename
            written.append(pool.submit(write_atomic, path, encode_dataset(obj.dataset)))
            files.append(
                OutputFile(
                    path=path,
                    sop_instance_uid=str(obj.dataset.SOPInstanceUID),
                    sop_class_uid=str(obj.dataset.SOPClassUID),
                    kind=obj.kind,
                )
            )
        for future in written:
            future.result()
    return files


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 3)


def measurement_json(m: Measurement) -> dict[str, Any]:
    """A measurement as written in results.json."""
    item: dict[str, Any] = {
        "value": _number(m.value),
        "unit": m.unit.value,
        "region": m.region.name.lower(),
        "concept": m.name.meaning,
    }
    if m.derivation is not None:
        item["derivation"] = m.derivation.meaning
    if m.reason:
        item["reason"] = m.reason
    return item


def flag_json(flag: QCFlag) -> dict[str, Any]:
    """A QC flag as written in results.json."""
    return {
        "code": flag.code,
        "severity": str(flag.severity),
        "message": flag.message,
        "frame_index": flag.frame_index,
    }


def result_summary(run: PipelineRun, output_files: Sequence[OutputFile]) -> dict[str, Any]:
    """The results.json entry of an analysed series.

    Raises
    ------
    OutputWriteError
        When the result names a frame of a derived object the node did not write (a frame
        still carrying :data:`plugins.api.UNWRITTEN_SOP_INSTANCE_UID`).
    """
    series, result = run.series, run.result
    series_uids = {
        str(obj.dataset.SOPInstanceUID): str(obj.dataset.SeriesInstanceUID) for obj in run.outputs
    }
    slices = []
    for sl in result.slices:
        frame = series.frames[sl.frame_index]
        slices.append(
            {
                "frame_index": sl.frame_index,
                "sop_instance_uid": frame.sop_instance_uid,
                "frame_number": frame.frame_number,
                "slice_location_mm": round(frame.slice_location, 3),
                "level": sl.level,
                "measurements": {m.key: measurement_json(m) for m in sl.measurements},
                "qc_flags": [
                    flag_json(f) for f in result.qc_flags if f.frame_index == sl.frame_index
                ],
            }
        )
    prov = result.provenance
    summary = {
        "status": "analysed",
        "analysis": result.analysis,
        "study_instance_uid": series.study_instance_uid,
        "series_instance_uid": series.series_instance_uid,
        "series_description": str(series.header.get("SeriesDescription", "")),
        "field_strength_t": series.field_strength_t,
        "frames": len(series.frames),
        "image_selection": list(run.series.header.get("ImageSelection", ())),
        "acquisition": {
            "vendor": series.acquisition.vendor,
            "sequence_family": series.acquisition.sequence_family,
            "field_strength_t": series.acquisition.field_strength_t,
            "contrast": str(series.acquisition.contrast),
        },
        "slices": slices,
        "global": {m.key: measurement_json(m) for m in result.measurements},
        "qc_flags": [flag_json(f) for f in result.qc_flags],
        "qc_failure": result.has_failure,
        "provenance": {
            "algorithm_name": prov.algorithm_name,
            "algorithm_version": prov.algorithm_version,
            "method": prov.method,
            "model_name": prov.model_name,
            "model_version": prov.model_version,
            "model_sha256": prov.model_sha256,
            "node_version": __version__,
        },
        "outputs": {
            f.kind: {
                "file": f.path.name,
                "series_instance_uid": series_uids.get(f.sop_instance_uid),
                "sop_instance_uid": f.sop_instance_uid,
            }
            for f in output_files
        },
        "timings_s": {k: round(v, 4) for k, v in run.timings.items()},
        "extra": written_frame_references(_jsonable(dict(result.extra)), series.frames),
    }
    if _names_unwritten(summary):
        raise OutputWriteError(
            f"the {result.analysis} result of series {series.series_instance_uid} names a "
            "frame of a derived object the node did not write; results.json would name no "
            "stored object"
        )
    return summary


def written_frame_references(value: Any, frames: Sequence[SourceFrame]) -> Any:
    """``value`` with its references to derived frames naming the objects as written.

    Parameters
    ----------
    value
        JSON-ready data (a plugin's ``extra``, made JSON-ready by :func:`_jsonable`).
    frames
        The frames of the analysed series as the outputs name them (the series the
        descriptor's ``build_outputs`` returned).

    Returns
    -------
    Any
        ``value`` where every mapping whose ``sop_instance_uid`` is
        :data:`plugins.api.UNWRITTEN_SOP_INSTANCE_UID` and whose ``frame_index`` indexes
        ``frames`` has the SOP Instance UID and frame number of that frame instead; other
        mappings are unchanged.
    """
    if isinstance(value, list):
        return [written_frame_references(v, frames) for v in value]
    if not isinstance(value, dict):
        return value
    resolved = {k: written_frame_references(v, frames) for k, v in value.items()}
    index = resolved.get("frame_index")
    if (
        resolved.get("sop_instance_uid") == UNWRITTEN_SOP_INSTANCE_UID
        and isinstance(index, int)
        and 0 <= index < len(frames)
    ):
        frame = frames[index]
        resolved["sop_instance_uid"] = frame.sop_instance_uid
        resolved["frame_number"] = frame.frame_number
    return resolved


def _names_unwritten(value: Any) -> bool:
    """Whether JSON-ready ``value`` still holds :data:`plugins.api.UNWRITTEN_SOP_INSTANCE_UID`."""
    if isinstance(value, dict):
        return any(_names_unwritten(v) for v in value.values())
    if isinstance(value, list):
        return any(_names_unwritten(v) for v in value)
    return value == UNWRITTEN_SOP_INSTANCE_UID


def _jsonable(value: Any) -> Any:
    """Make numpy scalars and tuples JSON-serialisable; NaN becomes null."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float):
        return _number(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically."""
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False).encode("utf-8"))
