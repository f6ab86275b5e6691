"""A fast read of the few header attributes the listener needs from a received instance.

The listener answers every C-STORE after reading a dozen top-level attributes (UIDs, modality,
image size) and measuring the Pixel Data element.  pydicom's reader builds every element of
the header on the way (vendor headers of several kB included), which costs about a
millisecond per instance; this scanner walks the byte stream of the common encodings
(explicit and implicit VR little endian), skips what it does not need by its length, and
gives up (:class:`UnsupportedEncoding`) on anything else, so the caller falls back to pydicom
(big endian, deflate, malformed lengths, an unexpected VR for a wanted tag ...).  It never
answers differently from pydicom: anything it cannot read with certainty goes to pydicom.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["HeaderScan", "UnsupportedEncoding", "scan_header"]

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
_LITTLE_ENDIAN_EXPLICIT_SYNTAXES = frozenset({
    EXPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5",
})
"""Transfer syntaxes whose data set is explicit VR little endian (native and encapsulated)."""

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_TEXT_VRS = frozenset({b"UI", b"CS", b"LO", b"SH", b"IS", b"DS", b"AE", b"PN", b"DA", b"TM"})
_MAX_DEPTH = 16

_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class UnsupportedEncoding(ValueError):  # noqa: N818 - a signal to fall back, not a failure
    """The bytes use an encoding or a structure this scanner leaves to pydicom."""


@dataclass(frozen=True)
class WantedTag:
    """A top-level attribute to read: its keyword and value representation."""

    keyword: str
    vr: bytes


@dataclass(frozen=True)
class HeaderScan:
    """What was read: values by keyword (str, or int for US), and where Pixel Data starts."""

    values: dict[str, str | int]
    vrs: dict[str, str]
    pixel_data_offset: int | None
    """Offset of the Pixel Data element's tag in the bytes, None when there is none."""


def _text(value: bytes, vr: bytes) -> str:
    """A text value as pydicom gives it: trailing padding removed (and leading blanks of a
    number); non-ASCII bytes raise (pydicom decodes them with the character set)."""
    text = value.decode("ascii")
    return text.strip(" \0") if vr in (b"IS", b"DS") else text.rstrip(" \0")


def _element_header(raw: bytes, pos: int, explicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR or b"" when implicit, value length, offset of the value) of the element at
    ``pos``."""
    end = len(raw)
    if pos + 8 > end:
        raise UnsupportedEncoding("element header cut short")
    group, element = _TAG.unpack_from(raw, pos)
    tag = group << 16 | element
    if not explicit or group == 0xFFFE:
        return tag, b"", _U32.unpack_from(raw, pos + 4)[0], pos + 8
    vr = raw[pos + 4:pos + 6]
    if vr in _LONG_VRS:
        if pos + 12 > end:
            raise UnsupportedEncoding("element header cut short")
        return tag, vr, _U32.unpack_from(raw, pos + 8)[0], pos + 12
    if not (vr.isalpha() and vr.isupper()):
        raise UnsupportedEncoding(f"VR {vr!r}")
    return tag, vr, _U16.unpack_from(raw, pos + 6)[0], pos + 8


def _after_value(raw: bytes, vr: bytes, length: int, value_at: int, explicit: bool,
                 depth: int) -> int:
    """Offset just after an element's value (a sequence of undefined length is walked)."""
    if length != UNDEFINED_LENGTH:
        after = value_at + length
        if after > len(raw):
            raise UnsupportedEncoding("value runs past the end")
        return after
    if vr == b"UN":  # PS3.5 6.2.2: a sequence of undefined length, encoded implicit VR
        return _after_sequence(raw, value_at, False, depth + 1)
    if vr in (b"SQ", b""):
        return _after_sequence(raw, value_at, explicit, depth + 1)
    raise UnsupportedEncoding(f"undefined length with VR {vr!r}")


def _after_sequence(raw: bytes, pos: int, explicit: bool, depth: int) -> int:
    """Offset just after the Sequence Delimitation Item of the sequence starting at ``pos``."""
    if depth > _MAX_DEPTH:
        raise UnsupportedEncoding("sequences nested too deep")
    while True:
        tag, _, length, value_at = _element_header(raw, pos, False)
        if tag == _SEQUENCE_END:
            return value_at
        if tag != _ITEM:
            raise UnsupportedEncoding(f"unexpected tag {tag:08X} in a sequence")
        if length != UNDEFINED_LENGTH:
            pos = _after_value(raw, b"", length, value_at, explicit, depth)
            continue
        pos = value_at
        while True:  # the item's elements, up to its Item Delimitation Item
            tag, vr, length, value_at = _element_header(raw, pos, explicit)
            if tag == _ITEM_END:
                pos = value_at
                break
            if tag >> 16 == 0xFFFE:
                raise UnsupportedEncoding(f"unexpected tag {tag:08X} in an item")
            pos = _after_value(raw, vr, length, value_at, explicit, depth)


def scan_header(
    raw: bytes, start: int, transfer_syntax: str, wanted: Mapping[int, WantedTag]
) -> HeaderScan:
    """Read the ``wanted`` top-level attributes of the data set at ``raw[start:]``.

    Parameters
    ----------
    raw
        The instance bytes (file meta included).
    start
        Offset of the data set (just after the file meta information).
    transfer_syntax
        The data set's transfer syntax UID.
    wanted
        Tag (as ``0xGGGGEEEE``) to keyword and VR of each attribute to read.

    Raises
    ------
    UnsupportedEncoding
        When the caller must use pydicom instead.
    """
    if transfer_syntax in _LITTLE_ENDIAN_EXPLICIT_SYNTAXES:
        explicit = True
    elif transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        explicit = False
    else:
        raise UnsupportedEncoding(f"transfer syntax {transfer_syntax}")
    values: dict[str, str | int] = {}
    vrs: dict[str, str] = {}
    pos = start
    previous = -1
    while pos < len(raw):
        tag, vr, length, value_at = _element_header(raw, pos, explicit)
        if tag <= previous:
            raise UnsupportedEncoding("elements out of order")
        previous = tag
        if tag == PIXEL_DATA:
            return HeaderScan(values, vrs, pos)
        if tag >> 16 == 0xFFFE:
            raise UnsupportedEncoding("item tag at the top level")
        after = _after_value(raw, vr, length, value_at, explicit, 0)
        spec = wanted.get(tag)
        if spec is not None:
            if length == UNDEFINED_LENGTH or (explicit and vr != spec.vr):
                raise UnsupportedEncoding(f"{spec.keyword} encoded as {vr!r}")
            value = raw[value_at:after]
            if spec.vr == b"US":
                if length != 2:
                    raise UnsupportedEncoding(f"{spec.keyword} of {length} bytes")
                values[spec.keyword] = _U16.unpack(value)[0]
            elif spec.vr in _TEXT_VRS:
                if b"\\" in value:
                    raise UnsupportedEncoding(f"{spec.keyword} has several values")
                values[spec.keyword] = _text(value, spec.vr)
            else:
                raise UnsupportedEncoding(f"VR {spec.vr!r} not read here")
            vrs[spec.keyword] = spec.vr.decode()
        pos = after
    return HeaderScan(values, vrs, None)
