"""The router: which analysis, if any, a complete series gets, and why.

It composes the other modules of :mod:`node.routing`: it evaluates each analysis' rules
(:mod:`~node.routing.rules_file`) on a series' facts (:mod:`~node.routing.facts`) with the
conditions of :mod:`~node.routing.conditions`, chooses by priority, and keeps every
evaluation in a :class:`~node.routing.trace.RouteDecision`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from node.routing.facts import SeriesFacts
from node.routing.rules_file import AnalysisRules, RuleSet
from node.routing.trace import Outcome, RouteDecision, RuleTrace, explanation_lines

logger = logging.getLogger(__name__)

__all__ = ["Router", "route"]


class Router:
    """Decides which analysis each series gets.

    Parameters
    ----------
    rules
        Validated routing rules.
    available
        Names of the analyses installed on this node; ``None`` treats every analysis in the
        rules as installed. A series matching an analysis not installed is reported, not
        routed.
    """

    def __init__(self, rules: RuleSet, available: Collection[str] | None = None) -> None:
        self.rules = rules
        self.available = frozenset(rules.analyses if available is None else available)

    def route(self, facts: SeriesFacts) -> RouteDecision:
        """The routing decision for one series."""
        traces = tuple(
            self._evaluate(self.rules.analyses[name], facts) for name in self.rules.priority
        )
        matched = [t for t in traces if t.outcome is Outcome.MATCHED]
        warnings: list[str] = []
        for trace in traces:
            if trace.outcome is Outcome.NOT_INSTALLED:
                warnings.append(
                    f"analysis '{trace.analysis}' not installed: the series matches rule "
                    f"'{trace.matched_rule}' but cannot be analysed here"
                )
        chosen = matched[0] if matched else None
        also: tuple[str, ...] = ()
        alongside: tuple[str, ...] = ()
        if chosen is not None:
            alongside = self.rules.analyses[chosen.analysis].also
            also = tuple(t.analysis for t in matched[1:] if t.analysis in alongside)
            unexpected = [t.analysis for t in matched[1:] if t.analysis not in also]
            if unexpected:
                warnings.insert(
                    0,
                    f"WARNING: series also matches {', '.join(unexpected)}; "
                    f"'{chosen.analysis}' chosen by priority order "
                    f"({' > '.join(self.rules.priority)})",
                )
        decision = RouteDecision(
            analysis=chosen.analysis if chosen else None,
            matched_rule=chosen.matched_rule if chosen else None,
            explanation=explanation_lines(traces, chosen, also, alongside, warnings),
            traces=traces,
            warnings=tuple(warnings),
            series_instance_uid=facts.series_instance_uid,
            series_description=facts.series_description,
            vendor_evidence=facts.vendor_evidence,
            also=also,
            explanation_withheld=explanation_lines(
                traces, chosen, also, alongside, warnings, withhold=True
            ),
        )
        # The caller logs the outcome in one line (RouteDecision.headline); the explanation
        # with header values is for `cmr-node route`, the log gets it with them withheld.
        logger.debug(
            "series %s: %s", decision.series_instance_uid, " | ".join(decision.explanation_withheld)
        )
        if warnings and warnings[0].startswith("WARNING"):
            logger.warning("series %s: %s", decision.series_instance_uid, warnings[0])
        return decision

    def _evaluate(self, rules: AnalysisRules, facts: SeriesFacts) -> RuleTrace:
        installed = rules.name in self.available
        if not rules.enabled:
            return RuleTrace(rules.name, Outcome.DISABLED, installed)
        require = tuple(c.evaluate(facts) for c in rules.require)
        identify = tuple(c.evaluate(facts) for c in rules.identify)
        reject = tuple(c.evaluate(facts) for c in rules.reject)
        if not all(r.passed for r in require):
            outcome = Outcome.REQUIREMENT_FAILED
        elif not any(r.passed for r in identify):
            outcome = Outcome.NOT_IDENTIFIED
        elif any(r.passed for r in reject):
            outcome = Outcome.REJECTED
        else:
            outcome = Outcome.MATCHED if installed else Outcome.NOT_INSTALLED
        return RuleTrace(rules.name, outcome, installed, require, identify, reject)


def route(
    rules: RuleSet, facts: SeriesFacts, available: Collection[str] | None = None
) -> RouteDecision:
    """The routing decision for one series (see :class:`Router`)."""
    return Router(rules, available).route(facts)
