"""Tests of the Parametric Map writer for T1 fitted from MOLLI source images.

The maps are built from a real ``molli`` result on a two-slice phantom source series, checked
with dciodvfy, and read back through :mod:`node.inputs.loader`: T1 must survive within the storage
quantisation (half of :data:`~node.outputs.writers.parametric_map.T1_STEP_MS`), with the source
geometry.  The maps' UIDs follow the analysis generation as the SEG's and SRs' do: a
re-analysis gets new ones, a restart of the same generation the same ones.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from node.analyses import descriptor
from node.inputs.loader import load_series, load_series_files
from node.jobs.pipeline import encode_dataset
from node.outputs.uids import content_digest, derived_uid
from node.outputs.writers import Lineage, OutputObject, WriterError, WriterSettings, build_outputs
from node.outputs.writers.parametric_map import (
    KIND_ECV,
    KIND_FIT,
    KIND_T1,
    R_SQUARED_STEP,
    T1_STEP_MS,
    build_parametric_maps,
    fitted_series,
)
from plugins.molli import analyse
from plugins.t1map import ClassicalSegmenter
from tests.netutil import dciodvfy_errors
from tests.networks import node_options

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


def test_two_maps_with_the_generation_uids(case: dict[str, Any]) -> None:
    outputs: list[OutputObject] = case["outputs"]
    result = case["result"]
    assert [o.kind for o in outputs] == [KIND_T1, KIND_FIT]
    t1, fit = (o.dataset for o in outputs)
    digest = content_digest(str(ds.SOPInstanceUID) for ds in case["datasets"])
    for ds, kind in ((t1, KIND_T1), (fit, KIND_FIT)):
        lineage = (kind, "content", digest, "generation", 0)
        assert (ds.SeriesInstanceUID, ds.SOPInstanceUID) == tuple(
            derived_uid(result.series_instance_uid, "molli",
                        result.provenance.algorithm_version, part, *lineage)
            for part in ("series", "instance"))
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
    originals = fitted_series(case["result"], case["outputs"][0].dataset).frames
    for frame, fitted, original in zip(loaded.frames, maps.t1_ms, originals, strict=True):
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
    t1_map: Dataset = case["outputs"][0].dataset
    fitted = fitted_series(result, t1_map)
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


def _uids(outputs: list[OutputObject]) -> dict[str, tuple[str, str]]:
    return {o.kind: (str(o.dataset.SeriesInstanceUID), str(o.dataset.SOPInstanceUID))
            for o in outputs}


def test_a_reanalysis_gets_new_map_uids_and_a_restart_the_same(case: dict[str, Any]) -> None:
    build = descriptor("molli").build_outputs
    result, datasets = case["result"], case["datasets"]
    first_series, first = build(result, case["series"], datasets, SETTINGS, Lineage(0))
    _, again = build(result, case["series"], datasets, SETTINGS, Lineage(0))
    _, second = build(result, case["series"], datasets, SETTINGS, Lineage(1))
    assert _uids(again) == _uids(first)  # a restart re-sends identical objects
    old, new = _uids(first), _uids(second)
    assert set(old) == set(new) >= {KIND_T1, KIND_FIT, "seg", "sr"}
    for kind in old:
        assert not set(old[kind]) & set(new[kind]), kind
    # The SEG of each generation references that generation's T1 map.
    for outputs in (first, second):
        by_kind = {o.kind: o.dataset for o in outputs}
        referenced = {str(item.ReferencedSOPInstanceUID)
                      for series in by_kind["seg"].ReferencedSeriesSequence
                      for item in series.ReferencedInstanceSequence}
        assert referenced == {str(by_kind[KIND_T1].SOPInstanceUID)}
    assert {f.sop_instance_uid for f in first_series.frames} == {old[KIND_T1][1]}
    assert by_kind[KIND_T1].SeriesDescription.endswith("(rev 1)")


def test_the_ecv_map_gets_new_uids_per_generation() -> None:
    from plugins.ecv import COMPANION_NATIVE
    from plugins.ecv import analyse as analyse_ecv
    from tests.node.ecv_fixtures import native_and_postcontrast

    native, post = native_and_postcontrast()
    series = load_series(post)
    result = analyse_ecv(series, node_options(
        "ecv", companions={COMPANION_NATIVE: load_series(native)}, haematocrit=0.42))
    build = descriptor("ecv").build_outputs
    uids = [_uids(build(result, series, post, SETTINGS, Lineage(g))[1]) for g in (0, 0, 1)]
    assert KIND_ECV in uids[0] and uids[1] == uids[0]
    assert not set(uids[0][KIND_ECV]) & set(uids[2][KIND_ECV])
