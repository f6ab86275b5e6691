"""Series facts: what the router knows about one series, read from its DICOM headers.

A :class:`SeriesFacts` holds a representative header, the distinct per-image values of the
attributes the rules look at (per frame for enhanced multi-frame objects), series-level
counts (instances, frames, slice positions, images per position) and the derived facts of
:mod:`node.vendor` (``cmr.vendor``, ``cmr.image_kind`` ...), which rules test like DICOM
keywords.  Nothing here knows about rules.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from node.vendor import DERIVED_FACTS, describe_headers, describe_series

__all__ = [
    "DEFAULT_INSTANCE_KEYWORDS",
    "FRAME_ALIASES",
    "CountOf",
    "Scalar",
    "SeriesFacts",
    "Value",
    "scalar_text",
    "to_float",
    "value_text",
]

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
_POSITION_DECIMALS = 1  # mm: images closer than this along the normal share a slice position
_FLOAT_DECIMALS = 3  # distinct numeric values are compared after rounding to this

Scalar: TypeAlias = str | int | float
Value: TypeAlias = Scalar | tuple[Scalar, ...]


class CountOf(enum.StrEnum):
    """What a ``count`` condition counts."""

    INSTANCES = "instances"
    FRAMES = "frames"
    SLICES = "slices"
    IMAGES_PER_SLICE = "images_per_slice"


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


def scalar_text(value: Scalar) -> str:
    """One value as text; a whole float without its decimal point (``2.0`` -> ``2``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def value_text(value: Value) -> str:
    """``value`` as DICOM would show it: multiple values joined by backslashes."""
    if isinstance(value, tuple):
        return "\\".join(scalar_text(v) for v in value)
    return scalar_text(value)


def to_float(value: Scalar) -> float | None:
    """One value as a finite number, or ``None`` when it is not one."""
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
    number = to_float(value) if not isinstance(value, tuple) else None
    return (0, number, "") if number is not None else (1, 0.0, value_text(value))


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
        return value_text(value) if value is not None else None

    @property
    def series_description(self) -> str | None:
        """SeriesDescription of the series, if known."""
        value = self.header.get("SeriesDescription")
        return value_text(value) if value is not None else None

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
    number = to_float(value) if value is not None and not isinstance(value, tuple) else None
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
    numbers = tuple(to_float(v) for v in value)
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
        number = to_float(location)
        if number is not None:
            return ("SliceLocation", round(number, _POSITION_DECIMALS) + 0.0)
    return None
