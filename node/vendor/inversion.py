"""The inversion time of one image, wherever the vendor put it.

In order of preference:

1. **InversionTime (0018,0082)**, the standard attribute of classic MR images (PS3.3
   C.8.3.1).  Siemens and GE write it on inversion-recovery images.  A value of 0 means "no
   inversion" (Philips writes ``0`` on enhanced objects of non-IR scans, dcm2niix issue 385)
   and is treated as absent.
2. **InversionTimes (0018,9079)** in the MR Modifier functional group of an enhanced MR
   frame (PS3.3 C.8.13.5.6), or at the top level of a Philips classic export; only the first
   value is used and implausible values are ignored: Philips writes
   ``0\\1.7976931348623167e+308`` there (dcm2niix issues 380 and 385).
3. **Philips private (2005,1572)**, a 4-byte float, the inversion delay of Philips T1-mapping
   (MOLLI / Look-Locker) images: the iBEAt kidney MRI pipelines (plaresmedima/iBEAt: "For
   T1-mapping, Siemens uses the field 'InversionTime' but Philips uses (0x2005, 0x1572)")
   sort Philips T1-mapping images by it and read it as a 4-byte float.  dcm2niix reads
   private inversion times only when they are positive (issue 968), as here.
4. **ImageComments "TI 123"**: older Siemens MOLLI works-in-progress write each image's
   effective TI only there (as :mod:`plugins.molli.source` documents); used last.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from node.vendor.access import HeaderView, private_float

__all__ = ["InversionTime", "inversion_time"]

PHILIPS_INVERSION_DELAY: Final = (0x2005, 0x1572)
"""Philips private inversion delay of T1-mapping images (FL, ms)."""
MAX_PLAUSIBLE_TI_MS: Final = 10000.0
"""Larger values are placeholders (Philips writes the largest double), not inversion times."""

_TI_TEXT: Final = re.compile(r"(?<![a-z0-9])ti[\s_]*[:=]?\s*(\d+(?:\.\d+)?)\s*(?:ms)?(?![0-9.])",
                             re.IGNORECASE)


@dataclass(frozen=True)
class InversionTime:
    """An inversion time in ms and the attribute it was read from."""

    ms: float
    source: str


def _plausible(value: object) -> float | None:
    number = private_float(value)
    if number is None or not math.isfinite(number) or not 0 < number <= MAX_PLAUSIBLE_TI_MS:
        return None
    return number


def inversion_time(image: HeaderView, vendor: str) -> InversionTime | None:
    """The inversion time of an image, or ``None`` when the header gives none.

    Parameters
    ----------
    image
        The image's attributes (a classic instance or one enhanced frame).
    vendor
        The normalised vendor (:func:`node.vendor.manufacturer.normalise_vendor`): private
        tags are read only for the vendor that defines them.
    """
    raw = image.get("InversionTime")
    times = image.get("InversionTimes")
    # An enhanced frame answers InversionTime with its InversionTimes (frame alias)
    standard = _plausible(raw) if raw is not None and raw != times else None
    if standard is not None:
        return InversionTime(standard, "InversionTime (0018,0082)")
    if times is not None:
        first = _plausible(times)
        if first is not None:
            return InversionTime(first, "InversionTimes (0018,9079)")
    if vendor == "philips":
        private = _plausible(image.private(*PHILIPS_INVERSION_DELAY))
        if private is not None:
            return InversionTime(private, "Philips private (2005,1572)")
    comments = image.get("ImageComments")
    if comments:
        match = _TI_TEXT.search(str(comments))
        if match:
            value = _plausible(match.group(1))
            if value is not None:
                return InversionTime(value, "ImageComments 'TI <ms>'")
    return None
