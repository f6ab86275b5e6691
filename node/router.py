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

Example
-------
>>> rules = load_rules()
>>> facts = SeriesFacts.from_dict({"Modality": "MR",
...                                "SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1",
...                                "ImageType": "DERIVED\\\\PRIMARY\\\\T1 MAP\\\\MOCO\\\\T1"})
>>> route(rules, facts, {"t1map"}).analysis
't1map'
"""

from __future__ import annotations

import abc
import dataclasses
import difflib
import enum
import importlib.resources
import logging
import math
import re
import tomllib
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

from pydicom.datadict import keyword_dict, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from node.vendor import DERIVED_FACTS, describe_headers, describe_series

logger = logging.getLogger(__name__)

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

SCHEMA_VERSION = 1
"""Version of the rules file format this module reads."""

DEFAULT_RULES_SOURCE = "node/defaults/rules.toml"
"""How the embedded default rules are named in messages."""

EXTENDS_DEFAULT = "default"
"""Value of ``extends`` that makes a site file a set of changes to the default rules."""

DEFAULT_INSTANCE_KEYWORDS: tuple[str, ...] = (
    "ImageType",
    "InversionTime",
    "TriggerTime",
    "EchoTime",
    "SequenceName",
)
"""Attributes whose distinct values are always collected over all images of a series."""

FRAME_ALIASES: Mapping[str, tuple[str, ...]] = {
    "ImageType": ("FrameType",),
    "InversionTime": ("InversionTimes",),
    "TriggerTime": ("NominalCardiacTriggerDelayTime",),
    "EchoTime": ("EffectiveEchoTime",),
    "SequenceName": ("PulseSequenceName",),
}
"""Where an enhanced (multi-frame) MR object keeps the per-frame equivalent of a keyword."""

_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"})
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_ANALYSIS_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_POSITION_DECIMALS = 1  # mm: images closer than this along the normal share a slice position
_FLOAT_DECIMALS = 3  # distinct numeric values are compared after rounding to this
_SHOWN_VALUES = 8  # at most this many distinct values are shown in an explanation

Scalar: TypeAlias = str | int | float
Value: TypeAlias = Scalar | tuple[Scalar, ...]


class RulesError(ValueError):
    """A rules file cannot be used; the message says where and why."""


class ConditionGroup(enum.StrEnum):
    """The role of a condition within an analysis' rules."""

    REQUIRE = "require"
    IDENTIFY = "identify"
    REJECT = "reject"


class CountOf(enum.StrEnum):
    """What a ``count`` condition counts."""

    INSTANCES = "instances"
    FRAMES = "frames"
    SLICES = "slices"
    IMAGES_PER_SLICE = "images_per_slice"


class Scope(enum.StrEnum):
    """Whether a value condition must hold for any or for all per-image values."""

    ANY = "any"
    ALL = "all"


class Outcome(enum.StrEnum):
    """The result of evaluating one analysis' rules on one series."""

    MATCHED = "matched"
    NOT_INSTALLED = "matched, not installed"
    REQUIREMENT_FAILED = "requirement not met"
    NOT_IDENTIFIED = "not identified"
    REJECTED = "rejected"
    DISABLED = "disabled"


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def _normalise(raw: Any) -> Value | None:
    """A header value as str, int, float or a tuple of those; ``None`` when empty or binary."""
    if raw is None or isinstance(raw, bytes | bytearray | Dataset | DicomSequence):
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if "\\" in text:
            return _normalise(text.split("\\"))
        return text or None
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int):
        return int(raw)
    if isinstance(raw, float):
        return float(raw) if math.isfinite(raw) else None
    if isinstance(raw, list | tuple | MultiValue):
        items: list[Scalar] = []
        for item in raw:
            value = _normalise(item)
            if isinstance(value, tuple):
                items.extend(value)
            elif value is not None:
                items.append(value)
        if not items:
            return None
        return items[0] if len(items) == 1 else tuple(items)
    return _normalise(str(raw))


def _rounded(value: Value) -> Value:
    """``value`` with floats rounded so that distinct values compare sensibly."""
    if isinstance(value, float):
        return round(value, _FLOAT_DECIMALS)
    if isinstance(value, tuple):
        return tuple(round(v, _FLOAT_DECIMALS) if isinstance(v, float) else v for v in value)
    return value


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _text(value: Value) -> str:
    """``value`` as DICOM would show it: multiple values joined by backslashes."""
    if isinstance(value, tuple):
        return "\\".join(_scalar_text(v) for v in value)
    return _scalar_text(value)


def _to_float(value: Scalar) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _jsonable(value: Value) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _sort_key(value: Value) -> tuple[int, float, str]:
    number = _to_float(value) if not isinstance(value, tuple) else None
    return (0, number, "") if number is not None else (1, 0.0, _text(value))


# --------------------------------------------------------------------------------------------
# Series facts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesFacts:
    """What the router knows about one series.

    Attributes
    ----------
    header
        Header attributes by DICOM keyword, taken from one representative instance (the one
        with the lowest InstanceNumber). Multi-valued attributes are tuples.
    instance_count
        Number of instances (files) in the series.
    frame_count
        Number of 2-D images (frames of multi-frame instances count one each).
    distinct
        For the attributes collected over every image: the set of distinct values.
        An attribute absent here is known only from ``header``.
    slice_count
        Number of distinct slice positions, ``None`` when the geometry is unknown.
    max_images_per_slice
        Largest number of images sharing one slice position (a map has one, MOLLI source
        images 7-11, a cine 20-30), ``None`` when the geometry is unknown.
    vendor_evidence
        The header facts :mod:`node.vendor` derived its facts from (vendor, field strength,
        contrast, sequence family, gating, inversion times, image kinds), for explanations.

    Header and ``distinct`` also hold the derived facts of :data:`node.vendor.DERIVED_FACTS`
    (``cmr.vendor``, ``cmr.sequence_family``, ``cmr.image_kind`` ...), which rules test like
    DICOM keywords.
    """

    header: Mapping[str, Value]
    instance_count: int = 1
    frame_count: int = 1
    distinct: Mapping[str, frozenset[Value]] = field(default_factory=dict)
    slice_count: int | None = None
    max_images_per_slice: int | None = None
    vendor_evidence: tuple[str, ...] = ()

    _SPECIAL_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"instance_count", "frame_count", "distinct", "slice_count", "max_images_per_slice",
         "vendor_evidence"}
    )

    @property
    def series_instance_uid(self) -> str | None:
        """SeriesInstanceUID of the series, if known."""
        value = self.header.get("SeriesInstanceUID")
        return _text(value) if value is not None else None

    @property
    def series_description(self) -> str | None:
        """SeriesDescription of the series, if known."""
        value = self.header.get("SeriesDescription")
        return _text(value) if value is not None else None

    def get(self, keyword: str) -> Value | None:
        """The representative value of ``keyword``, or ``None`` if absent or empty."""
        value = self.header.get(keyword)
        if value is None and self.distinct.get(keyword):
            return min(self.distinct[keyword], key=_sort_key)
        return value

    def values(self, keyword: str) -> tuple[Value, ...]:
        """Every known value of ``keyword``: per-image distinct values if collected."""
        collected = self.distinct.get(keyword)
        if collected:
            return tuple(sorted(collected, key=_sort_key))
        value = self.header.get(keyword)
        return () if value is None else (value,)

    def distinct_count(self, keyword: str) -> int | None:
        """Number of distinct values of ``keyword`` over the images; ``None`` if unknown."""
        if keyword in self.distinct:
            return len(self.distinct[keyword])
        if self.frame_count <= 1:
            return 0 if self.header.get(keyword) is None else 1
        return None

    def count(self, of: CountOf) -> int | None:
        """The series-level count ``of``; ``None`` if unknown."""
        if of is CountOf.INSTANCES:
            return self.instance_count
        if of is CountOf.FRAMES:
            return self.frame_count
        if of is CountOf.SLICES:
            return self.slice_count
        return self.max_images_per_slice

    # ----------------------------------------------------------------------------- builders

    @classmethod
    def from_datasets(
        cls, datasets: Iterable[Dataset], keywords: Iterable[str] = DEFAULT_INSTANCE_KEYWORDS
    ) -> SeriesFacts:
        """Facts of a series from its instances' headers.

        Parameters
        ----------
        datasets
            The instances of one series, e.g. read with ``stop_before_pixels=True``.
            Enhanced (multi-frame) instances contribute one image per frame, with per-frame
            values taken from their functional groups.
        keywords
            Attributes whose distinct values are collected over all images, in addition to
            :data:`DEFAULT_INSTANCE_KEYWORDS` (see :attr:`RuleSet.instance_keywords`).

        Raises
        ------
        ValueError
            If ``datasets`` is empty.
        """
        items = list(datasets)
        if not items:
            raise ValueError("a series needs at least one instance to be routed")
        collect = tuple(dict.fromkeys((*DEFAULT_INSTANCE_KEYWORDS, *keywords)))
        representative = min(
            enumerate(items), key=lambda pair: (_instance_number(pair[1]), pair[0])
        )[1]
        header = _header_of(representative, collect)
        distinct: dict[str, set[Value]] = {keyword: set() for keyword in collect}
        slice_keys: list[tuple[Any, ...] | None] = []
        frame_count = 0
        for dataset in items:
            for image in _images_of(dataset):
                frame_count += 1
                for keyword in collect:
                    value = _normalise(image.get(keyword))
                    if value is not None:
                        distinct[keyword].add(_rounded(value))
                slice_keys.append(_slice_key(image))
        known = [key for key in slice_keys if key is not None]
        geometry_known = bool(known) and len(known) == len(slice_keys)
        per_slice = Counter(known)
        max_per_slice = max(per_slice.values()) if geometry_known else None
        ordered = sorted(items, key=_instance_number)
        vendor = describe_series(ordered, max_per_slice)
        derived_header, derived_distinct = vendor.derived()
        header.update(derived_header)
        frozen = {k: frozenset(v) for k, v in distinct.items()}
        frozen.update(derived_distinct)
        return cls(
            header=header,
            instance_count=len(items),
            frame_count=frame_count,
            distinct=frozen,
            slice_count=len(per_slice) if geometry_known else None,
            max_images_per_slice=max_per_slice,
            vendor_evidence=vendor.evidence,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeriesFacts:
        """Facts from a plain mapping, e.g. a catalog row or a test case.

        Parameters
        ----------
        data
            Header values by DICOM keyword (multi-valued as a list or a backslash-joined
            string), plus optionally ``instance_count``, ``frame_count``, ``slice_count``,
            ``max_images_per_slice`` and ``distinct`` (keyword -> list of per-image values).
            ``frame_count`` defaults to ``instance_count``.

        Raises
        ------
        ValueError
            If a count is not a non-negative integer or ``distinct`` is not a mapping.
        """
        header = {
            str(k): v
            for k, v in ((k, _normalise(v)) for k, v in data.items())
            if k not in cls._SPECIAL_KEYS and v is not None
        }
        raw_distinct = data.get("distinct") or {}
        if not isinstance(raw_distinct, Mapping):
            raise ValueError("'distinct' must map DICOM keywords to lists of values")
        distinct: dict[str, frozenset[Value]] = {}
        for keyword, values in raw_distinct.items():
            if isinstance(values, str) or not isinstance(values, Iterable):
                values = [values]
            normalised = (_normalise(v) for v in values)
            distinct[str(keyword)] = frozenset(_rounded(v) for v in normalised if v is not None)
        instances = _count_field(data, "instance_count", 1)
        max_per_slice = _count_field(data, "max_images_per_slice", None)
        evidence = tuple(str(e) for e in data.get("vendor_evidence") or ())
        if not any(key in header for key in DERIVED_FACTS):
            vendor = describe_headers(header, distinct, max_per_slice)
            derived_header, derived_distinct = vendor.derived()
            header.update(derived_header)
            distinct.update(derived_distinct)
            evidence = vendor.evidence
        return cls(
            header=header,
            instance_count=instances if instances is not None else 1,
            frame_count=_count_field(data, "frame_count", instances) or instances or 1,
            distinct=distinct,
            slice_count=_count_field(data, "slice_count", None),
            max_images_per_slice=max_per_slice,
            vendor_evidence=evidence,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable mapping that :meth:`from_dict` turns back into these facts."""
        out: dict[str, Any] = {k: _jsonable(v) for k, v in self.header.items()}
        out["instance_count"] = self.instance_count
        out["frame_count"] = self.frame_count
        out["slice_count"] = self.slice_count
        out["max_images_per_slice"] = self.max_images_per_slice
        out["distinct"] = {
            k: [_jsonable(v) for v in sorted(vs, key=_sort_key)] for k, vs in self.distinct.items()
        }
        out["vendor_evidence"] = list(self.vendor_evidence)
        return out


def _count_field(data: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"'{key}' must be a non-negative integer, not {value!r}")
    return value


def _instance_number(dataset: Dataset) -> float:
    value = _normalise(dataset.get("InstanceNumber"))
    number = _to_float(value) if value is not None and not isinstance(value, tuple) else None
    return number if number is not None else math.inf


def _header_of(dataset: Dataset, frame_keywords: Iterable[str]) -> dict[str, Value]:
    """Top-level non-binary, non-private attributes by keyword."""
    header: dict[str, Value] = {}
    for element in dataset:
        if element.tag.is_private or element.VR in _BINARY_VRS or not element.keyword:
            continue
        value = _normalise(element.value)
        if value is not None:
            header[element.keyword] = value
    frames = dataset.get("PerFrameFunctionalGroupsSequence")
    if frames:
        first = _FrameView(dataset, frames[0])
        for keyword in (
            *frame_keywords,
            *FRAME_ALIASES,
            "ImagePositionPatient",
            "ImageOrientationPatient",
            "PixelSpacing",
            "SliceThickness",
        ):
            if keyword not in header:
                value = _normalise(first.get(keyword))
                if value is not None:
                    header[keyword] = value
    return header


class _InstanceView:
    """Attribute access to a single-frame instance."""

    def __init__(self, dataset: Dataset) -> None:
        self._dataset = dataset

    def get(self, keyword: str) -> Any:
        return self._dataset.get(keyword)


class _FrameView:
    """Attribute access to one frame of an enhanced multi-frame instance."""

    def __init__(self, dataset: Dataset, frame: Dataset) -> None:
        self._dataset = dataset
        self._frame = frame
        shared = dataset.get("SharedFunctionalGroupsSequence")
        self._shared: Dataset | None = shared[0] if shared else None

    def get(self, keyword: str) -> Any:
        names = (keyword, *FRAME_ALIASES.get(keyword, ()))
        for groups in (self._frame, self._shared):
            if groups is None:
                continue
            for element in groups:
                if element.VR != "SQ" or not element.value:
                    continue
                item = element.value[0]
                for name in names:
                    value = item.get(name)
                    if value is not None:
                        return value
        return self._dataset.get(keyword)


def _images_of(dataset: Dataset) -> Iterator[_InstanceView | _FrameView]:
    frames = dataset.get("PerFrameFunctionalGroupsSequence")
    if frames:
        for frame in frames:
            yield _FrameView(dataset, frame)
    else:
        yield _InstanceView(dataset)


def _numbers(raw: Any, count: int) -> tuple[float, ...] | None:
    value = _normalise(raw)
    if not isinstance(value, tuple) or len(value) != count:
        return None
    numbers = tuple(_to_float(v) for v in value)
    if any(n is None for n in numbers):
        return None
    return tuple(float(n) for n in numbers if n is not None)


def _slice_key(image: _InstanceView | _FrameView) -> tuple[Any, ...] | None:
    """A key shared by images at the same slice position and orientation."""
    position = _numbers(image.get("ImagePositionPatient"), 3)
    orientation = _numbers(image.get("ImageOrientationPatient"), 6)
    if position is not None and orientation is not None:
        r, c = orientation[:3], orientation[3:]
        normal = (
            r[1] * c[2] - r[2] * c[1],
            r[2] * c[0] - r[0] * c[2],
            r[0] * c[1] - r[1] * c[0],
        )
        length = math.sqrt(sum(n * n for n in normal))
        if length > 0:
            unit = [n / length for n in normal]
            sign = next((1.0 if n > 0 else -1.0 for n in unit if abs(n) > 1e-3), 1.0)
            unit = [sign * n for n in unit]
            distance = sum(n * p for n, p in zip(unit, position, strict=True))
            return (
                tuple(round(n, 2) + 0.0 for n in unit),
                round(distance, _POSITION_DECIMALS) + 0.0,
            )
    location = _normalise(image.get("SliceLocation"))
    if location is not None and not isinstance(location, tuple):
        number = _to_float(location)
        if number is not None:
            return ("SliceLocation", round(number, _POSITION_DECIMALS) + 0.0)
    return None


# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------


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
    """

    condition_id: str
    name: str
    passed: bool
    observed: str
    missing: bool = False
    children: tuple[ConditionResult, ...] = ()

    def describe(self) -> str:
        """``id`` (name) [observed values]."""
        return f"'{self.condition_id}' ({self.name}) [{self.observed}]"


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
        missing: bool = False,
        if_missing: bool = False,
        children: tuple[ConditionResult, ...] = (),
    ) -> ConditionResult:
        passed = if_missing if missing else raw != self.negate
        return ConditionResult(self.id, self.name, passed, observed, missing, children)


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
        shown: list[str] = []
        outcomes: list[bool] = []
        for keyword in self.attributes:
            values = facts.values(keyword)
            if not values:
                shown.append(f"{keyword} absent")
                continue
            shown.append(f"{keyword}={_show_values(values)}")
            tests = [self.test(v) for v in values]
            outcomes.append(any(tests) if self.scope is Scope.ANY else all(tests))
        return self._result(
            any(outcomes),
            ", ".join(shown),
            missing=not outcomes,
            if_missing=self.if_missing,
        )


def _show_values(values: Sequence[Value]) -> str:
    shown = [f"'{_text(v)}'" for v in values[:_SHOWN_VALUES]]
    if len(values) > _SHOWN_VALUES:
        shown.append(f"... {len(values) - _SHOWN_VALUES} more")
    return shown[0] if len(shown) == 1 else "{" + ", ".join(shown) + "}"


def _candidates(value: Value) -> list[str]:
    """The texts a value is matched against: the joined value and each element."""
    if isinstance(value, tuple):
        return [_text(value), *(_scalar_text(v) for v in value)]
    return [_text(value)]


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
                    number = _to_float(text)
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
        numbers = (_to_float(v) for v in items)
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
        shown = ", ".join(
            f"{k}={_show_values(facts.values(k))}" if k in present else f"{k} absent"
            for k in self.attributes
        )
        return self._result(bool(present) == self.want_present, shown)


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
            return self._result(
                False, f"{self.of.value} unknown", missing=True, if_missing=self.if_missing
            )
        return self._result(_within(value, self.minimum, self.maximum), f"{self.of.value}={value}")


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
            return self._result(
                False,
                f"distinct {self.attribute} not collected",
                missing=True,
                if_missing=self.if_missing,
            )
        values = facts.values(self.attribute) if count else ()
        shown = f"{count} distinct {self.attribute}"
        if values:
            shown += f" {_show_values(values)}"
        return self._result(_within(count, self.minimum, self.maximum), shown)


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
        shown = joiner.join(
            f"{child.name}: {'yes' if child.passed else 'no'} ({child.observed})"
            for child in deciding
        )
        return self._result(raw, shown, children=children)


# --------------------------------------------------------------------------------------------
# Rule sets
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


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

    def reasons(self) -> list[str]:
        """Sentences that explain the outcome, naming the deciding conditions."""
        a = self.analysis
        if self.outcome is Outcome.DISABLED:
            return [f"{a}: disabled in the routing rules"]
        identified = self.identified_by
        lines: list[str] = []
        if self.outcome in (Outcome.MATCHED, Outcome.NOT_INSTALLED):
            lines.append(f"{a}: identified by {identified[0].describe()}")
            if len(identified) > 1:
                others = ", ".join(repr(r.condition_id) for r in identified[1:])
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
            lines.append(f"{a}: identified by {identified[0].describe()}, but")
            lines.extend(f"{a}: excluded by {r.describe()}" for r in self.rejected_by)
            return lines
        lines.extend(f"{a}: requirement {r.describe()} not met" for r in self.failed_requirements)
        if identified:
            lines.append(f"{a}: identified by {identified[0].describe()}")
        else:
            ids = ", ".join(r.condition_id for r in self.identify)
            lines.append(
                f"{a}: not identified: none of its {len(self.identify)} identifying "
                f"signatures matched ({ids})"
            )
        lines.extend(f"{a}: would also be excluded by {r.describe()}" for r in self.rejected_by)
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
        ambiguity, and why each other analysis did not.
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
        explanation: list[str] = []
        chosen = matched[0] if matched else None
        also: tuple[str, ...] = ()
        if chosen is not None:
            explanation.extend(chosen.reasons())
            allowed = self.rules.analyses[chosen.analysis].also
            also = tuple(t.analysis for t in matched[1:] if t.analysis in allowed)
            if also:
                explanation.append(
                    f"{chosen.analysis}: the series also gets {', '.join(also)} (it matches "
                    f"too, and the rules run {', '.join(allowed)} alongside {chosen.analysis})"
                )
            unexpected = [t.analysis for t in matched[1:] if t.analysis not in also]
            if unexpected:
                warnings.insert(
                    0,
                    f"WARNING: series also matches {', '.join(unexpected)}; "
                    f"'{chosen.analysis}' chosen by priority order "
                    f"({' > '.join(self.rules.priority)})",
                )
        else:
            explanation.append("no analysis applies to this series")
        explanation.extend(warnings)
        for trace in traces:
            if trace is chosen:
                continue
            if chosen is not None:
                explanation.append(trace.summary())
            elif trace.outcome is Outcome.NOT_INSTALLED:
                explanation.extend(line for line in trace.reasons() if "not installed" not in line)
            else:
                explanation.extend(trace.reasons())
        decision = RouteDecision(
            analysis=chosen.analysis if chosen else None,
            matched_rule=chosen.matched_rule if chosen else None,
            explanation=tuple(explanation),
            traces=traces,
            warnings=tuple(warnings),
            series_instance_uid=facts.series_instance_uid,
            series_description=facts.series_description,
            vendor_evidence=facts.vendor_evidence,
            also=also,
        )
        # The caller logs the outcome in one line (RouteDecision.headline); the full
        # explanation is for `cmr-node route`, `cmr-node status` and the dashboard.
        logger.debug("series %s: %s", decision.series_instance_uid, " | ".join(explanation))
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
