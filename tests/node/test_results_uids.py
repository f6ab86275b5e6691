"""Every UID ``results.json`` names is that of an input or of an object the node wrote.

A reader (or a script) following ``results.json`` to the archive must find what it names.
The Parametric Maps the node writes for a ``molli`` result (the fitted T1 and R^2 maps) and
an ``ecv`` result (the ECV map) get their UIDs from the node's writer, new ones for each
analysis generation; ``results.json`` must name those, for the generation written, and name
the fitted frames by the written T1 map's SOP Instance UID and frame number.  The MOLLI path
runs through the node's worker (catalog, job, pipeline, ``results.json``, outbox), first and
after a re-analysis; the ECV path through the pipeline with a haematocrit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset, dcmread

from models.phantoms.dicom_build import write_series
from node.catalog.catalog import Catalog
from node.catalog.series import InstanceRecord
from node.jobs.pipeline import (
    OutputWriteError,
    PipelineRun,
    result_summary,
    run_analysis,
    write_outputs,
    writer_settings,
)
from node.jobs.worker import WorkerPool
from node.outputs.writers import Lineage
from node.outputs.writers.parametric_map import KIND_ECV, KIND_FIT, KIND_T1
from node.settings import Destination, Settings
from plugins.api import UNWRITTEN_SOP_INSTANCE_UID
from plugins.t1map import ClassicalSegmenter

molli_tests = pytest.importorskip("tests.plugins.test_molli")

UID_IN_TEXT = re.compile(r"\b\d+(?:\.\d+){3,}\b")
"""A DICOM UID inside free text (four or more components: no version number matches)."""


def _named_uids(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, UID) of every UID ``value`` names: values of ``*_uid`` keys and UIDs in text."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _named_uids(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _named_uids(v, key)
    elif isinstance(value, str):
        if key.lower().endswith("uid"):
            yield key, value
        else:
            yield from ((key, found) for found in UID_IN_TEXT.findall(value))


def _dangling(summary: dict[str, Any], known: set[str]) -> list[tuple[str, str]]:
    return [(key, uid) for key, uid in _named_uids(summary) if uid not in known]


def _input_uids(datasets: Sequence[Dataset]) -> set[str]:
    return {str(getattr(ds, k)) for ds in datasets
            for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}


def _frame_locations(pm: Dataset) -> dict[int, float]:
    """Slice location (mm along the row x column normal) of each frame number of a map."""
    orientation = np.asarray(
        pm.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
        dtype=float,
    )
    normal = np.cross(orientation[:3], orientation[3:])
    return {
        number: float(normal @ np.asarray(item.PlanePositionSequence[0].ImagePositionPatient,
                                          dtype=float))
        for number, item in enumerate(pm.PerFrameFunctionalGroupsSequence, 1)
    }


def _check_fitted_frame_rows(rows: Sequence[dict[str, Any]], t1_map: Dataset) -> None:
    """Rows naming fitted frames name the written T1 map's frame at their slice location."""
    locations = _frame_locations(t1_map)
    assert rows
    for row in rows:
        assert row["sop_instance_uid"] == str(t1_map.SOPInstanceUID), row
        assert row["slice_location_mm"] == pytest.approx(locations[row["frame_number"]], abs=0.01)


# ----------------------------------------------------------------------------- MOLLI, worker


def _molli_job(catalog: Catalog, study_uid: str, series_uid: str, paths: Sequence[Path],
               datasets: Sequence[Dataset]) -> None:
    for ds, path in zip(datasets, paths, strict=True):
        catalog.record_instance(InstanceRecord(
            str(ds.SOPInstanceUID), series_uid, study_uid, str(ds.SOPClassUID), None, path,
            path.stat().st_size, "SCANNER", "MR", "MOLLI", len(paths),
        ))
    assert catalog.complete_series(series_uid, 0)
    catalog.route_series(series_uid, 0, ["molli"], "test")


def _run_next_job(pool: WorkerPool, catalog: Catalog) -> tuple[int, dict[str, Any],
                                                                dict[str, Dataset]]:
    """Run the next queued job: its generation, results.json and sent objects by kind."""
    job = catalog.claim_job()
    assert job is not None and job.analysis == "molli"
    pool.run_job(job)
    row = catalog.job(job.id)
    assert row is not None and row["state"] == "done", row
    summary = json.loads((Path(row["result_dir"]) / "results.json").read_text())
    sent = {
        str(r["kind"]): dcmread(r["path"])
        for r in catalog.query("SELECT kind, path FROM outbox WHERE job_id=?", (job.id,))
    }
    return job.generation, summary, sent


def test_molli_results_name_the_parametric_maps_of_each_generation(tmp_path: Path) -> None:
    datasets, _ = molli_tests.molli_datasets(17, levels=("mid", "apical"))
    paths = write_series(datasets, tmp_path / "molli")
    study_uid, series_uid = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    settings = Settings(
        data_dir=tmp_path / "node",
        destinations=(Destination("pacs", "PACS", "127.0.0.1", 11112),),
        analysis_options={"molli": {"segmenter": ClassicalSegmenter()}},
    )
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    try:
        pool = WorkerPool(settings, catalog, on_outputs=lambda: None)
        _molli_job(catalog, study_uid, series_uid, paths, datasets)
        runs = [_run_next_job(pool, catalog)]
        assert catalog.reanalyse_study(study_uid, "molli", "test re-analysis")
        runs.append(_run_next_job(pool, catalog))
    finally:
        catalog.close()

    assert [generation for generation, _, _ in runs] == [0, 1]
    inputs = _input_uids(datasets)
    for generation, summary, sent in runs:
        assert {KIND_T1, KIND_FIT, "seg", "sr"} <= set(sent)
        written = {str(getattr(ds, k)) for ds in sent.values()
                   for k in ("SeriesInstanceUID", "SOPInstanceUID")}
        assert _dangling(summary, inputs | written) == [], generation
        for kind, ds in sent.items():
            assert summary["outputs"][kind]["series_instance_uid"] == ds.SeriesInstanceUID
            assert summary["outputs"][kind]["sop_instance_uid"] == ds.SOPInstanceUID
        molli = summary["extra"]["molli"]
        assert "uids" not in molli
        assert UNWRITTEN_SOP_INSTANCE_UID not in json.dumps(summary)
        t1_map = sent[KIND_T1]
        _check_fitted_frame_rows(summary["slices"], t1_map)
        _check_fitted_frame_rows(summary["extra"]["slices"], t1_map)
    # The re-analysis' results name its own maps, none of the first generation's.
    first_sent, second = runs[0][2], runs[1][1]
    named = {uid for _, uid in _named_uids(second)}
    for kind in (KIND_T1, KIND_FIT):
        old = {str(first_sent[kind].SeriesInstanceUID), str(first_sent[kind].SOPInstanceUID)}
        assert not old & named, kind


# ----------------------------------------------------------------------------- ECV, pipeline


def test_ecv_results_name_the_ecv_map_of_each_generation(tmp_path: Path) -> None:
    from node.inputs.loader import load_series
    from plugins.ecv import COMPANION_NATIVE
    from tests.node.ecv_fixtures import native_and_postcontrast

    native, post = native_and_postcontrast()
    paths = write_series(post, tmp_path / "post")
    options = {"companions": {COMPANION_NATIVE: load_series(native)}, "haematocrit": 0.42,
               "segmenter": ClassicalSegmenter()}
    known = _input_uids(post) | _input_uids(native)
    maps = []
    for generation in (0, 1):
        run = run_analysis(paths, "ecv", options, writer_settings("cmr-node", None),
                           Lineage(generation))
        files = write_outputs(run, tmp_path / f"out-{generation}")
        summary = result_summary(run, files)
        written = {str(getattr(o.dataset, k)) for o in run.outputs
                   for k in ("SeriesInstanceUID", "SOPInstanceUID")}
        assert _dangling(summary, known | written) == [], generation
        assert "uids" not in summary["extra"]["ecv"]
        ecv_map = next(o.dataset for o in run.outputs if o.kind == KIND_ECV)
        assert summary["outputs"][KIND_ECV] == {
            "file": "ecv-map.dcm", "series_instance_uid": ecv_map.SeriesInstanceUID,
            "sop_instance_uid": ecv_map.SOPInstanceUID,
        }
        maps.append({str(ecv_map.SeriesInstanceUID), str(ecv_map.SOPInstanceUID)})
    assert not maps[0] & maps[1]


# ----------------------------------------------------------------------------- the guard


def test_a_frame_of_an_unwritten_object_is_refused(tmp_path: Path) -> None:
    """A result naming a fitted frame the outputs do not name cannot become results.json."""
    datasets, _ = molli_tests.molli_datasets(17, levels=("mid",))
    paths = write_series(datasets, tmp_path / "molli")
    run = run_analysis(paths, "molli", {"segmenter": ClassicalSegmenter()},
                       writer_settings("cmr-node", None))
    fitted = run.result.extra["molli"]["maps"].series
    unwritten = PipelineRun(fitted, run.result, run.outputs, run.timings)
    with pytest.raises(OutputWriteError, match="did not write"):
        result_summary(unwritten, [])
