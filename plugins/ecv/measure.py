"""Per-slice ECV measurement: the native labels and core transferred onto an aligned
post-contrast frame, the T1 of myocardium and blood in both maps, ΔR1, λ and the pixel-wise
ECV, with the flags of the slice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import Label, LoadedSeries, QCFlag, Severity, SliceResult
from plugins.ecv.alignment import (
    MAX_SHIFT_MM,
    FramePair,
    estimate_shift,
    grid_coordinates,
    resample,
    same_grid,
)
from plugins.ecv.qc import QCCode

LARGE_SHIFT_MM: Final = 5.0
"""Shift above which the slice is flagged: half a wall thickness; the transferred contours
are then only as good as the registration."""
MIN_BLOOD_DELTA_R1_PER_S: Final = 1.0
"""Blood R1 rise (1/s) below which the map is flagged.  10-20 min after 0.1-0.2 mmol/kg
gadolinium, blood T1 is 250-450 ms at 1.5 T (ΔR1 1.5-3.5 /s); ΔR1 < 1 /s (blood T1 above
~600 ms) means a late or low-dose acquisition, where λ's noise grows as 1/ΔR1blood."""
FAILURE_BLOOD_DELTA_R1_PER_S: Final = 0.3
"""Blood R1 rise below which ECV is not trustworthy at all (a native map sent as post-contrast
gives ~0)."""
PLAUSIBLE_ECV: Final = (0.15, 0.70)
"""ECV outside this range is flagged: normal myocardium is 0.22-0.30, diffuse fibrosis and
amyloidosis reach 0.40-0.70; below 0.15 no myocardium is known (misregistration, wrong
haematocrit or blood contamination)."""
PLAUSIBLE_LAMBDA: Final = (0.2, 1.4)
"""Partition coefficient range matching :data:`PLAUSIBLE_ECV` over haematocrits 0.3-0.5."""
MIN_CORE_PIXELS: Final = 20
"""Fewest valid core pixels for a slice value (as in the native T1 analysis)."""
MIN_BLOOD_PIXELS: Final = 5
BLOOD_MARGIN_MM: Final = 2.0
"""Blood-pool pixels closer than this to the endocardium are not used (partial volume)."""
_MS_PER_S = 1000.0


@dataclass
class SliceValues:
    """What one paired post-contrast slice measured."""

    frame_index: int
    native_index: int
    level: str
    labels: npt.NDArray[np.uint8]
    core: npt.NDArray[np.bool_]
    shift_px: tuple[float, float]
    shift_mm: float
    at_limit: bool
    t1_native_myo: float
    t1_post_myo: float
    t1_native_blood: float
    t1_post_blood: float
    delta_r1_myo: float
    delta_r1_blood: float
    core_pixels: int
    pixel_ecv: npt.NDArray[np.float32]
    """ECV fraction per pixel (λ per pixel without a haematocrit)."""

    @property
    def partition(self) -> float:
        return self.delta_r1_myo / self.delta_r1_blood


def measure_pair(
    post: LoadedSeries,
    native: LoadedSeries,
    native_slice: SliceResult,
    pair: FramePair,
    post_scale: float,
    native_scale: float,
    haematocrit: float | None,
) -> tuple[SliceValues | None, list[QCFlag]]:
    post_frame = post.frames[pair.post_index]
    """The values of one pair, or None (too few pixels, no blood R1 rise), and its flags."""
    native_frame = native.frames[pair.native_index]
    index = pair.post_index
    flags: list[QCFlag] = []
    coords = None if same_grid(post_frame, native_frame) else grid_coordinates(
        post_frame, native_frame
    )
    t1_post = np.asarray(post_frame.pixels, np.float32) * np.float32(post_scale)
    t1_native = resample(
        np.asarray(native_frame.pixels, np.float32) * np.float32(native_scale), coords, 1
    )
    labels = resample(np.asarray(native_slice.labels, np.uint8), coords, 0)
    core_src = native_slice.analysed_region
    assert core_src is not None
    core = resample(core_src.astype(np.uint8), coords, 0).astype(bool)

    lv = labels == Label.LV_BLOOD_POOL
    wall = labels == Label.MYOCARDIUM
    heart = lv | wall
    centre = (
        tuple(float(v) for v in ndimage.center_of_mass(heart)) if heart.any() else None
    )
    shift, at_limit = estimate_shift(
        t1_native, t1_post, post_frame.pixel_spacing,
        centre=centre,  # type: ignore[arg-type]
    )
    if at_limit:
        flags.append(QCFlag(
            QCCode.ALIGNMENT_UNCERTAIN, Severity.FAILURE,
            f"The native and post-contrast maps could not be aligned within "
            f"{MAX_SHIFT_MM:g} mm (different slices or a large breath-hold difference): the "
            "transferred contours would be misplaced; no ECV for this slice.",
            frame_index=index,
        ))
        shift = (0.0, 0.0)
    shift_mm = float(np.hypot(shift[0] * post_frame.pixel_spacing[0],
                              shift[1] * post_frame.pixel_spacing[1]))
    if shift_mm > LARGE_SHIFT_MM:
        flags.append(QCFlag(
            QCCode.ALIGNMENT_SHIFT_LARGE, Severity.WARNING,
            f"The native map was moved by {shift_mm:.1f} mm to match the post-contrast map "
            f"(limit {LARGE_SHIFT_MM:g} mm): the breath-hold positions differ; review the "
            "transferred contours.",
            frame_index=index,
        ))
    if shift != (0.0, 0.0):
        t1_native = ndimage.shift(t1_native, shift, order=1, mode="constant", cval=0.0)
        labels = ndimage.shift(labels, shift, order=0, mode="constant", cval=0)
        core = ndimage.shift(core.astype(np.uint8), shift, order=0, mode="constant",
                             cval=0).astype(bool)
    valid = (t1_native > 0) & (t1_post > 0) & np.isfinite(t1_native) & np.isfinite(t1_post)
    core = core & valid & (labels == Label.MYOCARDIUM)
    lv = labels == Label.LV_BLOOD_POOL
    inner = ndimage.distance_transform_edt(lv, sampling=post_frame.pixel_spacing)
    blood = (inner >= BLOOD_MARGIN_MM) & valid
    if np.count_nonzero(blood) < MIN_BLOOD_PIXELS:
        blood = lv & valid
    if np.count_nonzero(blood) < MIN_BLOOD_PIXELS or np.count_nonzero(core) < MIN_CORE_PIXELS:
        flags.append(QCFlag(
            QCCode.TOO_FEW_CORE_PIXELS, Severity.WARNING,
            f"Only {int(np.count_nonzero(core))} myocardial core and "
            f"{int(np.count_nonzero(blood))} blood-pool pixels have values in both maps "
            f"(need {MIN_CORE_PIXELS} and {MIN_BLOOD_PIXELS}): no ECV for this slice.",
            frame_index=index,
        ))
        return None, flags
    t1n_myo = float(np.mean(t1_native[core]))
    t1p_myo = float(np.mean(t1_post[core]))
    t1n_blood = float(np.median(t1_native[blood]))
    t1p_blood = float(np.median(t1_post[blood]))
    d_myo = _MS_PER_S / t1p_myo - _MS_PER_S / t1n_myo
    d_blood = _MS_PER_S / t1p_blood - _MS_PER_S / t1n_blood
    if d_blood < MIN_BLOOD_DELTA_R1_PER_S:
        severity = (
            Severity.FAILURE if d_blood < FAILURE_BLOOD_DELTA_R1_PER_S else Severity.WARNING
        )
        flags.append(QCFlag(
            QCCode.BLOOD_DELTA_R1_LOW, severity,
            f"Blood R1 rose by only {d_blood:.2f} /s (T1 {t1n_blood:.0f} -> {t1p_blood:.0f} "
            f"ms; expected >= {MIN_BLOOD_DELTA_R1_PER_S:g} /s): the map was acquired too "
            "late or with little contrast, or is not post-contrast; ECV is imprecise"
            + (" and not usable." if severity is Severity.FAILURE else "."),
            frame_index=index,
        ))
    if d_blood <= 0:
        return None, flags
    with np.errstate(divide="ignore", invalid="ignore"):
        pixel = (_MS_PER_S / t1_post - _MS_PER_S / t1_native) / d_blood
    factor = 1.0 - haematocrit if haematocrit is not None else 1.0
    pixel_ecv = np.where(valid, np.clip(pixel * factor, 0.0, 1.0), 0.0).astype(np.float32)
    return SliceValues(
        frame_index=index,
        native_index=pair.native_index,
        level=native_slice.level,
        labels=np.asarray(labels, np.uint8),
        core=core,
        shift_px=(float(shift[0]), float(shift[1])),
        shift_mm=shift_mm,
        at_limit=at_limit,
        t1_native_myo=t1n_myo,
        t1_post_myo=t1p_myo,
        t1_native_blood=t1n_blood,
        t1_post_blood=t1p_blood,
        delta_r1_myo=d_myo,
        delta_r1_blood=d_blood,
        core_pixels=int(np.count_nonzero(core)),
        pixel_ecv=pixel_ecv,
    ), flags


def value_flags(sv: SliceValues, haematocrit: float | None) -> list[QCFlag]:
    """The flag of a slice whose ECV (λ without a haematocrit) is implausible, if any."""
    if haematocrit is not None:
        value, (low, high), what = sv.partition * (1 - haematocrit), PLAUSIBLE_ECV, "ECV"
        text = f"{100 * value:.1f} %"
        bounds = f"{100 * low:.0f}-{100 * high:.0f} %"
    else:
        value, (low, high), what = sv.partition, PLAUSIBLE_LAMBDA, "The partition coefficient"
        text, bounds = f"{value:.2f}", f"{low:g}-{high:g}"
    if low <= value <= high:
        return []
    return [QCFlag(
        QCCode.ECV_OUT_OF_RANGE, Severity.WARNING,
        f"{what} {text} is outside the plausible {bounds}: check the haematocrit, the "
        "alignment of the two maps and the contours.",
        frame_index=sv.frame_index,
    )]
