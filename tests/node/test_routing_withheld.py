"""Routing explanations with header values withheld: what goes into logs and the catalog.

Free text (SeriesDescription, ProtocolName, ImageComments ...) can hold patient information;
the rendering for logs names the analysis, the condition and the attribute but no value, while
``cmr-node route`` keeps the values.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.catalog.audit import WITHHELD, withhold_values
from node.routing import (
    ConditionResult,
    RouteDecision,
    RuleSet,
    SeriesFacts,
    format_explanation,
    load_rules,
    route,
)

SIEMENS_MAP = {
    "Modality": "MR",
    "Manufacturer": "SIEMENS",
    "MagneticFieldStrength": 1.5,
    "ImageType": ["DERIVED", "PRIMARY", "T1 MAP", "MOCO", "T1"],
    "instance_count": 3,
    "slice_count": 3,
    "max_images_per_slice": 1,
}
FREE_TEXT = ("Smith^John", "1950", "Brien")
"""Pieces of the free text below that must never reach a withheld rendering."""


def _leaves(results: tuple[ConditionResult, ...]) -> Iterator[ConditionResult]:
    for result in results:
        if result.children:
            yield from _leaves(result.children)
        yield result


def _all_results(decision: RouteDecision) -> Iterator[ConditionResult]:
    for trace in decision.traces:
        yield from _leaves(trace.require + trace.identify + trace.reject)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


def test_series_identified_by_its_name_withheld_explanation_keeps_the_rule(rules):
    # identified by its name only (an ImageType without T1 MAP): the deciding condition
    # looked at the free-text description
    facts = SeriesFacts.from_dict(
        {**SIEMENS_MAP, "ImageType": ["DERIVED", "SECONDARY"],
         "SeriesDescription": "T1 map Smith^John 1950", "ProtocolName": "T1MAP Smith^John"}
    )
    decision = route(rules, facts, {"t1map"})
    assert decision.analysis == "t1map"
    full = "\n".join(decision.explanation)
    withheld = "\n".join(decision.explanation_withheld)
    assert all(piece in full for piece in FREE_TEXT[:2])  # the values are there to withhold
    assert not any(piece in withheld for piece in FREE_TEXT)
    assert len(decision.explanation_withheld) == len(decision.explanation)
    assert decision.matched_rule is not None
    rule_id = decision.matched_rule.split("/")[1]
    assert decision.explanation_withheld[0].startswith(f"t1map: identified by {rule_id} (")
    assert f"SeriesDescription={WITHHELD}, ProtocolName={WITHHELD}" in withheld


def test_unrouted_series_withheld_explanation_keeps_attribute_names(rules):
    facts = SeriesFacts.from_dict(
        {"Modality": "MR", "Manufacturer": "SIEMENS", "SeriesDescription": "brain Smith^John",
         "ProtocolName": "t1 mprage 1950", "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}
    )
    decision = route(rules, facts, {"t1map", "lge"})
    assert decision.analysis is None
    full = "\n".join(decision.explanation)
    withheld = "\n".join(decision.explanation_withheld)
    assert "Smith^John" in full
    assert not any(piece in withheld for piece in FREE_TEXT)
    assert "SeriesDescription=" in withheld
    for trace in decision.traces:  # every analysis is still accounted for
        assert f"{trace.analysis}:" in withheld


def test_site_rule_on_image_comments_withholds_a_value_with_an_apostrophe(tmp_path: Path):
    site = tmp_path / "site.toml"
    site.write_text(textwrap.dedent(
        """
        extends = "default"
        [[analyses.t1map.reject]]
        id = "research-comment"
        name = "research series (Image Comments say so)"
        type = "regex"
        attribute = "ImageComments"
        pattern = "research"
        """
    ))
    facts = SeriesFacts.from_dict(
        {**SIEMENS_MAP, "SeriesDescription": "MOLLI T1MAP",
         "ImageComments": "research consent O'Brien 1950-01-01"}
    )
    decision = route(load_rules(site), facts, {"t1map"})
    assert decision.analysis is None
    full = "\n".join(decision.explanation)
    withheld = "\n".join(decision.explanation_withheld)
    assert "O'Brien 1950" in full
    assert "excluded by research-comment (" in withheld
    assert f"ImageComments={WITHHELD}" in withheld
    assert "Brien" not in withheld and "1950" not in withheld


def test_router_debug_line_carries_no_header_value(rules, caplog):
    facts = SeriesFacts.from_dict(
        {**SIEMENS_MAP, "SeriesDescription": "MOLLI T1MAP Smith^John 1950"}
    )
    with caplog.at_level(logging.DEBUG, logger="node.routing.router"):
        decision = route(rules, facts, {"t1map"})
    lines = [r.getMessage() for r in caplog.records if r.name == "node.routing.router"]
    assert lines, "the router logs its explanation at DEBUG"
    assert decision.matched_rule is not None
    assert any(decision.matched_rule.split("/")[1] in line for line in lines)
    assert not any(piece in line for line in lines for piece in FREE_TEXT)


def test_withheld_rendering_agrees_with_the_log_filter_on_plain_values(rules):
    """Where no value holds a quote, the rendering equals what the log filter would make."""
    facts = SeriesFacts.from_dict(
        {**SIEMENS_MAP, "SeriesDescription": "MOLLI T1MAP Smith^John 1950",
         "ProtocolName": "MOLLI_T1MAP", "ContrastBolusAgent": "Dotarem",
         "distinct": {"InversionTime": [100, 180, 260]}}
    )
    decision = route(rules, facts, {"t1map", "lge", "molli", "ecv"})
    leaves = [r for r in _all_results(decision) if not r.children]
    assert len(leaves) > 20
    for result in leaves:
        assert result.withheld == withhold_values(result.observed), result.condition_id


def test_route_command_text_keeps_the_values(rules):
    facts = SeriesFacts.from_dict(
        {**SIEMENS_MAP, "SeriesInstanceUID": "1.2.3.4.5",
         "SeriesDescription": "MOLLI T1MAP Smith^John"}
    )
    text = format_explanation(route(rules, facts, {"t1map"}))
    assert "'MOLLI T1MAP Smith^John'" in text


def test_a_result_without_a_withheld_rendering_withholds_everything():
    result = ConditionResult("c", "a condition", True, "ImageComments='O'Brien'")
    assert result.describe(withhold=True) == f"c (a condition) [{WITHHELD}]"
    assert "Brien" in result.describe()
