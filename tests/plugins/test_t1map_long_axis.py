"""Four-chamber long-axis frames in the T1-map analysis: septal and lateral wall T1."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pytest

from models.phantoms.dicom_maps import t1map_long_axis_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.heart_sampling import make_heart_case
from models.phantoms.long_axis import LongAxisSlice, make_t1map_long_axis
from models.phantoms.long_axis_rendering import Wall
from models.phantoms.t1map import make_t1map_stack
from node.inputs.loader import load_series
from plugins.api import Label, LoadedSeries, SegmentationOutput, Severity, SourceFrame
from plugins.t1map import analyse
from plugins.t1map.analysis import conservative_core
from plugins.t1map.long_axis import (
    LATERAL_WALL,
    LEVEL_4CH,
    SEPTUM,
    LongAxisCode,
    long_axis_frames,
    long_axis_segmenter,
    wall_geometry,
)
from plugins.t1map.qc import QCCode

SHAPE = (112, 112)
SPACING = (2.0, 2.0)
#: A wall mean over >= ~40 mid-wall core pixels with 20-40 ms correlated pixel noise has an
#: SE of ~10 ms; with texture and residual partial volume 35 ms bounds a correctly found wall
#: (septal and lateral true values differ by < 25 ms, so swapping walls is not caught by this
#: alone: the test below checks the sides separately).
WALL_TOLERANCE_MS = 35.0


class _TruthSegmenter:
    """Returns the phantom's exact labels for the frame of the same shape (test double)."""

    name = "truth"
    version = "0"
    weights_sha256: str | None = None

    def __init__(self, labels: Mapping[tuple[int, int], npt.NDArray[np.uint8]]) -> None:
        self._labels = labels

    def segment(self, t1_ms: npt.NDArray[np.float32], pixel_spacing: tuple[float, float],
                field_strength_t: float | None) -> SegmentationOutput:
        return SegmentationOutput(self._labels[t1_ms.shape].copy(), 0.05)


@pytest.fixture(scope="module")
def view() -> LongAxisSlice:
    rng = np.random.default_rng(77)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0,
                            phenotype="normal")
    return make_t1map_long_axis(rng, heart=heart, shape=SHAPE, pixel_spacing=SPACING)


Orientation = tuple[float, float, float, float, float, float]


def _frame(pixels: npt.NDArray[np.float32], position: tuple[float, float, float],
           orientation: Orientation, number: int) -> SourceFrame:
    return SourceFrame(
        pixels=pixels, sop_instance_uid=f"2.25.1.{number}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4", frame_number=None,
        image_position=position, image_orientation=orientation, pixel_spacing=SPACING,
        slice_thickness=8.0, units="ms", attributes={"InstanceNumber": number},
    )


SAX_ORIENTATION: Orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
LAX_ORIENTATION: Orientation = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _series(frames: tuple[SourceFrame, ...], description: str = "MOLLI T1 MAP"
            ) -> LoadedSeries:
    header = {"Modality": "MR", "MagneticFieldStrength": 1.5, "SeriesDescription": description}
    return LoadedSeries("2.25.1.0", "2.25.1.1", frames, header)


def test_frames_are_long_axis_by_geometry_or_by_name() -> None:
    pixels = np.zeros(SHAPE, np.float32)
    sax = tuple(_frame(pixels, (0.0, 0.0, 8.0 * k), SAX_ORIENTATION, k) for k in range(3))
    lax = _frame(pixels, (0.0, 0.0, 0.0), LAX_ORIENTATION, 9)
    assert long_axis_frames(_series(sax), [0, 1, 2]) == set()
    assert long_axis_frames(_series((*sax, lax)), [0, 1, 2]) == {3}
    # A slightly tilted frame is still short axis (not a long-axis view).
    tilted = _frame(pixels, (0.0, 0.0, 30.0), (1.0, 0.0, 0.0, 0.0, 0.95, 0.31), 10)
    assert long_axis_frames(_series((*sax, tilted)), [0, 1, 2]) == set()
    for name in ("MOLLI_5(3)3_4CH_T1MAP", "T1map_MOLLI 4CH", "MOLLI T1 MAP 4-Chamber",
                 "T1 map HLA", "MOLLI LAX"):
        assert long_axis_frames(_series((lax,), name), [0]) == {0}, name
    for name in ("MOLLI_5(3)3_SAX_T1MAP", "T1map_MOLLI SAX", "MOLLI T1 MAP"):
        assert long_axis_frames(_series((lax,), name), [0]) == set(), name


def test_wall_geometry_finds_septum_and_lateral_wall(view: LongAxisSlice) -> None:
    geometry = wall_geometry(view.labels, SPACING)
    assert geometry is not None
    assert geometry.septal_sign != 0
    # The phantom's apex is at the top of the image: the axis points up (negative rows).
    assert geometry.axis[0] < -0.9
    myo = view.labels == Label.MYOCARDIUM
    septal, lateral = geometry.wall_masks(myo)
    assert septal.sum() > 50 and lateral.sum() > 50
    assert np.mean(view.walls[septal] == Wall.SEPTAL) > 0.9
    assert np.mean(view.walls[lateral] == Wall.LATERAL) > 0.9
    without_rv = np.where(view.labels == Label.RV_BLOOD_POOL, 0, view.labels).astype(np.uint8)
    no_rv = wall_geometry(without_rv, SPACING)
    assert no_rv is not None and no_rv.septal_sign == 0
    assert not no_rv.wall_masks(myo)[0].any()


def test_four_chamber_series_reports_septal_and_lateral_t1(view: LongAxisSlice) -> None:
    datasets = t1map_long_axis_series_datasets(view, study=StudyInfo.synthetic(77))
    series = load_series(datasets)
    result = analyse(series, {"segmenter": _TruthSegmenter({view.shape: view.labels})})
    assert [s.level for s in result.slices] == [LEVEL_4CH]
    found = {m.key: m for m in result.slices[0].measurements}
    truth = view.truth
    for wall, site in (("septal", SEPTUM), ("lateral", LATERAL_WALL)):
        mean = found[f"{wall}_t1_mean_ms"]
        assert mean.site == site
        assert mean.value is not None
        assert mean.value == pytest.approx(truth[f"{wall}_t1_true_ms"], abs=WALL_TOLERANCE_MS)
        sd = found[f"{wall}_t1_sd_ms"]
        assert sd.value is not None and 0.0 < sd.value < 150.0
        pixels = found[f"{wall}_core_pixels"].value
        assert pixels is not None and pixels > 20
    core = conservative_core(view.labels, SPACING)
    geometry = wall_geometry(view.labels, SPACING)
    assert geometry is not None
    septal, lateral = geometry.wall_masks(core)
    stored = np.asarray(series.frames[0].pixels, dtype=np.float64)  # after DICOM encoding
    assert found["septal_t1_mean_ms"].value == pytest.approx(float(stored[septal].mean()),
                                                             abs=0.01)
    assert found["lateral_t1_mean_ms"].value == pytest.approx(float(stored[lateral].mean()),
                                                              abs=0.01)
    series_values = {m.key: m for m in result.measurements}
    assert series_values["four_chamber_septal_t1_mean_ms"].value == pytest.approx(
        found["septal_t1_mean_ms"].value)
    septal_mean, lateral_mean = (found["septal_t1_mean_ms"].value,
                                 found["lateral_t1_mean_ms"].value)
    assert septal_mean is not None and lateral_mean is not None
    assert series_values["four_chamber_septal_minus_lateral_t1_ms"].value == pytest.approx(
        septal_mean - lateral_mean, abs=0.02)
    codes_found = {f.code for f in result.qc_flags}
    assert QCCode.NO_SLICE_ANALYSED not in codes_found
    assert QCCode.NOT_SHORT_AXIS_STACK not in codes_found
    assert "aha" not in result.extra
    assert result.extra["slices"][0]["level"] == LEVEL_4CH
    assert result.slices[0].analysed_region is not None
    assert result.slices[0].analysed_region.any()


def test_without_rv_no_wall_values_and_a_warning(view: LongAxisSlice) -> None:
    labels = np.where(view.labels == Label.RV_BLOOD_POOL, 0, view.labels).astype(np.uint8)
    frame = _frame(view.t1_ms, (0.0, 0.0, 0.0), LAX_ORIENTATION, 1)
    result = analyse(_series((frame,), "MOLLI_4CH_T1MAP"),
                     {"segmenter": _TruthSegmenter({view.shape: labels})})
    flags = [f for f in result.qc_flags if f.code == LongAxisCode.SEPTUM_NOT_IDENTIFIED]
    assert len(flags) == 1 and flags[0].severity is Severity.WARNING
    found = {m.key: m for m in result.slices[0].measurements}
    assert found["septal_t1_mean_ms"].value is None
    assert "septum" in str(found["septal_t1_mean_ms"].reason)


def test_long_axis_frame_in_a_short_axis_series_keeps_the_stack_levels(
        view: LongAxisSlice) -> None:
    rng = np.random.default_rng(5)
    heart, sax = make_t1map_stack(rng, shape=SHAPE, pixel_spacing=SPACING,
                                  heart=view.heart)
    frames = [_frame(s.t1_ms, (0.0, 0.0, 8.0 * k), SAX_ORIENTATION, k)
              for k, s in enumerate(sax)]
    # The four-chamber frame crosses the stack (orientation perpendicular to it).
    frames.append(_frame(view.t1_ms, (0.0, 60.0, 40.0), LAX_ORIENTATION, 9))
    lookup: dict[bytes, npt.NDArray[np.uint8]] = {}

    class _ByContent(_TruthSegmenter):
        def segment(self, t1_ms: npt.NDArray[np.float32], pixel_spacing: tuple[float, float],
                    field_strength_t: float | None) -> SegmentationOutput:
            return SegmentationOutput(lookup[t1_ms.tobytes()].copy(), 0.05)

    for t1_ms, labels in [(s.t1_ms, s.labels) for s in sax] + [(view.t1_ms, view.labels)]:
        lookup[np.asarray(t1_ms, np.float32).tobytes()] = labels
    result = analyse(_series(tuple(frames)), {"segmenter": _ByContent({})})
    levels = {s.frame_index: s.level for s in result.slices}
    assert levels == {0: "basal", 1: "mid", 2: "apical", 3: LEVEL_4CH}
    assert "aha" in result.extra
    keys = {m.key for m in result.measurements}
    assert {"global_myocardium_t1_mean_ms", "four_chamber_septal_t1_mean_ms"} <= keys
    assert heart is view.heart


def test_segmenter_long_axis_variant_is_used_when_offered() -> None:
    class _WithVariant(_TruthSegmenter):
        def for_long_axis(self) -> _TruthSegmenter:
            return _TruthSegmenter({})

    plain = _TruthSegmenter({})
    assert long_axis_segmenter(plain) is plain
    variant = long_axis_segmenter(_WithVariant({}))
    assert type(variant) is _TruthSegmenter
