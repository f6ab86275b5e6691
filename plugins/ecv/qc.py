"""The quality-control flag codes of the ECV analysis (what each means:
:mod:`plugins.ecv.analysis`)."""

from __future__ import annotations


class QCCode:
    """Stable codes of the quality-control flags this analysis raises."""

    HAEMATOCRIT_MISSING = "haematocrit_missing"
    HAEMATOCRIT_INVALID = "haematocrit_invalid"
    ALIGNMENT_SHIFT_LARGE = "alignment_shift_large"
    ALIGNMENT_UNCERTAIN = "alignment_uncertain"
    BLOOD_DELTA_R1_LOW = "blood_delta_r1_low"
    ECV_OUT_OF_RANGE = "ecv_out_of_range"
    SLICE_NOT_PAIRED = "slice_not_paired"
    TOO_FEW_CORE_PIXELS = "too_few_core_pixels"
    NO_SLICE_ANALYSED = "no_slice_analysed"
