"""Radiomic features of the mid-ventricular native T1 map, preprocessed as published.

Method (native T1 radiomics for LV reverse remodelling, Korean J Radiol 2023; see
``METHODS.md``):

ROI
    The LV myocardium of the mid-ventricular short-axis slice (:func:`choose_mid_slice`),
    trabeculated and epicardial borders excluded.  :func:`extract_features` accepts either the
    whole segmented myocardium, which it erodes by ``RadiomicsSettings.border_erosion_px``
    pixels (4-connected, at the native resolution, so one layer of pixels is removed at the
    endocardial *and* at the epicardial border), or a mask that already is the conservative
    core (``roi_is_core=True``, e.g. the T1 analysis' ``SliceResult.analysed_region``), used as
    given.  Slices with artefacts are excluded by the caller through the QC flags
    (``unusable`` of :func:`choose_mid_slice`).
Preprocessing (SimpleITK, IBSI)
    1. Crop to the ROI's bounding box plus ``crop_margin_mm``: every later step only needs the
       heart region, and the crop keeps the whole chain well under a second.
    2. Resample to 1 × 1 mm.  The image uses a cubic B-spline, the interpolator pyradiomics
       itself uses by default (and so most likely the study): unlike linear interpolation it
       does not low-pass filter the texture the features measure.  Its overshoot occurs at
       sharp edges (blood–myocardium), which the eroded ROI excludes and step 4 clips.  The
       mask is interpolated linearly and thresholded at 0.5 (IBSI's partial-volume rule for
       masks), which keeps the ROI's area, unlike nearest neighbour at non-integer ratios.
    3. N4 bias-field correction of the map.  N4 works on log intensities and needs positive
       values: it is fitted only on the pixels of the crop whose T1 is above
       ``N4_MIN_VALUE_MS`` (air and masked lung, stored as 0, are excluded), and the crop is
       floored at that value before fitting.  The estimated log field is shifted to mean zero
       over the ROI, so the correction redistributes intensities without changing the ROI's
       mean T1 scale (N4's field has an arbitrary global factor, and the bin width of 5 is in
       ms).
    4. Grey-level normalisation: intensities clipped to μ ± 3σ of the ROI (population SD).
       Pixels are clipped, not removed from the ROI, so the ROI shape stays the segmented one.
    5. Discretisation with a fixed bin width of 5 (pyradiomics ``binWidth``; pyradiomics bins
       from 0, see :func:`radiomics.imageoperations.getBinEdges`).
Features (pyradiomics)
    First order, GLCM, GLRLM, GLSZM and NGTDM on the original image and its wavelet (2-D:
    LL, LH, HL, HH), square, square-root, logarithm, exponential, gradient and LBP-2D filtered
    versions, ``force2D``: 11 images × 79 features = 869 features.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk  # noqa: N813 (the library's documented alias)
from scipy import ndimage
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)

__all__ = [
    "EXPECTED_FEATURE_COUNT",
    "FEATURE_CLASSES",
    "IMAGE_TYPES",
    "FeatureExtractionError",
    "FeatureVector",
    "PreprocessedSlice",
    "RadiomicsSettings",
    "choose_mid_slice",
    "extract_features",
    "known_feature_names",
    "preprocess",
    "pyradiomics_version",
]

IMAGE_TYPES: Final[tuple[str, ...]] = (
    "Original",
    "Wavelet",
    "Square",
    "SquareRoot",
    "Logarithm",
    "Exponential",
    "Gradient",
    "LBP2D",
)
"""pyradiomics image types (filters) the features are computed on."""
FEATURE_CLASSES: Final[tuple[str, ...]] = ("firstorder", "glcm", "glrlm", "glszm", "ngtdm")
"""pyradiomics feature classes, each with all its default features."""
EXPECTED_FEATURE_COUNT: Final = 869
"""Features of the published configuration (11 images × 79 features)."""
MID_LEVEL: Final = "mid"
N4_MIN_VALUE_MS: Final = 1.0
"""Pixels at or below this T1 (ms) carry no tissue signal and are excluded from the N4 fit."""
MIN_ROI_PIXELS: Final = 20
"""Fewer ROI pixels (after erosion and resampling) leave texture matrices meaningless."""

IMAGE_TYPE_PREFIXES: Final[tuple[str, ...]] = (
    "original",
    "wavelet-LL",
    "wavelet-LH",
    "wavelet-HL",
    "wavelet-HH",
    "square",
    "squareroot",
    "logarithm",
    "exponential",
    "gradient",
    "lbp-2D",
)
"""Prefixes pyradiomics gives the features of each (2-D) filtered image."""

_GLCM_SUM_AVERAGE_NOTICE = "GLCM is symmetrical, therefore Sum Average"


class FeatureExtractionError(ValueError):
    """The features cannot be computed; the message says why."""


@dataclass(frozen=True)
class RadiomicsSettings:
    """Parameters of the preprocessing and feature extraction (defaults: as published).

    Attributes
    ----------
    resampled_spacing_mm
        Isotropic in-plane pixel size after resampling.
    image_interpolator
        ``"bspline"`` (default, see module notes) or ``"linear"``.
    border_erosion_px
        Pixels removed at each border of a whole-myocardium mask (ignored for a core mask).
    crop_margin_mm
        Margin around the ROI kept for N4 and the filters.
    bias_correction
        Apply N4 (the published method does; ``False`` only for sensitivity analyses).
    n4_iterations
        Maximum N4 iterations per fitting level (one entry per level).
    n4_control_points
        Initial number of B-spline control points per axis of the N4 bias field.
    n4_shrink_factor
        The field is fitted on the image shrunk by this factor (it is smooth), then
        evaluated on the full grid.
    clip_sd
        Grey levels are clipped to ``mean ± clip_sd × SD`` of the ROI.
    bin_width
        Fixed bin width (ms of the normalised map).
    """

    resampled_spacing_mm: float = 1.0
    image_interpolator: str = "bspline"
    border_erosion_px: int = 1
    crop_margin_mm: float = 20.0
    bias_correction: bool = True
    n4_iterations: tuple[int, ...] = (50, 50, 30)
    n4_control_points: int = 4
    n4_shrink_factor: int = 2
    clip_sd: float = 3.0
    bin_width: float = 5.0

    def pyradiomics_settings(self) -> dict[str, Any]:
        """Settings passed to pyradiomics' feature extractor."""
        return {
            "binWidth": self.bin_width,
            "force2D": True,
            "force2Ddimension": 0,
            "label": 1,
            "preCrop": True,
            "resampledPixelSpacing": None,
            "normalize": False,
        }

    def as_json(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable mapping."""
        return {
            "resampled_spacing_mm": self.resampled_spacing_mm,
            "image_interpolator": self.image_interpolator,
            "border_erosion_px": self.border_erosion_px,
            "crop_margin_mm": self.crop_margin_mm,
            "bias_correction": self.bias_correction,
            "n4_iterations": list(self.n4_iterations),
            "n4_control_points": self.n4_control_points,
            "n4_shrink_factor": self.n4_shrink_factor,
            "clip_sd": self.clip_sd,
            "bin_width": self.bin_width,
        }


@dataclass(frozen=True)
class PreprocessedSlice:
    """The map and ROI after resampling, N4 and clipping, ready for pyradiomics.

    Attributes
    ----------
    image
        2-D SimpleITK float image, spacing ``resampled_spacing_mm``.
    mask
        2-D SimpleITK uint8 image on the same grid, 1 inside the ROI.
    facts
        What was done and measured (JSON-serialisable), see :func:`preprocess`.
    """

    image: sitk.Image
    mask: sitk.Image
    facts: Mapping[str, Any]

    @property
    def roi_values(self) -> npt.NDArray[np.float64]:
        """Grey levels of the ROI pixels."""
        values = sitk.GetArrayViewFromImage(self.image)[sitk.GetArrayViewFromImage(self.mask) > 0]
        return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class FeatureVector:
    """The 869 features of one slice, in pyradiomics order, and how they were obtained.

    Attributes
    ----------
    features
        Feature name (``<image type>_<class>_<feature>``) → value; NaN where pyradiomics
        could not compute one.
    preprocessing
        Facts of :func:`preprocess`, the pyradiomics version and settings, timing.
    """

    features: Mapping[str, float]
    preprocessing: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)

    def as_block(self, slice_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``radiomics`` block of a ``results.json`` T1-map entry.

        Parameters
        ----------
        slice_info
            Which slice was used (e.g. ``frame_index``, ``sop_instance_uid``,
            ``slice_location_mm``, ``level``).

        Returns
        -------
        dict
            ``{"features": {...}, "slice": {...}, "preprocessing": {...}}``; NaN is written
            as ``None``.
        """
        return {
            "features": {k: (v if np.isfinite(v) else None) for k, v in self.features.items()},
            "slice": dict(slice_info or {}),
            "preprocessing": dict(self.preprocessing),
        }


# --------------------------------------------------------------------------------------------
# Slice choice
# --------------------------------------------------------------------------------------------


def choose_mid_slice(
    levels: Sequence[str],
    slice_locations: Sequence[float],
    unusable: Sequence[int] = (),
) -> int | None:
    """Index of the mid-ventricular slice to extract features from.

    Parameters
    ----------
    levels
        Level of each analysed slice (``"basal"``, ``"mid"``, ``"apical"``, ``"unknown"``).
    slice_locations
        Position of each slice along the stack normal (mm), same order.
    unusable
        Indices to skip: slices with a FAILURE QC flag or a flagged artefact.

    Returns
    -------
    int or None
        Among usable slices labelled ``"mid"``, the one closest to the middle of their
        locations; without any, the usable slice closest to the middle of all slice locations
        when at least three slice positions exist; otherwise ``None``.

    Raises
    ------
    ValueError
        If ``levels`` and ``slice_locations`` differ in length.
    """
    if len(levels) != len(slice_locations):
        raise ValueError(
            f"{len(levels)} levels but {len(slice_locations)} slice locations were given."
        )
    skip = set(unusable)
    locations = np.asarray(slice_locations, dtype=np.float64)
    usable = [i for i in range(len(levels)) if i not in skip and np.isfinite(locations[i])]
    mid = [i for i in usable if levels[i] == MID_LEVEL]
    if mid:
        centre = 0.5 * (locations[mid].min() + locations[mid].max())
        return min(mid, key=lambda i: (abs(locations[i] - centre), i))
    finite = locations[np.isfinite(locations)]
    if not usable or len(np.unique(np.round(finite, 1))) < 3:
        return None
    centre = 0.5 * (finite.min() + finite.max())
    return min(usable, key=lambda i: (abs(locations[i] - centre), i))


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def _validate(
    t1_ms: npt.ArrayLike, mask: npt.ArrayLike, pixel_spacing: Sequence[float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], tuple[float, float]]:
    image = np.asarray(t1_ms, dtype=np.float64)
    roi = np.asarray(mask).astype(bool)
    if image.ndim != 2:
        raise FeatureExtractionError(f"The T1 map must be 2-D, not of shape {image.shape}.")
    if roi.shape != image.shape:
        raise FeatureExtractionError(
            f"The mask's shape {roi.shape} differs from the map's {image.shape}."
        )
    if len(pixel_spacing) != 2:
        raise FeatureExtractionError("Pixel spacing must be (row spacing, column spacing) in mm.")
    spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise FeatureExtractionError(f"Pixel spacing {spacing} is not positive.")
    image = np.where(np.isfinite(image), image, 0.0)
    return image, roi, spacing


def _crop_box(roi: npt.NDArray[np.bool_], spacing: tuple[float, float], margin_mm: float
              ) -> tuple[slice, slice]:
    rows, cols = np.nonzero(roi)
    margin = (int(np.ceil(margin_mm / spacing[0])), int(np.ceil(margin_mm / spacing[1])))
    return (
        slice(max(0, rows.min() - margin[0]), min(roi.shape[0], rows.max() + margin[0] + 1)),
        slice(max(0, cols.min() - margin[1]), min(roi.shape[1], cols.max() + margin[1] + 1)),
    )


def _resample(image: sitk.Image, spacing_mm: float, interpolator: int,
              pixel_type: int) -> sitk.Image:
    """Resample to square pixels of ``spacing_mm`` covering the same field of view."""
    in_spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    in_size = np.asarray(image.GetSize(), dtype=np.float64)
    extent = in_spacing * in_size
    out_size = [max(1, round(float(e / spacing_mm))) for e in extent]
    # Pixel edges of the field of view stay in place: origin is a pixel centre.
    origin = np.asarray(image.GetOrigin()) - 0.5 * in_spacing + 0.5 * spacing_mm
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(out_size)
    resampler.SetOutputSpacing((spacing_mm, spacing_mm))
    resampler.SetOutputOrigin(tuple(float(o) for o in origin))
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetInterpolator(interpolator)
    resampler.SetOutputPixelType(pixel_type)
    resampler.SetDefaultPixelValue(0.0)
    resampler.SetNumberOfThreads(1)
    return resampler.Execute(image)


_INTERPOLATORS: Final = {"bspline": sitk.sitkBSpline, "linear": sitk.sitkLinear}


def preprocess(
    t1_ms: npt.ArrayLike,
    myocardium_mask: npt.ArrayLike,
    pixel_spacing: Sequence[float],
    *,
    settings: RadiomicsSettings | None = None,
    roi_is_core: bool = False,
) -> PreprocessedSlice:
    """ROI definition, cropping, resampling, N4 correction and grey-level clipping.

    Parameters
    ----------
    t1_ms
        The T1 map of one slice (ms), shape (rows, columns).
    myocardium_mask
        The segmented myocardium (bool or labels > 0), same shape; or the conservative core
        when ``roi_is_core``.
    pixel_spacing
        (row spacing, column spacing) in mm, as DICOM PixelSpacing.
    settings
        Parameters; default :class:`RadiomicsSettings`.
    roi_is_core
        Use the mask as the ROI without eroding it.

    Returns
    -------
    PreprocessedSlice
        Image, ROI mask and facts: ``roi_definition``, ``roi_pixels_native``,
        ``roi_pixels_resampled``, ``original_spacing_mm``, ``resampled_spacing_mm``,
        ``crop_box``, ``image_interpolator``, ``mask_interpolation``, ``n4`` (iterations, control
        points, bias-field range over the ROI), ``clip`` (mean, sd, lower, upper, fraction of ROI
        pixels clipped), ``bin_width`` and ``bin_count`` (grey levels the ROI spans after
        pyradiomics' discretisation).

    Raises
    ------
    FeatureExtractionError
        For malformed inputs or an ROI too small after erosion and resampling.
    """
    settings = settings or RadiomicsSettings()
    if settings.image_interpolator not in _INTERPOLATORS:
        raise FeatureExtractionError(
            f"Unknown image interpolator {settings.image_interpolator!r}; "
            f"use one of {sorted(_INTERPOLATORS)}."
        )
    image, roi, spacing = _validate(t1_ms, myocardium_mask, pixel_spacing)
    n_given = int(roi.sum())
    if not roi_is_core and settings.border_erosion_px > 0:
        roi = ndimage.binary_erosion(
            roi, structure=ndimage.generate_binary_structure(2, 1),
            iterations=settings.border_erosion_px,
        )
        definition = (
            f"myocardium eroded by {settings.border_erosion_px} pixel(s) at the endocardial "
            "and epicardial borders"
        )
    else:
        definition = "conservative myocardial core as given"
    if int(roi.sum()) < MIN_ROI_PIXELS:
        raise FeatureExtractionError(
            f"The ROI has {int(roi.sum())} pixels ({n_given} before border exclusion); at least "
            f"{MIN_ROI_PIXELS} are needed for texture features."
        )
    rows, cols = _crop_box(roi, spacing, settings.crop_margin_mm)
    crop = image[rows, cols]
    crop_roi = roi[rows, cols]

    sitk_image = sitk.GetImageFromArray(crop)
    sitk_image.SetSpacing((spacing[1], spacing[0]))  # SimpleITK: (x = column, y = row)
    sitk_roi = sitk.GetImageFromArray(crop_roi.astype(np.float32))
    sitk_roi.CopyInformation(sitk_image)

    step = settings.resampled_spacing_mm
    resampled = _resample(sitk_image, step, _INTERPOLATORS[settings.image_interpolator],
                          sitk.sitkFloat64)
    roi_fraction = _resample(sitk_roi, step, sitk.sitkLinear, sitk.sitkFloat32)
    mask_array = (sitk.GetArrayFromImage(roi_fraction) >= 0.5).astype(np.uint8)
    n_roi = int(mask_array.sum())
    if n_roi < MIN_ROI_PIXELS:
        raise FeatureExtractionError(
            f"The ROI has {n_roi} pixels after resampling to {step} mm; at least "
            f"{MIN_ROI_PIXELS} are needed."
        )

    # N4 on positive intensities only (log domain).
    values = sitk.GetArrayFromImage(resampled)
    tissue = values > N4_MIN_VALUE_MS
    positive = sitk.GetImageFromArray(np.maximum(values, N4_MIN_VALUE_MS).astype(np.float32))
    positive.CopyInformation(resampled)
    n4_mask = sitk.GetImageFromArray(tissue.astype(np.uint8))
    n4_mask.CopyInformation(resampled)
    roi_bool = mask_array > 0
    if settings.bias_correction:
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.SetMaximumNumberOfIterations(list(settings.n4_iterations))
        corrector.SetNumberOfControlPoints([settings.n4_control_points] * 2)
        corrector.SetNumberOfThreads(1)
        shrink = [max(1, settings.n4_shrink_factor)] * 2
        corrector.Execute(sitk.Shrink(positive, shrink), sitk.Shrink(n4_mask, shrink))
        log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(positive))
        log_field = log_field.astype(np.float64)
    else:
        log_field = np.zeros(values.shape, dtype=np.float64)
    log_field -= float(log_field[roi_bool].mean())
    corrected = values * np.exp(-log_field)
    bias = np.exp(log_field[roi_bool])

    roi_values = corrected[roi_bool]
    mean, sd = float(roi_values.mean()), float(roi_values.std())
    lower, upper = mean - settings.clip_sd * sd, mean + settings.clip_sd * sd
    clipped_fraction = float(np.mean((roi_values < lower) | (roi_values > upper)))
    normalised = np.clip(corrected, lower, upper)

    out_image = sitk.GetImageFromArray(normalised)
    out_image.CopyInformation(resampled)
    out_mask = sitk.GetImageFromArray(mask_array)
    out_mask.CopyInformation(resampled)

    from radiomics import imageoperations

    # Grey levels spanned by the ROI after pyradiomics' discretisation (levels 1..bin_count;
    # its edge list ends with an empty bin above the maximum, so it is not counted).
    edges = imageoperations.getBinEdges(normalised[roi_bool], binWidth=settings.bin_width)
    bin_count = int(np.digitize(normalised[roi_bool], edges).max())
    facts: dict[str, Any] = {
        "roi_definition": definition,
        "roi_pixels_given": n_given,
        "roi_pixels_native": int(roi.sum()),
        "roi_pixels_resampled": n_roi,
        "original_spacing_mm": list(spacing),
        "resampled_spacing_mm": [step, step],
        "crop_box": [int(rows.start), int(rows.stop), int(cols.start), int(cols.stop)],
        "image_interpolator": settings.image_interpolator,
        "mask_interpolation": "linear, threshold 0.5",
        "n4": {
            "applied": settings.bias_correction,
            "iterations": list(settings.n4_iterations),
            "control_points": settings.n4_control_points,
            "shrink_factor": settings.n4_shrink_factor,
            "fit_pixels": int(tissue.sum()),
            "roi_bias_min": float(bias.min()),
            "roi_bias_max": float(bias.max()),
        },
        "clip": {
            "mean": mean,
            "sd": sd,
            "lower": lower,
            "upper": upper,
            "clip_sd": settings.clip_sd,
            "roi_fraction_clipped": clipped_fraction,
        },
        "bin_width": settings.bin_width,
        "bin_count": bin_count,
    }
    return PreprocessedSlice(out_image, out_mask, facts)


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


class _DropNotice(logging.Filter):
    """Drops pyradiomics' per-call notice that symmetric GLCM Sum Average is redundant."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_GLCM_SUM_AVERAGE_NOTICE)


def known_feature_names() -> frozenset[str]:
    """Names of the 869 features of the published configuration.

    Returns
    -------
    frozenset of str
        ``<image prefix>_<class>_<feature>`` for every non-deprecated pyradiomics feature of
        :data:`FEATURE_CLASSES` and every prefix of :data:`IMAGE_TYPE_PREFIXES`.
    """
    import radiomics

    classes = radiomics.getFeatureClasses()
    return frozenset(
        f"{prefix}_{feature_class}_{name}"
        for prefix in IMAGE_TYPE_PREFIXES
        for feature_class in FEATURE_CLASSES
        for name, deprecated in classes[feature_class].getFeatureNames().items()
        if not deprecated
    )


def pyradiomics_version() -> str:
    """Version of the installed pyradiomics (``radiomics`` package)."""
    import radiomics

    return str(radiomics.__version__)


def _extractor(settings: RadiomicsSettings) -> Any:
    from radiomics import featureextractor

    # pyradiomics sets its logger to INFO on import (one line per feature class and filter).
    logging.getLogger("radiomics").setLevel(logging.WARNING)
    glcm_logger = logging.getLogger("radiomics.glcm")
    if not any(isinstance(f, _DropNotice) for f in glcm_logger.filters):
        glcm_logger.addFilter(_DropNotice())
    extractor = featureextractor.RadiomicsFeatureExtractor(**settings.pyradiomics_settings())
    extractor.disableAllImageTypes()
    extractor.disableAllFeatures()
    for image_type in IMAGE_TYPES:
        extractor.enableImageTypeByName(image_type)
    for feature_class in FEATURE_CLASSES:
        extractor.enableFeatureClassByName(feature_class)
    return extractor


def _as_volume(image: sitk.Image, pixel_type: int) -> sitk.Image:
    """A one-slice 3-D image (pyradiomics' force2D works on 3-D input)."""
    volume = sitk.JoinSeries(sitk.Cast(image, pixel_type))
    spacing = image.GetSpacing()
    volume.SetSpacing((spacing[0], spacing[1], 1.0))
    return volume


def extract_features(
    t1_ms: npt.ArrayLike,
    myocardium_mask: npt.ArrayLike,
    pixel_spacing: Sequence[float],
    *,
    settings: RadiomicsSettings | None = None,
    roi_is_core: bool = False,
) -> FeatureVector:
    """Compute the 869 published radiomic features of one T1-map slice.

    Parameters
    ----------
    t1_ms
        The mid-ventricular T1 map (ms), shape (rows, columns).
    myocardium_mask
        The segmented LV myocardium (eroded by one pixel per border), or the conservative
        core when ``roi_is_core``.
    pixel_spacing
        (row spacing, column spacing) in mm.
    settings
        Parameters; default :class:`RadiomicsSettings` (the published ones).
    roi_is_core
        Use ``myocardium_mask`` as the ROI without eroding it.

    Returns
    -------
    FeatureVector
        Ordered features and the preprocessing facts, pyradiomics version and settings, and
        ``extraction_s`` (wall time including preprocessing).

    Raises
    ------
    FeatureExtractionError
        For malformed inputs, a too small ROI, or a feature count other than 869 (e.g. LBP-2D
        skipped because scikit-image is missing).
    """
    settings = settings or RadiomicsSettings()
    started = time.perf_counter()
    prepared = preprocess(
        t1_ms, myocardium_mask, pixel_spacing, settings=settings, roi_is_core=roi_is_core
    )
    extractor = _extractor(settings)
    image = _as_volume(prepared.image, sitk.sitkFloat64)
    mask = _as_volume(prepared.mask, sitk.sitkUInt8)
    # One BLAS thread: pyradiomics computes eigenvalues of many tiny GLCM matrices, and
    # multi-threaded BLAS on a busy 2-core machine made that 10x slower (0.7 s -> 7.6 s).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # LBP on float images: the map is continuous, the warning concerns integer images.
        warnings.filterwarnings("ignore", message="Applying `local_binary_pattern`")
        try:
            raw = extractor.execute(image, mask)
        except (ValueError, RuntimeError) as exc:
            raise FeatureExtractionError(f"pyradiomics failed on the ROI: {exc}") from exc
    features = {
        str(name): float(value) for name, value in raw.items()
        if not str(name).startswith("diagnostics_")
    }
    if len(features) != EXPECTED_FEATURE_COUNT:
        raise FeatureExtractionError(
            f"pyradiomics returned {len(features)} features instead of "
            f"{EXPECTED_FEATURE_COUNT}; is scikit-image installed (needed for LBP-2D)?"
        )
    elapsed = time.perf_counter() - started
    facts = dict(prepared.facts)
    facts.update(
        pyradiomics_version=pyradiomics_version(),
        simpleitk_version=sitk.Version_VersionString(),
        pyradiomics_settings=settings.pyradiomics_settings(),
        image_types=list(IMAGE_TYPES),
        feature_classes=list(FEATURE_CLASSES),
        settings=settings.as_json(),
        extraction_s=round(elapsed, 4),
    )
    n_nan = sum(1 for v in features.values() if not np.isfinite(v))
    logger.info("radiomics: %d features (%d not finite) in %.2f s", len(features), n_nan, elapsed)
    return FeatureVector(features=features, preprocessing=facts)
