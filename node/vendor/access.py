"""Attribute access to one image of a series: a classic instance or one enhanced frame.

Enhanced MR objects (PS3.3 A.36, C.8.13) keep per-frame values in the Per-frame Functional
Groups Sequence (5200,9230) and values common to all frames in the Shared Functional Groups
Sequence (5200,9229); a frame's value is looked up there first, then at the top level.
Some frame-level attributes have a different keyword from their classic counterpart
(``FRAME_ALIASES``), e.g. FrameType (0008,9007) for ImageType and InversionTimes (0018,9079)
for InversionTime.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.tag import Tag

__all__ = [
    "FRAME_ALIASES",
    "HeaderView",
    "ImageView",
    "MappingView",
    "images_of",
    "private_float",
]

FRAME_ALIASES: Mapping[str, tuple[str, ...]] = {
    "ImageType": ("FrameType",),
    "InversionTime": ("InversionTimes",),
    "TriggerTime": ("NominalCardiacTriggerDelayTime",),
    "EchoTime": ("EffectiveEchoTime",),
    "SequenceName": ("PulseSequenceName",),
}
"""Where an enhanced MR object keeps the per-frame equivalent of a classic keyword."""


class HeaderView(Protocol):
    """Read access to the attributes of one image."""

    def get(self, keyword: str) -> Any:
        """The value of ``keyword`` (classic keyword or its frame alias), or ``None``."""

    def private(self, group: int, element: int) -> Any:
        """The raw value of the private element ``(group, element)``, or ``None``."""


class ImageView:
    """One image: a single-frame instance, or frame ``frame_index`` of a multi-frame one."""

    def __init__(self, dataset: Dataset, frame_index: int | None = None) -> None:
        self.dataset = dataset
        self.frame_index = frame_index
        groups: list[Dataset] = []
        per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
        if frame_index is not None and per_frame is not None and frame_index < len(per_frame):
            groups.append(per_frame[frame_index])
        shared = dataset.get("SharedFunctionalGroupsSequence")
        if shared:
            groups.append(shared[0])
        self._groups = groups

    def get(self, keyword: str) -> Any:
        names = (keyword, *FRAME_ALIASES.get(keyword, ()))
        for groups in self._groups:
            for element in groups:
                if element.VR != "SQ" or not element.value:
                    continue
                item = element.value[0]
                for name in names:
                    value = item.get(name)
                    if value is not None and value != "":
                        return value
        for name in names:
            value = self.dataset.get(name)
            if value is not None and value != "":
                return value
        return None

    def private(self, group: int, element: int) -> Any:
        tag = Tag(group, element)
        for groups in self._groups:
            for sequence in groups:
                if sequence.VR == "SQ" and sequence.value and tag in sequence.value[0]:
                    return sequence.value[0][tag].value
        if tag in self.dataset:
            return self.dataset[tag].value
        return None


class MappingView:
    """A header given as a mapping of keywords (a test case, a catalog row)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def get(self, keyword: str) -> Any:
        value = self._values.get(keyword)
        return None if value == "" else value

    def private(self, group: int, element: int) -> Any:
        return self._values.get(f"({group:04X},{element:04X})")


def images_of(dataset: Dataset) -> Iterator[ImageView]:
    """The images of an instance: one per frame of an enhanced object, else the instance."""
    frames = dataset.get("PerFrameFunctionalGroupsSequence")
    if frames:
        for index in range(len(frames)):
            yield ImageView(dataset, index)
    else:
        yield ImageView(dataset)


def private_float(raw: Any) -> float | None:
    """A private FL/FD/DS value as a float, whatever the VR it arrived with.

    A private element whose VR was lost on the way (implicit VR transfer, or VR UN after a
    PACS) arrives as raw bytes; Philips' floating-point private tags are 4-byte IEEE floats,
    little-endian (read as MATLAB ``typecast(..., 'single')`` in plaresmedima/iBEAt).
    """
    if raw is None:
        return None
    if isinstance(raw, bytes | bytearray):
        if len(raw) == 4:
            return float(struct.unpack("<f", raw)[0])
        if len(raw) == 8:
            return float(struct.unpack("<d", raw)[0])
        try:
            return float(raw.decode("ascii").strip("\x00 ").split("\\")[0])
        except (UnicodeDecodeError, ValueError):
            return None
    if isinstance(raw, list | tuple) or (hasattr(raw, "__iter__") and not isinstance(raw, str)):
        items = list(raw)
        return private_float(items[0]) if items else None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None
