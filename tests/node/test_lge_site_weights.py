"""Selecting the two-stage LGE segmenter and site weights in the settings; outputs name them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from models.runtime.lgeseg.two_stage import DEFAULT_LOCATOR, DEFAULT_SEGMENTER
from models.training.lgeseg.site_data import SitePair, load_dicom_seg
from node.cli.main import main
from node.settings import SettingsError, load_settings

SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _config(tmp_path: Path, lge: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(f"[node]\ndata_dir = \"data\"\n\n[analysis.lge]\n{lge}\n")
    return path


def _fake_weights(folder: Path, *, sha: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "site_segment.pt"
    weights.write_bytes(b"not really a network")
    actual = hashlib.sha256(weights.read_bytes()).hexdigest()
    weights.with_suffix(".json").write_text(json.dumps({"weights_sha256": sha or actual}))
    return weights


@pytest.mark.parametrize("chosen", ['segmenter = "two-stage"\n', ""])
def test_site_weights_are_resolved_against_the_configuration(tmp_path: Path,
                                                            chosen: str) -> None:
    weights = _fake_weights(tmp_path / "weights")
    settings = load_settings(_config(
        tmp_path, chosen + 'segmenter_weights = "weights/site_segment.pt"'))
    options = settings.analysis_options["lge"]
    assert options.get("segmenter", "cascade") == ("two-stage" if chosen else "cascade")
    assert options["segmenter_weights"] == str(weights.resolve())


@pytest.mark.parametrize(("lge", "message"), [
    ('segmenter = "three-stage"',
     "analysis.lge.segmenter must be one of cascade, unet, two-stage"),
    ('segmenter = "unet"\nsegmenter_weights = "weights/site_segment.pt"',
     'needs segmenter = "two-stage" or "cascade"'),
    ('segmenter = "two-stage"\nsegmenter_weights = "weights/missing.pt"', "does not exist"),
])
def test_bad_segmenter_settings_are_refused_at_load(tmp_path: Path, lge: str,
                                                    message: str) -> None:
    _fake_weights(tmp_path / "weights")
    with pytest.raises(SettingsError, match=message):
        load_settings(_config(tmp_path, lge))


def test_site_weights_whose_sha256_differs_from_their_record_are_refused(
        tmp_path: Path) -> None:
    _fake_weights(tmp_path / "weights", sha="0" * 64)
    with pytest.raises(SettingsError, match=r"segmenter_weights: SHA-256 of site_segment\.pt is"):
        load_settings(_config(
            tmp_path, 'segmenter = "two-stage"\nsegmenter_weights = "weights/site_segment.pt"'))
    (tmp_path / "weights" / "site_segment.json").unlink()
    with pytest.raises(SettingsError, match=r"provenance record .* missing or unreadable"):
        load_settings(_config(
            tmp_path, 'segmenter = "two-stage"\nsegmenter_weights = "weights/site_segment.pt"'))


@pytest.mark.skipif(not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()),
                    reason="two-stage weights not committed")
def test_analyse_with_site_weights_names_them_in_every_output(tmp_path: Path) -> None:
    from models.phantoms.dicom_build import write_series
    from models.phantoms.dicom_lge import lge_series_datasets
    from models.phantoms.dicom_study import StudyInfo
    from models.phantoms.lge import make_lge_stack
    from models.training.lgeseg.finetune import finetune

    _, slices = make_lge_stack(np.random.default_rng(8), n_slices=2,
                               scar_pattern="ischaemic_lad", s_range=(0.35, 0.65))
    pairs = [SitePair("phantom", f"s{i}", s.magnitude, s.labels, float(s.pixel_spacing[0]))
             for i, s in enumerate(slices)]
    record = finetune(pairs, tmp_path / "weights" / "site_segment.pt", steps=1, batch_size=2)
    sha = record["weights_sha256"]
    inp = tmp_path / "in"
    sources = write_series(lge_series_datasets(slices, vendor="siemens",
                                               study=StudyInfo.synthetic(8)), inp)
    config = _config(tmp_path, 'segmenter = "two-stage"\n'
                               'segmenter_weights = "weights/site_segment.pt"')
    out = tmp_path / "out"
    assert main(["analyse", str(inp), "--out", str(out), "--config", str(config),
                 "--analysis", "lge"]) == 0

    entry = json.loads((out / "results.json").read_text())["series"][0]
    assert entry["status"] == "analysed"
    provenance = entry["provenance"]
    assert provenance["model_sha256"] == sha
    assert provenance["model_version"] == record["model_version"] == "2.0.0+site"
    assert provenance["model_name"] == "cmr-node LGE sim-to-real two-stage U-Net"
    written = {dcmread(p, stop_before_pixels=True).SOPClassUID: p
               for p in out.rglob("*.dcm")}
    srs = [p for uid, p in written.items() if str(uid).startswith(SR_CLASS_PREFIX)]
    assert srs
    for path in srs:
        texts = [str(e.value) for e in dcmread(path).iterall() if e.VR in ("UT", "LO", "ST")]
        assert f"weights_sha256={sha}" in texts  # the SR's algorithm identification
        assert "model_version=2.0.0+site" in texts
    # The node's own SEG, as a reader would correct it, is site data again.
    seg = next(p for uid, p in written.items() if str(uid) == SEG_CLASS)
    reread = tmp_path / "reread"
    reread.mkdir()
    for path in [*sources, seg]:
        (reread / path.name).write_bytes(path.read_bytes())
    again = load_dicom_seg(reread)
    assert again and {p.name for p in again} <= {str(dcmread(s).SOPInstanceUID) for s in sources}
    assert all(np.any(p.labels == 2) for p in again)
