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

The tissue knowledge (T1 ranges, texture, blood pools, wall coverage) is
:mod:`plugins.t1map.tissue`'s; the ray geometry and border searches :mod:`plugins.t1map.polar`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import FloatImage, Label, SegmentationOutput
from plugins.t1map.polar import (
    circular_dp,
    circular_filter,
    convex_hull_radius,
    endocardial_crossings,
    epicardial_costs,
    inscribed_centre,
    padded_box,
    pixel_polar_coordinates,
    polar_sample,
    radius_at,
    robust_harmonic_fit,
    wall_evidence,
)
from plugins.t1map.tissue import (
    MAX_BLOOD_SPREAD,
    MAX_WILD_FRACTION,
    Band,
    TissueRanges,
    add_rv,
    blood_mode,
    disk,
    relative_spread,
    smoothness_map,
    solidity_of,
    split_at_necks,
    tissue_ranges,
    wall_fraction,
    wild_pixels,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ClassicalSegmenter",
    "SegmentationOutput",
    "Segmenter",
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
ENDO_LEAK_TOLERANCE_MM: Final = 3.0
"""How far the endocardial radius may exceed its smooth (2nd-harmonic) fit."""
WALL_JUMP_MM: Final = 0.8
"""Largest change of wall thickness between neighbouring rays (3 degrees apart)."""
JUMP_PENALTY: Final = 0.5
"""Cost (mm of misclassified profile) per mm of thickness change between rays."""
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
        smoothness = smoothness_map(image, smooth)
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
        mode = blood_mode(smooth, smoothness, ranges, pixel_area)
        if mode is not None:
            low = max(low, (1.0 - BLOOD_MODE_TOLERANCE) * mode)
        blood = (smooth >= low) & (smooth <= ranges.blood[1])
        # Open with a ~1.5 mm element to cut thin bridges (noise, thin RV wall partial volume).
        radius_px = max(1, round(1.5 / min(spacing)))
        blood = ndimage.binary_opening(blood, structure=disk(radius_px, spacing))
        labels, n = ndimage.label(blood)
        labels = labels.astype(np.int32)
        if n == 0:
            return [], labels
        areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
        shape = smooth.shape
        half_diag = 0.5 * np.hypot(shape[0] * spacing[0], shape[1] * spacing[1])
        centre_mm = (0.5 * (shape[0] - 1) * spacing[0], 0.5 * (shape[1] - 1) * spacing[1])

        wild = wild_pixels(image, smooth)
        candidates: list[_Candidate] = []
        for index in range(1, n + 1):
            area = float(areas[index - 1]) * pixel_area
            if area < self.lv_area_mm2[0]:
                continue
            component = labels == index
            if (
                relative_spread(image, component) > MAX_BLOOD_SPREAD
                or float(np.mean(wild[component])) > MAX_WILD_FRACTION
            ):
                continue  # lung or air filled with fit noise, not blood
            # The LV and RV cavities merge where the septum is thin or partial-volumed: also
            # consider the parts of a component separated at its necks.
            regions = [component, *split_at_necks(component, spacing)]
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
        box = padded_box(region)
        filled = np.zeros(region.shape, dtype=bool)
        filled[box] = ndimage.binary_fill_holes(region[box])
        rr, cc = np.nonzero(filled)
        if rr.size < 8:
            return None
        # Roundness from second moments in mm; solidity from the convex hull.
        y = rr * spacing[0]
        x = cc * spacing[1]
        eigen = np.sort(np.linalg.eigvalsh(np.cov(np.stack([y, x]))))
        roundness = float(np.sqrt(max(eigen[0], 1e-9) / max(eigen[1], 1e-9)))
        solidity = solidity_of(filled)
        if solidity < 0.7 or roundness < 0.35:
            return None
        ring = wall_fraction(smooth, smoothness, filled, spacing, ranges, self.wall_mm)
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
        centre = inscribed_centre(lv.mask, spacing)

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
        band = Band(
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

        r_endo_raw = endocardial_crossings(
            profile, mask_profile, radii, endo_threshold, step, min(spacing)
        )
        # A bright subendocardial lesion (T1 above the 50 % point) shows as a plateau of
        # intermediate T1 before the crossing, where a normal border is a short blurred step.
        # Rays whose step from the blood plateau to the 50 % point is much longer than usual
        # get the border at the start of the step plus the usual step length.
        plateau_threshold = myo_t1 + PLATEAU_FRACTION * (blood_t1 - myo_t1)
        r_plateau = endocardial_crossings(
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
        reference = robust_harmonic_fit(angles, r_endo, order=2)
        r_endo = np.minimum(r_endo, reference + ENDO_LEAK_TOLERANCE_MM)
        r_endo = np.minimum(convex_hull_radius(angles, r_endo), r_endo + ENDO_MAX_FILL_MM)
        r_endo = circular_filter(r_endo, round(9 / degrees_per_ray), "median")

        # Epicardial border by dynamic programming over (angle, wall thickness): a first pass
        # finds the typical thickness, a second pass adds a weak prior towards it.
        thickness = np.arange(self.wall_mm[0], self.wall_mm[1] + step / 2, step)
        texture = polar_sample(smoothness, centre, spacing, angles, radii, order=1)
        membership = band.membership(profile) * texture
        cost = epicardial_costs(membership, radii, r_endo, thickness, step)
        max_jump = max(1, round(WALL_JUMP_MM / step))
        path = circular_dp(cost, max_jump=max_jump, jump_penalty=JUMP_PENALTY * step)
        typical = float(np.median(thickness[path]))
        excess = np.maximum(np.abs(thickness - typical) - THICKNESS_TOLERANCE_MM, 0.0)
        cost = cost + THICKNESS_PRIOR_WEIGHT * excess[np.newaxis, :]
        path = circular_dp(cost, max_jump=max_jump, jump_penalty=JUMP_PENALTY * step)
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
        labels = add_rv(labels, image, smooth, blood_labels > 0, spacing)
        rv_found = bool(np.any(labels == Label.RV_BLOOD_POOL))

        evidence = float(
            np.mean(
                [
                    wall_evidence(in_band[i], radii, r_endo[i], wall[i], step)
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
