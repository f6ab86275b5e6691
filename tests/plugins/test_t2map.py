"""The T2-map analysis on phantom T2 maps written as DICOM and loaded by the node's loader."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.uid import generate_uid

from models.phantoms.dicom_build import stored_to_physical, write_series
from models.phantoms.dicom_maps import t2map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from node.inputs.loader import load_series_files
from node.routing import load_rules, route
from node.service import read_headers
from plugins import PLUGIN_NAMES
from plugins.api import Label, Severity
from plugins.t1map.analysis import conservative_core
from plugins.t2map import T2, QCCode, analyse
from tests.networks import node_options

#: Slice mean T2 over the analysis' core minus the same statistic over the phantom's exact
#: labels.  Measured on the 57 usable of 60 lesion-free phantom slices (10 subjects at each of
#: 1.5 and 3 T): median 0.9 / 0.6 ms, 90th percentile 4.6 / 1.8 ms; the core leaves the
#: borders out, so contour errors of a pixel move it little.  A wrong structure moves it by
#: tens of ms (the two largest differences measured: 16.9 and 51.4 ms).
CORE_AGREEMENT_MS = 6.0


@pytest.fixture(scope="module", params=[1.5, 3.0], ids=["1.5T", "3T"])
def phantom(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Any]:
    field = float(request.param)
    rng = np.random.default_rng([2718, int(field * 10)])
    heart = make_heart_case(rng, field_strength_t=field, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=field, heart=heart)
    datasets = t2map_series_datasets(slices, vendor="siemens", study=StudyInfo.synthetic(27),
                                     rng=rng, field_strength_t=field)
    paths = write_series(datasets, tmp_path_factory.mktemp(f"t2-{field}"))
    series, _ = load_series_files(paths, "t2map")
    return {"field": field, "slices": slices, "datasets": datasets, "paths": paths,
            "series": series}


def test_every_slice_is_segmented_and_measured_like_the_exact_labels(phantom):
    result = analyse(phantom["series"], node_options("t2map"))
    assert result.analysis == "t2map" and not result.has_failure
    assert len(result.slices) == len(phantom["slices"]) == 3
    by_uid = {str(ds.SOPInstanceUID): (ds, s)
              for ds, s in zip(phantom["datasets"], phantom["slices"], strict=True)}
    for sl in result.slices:
        frame = phantom["series"].frames[sl.frame_index]
        ds, truth = by_uid[frame.sop_instance_uid]
        values = stored_to_physical(ds)
        exact = float(values[conservative_core(truth.labels, truth.pixel_spacing)].mean())
        [mean] = [m for m in sl.measurements if m.key == "myocardium_t2_mean_ms"]
        assert mean.name == T2 and mean.unit.value == "ms" and mean.value is not None
        assert abs(mean.value - exact) <= CORE_AGREEMENT_MS, (sl.level, mean.value, exact)
        mask = sl.labels == Label.MYOCARDIUM
        true_mask = truth.labels == Label.MYOCARDIUM
        dice = 2 * (mask & true_mask).sum() / (mask.sum() + true_mask.sum())
        assert dice >= 0.7, (sl.level, dice)
    assert {sl.level for sl in result.slices} == {"basal", "mid", "apical"}
    keys = {m.key for m in result.measurements}
    assert "global_myocardium_t2_mean_ms" in keys
    sites = {m.site.meaning for m in result.measurements if m.site is not None}
    assert len(sites) == 16  # every AHA segment of a three-level stack
    assert "global_myocardium_t2_z_score" not in keys  # no range shipped
    [info] = [f for f in result.qc_flags if f.code == QCCode.NO_REFERENCE_RANGE]
    assert info.severity is Severity.INFO and "no reference range" in info.message


def test_a_site_range_matching_vendor_sequence_and_field_gives_a_z_score(phantom):
    series = phantom["series"]
    acq = series.acquisition
    assert (acq.vendor, acq.sequence_family) == ("siemens", "t2_prep")
    site = {"local": {"vendor": "siemens", "sequence_family": "t2_prep",
                      "field_strength_t": phantom["field"], "mean_ms": 50.0, "sd_ms": 4.0,
                      "source": "test range, not a clinical value"}}
    result = analyse(series, node_options("t2map", normal_ranges=site))
    values = {m.key: m.value for m in result.measurements}
    mean = values["global_myocardium_t2_mean_ms"]
    assert mean is not None
    assert values["global_myocardium_t2_z_score"] == pytest.approx((mean - 50.0) / 4.0, abs=0.01)
    other = {"local": {**site["local"], "field_strength_t": 4.5 - phantom["field"]}}
    assert "global_myocardium_t2_z_score" not in {
        m.key for m in analyse(series, node_options("t2map", normal_ranges=other)).measurements}


def test_a_map_not_in_ms_is_not_analysed(phantom):
    series = phantom["series"]
    unitless = dataclasses.replace(series, frames=tuple(
        dataclasses.replace(f, units="1") for f in series.frames))
    result = analyse(unitless, node_options("t2map"))
    assert result.has_failure and not result.slices
    assert [f.code for f in result.qc_flags] == [QCCode.UNITS_NOT_MS]


def test_no_myocardium_is_a_failure_not_a_number(phantom):
    series = phantom["series"]
    blank = dataclasses.replace(series, frames=tuple(
        dataclasses.replace(f, pixels=np.zeros_like(f.pixels)) for f in series.frames))
    result = analyse(blank, node_options("t2map"))
    codes = [f.code for f in result.qc_flags]
    assert result.has_failure and QCCode.NO_USABLE_SLICE in codes
    assert codes.count(QCCode.SLICE_NOT_SEGMENTED) == len(series.frames)
    assert not result.measurements


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_phantom_t2_maps_of_each_vendor_are_routed_to_t2map(vendor: str, tmp_path: Path):
    rng = np.random.default_rng(31)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, levels=("mid",))
    datasets = t2map_series_datasets(slices, vendor=vendor, study=StudyInfo.synthetic(31))
    rules = load_rules(None)
    headers = read_headers(write_series(datasets, tmp_path))
    assert route(rules, rules.facts(headers), frozenset(PLUGIN_NAMES)).analysis == "t2map"
    # Without the plugin installed the map is not sent to the T1 analysis either.
    without = route(rules, rules.facts(headers), frozenset(PLUGIN_NAMES) - {"t2map"})
    assert without.analysis is None


def test_t2_prepared_source_images_are_not_routed(tmp_path: Path):
    rng = np.random.default_rng(32)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, levels=("mid",))
    [ds] = t2map_series_datasets(slices, vendor="siemens", study=StudyInfo.synthetic(32))
    # Three T2-prepared images of one slice (ORIGINAL, magnitude), as before the fit.
    sources = []
    for number, prep_ms in enumerate((0, 25, 55), 1):
        image = ds.copy()
        image.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        image.SOPInstanceUID = generate_uid()
        image.InstanceNumber = number
        image.ImageComments = f"T2prep {prep_ms} ms"
        sources.append(image)
    rules = load_rules(None)
    headers = read_headers(write_series(sources, tmp_path))
    decision = route(rules, rules.facts(headers), frozenset(PLUGIN_NAMES))
    assert decision.analysis is None
    [trace] = [t for t in decision.traces if t.analysis == "t2map"]
    assert "source-images-per-slice" in trace.summary()
