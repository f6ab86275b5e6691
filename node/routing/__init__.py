"""Routing: which analysis, if any, a complete series gets, and why (or why not).

Each analysis declares, in an editable TOML file, three groups of conditions over DICOM
header facts:

``require``
    every condition must hold (e.g. the modality is MR);
``identify``
    at least one must hold: the signatures that identify the series type (a T1 map by its
    ImageType, its name, its sequence ...);
``reject``
    none may hold: exclusions, each with a reason (source images, T2 maps, post-contrast ...).

A ``[common]`` table holds ``require`` and ``reject`` conditions shared by every analysis.
Every condition carries a short ``id`` and a human-readable ``name``, and every evaluation is
kept in a :class:`RuleTrace`, so a decision can always be explained: which signature
identified the series, which exclusion stopped it, or why nothing matched.

The embedded rules are ``node/defaults/rules.toml``; a site may point the node at its own
file, either complete or with ``extends = "default"`` to disable or add conditions.

One module per job, each importing only those above it in this list:

:mod:`~node.routing.facts`
    what the router knows about a series, read from its headers (:class:`SeriesFacts`);
:mod:`~node.routing.conditions`
    the condition types and their evaluation (:class:`ConditionResult`);
:mod:`~node.routing.rules_file`
    the TOML rules file: loading, validation, :class:`RuleSet` (:func:`load_rules`);
:mod:`~node.routing.trace`
    traces and explanations, with header values or with them withheld
    (:class:`RouteDecision`, :func:`format_explanation`);
:mod:`~node.routing.router`
    the router that composes them (:func:`route`).

Example
-------
>>> rules = load_rules()
>>> facts = SeriesFacts.from_dict({"Modality": "MR",
...                                "SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1",
...                                "ImageType": "DERIVED\\\\PRIMARY\\\\T1 MAP\\\\MOCO\\\\T1"})
>>> route(rules, facts, {"t1map"}).analysis
't1map'
"""

from node.routing.conditions import Condition, ConditionGroup, ConditionResult, Scope
from node.routing.facts import DEFAULT_INSTANCE_KEYWORDS, CountOf, SeriesFacts
from node.routing.router import Router, route
from node.routing.rules_file import (
    DEFAULT_RULES_SOURCE,
    SCHEMA_VERSION,
    AnalysisRules,
    RulesError,
    RuleSet,
    load_rules,
)
from node.routing.trace import Outcome, RouteDecision, RuleTrace, format_explanation

__all__ = [
    "DEFAULT_INSTANCE_KEYWORDS",
    "DEFAULT_RULES_SOURCE",
    "SCHEMA_VERSION",
    "AnalysisRules",
    "Condition",
    "ConditionGroup",
    "ConditionResult",
    "CountOf",
    "Outcome",
    "RouteDecision",
    "Router",
    "RuleSet",
    "RuleTrace",
    "RulesError",
    "Scope",
    "SeriesFacts",
    "format_explanation",
    "load_rules",
    "route",
]
