"""A re-sent slice (new SOP Instance UID, same position) or a stray CT instance carrying the
series' UID no longer breaks the analysis further down (issue 17, item 3): the loader keeps
the newest image per position and says so, and the writers get one plane per position."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from models.phantoms.dicom_build import write_series
from models.phantoms.dicom_maps import t1map_series_datasets
from models.phantoms.dicom_study import StudyInfo
from models.phantoms.t1map import make_heart_case, make_t1map_stack
from node.jobs.pipeline import result_summary, run_analysis, writer_settings
from tests.networks import node_options

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def datasets() -> list:
    rng = np.random.default_rng(17)
    heart = make_heart_case(rng, field_strength_t=1.5, lesion_probability=0.0)
    _, slices = make_t1map_stack(rng, field_strength_t=1.5, heart=heart)
    return t1map_series_datasets(slices, vendor="siemens", study=StudyInfo.synthetic(17))


def test_resent_slice_and_stray_ct_instance_are_left_out_not_crashed_on(
    datasets: list, tmp_path: Path
) -> None:
    resent = copy.deepcopy(datasets[1])
    resent.SOPInstanceUID = generate_uid()
    resent.file_meta.MediaStorageSOPInstanceUID = resent.SOPInstanceUID
    resent.ContentTime = "235959"
    ct = copy.deepcopy(datasets[0])
    ct.Modality = "CT"
    ct.SOPInstanceUID = generate_uid()
    ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
    # write_series names files by InstanceNumber: the re-sent copies go to folders of their own
    paths = [
        *write_series(datasets, tmp_path / "series"),
        *write_series([resent], tmp_path / "resent"),
        *write_series([ct], tmp_path / "ct"),
    ]

    run = run_analysis(paths, "t1map", node_options("t1map"), writer_settings("cmr-node", None))

    used = {frame.sop_instance_uid for frame in run.series.frames}
    assert len(run.series.frames) == len(datasets)
    assert str(resent.SOPInstanceUID) in used
    assert str(datasets[1].SOPInstanceUID) not in used
    assert str(ct.SOPInstanceUID) not in used
    seg = next(o.dataset for o in run.outputs if str(o.dataset.SOPClassUID) == SEG_CLASS)
    positions = [tuple(float(v) for v in fr.PlanePositionSequence[0].ImagePositionPatient)
                 for fr in seg.PerFrameFunctionalGroupsSequence]
    assert len(positions) >= len(datasets)
    summary = result_summary(run, [])
    notes = summary["image_selection"]
    assert any("another modality than MR (CT)" in n for n in notes)
    assert any("repeated image" in n and str(resent.SOPInstanceUID) in n for n in notes)
