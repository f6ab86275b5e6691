"""Synthetic non-cardiac MR series (a T2-weighted axial brain) that routing must not analyse."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage

from models.phantoms.dicom_build import (
    _base_dataset,
    _Encoding,
    _file_meta,
    _SeriesSpec,
    _set_geometry,
    _set_pixels,
)
from models.phantoms.dicom_study import (
    VENDOR_PROFILES,
    SeriesKind,
    StudyInfo,
    Vendor,
    _resolve_vendor,
    _study,
    _uid,
)


def _brain_slice(rng: np.random.Generator, shape: tuple[int, int], z: float
                 ) -> npt.NDArray[np.float32]:
    """A T2-weighted axial brain image: scalp, skull, CSF, grey and white matter."""
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x = (xx - cols / 2) / (cols / 2)
    y = (yy - rows / 2) / (rows / 2)
    shrink = math.sqrt(max(1.0 - (z / 80.0) ** 2, 0.2))
    r = np.hypot(x / (0.72 * shrink), y / (0.88 * shrink))
    image = np.zeros(shape, dtype=np.float32)
    image[r < 1.0] = 700.0  # scalp
    image[r < 0.95] = 80.0  # skull
    image[r < 0.9] = 1800.0  # CSF
    image[r < 0.86] = 1100.0  # grey matter
    theta = np.arctan2(y, x)
    wm = r < 0.7 + 0.06 * np.cos(7 * theta)
    image[wm] = 750.0
    ventricles = (np.hypot((x - 0.12) / 0.07, y / 0.3) < 1) | (np.hypot((x + 0.12) / 0.07,
                                                                       y / 0.3) < 1)
    image[ventricles & (abs(z) < 30)] = 1800.0
    image += rng.normal(0.0, 25.0, shape).astype(np.float32)
    return np.clip(image, 0, 4095).astype(np.float32)


def non_cardiac_mr_series_datasets(
    *,
    vendor: str | Vendor = "siemens",
    study: StudyInfo | None = None,
    series_number: int = 2,
    field_strength_t: float = 1.5,
    rng: np.random.Generator | None = None,
    n_slices: int = 5,
    shape: tuple[int, int] = (256, 224),
) -> list[Dataset]:
    """An axial T2 TSE brain series (BodyPartExamined BRAIN): must not be routed to T1."""
    v = _resolve_vendor(vendor)
    st = _study(study)
    generator = rng if rng is not None else np.random.default_rng([st.seed, series_number])
    profile = VENDOR_PROFILES[v]
    spec = _SeriesSpec(
        kind=SeriesKind.BRAIN_T2, series_number=series_number, description="t2_tse_tra",
        protocol="t2_tse_tra", image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
        sequence_name="*tse2d1_15" if v is Vendor.SIEMENS else "",
        scanning_sequence=("SE",), sequence_variant=("SK", "SP", "OSP"), scan_options=("PFP",),
        body_part="BRAIN", seconds_after_start=120.0, repetition_time_ms=5000.0,
        echo_time_ms=96.0, flip_angle_deg=150.0, slice_thickness_mm=5.0,
    )
    series_uid = _uid(st.seed, "series", spec.kind, series_number)
    spacing = (0.9, 0.9)
    gap = 6.0
    out = []
    for index in range(n_slices):
        number = index + 1
        z = (index - (n_slices - 1) / 2.0) * gap
        sop_uid = _uid(st.seed, "instance", spec.kind, series_number, number)
        ds = _base_dataset(st, profile, spec, field_strength_t, series_uid, sop_uid,
                           MRImageStorage, number)
        position = (-(shape[1] / 2 - 0.5) * spacing[1], -(shape[0] / 2 - 0.5) * spacing[0],
                    40.0 + z)
        _set_geometry(ds, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), position, spacing, gap)
        ds.ImagesInAcquisition = str(n_slices)
        ds.EchoTrainLength = "15"
        stored = np.rint(_brain_slice(generator, shape, z)).astype(np.uint16)
        enc = _Encoding(stored, 12, None, None, None, None, ("1", "no units"), "signal")
        _set_pixels(ds, enc, (900.0, 1800.0))
        _file_meta(ds)
        out.append(ds)
    return out
