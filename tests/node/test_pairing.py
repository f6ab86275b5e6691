"""PSIR and magnitude reconstructions of one LGE acquisition: only the preferred one is analysed."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from pydicom import Dataset

from models.phantoms.dicom_lge import lge_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.lge import make_lge_stack
from node.cli.main import preferred_lge_partners
from node.completion.pairing import lge_reconstruction, preferred_partner, skip_reason
from plugins.lge import LgeContrast


@pytest.fixture(scope="module")
def pair() -> tuple[list[Dataset], list[Dataset]]:
    rng = np.random.default_rng(3)
    _case, slices = make_lge_stack(rng, n_slices=4, scar_pattern="ischaemic_rca")
    study = StudyInfo.synthetic(3)
    psir = lge_series_datasets(slices, vendor="siemens", study=study, contrast="psir")
    magnitude = lge_series_datasets(slices, vendor="siemens", study=study, contrast="magnitude")
    return psir, magnitude


def _uid(datasets: list[Dataset]) -> str:
    return str(datasets[0].SeriesInstanceUID)


def test_reconstructions_of_one_acquisition_share_a_key(
    pair: tuple[list[Dataset], list[Dataset]],
) -> None:
    psir, magnitude = pair
    a = lge_reconstruction(_uid(psir), psir)
    b = lge_reconstruction(_uid(magnitude), magnitude)
    assert a is not None and b is not None
    assert a.acquisition == b.acquisition
    assert a.contrast is LgeContrast.PSIR and b.contrast is LgeContrast.MAGNITUDE


def test_magnitude_defers_to_psir_by_default_and_psir_to_nothing(
    pair: tuple[list[Dataset], list[Dataset]],
) -> None:
    psir, magnitude = pair
    a = lge_reconstruction(_uid(psir), psir)
    b = lge_reconstruction(_uid(magnitude), magnitude)
    assert a is not None and b is not None
    assert preferred_partner(b, [a]) == a
    assert preferred_partner(a, [b]) is None
    # A site that prefers magnitude gets the opposite.
    assert preferred_partner(a, [b], LgeContrast.MAGNITUDE) == b
    reason = skip_reason(a, LgeContrast.PSIR)
    assert _uid(psir) in reason and "PSIR" in reason


def test_other_geometry_is_another_acquisition(
    pair: tuple[list[Dataset], list[Dataset]],
) -> None:
    psir, magnitude = pair
    moved = [copy.deepcopy(ds) for ds in psir]
    for ds in moved:
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], position[2] + 5.0]
    a = lge_reconstruction("moved", moved)
    b = lge_reconstruction(_uid(magnitude), magnitude)
    assert a is not None and b is not None
    assert preferred_partner(b, [a]) is None


def test_offline_analyse_skips_the_magnitude_series(
    pair: tuple[list[Dataset], list[Dataset]],
) -> None:
    psir, magnitude = pair
    skipped = preferred_lge_partners({_uid(psir): psir, _uid(magnitude): magnitude}, {})
    assert set(skipped) == {_uid(magnitude)}
    assert "PSIR series" in skipped[_uid(magnitude)]
    only = preferred_lge_partners({_uid(magnitude): magnitude}, {})
    assert only == {}
    prefer_mag = preferred_lge_partners(
        {_uid(psir): psir, _uid(magnitude): magnitude}, {"prefer": "magnitude"}
    )
    assert set(prefer_mag) == {_uid(psir)}
