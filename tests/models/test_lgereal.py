"""Tests of the sim-to-real LGE pieces: label maps, randomised samples, the two-stage
segmenter and the real-data evaluation (models.training.lgeseg.synth*, two_stage, evaluate_real)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.evaluation.lgeseg.evaluate_real import (  # noqa: E402
    DEFAULT_DATA,
    evaluate_emidec,
    summarise_emidec,
)
from models.phantoms.anatomy import Structure  # noqa: E402
from models.runtime.lgeseg.two_stage import (  # noqa: E402  # noqa: E402
    DEFAULT_LOCATOR,
    DEFAULT_SEGMENTER,
    LOCATE_GRID,
    SEGMENT_GRID,
    TwoStageLgeSegmenter,
    heart_candidates,
    ring_plausibility,
)
from models.training.lgeseg.data import EVAL_SEED_START, eval_stack  # noqa: E402
from models.training.lgeseg.real_scores import EMIDEC_MYO  # noqa: E402
from models.training.lgeseg.synth import (  # noqa: E402
    IGNORE,
    heart_centre_and_diameter,
    locate_sample,
    plant_scar,
    segment_sample,
)
from models.training.lgeseg.synth_cache import (  # noqa: E402
    GEN_MVO,
    GEN_SCAR,
    LabelMapSlice,
    phantom_generation_labels,
    sunnybrook_maps,
)
from plugins.api import FloatImage, Label, SegmentationOutput  # noqa: E402
from plugins.lge.quantify import CONFIRMATION_RULES, enhancement_confirmed  # noqa: E402
from plugins.lge.segmenter import LgeContrast, LgeSegmenter  # noqa: E402

EMIDEC = DEFAULT_DATA / "emidec-dev"
SUNNYBROOK = DEFAULT_DATA / "sunnybrook" / "sunnybrook_lv_myo_subset.npz"
needs_emidec = pytest.mark.skipif(
    not (EMIDEC / "images").is_dir(),
    reason=f"EMIDEC dev split not found at {EMIDEC} (real data are not in the repository)")
needs_sunnybrook = pytest.mark.skipif(
    not SUNNYBROOK.exists(), reason=f"Sunnybrook subset not found at {SUNNYBROOK}")
needs_weights = pytest.mark.skipif(
    not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()),
    reason="two-stage weights not committed")
MIN_PHANTOM_DICE = 0.75
"""Myocardium Dice of the two-stage segmenter on held-out phantom mid slices below which
the model or the pipeline broke (held-out evaluation in models/README.md)."""


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _ring_slice() -> LabelMapSlice:
    """A synthetic label map: LV blood disc in a myocardial ring in a body."""
    rows, cols = np.mgrid[:120, :140]
    r = np.hypot(rows - 60.0, cols - 70.0)
    labels = np.zeros((120, 140), dtype=np.uint8)
    labels[r < 30] = Label.MYOCARDIUM
    labels[r < 20] = Label.LV_BLOOD_POOL
    gen = np.full(labels.shape, Structure.SKELETAL_MUSCLE, dtype=np.uint8)
    gen[r < 30] = Structure.LV_MYOCARDIUM
    gen[r < 20] = Structure.LV_BLOOD
    return LabelMapSlice(gen=gen, labels=labels, pixel_spacing=(1.5, 1.5), magnitude=None,
                         psir=None, source="test")


def test_generation_labels_follow_the_lge_labels() -> None:
    structures = np.full((4, 4), Structure.LIVER, dtype=np.uint8)
    labels = np.array([[0, 1, 2, 3], [4, 5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
    gen = phantom_generation_labels(structures, labels)
    assert gen[0, 0] == Structure.LIVER
    assert gen[0, 1] == Structure.LV_BLOOD
    assert gen[0, 2] == Structure.LV_MYOCARDIUM
    assert gen[0, 3] == Structure.RV_BLOOD
    assert gen[1, 0] == GEN_SCAR and gen[1, 1] == GEN_MVO


def test_planted_scar_lies_in_the_myocardium_and_touches_the_endocardium() -> None:
    item = _ring_slice()
    found = 0
    for seed in range(20):
        gen, target = item.gen.copy(), item.labels.copy()
        plant_scar(np.random.default_rng(seed), gen, target)
        scar = np.isin(target, (Label.SCAR, Label.MVO))
        assert not (scar & (item.labels != Label.MYOCARDIUM)).any()
        assert np.array_equal(scar, np.isin(gen, (GEN_SCAR, GEN_MVO)))
        found += int(scar.any())
    assert found >= 15


@pytest.mark.parametrize(("make", "grid", "classes"), [
    (locate_sample, LOCATE_GRID, {0, 1, 2}),
    (segment_sample, SEGMENT_GRID, {0, 1, 2, 4, 5}),
])
def test_samples_have_the_grid_shape_and_the_stage_classes(
        make: Callable[..., tuple[np.ndarray, np.ndarray]], grid: int,
        classes: set[int]) -> None:
    rng = np.random.default_rng(3)
    for _ in range(6):
        image, target = make(rng, _ring_slice())
        assert image.shape == (grid, grid) and target.shape == (grid, grid)
        assert np.isfinite(image).all()
        assert set(np.unique(target).tolist()) <= classes | {IGNORE}
        assert (target == Label.LV_BLOOD_POOL).any()


def test_segment_crop_is_centred_on_the_heart() -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        _, target = segment_sample(rng, _ring_slice(), physics_share=0.0)
        found = heart_centre_and_diameter(target)
        assert found is not None
        (row, col), diameter = found
        assert abs(row - SEGMENT_GRID / 2) < 0.25 * diameter
        assert abs(col - SEGMENT_GRID / 2) < 0.25 * diameter


@needs_sunnybrook
def test_sunnybrook_maps_mark_the_unlabelled_rv_region_unknown() -> None:
    items = sunnybrook_maps(SUNNYBROOK)
    assert len(items) == 37
    for item in items[:5]:
        assert (item.labels == IGNORE).any()
        assert (item.labels[item.gen == Structure.LV_MYOCARDIUM] == Label.MYOCARDIUM).all()


@needs_weights
def test_two_stage_segments_held_out_phantoms_whatever_the_spacing_given() -> None:
    segmenter = TwoStageLgeSegmenter()
    assert isinstance(segmenter, LgeSegmenter)
    stack = eval_stack(EVAL_SEED_START + 1010)
    mid = stack[len(stack) // 2]
    dices = []
    for factor in (0.7, 1.0, 1.3):
        spacing = (mid.pixel_spacing[0] * factor, mid.pixel_spacing[1] * factor)
        output = segmenter.segment(mid.image, spacing, LgeContrast(str(mid.contrast)))
        assert output.reason is None
        pred = np.isin(output.labels, (Label.MYOCARDIUM, Label.SCAR, Label.MVO))
        true = np.isin(mid.labels, (Label.MYOCARDIUM, Label.SCAR, Label.MVO))
        dices.append(2.0 * (pred & true).sum() / (pred.sum() + true.sum()))
    assert min(dices) >= MIN_PHANTOM_DICE


@needs_weights
def test_two_stage_rejects_an_image_without_a_heart() -> None:
    noise = np.random.default_rng(0).normal(100.0, 10.0, (192, 192)).astype(np.float32)
    output = TwoStageLgeSegmenter().segment(noise, (1.5, 1.5), LgeContrast.MAGNITUDE)
    assert output.reason is not None
    assert not np.isin(output.labels, (Label.MYOCARDIUM, Label.SCAR)).any()


class _Oracle:
    """Returns the EMIDEC labels of the image it is given, in our label values."""

    name = "oracle"
    version = "0"
    weights_sha256: str | None = None

    def __init__(self, truth: dict[int, np.ndarray]) -> None:
        self._truth = truth

    def segment(self, image: FloatImage, pixel_spacing: tuple[float, float],
                contrast: LgeContrast, cine: FloatImage | None = None
                ) -> SegmentationOutput:
        labels = self._truth[hash(np.asarray(image).tobytes())]
        ours = np.select([labels == 1, labels == 2, labels == 3, labels == 4],
                         [Label.LV_BLOOD_POOL, Label.MYOCARDIUM, Label.SCAR, Label.MVO], 0)
        return SegmentationOutput(ours.astype(np.uint8), 0.0, None, {})


@needs_emidec
def test_evaluation_of_the_true_labels_is_perfect() -> None:
    from models.evaluation.lgeseg.evaluate_real import load_emidec

    items = load_emidec(EMIDEC)
    truth = {hash(image.tobytes()): labels for _, _, image, labels in items}
    summary = summarise_emidec(evaluate_emidec(_Oracle(truth), EMIDEC))
    assert summary["slices"] == len(items) == 135
    assert summary["segmented"] == 135
    assert summary["myo_dice_mean"] == 1.0
    assert summary["scar_percent_fit"]["r"] == 1.0
    assert summary["failure"]["failed"] == 0 and summary["failure"]["flagged"] == 0
    normal = [c for c in summary["cases"] if not c["infarct"]]
    assert len(normal) == 7 and all(c["true_scar_percent"] == 0.0 for c in normal)
    assert summary["case_accuracy"] == 1.0
    assert set(EMIDEC_MYO) == {2, 3, 4}


def test_real_data_path_is_outside_the_repository() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert repo not in DEFAULT_DATA.resolve().parents


@needs_weights
def test_site_finetuning_writes_weights_with_provenance(tmp_path: Path) -> None:
    import json

    from models.runtime.segmentation import sha256_of
    from models.training.lgeseg.finetune import data_sha256, finetune

    item = _ring_slice()
    image = np.where(item.labels == Label.MYOCARDIUM, 20.0, 200.0).astype(np.float32)
    image[item.labels == Label.BACKGROUND] = 90.0
    pairs = [("Case_A", "Case_A_slice000.png", image, item.labels),
             ("Case_B", "Case_B_slice000.png", image[::-1].copy(), item.labels[::-1].copy())]
    out = tmp_path / "site.pt"
    record = finetune(pairs, out, steps=2, batch_size=2)
    stored = json.loads(out.with_suffix(".json").read_text())
    assert stored["weights_sha256"] == sha256_of(out) == record["weights_sha256"]
    assert stored["base_weights_sha256"] == sha256_of(DEFAULT_SEGMENTER)
    assert stored["site_data_sha256"] == data_sha256(pairs)
    assert stored["site_cases"] == 2 and stored["site_slices"] == 2
    tuned = TwoStageLgeSegmenter(DEFAULT_LOCATOR, out)
    assert tuned.weights_sha256 == record["weights_sha256"]
    assert tuned.version.endswith("+site")


def _blob_probabilities(blobs: list[tuple[int, int, int, float]]) -> np.ndarray:
    """Localiser probabilities (3, 96, 96): heart probability ``p`` in discs (row, col, r, p)."""
    rows, cols = np.mgrid[:LOCATE_GRID, :LOCATE_GRID]
    heart = np.zeros((LOCATE_GRID, LOCATE_GRID))
    for row, col, radius, p in blobs:
        heart[np.hypot(rows - row, cols - col) < radius] = p
    return np.stack([1.0 - heart, heart / 2, heart / 2]).astype(np.float32)


def test_heart_candidates_rank_by_heart_probability_and_fall_back_to_weak_regions() -> None:
    identity = (np.eye(2), np.zeros(2))
    strong = _blob_probabilities([(20, 20, 4, 0.9), (60, 70, 8, 0.9), (80, 20, 5, 0.4)])
    found = heart_candidates(strong, identity, limit=3)
    assert [tuple(round(v) for v in c) for c, _ in found] == [(60, 70), (20, 20), (80, 20)]
    assert found[0][1] == pytest.approx(16.0, rel=0.1)
    assert len(heart_candidates(strong, identity, limit=1)) == 1
    assert heart_candidates(_blob_probabilities([(40, 40, 6, 0.1)]), identity) == []


def test_ring_plausibility_is_high_for_a_ring_and_zero_without_blood_pool() -> None:
    rows, cols = np.mgrid[:SEGMENT_GRID, :SEGMENT_GRID]
    r = np.hypot(rows - 64.0, cols - 64.0)
    labels = np.where(r < 12, Label.LV_BLOOD_POOL, np.where(r < 20, Label.MYOCARDIUM, 0))
    ring = np.eye(6, dtype=np.float32)[labels].transpose(2, 0, 1)[None]
    assert ring_plausibility(ring) > 0.95
    open_ring = np.eye(6, dtype=np.float32)[np.where((labels == Label.MYOCARDIUM) & (cols > 64),
                                                     0, labels)].transpose(2, 0, 1)[None]
    assert ring_plausibility(open_ring) < 0.75
    assert ring_plausibility(np.eye(6, dtype=np.float32)[np.zeros_like(labels)]
                             .transpose(2, 0, 1)[None]) == 0.0


def _scar_slice(scar_signal: float) -> tuple[np.ndarray, np.ndarray]:
    """A ring slice whose network labels mark a 60-degree sector scar of ``scar_signal``
    (remote myocardium ~ 100 +- 5, blood 400)."""
    rows, cols = np.mgrid[:96, :96]
    r = np.hypot(rows - 48.0, cols - 48.0)
    angle = np.degrees(np.arctan2(rows - 48.0, cols - 48.0))
    labels = np.where(r < 14, Label.LV_BLOOD_POOL, np.where(r < 22, Label.MYOCARDIUM, 0))
    sector = (labels == Label.MYOCARDIUM) & (np.abs(angle) < 30)
    labels = np.where(sector, Label.SCAR, labels).astype(np.uint8)
    image = np.random.default_rng(3).normal(100.0, 5.0, labels.shape)
    image[labels == Label.LV_BLOOD_POOL] = 400.0
    image[sector] = scar_signal
    return image.astype(np.float32), labels


@pytest.mark.parametrize("rule", CONFIRMATION_RULES)
def test_enhanced_network_scar_is_kept_and_unenhanced_scar_becomes_myocardium(rule: str) -> None:
    image, labels = _scar_slice(400.0)
    kept, threshold = enhancement_confirmed(image, labels, (1.5, 1.5), LgeContrast.MAGNITUDE,
                                            rule)
    assert threshold is not None and threshold > 100.0
    assert np.array_equal(kept, labels)
    image, labels = _scar_slice(100.0)
    dropped, _ = enhancement_confirmed(image, labels, (1.5, 1.5), LgeContrast.MAGNITUDE, rule)
    assert not (dropped == Label.SCAR).any()
    assert np.array_equal(dropped == Label.MYOCARDIUM, np.isin(labels, (Label.MYOCARDIUM,
                                                                        Label.SCAR)))


def test_scar_confirmation_refuses_an_unpublished_rule() -> None:
    image, labels = _scar_slice(400.0)
    with pytest.raises(ValueError, match="confirmation rule"):
        enhancement_confirmed(image, labels, (1.5, 1.5), LgeContrast.MAGNITUDE, "2.7sd")


@needs_weights
def test_two_stage_scar_rule_only_removes_unenhanced_network_scar() -> None:
    stack = eval_stack(EVAL_SEED_START + 4)
    mid = stack[len(stack) // 2]
    contrast = LgeContrast(str(mid.contrast))
    raw = TwoStageLgeSegmenter(scar_rule=None).segment(mid.image, mid.pixel_spacing, contrast)
    confirmed = TwoStageLgeSegmenter(scar_rule="3sd").segment(mid.image, mid.pixel_spacing,
                                                              contrast)
    assert confirmed.details["scar_rule"] == "3sd"
    raw_scar = np.isin(raw.labels, (Label.SCAR, Label.MVO))
    kept = np.isin(confirmed.labels, (Label.SCAR, Label.MVO))
    assert raw_scar.any() and kept.any()
    assert not (kept & ~raw_scar).any()
    myocardial = (Label.MYOCARDIUM, Label.SCAR, Label.MVO)
    assert np.array_equal(np.isin(raw.labels, myocardial), np.isin(confirmed.labels, myocardial))
