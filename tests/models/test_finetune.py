"""Site fine-tuning from PNG, NIfTI and DICOM SEG (models.training.lgeseg.site_data / finetune)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import Dataset

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_lge import lge_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.lge import LgeSlice, make_lge_stack
from models.runtime.lgeseg.site_weights import verify_weights
from models.runtime.lgeseg.two_stage import (
    DEFAULT_LOCATOR,
    DEFAULT_SEGMENTER,
    NORMALISED_RANGE,
    TwoStageLgeSegmenter,
)
from models.runtime.segmentation import sha256_of
from models.training.lgeseg.finetune import data_sha256, real_sample
from models.training.lgeseg.site_data import (
    EMIDEC_LABELS,
    SiteDataError,
    load_dicom_seg,
    load_nifti,
    load_png,
    load_site_data,
    parse_label_map,
)
from node.cli.main import main
from plugins.api import Label, SegmentDefinition
from plugins.lib import codes

needs_weights = pytest.mark.skipif(
    not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()),
    reason="two-stage weights not committed")

TO_EMIDEC = {ours: site for site, ours in EMIDEC_LABELS.items()}
SEG_SEGMENTS = (codes.SEGMENT_LV_BLOOD_POOL, codes.SEGMENT_LGE_MYOCARDIUM, codes.SEGMENT_SCAR)
"""As the node's own LGE SEG: the myocardium segment includes scar and MVO."""


@pytest.fixture(scope="module")
def stacks() -> list[tuple[StudyInfo, list[LgeSlice]]]:
    """Two phantom subjects, two mid-ventricular slices each."""
    out = []
    for seed in (41, 42):
        _, slices = make_lge_stack(np.random.default_rng(seed), n_slices=2,
                                   scar_pattern="ischaemic_lad", s_range=(0.4, 0.6))
        out.append((StudyInfo.synthetic(seed), slices))
    return out


def _emidec(labels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Phantom labels in EMIDEC values (RV blood pool is background there)."""
    lut = np.zeros(256, dtype=np.uint8)
    for ours, site in TO_EMIDEC.items():
        lut[ours] = site
    return lut[labels]


def _expected(labels: npt.NDArray[np.uint8], *, mvo: bool = True) -> npt.NDArray[np.uint8]:
    out = np.where(labels == Label.RV_BLOOD_POOL, Label.BACKGROUND, labels)
    if not mvo:
        out = np.where(out == Label.MVO, Label.SCAR, out)
    return out.astype(np.uint8)


def _write_png(root: Path, stacks: Sequence[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for n, (_, slices) in enumerate(stacks):
        for i, s in enumerate(slices):
            image = s.magnitude
            scaled = np.clip(255.0 * image / float(image.max()), 0, 255).astype(np.uint8)
            Image.fromarray(scaled).save(root / "images" / f"Case_{n}_slice{i:03d}.png")
            Image.fromarray(_emidec(s.labels)).save(root / "labels" / f"Case_{n}_slice{i:03d}.png")


def _write_nifti(root: Path, stacks: Sequence[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    import SimpleITK as sitk  # noqa: N813 (the library's documented alias)

    (root / "Images").mkdir(parents=True)
    (root / "Contours").mkdir()
    for n, (_, slices) in enumerate(stacks):
        for folder, volume in (
            ("Images", np.stack([s.magnitude for s in slices]).astype(np.float32)),
            ("Contours", np.stack([_emidec(s.labels) for s in slices])),
        ):
            image = sitk.GetImageFromArray(volume)
            image.SetSpacing((*slices[0].pixel_spacing[::-1], 8.0))
            sitk.WriteImage(image, str(root / folder / f"Case_{n}.nii.gz"))


def _members(definition: SegmentDefinition) -> tuple[int, ...]:
    return (int(definition.label), *(int(v) for v in definition.includes))


def _seg_of(datasets: Sequence[Dataset], slices: Sequence[LgeSlice],
            segments: Sequence[SegmentDefinition] = SEG_SEGMENTS) -> Dataset:
    """A binary SEG of the phantom truth, built with highdicom as a reader's tool would."""
    import highdicom as hd

    from node.outputs.writers.seg import to_pydicom_code

    masks = np.stack([np.stack([np.isin(s.labels, _members(d)) for d in segments], axis=-1)
                      for s in slices]).astype(np.uint8)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=d.name,
            segmented_property_category=to_pydicom_code(d.category),
            segmented_property_type=to_pydicom_code(d.property_type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            anatomic_regions=[to_pydicom_code(d.anatomic_region)] if d.anatomic_region else None,
        )
        for i, d in enumerate(segments)
    ]
    return hd.seg.Segmentation(
        source_images=list(datasets), pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=90,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="reader workstation",
        manufacturer_model_name="test", software_versions="0", device_serial_number="0",
    )


def _write_dicom_seg(root: Path, stacks: Sequence[tuple[StudyInfo, list[LgeSlice]]],
                     segments: Sequence[SegmentDefinition] = SEG_SEGMENTS) -> list[Path]:
    """Sources and one SEG per subject under ``root``; the source files are returned."""
    sources: list[Path] = []
    for n, (study, slices) in enumerate(stacks):
        datasets = lge_series_datasets(slices, vendor="siemens", study=study)
        sources += write_series(datasets, root / f"study{n}")
        _seg_of(datasets, slices, segments).save_as(root / f"study{n}" / "seg.dcm")
    return sources


def _finetune(tmp_path: Path, images: Path, *extra: str) -> dict:
    out = tmp_path / "site" / "site_segment.pt"
    assert main(["models", "finetune", "--images", str(images), "--out", str(out),
                 "--steps", "2", "--batch-size", "2", *extra]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record == verify_weights(out)
    assert record["weights_sha256"] == sha256_of(out)
    assert record["base_weights_sha256"] == sha256_of(DEFAULT_SEGMENTER)
    assert record["finetune_steps"] == 2
    assert record["command"].startswith("cmr-node models finetune --images")
    assert record["date"].startswith("20")
    tuned = TwoStageLgeSegmenter(DEFAULT_LOCATOR, out)
    assert tuned.weights_sha256 == record["weights_sha256"]
    assert tuned.version.endswith("+site")
    return record


@needs_weights
def test_finetune_from_png(tmp_path: Path,
                           stacks: list[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    _write_png(tmp_path / "png", stacks)
    pairs = load_png(tmp_path / "png" / "images", tmp_path / "png" / "labels")
    assert [p.case for p in pairs] == ["Case_0", "Case_0", "Case_1", "Case_1"]
    for pair, s in zip(pairs, [s for _, sl in stacks for s in sl], strict=True):
        assert np.array_equal(pair.labels, _expected(s.labels))
        assert pair.spacing_mm is None
    record = _finetune(tmp_path, tmp_path / "png" / "images", "--labels",
                       str(tmp_path / "png" / "labels"))
    assert record["site_data_kind"] == "png"
    assert (record["site_cases"], record["site_slices"]) == (2, 4)
    assert record["site_data_sha256"] == data_sha256(pairs)
    assert record["validation"] is None


@needs_weights
@pytest.mark.parametrize("batch_norm", ["frozen", "trained"])
def test_finetune_recipe_options(tmp_path: Path, batch_norm: str,
                                 stacks: list[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    """``--learning-rate``, ``--batch-norm`` and ``--corruption-share`` reach the training
    and its record: frozen keeps the base network's batch-norm statistics, trained adapts
    them."""
    import torch

    _write_png(tmp_path / "png", stacks)
    record = _finetune(tmp_path, tmp_path / "png" / "images", "--labels",
                       str(tmp_path / "png" / "labels"), "--learning-rate", "0.002",
                       "--batch-norm", batch_norm, "--corruption-share", "0.5")
    assert record["learning_rate"] == 0.002
    assert record["corruption_share"] == 0.5
    assert record["freeze_batch_norm"] is (batch_norm == "frozen")
    assert "--learning-rate 0.002 --batch-norm " + batch_norm in record["command"]
    base = torch.load(DEFAULT_SEGMENTER, map_location="cpu")
    tuned = torch.load(tmp_path / "site" / "site_segment.pt", map_location="cpu")
    statistics = [k for k in base if k.endswith(("running_mean", "running_var"))]
    assert statistics
    unchanged = all(torch.equal(base[k], tuned[k]) for k in statistics)
    assert unchanged is (batch_norm == "frozen")
    convolutions = [k for k in base if k.endswith("weight") and base[k].ndim == 4]
    assert any(not torch.equal(base[k], tuned[k]) for k in convolutions)


@needs_weights
def test_finetune_from_nifti(tmp_path: Path,
                             stacks: list[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    _write_nifti(tmp_path / "nii", stacks)
    pairs = load_nifti(tmp_path / "nii" / "Images", tmp_path / "nii" / "Contours")
    assert [p.name for p in pairs] == ["Case_0_slice000", "Case_0_slice001",
                                       "Case_1_slice000", "Case_1_slice001"]
    for pair, s in zip(pairs, [s for _, sl in stacks for s in sl], strict=True):
        assert np.array_equal(pair.labels, _expected(s.labels))
        assert np.allclose(pair.image, s.magnitude)
        assert pair.spacing_mm == pytest.approx(float(np.mean(s.pixel_spacing)))
    record = _finetune(tmp_path, tmp_path / "nii" / "Images", "--labels",
                       str(tmp_path / "nii" / "Contours"))
    assert record["site_data_kind"] == "nifti"
    assert (record["site_cases"], record["site_slices"]) == (2, 4)
    assert record["site_data_sha256"] == data_sha256(pairs)


@needs_weights
def test_finetune_from_dicom_seg_with_cross_validation(
        tmp_path: Path, stacks: list[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    _write_dicom_seg(tmp_path / "dicom", stacks)
    pairs = load_dicom_seg(tmp_path / "dicom")
    assert len(pairs) == 4
    assert {p.case for p in pairs} == {study.patient_id for study, _ in stacks}
    truth = {}
    for study, slices in stacks:
        for ds, s in zip(lge_series_datasets(slices, vendor="siemens", study=study), slices,
                         strict=True):
            truth[str(ds.SOPInstanceUID)] = s
    for pair in pairs:
        s = truth[pair.name]
        assert np.array_equal(pair.labels, _expected(s.labels, mvo=False))
        assert pair.spacing_mm == pytest.approx(float(np.mean(s.pixel_spacing)))
    # One slice per subject for the cross-validation (each fold segments its test slices).
    _write_dicom_seg(tmp_path / "cv", [(study, slices[:1]) for study, slices in stacks])
    record = _finetune(tmp_path, tmp_path / "cv", "--cross-validate", "2")
    assert record["site_data_kind"] == "dicom-seg"
    assert (record["site_cases"], record["site_slices"]) == (2, 2)
    validation = record["validation"]
    assert validation["folds"] == 2 and len(validation["fine_tuned_myo_dice_per_fold"]) == 2
    assert validation["fine_tuned"]["slices"] == validation["base"]["slices"] == 2
    fold = json.loads((tmp_path / "site" / "fold1_segment.json").read_text())
    second_case = sorted(study.patient_id for study, _ in stacks)[1]
    assert fold["command"].endswith(f"(fold 1 of 2, test cases {second_case})")
    assert fold["command"].startswith("cmr-node models finetune --images")
    cv = json.loads((tmp_path / "site" / "site_segment.cv.json").read_text())
    assert {r["fold"] for r in cv["slices"]} == {0, 1}


def test_seg_segments_by_label_map(tmp_path: Path,
                                   stacks: list[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    # Segments with codes the reader does not know: mapped by segment label instead.
    unknown = tuple(
        SegmentDefinition(d.label, name, d.category, codes.HEART, d.colour_rgb, None,
                          d.includes)
        for d, name in zip(SEG_SEGMENTS, ("cavity", "wall", "lesion"), strict=True)
    )
    _write_dicom_seg(tmp_path, stacks[:1], unknown)
    with pytest.raises(SiteDataError, match="no segment maps to a label"):
        load_dicom_seg(tmp_path)
    pairs = load_dicom_seg(tmp_path, parse_label_map("cavity=lv,wall=myocardium,3=scar"))
    for pair, s in zip(pairs, stacks[0][1], strict=True):
        assert np.array_equal(pair.labels, _expected(s.labels, mvo=False))


def test_seg_whose_source_images_are_missing_is_refused(
        tmp_path: Path, stacks: list[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    sources = _write_dicom_seg(tmp_path, stacks[:1])
    sources[0].unlink()
    with pytest.raises(SiteDataError, match="1 of 2 source images it references are not in"):
        load_dicom_seg(tmp_path)


def test_mask_shape_mismatch_is_refused(tmp_path: Path,
                                        stacks: list[tuple[StudyInfo, list[LgeSlice]]]) -> None:
    from PIL import Image

    _write_png(tmp_path / "png", stacks[:1])
    label = tmp_path / "png" / "labels" / "Case_0_slice000.png"
    Image.fromarray(_emidec(stacks[0][1][0].labels)[:, :-3]).save(label)
    with pytest.raises(SiteDataError, match=r"Case_0_slice000\.png: image shape .* differ"):
        load_png(tmp_path / "png" / "images", tmp_path / "png" / "labels")
    _write_nifti(tmp_path / "nii", stacks[:1])
    import SimpleITK as sitk  # noqa: N813 (the library's documented alias)

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 10, 10), np.uint8)),
                    str(tmp_path / "nii" / "Contours" / "Case_0.nii.gz"))
    with pytest.raises(SiteDataError, match=r"Case_0\.nii\.gz .* differ"):
        load_nifti(tmp_path / "nii" / "Images", tmp_path / "nii" / "Contours")


def test_data_without_myocardium_label_is_refused(
        tmp_path: Path, stacks: list[tuple[StudyInfo, list[LgeSlice]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    _write_png(tmp_path, stacks[:1])
    wrong = parse_label_map("0=background,1=lv,2=rv,3=scar,4=mvo")
    with pytest.raises(SiteDataError, match="no slice has a myocardium label"):
        load_site_data("auto", tmp_path / "images", tmp_path / "labels", wrong)
    assert main(["models", "finetune", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--label-map", "0=background,2=myocardium,3=scar,4=mvo",
                 "--out", str(tmp_path / "o.pt")]) == 2
    assert "mask values [1] are not in the label map" in capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()


def test_label_map_syntax() -> None:
    assert parse_label_map("1=lv, 2=Myocardium,LV wall=2,3=infarct") == {
        "1": Label.LV_BLOOD_POOL, "2": Label.MYOCARDIUM, "lv wall": Label.MYOCARDIUM,
        "3": Label.SCAR}
    for bad in ("1", "1=heart", "=lv"):
        with pytest.raises(SiteDataError):
            parse_label_map(bad)


def test_site_weights_never_go_into_the_committed_folder(
        tmp_path: Path, stacks: list[tuple[StudyInfo, list[LgeSlice]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    _write_png(tmp_path, stacks[:1])
    out = DEFAULT_SEGMENTER.parent / "site_test.pt"
    assert main(["models", "finetune", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--out", str(out), "--steps", "1"]) == 2
    assert "never go into" in capsys.readouterr().err
    assert not out.exists()


def test_corruption_share_outside_zero_to_one_is_refused(
        tmp_path: Path, stacks: list[tuple[StudyInfo, list[LgeSlice]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    _write_png(tmp_path, stacks[:1])
    out = tmp_path / "site" / "site_segment.pt"
    assert main(["models", "finetune", "--images", str(tmp_path / "images"), "--labels",
                 str(tmp_path / "labels"), "--out", str(out), "--steps", "1",
                 "--corruption-share", "1.5"]) == 2
    assert "corruption share must lie in [0, 1]" in capsys.readouterr().err
    assert not out.exists()


def test_corrupted_crops_keep_their_target() -> None:
    """A corrupted crop is another image of the same target, normalised as the network's
    input; with no corruption the crop is the plain jittered one (same random draws)."""
    rng_image = np.random.default_rng(3)
    labels = np.zeros((96, 96), dtype=np.uint8)
    rows, cols = np.indices(labels.shape)
    radius = np.hypot(rows - 48, cols - 50)
    labels[radius < 16] = Label.MYOCARDIUM
    labels[radius < 10] = Label.LV_BLOOD_POOL
    image = (rng_image.uniform(0.0, 20.0, labels.shape)
             + 100.0 * (labels == Label.LV_BLOOD_POOL)).astype(np.float32)
    plain = real_sample(np.random.default_rng(9), image, labels, 1.25)
    corrupted_any = False
    for seed in range(6):
        crop, target = real_sample(np.random.default_rng(seed), image, labels, 1.25,
                                   corruption_share=1.0)
        reference_crop, reference_target = real_sample(np.random.default_rng(seed), image,
                                                       labels, 1.25)
        assert np.array_equal(target, reference_target)
        assert crop.dtype == np.float32 and crop.shape == plain[0].shape
        assert NORMALISED_RANGE[0] <= float(crop.min()) < float(crop.max()) <= NORMALISED_RANGE[1]
        corrupted_any |= not np.allclose(crop, reference_crop)
    assert corrupted_any
    assert np.array_equal(real_sample(np.random.default_rng(9), image, labels, 1.25,
                                      corruption_share=0.0)[0], plain[0])
