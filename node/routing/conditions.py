"""Conditions: the tests a routing rule makes on a series' facts, and their results.

A condition reads :class:`~node.routing.facts.SeriesFacts` and returns a
:class:`ConditionResult` that keeps what it looked at twice: with the header values (for
``cmr-node route``) and with every header value withheld (for logs and the catalog, where free
text such as SeriesDescription or ImageComments must not go; attribute names, counts and the
condition's id and name stay).
"""

from __future__ import annotations

import abc
import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from node.catalog.audit import WITHHELD
from node.routing.facts import (
    CountOf,
    Scalar,
    SeriesFacts,
    Value,
    scalar_text,
    to_float,
    value_text,
)

__all__ = [
    "CompoundCondition",
    "Condition",
    "ConditionGroup",
    "ConditionResult",
    "CountCondition",
    "DistinctCountCondition",
    "EqualsCondition",
    "PresenceCondition",
    "RangeCondition",
    "RegexCondition",
    "Scope",
]

_SHOWN_VALUES = 8  # at most this many distinct values are shown in an explanation


class ConditionGroup(enum.StrEnum):
    """The role of a condition within an analysis' rules."""

    REQUIRE = "require"
    IDENTIFY = "identify"
    REJECT = "reject"


class Scope(enum.StrEnum):
    """Whether a value condition must hold for any or for all per-image values."""

    ANY = "any"
    ALL = "all"


@dataclass(frozen=True)
class ConditionResult:
    """The evaluation of one condition on one series.

    Attributes
    ----------
    condition_id, name
        The condition's identifier and human-readable reason.
    passed
        Whether the condition holds (for a ``reject`` condition: whether it excludes).
    observed
        The values the decision was based on, as text.
    missing
        The attribute or count needed was unknown; ``passed`` is then the condition's
        ``if_missing`` value.
    children
        Results of the parts of an ``all``/``any`` condition.
    withheld
        ``observed`` with every header value shown as ``'…'`` (attribute names and counts
        kept): what may go into logs and the catalog.  ``None``: nothing was rendered, so
        the whole observation is withheld.
    """

    condition_id: str
    name: str
    passed: bool
    observed: str
    missing: bool = False
    children: tuple[ConditionResult, ...] = ()
    withheld: str | None = None

    def shown(self, withhold: bool = False) -> str:
        """What the condition looked at: :attr:`observed`, or :attr:`withheld` if ``withhold``."""
        if not withhold:
            return self.observed
        return WITHHELD if self.withheld is None else self.withheld

    def describe(self, withhold: bool = False) -> str:
        """``id`` (name) [observed values]; with ``withhold``, the values are withheld.

        Withheld, the id is not quoted: the log filter (:func:`node.catalog.audit.withhold_values`)
        withholds every quoted text, and the rule's id must stay readable in the log.
        """
        name = self.condition_id if withhold else repr(self.condition_id)
        return f"{name} ({self.name}) [{self.shown(withhold)}]"


@dataclass(frozen=True, kw_only=True)
class Condition(abc.ABC):
    """One test on a series' facts.

    Attributes
    ----------
    id
        Short identifier, unique within an analysis; used in explanations and overrides.
    name
        Human-readable statement of what the condition checks, or why it excludes.
    negate
        Invert the test (the attribute must *not* match). A missing value is not negated:
        it gives ``if_missing``.
    """

    id: str
    name: str
    negate: bool = False

    @abc.abstractmethod
    def evaluate(self, facts: SeriesFacts) -> ConditionResult:
        """Whether this condition holds for ``facts``, with the values it looked at."""

    @abc.abstractmethod
    def keywords(self) -> frozenset[str]:
        """DICOM keywords this condition reads."""

    def _result(
        self,
        raw: bool,
        observed: str,
        *,
        withheld: str,
        missing: bool = False,
        if_missing: bool = False,
        children: tuple[ConditionResult, ...] = (),
    ) -> ConditionResult:
        passed = if_missing if missing else raw != self.negate
        return ConditionResult(self.id, self.name, passed, observed, missing, children, withheld)


@dataclass(frozen=True, kw_only=True)
class _ValueCondition(Condition):
    """A test on the values of one or more attributes (passes if any attribute passes)."""

    attributes: tuple[str, ...]
    scope: Scope = Scope.ANY
    if_missing: bool = False

    @abc.abstractmethod
    def test(self, value: Value) -> bool:
        """Whether one value satisfies the condition (before negation)."""

    def keywords(self) -> frozenset[str]:
        return frozenset(self.attributes)

    def evaluate(self, facts: SeriesFacts) -> ConditionResult:
        outcomes: list[bool] = []
        for keyword in self.attributes:
            values = facts.values(keyword)
            if values:
                tests = [self.test(v) for v in values]
                outcomes.append(any(tests) if self.scope is Scope.ANY else all(tests))
        return self._result(
            any(outcomes),
            _show_attributes(facts, self.attributes),
            withheld=_show_attributes(facts, self.attributes, withhold=True),
            missing=not outcomes,
            if_missing=self.if_missing,
        )


def _show_attributes(facts: SeriesFacts, keywords: Sequence[str], withhold: bool = False) -> str:
    """``Keyword=value`` (or ``Keyword absent``) for each keyword, comma-separated."""
    return ", ".join(
        f"{k}={_show_values(values, withhold)}" if (values := facts.values(k)) else f"{k} absent"
        for k in keywords
    )


def _show_values(values: Sequence[Value], withhold: bool = False) -> str:
    """Values quoted (at most ``_SHOWN_VALUES``), each one ``'…'`` if ``withhold``."""
    shown = [WITHHELD if withhold else f"'{value_text(v)}'" for v in values[:_SHOWN_VALUES]]
    if len(values) > _SHOWN_VALUES:
        shown.append(f"... {len(values) - _SHOWN_VALUES} more")
    return shown[0] if len(shown) == 1 else "{" + ", ".join(shown) + "}"


def _candidates(value: Value) -> list[str]:
    """The texts a value is matched against: the joined value and each element."""
    if isinstance(value, tuple):
        return [value_text(value), *(scalar_text(v) for v in value)]
    return [value_text(value)]


@dataclass(frozen=True, kw_only=True)
class RegexCondition(_ValueCondition):
    """An attribute matches a regular expression (case-insensitive ``re.search``).

    A multi-valued attribute matches if its backslash-joined value or any element does.
    """

    pattern: re.Pattern[str]

    def test(self, value: Value) -> bool:
        return any(self.pattern.search(text) for text in _candidates(value))


@dataclass(frozen=True, kw_only=True)
class EqualsCondition(_ValueCondition):
    """An attribute equals one of the given values (text case-insensitively, numbers exactly)."""

    expected: tuple[Scalar, ...]

    def test(self, value: Value) -> bool:
        for text in _candidates(value):
            for expected in self.expected:
                if isinstance(expected, str):
                    if text.strip().casefold() == expected.strip().casefold():
                        return True
                else:
                    number = to_float(text)
                    if number is not None and math.isclose(number, float(expected)):
                        return True
        return False


@dataclass(frozen=True, kw_only=True)
class RangeCondition(_ValueCondition):
    """A numeric attribute lies within ``[minimum, maximum]`` (either bound optional)."""

    minimum: float | None = None
    maximum: float | None = None

    def test(self, value: Value) -> bool:
        items = value if isinstance(value, tuple) else (value,)
        numbers = (to_float(v) for v in items)
        return any(n is not None and _within(n, self.minimum, self.maximum) for n in numbers)


def _within(number: float, minimum: float | None, maximum: float | None) -> bool:
    return (minimum is None or number >= minimum) and (maximum is None or number <= maximum)


@dataclass(frozen=True, kw_only=True)
class PresenceCondition(Condition):
    """At least one of the attributes is present and not empty (``absent``: none is)."""

    attributes: tuple[str, ...]
    want_present: bool = True

    def keywords(self) -> frozenset[str]:
        return frozenset(self.attributes)

    def evaluate(self, facts: SeriesFacts) -> ConditionResult:
        present = [k for k in self.attributes if facts.values(k)]
        return self._result(
            bool(present) == self.want_present,
            _show_attributes(facts, self.attributes),
            withheld=_show_attributes(facts, self.attributes, withhold=True),
        )


@dataclass(frozen=True, kw_only=True)
class CountCondition(Condition):
    """A series-level count (instances, frames, slices, images per slice) lies in a range."""

    of: CountOf
    minimum: int | None = None
    maximum: int | None = None
    if_missing: bool = False

    def keywords(self) -> frozenset[str]:
        return frozenset()

    def evaluate(self, facts: SeriesFacts) -> ConditionResult:
        value = facts.count(self.of)
        if value is None:
            unknown = f"{self.of.value} unknown"
            return self._result(
                False, unknown, withheld=unknown, missing=True, if_missing=self.if_missing
            )
        shown = f"{self.of.value}={value}"  # a count the node made, not a header value
        return self._result(_within(value, self.minimum, self.maximum), shown, withheld=shown)


@dataclass(frozen=True, kw_only=True)
class DistinctCountCondition(Condition):
    """The number of distinct values of an attribute over the images lies in a range."""

    attribute: str
    minimum: int | None = None
    maximum: int | None = None
    if_missing: bool = False

    def keywords(self) -> frozenset[str]:
        return frozenset({self.attribute})

    def evaluate(self, facts: SeriesFacts) -> ConditionResult:
        count = facts.distinct_count(self.attribute)
        if count is None:
            unknown = f"distinct {self.attribute} not collected"
            return self._result(
                False,
                unknown,
                withheld=unknown,
                missing=True,
                if_missing=self.if_missing,
            )
        values = facts.values(self.attribute) if count else ()
        shown = withheld = f"{count} distinct {self.attribute}"
        if values:
            shown += f" {_show_values(values)}"
            withheld += f" {_show_values(values, withhold=True)}"
        return self._result(_within(count, self.minimum, self.maximum), shown, withheld=withheld)


@dataclass(frozen=True, kw_only=True)
class CompoundCondition(Condition):
    """All (``all``) or at least one (``any``) of several conditions hold."""

    require_all: bool
    conditions: tuple[Condition, ...]

    def keywords(self) -> frozenset[str]:
        return frozenset().union(*(c.keywords() for c in self.conditions))

    def evaluate(self, facts: SeriesFacts) -> ConditionResult:
        children = tuple(c.evaluate(facts) for c in self.conditions)
        raw = (all if self.require_all else any)(child.passed for child in children)
        # Show the parts that decided: the failing ones of a failed "all", the holding ones
        # of a holding "any", otherwise every part.
        deciding = [child for child in children if self.require_all == raw or child.passed == raw]
        joiner = " and " if self.require_all else " or "
        return self._result(
            raw,
            joiner.join(_show_part(child) for child in deciding),
            withheld=joiner.join(_show_part(child, withhold=True) for child in deciding),
            children=children,
        )


def _show_part(child: ConditionResult, withhold: bool = False) -> str:
    """One part of a compound condition: its name, whether it holds, what it looked at."""
    return f"{child.name}: {'yes' if child.passed else 'no'} ({child.shown(withhold)})"
