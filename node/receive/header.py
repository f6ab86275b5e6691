"""A received data set's header, read by walking its elements up to the pixels.

The listener needs a dozen top-level attributes of every instance it receives.  Reading them
with ``dcmread(stop_before_pixels=True, specific_tags=...)`` costs about 1.3 ms per instance
here, most of it pydicom's general reader; walking the element headers of a little-endian
data set and keeping the raw wanted elements costs a tenth of it.  The walk handles what
PS3.5 section 7 allows before Pixel Data (explicit and implicit VR little endian, sequences and
items of defined or undefined length, nested); anything else -- big endian, deflated, an
undefined length outside a sequence, a length past the end -- returns ``None`` and the caller
reads the data set with pydicom instead, so malformed input is judged by pydicom as before.

The wanted elements are returned as a :class:`pydicom.Dataset` of raw elements (converted
on first access, as pydicom's own reader leaves them), so values are decoded by pydicom.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, MutableMapping

from pydicom import Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.tag import BaseTag

__all__ = ["scan_header", "tags_of"]

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
#: Transfer syntaxes whose data set is not little endian or not plain (PS3.5 A.3, A.5).
NOT_WALKABLE = frozenset(
    {
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
    }
)
#: VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 7.1.2).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
#: Where ``dcmread(stop_before_pixels=True)`` stops: Float, Double Float and Pixel Data.
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, PIXEL_DATA})
SPECIFIC_CHARACTER_SET = 0x00080005
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class _NotWalkableError(Exception):
    """The data set needs pydicom's reader."""


def tags_of(keywords: Iterable[str]) -> frozenset[int]:
    """The tags of DICOM keywords, with Specific Character Set (needed to decode text)."""
    tags = {SPECIFIC_CHARACTER_SET}
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"not a DICOM keyword: {keyword}")
        tags.add(int(tag))
    return frozenset(tags)


def _element_header(
    raw: bytes, pos: int, implicit: bool
) -> tuple[int, bytes | None, int, int]:
    """(tag, VR, value length, value offset) of the element at ``pos``."""
    end = len(raw)
    if pos + 8 > end:
        raise _NotWalkableError
    group, element = _TAG.unpack_from(raw, pos)
    tag = (group << 16) | element
    if implicit or group == 0xFFFE:  # item and delimiters have no VR in any syntax
        return tag, None, _U32.unpack_from(raw, pos + 4)[0], pos + 8
    vr = raw[pos + 4 : pos + 6]
    if vr in LONG_VRS:
        if pos + 12 > end:
            raise _NotWalkableError
        return tag, vr, _U32.unpack_from(raw, pos + 8)[0], pos + 12
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise _NotWalkableError  # not a VR: let pydicom judge it
    return tag, vr, _U16.unpack_from(raw, pos + 6)[0], pos + 8


def _skip_sequence(raw: bytes, pos: int, implicit: bool, depth: int) -> int:
    """Offset just after a sequence of undefined length whose items start at ``pos``."""
    if depth > 32:
        raise _NotWalkableError
    while True:
        tag, _, length, pos = _element_header(raw, pos, implicit)
        if tag == SEQUENCE_DELIMITER:
            return pos
        if tag != ITEM:
            raise _NotWalkableError
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # an item of undefined length: its elements up to the item delimiter
            tag, vr, length, pos = _element_header(raw, pos, implicit)
            if tag == ITEM_DELIMITER:
                break
            if length == UNDEFINED:
                if vr not in (None, b"SQ", b"UN"):
                    raise _NotWalkableError
                pos = _skip_sequence(raw, pos, implicit or vr == b"UN", depth + 1)
            else:
                pos += length


def scan_header(
    raw: bytes, start: int, transfer_syntax: str, wanted: frozenset[int]
) -> tuple[Dataset, tuple[int, int] | None] | None:
    """Walk a data set's top-level elements up to its pixels, keeping the ``wanted`` ones.

    Parameters
    ----------
    raw
        The bytes holding the data set.
    start
        Offset of the data set's first element in ``raw`` (after any file meta information).
    transfer_syntax
        The data set's transfer syntax UID.
    wanted
        Tags to keep (see :func:`tags_of`).

    Returns
    -------
    tuple or None
        (the wanted elements found, raw: decoded by pydicom on access; (bytes present,
        bytes declared) of a native Pixel Data element, or ``None`` when there is none or
        it is encapsulated).  None when the data set cannot be walked here (big endian,
        deflated, an element the walk does not expect): read it with pydicom.
    """
    if transfer_syntax in NOT_WALKABLE:
        return None
    implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
    elements: MutableMapping[BaseTag, DataElement | RawDataElement] = {}
    pixel_bytes: tuple[int, int] | None = None
    end = len(raw)
    pos = start
    try:
        while pos < end:
            tag, vr, length, value_at = _element_header(raw, pos, implicit)
            if tag in PIXEL_TAGS:
                if tag == PIXEL_DATA and length != UNDEFINED:
                    pixel_bytes = (end - value_at, length)
                break
            if length == UNDEFINED:
                if vr not in (None, b"SQ", b"UN"):
                    raise _NotWalkableError
                # UN of undefined length holds implicit VR little endian (PS3.5 6.2.2)
                pos = _skip_sequence(raw, value_at, implicit or vr == b"UN", 0)
                continue
            pos = value_at + length
            if pos > end:
                raise _NotWalkableError
            if tag in wanted:
                elements[BaseTag(tag)] = RawDataElement(
                    BaseTag(tag), None if vr is None else vr.decode("ascii"), length,
                    raw[value_at:pos], value_at - start, implicit, True,
                )  # fmt: skip
    except (_NotWalkableError, struct.error):
        return None
    ds = Dataset(elements)
    encoding: str | list[str] = default_encoding
    charset = elements.get(BaseTag(SPECIFIC_CHARACTER_SET))
    if isinstance(charset, RawDataElement):
        try:
            encoding = convert_encodings(convert_raw_data_element(charset).value)
        except Exception:  # a malformed character set: pydicom's reader judges it
            return None
    ds.set_original_encoding(implicit, True, encoding)
    return ds, pixel_bytes
