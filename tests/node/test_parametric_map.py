"""Tests of the Parametric Map writer for T1 fitted from MOLLI source images.

The maps are built from a real ``molli`` result on a two-slice phantom source series, checked
with dciodvfy, and read back through :mod:`node.loader`: T1 must survive within the storage
quantisation (half of :data:`~node.writers.parametric_map.T1_STEP_MS`), with the UIDs the
analysis chose and the source geometry.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from node.loader import load_series, load_series_files
from node.pipeline import encode_dataset
from node.writers import OutputObject, WriterError, WriterSettings, build_outputs
from node.writers.parametric_map import (
    KIND_FIT,
    KIND_T1,
    R_SQUARED_STEP,
    T1_STEP_MS,
    build_parametric_maps,
)
from plugins.molli import analyse
from plugins.t1map import ClassicalSegmenter
from tests.netutil import dciodvfy_errors

molli_tests = pytest.importorskip("tests.plugins.test_molli")

SETTINGS = WriterSettings(software_versions="0.1.0")
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="no dciodvfy")


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    datasets, _ = molli_tests.molli_datasets(17, levels=("mid", "apical"))
    series = load_series(datasets)
    result = analyse(series, {"segmenter": ClassicalSegmenter()})
    outputs = build_parametric_maps(result, datasets, settings=SETTINGS)
    return {"datasets": datasets, "series": series, "result": result, "outputs": outputs}


@pytest.fixture(scope="module")
def files(case: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pm")
    paths = {}
    for output in case["outputs"]:
        path = folder / output.filename
        path.write_bytes(encode_dataset(output.dataset))
        paths[output.kind] = path
    return paths


def test_two_maps_with_the_analysis_uids(case: dict[str, Any]) -> None:
    outputs: list[OutputObject] = case["outputs"]
    uids = case["result"].extra["molli"]["uids"]
    assert [o.kind for o in outputs] == [KIND_T1, KIND_FIT]
    t1, fit = (o.dataset for o in outputs)
    assert (t1.SOPInstanceUID, t1.SeriesInstanceUID) == (
        uids["t1_sop_instance_uid"],
        uids["t1_series_instance_uid"],
    )
    assert (fit.SOPInstanceUID, fit.SeriesInstanceUID) == (
        uids["fit_sop_instance_uid"],
        uids["fit_series_instance_uid"],
    )
    assert t1.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert t1.StudyInstanceUID == case["series"].study_instance_uid
    assert int(t1.NumberOfFrames) == 2


def test_real_world_value_mappings(case: dict[str, Any]) -> None:
    t1, fit = (o.dataset for o in case["outputs"])
    mapping = t1.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.LUTLabel == "T1"
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "ms"
    assert mapping.MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"
    assert float(mapping.RealWorldValueSlope) == pytest.approx(T1_STEP_MS)
    quantity = mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
    assert (quantity.CodeValue, quantity.CodingSchemeDesignator) == ("113063", "DCM")
    mapping = fit.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    quantity = mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0]
    assert (quantity.CodeValue, quantity.CodingSchemeDesignator) == ("126220", "DCM")
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "1"


def test_source_images_are_referenced(case: dict[str, Any]) -> None:
    t1 = case["outputs"][0].dataset
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for series in t1.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == {str(ds.SOPInstanceUID) for ds in case["datasets"]}


@needs_dciodvfy
def test_dciodvfy_reports_no_error(files: dict[str, Path]) -> None:
    for kind in (KIND_T1, KIND_FIT):
        assert dciodvfy_errors(files[kind]) == [], kind


def test_round_trip_through_the_loader(case: dict[str, Any], files: dict[str, Path]) -> None:
    maps = case["result"].extra["molli"]["maps"]
    loaded, _ = load_series_files([files[KIND_T1]])
    assert len(loaded.frames) == len(maps.t1_ms)
    for frame, fitted, original in zip(loaded.frames, maps.t1_ms, maps.series.frames, strict=True):
        assert frame.units == "ms"
        assert frame.sop_instance_uid == original.sop_instance_uid
        assert frame.frame_number == original.frame_number
        np.testing.assert_allclose(frame.image_position, original.image_position, atol=1e-3)
        np.testing.assert_allclose(frame.pixel_spacing, original.pixel_spacing, atol=1e-6)
        assert np.max(np.abs(frame.pixels - fitted)) <= T1_STEP_MS / 2 + 1e-3
    loaded_fit, _ = load_series_files([files[KIND_FIT]])
    for frame, r2 in zip(loaded_fit.frames, maps.r_squared, strict=True):
        expected = np.clip(r2, 0.0, 1.0)
        assert np.max(np.abs(frame.pixels - expected)) <= R_SQUARED_STEP / 2 + 1e-6


def test_seg_and_sr_reference_the_parametric_map(case: dict[str, Any], tmp_path: Path) -> None:
    result = case["result"]
    fitted = result.extra["molli"]["maps"].series
    t1_map: Dataset = case["outputs"][0].dataset
    outputs = build_outputs(result, fitted, [t1_map], settings=SETTINGS)
    seg = next(o.dataset for o in outputs if o.kind == "seg")
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == {str(t1_map.SOPInstanceUID)}
    if shutil.which("dciodvfy"):
        path = tmp_path / "seg.dcm"
        path.write_bytes(encode_dataset(seg))
        assert dciodvfy_errors(path) == []


def test_result_without_maps_is_refused(case: dict[str, Any]) -> None:
    result = case["result"]
    extra = {k: v for k, v in result.extra.items() if k != "molli"}
    with pytest.raises(WriterError, match="no fitted MOLLI maps"):
        build_parametric_maps(
            dataclasses.replace(result, extra=extra), case["datasets"], settings=SETTINGS
        )


def test_missing_source_image_is_refused(case: dict[str, Any]) -> None:
    with pytest.raises(WriterError, match="not among the sources"):
        build_parametric_maps(case["result"], case["datasets"][1:], settings=SETTINGS)
