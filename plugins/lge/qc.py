"""The stable quality-control codes of the LGE analysis."""

from __future__ import annotations


class QCCode:
    """Stable QC codes of the LGE analysis."""

    SLICE_NOT_SEGMENTED = "slice_not_segmented"
    SEGMENTATION_UNCERTAIN = "segmentation_uncertain"
    PIXEL_UNCERTAINTY_HIGH = "pixel_uncertainty_high"
    SCAR_OUTSIDE_MYOCARDIUM = "scar_outside_myocardium"
    LV_MASS_IMPLAUSIBLE = "lv_mass_implausible"
    POOR_NULLING = "poor_myocardial_nulling"
    INVERTED_NULLING = "myocardium_brighter_than_blood"
    METHODS_DISAGREE = "scar_methods_disagree"
    REMOTE_BORROWED = "remote_reference_borrowed"
    REMOTE_NOT_FOUND = "remote_reference_not_found"
    SINGLE_SLICE = "single_slice_volume"
    NO_SLICE_ANALYSED = "no_slice_analysed"
    MODEL_UNAVAILABLE = "trained_model_unavailable"
    NOT_PARALLEL_STACK = "not_parallel_stack"
    CONTRAST_ASSUMED = "contrast_assumed"
    BOTH_RECONSTRUCTIONS = "both_reconstructions_in_series"
    REPEATED_POSITION = "repeated_slice_position"
    CINE_FUSION = "cine_fusion"
    CINE_NOT_USED = "cine_not_used"
    FUSION_UNAVAILABLE = "fusion_model_unavailable"
    INFARCT_MODEL_UNUSABLE = "infarct_model_unusable"
