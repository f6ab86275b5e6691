"""The rules file: TOML loading and validation, and the validated rules it becomes.

Each analysis declares three groups of conditions (``require``, ``identify``, ``reject``,
see :mod:`node.routing`); a ``[common]`` table holds ``require`` and ``reject`` conditions
shared by every analysis.  The embedded rules are ``node/defaults/rules.toml``; a site may
point the node at its own file, either complete or with ``extends = "default"`` to disable,
replace or add conditions.  Every error names the file, the table and the condition, and says
what is allowed instead (:class:`RulesError`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import logging
import re
import tomllib
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_dict, tag_for_keyword
from pydicom.dataset import Dataset

from node.routing.conditions import (
    CompoundCondition,
    Condition,
    ConditionGroup,
    CountCondition,
    DistinctCountCondition,
    EqualsCondition,
    PresenceCondition,
    RangeCondition,
    RegexCondition,
    Scope,
)
from node.routing.facts import DEFAULT_INSTANCE_KEYWORDS, CountOf, Scalar, SeriesFacts
from node.vendor import DERIVED_FACTS

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RULES_SOURCE",
    "EXTENDS_DEFAULT",
    "SCHEMA_VERSION",
    "AnalysisRules",
    "RuleSet",
    "RulesError",
    "load_rules",
]

SCHEMA_VERSION = 1
"""Version of the rules file format this module reads."""

DEFAULT_RULES_SOURCE = "node/defaults/rules.toml"
"""How the embedded default rules are named in messages."""

EXTENDS_DEFAULT = "default"
"""Value of ``extends`` that makes a site file a set of changes to the default rules."""

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_ANALYSIS_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class RulesError(ValueError):
    """A rules file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class AnalysisRules:
    """The conditions that decide whether a series goes to one analysis.

    ``require`` and ``reject`` include the ``[common]`` conditions that apply to it.
    ``also`` names analyses that run on the same series as well when this one is chosen and
    they match too (e.g. t1map -> molli: a series holding the scanner's maps and their source
    images gets the map analysed and the node's own fit compared with the map).
    """

    name: str
    description: str
    enabled: bool
    require: tuple[Condition, ...]
    identify: tuple[Condition, ...]
    reject: tuple[Condition, ...]
    also: tuple[str, ...] = ()

    def conditions(self) -> Iterator[tuple[ConditionGroup, Condition]]:
        """Every condition with its group, in evaluation order."""
        for group, conditions in (
            (ConditionGroup.REQUIRE, self.require),
            (ConditionGroup.IDENTIFY, self.identify),
            (ConditionGroup.REJECT, self.reject),
        ):
            for condition in conditions:
                yield group, condition


@dataclass(frozen=True)
class RuleSet:
    """Validated routing rules.

    Attributes
    ----------
    analyses
        Rules by analysis name.
    priority
        Every analysis name, in the order that decides between two matches.
    source
        Where the rules came from, for messages.
    """

    analyses: Mapping[str, AnalysisRules]
    priority: tuple[str, ...]
    source: str

    @property
    def instance_keywords(self) -> tuple[str, ...]:
        """Attributes to collect over all images: the defaults and every keyword used."""
        used = sorted(
            set().union(*(c.keywords() for a in self.analyses.values() for _, c in a.conditions()))
        )
        return tuple(dict.fromkeys((*DEFAULT_INSTANCE_KEYWORDS, *used)))

    def facts(self, datasets: Iterable[Dataset]) -> SeriesFacts:
        """:meth:`SeriesFacts.from_datasets` collecting what these rules use."""
        return SeriesFacts.from_datasets(datasets, self.instance_keywords)


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def load_rules(path: Path | str | None = None) -> RuleSet:
    """Read and validate routing rules.

    Parameters
    ----------
    path
        A site rules file; ``None`` for the embedded defaults. A file whose top level has
        ``extends = "default"`` changes the defaults: per analysis (and in ``[common]``) it
        may set ``enabled`` and ``description``, list condition ids to ``disable``, add
        conditions, or replace a condition by giving one with the same ``id`` in the same
        group; ``priority`` replaces the default order.

    Raises
    ------
    RulesError
        If the file cannot be read or parsed, or a rule is invalid (unknown condition type,
        field or DICOM keyword, bad regular expression, empty range, duplicate id ...).
    """
    default = _read_default()
    if path is None:
        return _build(default, DEFAULT_RULES_SOURCE)
    path = Path(path)
    document = _read_toml_file(path)
    extends = document.get("extends")
    if extends is None:
        return _build(document, str(path))
    if extends != EXTENDS_DEFAULT:
        raise RulesError(
            f'{path}: extends = {extends!r} is not supported; use "{EXTENDS_DEFAULT}" or '
            "leave it out for a complete rules file"
        )
    merged = _merge(default, document, str(path))
    return _build(merged, f"{path} (extending {DEFAULT_RULES_SOURCE})")


def _read_default() -> dict[str, Any]:
    resource = importlib.resources.files("node").joinpath("defaults", "rules.toml")
    try:
        return tomllib.loads(resource.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"{DEFAULT_RULES_SOURCE}: cannot read the embedded rules: {exc}") from exc


def _read_toml_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from exc


_TOP_KEYS = frozenset({"schema", "extends", "priority", "common", "analyses"})
_ANALYSIS_KEYS = frozenset(
    {"description", "enabled", "require", "identify", "reject", "disable", "also"}
)
_COMMON_KEYS = frozenset({"require", "reject", "disable"})
_GROUP_KEYS = tuple(g.value for g in ConditionGroup)


def _check_keys(table: Mapping[str, Any], allowed: Collection[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise RulesError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RulesError(f"{where}: must be a table, not {type(value).__name__}")
    return value


def _condition_list(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise RulesError(f"{where}: must be an array of tables ([[...]] entries)")
    return list(value)


def _id_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesError(f"{where}: must be a list of condition ids")
    return list(value)


def _merge(base: Mapping[str, Any], site: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The default rules document with a site's changes applied."""
    _check_keys(site, _TOP_KEYS, source)
    merged: dict[str, Any] = {k: v for k, v in base.items() if k != "extends"}
    if "schema" in site:
        merged["schema"] = site["schema"]
    if "priority" in site:
        merged["priority"] = site["priority"]
    if "common" in site:
        where = f"{source}: [common]"
        changes = _table(site["common"], where)
        _check_keys(changes, _COMMON_KEYS, where)
        merged["common"] = _merge_table(_table(base.get("common", {}), "common"), changes, where)
    analyses = dict(_table(base.get("analyses", {}), "analyses"))
    for name, changes in _table(site.get("analyses", {}), f"{source}: [analyses]").items():
        where = f"{source}: [analyses.{name}]"
        changes = _table(changes, where)
        _check_keys(changes, _ANALYSIS_KEYS, where)
        if name in analyses:
            analyses[name] = _merge_table(_table(analyses[name], name), changes, where)
        else:
            analyses[name] = dict(changes)
    merged["analyses"] = analyses
    return merged


def _merge_table(base: Mapping[str, Any], changes: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One analysis (or common) table with changes: scalars replaced, conditions by id."""
    merged: dict[str, Any] = dict(base)
    for key in ("description", "enabled", "also"):
        if key in changes:
            merged[key] = changes[key]
    existing: dict[str, str] = {}
    for group in _GROUP_KEYS:
        for entry in _condition_list(base.get(group, []), f"{where}.{group}"):
            if isinstance(entry.get("id"), str):
                existing[entry["id"]] = group
    for group in _GROUP_KEYS:
        if group not in changes:
            continue
        entries = list(_condition_list(base.get(group, []), f"{where}.{group}"))
        for entry in _condition_list(changes[group], f"{where}.{group}"):
            cid = entry.get("id")
            if cid in existing and existing[cid] != group:
                raise RulesError(
                    f"{where}.{group}: condition '{cid}' is a {existing[cid]} condition in "
                    f"the rules it extends; redefine it under {existing[cid]} or disable it"
                )
            index = next((i for i, e in enumerate(entries) if e.get("id") == cid), None)
            if index is None:
                entries.append(entry)
            else:
                entries[index] = entry
        merged[group] = entries
    if "disable" in changes:
        disabled = _id_list(merged.get("disable", []), f"{where}.disable")
        merged["disable"] = disabled + _id_list(changes["disable"], f"{where}.disable")
    return merged


def _build(document: Mapping[str, Any], source: str) -> RuleSet:
    """Validate a rules document and turn it into a :class:`RuleSet`."""
    _check_keys(document, _TOP_KEYS, source)
    schema = document.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise RulesError(
            f"{source}: schema {schema!r} is not supported (this node reads {SCHEMA_VERSION})"
        )
    if "extends" in document:
        raise RulesError(f"{source}: 'extends' is only allowed in a site file")
    common = _table(document.get("common", {}), f"{source}: [common]")
    _check_keys(common, _COMMON_KEYS, f"{source}: [common]")
    common_groups = {
        group: _parse_group(common.get(group, []), f"{source}: common.{group}")
        for group in (ConditionGroup.REQUIRE, ConditionGroup.REJECT)
    }
    common_disabled = set(_id_list(common.get("disable", []), f"{source}: common.disable"))
    common_ids = {c.id for conditions in common_groups.values() for c in conditions}
    unknown = sorted(common_disabled - common_ids)
    if unknown:
        raise RulesError(
            f"{source}: common.disable names unknown condition(s) {', '.join(unknown)}"
        )
    for group in common_groups:
        common_groups[group] = tuple(c for c in common_groups[group] if c.id not in common_disabled)

    analyses_table = _table(document.get("analyses", {}), f"{source}: [analyses]")
    if not analyses_table:
        raise RulesError(f"{source}: defines no analysis ([analyses.NAME] tables)")
    analyses: dict[str, AnalysisRules] = {}
    for name, table in analyses_table.items():
        analyses[name] = _build_analysis(name, table, common_groups, source)

    priority = document.get("priority", [])
    if not isinstance(priority, list) or not all(isinstance(p, str) for p in priority):
        raise RulesError(f"{source}: priority must be a list of analysis names")
    unknown = [p for p in priority if p not in analyses]
    if unknown:
        raise RulesError(
            f"{source}: priority names undefined analysis(es) {', '.join(unknown)}; "
            f"defined: {', '.join(sorted(analyses))}"
        )
    if len(set(priority)) != len(priority):
        raise RulesError(f"{source}: priority lists an analysis twice")
    order = tuple(priority) + tuple(sorted(set(analyses) - set(priority)))
    for rules in analyses.values():
        unknown = [a for a in rules.also if a not in analyses or a == rules.name]
        if unknown:
            raise RulesError(
                f"{source}: [analyses.{rules.name}] also names {', '.join(unknown)}, which is "
                "not another defined analysis"
            )
    logger.debug("loaded routing rules from %s: %s", source, ", ".join(order))
    return RuleSet(analyses=analyses, priority=order, source=source)


def _build_analysis(
    name: str,
    table: Any,
    common: Mapping[ConditionGroup, tuple[Condition, ...]],
    source: str,
) -> AnalysisRules:
    where = f"{source}: [analyses.{name}]"
    if not _ANALYSIS_NAME_PATTERN.match(name):
        raise RulesError(f"{where}: analysis names are lower-case identifiers like 't1map'")
    table = _table(table, where)
    _check_keys(table, _ANALYSIS_KEYS, where)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RulesError(f"{where}: enabled must be true or false")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise RulesError(f"{where}: description must be text")
    own = {
        group: _parse_group(table.get(group.value, []), f"{source}: analyses.{name}.{group}")
        for group in ConditionGroup
    }
    require = common[ConditionGroup.REQUIRE] + own[ConditionGroup.REQUIRE]
    identify = own[ConditionGroup.IDENTIFY]
    reject = common[ConditionGroup.REJECT] + own[ConditionGroup.REJECT]
    seen: set[str] = set()
    for condition in (*require, *identify, *reject):
        if condition.id in seen:
            raise RulesError(
                f"{where}: condition id '{condition.id}' is used twice (ids must be unique "
                "within an analysis, including the [common] conditions)"
            )
        seen.add(condition.id)
    disabled = set(_id_list(table.get("disable", []), f"{where}.disable"))
    unknown = sorted(disabled - seen)
    if unknown:
        raise RulesError(f"{where}: disable names unknown condition(s) {', '.join(unknown)}")
    require, identify, reject = (
        tuple(c for c in group if c.id not in disabled) for group in (require, identify, reject)
    )
    if enabled and not identify:
        raise RulesError(
            f"{where}: needs at least one enabled identify condition; without one no series "
            "could be recognised (set enabled = false to switch the analysis off)"
        )
    also = tuple(_id_list(table.get("also", []), f"{where}.also"))
    return AnalysisRules(name, description, enabled, require, identify, reject, also)


def _parse_group(entries: Any, where: str) -> tuple[Condition, ...]:
    parsed: list[Condition] = []
    for index, entry in enumerate(_condition_list(entries, where)):
        condition = _parse_condition(entry, f"{where}[{index}]", top_level=True)
        if condition is not None:
            parsed.append(condition)
    return tuple(parsed)


_COMMON_FIELDS = frozenset({"id", "name", "type", "negate", "enabled"})
_TYPE_FIELDS: Mapping[str, frozenset[str]] = {
    "regex": frozenset({"attribute", "pattern", "scope", "if_missing"}),
    "equals": frozenset({"attribute", "value", "scope", "if_missing"}),
    "range": frozenset({"attribute", "min", "max", "scope", "if_missing"}),
    "present": frozenset({"attribute"}),
    "absent": frozenset({"attribute"}),
    "count": frozenset({"of", "min", "max", "if_missing"}),
    "distinct_count": frozenset({"attribute", "min", "max", "if_missing"}),
    "all": frozenset({"conditions"}),
    "any": frozenset({"conditions"}),
}


def _parse_condition(
    entry: Mapping[str, Any], where: str, *, top_level: bool, parent_id: str = ""
) -> Condition | None:
    """One condition table as a :class:`Condition`; ``None`` if it has ``enabled = false``."""
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in _TYPE_FIELDS:
        raise RulesError(
            f"{where}: unknown condition type {kind!r}; "
            f"known types: {', '.join(sorted(_TYPE_FIELDS))}"
        )
    cid = entry.get("id")
    if (top_level or cid is not None) and (not isinstance(cid, str) or not _ID_PATTERN.match(cid)):
        raise RulesError(
            f"{where}: every condition needs an id of lower-case letters, digits, "
            f"'-', '_' or '.', got {cid!r}"
        )
    where = f"{where} (id '{cid}')" if cid else where
    _check_keys(entry, _COMMON_FIELDS | _TYPE_FIELDS[kind], where)
    name = entry.get("name")
    if top_level and (not isinstance(name, str) or not name.strip()):
        raise RulesError(f"{where}: every condition needs a human-readable name")
    if name is not None and not isinstance(name, str):
        raise RulesError(f"{where}: name must be text")
    enabled = _bool_field(entry, "enabled", True, where)
    if not enabled:
        if not top_level:
            raise RulesError(f"{where}: 'enabled' is only allowed on top-level conditions")
        return None
    common: dict[str, Any] = {
        "id": cid if isinstance(cid, str) else parent_id,
        "name": name or "",
        "negate": _bool_field(entry, "negate", False, where),
    }
    condition = _make_condition(kind, entry, where, common)
    if not common["name"]:
        condition = _with_name(condition, _auto_name(kind, entry))
    return condition


def _make_condition(
    kind: str, entry: Mapping[str, Any], where: str, common: dict[str, Any]
) -> Condition:
    if kind in ("all", "any"):
        parts = entry.get("conditions")
        if (
            not isinstance(parts, list)
            or not parts
            or not all(isinstance(p, Mapping) for p in parts)
        ):
            raise RulesError(f"{where}: '{kind}' needs a non-empty list 'conditions' of tables")
        children = []
        for index, part in enumerate(parts):
            child = _parse_condition(
                part,
                f"{where}.conditions[{index}]",
                top_level=False,
                parent_id=f"{common['id']}[{index}]",
            )
            if child is not None:
                children.append(child)
        return CompoundCondition(**common, require_all=kind == "all", conditions=tuple(children))
    if kind == "count":
        of = entry.get("of")
        try:
            count_of = CountOf(str(of))
        except ValueError as exc:
            raise RulesError(
                f"{where}: 'of' must be one of {', '.join(c.value for c in CountOf)}, not {of!r}"
            ) from exc
        low, high = _bounds(entry, where, integer=True)
        return CountCondition(
            **common,
            of=count_of,
            minimum=None if low is None else int(low),
            maximum=None if high is None else int(high),
            if_missing=_bool_field(entry, "if_missing", False, where),
        )
    attributes = _attributes(entry, where)
    if kind == "distinct_count":
        if len(attributes) != 1:
            raise RulesError(f"{where}: distinct_count takes exactly one attribute")
        low, high = _bounds(entry, where, integer=True)
        return DistinctCountCondition(
            **common,
            attribute=attributes[0],
            minimum=None if low is None else int(low),
            maximum=None if high is None else int(high),
            if_missing=_bool_field(entry, "if_missing", False, where),
        )
    if kind in ("present", "absent"):
        return PresenceCondition(**common, attributes=attributes, want_present=kind == "present")
    value_fields: dict[str, Any] = {
        "attributes": attributes,
        "scope": _scope(entry, where),
        "if_missing": _bool_field(entry, "if_missing", False, where),
    }
    if kind == "regex":
        return RegexCondition(**common, **value_fields, pattern=_pattern(entry, where))
    if kind == "equals":
        return EqualsCondition(**common, **value_fields, expected=_expected(entry, where))
    low, high = _bounds(entry, where, integer=False)
    return RangeCondition(**common, **value_fields, minimum=low, maximum=high)


def _with_name(condition: Condition, name: str) -> Condition:
    return dataclasses.replace(condition, name=name)


def _auto_name(kind: str, entry: Mapping[str, Any]) -> str:
    """A readable description of an unnamed part of a compound condition."""
    attribute = entry.get("attribute", "")
    target = "/".join(attribute) if isinstance(attribute, list) else str(attribute)
    negation = "not " if entry.get("negate") else ""
    if kind == "regex":
        return f"{target} {negation}matching /{entry.get('pattern')}/"
    if kind == "equals":
        return f"{target} {negation}equal to {entry.get('value')!r}"
    if kind == "range":
        return f"{target} {negation}in [{entry.get('min', '-inf')}, {entry.get('max', 'inf')}]"
    if kind in ("present", "absent"):
        return f"{target} {kind}"
    if kind == "count":
        return f"{entry.get('of')} {negation}in [{entry.get('min', 0)}, {entry.get('max', 'inf')}]"
    if kind == "distinct_count":
        return f"distinct {target} {negation}in [{entry.get('min', 0)}, {entry.get('max', 'inf')}]"
    return f"{negation}{kind} of {len(entry.get('conditions', []))} conditions"


def _bool_field(entry: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise RulesError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _attributes(entry: Mapping[str, Any], where: str) -> tuple[str, ...]:
    raw = entry.get("attribute")
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RulesError(f"{where}: 'attribute' must be a DICOM keyword or a list of keywords")
    for keyword in names:
        if keyword in DERIVED_FACTS:
            continue
        if tag_for_keyword(keyword) is None:
            close = difflib.get_close_matches(keyword, keyword_dict.keys(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise RulesError(
                f"{where}: unknown DICOM keyword '{keyword}' (not in pydicom's data "
                f"dictionary){hint}"
            )
    return tuple(names)


def _scope(entry: Mapping[str, Any], where: str) -> Scope:
    value = entry.get("scope", Scope.ANY.value)
    try:
        return Scope(value)
    except ValueError as exc:
        raise RulesError(f"{where}: scope must be 'any' or 'all', not {value!r}") from exc


def _pattern(entry: Mapping[str, Any], where: str) -> re.Pattern[str]:
    pattern = entry.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise RulesError(f"{where}: regex needs a non-empty 'pattern'")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise RulesError(f"{where}: invalid regular expression {pattern!r}: {exc}") from exc


def _expected(entry: Mapping[str, Any], where: str) -> tuple[Scalar, ...]:
    value = entry.get("value")
    values = value if isinstance(value, list) else [value]
    if not values or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in values
    ):
        raise RulesError(f"{where}: equals needs a 'value': text, a number or a list of them")
    return tuple(values)


def _bounds(
    entry: Mapping[str, Any], where: str, *, integer: bool
) -> tuple[float | None, float | None]:
    bounds: list[float | None] = []
    for key in ("min", "max"):
        value = entry.get(key)
        if value is None:
            bounds.append(None)
        elif isinstance(value, int) and not isinstance(value, bool):
            bounds.append(float(value))
        elif isinstance(value, float) and not integer:
            bounds.append(value)
        else:
            kind = "an integer" if integer else "a number"
            raise RulesError(f"{where}: {key} must be {kind}, not {value!r}")
    low, high = bounds
    if low is None and high is None:
        raise RulesError(f"{where}: give 'min', 'max' or both")
    if low is not None and high is not None and low > high:
        raise RulesError(f"{where}: empty range, min {low:g} is greater than max {high:g}")
    return low, high
