"""PSIR or magnitude: which reconstruction an LGE series holds, from ImageType, series names and
pixel signs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import numpy as np

from plugins.api import LoadedSeries
from plugins.lge.segmenter import LgeContrast

_PSIR_TOKENS: Final = frozenset({"PSIR", "R_IR", "REAL", "PHASE_SENSITIVE", "PSMDE"})
_MAGNITUDE_TOKENS: Final = frozenset({"M", "MAG", "MAGNITUDE", "M_IR", "M_SE"})
_PSIR_NAME: Final = re.compile(r"psir|psmde|phase[ _-]?sens", re.IGNORECASE)
_MAGNITUDE_NAME: Final = re.compile(r"(?<![a-z])mag", re.IGNORECASE)


MAGNITUDE_ASSUMED: Final = (
    "no PSIR or magnitude marker in ImageType or names and no negative pixel: magnitude assumed"
)


def contrast_from_names(
    image_type: Sequence[str] | None, names: Sequence[str]
) -> tuple[LgeContrast | None, str]:
    """PSIR or magnitude from ImageType values and series names, or ``None`` if they don't say.

    Parameters
    ----------
    image_type
        ImageType values.
    names
        SeriesDescription, ProtocolName and similar texts.

    Returns
    -------
    tuple
        The contrast (``None`` when undecided) and the evidence, for the record.
    """
    tokens = {str(t).upper() for t in (image_type or ())}
    if tokens & _PSIR_TOKENS:
        return LgeContrast.PSIR, f"ImageType {'/'.join(sorted(tokens & _PSIR_TOKENS))}"
    description = " ".join(str(n) for n in names if n)
    if _PSIR_NAME.search(description) and not _MAGNITUDE_NAME.search(description):
        return LgeContrast.PSIR, f"series name {description.strip()!r}"
    if tokens & _MAGNITUDE_TOKENS or _MAGNITUDE_NAME.search(description):
        return LgeContrast.MAGNITUDE, "ImageType or series name marks magnitude"
    return None, "no PSIR or magnitude marker in ImageType or names"


def detect_contrast(series: LoadedSeries) -> tuple[LgeContrast, str]:
    """PSIR or magnitude from ImageType, names and pixel signs, with the evidence used."""
    image_type = series.header.get("ImageType") or (
        series.frames[0].attributes.get("ImageType") if series.frames else None
    )
    names = [str(series.header.get(k) or "") for k in ("SeriesDescription", "ProtocolName")]
    contrast, evidence = contrast_from_names(image_type, names)
    if contrast is LgeContrast.PSIR:
        return contrast, evidence
    if any(float(np.nanmin(f.pixels)) < 0.0 for f in series.frames):
        return LgeContrast.PSIR, "negative pixel values (signed real reconstruction)"
    if contrast is None:
        return LgeContrast.MAGNITUDE, MAGNITUDE_ASSUMED
    return contrast, evidence
