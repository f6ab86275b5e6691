"""Traces and explanations: how the rules judged a series, in words.

A :class:`RuleTrace` keeps every condition result of one analysis' rules and the verdict; a
:class:`RouteDecision` keeps the chosen analysis and every trace.  Explanations come in two
renderings: with the header values the conditions looked at (:attr:`RouteDecision.explanation`,
:func:`format_explanation`, for ``cmr-node route``), and with those values withheld
(:attr:`RouteDecision.explanation_withheld`, for logs and the catalog), which still names
every analysis, condition and attribute.  :meth:`RouteDecision.headline` and
:meth:`RuleTrace.summary` name conditions only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from node.routing.conditions import ConditionGroup, ConditionResult

__all__ = [
    "Outcome",
    "RouteDecision",
    "RuleTrace",
    "explanation_lines",
    "format_explanation",
]


class Outcome(enum.StrEnum):
    """The result of evaluating one analysis' rules on one series."""

    MATCHED = "matched"
    NOT_INSTALLED = "matched, not installed"
    REQUIREMENT_FAILED = "requirement not met"
    NOT_IDENTIFIED = "not identified"
    REJECTED = "rejected"
    DISABLED = "disabled"


@dataclass(frozen=True)
class RuleTrace:
    """How one analysis' rules judged one series: every condition and the outcome.

    Attributes
    ----------
    analysis
        The analysis name.
    outcome
        The verdict (see :class:`Outcome`).
    installed
        Whether the analysis plugin is available on this node.
    require, identify, reject
        Results of every condition of each group, in rule order (empty when disabled).
    """

    analysis: str
    outcome: Outcome
    installed: bool
    require: tuple[ConditionResult, ...] = ()
    identify: tuple[ConditionResult, ...] = ()
    reject: tuple[ConditionResult, ...] = ()

    @property
    def failed_requirements(self) -> tuple[ConditionResult, ...]:
        """The ``require`` conditions that do not hold."""
        return tuple(r for r in self.require if not r.passed)

    @property
    def identified_by(self) -> tuple[ConditionResult, ...]:
        """The ``identify`` conditions that hold."""
        return tuple(r for r in self.identify if r.passed)

    @property
    def rejected_by(self) -> tuple[ConditionResult, ...]:
        """The ``reject`` conditions that hold (each excludes the series)."""
        return tuple(r for r in self.reject if r.passed)

    @property
    def matched_rule(self) -> str | None:
        """``analysis/condition-id`` of the first identifying signature, if any held."""
        identified = self.identified_by
        return f"{self.analysis}/{identified[0].condition_id}" if identified else None

    def reasons(self, withhold: bool = False) -> list[str]:
        """Sentences that explain the outcome, naming the deciding conditions.

        Parameters
        ----------
        withhold
            Show every header value a condition looked at as ``'…'`` (for logs and the
            catalog); condition ids, names, attribute names and counts stay.
        """
        a = self.analysis
        if self.outcome is Outcome.DISABLED:
            return [f"{a}: disabled in the routing rules"]
        identified = self.identified_by
        lines: list[str] = []
        if self.outcome in (Outcome.MATCHED, Outcome.NOT_INSTALLED):
            lines.append(f"{a}: identified by {identified[0].describe(withhold)}")
            if len(identified) > 1:
                others = ", ".join(r.condition_id if withhold else repr(r.condition_id)
                                   for r in identified[1:])
                lines.append(f"{a}: also identified by {others}")
            lines.append(
                f"{a}: all {len(self.require)} requirements met; none of "
                f"{len(self.reject)} exclusions applies"
            )
            if self.outcome is Outcome.NOT_INSTALLED:
                lines.append(
                    f"{a}: series matches rule '{self.matched_rule}' but analysis '{a}' is "
                    "not installed"
                )
            return lines
        if self.outcome is Outcome.REJECTED:
            lines.append(f"{a}: identified by {identified[0].describe(withhold)}, but")
            lines.extend(f"{a}: excluded by {r.describe(withhold)}" for r in self.rejected_by)
            return lines
        lines.extend(
            f"{a}: requirement {r.describe(withhold)} not met" for r in self.failed_requirements
        )
        if identified:
            lines.append(f"{a}: identified by {identified[0].describe(withhold)}")
        else:
            ids = ", ".join(r.condition_id for r in self.identify)
            lines.append(
                f"{a}: not identified: none of its {len(self.identify)} identifying "
                f"signatures matched ({ids})"
            )
        lines.extend(
            f"{a}: would also be excluded by {r.describe(withhold)}" for r in self.rejected_by
        )
        return lines

    def summary(self) -> str:
        """One line: the outcome and the ids of the conditions that decided it."""
        a = self.analysis
        if self.outcome is Outcome.DISABLED:
            return f"{a}: disabled in the routing rules"
        if self.outcome in (Outcome.MATCHED, Outcome.NOT_INSTALLED):
            return f"{a}: {self.outcome.value} by '{self.matched_rule}'"
        if self.outcome is Outcome.REJECTED:
            ids = ", ".join(r.condition_id for r in self.rejected_by)
            return f"{a}: excluded by {ids}"
        if self.outcome is Outcome.REQUIREMENT_FAILED:
            ids = ", ".join(r.condition_id for r in self.failed_requirements)
            return f"{a}: requirement not met: {ids}"
        line = f"{a}: not identified"
        if self.rejected_by:
            ids = ", ".join(r.condition_id for r in self.rejected_by)
            line += f" (would also be excluded by {ids})"
        return line

    def explain(self) -> str:
        """Every condition of this analysis with its values and result, as text lines."""
        header = f"{self.analysis}: {self.outcome.value}"
        if not self.installed:
            header += " (analysis not installed)"
        lines = [header]
        labels = {
            ConditionGroup.REQUIRE: ("ok", "FAIL"),
            ConditionGroup.IDENTIFY: ("YES", "no"),
            ConditionGroup.REJECT: ("HIT", "no"),
        }
        for group, results in (
            (ConditionGroup.REQUIRE, self.require),
            (ConditionGroup.IDENTIFY, self.identify),
            (ConditionGroup.REJECT, self.reject),
        ):
            yes, no = labels[group]
            for result in results:
                lines.extend(_result_lines(result, group.value, yes, no, depth=1))
        return "\n".join(lines)


def _result_lines(result: ConditionResult, group: str, yes: str, no: str, depth: int) -> list[str]:
    indent = "  " * depth
    mark = yes if result.passed else no
    unknown = " (unknown)" if result.missing else ""
    line = f"{indent}{group:<8} {mark:<4} {result.condition_id}: {result.name}{unknown}"
    if not result.children:
        line += f" [{result.observed}]"
    lines = [line]
    for child in result.children:
        lines.extend(_result_lines(child, "", "yes", "no", depth=depth + 1))
    return lines


@dataclass(frozen=True)
class RouteDecision:
    """Which analysis a series gets, and why.

    Attributes
    ----------
    analysis
        The analysis to run, or ``None`` when no installed analysis matched.
    matched_rule
        ``analysis/condition-id`` of the identifying signature that decided, or ``None``.
    explanation
        Sentences naming the deciding conditions: why the chosen analysis matched, any
        ambiguity, and why each other analysis did not, with the header values they looked at.
    traces
        Every analysis' full evaluation, in priority order.
    warnings
        Ambiguities (two analyses matched) and matches to analyses not installed.
    series_instance_uid, series_description
        The series, for messages.
    vendor_evidence
        The vendor facts the decision used and what they were read from.
    also
        Further analyses that run on the series besides ``analysis`` (the chosen analysis'
        ``also`` list, where they match as well).
    explanation_withheld
        ``explanation`` with every header value withheld (``'…'``): the same sentences,
        naming the same conditions and attributes, for logs and the catalog, where free text
        such as SeriesDescription or ImageComments must not go.
    """

    analysis: str | None
    matched_rule: str | None
    explanation: tuple[str, ...]
    traces: tuple[RuleTrace, ...] = ()
    warnings: tuple[str, ...] = ()
    series_instance_uid: str | None = None
    series_description: str | None = None
    vendor_evidence: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    explanation_withheld: tuple[str, ...] = ()

    @property
    def analyses(self) -> tuple[str, ...]:
        """Every analysis the series gets: the chosen one, then ``also``."""
        return (self.analysis, *self.also) if self.analysis else ()

    def trace(self, analysis: str) -> RuleTrace:
        """The evaluation of ``analysis``' rules.

        Raises
        ------
        KeyError
            If the rules define no such analysis.
        """
        for trace in self.traces:
            if trace.analysis == analysis:
                return trace
        raise KeyError(f"no rules for analysis {analysis!r}")

    def headline(self) -> str:
        """The outcome in a few words, for one log line (condition ids, never header text)."""
        if self.analysis is not None:
            return f"{' + '.join(self.analyses)} by {self.matched_rule}"
        by_outcome: dict[Outcome, list[RuleTrace]] = {}
        for trace in self.traces:
            by_outcome.setdefault(trace.outcome, []).append(trace)
        if Outcome.NOT_INSTALLED in by_outcome:
            names = ", ".join(t.analysis for t in by_outcome[Outcome.NOT_INSTALLED])
            return f"matches {names}, not installed"
        if Outcome.REJECTED in by_outcome:
            ids = dict.fromkeys(
                r.condition_id for t in by_outcome[Outcome.REJECTED] for r in t.rejected_by
            )
            return "excluded by " + ", ".join(list(ids)[:3])
        if Outcome.REQUIREMENT_FAILED in by_outcome:
            ids = dict.fromkeys(
                r.condition_id
                for t in by_outcome[Outcome.REQUIREMENT_FAILED]
                for r in t.failed_requirements
            )
            return "requirement not met: " + ", ".join(list(ids)[:3])
        return "not identified by any analysis' rules"

    def explain(self, verbose: bool = True) -> str:
        """The decision as text: a headline, the explanation and, if verbose, every trace."""
        return format_explanation(self, verbose=verbose)


def explanation_lines(
    traces: Sequence[RuleTrace],
    chosen: RuleTrace | None,
    also: Sequence[str],
    alongside: Sequence[str],
    warnings: Sequence[str],
    withhold: bool = False,
) -> tuple[str, ...]:
    """The sentences of a routing decision.

    Parameters
    ----------
    traces
        Every analysis' evaluation, in priority order.
    chosen
        The trace of the chosen analysis, ``None`` when none matched.
    also
        The further analyses the series gets besides the chosen one.
    alongside
        The analyses the rules run alongside the chosen one (its ``also`` list).
    warnings
        Ambiguities and matches to analyses not installed.
    withhold
        Show header values as ``'…'`` (see :meth:`RuleTrace.reasons`).
    """
    lines: list[str] = []
    if chosen is not None:
        lines.extend(chosen.reasons(withhold))
        if also:
            lines.append(
                f"{chosen.analysis}: the series also gets {', '.join(also)} (it matches "
                f"too, and the rules run {', '.join(alongside)} alongside {chosen.analysis})"
            )
    else:
        lines.append("no analysis applies to this series")
    lines.extend(warnings)
    for trace in traces:
        if trace is chosen:
            continue
        if chosen is not None:
            lines.append(trace.summary())
        elif trace.outcome is Outcome.NOT_INSTALLED:
            lines.extend(line for line in trace.reasons(withhold) if "not installed" not in line)
        else:
            lines.extend(trace.reasons(withhold))
    return tuple(lines)


def format_explanation(
    decisions: RouteDecision | Iterable[RouteDecision], verbose: bool = True
) -> str:
    """Routing decisions as text for a dry run (``cmr-node route PATH``).

    Parameters
    ----------
    decisions
        One decision or several (one per series).
    verbose
        Also list every condition of every analysis with its values and result.
    """
    items = [decisions] if isinstance(decisions, RouteDecision) else list(decisions)
    blocks: list[str] = []
    for decision in items:
        label = decision.series_instance_uid or "(unknown UID)"
        if decision.series_description:
            label += f" '{decision.series_description}'"
        target = (
            f"{decision.analysis} (rule {decision.matched_rule})"
            if decision.analysis
            else "no analysis"
        )
        if decision.also:
            target += f" + {', '.join(decision.also)}"
        lines = [f"series {label} -> {target}"]
        lines.extend(f"  {line}" for line in decision.explanation)
        if decision.vendor_evidence:
            lines.append("  vendor facts:")
            lines.extend(f"    {line}" for line in decision.vendor_evidence)
        if verbose:
            for trace in decision.traces:
                lines.append("")
                lines.extend(f"  {line}" for line in trace.explain().splitlines())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
