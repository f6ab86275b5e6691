"""Reference ranges of native T1: matched on vendor, sequence family and field strength."""

from __future__ import annotations

import pytest

from plugins.api import Acquisition
from plugins.t1map.reference import (
    NO_RANGE_TEXT,
    PUBLISHED_RANGES,
    describe_missing,
    parse_site_ranges,
    reference_range,
)

SITE = {
    "molli_3t": {
        "vendor": "siemens", "sequence_family": "molli", "field_strength_t": 3.0,
        "mean_ms": 1210.0, "sd_ms": 35.0, "source": "local volunteers",
    },
    "philips_molli_3t": {
        "vendor": "philips", "sequence_family": "molli", "field_strength_t": 3.0,
        "mean_ms": 1100.0, "sd_ms": 30.0, "source": "local Philips volunteers",
    },
}


def test_every_published_range_names_vendor_sequence_field_and_source() -> None:
    assert PUBLISHED_RANGES
    for item in PUBLISHED_RANGES:
        assert item.vendor != "unknown" and item.sequence_family != "unknown"
        assert item.field_strength_t in (1.5, 3.0) and item.sd_ms > 0
        assert "J Cardiovasc Magn Reson" in item.source and item.origin == "published"


@pytest.mark.parametrize(
    "acquisition, field",
    [
        (Acquisition(), 3.0),  # nothing known: never a z-score
        (Acquisition(vendor="siemens"), 3.0),  # sequence unknown
        (Acquisition(sequence_family="molli"), 3.0),  # vendor unknown
        (Acquisition(vendor="siemens", sequence_family="molli"), 3.0),  # no Siemens range
        (Acquisition(vendor="philips", sequence_family="shmolli"), 3.0),  # other sequence
        (Acquisition(vendor="philips", sequence_family="molli"), None),  # field unknown
        (Acquisition(vendor="philips", sequence_family="molli"), 7.0),  # other field
    ],
)
def test_no_range_unless_vendor_sequence_and_field_all_match(
    acquisition: Acquisition, field: float | None
) -> None:
    assert reference_range(acquisition, field) is None
    assert describe_missing(acquisition, field).startswith(NO_RANGE_TEXT)


def test_published_range_matches_its_own_vendor_sequence_and_field() -> None:
    found = reference_range(Acquisition(vendor="philips", sequence_family="molli"), 1.494)
    assert found is not None and found.field_strength_t == 1.5
    assert found.mean_ms == 950.0 and "Dabir" in found.source


def test_site_range_adds_a_sequence_and_replaces_a_published_one() -> None:
    siemens = reference_range(Acquisition(vendor="siemens", sequence_family="molli"), 3.0, SITE)
    assert siemens is not None and siemens.origin == "site" and siemens.mean_ms == 1210.0
    assert siemens.z_score(1280.0) == pytest.approx(2.0)
    philips = reference_range(Acquisition(vendor="philips", sequence_family="molli"), 3.0, SITE)
    assert philips is not None and philips.source == "local Philips volunteers"
    # The acquisition's own field strength is used when the analysis has none.
    acquired = Acquisition(vendor="siemens", sequence_family="molli", field_strength_t=3.0)
    assert reference_range(acquired, None, SITE) == siemens


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"1.5": {"mean_ms": 950.0, "sd_ms": 21.0, "source": "x"}}, "lacks vendor"),
        ({"a": {**SITE["molli_3t"], "sd_ms": -1.0}}, "sd_ms positive"),
        ({"a": {**SITE["molli_3t"], "sequence_family": "unknown"}}, "sequence family"),
        ({"a": {**SITE["molli_3t"], "source": " "}}, "source"),
        ({"a": {**SITE["molli_3t"], "mean_ms": "high"}}, "numbers"),
    ],
)
def test_malformed_site_ranges_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_site_ranges(raw)
