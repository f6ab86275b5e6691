"""Every vendor fixture routes as expected, whatever BodyPartExamined says (issue 19)."""

from __future__ import annotations

import pytest

from node.routing import format_explanation, load_rules, route
from tests.node.vendor_fixtures import VendorCase, vendor_cases

CASES = list(vendor_cases())
POSITIVE = [c for c in CASES if c.expected is not None]
ALL_ANALYSES = frozenset({"t1map", "ecv", "molli", "lge", "t2map"})
KINDS = {"native_map", "molli_source", "post_map", "lge_magnitude", "psir", "cine", "t2_map",
         "perfusion", "localiser", "ti_scout"}


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def _decide(rules, case: VendorCase, **changes):
    return route(rules, rules.facts(case.datasets(**changes)), ALL_ANALYSES)


def test_corpus_covers_three_vendors_by_every_kind_and_names_sources():
    for vendor in ("siemens", "philips", "ge"):
        assert {c.kind for c in CASES if c.vendor == vendor} >= KINDS, vendor
    assert {"canon", "united_imaging"} <= {c.vendor for c in CASES}
    assert all(len(c.source) > 20 for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fixture_routes_as_expected(rules, case: VendorCase):
    decision = _decide(rules, case)
    text = format_explanation(decision)
    assert decision.analysis == case.expected, text
    if case.expected is not None:
        assert decision.matched_rule == f"{case.expected}/{case.deciding}", text
    else:
        assert case.deciding in text, text
    facts = rules.facts(case.datasets())
    assert facts.get("cmr.vendor") == case.vendor
    assert facts.get("cmr.sequence_family") == case.family, "\n".join(facts.vendor_evidence)
    assert any(line.startswith(f"vendor {case.vendor}") for line in decision.vendor_evidence)


@pytest.mark.parametrize("case", POSITIVE, ids=[c.id for c in POSITIVE])
@pytest.mark.parametrize("body_part", ["BRAIN", "ABDOMEN", "KNEE", "LIVER", None])
def test_body_part_examined_never_changes_a_positive_decision(rules, case, body_part):
    reference = _decide(rules, case)
    if body_part is None:
        changed = _decide(rules, case, remove=("BodyPartExamined",))
    else:
        changed = _decide(rules, case, overrides={"BodyPartExamined": body_part})
    assert (changed.analysis, changed.matched_rule) == (
        reference.analysis, reference.matched_rule), format_explanation(changed)


def test_map_and_source_series_gets_the_map_analysis_and_the_molli_fit(rules):
    (case,) = [c for c in CASES if c.vendor == "philips" and c.kind == "native_map"]
    decision = _decide(rules, case)
    assert decision.analyses == ("t1map", "molli")
    assert "the series also gets molli" in "\n".join(decision.explanation)
    assert not any(w.startswith("WARNING") for w in decision.warnings)
    (source_only,) = [c for c in CASES if c.vendor == "philips" and c.kind == "molli_source"]
    assert _decide(rules, source_only).analyses == ("molli",)


def test_also_must_name_another_analysis(tmp_path):
    from node.routing import RulesError

    path = tmp_path / "site.toml"
    path.write_text('extends = "default"\n[analyses.t1map]\nalso = ["nope"]\n')
    with pytest.raises(RulesError, match="also names nope"):
        load_rules(path)
