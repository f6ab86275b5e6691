"""LV segmentation of native T1 maps behind a replaceable interface.

:class:`Segmenter` is what the T1-map analysis needs from a segmentation method.  The trained
network (a later model) implements the same protocol, so it replaces
:class:`ClassicalSegmenter` without touching the measurement and QC code.

:class:`ClassicalSegmenter` needs no training data.  It uses the fact that a T1 map is
quantitative: blood, myocardium, liver and fat have known T1 ranges at a given field strength,
so thresholds can be stated in milliseconds.

Two texture measures separate tissue from lung and air, whose fitted "T1" can fall in any
range: the local median absolute deviation from the 3x3 median-filtered map, and the local
fraction of "wild" pixels (more than 25 % off their local median).  Tissue scores low on
both, lung and air filled with fit noise high.

1. **Blood pools.**  The subject's blood T1 is the mode of smooth blood-range pixels (the
   LV and RV cavities dominate them); blood is searched between 87 % of that mode and the
   field-strength maximum, which leaves out lesions brighter than myocardium.  Connected
   regions (after a 1.5 mm opening) that are noisy are dropped; regions merged through a thin
   septum are also split at their necks (distance-transform watershed).
2. **LV cavity.**  Each candidate of plausible area (150-7000 mm2) near the centre of the
   field of view is scored by the fraction of rays from it that meet a 2.5-20 mm wall of
   myocardial T1 (the LV is ringed by myocardium; the RV only on its septal side; vessels in
   fat have no wall, vessels in lung a wall that never ends), its solidity and roundness (the
   RV is a crescent) and its distance from the image centre.  The best one is the LV.
3. **Local thresholds.**  Blood and myocardial T1 of *this* subject come from the cavity and
   the 1.5-6 mm ring around it (which must be homogeneous and distinctly darker than blood).
   The endocardial border is the 50 % partial-volume point between them; the myocardial
   band runs from 80 % of myocardial T1 (liver ~60 %, fat ~30 %) to half-way to blood (so
   focal lesions stay in the wall), weighted by the tissue texture.
4. **Endocardial border.**  Along 120 rays from the centre of the largest disk inscribed in
   the cavity, the border is where the profile crosses the threshold at the cavity's edge.
   A long plateau of intermediate T1 before the crossing marks a bright subendocardial
   lesion, whose start is used instead.  Narrow outward spikes are removed by an angular
   opening and broad leaks by clipping to a robust 2nd-order Fourier fit; papillary
   muscles and trabeculae attached to the wall are put in the blood pool by taking the
   convex hull of the outline (the short-axis LV cavity is convex).
5. **Epicardial border.**  Dynamic programming over angle chooses the wall thickness per ray
   that keeps myocardial samples inside the wall and non-myocardial ones (fat, lung, liver,
   RV blood) in the 2 mm just outside, with wrongly included samples weighted 1.5x (they
   bias T1; a lost sliver of myocardium does not), a penalty on thickness changes between
   neighbouring rays and a weak prior towards the slice's typical thickness.
6. **RV blood pool.**  The largest other smooth blood region within 4 mm of the LV.

Known limits: walls thinner than ~2.5 pixels next to blood-like T1 (effusion) are not
resolved (the slice fails); D-shaped cavities (septal flattening) are made convex; a bright
lesion covering most of the wall can make the slice fail the homogeneity check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import FloatImage, Label, SegmentationOutput

logger = logging.getLogger(__name__)

__all__ = [
    "ClassicalSegmenter",
    "SegmentationOutput",
    "Segmenter",
    "TissueRanges",
    "tissue_ranges",
]

CLASSICAL_NAME: Final = "cmr-node classical T1-threshold polar segmenter"
CLASSICAL_VERSION: Final = "0.1.0"

BAND_LOW_FRACTION: Final = 0.80
"""Myocardial band lower edge, fraction of the subject's myocardial T1 (liver ~0.6, fat ~0.3)."""
BAND_LOW_ZERO_FRACTION: Final = 0.66
"""Below this fraction of myocardial T1 a sample has no myocardial membership at all."""
BAND_HIGH_FRACTION: Final = 0.5
"""Myocardial band upper edge: myocardial T1 plus this fraction of the blood-myocardium gap,
so that focal lesions (oedema, infarct: +80 to +350 ms) stay in the wall.  Lung, whose MOLLI
T1 also lies in this band, is excluded by its noise texture, not by its T1."""
BAND_HIGH_ZERO_FRACTION: Final = 0.7
"""Above myocardial T1 plus this fraction of the gap a sample has no membership."""
ENDO_THRESHOLD_FRACTION: Final = 0.5
"""The endocardial border is where T1 falls below myocardium + this fraction of the
blood-myocardium gap: the 50 % partial-volume point.  (Higher fractions keep more of a bright
subendocardial lesion in the wall but put blood partial volume into it; on the phantoms 0.5
gave the smallest T1 error.)"""
PLATEAU_FRACTION: Final = 0.85
"""Where T1 leaves the blood plateau: myocardium + this fraction of the blood-myocardium gap."""
LESION_STEP_MM: Final = 3.0
"""A blood-to-border step this much longer than the slice's median marks a bright lesion."""
BLOOD_MODE_TOLERANCE: Final = 0.13
"""Blood pools are searched within this fraction below the subject's blood T1 (the mode of
smooth blood-range pixels): wide enough for noise, narrow enough to leave out lesions."""
ENDO_MAX_FILL_MM: Final = 20.0
"""Deepest concavity of the cavity outline filled by the convex hull (papillary muscles)."""
MAX_BLOOD_SPREAD: Final = 0.10
"""Largest robust relative spread (1.4826 MAD / median) of a blood region's raw T1."""
MIN_WALL_FRACTION: Final = 0.6
"""Fraction of rays from a candidate cavity that must meet a wall of myocardial T1."""
CENTRAL_FRACTION: Final = 0.8
"""The LV cavity centre must lie in this central fraction of the field of view (per axis)."""
MAX_WALL_SPREAD: Final = 0.13
"""Largest robust relative spread of T1 in the ring around the LV cavity: myocardium is
homogeneous (noise ~3-5 %; a focal lesion covers less than half the ring)."""
MAX_MYOCARDIUM_BLOOD_RATIO: Final = 0.88
"""Largest myocardium/blood T1 ratio accepted (normal ~0.6-0.7; amyloid with a high
haematocrit approaches 0.85).  Above it the "wall" is partial volume, not myocardium."""
WILD_FRACTION: Final = 0.25
"""Relative distance from the local median that marks a pixel as a fit failure."""
MAX_WILD_FRACTION: Final = 0.08
"""Largest fraction of fit-failure pixels in a region accepted as blood."""
ENDO_LEAK_TOLERANCE_MM: Final = 3.0
"""How far the endocardial radius may exceed its smooth (2nd-harmonic) fit."""
WALL_JUMP_MM: Final = 0.8
"""Largest change of wall thickness between neighbouring rays (3 degrees apart)."""
JUMP_PENALTY: Final = 0.5
"""Cost (mm of misclassified profile) per mm of thickness change between rays."""
INSIDE_WEIGHT: Final = 1.5
"""Weight of non-myocardial samples inside the wall relative to myocardial samples outside:
including fat, lung or blood biases T1, excluding a sliver of myocardium does not."""
OUTSIDE_MM: Final = 2.0
"""Depth beyond the epicardial border over which myocardial samples count against it."""
THICKNESS_TOLERANCE_MM: Final = 2.0
"""Deviation from the slice's typical wall thickness that costs nothing."""
THICKNESS_PRIOR_WEIGHT: Final = 0.3
"""Cost per mm of deviation beyond the tolerance."""


@runtime_checkable
class Segmenter(Protocol):
    """A method that segments the LV on one native T1 map slice."""

    name: str
    version: str
    weights_sha256: str | None
    """SHA-256 of the model weights; ``None`` for a classical method."""

    def segment(
        self,
        t1_ms: FloatImage,
        pixel_spacing: tuple[float, float],
        field_strength_t: float | None,
    ) -> SegmentationOutput:
        """Segment one slice.

        Parameters
        ----------
        t1_ms
            T1 map in milliseconds, shape (rows, columns).
        pixel_spacing
            (row spacing, column spacing) in mm.
        field_strength_t
            Main field strength in tesla, ``None`` if unknown.
        """
        ...


# --------------------------------------------------------------------------------------------
# Field-strength dependent T1 ranges
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TissueRanges:
    """Native MOLLI T1 ranges (ms) used to find and check structures.

    Attributes
    ----------
    blood
        T1 range searched for blood pools (covers haematocrit 0.30–0.55 with noise).
    myocardium
        Physiologically plausible native myocardial T1 (normal to severe diffuse disease).
    blood_plausible
        Physiologically plausible blood T1 (haematocrit extremes).
    field_strength_t
        Field strength the ranges are for, ``None`` if unknown (then the union of the
        1.5 T and 3 T ranges is used).
    """

    blood: tuple[float, float]
    myocardium: tuple[float, float]
    blood_plausible: tuple[float, float]
    field_strength_t: float | None


# MOLLI native T1, ms.  1.5 T: myocardium 950-1050 healthy, up to ~1300 in amyloid/oedema;
# blood 1400-1870 for haematocrit 0.50-0.34 (Treibel 2016).  3 T: myocardium 1100-1250
# healthy (up to ~1500), blood ~1650-2200.  Liver 550-650 / 750-850, fat 250-430.
_RANGES: Final[Mapping[float, TissueRanges]] = {
    1.5: TissueRanges((1280.0, 2300.0), (800.0, 1400.0), (1250.0, 2100.0), 1.5),
    3.0: TissueRanges((1480.0, 2700.0), (950.0, 1650.0), (1450.0, 2450.0), 3.0),
}


def tissue_ranges(field_strength_t: float | None) -> TissueRanges:
    """T1 ranges for a field strength, interpolated linearly between 1.5 T and 3 T.

    Parameters
    ----------
    field_strength_t
        Field strength in tesla; ``None`` gives the union of the 1.5 T and 3 T ranges.
        Values outside 1.5–3 T are clamped to the nearer table (T1 data are tabulated
        only for these two).

    Returns
    -------
    TissueRanges
        The ranges in ms.
    """
    low, high = _RANGES[1.5], _RANGES[3.0]
    if field_strength_t is None:
        return TissueRanges(
            (low.blood[0], high.blood[1]),
            (low.myocardium[0], high.myocardium[1]),
            (low.blood_plausible[0], high.blood_plausible[1]),
            None,
        )
    weight = float(np.clip((field_strength_t - 1.5) / 1.5, 0.0, 1.0))

    def mix(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        return (a[0] + weight * (b[0] - a[0]), a[1] + weight * (b[1] - a[1]))

    return TissueRanges(
        mix(low.blood, high.blood),
        mix(low.myocardium, high.myocardium),
        mix(low.blood_plausible, high.blood_plausible),
        float(field_strength_t),
    )


# --------------------------------------------------------------------------------------------
# Polar geometry helpers (shared with the analysis QC)
# --------------------------------------------------------------------------------------------


def circular_filter(
    values: npt.NDArray[np.float64], size: int, kind: str
) -> npt.NDArray[np.float64]:
    """Median, grey opening or grey closing of a periodic 1-D signal."""
    size = max(1, int(size) | 1)
    if kind == "median":
        return np.asarray(ndimage.median_filter(values, size=size, mode="wrap"), np.float64)
    if kind == "opening":
        return np.asarray(ndimage.grey_opening(values, size=size, mode="wrap"), np.float64)
    if kind == "closing":
        return np.asarray(ndimage.grey_closing(values, size=size, mode="wrap"), np.float64)
    raise ValueError(f"unknown filter {kind!r}")


def polar_sample(
    image: npt.NDArray[Any],
    centre_mm: tuple[float, float],
    spacing: tuple[float, float],
    angles: npt.NDArray[np.float64],
    radii_mm: npt.NDArray[np.float64],
    order: int = 1,
) -> npt.NDArray[np.float64]:
    """Sample an image on rays from a centre, shape (angles, radii); outside the image is 0."""
    rows = centre_mm[0] + np.outer(np.sin(angles), radii_mm)
    cols = centre_mm[1] + np.outer(np.cos(angles), radii_mm)
    coords = np.stack([rows / spacing[0], cols / spacing[1]])
    return np.asarray(
        ndimage.map_coordinates(
            np.asarray(image, dtype=np.float64), coords, order=order, mode="constant", cval=0.0
        ),
        dtype=np.float64,
    )


def pixel_polar_coordinates(
    shape: tuple[int, int], centre_mm: tuple[float, float], spacing: tuple[float, float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Radius (mm) and angle (rad, [0, 2 pi)) of every pixel centre about a centre."""
    rr, cc = np.indices(shape, dtype=np.float64)
    dy = rr * spacing[0] - centre_mm[0]
    dx = cc * spacing[1] - centre_mm[1]
    return np.hypot(dy, dx), np.mod(np.arctan2(dy, dx), 2 * np.pi)


def radius_at(
    radius_by_angle: npt.NDArray[np.float64],
    angles: npt.NDArray[np.float64],
    query: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Periodic linear interpolation of a radius function of angle."""
    extended_angles = np.concatenate([angles, [angles[0] + 2 * np.pi]])
    extended = np.concatenate([radius_by_angle, radius_by_angle[:1]])
    return np.interp(np.mod(query - angles[0], 2 * np.pi) + angles[0], extended_angles, extended)


# --------------------------------------------------------------------------------------------
# Classical segmenter
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """A blood-range region considered as LV blood pool."""

    label: int
    mask: npt.NDArray[np.bool_]
    area_mm2: float
    solidity: float
    roundness: float
    ring_coverage: float
    centre_offset: float
    score: float


class ClassicalSegmenter:
    """Threshold-and-polar-search LV segmentation of a native T1 map (no trained weights).

    Parameters
    ----------
    n_angles
        Number of rays (angular resolution of the borders).
    lv_area_mm2
        Plausible LV blood-pool area range of a short-axis slice (apex to base).
    wall_mm
        Allowed myocardial wall thickness range.
    """

    name: str = CLASSICAL_NAME
    version: str = CLASSICAL_VERSION
    weights_sha256: str | None = None

    def __init__(
        self,
        *,
        n_angles: int = 120,
        lv_area_mm2: tuple[float, float] = (150.0, 7000.0),
        wall_mm: tuple[float, float] = (2.5, 20.0),
    ) -> None:
        self.n_angles = int(n_angles)
        self.lv_area_mm2 = lv_area_mm2
        self.wall_mm = wall_mm

    # ---------------------------------------------------------------------------------------
    def segment(
        self,
        t1_ms: FloatImage,
        pixel_spacing: tuple[float, float],
        field_strength_t: float | None,
    ) -> SegmentationOutput:
        """Segment LV blood pool, myocardium and RV blood pool on one slice.

        Parameters
        ----------
        t1_ms
            T1 map in milliseconds, shape (rows, columns).
        pixel_spacing
            (row spacing, column spacing) in mm.
        field_strength_t
            Main field strength in tesla, ``None`` if unknown.

        Returns
        -------
        SegmentationOutput
            Labels; when no LV is found, an all-background image and the reason.
        """
        image = np.nan_to_num(np.asarray(t1_ms, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
        ranges = tissue_ranges(field_strength_t)
        empty = np.zeros(image.shape, dtype=np.uint8)
        if image.ndim != 2 or min(image.shape) < 16:
            return SegmentationOutput(empty, 1.0, f"image of shape {image.shape} is too small")

        smooth = np.asarray(ndimage.median_filter(image, size=3), dtype=np.float64)
        smoothness = _smoothness(image, smooth)
        candidates, blood_labels = self._candidates(image, smooth, smoothness, spacing, ranges)
        if not candidates:
            return SegmentationOutput(
                empty,
                1.0,
                "no region with blood-pool T1 that is ringed by myocardial T1 "
                f"(blood range {ranges.blood[0]:.0f}-{ranges.blood[1]:.0f} ms)",
                {"field_strength_t": field_strength_t},
            )
        best = max(candidates, key=lambda c: c.score)
        logger.debug(
            "LV candidate: area %.0f mm2, solidity %.2f, roundness %.2f, ring %.2f, score %.2f",
            best.area_mm2,
            best.solidity,
            best.roundness,
            best.ring_coverage,
            best.score,
        )
        return self._borders(image, smooth, smoothness, spacing, ranges, best, blood_labels)

    # ---------------------------------------------------------------------------------------
    def _candidates(
        self,
        image: npt.NDArray[np.float64],
        smooth: npt.NDArray[np.float64],
        smoothness: npt.NDArray[np.float64],
        spacing: tuple[float, float],
        ranges: TissueRanges,
    ) -> tuple[list[_Candidate], npt.NDArray[np.int32]]:
        pixel_area = spacing[0] * spacing[1]
        low = ranges.blood[0]
        mode = _blood_mode(smooth, smoothness, ranges, pixel_area)
        if mode is not None:
            low = max(low, (1.0 - BLOOD_MODE_TOLERANCE) * mode)
        blood = (smooth >= low) & (smooth <= ranges.blood[1])
        # Open with a ~1.5 mm element to cut thin bridges (noise, thin RV wall partial volume).
        radius_px = max(1, round(1.5 / min(spacing)))
        blood = ndimage.binary_opening(blood, structure=_disk(radius_px, spacing))
        labels, n = ndimage.label(blood)
        labels = labels.astype(np.int32)
        if n == 0:
            return [], labels
        areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
        shape = smooth.shape
        half_diag = 0.5 * np.hypot(shape[0] * spacing[0], shape[1] * spacing[1])
        centre_mm = (0.5 * (shape[0] - 1) * spacing[0], 0.5 * (shape[1] - 1) * spacing[1])

        wild = _wild(image, smooth)
        candidates: list[_Candidate] = []
        for index in range(1, n + 1):
            area = float(areas[index - 1]) * pixel_area
            if area < self.lv_area_mm2[0]:
                continue
            component = labels == index
            if (
                _spread(image, component) > MAX_BLOOD_SPREAD
                or float(np.mean(wild[component])) > MAX_WILD_FRACTION
            ):
                continue  # lung or air filled with fit noise, not blood
            # The LV and RV cavities merge where the septum is thin or partial-volumed: also
            # consider the parts of a component separated at its necks.
            regions = [component, *_split_at_necks(component, spacing)]
            for region in regions:
                region_area = float(np.count_nonzero(region)) * pixel_area
                if not self.lv_area_mm2[0] <= region_area <= self.lv_area_mm2[1]:
                    continue
                candidate = self._evaluate(
                    index,
                    region,
                    region_area,
                    smooth,
                    smoothness,
                    spacing,
                    ranges,
                    centre_mm,
                    half_diag,
                )
                if candidate is not None:
                    candidates.append(candidate)
        return candidates, labels

    def _evaluate(
        self,
        index: int,
        region: npt.NDArray[np.bool_],
        area: float,
        smooth: npt.NDArray[np.float64],
        smoothness: npt.NDArray[np.float64],
        spacing: tuple[float, float],
        ranges: TissueRanges,
        centre_mm: tuple[float, float],
        half_diag: float,
    ) -> _Candidate | None:
        """Score a blood region as LV cavity, ``None`` if it cannot be one."""
        filled = ndimage.binary_fill_holes(region)
        rr, cc = np.nonzero(filled)
        if rr.size < 8:
            return None
        # Roundness from second moments in mm; solidity from the convex hull.
        y = rr * spacing[0]
        x = cc * spacing[1]
        eigen = np.sort(np.linalg.eigvalsh(np.cov(np.stack([y, x]))))
        roundness = float(np.sqrt(max(eigen[0], 1e-9) / max(eigen[1], 1e-9)))
        solidity = _solidity(filled)
        if solidity < 0.7 or roundness < 0.35:
            return None
        ring = _wall_fraction(smooth, smoothness, filled, spacing, ranges, self.wall_mm)
        if ring < MIN_WALL_FRACTION:
            return None
        offset = float(np.hypot(y.mean() - centre_mm[0], x.mean() - centre_mm[1]))
        # Cardiac prescriptions centre the heart: a cavity in the outer 10 % of the field of
        # view on either axis is not the LV.
        extent = (2 * centre_mm[0] + spacing[0], 2 * centre_mm[1] + spacing[1])
        if (
            abs(y.mean() - centre_mm[0]) > CENTRAL_FRACTION * 0.5 * extent[0]
            or abs(x.mean() - centre_mm[1]) > CENTRAL_FRACTION * 0.5 * extent[1]
        ):
            return None
        score = (
            ring**2
            * solidity
            * min(1.0, roundness / 0.7)
            * (1.0 - 0.5 * min(1.0, offset / half_diag))
        )
        return _Candidate(index, filled, area, solidity, roundness, ring, offset, score)

    # ---------------------------------------------------------------------------------------
    def _borders(
        self,
        image: npt.NDArray[np.float64],
        smooth: npt.NDArray[np.float64],
        smoothness: npt.NDArray[np.float64],
        spacing: tuple[float, float],
        ranges: TissueRanges,
        lv: _Candidate,
        blood_labels: npt.NDArray[np.int32],
    ) -> SegmentationOutput:
        shape = smooth.shape
        empty = np.zeros(shape, dtype=np.uint8)
        centre = _inscribed_centre(lv.mask, spacing)

        # Subject-specific blood and myocardial T1 from the cavity and the ring around it.
        inner = ndimage.binary_erosion(lv.mask, iterations=1)
        blood_t1 = float(np.median(smooth[inner if inner.any() else lv.mask]))
        distance_out = ndimage.distance_transform_edt(~lv.mask, sampling=spacing)
        ring = (distance_out > 1.5) & (distance_out <= 6.0)
        ring_values = smooth[ring]
        ring_values = ring_values[
            (ring_values >= ranges.myocardium[0] * 0.9) & (ring_values < blood_t1 * 0.92)
        ]
        if ring_values.size < 10:
            return SegmentationOutput(empty, 1.0, "no myocardial T1 found around the LV blood pool")
        myo_t1 = float(np.median(ring_values))
        ring_spread = 1.4826 * float(np.median(np.abs(ring_values - myo_t1))) / myo_t1
        if ring_spread > MAX_WALL_SPREAD:
            return SegmentationOutput(
                empty,
                1.0,
                f"the tissue around the blood pool varies too much in T1 (relative spread "
                f"{ring_spread:.2f}) to be myocardium",
            )
        if myo_t1 > MAX_MYOCARDIUM_BLOOD_RATIO * blood_t1:
            return SegmentationOutput(
                empty,
                1.0,
                f"the tissue around the blood pool ({myo_t1:.0f} ms) is not distinct from "
                f"blood ({blood_t1:.0f} ms): wall too thin to resolve or not myocardium",
            )
        endo_threshold = myo_t1 + ENDO_THRESHOLD_FRACTION * (blood_t1 - myo_t1)
        band = _Band(
            low=BAND_LOW_FRACTION * myo_t1,
            low_zero=BAND_LOW_ZERO_FRACTION * myo_t1,
            high=myo_t1 + BAND_HIGH_FRACTION * (blood_t1 - myo_t1),
            high_zero=myo_t1 + BAND_HIGH_ZERO_FRACTION * (blood_t1 - myo_t1),
        )

        step = 0.5 * min(spacing)
        r_eq = float(np.sqrt(lv.area_mm2 / np.pi))
        radii = np.arange(0.0, 2.0 * r_eq + self.wall_mm[1] + 10.0, step)
        angles = np.linspace(0.0, 2 * np.pi, self.n_angles, endpoint=False)
        profile = polar_sample(smooth, centre, spacing, angles, radii, order=1)
        mask_profile = polar_sample(lv.mask.astype(np.float64), centre, spacing, angles, radii)

        r_endo_raw = _endocardial_crossings(
            profile, mask_profile, radii, endo_threshold, step, min(spacing)
        )
        # A bright subendocardial lesion (T1 above the 50 % point) shows as a plateau of
        # intermediate T1 before the crossing, where a normal border is a short blurred step.
        # Rays whose step from the blood plateau to the 50 % point is much longer than usual
        # get the border at the start of the step plus the usual step length.
        plateau_threshold = myo_t1 + PLATEAU_FRACTION * (blood_t1 - myo_t1)
        r_plateau = _endocardial_crossings(
            profile, mask_profile, radii, plateau_threshold, step, min(spacing)
        )
        step_length = np.clip(r_endo_raw - r_plateau, 0.0, None)
        usual = float(np.median(step_length))
        lesion_rays = step_length > usual + LESION_STEP_MM
        r_endo_raw = np.where(lesion_rays, r_plateau + usual, r_endo_raw)
        degrees_per_ray = 360.0 / angles.size
        # Narrow outward spikes (noise, gaps between trabeculae) are removed by an angular
        # opening; broad outward leaks (into the RV through a bright septal lesion, into the
        # outflow tract) by clipping to a robust smooth fit; papillary muscles and trabeculae
        # attached to the wall, which make the cavity region concave, by taking the convex
        # hull of the cavity outline (the short-axis LV cavity is convex).
        r_endo = circular_filter(r_endo_raw, round(15 / degrees_per_ray), "opening")
        reference = _robust_harmonic_fit(angles, r_endo, order=2)
        r_endo = np.minimum(r_endo, reference + ENDO_LEAK_TOLERANCE_MM)
        r_endo = np.minimum(_convex_hull_radius(angles, r_endo), r_endo + ENDO_MAX_FILL_MM)
        r_endo = circular_filter(r_endo, round(9 / degrees_per_ray), "median")

        # Epicardial border by dynamic programming over (angle, wall thickness): a first pass
        # finds the typical thickness, a second pass adds a weak prior towards it.
        thickness = np.arange(self.wall_mm[0], self.wall_mm[1] + step / 2, step)
        texture = polar_sample(smoothness, centre, spacing, angles, radii, order=1)
        membership = band.membership(profile) * texture
        cost = _epicardial_costs(membership, radii, r_endo, thickness, step)
        max_jump = max(1, round(WALL_JUMP_MM / step))
        path = _circular_dp(cost, max_jump=max_jump, jump_penalty=JUMP_PENALTY * step)
        typical = float(np.median(thickness[path]))
        excess = np.maximum(np.abs(thickness - typical) - THICKNESS_TOLERANCE_MM, 0.0)
        cost = cost + THICKNESS_PRIOR_WEIGHT * excess[np.newaxis, :]
        path = _circular_dp(cost, max_jump=max_jump, jump_penalty=JUMP_PENALTY * step)
        wall = circular_filter(thickness[path], round(9 / degrees_per_ray), "median")
        r_epi = r_endo + wall

        radius, theta = pixel_polar_coordinates(shape, centre, spacing)
        endo_at = radius_at(r_endo, angles, theta)
        epi_at = radius_at(r_epi, angles, theta)
        labels = np.zeros(shape, dtype=np.uint8)
        labels[radius <= endo_at] = Label.LV_BLOOD_POOL
        labels[(radius > endo_at) & (radius <= epi_at)] = Label.MYOCARDIUM
        in_band = membership

        # RV blood pool: the largest other blood region touching the LV epicardium.
        labels = _add_rv(labels, image, smooth, blood_labels > 0, spacing)
        rv_found = bool(np.any(labels == Label.RV_BLOOD_POOL))

        evidence = float(
            np.mean(
                [
                    _wall_evidence(in_band[i], radii, r_endo[i], wall[i], step)
                    for i in range(angles.size)
                ]
            )
        )
        uncertainty = float(np.clip(1.0 - evidence, 0.0, 1.0))
        details = {
            "centre_mm": [round(centre[0], 2), round(centre[1], 2)],
            "blood_t1_estimate_ms": round(blood_t1, 1),
            "myocardium_t1_estimate_ms": round(myo_t1, 1),
            "endocardial_threshold_ms": round(endo_threshold, 1),
            "myocardial_band_ms": [round(band.low, 1), round(band.high, 1)],
            "lv_candidate": {
                "area_mm2": round(lv.area_mm2, 1),
                "solidity": round(lv.solidity, 3),
                "roundness": round(lv.roundness, 3),
                "ring_coverage": round(lv.ring_coverage, 3),
            },
            "rv_found": rv_found,
            "wall_thickness_median_mm": round(float(np.median(wall)), 2),
        }
        return SegmentationOutput(labels, uncertainty, None, details)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _disk(radius_px: int, spacing: tuple[float, float]) -> npt.NDArray[np.bool_]:
    """A structuring element that is a disk in mm (ellipse in pixels)."""
    radius_mm = radius_px * min(spacing)
    ry = max(1, int(np.floor(radius_mm / spacing[0])))
    rx = max(1, int(np.floor(radius_mm / spacing[1])))
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return np.asarray(
        (yy * spacing[0]) ** 2 + (xx * spacing[1]) ** 2 <= radius_mm**2 + 1e-9, dtype=bool
    )


@dataclass(frozen=True)
class _Band:
    """Soft membership of T1 values in the myocardial range (1 inside, linear ramps)."""

    low: float
    low_zero: float
    high: float
    high_zero: float

    def membership(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        rising = np.clip((values - self.low_zero) / max(self.low - self.low_zero, 1e-6), 0, 1)
        falling = np.clip((self.high_zero - values) / max(self.high_zero - self.high, 1e-6), 0, 1)
        return np.asarray(np.minimum(rising, falling), dtype=np.float64)


def _blood_mode(
    smooth: npt.NDArray[np.float64],
    smoothness: npt.NDArray[np.float64],
    ranges: TissueRanges,
    pixel_area: float,
    min_area_mm2: float = 150.0,
) -> float | None:
    """Most frequent T1 among smooth pixels in the blood range: the subject's blood T1.

    The LV and RV cavities hold most blood-range pixels of a short-axis map.  ``None`` when
    fewer than ``min_area_mm2`` of such pixels exist.
    """
    values = smooth[(smooth >= ranges.blood[0]) & (smooth <= ranges.blood[1]) & (smoothness >= 1)]
    if values.size * pixel_area < min_area_mm2:
        return None
    bins = np.arange(ranges.blood[0], ranges.blood[1] + 20.0, 20.0)
    counts, edges = np.histogram(values, bins=bins)
    counts = ndimage.uniform_filter1d(counts.astype(np.float64), size=5, mode="constant")
    peak = int(np.argmax(counts))
    return float(0.5 * (edges[peak] + edges[peak + 1]))


def _split_at_necks(
    region: npt.NDArray[np.bool_], spacing: tuple[float, float], depth_mm: float = 3.0
) -> list[npt.NDArray[np.bool_]]:
    """Parts of a region separated at narrow necks (distance-transform watershed).

    Returns an empty list when the region has a single core (no maxima of the distance to
    its edge that stand ``depth_mm`` above the neck between them).
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    # Fill holes first: papillary muscles inside the cavity must not create necks.
    filled = ndimage.binary_fill_holes(region)
    distance = ndimage.distance_transform_edt(filled, sampling=spacing)
    markers, n_markers = ndimage.label(h_maxima(distance, depth_mm))
    if n_markers < 2:
        return []
    parts = watershed(-distance, markers, mask=filled)
    return [np.asarray(parts == k) for k in range(1, n_markers + 1)]


def _add_rv(
    labels: npt.NDArray[np.uint8],
    image: npt.NDArray[np.float64],
    smooth: npt.NDArray[np.float64],
    blood: npt.NDArray[np.bool_],
    spacing: tuple[float, float],
) -> npt.NDArray[np.uint8]:
    """Label as RV blood pool the largest blood region (>= 100 mm2) within 4 mm of the LV."""
    heart = labels > 0
    rest, n = ndimage.label(blood & ~heart)
    if n == 0:
        return labels
    near = ndimage.distance_transform_edt(~heart, sampling=spacing) <= 4.0
    wild = _wild(image, smooth)
    best, best_area = 0, 100.0
    for index in np.unique(rest[near]):
        if index == 0:
            continue
        region = rest == index
        area = float(np.count_nonzero(region)) * spacing[0] * spacing[1]
        if (
            area < best_area
            or _spread(image, region) > MAX_BLOOD_SPREAD
            or float(np.mean(wild[region])) > MAX_WILD_FRACTION
        ):
            continue
        best, best_area = int(index), area
    result = labels.copy()
    if best:
        result[rest == best] = Label.RV_BLOOD_POOL
    return result


def _wild(image: npt.NDArray[np.float64], smooth: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Pixels far (more than 25 %) from their 3x3 median: fit failures, never tissue noise."""
    return np.asarray(np.abs(image - smooth) > WILD_FRACTION * np.maximum(smooth, 100.0))


def _smoothness(
    image: npt.NDArray[np.float64], smooth: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """1 where the raw map is locally smooth (tissue), 0 where it is noise (lung, air fits).

    Two local measures: the 3x3 median absolute deviation from the median-filtered map,
    relative to it (~0.03 in myocardium and blood, low across a straight tissue edge, ~0.5 in
    speckle), and the fraction of "wild" pixels in a 5x5 window (0 in tissue; lung and air
    with failed fits have 20 % or more even where the remaining pixels look like tissue).
    """
    deviation = np.abs(image - smooth)
    local_mad = np.asarray(ndimage.median_filter(deviation, size=3), dtype=np.float64)
    relative = local_mad / np.maximum(smooth, 100.0)
    mad_term = np.clip((0.2 - relative) / 0.1, 0.0, 1.0)
    wild_fraction = ndimage.uniform_filter(_wild(image, smooth).astype(np.float64), size=5)
    wild_term = np.clip((0.2 - wild_fraction) / 0.1, 0.0, 1.0)
    return np.asarray(np.minimum(mad_term, wild_term), dtype=np.float64)


def _spread(image: npt.NDArray[np.float64], region: npt.NDArray[np.bool_]) -> float:
    """Robust relative spread (1.4826 MAD / median) of raw values in a region's interior."""
    inner = ndimage.binary_erosion(region, iterations=1)
    values = image[inner if np.count_nonzero(inner) >= 10 else region]
    median = float(np.median(values))
    if median <= 0:
        return np.inf
    return 1.4826 * float(np.median(np.abs(values - median))) / median


def _inscribed_centre(
    mask: npt.NDArray[np.bool_], spacing: tuple[float, float]
) -> tuple[float, float]:
    """Centre (mm) of the largest inscribed disk: robust to regions attached to the cavity."""
    distance = ndimage.distance_transform_edt(mask, sampling=spacing)
    peak = float(distance.max())
    rr, cc = np.nonzero(distance >= 0.85 * peak)
    return float(rr.mean() * spacing[0]), float(cc.mean() * spacing[1])


def _endocardial_crossings(
    profile: npt.NDArray[np.float64],
    mask_profile: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    threshold: float,
    step: float,
    pixel_mm: float,
) -> npt.NDArray[np.float64]:
    """Per ray, where the profile falls below ``threshold`` at the edge of the cavity region.

    The search starts 1.5 pixels inside the region's edge, so islands of myocardial T1 fully
    inside the cavity (papillary muscles) are passed over; the crossing is interpolated
    linearly between samples.
    """
    n_angles = profile.shape[0]
    result = np.empty(n_angles)
    back = round(1.5 * pixel_mm / step)
    for i in range(n_angles):
        inside = mask_profile[i] >= 0.5
        exit_index = int(np.argmin(inside)) if not inside.all() else radii.size - 1
        start = max(0, exit_index - back)
        below = np.nonzero(profile[i, start:] < threshold)[0]
        j = start + (int(below[0]) if below.size else radii.size - 1 - start)
        if 0 < j < radii.size and profile[i, j - 1] != profile[i, j]:
            frac = (profile[i, j - 1] - threshold) / (profile[i, j - 1] - profile[i, j])
            result[i] = radii[j - 1] + float(np.clip(frac, 0.0, 1.0)) * step
        else:
            result[i] = radii[min(j, radii.size - 1)]
    return result


def _convex_hull_radius(
    angles: npt.NDArray[np.float64], radius: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Radius, along each ray, of the convex hull of a star-shaped outline about the origin."""
    from scipy.spatial import ConvexHull, QhullError

    points = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return radius
    result = radius.copy()
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    # Each hull facet is a line n.x + d = 0 with outward normal n (origin inside: d < 0).
    # A ray t*u meets it at t = -d / (n.u) when n.u > 0; the hull radius is the nearest hit.
    normals = hull.equations[:, :2]
    offsets = hull.equations[:, 2]
    dots = directions @ normals.T
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.where(dots > 1e-9, -offsets[np.newaxis, :] / dots, np.inf)
    nearest = hits.min(axis=1)
    valid = np.isfinite(nearest) & (nearest > 0)
    result[valid] = np.maximum(radius[valid], nearest[valid])
    return result


def _robust_harmonic_fit(
    angles: npt.NDArray[np.float64],
    radius: npt.NDArray[np.float64],
    order: int = 2,
    iterations: int = 8,
) -> npt.NDArray[np.float64]:
    """Low-order Fourier fit of a radius function, with Tukey-biweight reweighting."""
    columns = [np.ones_like(angles)]
    for k in range(1, order + 1):
        columns += [np.cos(k * angles), np.sin(k * angles)]
    design = np.stack(columns, axis=1)
    weights = np.ones_like(radius)
    fit = np.full_like(radius, float(np.median(radius)))
    for _ in range(iterations):
        w = np.sqrt(weights)
        coefficients, *_ = np.linalg.lstsq(design * w[:, None], radius * w, rcond=None)
        fit = design @ coefficients
        residual = radius - fit
        scale = max(1.4826 * float(np.median(np.abs(residual))), 0.5)
        u = residual / (4.685 * scale)
        weights = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if np.count_nonzero(weights) < 2 * order + 2:
            break
    return np.asarray(fit, dtype=np.float64)


def _solidity(mask: npt.NDArray[np.bool_]) -> float:
    """Area over convex-hull area."""
    from skimage.morphology import convex_hull_image

    hull = convex_hull_image(mask)
    hull_area = float(np.count_nonzero(hull))
    return float(np.count_nonzero(mask)) / hull_area if hull_area else 0.0


def _wall_fraction(
    smooth: npt.NDArray[np.float64],
    smoothness: npt.NDArray[np.float64],
    region: npt.NDArray[np.bool_],
    spacing: tuple[float, float],
    ranges: TissueRanges,
    wall_mm: tuple[float, float],
    n_angles: int = 72,
) -> float:
    """Fraction of rays from a region on which a wall of myocardial T1 of plausible thickness
    follows the region's edge.

    The LV cavity is ringed by a 3–20 mm wall of myocardial T1.  The RV cavity has such a
    wall only on its septal side; a vessel surrounded by fat or air has none; a vessel
    surrounded by lung (whose MOLLI T1 can fall in the myocardial range at 3 T) has a
    "wall" that does not end.
    """
    centre = _inscribed_centre(region, spacing)
    rr, cc = np.nonzero(region)
    extent = float(np.max(np.hypot(rr * spacing[0] - centre[0], cc * spacing[1] - centre[1])))
    step = 0.5 * min(spacing)
    radii = np.arange(0.0, extent + wall_mm[1] + 8.0, step)
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    profile = polar_sample(smooth, centre, spacing, angles, radii)
    texture = polar_sample(smoothness, centre, spacing, angles, radii)
    inside = polar_sample(region.astype(np.float64), centre, spacing, angles, radii) >= 0.5
    myocardial = (
        (profile >= ranges.myocardium[0]) & (profile <= ranges.myocardium[1]) & (texture >= 0.5)
    )
    transition = max(1, round(2.0 / step))  # partial-volume samples allowed before the wall
    gap = max(1, round(1.0 / step))  # shorter interruptions (noise) do not end the wall
    ok = 0
    for i in range(n_angles):
        exit_index = int(np.argmin(inside[i])) if not inside[i].all() else radii.size
        ray = myocardial[i, exit_index:]
        first = np.nonzero(ray[: transition + 1])[0]
        if first.size == 0:
            continue
        run_start = int(first[0])
        outside = ~ray[run_start:]
        # End of the wall: first run of `gap` consecutive non-myocardial samples.
        if outside.size >= gap:
            window = np.convolve(outside.astype(int), np.ones(gap, dtype=int), "valid")
            ends = np.nonzero(window == gap)[0]
            length = float(ends[0]) * step if ends.size else np.inf
        else:
            length = np.inf
        if wall_mm[0] <= length <= wall_mm[1]:
            ok += 1
    return ok / n_angles


def _epicardial_costs(
    membership: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    r_endo: npt.NDArray[np.float64],
    thickness: npt.NDArray[np.float64],
    step: float,
    outside_mm: float = OUTSIDE_MM,
) -> npt.NDArray[np.float64]:
    """Cost (mm) of each (ray, wall thickness): non-myocardial profile inside the wall plus
    myocardial profile in the ``outside_mm`` just outside it."""
    n_angles = membership.shape[0]
    n_out = max(1, round(outside_mm / step))
    cost = np.empty((n_angles, thickness.size))
    for i in range(n_angles):
        start = int(np.searchsorted(radii, r_endo[i]))
        band = membership[i, start:]
        if band.size == 0:
            cost[i] = thickness.size * step
            continue
        out_cum = np.concatenate([[0.0], np.cumsum(1.0 - band)])
        in_cum = np.concatenate([[0.0], np.cumsum(band)])
        ends = np.minimum(np.round(thickness / step).astype(int), band.size)
        after = np.minimum(ends + n_out, band.size)
        inside_wrong = out_cum[ends]
        outside_wrong = in_cum[after] - in_cum[ends]
        # Rays running off the profile (image edge) count the missing samples as wrong.
        missing = (ends + n_out) - after
        cost[i] = (INSIDE_WEIGHT * inside_wrong + outside_wrong + missing) * step
    return cost


def _circular_dp(
    cost: npt.NDArray[np.float64], *, max_jump: int, jump_penalty: float
) -> npt.NDArray[np.int64]:
    """Minimum-cost path over angles with bounded state changes, approximately periodic.

    The angle sequence is unrolled three times and the middle turn of the optimal path is
    returned, so the start and end of the turn agree with their neighbours.
    """
    n_angles, n_states = cost.shape
    tripled = np.concatenate([cost, cost, cost])
    total = tripled[0].copy()
    back = np.zeros(tripled.shape, dtype=np.int64)
    states = np.arange(n_states)
    for i in range(1, tripled.shape[0]):
        best = np.full(n_states, np.inf)
        arg = np.zeros(n_states, dtype=np.int64)
        for jump in range(-max_jump, max_jump + 1):
            source = states - jump
            valid = (source >= 0) & (source < n_states)
            candidate = np.full(n_states, np.inf)
            candidate[valid] = total[source[valid]] + jump_penalty * abs(jump)
            better = candidate < best
            best[better] = candidate[better]
            arg[better] = source[better]
        total = best + tripled[i]
        back[i] = arg
    path = np.empty(tripled.shape[0], dtype=np.int64)
    path[-1] = int(np.argmin(total))
    for i in range(tripled.shape[0] - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path[n_angles : 2 * n_angles]


def _wall_evidence(
    membership: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    r_endo: float,
    wall: float,
    step: float,
) -> float:
    """Fraction of samples inside the chosen wall that have myocardial T1."""
    start = int(np.searchsorted(radii, r_endo))
    stop = min(membership.size, start + max(1, round(wall / step)))
    segment = membership[start:stop]
    return float(segment.mean()) if segment.size else 0.0
