"""Scar on each analysed LGE slice, by the network, n-SD and FWHM, and the stack's volumes,
masses and %scar, with the checks of the series (LV mass, myocardial nulling, agreement of
the methods)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import (
    FloatImage,
    Label,
    LabelImage,
    Measurement,
    QCFlag,
    Severity,
    SourceFrame,
)
from plugins.lge.qc import QCCode
from plugins.lge.quantify import (
    ENHANCED_LABELS,
    FWHM_FLOOR_SD,
    MYOCARDIAL_LABELS,
    RemoteReference,
    fwhm_scar,
    nsd_scar,
    remote_reference,
)

MYOCARDIAL_DENSITY_G_PER_ML: Final = 1.05
"""Density of myocardium (g/ml)."""
MAX_NULLING_RATIO: Final = 0.3
"""Remote myocardium brighter than this fraction of the blood pool (both above zero signal)
is poorly nulled (a wrong inversion time): magnitude thresholds then underestimate scar."""
INVERTED_NULLING_RATIO: Final = 1.0
"""Remote myocardium brighter than the blood pool itself: the inversion time was far from the
myocardial null (or the whole myocardium enhances, as in cardiac amyloidosis), scar has no
contrast against it, and scar extent is not reported (SCMR post-processing recommendations:
quantify LGE only on images with nulled remote myocardium)."""
LV_MASS_PLAUSIBLE_G: Final = (40.0, 400.0)
"""LV myocardial mass outside this range is implausible for an adult LV stack."""
MAX_METHOD_SPREAD_POINTS: Final = 10.0
"""Network, n-SD and FWHM %scar further apart than this (percentage points) are flagged."""
DEFAULT_SLICE_SPACING_MM: Final = 10.0
"""Slab of a single slice without SliceThickness (typical LGE spacing)."""


class SegmentationMode(enum.StrEnum):
    """Which inputs segmented a slice (``extra["slices"][i]["mode"]``)."""

    LGE = "lge"
    """The LGE image alone (LGE-only network)."""
    LGE_CINE = "lge+cine"
    """The LGE image and the matched cine image (two-channel network)."""


class ScarMethod(enum.StrEnum):
    """How scar was delineated."""

    NETWORK = "network"
    NSD = "n-SD"
    FWHM = "FWHM"


@dataclass
class AnalysedSlice:
    """One segmented slice of the stack and what was measured on it."""

    index: int
    frame: SourceFrame
    labels: LabelImage
    uncertainty: float | None
    details: Mapping[str, Any]
    zero: float
    remote: RemoteReference | None = None
    scar: dict[ScarMethod, npt.NDArray[np.bool_]] | None = None
    mvo: dict[ScarMethod, npt.NDArray[np.bool_]] | None = None
    fwhm_threshold: float | None = None
    level: str = "unknown"
    mode: SegmentationMode = SegmentationMode.LGE
    cine: Mapping[str, Any] | None = None
    probabilities: Mapping[Label, FloatImage] = field(default_factory=dict)

    @property
    def pixel_area(self) -> float:
        """Area of a pixel (mm2)."""
        return float(self.frame.pixel_spacing[0] * self.frame.pixel_spacing[1])

    @property
    def myocardium(self) -> npt.NDArray[np.bool_]:
        """Myocardium (scar and MVO included)."""
        return np.isin(self.labels, MYOCARDIAL_LABELS)

    @property
    def lv_blood(self) -> npt.NDArray[np.bool_]:
        """LV blood pool."""
        return np.asarray(self.labels == Label.LV_BLOOD_POOL)

    def area(self, mask: npt.NDArray[np.bool_]) -> float:
        """Area of ``mask`` (mm2)."""
        return float(mask.sum()) * self.pixel_area


def keep_wall_scar(labels: LabelImage) -> tuple[LabelImage, int]:
    """Labels with enhancement outside the main LV wall removed; and how many pixels were."""
    wall = np.isin(labels, MYOCARDIAL_LABELS)
    components, count = ndimage.label(wall)
    if count <= 1:
        return labels, 0
    sizes = ndimage.sum(wall, components, range(1, count + 1))
    main = components == (int(np.argmax(sizes)) + 1)
    outside = np.isin(labels, ENHANCED_LABELS) & ~main
    cleaned = labels.copy()
    cleaned[outside] = Label.BACKGROUND
    return cleaned, int(outside.sum())


def slice_spacing(slices: Sequence[AnalysedSlice]) -> tuple[float, str]:
    """Slab thickness of each slice (mm) and where it comes from."""
    locations = sorted({round(s.frame.slice_location, 1) for s in slices})
    if len(locations) >= 2:
        gaps = np.diff(locations)
        return float(np.median(gaps)), "median distance between slice centres"
    thickness = slices[0].frame.slice_thickness if slices else None
    if thickness:
        return float(thickness), "SliceThickness of the single slice"
    return DEFAULT_SLICE_SPACING_MM, "assumed (single slice without SliceThickness)"


def quantify_slices(analysed: Sequence[AnalysedSlice], n_sd: float, flags: list[QCFlag]) -> None:
    """Remote reference and scar by each method (MVO included) on every slice, in place."""
    for item in analysed:
        item.remote = remote_reference(
            np.asarray(item.frame.pixels, dtype=np.float32), item.labels, item.frame.pixel_spacing
        )
    pooled = [s.remote for s in analysed if s.remote is not None]
    for item in analysed:
        image = np.asarray(item.frame.pixels, dtype=np.float32)
        spacing = item.frame.pixel_spacing
        myo, blood = item.myocardium, item.lv_blood
        network = np.isin(item.labels, ENHANCED_LABELS)
        network_mvo = np.asarray(item.labels == Label.MVO)
        remote = item.remote
        if remote is None and pooled:
            remote = min(pooled, key=lambda r: abs(r.mean - float(np.median(image[myo]))))
            flags.append(QCFlag(
                QCCode.REMOTE_BORROWED, Severity.INFO,
                "Too little unenhanced myocardium on this slice for a remote reference; the "
                "closest reference of another slice was used for n-SD.",
                frame_index=item.index,
            ))
        if remote is None:
            flags.append(QCFlag(
                QCCode.REMOTE_NOT_FOUND, Severity.WARNING,
                "No remote myocardium on any slice: the n-SD method could not be applied here.",
                frame_index=item.index,
            ))
            nsd = np.zeros_like(myo)
            nsd_mvo = np.zeros_like(myo)
        else:
            nsd, nsd_mvo = nsd_scar(image, myo, blood, remote, n_sd, spacing)
        fwhm, fwhm_mvo, threshold = fwhm_scar(
            image, myo, blood, network | nsd, item.zero, spacing,
            floor=None if remote is None else remote.mean + FWHM_FLOOR_SD * remote.sd,
        )
        # MVO is not enhanced, so no threshold sees it; readers add it to the scar by hand.
        nsd_mvo, fwhm_mvo = nsd_mvo | (network_mvo & ~nsd), fwhm_mvo | (network_mvo & ~fwhm)
        nsd, fwhm = nsd | nsd_mvo, fwhm | fwhm_mvo
        item.scar = {ScarMethod.NETWORK: network | network_mvo, ScarMethod.NSD: nsd,
                     ScarMethod.FWHM: fwhm}
        item.mvo = {ScarMethod.NETWORK: network_mvo, ScarMethod.NSD: nsd_mvo,
                    ScarMethod.FWHM: fwhm_mvo}
        item.fwhm_threshold = threshold


def scar_totals(analysed: Sequence[AnalysedSlice], spacing_mm: float
                ) -> dict[ScarMethod, dict[str, float]]:
    """Myocardium, scar and MVO volumes, masses and per cent of LV mass by each method."""
    myo_ml = sum(s.area(s.myocardium) for s in analysed) * spacing_mm / 1000.0
    totals: dict[ScarMethod, dict[str, float]] = {}
    for method in ScarMethod:
        scar_ml = sum(s.area(s.scar[method]) for s in analysed if s.scar) * spacing_mm / 1000.0
        mvo_ml = sum(s.area(s.mvo[method]) for s in analysed if s.mvo) * spacing_mm / 1000.0
        totals[method] = {
            "myocardium_volume_ml": myo_ml,
            "myocardium_mass_g": myo_ml * MYOCARDIAL_DENSITY_G_PER_ML,
            "scar_volume_ml": scar_ml,
            "scar_mass_g": scar_ml * MYOCARDIAL_DENSITY_G_PER_ML,
            "percent": 100.0 * scar_ml / myo_ml if myo_ml > 0 else 0.0,
            "mvo_mass_g": mvo_ml * MYOCARDIAL_DENSITY_G_PER_ML,
            "mvo_percent": 100.0 * mvo_ml / myo_ml if myo_ml > 0 else 0.0,
        }
    return totals


def nulling_ratio(analysed: Sequence[AnalysedSlice]) -> float | None:
    """Median over slices of remote-myocardium over LV blood-pool signal (above zero signal)."""
    ratios = []
    for s in analysed:
        blood = s.lv_blood
        if s.remote is None or not blood.any():
            continue
        blood_signal = float(np.median(s.frame.pixels[blood])) - s.zero
        if blood_signal > 0:
            ratios.append((s.remote.mean - s.zero) / blood_signal)
    return float(np.median(ratios)) if ratios else None


def without_scar_values(measurements: Sequence[Measurement], reason: str | None
              ) -> tuple[Measurement, ...]:
    """``measurements`` with every scar and MVO value removed and ``reason`` given instead."""
    if reason is None:
        return tuple(measurements)
    return tuple(
        replace(m, value=None, reason=reason)
        if m.region in (Label.SCAR, Label.MVO) else m
        for m in measurements)


def series_qc_flags(analysed: Sequence[AnalysedSlice],
                  totals: Mapping[ScarMethod, Mapping[str, float]]) -> list[QCFlag]:
    """The series' flags: LV mass implausible, nulling poor or inverted, methods apart."""
    flags: list[QCFlag] = []
    mass = totals[ScarMethod.NETWORK]["myocardium_mass_g"]
    low, high = LV_MASS_PLAUSIBLE_G
    if len(analysed) >= 3 and not low <= mass <= high:
        flags.append(QCFlag(
            QCCode.LV_MASS_IMPLAUSIBLE, Severity.WARNING,
            f"LV myocardial mass {mass:.0f} g is outside {low:.0f}-{high:.0f} g: check coverage "
            "and contours.",
        ))
    ratio = nulling_ratio(analysed)
    if ratio is not None and ratio > INVERTED_NULLING_RATIO:
        flags.append(QCFlag(
            QCCode.INVERTED_NULLING, Severity.FAILURE,
            f"Remote myocardium is {100 * ratio:.0f} % of the blood-pool signal, brighter than "
            "the blood: the inversion time was far from the myocardial null, or the whole "
            "myocardium enhances (e.g. cardiac amyloidosis). Scar has no contrast against "
            "such myocardium, so scar extent is not reported.",
        ))
    elif ratio is not None and ratio > MAX_NULLING_RATIO:
        flags.append(QCFlag(
            QCCode.POOR_NULLING, Severity.WARNING,
            f"Remote myocardium is {100 * ratio:.0f} % of the blood-pool "
            f"signal (nulled myocardium: < {100 * MAX_NULLING_RATIO:.0f} %): the inversion time "
            "was probably wrong; threshold methods may underestimate scar.",
        ))
    percents = [totals[m]["percent"] for m in ScarMethod]
    if max(percents) - min(percents) > MAX_METHOD_SPREAD_POINTS:
        text = ", ".join(f"{m} {totals[m]['percent']:.1f} %" for m in ScarMethod)
        flags.append(QCFlag(
            QCCode.METHODS_DISAGREE, Severity.WARNING,
            f"Scar extent differs between methods by more than {MAX_METHOD_SPREAD_POINTS:g} "
            f"points ({text}): review the scar contours.",
        ))
    return flags
