"""LGE + cine fusion: pairing, resampling and alignment of the cine; training pairs; network.

Pairing and alignment are checked against known geometry: a phantom cine with its own matrix,
spacing and field-of-view centre and a known breath-hold shift must be brought back onto the
LGE anatomy, a cine frame at another slice position must not be paired, and the nearest
trigger time wins.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.phantoms.cine import make_cine_slice
from models.phantoms.lge import make_lge_stack
from models.runtime.lgeseg.fusion_segmenter import (
    DEFAULT_FUSION_METADATA,
    DEFAULT_FUSION_WEIGHTS,
    UNetFusionSegmenter,
)
from models.runtime.lgeseg.segmenter import DEFAULT_WEIGHTS, UNetLgeSegmenter
from models.runtime.segmentation import ModelUnavailableError
from models.runtime.unet import UNet
from models.training.lgeseg.data import training_stack
from models.training.lgeseg.fusion_data import (
    FUSION_TRAIN_SEED_START,
    FUSION_VAL_SEED_START,
    IDENTITY_ORIENTATION,
    augment_pair,
    cached_pair,
    matched_cines,
)
from models.training.lgeseg.train_fusion import FUSION_ARCHITECTURE, initial_state
from plugins.api import Label, LoadedSeries, SourceFrame
from plugins.lge.cine import (
    CineMatch,
    CineUnmatched,
    UnmatchedReason,
    align_cine,
    pair_cine_frames,
    register_translation,
    resample_to_frame,
)
from plugins.lge.segmenter import LgeContrast

MYOCARDIAL = (int(Label.MYOCARDIUM), int(Label.SCAR), int(Label.MVO))


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    torch.set_num_threads(1)


def _frame(pixels: np.ndarray, position: tuple[float, float, float],
           spacing: tuple[float, float] = (1.5, 1.5),
           orientation: tuple[float, ...] = IDENTITY_ORIENTATION,
           trigger: float | None = 500.0, thickness: float | None = 8.0,
           uid: str = "1.2.3") -> SourceFrame:
    attributes = {} if trigger is None else {"TriggerTime": trigger}
    return SourceFrame(np.asarray(pixels, np.float32), uid, "1.2.840.10008.5.1.4.1.1.4", None,
                       position, orientation, spacing, thickness, "",  # type: ignore[arg-type]
                       attributes)


def _series(frames: list[SourceFrame]) -> LoadedSeries:
    return LoadedSeries("1.2", "1.2.9", tuple(frames), {})


def _centred(shape: tuple[int, int], spacing: tuple[float, float], centre: tuple[float, float],
             z: float = 0.0) -> tuple[float, float, float]:
    return (centre[0] - (shape[1] - 1) / 2.0 * spacing[1],
            centre[1] - (shape[0] - 1) / 2.0 * spacing[0], z)


# ----------------------------------------------------------------------------- pairing


def test_cine_at_the_same_position_and_nearest_phase_is_paired() -> None:
    lge = _frame(np.zeros((8, 8)), (0.0, 0.0, 0.0), trigger=520.0)
    frames = [
        _frame(np.zeros((10, 10)), (0.0, 0.0, z), trigger=t, uid=f"{z}-{t}")
        for z in (-10.0, 0.0, 10.0) for t in (0.0, 300.0, 500.0, 560.0)
    ]
    match = pair_cine_frames(lge, _series(frames))
    assert isinstance(match, CineMatch)
    chosen = frames[match.cine_index]
    assert chosen.image_position[2] == 0.0 and chosen.attributes["TriggerTime"] == 500.0
    assert match.phase_difference_ms == pytest.approx(20.0)


def test_cine_at_another_position_or_orientation_is_not_paired() -> None:
    lge = _frame(np.zeros((8, 8)), (0.0, 0.0, 0.0), thickness=8.0)
    # Nearest cine plane 4.5 mm away: more than half the 8 mm slice thickness.
    away = [_frame(np.zeros((8, 8)), (0.0, 0.0, z)) for z in (-14.5, 4.5, 14.5)]
    result = pair_cine_frames(lge, _series(away))
    assert isinstance(result, CineUnmatched)
    assert result.reason is UnmatchedReason.NO_POSITION and "4.5 mm" in result.detail
    # 3.5 mm is within half the thickness.
    assert isinstance(pair_cine_frames(lge, _series(
        [_frame(np.zeros((8, 8)), (0.0, 0.0, 3.5))])), CineMatch)
    tilted = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # a long-axis plane
    result = pair_cine_frames(lge, _series([_frame(np.zeros((8, 8)), (0, 0, 0),
                                                   orientation=tilted)]))
    assert isinstance(result, CineUnmatched) and result.reason is UnmatchedReason.NOT_PARALLEL
    assert pair_cine_frames(lge, _series([])).reason is UnmatchedReason.NO_CINE  # type: ignore[union-attr]


def test_resampling_follows_patient_geometry() -> None:
    # A linear function of patient position survives resampling exactly (linear interpolation).
    def field(shape: tuple[int, int], spacing: tuple[float, float],
              position: tuple[float, float, float]) -> np.ndarray:
        rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
        x = position[0] + cols * spacing[1]
        y = position[1] + rows * spacing[0]
        return (3.0 * x - 2.0 * y + 1000.0).astype(np.float32)

    source_shape, source_spacing = (180, 220), (1.3, 1.3)
    source_position = _centred(source_shape, source_spacing, (12.0, -9.0))
    target_shape, target_spacing = (96, 128), (1.9, 1.7)
    target_position = _centred(target_shape, target_spacing, (0.0, 0.0), z=2.0)
    out = resample_to_frame(field(source_shape, source_spacing, source_position),
                            source_position, IDENTITY_ORIENTATION, source_spacing,
                            target_shape, target_position, IDENTITY_ORIENTATION,
                            target_spacing)
    expected = field(target_shape, target_spacing, target_position)
    assert np.abs(out - expected).max() < 0.05


def test_a_known_breath_hold_shift_is_recovered() -> None:
    rng = np.random.default_rng(11)
    _, slices = make_lge_stack(rng, n_slices=3, shape=(192, 224), pixel_spacing=(1.6, 1.6))
    lge = slices[1]
    shift_xy = (4.0, -3.0)  # mm, anatomy of the cine displaced right and up
    cine_shape, cine_spacing = (200, 240), (1.35, 1.35)
    cine = make_cine_slice(rng, lge.heart, level=lge.position, phase=0.7, shape=cine_shape,
                           pixel_spacing=cine_spacing,
                           centre_shift_mm=(lge.centre_shift_mm[0] - 10.0,
                                            lge.centre_shift_mm[1] + 6.0),
                           misregistration_mm=shift_xy)
    on_grid = resample_to_frame(cine.image, _centred(cine_shape, cine_spacing, (10.0, -6.0)),
                                IDENTITY_ORIENTATION, cine_spacing, lge.shape,
                                _centred(lge.shape, lge.pixel_spacing, (0.0, 0.0)),
                                IDENTITY_ORIENTATION, lge.pixel_spacing)
    aligned, registration = align_cine(lge.psir + 4096.0, on_grid, lge.pixel_spacing)
    assert registration.accepted
    assert registration.shift_mm == pytest.approx((shift_xy[1], shift_xy[0]), abs=0.6)
    # The aligned cine's blood pool lies on the LGE's.
    cine_labels = resample_to_frame(
        (cine.labels == Label.LV_BLOOD_POOL).astype(np.float32),
        _centred(cine_shape, cine_spacing, (10.0, -6.0)), IDENTITY_ORIENTATION, cine_spacing,
        lge.shape, _centred(lge.shape, lge.pixel_spacing, (0.0, 0.0)), IDENTITY_ORIENTATION,
        lge.pixel_spacing, cval=0.0)
    from plugins.lge.cine import shift_image

    moved = shift_image(cine_labels, registration.shift_mm, lge.pixel_spacing) > 0.5
    before, after = cine_labels > 0.5, moved
    truth = lge.labels == Label.LV_BLOOD_POOL

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())

    assert dice(after, truth) > dice(before, truth) + 0.05
    assert dice(after, truth) > 0.9
    assert aligned.shape == lge.shape


def test_registration_is_bounded() -> None:
    rng = np.random.default_rng(5)
    _, slices = make_lge_stack(rng, n_slices=1, shape=(160, 160), pixel_spacing=(1.8, 1.8))
    lge = slices[0]
    cine = make_cine_slice(rng, lge.heart, level=lge.position, phase=0.7, shape=lge.shape,
                           pixel_spacing=lge.pixel_spacing, centre_shift_mm=lge.centre_shift_mm,
                           misregistration_mm=(6.0, 0.0))
    free = register_translation(lge.magnitude, cine.image, lge.pixel_spacing)
    assert free.accepted and free.shift_mm[1] == pytest.approx(6.0, abs=0.6)
    bounded = register_translation(lge.magnitude, cine.image, lge.pixel_spacing,
                                   max_shift_mm=3.0)
    assert not bounded.accepted and bounded.shift_mm == (0.0, 0.0)
    assert "bound" in bounded.note


# ----------------------------------------------------------------------------- training pairs


def test_training_pairs_keep_the_lge_images_and_are_aligned() -> None:
    seed = FUSION_TRAIN_SEED_START + 3
    slices = training_stack(seed)
    again = training_stack(seed)
    cines = matched_cines(slices, seed)
    assert len(cines) == len(slices)
    for lge, twin in zip(slices, again, strict=True):
        assert np.array_equal(lge.psir, twin.psir)  # the LGE stream is untouched
    errors = [math.dist(c.estimated_mm, c.misregistration_mm) for c in cines]
    assert max(math.hypot(*c.misregistration_mm) for c in cines) > 1.0
    assert all(c.accepted for c in cines) and float(np.median(errors)) < 0.5
    assert cines[0].raw.shape != slices[0].shape or cines[0].raw.pixel_spacing != \
        slices[0].pixel_spacing
    assert FUSION_VAL_SEED_START > FUSION_TRAIN_SEED_START + 10_000
    image, labels = augment_pair(cached_pair(slices[2], cines[2]), np.random.default_rng(0))
    assert image.shape == (2, 160, 160) and labels.shape == (160, 160)
    assert np.isin(labels, MYOCARDIAL).any() and np.isfinite(image).all()


# ----------------------------------------------------------------------------- network


def test_initial_state_is_the_lge_only_network() -> None:
    state, sha = initial_state()
    model = UNet(FUSION_ARCHITECTURE)
    model.load_state_dict(state)
    model.eval()
    single = UNetLgeSegmenter(DEFAULT_WEIGHTS)
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 2, 64, 64)).astype(np.float32))
    with torch.inference_mode():
        both = model(x)
        alone = single._model(x[:, :1])
    assert torch.allclose(both, alone, atol=1e-5)
    assert sha == single.weights_sha256


needs_weights = pytest.mark.skipif(not DEFAULT_FUSION_WEIGHTS.exists(),
                                   reason="no trained LGE + cine weights")


@needs_weights
def test_fusion_network_segments_a_phantom_slice_with_its_cine() -> None:
    seed = 960_123
    rng = np.random.default_rng(seed)
    _, slices = make_lge_stack(rng, n_slices=5, scar_pattern="ischaemic_lad")
    cines = matched_cines(slices, seed)
    segmenter = UNetFusionSegmenter()
    assert segmenter.version and segmenter.weights_sha256
    record = json.loads(DEFAULT_FUSION_METADATA.read_text())
    assert record["architecture"]["in_channels"] == 2
    scores = []
    for lge, cine in zip(slices[1:4], cines[1:4], strict=True):
        out = segmenter.segment(lge.psir + 4096.0, lge.pixel_spacing, LgeContrast.PSIR,
                                cine.aligned)
        assert out.details["cine_used"] is True
        a, b = np.isin(out.labels, MYOCARDIAL), np.isin(lge.labels, MYOCARDIAL)
        scores.append(2.0 * float((a & b).sum()) / float(a.sum() + b.sum()))
    assert float(np.mean(scores)) > 0.75
    with pytest.raises(ValueError, match="cine"):
        segmenter.segment(slices[2].psir, slices[2].pixel_spacing, LgeContrast.PSIR)


@needs_weights
def test_fusion_weights_are_checked(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    shutil.copy(DEFAULT_FUSION_WEIGHTS, weights)
    record = json.loads(DEFAULT_FUSION_METADATA.read_text())
    (tmp_path / "w.json").write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        UNetFusionSegmenter(weights)
    # The one-channel LGE network is refused as a fusion network, and vice versa.
    with pytest.raises(ModelUnavailableError, match="two-channel"):
        UNetFusionSegmenter(DEFAULT_WEIGHTS)
    with pytest.raises(ModelUnavailableError, match="one-channel"):
        UNetLgeSegmenter(DEFAULT_FUSION_WEIGHTS)


def test_augmentation_settings_extend_the_lge_ones() -> None:
    from models.training.lgeseg.data import AugmentationSettings as LgeSettings
    from models.training.lgeseg.fusion_data import AugmentationSettings

    names = {f.name for f in dataclasses.fields(LgeSettings)}
    assert names < {f.name for f in dataclasses.fields(AugmentationSettings)}
