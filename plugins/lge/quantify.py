"""Scar quantification on one LGE slice: remote myocardium, n-SD and FWHM thresholds, lesions.

Pure functions over arrays.  Conventions: ``image`` is the slice as loaded (float32), ``zero``
the value that means zero signal (0 for magnitude images, the vendor offset for PSIR images
stored without negative values), masks are boolean arrays of the image's shape.

Methods (as readers apply them, automated):

* **n-SD** (Bondarenko O et al., "Standardizing the definition of hyperenhancement in the
  quantitative assessment of infarct size and myocardial viability using delayed contrast-
  enhanced CMR", J Cardiovasc Magn Reson 2005;7:481): myocardium brighter than the mean of
  remote myocardium plus n standard deviations (5 SD by default, as in the dilated-
  cardiomyopathy radiomics study; 2-6 accepted).
* **FWHM** (Amado LC et al., "Accurate and objective infarct sizing by contrast-enhanced
  magnetic resonance imaging in a canine myocardial infarction model", J Am Coll Cardiol
  2004;44:2383): myocardium brighter than half the maximum signal of the enhanced region,
  kept where connected to that region.
* **Remote myocardium** is found automatically: the darkest contiguous 90-degree arc of the
  wall (sector medians), away from any enhancement the network found, eroded by one pixel to
  keep blood-pool partial volume out.
* **MVO**: hypo-enhanced core enclosed by scar (or by scar and the LV blood pool it borders)
  is counted as scar and reported on its own (Wu KC, "CMR of microvascular obstruction and
  hemorrhage in myocardial infarction", J Cardiovasc Magn Reson 2012;14:68).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from plugins.api import FloatImage, Label, LabelImage
from plugins.lge.segmenter import LgeContrast
from plugins.lib.cardiac.insertion import InsertionPoints

__all__ = [
    "CONFIRMATION_RULES",
    "DEFAULT_N_SD",
    "N_SD_RANGE",
    "Layer",
    "Lesion",
    "RemoteReference",
    "enhancement_confirmed",
    "fill_mvo",
    "fwhm_scar",
    "lesions",
    "nsd_scar",
    "remote_reference",
    "signal_zero",
    "wall_depth",
]

BoolImage = npt.NDArray[np.bool_]

DEFAULT_N_SD: Final = 5.0
"""Default n of the n-SD method (dilated-cardiomyopathy radiomics study)."""
N_SD_RANGE: Final = (2.0, 6.0)
"""Accepted n of the n-SD method."""
FWHM_FRACTION: Final = 0.5
"""FWHM: fraction of the maximum enhanced signal that is the threshold."""
FWHM_FLOOR_SD: Final = 2.0
"""The FWHM threshold is never below remote mean + this many SD (see :func:`fwhm_scar`)."""
FWHM_MAX_PERCENTILE: Final = 98.0
"""The "maximum" of the enhanced region is this percentile (one hot pixel is not the max)."""
N_SECTORS: Final = 36
"""Angular sectors of the wall searched for remote myocardium (10 degrees each)."""
REMOTE_ARC_SECTORS: Final = 9
"""Width of the remote arc in sectors (90 degrees)."""
MIN_SECTOR_PIXELS: Final = 3
"""A sector with fewer candidate pixels does not count in an arc."""
MIN_REMOTE_PIXELS: Final = 20
"""Fewest pixels of a usable remote reference on one slice."""
ENHANCEMENT_GUARD_PX: Final = 2
"""Remote myocardium keeps this many pixels away from enhancement the network found."""
MIN_LESION_MM2: Final = 4.0
"""Threshold components smaller than this are noise, not scar (about 2x2 mm)."""
ZERO_CANDIDATES: Final = (0.0, 2048.0, 4096.0)
"""Stored zero-signal values of PSIR images kept non-negative by vendors (none, 2048, 4096)."""
ENDO_DEPTH: Final = 0.2
"""A lesion reaching wall depth below this touches the endocardium (0 endo, 1 epi)."""
EPI_DEPTH: Final = 0.8
"""A lesion reaching wall depth above this touches the epicardium."""

MYOCARDIAL_LABELS: Final = (int(Label.MYOCARDIUM), int(Label.SCAR), int(Label.MVO))
ENHANCED_LABELS: Final = (int(Label.SCAR), int(Label.MVO))


def signal_zero(image: FloatImage, contrast: LgeContrast) -> float:
    """The pixel value of zero signal.

    Magnitude images: 0.  PSIR images with negative values: 0.  PSIR images stored
    non-negative (Siemens adds 4096, some reconstructions 2048): the vendor offset nearest
    the median of the image border, where air gives zero signal.
    """
    if contrast is LgeContrast.MAGNITUDE or float(np.nanmin(image)) < 0.0:
        return 0.0
    rows, cols = image.shape
    band = max(2, min(rows, cols) // 20)
    border = np.concatenate(
        [image[:band].ravel(), image[-band:].ravel(), image[:, :band].ravel(),
         image[:, -band:].ravel()]
    )
    level = float(np.nanmedian(border))
    return min(ZERO_CANDIDATES, key=lambda z: abs(z - level))


def _small_removed(mask: BoolImage, min_pixels: int) -> BoolImage:
    components, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum(mask, components, range(1, count + 1))
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes >= min_pixels
    result: BoolImage = keep[components]
    return result


def _rim_only_removed(enhanced: BoolImage, myocardium: BoolImage,
                      lv_blood: BoolImage) -> BoolImage:
    """``enhanced`` without components lying wholly in the one-pixel rim next to the blood pool.

    That rim holds blood-pool partial volume, as bright as scar in LGE; readers leave it out
    unless the enhancement continues into the wall.
    """
    if not enhanced.any() or not lv_blood.any():
        return enhanced
    rim = myocardium & ndimage.binary_dilation(lv_blood)
    components, _ = ndimage.label(enhanced)
    interior = np.unique(components[enhanced & ~rim])
    result: BoolImage = np.isin(components, interior[interior > 0])
    return result


def min_lesion_pixels(pixel_spacing: tuple[float, float]) -> int:
    """Fewest pixels of a lesion at this pixel spacing."""
    return max(2, math.ceil(MIN_LESION_MM2 / (pixel_spacing[0] * pixel_spacing[1])))


def fill_mvo(scar: BoolImage, myocardium: BoolImage) -> BoolImage:
    """Myocardial pixels not in ``scar`` but enclosed by it.

    The dark core of an infarct (microvascular obstruction) is not enhanced but is infarct.
    A core open to the blood pool is not enclosed; the network labels it.
    """
    if not scar.any():
        return np.zeros_like(scar)
    result: BoolImage = ndimage.binary_fill_holes(scar) & myocardium & ~scar
    return result


@dataclass(frozen=True)
class RemoteReference:
    """Remote (normal) myocardium of one slice.

    Attributes
    ----------
    mask
        The pixels used.
    mean, sd
        Their mean and standard deviation (image units).
    arc_deg
        (start, end) image angle of the arc in degrees about the LV centre.
    """

    mask: BoolImage
    mean: float
    sd: float
    arc_deg: tuple[float, float]


def _pixel_angles(shape: tuple[int, int], centre: tuple[float, float],
                  pixel_spacing: tuple[float, float]) -> npt.NDArray[np.float64]:
    rows, cols = np.indices(shape, dtype=np.float64)
    return np.arctan2((rows - centre[0]) * pixel_spacing[0], (cols - centre[1]) * pixel_spacing[1])


def remote_reference(
    image: FloatImage,
    labels: LabelImage,
    pixel_spacing: tuple[float, float],
) -> RemoteReference | None:
    """The darkest contiguous 90-degree arc of the wall, away from network enhancement.

    Returns ``None`` when fewer than :data:`MIN_REMOTE_PIXELS` pixels qualify.
    """
    wall = np.isin(labels, MYOCARDIAL_LABELS)
    if not wall.any():
        return None
    enhanced = np.isin(labels, ENHANCED_LABELS)
    guard = ndimage.binary_dilation(enhanced, iterations=ENHANCEMENT_GUARD_PX) if enhanced.any() \
        else enhanced
    candidates = ndimage.binary_erosion(wall) & ~guard
    if int(candidates.sum()) < MIN_REMOTE_PIXELS:
        candidates = wall & ~enhanced
    if int(candidates.sum()) < MIN_REMOTE_PIXELS:
        return None
    filled = ndimage.binary_fill_holes(wall | (labels == Label.LV_BLOOD_POOL))
    rr, cc = np.nonzero(filled)
    centre = (float(rr.mean()), float(cc.mean()))
    angles = _pixel_angles(image.shape, centre, pixel_spacing)
    sector = np.floor((angles + math.pi) / (2 * math.pi) * N_SECTORS).astype(int) % N_SECTORS
    values = image[candidates]
    sectors = sector[candidates]
    medians = np.full(N_SECTORS, np.nan)
    for k in range(N_SECTORS):
        chosen = values[sectors == k]
        if chosen.size >= MIN_SECTOR_PIXELS:
            medians[k] = float(np.median(chosen))
    best: tuple[float, int] | None = None
    for start in range(N_SECTORS):
        arc = [(start + j) % N_SECTORS for j in range(REMOTE_ARC_SECTORS)]
        arc_values = medians[arc]
        if np.count_nonzero(np.isfinite(arc_values)) < REMOTE_ARC_SECTORS // 2 + 1:
            continue
        score = float(np.nanmean(arc_values))
        if best is None or score < best[0]:
            best = (score, start)
    if best is None:
        return None
    chosen_arc = sorted({(best[1] + j) % N_SECTORS for j in range(REMOTE_ARC_SECTORS)})
    mask = candidates & np.isin(sector, chosen_arc)
    if int(mask.sum()) < MIN_REMOTE_PIXELS:
        return None
    remote = image[mask].astype(np.float64)
    start_deg = best[1] * 360.0 / N_SECTORS - 180.0
    return RemoteReference(
        mask=mask,
        mean=float(remote.mean()),
        sd=float(remote.std(ddof=1)),
        arc_deg=(start_deg, start_deg + REMOTE_ARC_SECTORS * 360.0 / N_SECTORS),
    )


def nsd_scar(
    image: FloatImage,
    myocardium: BoolImage,
    lv_blood: BoolImage,
    remote: RemoteReference,
    n_sd: float,
    pixel_spacing: tuple[float, float],
) -> tuple[BoolImage, BoolImage]:
    """Scar (MVO included) and MVO by the n-SD threshold over remote myocardium."""
    threshold = remote.mean + n_sd * remote.sd
    enhanced = _small_removed(myocardium & (image > threshold), min_lesion_pixels(pixel_spacing))
    enhanced = _rim_only_removed(enhanced, myocardium, lv_blood)
    mvo = fill_mvo(enhanced, myocardium)
    return enhanced | mvo, mvo


def fwhm_scar(
    image: FloatImage,
    myocardium: BoolImage,
    lv_blood: BoolImage,
    seed: BoolImage,
    zero: float,
    pixel_spacing: tuple[float, float],
    floor: float | None = None,
) -> tuple[BoolImage, BoolImage, float | None]:
    """Scar (MVO included), MVO and the threshold by full width at half maximum.

    ``seed`` is the enhanced region found by other means (network, n-SD); without one the
    slice has no FWHM scar (half the maximum of noise is not scar).  ``floor`` (remote mean
    plus :data:`FWHM_FLOOR_SD` SD) bounds the threshold from below: when normal myocardium
    is poorly nulled, half the maximum falls inside its own signal and FWHM would call the
    whole wall scar.
    """
    empty = np.zeros_like(myocardium)
    seed = seed & myocardium
    if not seed.any():
        return empty, empty, None
    peak = float(np.percentile(image[seed], FWHM_MAX_PERCENTILE)) - zero
    if peak <= 0.0:
        return empty, empty, None
    threshold = zero + FWHM_FRACTION * peak
    if floor is not None:
        threshold = max(threshold, floor)
    above = _small_removed(myocardium & (image >= threshold), min_lesion_pixels(pixel_spacing))
    components, _ = ndimage.label(above)
    touching = np.unique(components[seed & above])
    keep = np.isin(components, touching[touching > 0])
    keep = _rim_only_removed(keep, myocardium, lv_blood)
    mvo = fill_mvo(keep, myocardium)
    return keep | mvo, mvo, threshold


def wall_depth(myocardium: BoolImage, lv_blood: BoolImage,
               pixel_spacing: tuple[float, float]) -> npt.NDArray[np.float64]:
    """Relative depth of every wall pixel: 0 at the endocardium, 1 at the epicardium."""
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    to_endo = ndimage.distance_transform_edt(~lv_blood, sampling=spacing)
    outside = ~(myocardium | lv_blood)
    to_epi = ndimage.distance_transform_edt(~outside, sampling=spacing)
    total = to_endo + to_epi
    depth = np.where(total > 0, to_endo / np.maximum(total, 1e-9), 0.0)
    return np.asarray(np.where(myocardium, depth, np.nan), dtype=np.float64)


class Layer(enum.StrEnum):
    """Where in the wall a lesion lies, as readers describe LGE."""

    SUBENDOCARDIAL = "subendocardial"
    MID_WALL = "mid-wall"
    SUBEPICARDIAL = "subepicardial"
    TRANSMURAL = "transmural"


@dataclass(frozen=True)
class Lesion:
    """One connected scar region on one slice.

    Attributes
    ----------
    frame_index
        Slice it lies on.
    area_mm2
        Its area.
    layer
        Where in the wall it lies.
    segments
        AHA segments it covers, by pixel count (empty if the slice has no segment map).
    septal_fraction
        Fraction of its pixels within the septal arc between the RV insertion points;
        ``None`` without insertion points.
    at_insertion
        Whether nearly all of it lies within :data:`INSERTION_WINDOW_DEG` of an RV
        insertion point.
    """

    frame_index: int
    area_mm2: float
    layer: Layer
    segments: Mapping[int, int]
    septal_fraction: float | None
    at_insertion: bool


INSERTION_WINDOW_DEG: Final = 20.0
"""A lesion whose pixels lie within this angle of an RV insertion point is at the insertion."""
AT_INSERTION_FRACTION: Final = 0.9
"""Fraction of a lesion's pixels that must lie near an insertion point for it to be there."""


def _layer(depths: npt.NDArray[np.float64]) -> Layer:
    reaches_endo = bool(np.nanmin(depths) <= ENDO_DEPTH)
    reaches_epi = bool(np.nanmax(depths) >= EPI_DEPTH)
    if reaches_endo and reaches_epi:
        return Layer.TRANSMURAL
    if reaches_endo:
        return Layer.SUBENDOCARDIAL
    if reaches_epi:
        return Layer.SUBEPICARDIAL
    return Layer.MID_WALL


def lesions(
    frame_index: int,
    scar: BoolImage,
    myocardium: BoolImage,
    lv_blood: BoolImage,
    pixel_spacing: tuple[float, float],
    segments: npt.NDArray[np.int8] | None = None,
    insertion: InsertionPoints | None = None,
) -> list[Lesion]:
    """The connected scar regions of a slice with their layer, segments and site.

    Parameters
    ----------
    segments
        AHA segment map of the slice, if it has one.
    insertion
        RV insertion points of the slice: septal arc and insertion sites.
    """
    if not scar.any():
        return []
    depth = wall_depth(myocardium, lv_blood, pixel_spacing)
    components, count = ndimage.label(scar)
    pixel_area = pixel_spacing[0] * pixel_spacing[1]
    septal: BoolImage | None = None
    near_insertion: BoolImage | None = None
    if insertion is not None:
        angles = _pixel_angles(scar.shape, insertion.centre, pixel_spacing)
        from_anterior = np.mod((angles - insertion.anterior_angle) * insertion.septal_sense,
                               2 * math.pi)
        septal = from_anterior <= insertion.septal_arc
        window = math.radians(INSERTION_WINDOW_DEG)
        near_insertion = np.zeros(scar.shape, dtype=bool)
        for point in (insertion.anterior_angle, insertion.inferior_angle):
            near_insertion |= np.abs(np.angle(np.exp(1j * (angles - point)))) <= window
    found: list[Lesion] = []
    for k in range(1, count + 1):
        region = components == k
        depths = depth[region]
        depths = depths[np.isfinite(depths)]
        if depths.size == 0:
            continue
        covered: dict[int, int] = {}
        if segments is not None:
            numbers, counts = np.unique(segments[region], return_counts=True)
            covered = {int(n): int(c) for n, c in zip(numbers, counts, strict=True) if n > 0}
        found.append(
            Lesion(
                frame_index=frame_index,
                area_mm2=float(region.sum()) * pixel_area,
                layer=_layer(depths),
                segments=covered,
                septal_fraction=None if septal is None else float(septal[region].mean()),
                at_insertion=near_insertion is not None
                and float(near_insertion[region].mean()) >= AT_INSERTION_FRACTION,
            )
        )
    return found


CONFIRMATION_RULES: Final = ("2sd", "3sd", "5sd", "fwhm")
"""Published thresholds that :func:`enhancement_confirmed` accepts (n-SD with n = 2, 3, 5
after Bondarenko et al. 2005; FWHM after Amado et al. 2004)."""


def enhancement_confirmed(
    image: FloatImage,
    labels: LabelImage,
    pixel_spacing: tuple[float, float],
    contrast: LgeContrast,
    rule: str,
) -> tuple[LabelImage, float | None]:
    """Network labels whose scar is kept only where the image is enhanced.

    Scar is hyper-enhancement: a network scar pixel stays scar only if its signal is above
    the threshold of ``rule`` over the remote myocardium of the same labels
    (:func:`remote_reference`): remote mean + n SD for ``"2sd"`` / ``"3sd"`` / ``"5sd"``
    (Bondarenko et al. 2005), or half the maximum of the network scar (:data:`FWHM_FRACTION`
    of its :data:`FWHM_MAX_PERCENTILE` th percentile above zero signal) but at least remote
    mean + :data:`FWHM_FLOOR_SD` SD for ``"fwhm"`` (Amado et al. 2004).  Kept scar pieces
    smaller than :func:`min_lesion_pixels` become myocardium, as does network MVO that no
    longer touches kept scar (MVO is a core of an infarct, not a finding of its own).

    Returns
    -------
    labels, threshold
        The relabelled copy and the threshold used; the labels unchanged and ``None`` when
        there is no network scar or no remote reference to measure enhancement against.
    """
    if rule not in CONFIRMATION_RULES:
        raise ValueError(f"Unknown scar confirmation rule {rule!r}; one of {CONFIRMATION_RULES}")
    scar = labels == Label.SCAR
    mvo = labels == Label.MVO
    if not (scar.any() or mvo.any()):
        return labels, None
    values = np.asarray(image, dtype=np.float32)
    remote = remote_reference(values, labels, pixel_spacing)
    if remote is None:
        return labels, None
    if rule == "fwhm":
        zero = signal_zero(values, contrast)
        floor = remote.mean + FWHM_FLOOR_SD * remote.sd
        peak = float(np.percentile(values[scar], FWHM_MAX_PERCENTILE)) - zero if scar.any() \
            else 0.0
        threshold = max(zero + FWHM_FRACTION * peak, floor)
    else:
        threshold = remote.mean + float(rule.removesuffix("sd")) * remote.sd
    kept = _small_removed(scar & (values > threshold), min_lesion_pixels(pixel_spacing))
    components, count = ndimage.label(mvo)
    touching = np.unique(components[ndimage.binary_dilation(kept) & mvo])
    kept_mvo = np.isin(components, touching[touching > 0]) if count else mvo
    result = np.asarray(labels).copy()
    result[(scar & ~kept) | (mvo & ~kept_mvo)] = Label.MYOCARDIUM
    return result, threshold
