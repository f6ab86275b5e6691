"""A native and a post-contrast T1-map series of one phantom study (the ECV analysis' input)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset


def native_and_postcontrast(seed: int = 400) -> tuple[list[Dataset], list[Dataset]]:
    """The native and post-contrast T1-map series (1.5 T, myocardial ECV 0.30, lesion 0.55)."""
    from models.phantoms.dicom_maps import (
        postcontrast_t1map_series_datasets,
        t1map_series_datasets,
    )
    from models.phantoms.dicom_study import StudyInfo
    from models.phantoms.maps import ContrastState
    from models.phantoms.t1map import make_t1map_stack

    rng = np.random.default_rng([seed, 1])
    _, slices = make_t1map_stack(rng, field_strength_t=1.5)
    info = StudyInfo.synthetic(seed)
    native = t1map_series_datasets(slices, study=info, rng=rng, field_strength_t=1.5)
    state = ContrastState(blood_t1_post_ms=350.0, myocardial_ecv=0.3, lesion_ecv=0.55)
    post = postcontrast_t1map_series_datasets(
        slices, study=info, rng=rng, contrast=state,
        slice_gap_mm=float(native[0].SpacingBetweenSlices), field_strength_t=1.5)
    return native, post
