"""Find the heart, then segment it: the sim-to-real LGE segmenter (two U-Nets).

:class:`TwoStageLgeSegmenter` implements :class:`plugins.lge.segmenter.LgeSegmenter` without
relying on pixel spacing or field of view:

1. **Localiser.**  The whole image, padded square with its minimum, is resampled to a
   :data:`LOCATE_GRID` grid and normalised (1st / 99th percentiles of the
   grid to 0 / 1).  A small U-Net gives background / LV blood pool / myocardium; its heart
   components (LV + myocardium), most probable first, are the candidate LV centres and heart
   equivalent diameters (:func:`heart_candidates`).
2. **Segmenter.**  A square crop of :data:`CROP_FACTOR` times that diameter
   around that centre is resampled to a :data:`SEGMENT_GRID` grid and
   normalised the same way; a second U-Net gives the six LGE classes, averaged over the
   crop's eight dihedral views (``test_time_views``).  The crop is then re-centred once on
   the segmented heart and segmented again (``refine``), which corrects a localiser that was
   off-centre or mis-sized.
   Candidates are segmented in turn until one gives a myocardial ring around an LV blood pool
   (:func:`ring_plausibility`); otherwise the most ring-like is kept.
3. **Labels, plausibility, uncertainty** exactly as the one-stage network
   (:func:`models.runtime.lgeseg.segmenter.labels_from_probabilities` and
   :func:`~models.runtime.lgeseg.segmenter.segmentation_from_passes`): probabilities are mapped back
   to every source pixel centre, the myocardium is one ring around an LV blood pool, and a slice
   whose output is not such a ring is returned without labels and with a reason.
4. **Scar is enhancement.**  Network scar not enhanced over the remote myocardium by
   :data:`SCAR_RULE` becomes myocardium (:func:`plugins.lge.quantify.enhancement_confirmed`).

Pixel spacing is used only for the post-processing limits in mm.  Both networks were trained
on domain-randomised phantom and Sunnybrook label maps (:mod:`models.training.lgeseg.train_real`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.runtime.lgeseg.stack_locate import HeartCandidate, locate_stack
from models.runtime.segmentation import (
    DIHEDRAL_VIEWS,
    EIGHT_CONNECTED,
    ModelUnavailableError,
    load_unet,
    lv_enclosure,
    predict_passes,
    predict_views,
)
from plugins.api import FloatImage, Label, SegmentationOutput
from plugins.lge.quantify import CONFIRMATION_RULES, enhancement_confirmed
from plugins.lge.segmenter import LgeContrast, LgeSegmenter

__all__ = [
    "CROP_FACTOR",
    "DEFAULT_LOCATOR",
    "DEFAULT_SEGMENTER",
    "LOCATE_GRID",
    "MODEL_NAME",
    "SCAR_RULE",
    "SEGMENT_GRID",
    "TwoStageLgeSegmenter",
    "heart_candidates",
    "locate_heart",
    "normalise_grid",
    "ring_plausibility",
    "stack_ringness",
]

MODEL_NAME: Final = "cmr-node LGE sim-to-real two-stage U-Net"
WEIGHTS_DIR: Final = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_LOCATOR: Final = WEIGHTS_DIR / "lge_real_locate.pt"
DEFAULT_SEGMENTER: Final = WEIGHTS_DIR / "lge_real_segment.pt"
MIN_HEART_GRID_PX: Final = 12
"""Smallest heart (LV + myocardium) the localiser may report, in grid pixels."""
MAX_CANDIDATES: Final = 3
"""Most heart candidates (localiser components) segmented before a slice is given up."""
STACK_CANDIDATES: Final = 6
"""Localiser candidates per slice offered to the stack chain (:meth:`segment_stack`)."""
SCAR_RULE: Final = "3sd"
"""Enhancement that confirms network scar: remote mean + 3 SD, chosen on the EMIDEC dev split
among the published 2, 3, 5 SD and FWHM (models/README.md, issue 14)."""
TEST_TIME_VIEWS: Final = 8
"""Dihedral test-time views averaged for every crop: chosen on the EMIDEC dev split against
2 (the mirror alone), 4, and 8 for the chosen crop only (models/README.md)."""
CALIBRATED_VIEWS: Final = 2
"""The views (identity and mirror) the slice uncertainty is computed from, as calibrated."""
STRETCH_TOLERANCE: Final = 1.2
"""Stack stretch (segmented heart width over height beyond what the pixel spacing explains)
left uncorrected; per-slice heart width over height is 0.80-1.15 on the 37 real Sunnybrook
slices (expert masks), so a stack median beyond 1.2 is stretch, not anatomy."""
STRETCH_ROUNDS: Final = 3
"""Most re-segmentations of a stack to undo its stretch (the segmenter, trained on round
hearts, sees a stretched heart rounder than it is, so one round undoes only part)."""
MIN_STRETCH_SLICES: Final = 2
"""Slices with a segmented heart needed before a stack's stretch is corrected."""
WEAK_HEART_PROBABILITY: Final = 0.25
"""Heart probability above which a region is a fallback candidate when the localiser's own
labels (arg max) hold no heart large enough."""

TILE_POSITIONS: Final = (0.25, 0.5, 0.75)
"""Centres (fractions of the image's rows and columns) of the half-size tiles the localiser
also sees in the tiled hypothesis of :meth:`TwoStageLgeSegmenter.segment_stack`: 3 x 3 tiles
of half the image side overlapping by half, so a heart too small for the localiser at the
whole field of view (10-15 % of it) is seen at twice the size wherever it lies."""

F32 = npt.NDArray[np.float32]
Affine = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]

# Inference geometry, shared with the training samples (models.training.lgeseg.synth).
LOCATE_GRID: Final = 96
"""Side of the localiser's input (the whole image, padded square)."""
SEGMENT_GRID: Final = 128
"""Side of the segmenter's input (the heart-centred crop)."""
CROP_FACTOR: Final = 2.4
"""Crop side / heart equivalent diameter (LV blood pool + myocardium)."""
PERCENTILES: Final = (1.0, 99.0)
"""Percentiles of a grid mapped to 0 and 1 by :func:`normalise_grid`."""
NORMALISED_RANGE: Final = (-1.0, 3.0)
"""Clipping range of the normalised network input."""


def normalise_grid(grid: npt.NDArray[np.floating]) -> F32:
    """Network input: the grid's 1st and 99th percentiles mapped to 0 and 1, clipped."""
    values = np.asarray(grid, dtype=np.float32)
    lo, hi = np.percentile(values, PERCENTILES)
    span = float(hi - lo) if hi > lo else 1.0
    return np.clip((values - float(lo)) / span, *NORMALISED_RANGE).astype(np.float32)


def _square_affine(centre: tuple[float, float], step: float, grid: int,
                   aspect: float = 1.0) -> Affine:
    """Grid index -> source index, grid centred: ``step`` source pixels per grid pixel, as
    ``step / sqrt(aspect)`` rows and ``step * sqrt(aspect)`` columns when the heart spans
    ``aspect`` times more columns than rows (non-square or stretched pixels)."""
    root = math.sqrt(aspect)
    matrix = np.diag([step / root, step * root])
    offset = np.asarray(centre, dtype=np.float64) - matrix @ np.full(2, (grid - 1) / 2.0)
    return matrix, offset


def _resample(image: F32, affine: Affine, grid: int, cval: float) -> F32:
    return np.asarray(ndimage.affine_transform(image, affine[0], affine[1], (grid, grid),
                                               order=1, cval=cval), dtype=np.float32)


def _component_geometry(component: npt.NDArray[np.bool_], affine: Affine
                        ) -> tuple[tuple[float, float], float, float]:
    """Centre, equivalent diameter (source pixels) and aspect (column over row standard
    deviation, source pixels) of a grid component."""
    rows, cols = np.nonzero(component)
    centre = affine[0] @ np.array([rows.mean(), cols.mean()]) + affine[1]
    area = float(component.sum()) * abs(float(np.linalg.det(affine[0])))
    diameter = 2.0 * math.sqrt(area / math.pi)
    spread_rows = max(float(rows.std()), 0.5) * abs(float(affine[0][0, 0]))
    spread_cols = max(float(cols.std()), 0.5) * abs(float(affine[0][1, 1]))
    return (float(centre[0]), float(centre[1])), diameter, spread_cols / spread_rows


def locate_heart(prob: F32, affine: Affine) -> tuple[tuple[float, float], float] | None:
    """Heart centre (source row, col) and equivalent diameter (source pixels) from the
    localiser's probabilities on its grid, or ``None`` if it found no heart."""
    biggest = _largest_heart(np.argmax(prob, axis=0) > 0)
    if biggest is None:
        return None
    centre, diameter, _ = _component_geometry(biggest, affine)
    return centre, diameter


def _largest_heart(heart: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_] | None:
    """The largest 8-connected component of a heart mask, or ``None`` when there is none
    of at least ``MIN_HEART_GRID_PX`` pixels."""
    components, n = ndimage.label(heart, structure=EIGHT_CONNECTED)
    if n == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    biggest: npt.NDArray[np.bool_] = components == int(np.argmax(sizes)) + 1
    return biggest if int(biggest.sum()) >= MIN_HEART_GRID_PX else None


def scored_heart_candidates(prob: F32, affine: Affine, limit: int = MAX_CANDIDATES
                            ) -> list[HeartCandidate]:
    """Up to ``limit`` heart candidates (centre and diameter in source pixels, score = summed
    heart probability), most probable first: the localiser's heart components (arg max)
    ranked by their summed heart probability, then, if those are fewer, the regions of heart
    probability above :data:`WEAK_HEART_PROBABILITY` not already covered."""
    heart_probability = 1.0 - prob[0]
    found: list[HeartCandidate] = []
    covered = np.zeros(heart_probability.shape, dtype=bool)
    for mask in (np.argmax(prob, axis=0) > 0, heart_probability > WEAK_HEART_PROBABILITY):
        components, n = ndimage.label(mask & ~covered, structure=EIGHT_CONNECTED)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        sizes = ndimage.sum(np.ones_like(heart_probability), components, index)
        mass = ndimage.sum(heart_probability, components, index)
        for k in np.argsort(-np.asarray(mass)):
            if sizes[k] < MIN_HEART_GRID_PX or len(found) >= limit:
                continue
            centre, diameter, aspect = _component_geometry(components == k + 1, affine)
            found.append(HeartCandidate(centre, diameter, float(mass[k]), aspect))
        covered |= ndimage.binary_dilation(mask, iterations=2)
    return found


def heart_candidates(prob: F32, affine: Affine, limit: int = MAX_CANDIDATES
                     ) -> list[tuple[tuple[float, float], float]]:
    """:func:`scored_heart_candidates` without their scores: (centre, diameter) pairs."""
    return [(c.centre, c.diameter) for c in scored_heart_candidates(prob, affine, limit)]


def _heart_probabilities(passes: F32) -> F32:
    """Background, LV blood pool and myocardium (with scar and MVO) probabilities of the
    segmenter's mean pass, as the localiser's three classes."""
    mean = passes.mean(axis=0)
    return np.stack([mean[0] + mean[3], mean[1], mean[2] + mean[4] + mean[5]])


def segmented_aspect(passes: F32, affine: Affine) -> float | None:
    """Width over height (source pixels) of the heart the segmenter found in a crop, or
    ``None`` if it found none."""
    biggest = _largest_heart(np.argmax(_heart_probabilities(passes), axis=0) > 0)
    return None if biggest is None else _component_geometry(biggest, affine)[2]


def ring_plausibility(passes: F32) -> float:
    """How well the crop's mean prediction is one myocardial ring around an LV blood pool:
    the fraction of the largest LV component's border that is myocardium (0 without LV)."""
    mean = passes.mean(axis=0)
    calls = np.argmax(mean, axis=0)
    lv = calls == Label.LV_BLOOD_POOL
    components, n = ndimage.label(lv, structure=EIGHT_CONNECTED)
    if n == 0:
        return 0.0
    sizes = np.bincount(components.ravel())[1:]
    largest = components == int(np.argmax(sizes)) + 1
    return lv_enclosure(largest, np.isin(calls, (Label.MYOCARDIUM, Label.SCAR, Label.MVO)))


def stack_ringness(outputs: Sequence[SegmentationOutput]) -> float:
    """Mean over a stack's slices of how much of the LV blood pool's border is myocardium
    (``details["lv_enclosure"]``; 0 for a slice not segmented)."""
    if not outputs:
        return 0.0
    return sum(0.0 if o.reason else float(o.details.get("lv_enclosure", 0.0))
               for o in outputs) / len(outputs)


class TwoStageLgeSegmenter:
    """Localiser + heart-crop segmenter for LGE short-axis slices (see the module description).

    Parameters
    ----------
    locator, segmenter
        The two ``.pt`` state dicts (provenance JSON beside each, SHA-256 checked); the
        committed weights if ``None``.
    test_time_views
        Dihedral views of every crop averaged (:func:`models.runtime.segmentation.predict_views`:
        1, 2 = with the mirror, 4 or 8); the uncertainty comes from the identity and mirror
        views alone (:data:`CALIBRATED_VIEWS`, the definition its threshold was set on).
    tiled_hypothesis
        In :meth:`segment_stack`, also localise with half-size tiles of the image
        (:data:`TILE_POSITIONS`) and keep the more ring-like of the two hypotheses.
    refine
        Re-centre the crop on the first segmentation and segment again.
    locator_tta
        Average the localiser over the image and its three mirrorings.
    max_candidates
        Heart candidates tried, most probable first, until one segments as a plausible ring
        (:func:`ring_plausibility` at least ``MIN_LV_ENCLOSURE``); otherwise the most
        plausible is kept.  ``1`` is the localiser's largest heart component alone.
    scar_rule
        Network scar is kept only where the image is enhanced by this published threshold
        (:func:`plugins.lge.quantify.enhancement_confirmed`; ``None``: network scar as is).
    correct_stretch
        In :meth:`segment_stack`, segment a stack again with crops that undo its stretch
        when its segmented hearts are wider than high (or higher than wide) beyond
        :data:`STRETCH_TOLERANCE` (stretched re-exports, wrong pixel spacing).

    Raises
    ------
    ModelUnavailableError
        If a file is missing or unreadable, or a SHA-256 differs from its JSON.
    """

    def __init__(self, locator: Path | None = None, segmenter: Path | None = None, *,
                 test_time_views: int = TEST_TIME_VIEWS, tiled_hypothesis: bool = True,
                 refine: bool = True,
                 locator_tta: bool = True, max_candidates: int = MAX_CANDIDATES,
                 scar_rule: str | None = SCAR_RULE, correct_stretch: bool = True) -> None:
        locator = DEFAULT_LOCATOR if locator is None else Path(locator)
        segmenter = DEFAULT_SEGMENTER if segmenter is None else Path(segmenter)
        self._locator, locate_record, locate_sha = load_unet(
            locator, locator.with_suffix(".json"))
        self._segmenter, record, sha = load_unet(segmenter, segmenter.with_suffix(".json"))
        if self._locator.config.n_classes != 3 or self._segmenter.config.n_classes != 6:
            raise ModelUnavailableError("The weights are not a 3-class localiser and a "
                                        "6-class LGE segmenter.")
        self.name: str = MODEL_NAME
        self.version: str = str(record["model_version"])
        self.weights_sha256: str | None = sha
        self.locator_sha256 = locate_sha
        if test_time_views not in DIHEDRAL_VIEWS:
            raise ValueError(f"test_time_views must be one of {DIHEDRAL_VIEWS}")
        self.test_time_views = test_time_views
        self.tiled_hypothesis = tiled_hypothesis
        self.refine = refine
        self.locator_tta = locator_tta
        self.max_candidates = max_candidates
        if scar_rule is not None and scar_rule not in CONFIRMATION_RULES:
            raise ValueError(f"Unknown scar rule {scar_rule!r}; one of {CONFIRMATION_RULES}")
        self.scar_rule = scar_rule
        self.correct_stretch = correct_stretch
        self.mvo_output = bool(record.get("mvo_output", False))
        self.record: Mapping[str, Any] = record
        self.locator_record: Mapping[str, Any] = locate_record

    def locate(self, values: F32) -> tuple[tuple[float, float], float] | None:
        """Heart centre and diameter (source pixels) on a whole image, or ``None``."""
        return locate_heart(*self._locator_output(values))

    def candidates(self, values: F32) -> list[tuple[tuple[float, float], float]]:
        """Heart candidates (centre, diameter in source pixels), most probable first."""
        return heart_candidates(*self._locator_output(values), limit=self.max_candidates)

    def scored_candidates(self, values: F32, limit: int | None = None) -> list[HeartCandidate]:
        """Heart candidates with their localiser scores, most probable first."""
        return scored_heart_candidates(*self._locator_output(values),
                                       limit=self.max_candidates if limit is None else limit)

    def rehearse(self) -> None:
        """Run both networks once on a blank image (first-inference costs paid ahead)."""
        blank = np.zeros((LOCATE_GRID, LOCATE_GRID), dtype=np.float32)
        self._locator_output(blank)
        self.crop_passes(blank, ((LOCATE_GRID - 1) / 2.0, (LOCATE_GRID - 1) / 2.0),
                         LOCATE_GRID / CROP_FACTOR)

    def _locator_output(self, values: F32, centre: tuple[float, float] | None = None,
                        side: float | None = None) -> tuple[F32, Affine]:
        """Localiser probabilities and grid affine of the whole image, or of the square
        window of ``side`` source pixels around ``centre``."""
        rows, cols = values.shape
        if centre is None or side is None:
            centre, side = ((rows - 1) / 2.0, (cols - 1) / 2.0), float(max(rows, cols))
        affine = _square_affine(centre, side / LOCATE_GRID, LOCATE_GRID)
        grid = normalise_grid(_resample(values, affine, LOCATE_GRID, float(values.min())))
        return self._locator_probabilities(grid), affine

    def tiled_candidates(self, values: F32, limit: int,
                         whole: Sequence[HeartCandidate] | None = None) -> list[HeartCandidate]:
        """Heart candidates of the whole image and of the :data:`TILE_POSITIONS` tiles,
        scored as localiser heart probability per source pixel area (so that the scales
        compare), a candidate within half a diameter of a better one dropped; best first.
        ``whole``: the whole image's candidates (:meth:`scored_candidates` with ``limit``),
        when already found."""
        rows, cols = values.shape
        side = float(max(rows, cols))
        if whole is None:
            whole = self.scored_candidates(values, limit=limit)
        whole_area = (side / LOCATE_GRID) ** 2
        found = [replace(c, score=c.score * whole_area) for c in whole]
        windows = [((fr * rows - 0.5, fc * cols - 0.5), side / 2.0)
                   for fr in TILE_POSITIONS for fc in TILE_POSITIONS]
        for centre, window in windows:
            prob, affine = self._locator_output(values, centre, window)
            area = abs(float(np.linalg.det(affine[0])))
            found += [replace(c, score=c.score * area)
                      for c in scored_heart_candidates(prob, affine, limit=limit)]
        kept: list[HeartCandidate] = []
        for candidate in sorted(found, key=lambda c: -c.score):
            if not any(math.dist(candidate.centre, k.centre)
                       < 0.5 * max(candidate.diameter, k.diameter) for k in kept):
                kept.append(candidate)
        return kept[:limit]

    def _locator_probabilities(self, grid: F32) -> F32:
        """Localiser probabilities, averaged over the four mirrorings when ``locator_tta``."""
        import torch

        if not self.locator_tta:
            return predict_passes(self._locator, grid[None], False)[0]
        views = np.stack([grid, grid[:, ::-1], grid[::-1], grid[::-1, ::-1]])[:, None]
        with torch.inference_mode():
            prob = torch.softmax(self._locator(torch.from_numpy(np.ascontiguousarray(views))),
                                 dim=1).numpy()
        prob[1] = prob[1][:, :, ::-1]
        prob[2] = prob[2][:, ::-1]
        prob[3] = prob[3][:, ::-1, ::-1]
        return np.asarray(prob.mean(axis=0), dtype=np.float32)

    def crop_passes(self, values: F32, centre: tuple[float, float], diameter: float,
                    aspect: float = 1.0) -> tuple[F32, Affine]:
        """Segmenter probabilities (passes, 6, g, g) of the crop and its grid affine
        (``aspect``: the heart's width over height in source pixels, made round)."""
        affine = _square_affine(centre, CROP_FACTOR * diameter / SEGMENT_GRID, SEGMENT_GRID,
                                aspect)
        grid = normalise_grid(_resample(values, affine, SEGMENT_GRID, float(values.min())))
        return predict_views(self._segmenter, grid[None], self.test_time_views), affine

    def _refined_passes(self, values: F32, centre: tuple[float, float], diameter: float,
                        aspect: float) -> tuple[F32, Affine, tuple[float, float], float]:
        """Crop passes around a candidate (re-centred once on its segmented heart if
        ``refine``), their affine and the centre and diameter finally used."""
        passes, affine = self.crop_passes(values, centre, diameter, aspect)
        if self.refine:
            again = locate_heart(_heart_probabilities(passes), affine)
            if again is not None:
                centre, diameter = again
                passes, affine = self.crop_passes(values, centre, diameter, aspect)
        return passes, affine, centre, diameter

    def _prepare(self, image: FloatImage, pixel_spacing: tuple[float, float],
                 contrast: LgeContrast) -> tuple[F32, tuple[float, float], dict[str, Any]]:
        """Finite float32 values, checked spacing and the details every output carries."""
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0,
                               neginf=0.0)
        if values.ndim != 2:
            raise ValueError(f"Expected a 2-D LGE image, got shape {values.shape}")
        spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
        if min(spacing) <= 0:
            raise ValueError(f"Pixel spacing must be positive, got {pixel_spacing}")
        details: dict[str, Any] = {
            "model": self.name,
            "model_version": self.version,
            "locator_sha256": self.locator_sha256,
            "contrast": str(LgeContrast(contrast)),
            "cine_used": False,
            "test_time_views": self.test_time_views,
            "network_grid": f"{SEGMENT_GRID}x{SEGMENT_GRID} crop of {CROP_FACTOR} heart "
                            "diameters",
            "mvo_output": self.mvo_output,
            "max_candidates": self.max_candidates,
            "scar_rule": self.scar_rule,
        }
        return values, spacing, details

    def segment(
        self,
        image: FloatImage,
        pixel_spacing: tuple[float, float],
        contrast: LgeContrast,
        cine: FloatImage | None = None,
    ) -> SegmentationOutput:
        """Segment one slice (see the module description); ``cine`` is not used."""
        started = time.perf_counter()
        values, spacing, details = self._prepare(image, pixel_spacing, contrast)
        details["heart_localisation"] = "slice"
        found = [(c.centre, c.diameter) for c in self.scored_candidates(values)]
        crop = self._best_crop(values, found, spacing[0] / spacing[1])
        return self._finish(values, spacing, contrast, crop, details, started)

    def segment_stack(
        self,
        images: Sequence[FloatImage],
        pixel_spacings: Sequence[tuple[float, float]],
        contrast: LgeContrast,
        offsets: Sequence[tuple[float, float]] | None = None,
    ) -> list[SegmentationOutput]:
        """Segment the slices of one short-axis stack, the heart localised per stack.

        Every slice's localiser candidates enter
        :func:`models.runtime.lgeseg.stack_locate.locate_stack`; each slice is segmented first at
        its point of that chain (its own candidate, or a centre and size interpolated from its
        neighbours), then, if that crop is not a myocardial ring, at its own other candidates, as
        :meth:`segment` does.

        Parameters
        ----------
        images
            The stack's slices in order along the LV axis (base to apex or apex to base).
        pixel_spacings
            (row, column) spacing of each slice, mm.
        contrast
            PSIR or magnitude.
        offsets
            Each slice's grid offset in a common frame
            (:func:`plugins.lib.stack_geometry.in_plane_offsets`); ``None``: one shared grid.

        Returns
        -------
        list of SegmentationOutput
            One per slice, in order; ``details["heart_localisation"]`` says how the slice's
            heart was placed, ``details["localisation_hypothesis"]`` which hypothesis won.

        Notes
        -----
        With ``tiled_hypothesis`` the stack is localised and segmented twice: with the
        localiser's candidates of the whole image, and with those of the whole image and
        of half-size tiles (:meth:`tiled_candidates`); the hypothesis whose segmentations
        are the more ring-like over the stack (:func:`stack_ringness`) is kept, the whole
        image on a tie; when the whole image already gives a closed ring on every slice
        (ringness 1, which nothing can beat) the tiles are not tried.
        """
        if len(images) != len(pixel_spacings):
            raise ValueError("One pixel spacing per image is needed.")
        prepared = [self._prepare(image, spacing, contrast)
                    for image, spacing in zip(images, pixel_spacings, strict=True)]
        fresh = [(values, spacing, dict(details)) for values, spacing, details in prepared]
        whole_found, located_s = [], []
        for values, _, _ in prepared:
            begin = time.perf_counter()
            whole_found.append(self.scored_candidates(values, limit=STACK_CANDIDATES))
            located_s.append(time.perf_counter() - begin)
        outputs = self._segment_prepared(prepared, contrast, offsets, whole_found, located_s)
        whole = stack_ringness(outputs)
        if not self.tiled_hypothesis:
            return outputs
        hypothesis: dict[str, Any] = {"chosen": "whole image",
                                      "ringness_whole_image": round(whole, 3),
                                      "ringness_with_tiles": None}
        if whole < 1.0:  # a stack of closed rings cannot be beaten: tiles not tried
            tiled_found, tiled_s = [], []
            for (values, _, _), found in zip(fresh, whole_found, strict=True):
                begin = time.perf_counter()
                tiled_found.append(self.tiled_candidates(values, STACK_CANDIDATES, found))
                tiled_s.append(time.perf_counter() - begin)
            tiled = self._segment_prepared(fresh, contrast, offsets, tiled_found, tiled_s)
            with_tiles = stack_ringness(tiled)
            hypothesis["ringness_with_tiles"] = round(with_tiles, 3)
            if with_tiles > whole:
                outputs = tiled
                hypothesis["chosen"] = "whole image and half-size tiles"
        return [replace(output, details={**output.details, "localisation_hypothesis": hypothesis})
                for output in outputs]

    def _segment_prepared(
        self,
        prepared: Sequence[tuple[F32, tuple[float, float], dict[str, Any]]],
        contrast: LgeContrast,
        offsets: Sequence[tuple[float, float]] | None,
        found: Sequence[Sequence[HeartCandidate]],
        located_s: Sequence[float],
    ) -> list[SegmentationOutput]:
        """:meth:`segment_stack` for one localisation hypothesis: each slice's heart
        candidates ``found`` (in ``located_s`` seconds) chained, cropped and segmented."""
        chain = locate_stack(found, offsets)
        spent = list(located_s)
        orders: list[list[tuple[tuple[float, float], float]]] = []
        for k, ((_, _, details), point) in enumerate(zip(prepared, chain, strict=True)):
            order = [(c.centre, c.diameter) for c in found[k]]
            if point is None:
                details["heart_localisation"] = "slice"
            else:
                details["heart_localisation"] = (
                    "stack chain: interpolated from neighbours" if point.candidate is None
                    else f"stack chain: candidate {point.candidate + 1}")
                if point.candidate is not None:
                    del order[point.candidate]
                order = [(point.centre, point.diameter), *order][:self.max_candidates]
            orders.append(order)
        pixel_aspects = [spacing[0] / spacing[1] for _, spacing, _ in prepared]
        crops = []
        for k, (values, _, _) in enumerate(prepared):
            begin = time.perf_counter()
            crops.append(self._best_crop(values, orders[k], pixel_aspects[k]))
            spent[k] += time.perf_counter() - begin
        stretch = 1.0
        for _ in range(STRETCH_ROUNDS):
            residual = self._stack_stretch(crops, [a * stretch for a in pixel_aspects])
            if residual is None:
                break
            stretch *= residual
            for k, (values, _, _) in enumerate(prepared):
                first = crops[k]
                if first is None:
                    continue
                begin = time.perf_counter()
                again = self._best_crop(values, [(first.centre, first.diameter), *orders[k]][
                    :self.max_candidates], pixel_aspects[k] * stretch)
                if again is not None and again.score >= first.score:
                    crops[k] = again
                spent[k] += time.perf_counter() - begin
        for _, _, details in prepared:
            details["stretch_corrected"] = round(stretch, 3)
        outputs = []
        for k, ((values, spacing, details), crop) in enumerate(zip(prepared, crops,
                                                                   strict=True)):
            # inference_ms of a slice includes its own localisation and every crop.
            outputs.append(self._finish(values, spacing, contrast, crop, details,
                                        time.perf_counter() - spent[k]))
        return outputs

    def _stack_stretch(self, crops: Sequence[_Crop | None], pixel_aspects: Sequence[float]
                       ) -> float | None:
        """The stack's unexplained stretch: median over its slices of the segmented heart's
        width over height divided by what the crops' aspects explain, if farther from 1
        than :data:`STRETCH_TOLERANCE` (else ``None``: nothing to correct)."""
        ratios = [crop.aspect / pixel_aspect
                  for crop, pixel_aspect in zip(crops, pixel_aspects, strict=True)
                  if crop is not None and crop.aspect is not None]
        if not self.correct_stretch or len(ratios) < MIN_STRETCH_SLICES:
            return None
        stretch = float(np.median(ratios))
        return stretch if abs(math.log(stretch)) > math.log(STRETCH_TOLERANCE) else None

    def _best_crop(self, values: F32, found: Sequence[tuple[tuple[float, float], float]],
                   aspect: float) -> _Crop | None:
        """The crop at the first of the heart positions ``found`` that segments as a
        myocardial ring (else the most ring-like); ``None`` without positions."""
        from models.runtime.lgeseg.segmenter import MIN_LV_ENCLOSURE

        best: _Crop | None = None
        for rank, candidate in enumerate(found):
            passes, affine, centre, diameter = self._refined_passes(values, *candidate, aspect)
            score = ring_plausibility(passes)
            if best is None or score > best.score:
                best = _Crop(score, rank, len(found), centre, diameter, aspect, passes, affine,
                             segmented_aspect(passes, affine))
            if score >= MIN_LV_ENCLOSURE:
                break
        return best

    def _finish(self, values: F32, spacing: tuple[float, float], contrast: LgeContrast,
                crop: _Crop | None, details: dict[str, Any], started: float
                ) -> SegmentationOutput:
        """Labels of the chosen crop on the source grid, then scar confirmed by
        enhancement."""
        from models.runtime.lgeseg.segmenter import empty_output, segmentation_from_passes

        if crop is None:
            return empty_output(values.shape, "the localiser found no heart", details,
                                started)
        details["heart_candidate"] = f"{crop.rank + 1} of {crop.tried}"
        details["heart_centre_px"] = [round(crop.centre[0], 1), round(crop.centre[1], 1)]
        details["heart_diameter_px"] = round(crop.diameter, 1)
        details["crop_aspect"] = round(crop.crop_aspect, 3)
        inverse = np.asarray(np.linalg.inv(crop.affine[0]), dtype=np.float64)
        back = (inverse, -inverse @ crop.affine[1])
        output = segmentation_from_passes(crop.passes, values.shape, spacing, self.mvo_output,
                                          details, started, back, CALIBRATED_VIEWS)
        if self.scar_rule is None or output.reason is not None:
            return output
        labels, threshold = enhancement_confirmed(values, output.labels, spacing,
                                                  LgeContrast(contrast), self.scar_rule)
        details["scar_threshold"] = None if threshold is None else round(threshold, 2)
        details["inference_ms"] = round(1000.0 * (time.perf_counter() - started), 1)
        return SegmentationOutput(labels, output.uncertainty, None, details,
                                  output.probabilities)


@dataclass(frozen=True)
class _Crop:
    """A segmented heart crop: ring plausibility, rank among the positions tried, centre,
    diameter and aspect it was cut with, passes, grid affine, segmented heart's aspect."""

    score: float
    rank: int
    tried: int
    centre: tuple[float, float]
    diameter: float
    crop_aspect: float
    passes: F32
    affine: Affine
    aspect: float | None


def _protocol_check(segmenter: TwoStageLgeSegmenter) -> LgeSegmenter:
    return segmenter


@functools.lru_cache(maxsize=1)
def cached_default() -> TwoStageLgeSegmenter:
    """The committed two-stage segmenter, loaded once per process."""
    return TwoStageLgeSegmenter()

