"""An analysis called without the segmenter the node gives it says which option is missing
(it builds no default network itself)."""

from __future__ import annotations

import pytest

from node.inputs.loader import load_series_files
from node.jobs.warmup import rehearsal_series
from plugins import get_plugin
from plugins.api import AnalysisError, LoadedSeries


def _series(analysis: str) -> LoadedSeries:
    series, _ = load_series_files(rehearsal_series(analysis), analysis)
    return series


@pytest.mark.parametrize(("analysis", "series_of"), [
    ("t1map", "t1map"), ("lge", "lge"), ("t2map", "t1map"),
])
def test_no_segmenter_is_an_analysis_error_naming_the_option(analysis: str,
                                                             series_of: str) -> None:
    series = _series(series_of)
    with pytest.raises(AnalysisError, match=r"^options\['segmenter'\] is missing: .* is given"
                                            r" by the caller"):
        get_plugin(analysis).analyse(series, {})


def test_a_segmenter_name_is_not_a_segmenter() -> None:
    with pytest.raises(AnalysisError, match=r"options\['segmenter'\] is the name 'unet', not an"
                                            r" object"):
        get_plugin("lge").analyse(_series("lge"), {"segmenter": "unet"})
