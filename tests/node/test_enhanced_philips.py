"""The Philips-style native MOLLI series as one Enhanced MR Image instance (issue 19).

The enhanced object (:mod:`models.phantoms.enhanced_mr`) holds, in one multi-frame instance,
the inversion-recovery source frames (inversion time in the per-frame MR Modifier
InversionTimes) and the scanner's T1-map frames.  The loader must take the map frames for
t1map and the source frames with their inversion times for molli; the router must route it as
it routes the classic Philips series of the same acquisition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from models.phantoms.dicom_build import stored_to_physical, write_series
from models.phantoms.enhanced_mr import write_enhanced_molli_study
from node.inputs.loader import load_series_files
from node.jobs.pipeline import run_analysis, writer_settings
from node.routing import load_rules, route
from node.service import read_headers
from tests.netutil import dciodvfy_errors
from tests.networks import node_options

N_SLICES = 3


@pytest.fixture(scope="module")
def enhanced(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_enhanced_molli_study(tmp_path_factory.mktemp("enhanced"), seed=19,
                                      n_slices=N_SLICES)


def test_enhanced_object_is_one_valid_enhanced_mr_instance(enhanced: dict) -> None:
    ds = dcmread(enhanced["path"])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.1"
    assert int(ds.NumberOfFrames) == len(enhanced["classic"])
    assert dciodvfy_errors(enhanced["path"]) == []


def test_loader_takes_the_map_frames_for_t1map(enhanced: dict) -> None:
    loaded, _ = load_series_files([enhanced["path"]], "t1map")
    classic_maps = [ds for ds in enhanced["classic"] if str(ds.ImageType[0]) == "DERIVED"]
    assert len(loaded.frames) == N_SLICES == len(classic_maps)
    assert {frame.units for frame in loaded.frames} == {"ms"}
    # Same values, in ms, as the classic maps of the same acquisition (base to apex).
    by_position = sorted(loaded.frames, key=lambda f: f.slice_location)
    expected = sorted(classic_maps, key=lambda ds: float(ds.SliceLocation))
    for frame, ds in zip(by_position, expected, strict=True):
        assert np.allclose(frame.pixels, stored_to_physical(ds), atol=1e-3)
        assert frame.attributes.get("InversionTime") is None


def test_loader_gives_molli_the_source_frames_with_their_inversion_times(
    enhanced: dict,
) -> None:
    loaded, _ = load_series_files([enhanced["path"]], "molli")
    sources = [f for f in loaded.frames if f.attributes.get("InversionTime") is not None]
    classic_sources = [ds for ds in enhanced["classic"] if str(ds.ImageType[0]) == "ORIGINAL"]
    assert len(sources) == len(classic_sources) > 0
    got = sorted(round(float(f.attributes["InversionTime"]), 2) for f in sources)
    expected = sorted(round(float(ds[0x20051572].value), 2) for ds in classic_sources)
    assert got == expected


def test_router_routes_enhanced_like_the_classic_philips_series(
    enhanced: dict, tmp_path: Path,
) -> None:
    rules = load_rules()
    classic_paths = write_series(enhanced["classic"], tmp_path / "classic")
    classic = route(rules, rules.facts(read_headers(classic_paths)))
    multi = route(rules, rules.facts(read_headers([enhanced["path"]])))
    assert classic.analysis == multi.analysis == "t1map"
    assert set(multi.also) == set(classic.also) == {"molli"}


def test_t1map_seg_derives_from_the_map_frames(enhanced: dict, tmp_path: Path) -> None:
    # Several frames share each slice position (the IR frames and the map): the SEG has one
    # plane per analysed map frame and derives each from that map frame only.
    run = run_analysis([enhanced["path"]], "t1map", node_options("t1map"),
                       writer_settings("cmr-node", None))
    seg = next(o.dataset for o in run.outputs if o.kind == "seg")
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    ds = dcmread(enhanced["path"], stop_before_pixels=True)
    map_frames = {
        number for number, item in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1)
        if "T1_MAP" in item.MRImageFrameTypeSequence[0].FrameType
    }
    referenced = {
        int(source.ReferencedFrameNumber)
        for item in seg.PerFrameFunctionalGroupsSequence
        for derivation in item.DerivationImageSequence
        for source in derivation.SourceImageSequence
    }
    assert referenced == map_frames and len(map_frames) == N_SLICES


def test_molli_fit_and_scanner_map_comparison_match_the_classic_series(
    enhanced: dict, tmp_path: Path,
) -> None:
    # The same acquisition, enhanced or classic, gives the same MOLLI fit and comparison.
    classic_paths = write_series(enhanced["classic"], tmp_path / "classic")
    settings = writer_settings("cmr-node", None)
    options = node_options("molli")
    multi = run_analysis([enhanced["path"]], "molli", options, settings).result.extra["molli"]
    classic = run_analysis(classic_paths, "molli", options, settings).result.extra["molli"]
    assert len(multi["scanner_map_comparison"]) == N_SLICES
    assert multi["scanner_map_comparison"] == classic["scanner_map_comparison"]
