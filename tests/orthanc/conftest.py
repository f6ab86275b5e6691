"""Phantom series and a fake Orthanc for the plugin tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_noncardiac import non_cardiac_mr_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from node.orthanc.app import Registration, register
from node.orthanc.node import OrthancNode
from tests.orthanc.fake_orthanc import FakeOrthanc


def t1map_files(folder: Path, seed: int, n_slices: int = 3) -> list[Path]:
    """A lesion-free MOLLI T1-map series (one file per slice) written to ``folder``."""
    rng = np.random.default_rng(seed)
    levels = ("basal", "mid", "apical")[:n_slices]
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, levels=levels, heart=heart)
    datasets = t1map_series_datasets(
        slices, vendor="siemens", field_strength_t=1.5, rng=rng, study=StudyInfo.synthetic(seed)
    )
    return write_series(datasets, folder / f"t1-{seed}")


def brain_files(folder: Path, seed: int) -> list[Path]:
    """A non-cardiac MR series the router does not send to any analysis."""
    rng = np.random.default_rng(seed)
    datasets = non_cardiac_mr_series_datasets(rng=rng, study=StudyInfo.synthetic(seed))
    return write_series(datasets, folder / f"brain-{seed}")


def as_output(path: Path, series_uid: str, description: str = "cmr-node T1 map SEG") -> Dataset:
    """A copy of an instance dressed as one of the node's outputs."""
    ds = dcmread(path)
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Manufacturer = "cmr-node project"
    ds.ManufacturerModelName = "cmr-node"
    ds.SeriesDescription = description
    return ds


def write_node_config(folder: Path, extra: str = "", node: str = "") -> Path:
    """A node settings file with the data under ``folder/node`` and one analysis enabled
    (``node``: more lines of its ``[node]`` table; ``extra``: more tables)."""
    path = folder / "node.toml"
    path.write_text(
        f'[node]\ndata_dir = "{folder / "node"}"\nlog_level = "INFO"\n{node}'
        "[sender]\nretry_initial_s = 0.2\nretry_max_s = 1.0\nnetwork_timeout_s = 5\n"
        f"{extra}"
    )
    return path


@pytest.fixture()
def fake(tmp_path: Path) -> FakeOrthanc:
    config = write_node_config(tmp_path)
    return FakeOrthanc(config={"CmrNode": {"Config": str(config)}})


@pytest.fixture()
def registered(fake: FakeOrthanc) -> Iterator[Registration]:
    registration = register(fake, configure_logging=False)
    yield registration
    registration.node.stop(timeout=5)
    registration.node.close()


@pytest.fixture()
def node(registered: Registration) -> OrthancNode:
    return registered.node


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("phantoms")


@pytest.fixture(scope="session")
def t1_paths(phantom_dir: Path) -> list[Path]:
    return t1map_files(phantom_dir, seed=11)


@pytest.fixture(scope="session")
def brain_paths(phantom_dir: Path) -> list[Path]:
    return brain_files(phantom_dir, seed=12)
