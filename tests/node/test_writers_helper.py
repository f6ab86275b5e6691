"""The output helper process builds the same objects as the worker's thread."""

from __future__ import annotations

from collections.abc import Iterator

import pydicom
import pytest

from node.writers import OutputKind, WriterSettings, build_outputs
from node.writers.helper import OutputHelper, encode
from tests.node.test_writers import make_case

#: Attributes that hold the moment an object was built (highdicom sets them to "now").
CREATION_TIMES = frozenset(
    {"InstanceCreationDate", "InstanceCreationTime", "ContentDate", "ContentTime",
     "DateOfSecondaryCapture", "TimeOfSecondaryCapture", "ContributionDateTime"}
)  # fmt: skip
#: Outputs the helper builds.
HELPER_KINDS = (OutputKind.SR.value, OutputKind.SUMMARY_IMAGE.value)


@pytest.fixture(scope="module")
def helper() -> Iterator[OutputHelper]:
    started = OutputHelper()
    yield started
    started.shutdown()


def _without_creation_times(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A copy of ``ds`` without creation times, in sequence items too."""
    copy = pydicom.dcmread(pydicom.filebase.DicomBytesIO(encode(ds)))

    def strip(item: pydicom.Dataset) -> None:
        for element in list(item):
            if element.keyword in CREATION_TIMES:
                del item[element.tag]
            elif element.VR == "SQ":
                for child in element.value:
                    strip(child)

    strip(copy)
    return copy


@pytest.mark.parametrize("images", ["rings", "phantom"])
def test_helper_builds_the_same_objects(helper: OutputHelper, images: str) -> None:
    case = make_case(images=images)
    here = build_outputs(case.result, case.series, case.sources, settings=WriterSettings())
    there = build_outputs(
        case.result, case.series, case.sources, settings=WriterSettings(), helper=helper
    )
    assert [o.kind for o in there] == [o.kind for o in here]
    for mine, theirs in zip(here, there, strict=True):
        assert (theirs.encoded is not None) == (mine.kind in HELPER_KINDS), mine.kind
        if theirs.encoded is not None:
            assert encode(theirs.dataset) == theirs.encoded  # what is written is the data set
            assert _without_creation_times(theirs.dataset) == _without_creation_times(
                mine.dataset
            ), mine.kind
