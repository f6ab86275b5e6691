"""LGE analysis with the study's cine: per-slice pairing, modes, reasons and outputs.

The study is a phantom LGE stack and a matched cine written as DICOM with the same patient
geometry; the cine has its own matrix and pixel spacing and each slice a known breath-hold
shift.  The logic tests use segmenters that return the phantom's labels (and record the cine
they were given), so they check pairing, resampling, alignment and reporting; one test runs
the trained networks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from models.phantoms.cine import CineSlice, matched_cine_stack
from models.phantoms.dicom_lge import cine_series_datasets, lge_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.lge import LgeSlice, make_lge_stack
from models.runtime.lgeseg.fusion_segmenter import DEFAULT_FUSION_WEIGHTS, FUSION_MODEL_NAME
from models.runtime.lgeseg.segmenter import MODEL_NAME
from node.inputs.loader import load_series
from node.outputs.writers import OutputKind, WriterSettings, build_outputs
from plugins.api import (
    AnalysisError,
    FloatImage,
    Label,
    LoadedSeries,
    QCFlag,
    SegmentationOutput,
    Severity,
)
from plugins.lge import LgeContrast, QCCode, analyse
from tests.networks import node_options

MYOCARDIAL = (int(Label.MYOCARDIUM), int(Label.SCAR), int(Label.MVO))
CINE_SHAPE = (208, 256)
CINE_SPACING = (1.4, 1.4)


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


class Labels:
    """Returns the phantom's labels of each LGE image and records the cines it was given."""

    def __init__(self, name: str, table: dict[str, np.ndarray]) -> None:
        self.name = name
        self.version = "test"
        self.weights_sha256: str | None = hashlib.sha256(name.encode()).hexdigest()
        self.table = table
        self.cines: list[tuple[str, np.ndarray | None]] = []

    def segment(self, image: FloatImage, pixel_spacing: tuple[float, float],
                contrast: LgeContrast, cine: FloatImage | None = None) -> SegmentationOutput:
        key = _key(image)
        self.cines.append((key, None if cine is None else np.asarray(cine)))
        return SegmentationOutput(self.table[key].copy(), 0.05, None, {"model": self.name})


@dataclass
class Study:
    slices: list[LgeSlice]
    cines: list[list[CineSlice]]
    lge_datasets: list[pydicom.Dataset]
    lge: LoadedSeries
    cine: LoadedSeries
    table: dict[str, np.ndarray]
    truth_by_key: dict[str, LgeSlice]


def make_study(seed: int, *, cine_slices: int | None = None, offset_mm: float = 0.0,
               n_slices: int = 6) -> Study:
    rng = np.random.default_rng(seed)
    _, slices = make_lge_stack(rng, n_slices=n_slices, scar_pattern="ischaemic_lad")
    covered = slices[:cine_slices] if cine_slices is not None else slices
    cines = matched_cine_stack(rng, covered, shape=CINE_SHAPE, pixel_spacing=CINE_SPACING,
                               max_misregistration_mm=4.0)
    info = StudyInfo.synthetic(seed)
    geometry = info.geometry
    centre = np.asarray(geometry.base_centre_mm) + offset_mm * np.asarray(
        geometry.apex_direction)
    moved = dataclasses.replace(geometry, base_centre_mm=(
        float(centre[0]), float(centre[1]), float(centre[2])))
    lge_datasets = lge_series_datasets(slices, study=info)
    cine_datasets = cine_series_datasets(cines, study=dataclasses.replace(info,
                                                                           geometry=moved))
    lge = load_series(lge_datasets)
    by_uid = {str(ds.SOPInstanceUID): s for ds, s in zip(lge_datasets, slices, strict=True)}
    truth_by_key = {_key(f.pixels): by_uid[f.sop_instance_uid] for f in lge.frames}
    table = {k: s.labels for k, s in truth_by_key.items()}
    return Study(slices, cines, lge_datasets, lge, load_series(cine_datasets), table,
                 truth_by_key)


@pytest.fixture(scope="module")
def study() -> Study:
    return make_study(31)


def _options(study: Study, **extra: object) -> dict[str, object]:
    return {
        "segmenter": Labels("lge-only", study.table),
        "cine_segmenter": Labels("lge+cine", study.table),
        "companions": {"cine": study.cine},
        "companion_series": {"cine": study.cine.series_instance_uid},
        **extra,
    }


def test_every_slice_with_a_matched_cine_uses_the_fusion_network(study: Study) -> None:
    options = _options(study)
    result = analyse(study.lge, options)
    rows = result.extra["slices"]
    assert len(rows) == len(study.slices)
    assert {row["mode"] for row in rows} == {"lge+cine"}
    cine_uid = study.cine.series_instance_uid
    lge_trigger = float(study.lge_datasets[0].TriggerTime)
    cine_frames = {f.sop_instance_uid: f for f in study.cine.frames}
    for row in rows:
        cine = row["cine"]
        assert cine["used"] and cine["series_instance_uid"] == cine_uid
        chosen = cine_frames[cine["sop_instance_uid"]]
        # Same position, and of the three phases the one nearest the LGE trigger time.
        assert abs(chosen.slice_location - row["slice_location_mm"]) < 0.5
        same_position = [float(f.attributes["TriggerTime"]) for f in study.cine.frames
                         if abs(f.slice_location - chosen.slice_location) < 0.5]
        best = min(same_position, key=lambda t: abs(t - lge_trigger))
        assert float(chosen.attributes["TriggerTime"]) == best
    fused, alone = options["cine_segmenter"], options["segmenter"]
    assert isinstance(fused, Labels) and isinstance(alone, Labels)
    assert len(fused.cines) == len(study.slices) and not alone.cines
    # The recorded shift is the phantom's breath-hold mismatch (row, col = y, x), and the
    # cine handed to the network lies on the LGE grid with its blood pool on the LGE's.
    order = [str(ds.SOPInstanceUID) for ds in study.lge_datasets]
    for row in rows:
        x, y = study.cines[order.index(row["sop_instance_uid"])][-1].misregistration_mm
        assert row["cine"]["shift_mm"] == pytest.approx([y, x], abs=0.7)
    for key, cine in fused.cines:
        lge_slice = study.truth_by_key[key]
        assert cine is not None and cine.shape == lge_slice.shape
        blood = cine[lge_slice.labels == Label.LV_BLOOD_POOL].mean()
        wall = cine[np.isin(lge_slice.labels, MYOCARDIAL)].mean()
        assert blood > 1.8 * wall
    flags = {f.code: f for f in result.qc_flags}
    assert QCCode.CINE_FUSION in flags and cine_uid in flags[QCCode.CINE_FUSION].message
    assert result.provenance.model_name == "lge+cine"
    networks = result.extra["lge"]["networks"]
    assert [n["mode"] for n in networks] == ["lge+cine"]
    assert result.extra["lge"]["cine"]["slices_with_cine"] == len(rows)


def test_slices_without_a_cine_use_the_lge_network_and_both_are_named() -> None:
    partial = make_study(32, cine_slices=3)
    result = analyse(partial.lge, _options(partial))
    modes = [row["mode"] for row in result.extra["slices"]]
    assert modes.count("lge+cine") == 3 and modes.count("lge") == 3
    for row in result.extra["slices"]:
        if row["mode"] == "lge":
            assert not row["cine"]["used"]
            assert "no cine frame at this slice position" in row["cine"]["reason"]
    method = result.provenance.method
    for name in ("lge-only", "lge+cine"):
        assert name in method
        assert hashlib.sha256(name.encode()).hexdigest() in method
    flag = next(f for f in result.qc_flags if f.code == QCCode.CINE_FUSION)
    assert "3 of 6" in flag.message and "LGE alone" in flag.message
    assert {n["mode"]: n["slices"] for n in result.extra["lge"]["networks"]} == {
        "lge": 3, "lge+cine": 3}


def test_cine_at_other_positions_is_not_used() -> None:
    shifted = make_study(33, offset_mm=5.0, n_slices=4)  # 5 mm > half the 8 mm thickness
    result = analyse(shifted.lge, _options(shifted))
    assert {row["mode"] for row in result.extra["slices"]} == {"lge"}
    assert all("5.0 mm" in row["cine"]["reason"] for row in result.extra["slices"])
    assert any(f.code == QCCode.CINE_NOT_USED for f in result.qc_flags)
    assert not any(f.code == QCCode.CINE_FUSION for f in result.qc_flags)
    assert result.provenance.model_name == "lge-only"


def test_an_unavailable_fusion_network_is_flagged_and_every_slice_uses_the_lge(
    study: Study,
) -> None:
    flag = QCFlag(QCCode.FUSION_UNAVAILABLE, Severity.INFO,
                  "The LGE + cine segmentation model is unavailable (missing); every slice was"
                  " segmented from the LGE alone.")
    result = analyse(study.lge, _options(study, cine_segmenter=None, cine_segmenter_flag=flag))
    assert flag in result.qc_flags
    assert {row["mode"] for row in result.extra["slices"]} == {"lge"}
    assert {row["cine"]["reason"] for row in result.extra["slices"]} == {
        "the LGE + cine network is unavailable"}


def test_a_cine_without_the_fusion_option_is_an_analysis_error(study: Study) -> None:
    options = _options(study)
    del options["cine_segmenter"]
    with pytest.raises(AnalysisError, match=r"options\['cine_segmenter'\] is missing"):
        analyse(study.lge, options)
    assert analyse(study.lge, {**options, "use_cine": False}).slices


def test_missing_cine_gives_the_reason_and_the_lge_path(study: Study) -> None:
    reason = "the study has no short-axis cine of the same slices"
    options = _options(study, companions={}, companion_reasons={"cine": reason})
    result = analyse(study.lge, options)
    assert {row["mode"] for row in result.extra["slices"]} == {"lge"}
    assert result.extra["slices"][0]["cine"]["reason"] == reason
    flag = next(f for f in result.qc_flags if f.code == QCCode.CINE_NOT_USED)
    assert reason in flag.message
    # Without any companion information (plain analysis) there is no cine flag.
    plain = analyse(study.lge, {"segmenter": Labels("lge-only", study.table)})
    assert not any(f.code in (QCCode.CINE_NOT_USED, QCCode.CINE_FUSION)
                   for f in plain.qc_flags)
    off = analyse(study.lge, _options(study, use_cine=False))
    assert {row["mode"] for row in off.extra["slices"]} == {"lge"}


def _texts(ds: pydicom.Dataset) -> list[str]:
    found = []
    for item in getattr(ds, "ContentSequence", []):
        if "TextValue" in item:
            found.append(str(item.TextValue))
        found.extend(_texts(item))
    return found


@pytest.mark.skipif(not DEFAULT_FUSION_WEIGHTS.exists(), reason="no trained fusion weights")
def test_trained_networks_on_a_study_with_cine(study: Study, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    result = analyse(study.lge, node_options("lge", companions={"cine": study.cine}))
    rows = result.extra["slices"]
    assert rows and {row["mode"] for row in rows} == {"lge+cine"}
    assert result.provenance.model_name == FUSION_MODEL_NAME
    assert FUSION_MODEL_NAME in result.provenance.method
    dice = []
    by_index = {s.frame_index: s for s in result.slices}
    for row in rows:
        frame = study.lge.frames[row["frame_index"]]
        truth = study.truth_by_key[_key(frame.pixels)].labels
        a = np.isin(by_index[row["frame_index"]].labels, MYOCARDIAL)
        b = np.isin(truth, MYOCARDIAL)
        dice.append(2.0 * float((a & b).sum()) / float(a.sum() + b.sum()))
    assert float(np.mean(dice)) > 0.75
    outputs = build_outputs(result, study.lge, study.lge_datasets, settings=WriterSettings())
    kinds = {o.kind: o.dataset for o in outputs}
    text = " ".join(_texts(kinds[OutputKind.SR_SUMMARY]))
    assert "used the matched cine" in text and FUSION_MODEL_NAME in text
    assert MODEL_NAME not in {n["name"] for n in result.extra["lge"]["networks"]}
    if shutil.which("dciodvfy") is None:
        pytest.skip("dicom3tools not installed")
    for output in outputs:
        path = tmp_path / f"{output.kind}.dcm"
        output.dataset.save_as(path, enforce_file_format=True)
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in run.stderr.splitlines() if line.startswith("Error")]
        assert not errors, (output.kind, errors)


class _Unsure(Labels):
    """The phantom's labels, but with a fixed uncertainty (a network unsure of them)."""

    def __init__(self, name: str, table: dict[str, np.ndarray], uncertainty: float) -> None:
        super().__init__(name, table)
        self.uncertainty = uncertainty

    def segment(self, image: FloatImage, pixel_spacing: tuple[float, float],
                contrast: LgeContrast, cine: FloatImage | None = None) -> SegmentationOutput:
        output = super().segment(image, pixel_spacing, contrast, cine)
        return SegmentationOutput(output.labels, self.uncertainty, None, output.details)


class _Stacked(Labels):
    """Labels with a per-stack entry point, as the two-stage segmenter has."""

    def segment_stack(self, images: Sequence[FloatImage],
                      pixel_spacings: Sequence[tuple[float, float]], contrast: LgeContrast,
                      offsets: Sequence[tuple[float, float]] | None = None
                      ) -> list[SegmentationOutput]:
        return [self.segment(image, spacing, contrast)
                for image, spacing in zip(images, pixel_spacings, strict=True)]


def test_the_cascade_names_the_network_it_chose_and_gates_an_unsure_fusion(
        study: Study) -> None:
    from models.runtime.lgeseg.cascade import CascadeLgeSegmenter

    unsure_first = _Unsure("one-stage", study.table, 0.9)
    fallback = _Stacked("two-stage", study.table)
    options = _options(study, segmenter=CascadeLgeSegmenter(unsure_first, fallback),
                       cine_segmenter=_Unsure("lge+cine", study.table, 0.6))
    result = analyse(study.lge, options)
    assert result.provenance.model_name == "two-stage"
    assert "chosen by" in result.provenance.method and "one-stage" in result.provenance.method
    rows = result.extra["slices"]
    assert {row["mode"] for row in rows} == {"lge"}, "an unsure fusion is not used there"
    assert all("uncertainty 0.60" in row["cine"]["reason"] for row in rows)
    # A sure fusion network is still used on that stack, and on a stack the first is sure of
    # the fusion network is used as before, sure or not.
    sure_fusion = analyse(study.lge, _options(
        study, segmenter=CascadeLgeSegmenter(_Unsure("one-stage", study.table, 0.9),
                                             _Stacked("two-stage", study.table))))
    assert {row["mode"] for row in sure_fusion.extra["slices"]} == {"lge+cine"}
    kept = analyse(study.lge, _options(
        study, segmenter=CascadeLgeSegmenter(Labels("one-stage", study.table),
                                             _Stacked("two-stage", study.table)),
        cine_segmenter=_Unsure("lge+cine", study.table, 0.6)))
    assert {row["mode"] for row in kept.extra["slices"]} == {"lge+cine"}
