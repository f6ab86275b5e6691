"""What one image holds: a parametric map, a fit by-product, or a reconstructed signal.

Read from the values of ImageType (0008,0008) (classic) or FrameType (0008,9007) with
Complex Image Component (0008,9208) (enhanced MR frames), value 3 onwards:

* **Enhanced MR FrameType value 3** defined terms (PS3.3 C.8.13.3.1.1 and C.8.16.1):
  ``T1_MAP``, ``T2_MAP``, ``T2_STAR_MAP``, ``PROTON_DENSITY_MAP``, ...; Complex Image
  Component ``MAGNITUDE`` / ``PHASE`` / ``REAL`` / ``IMAGINARY`` / ``MIXED`` (C.8.13.3.1.3).
* **Siemens** classic images: value 3 ``M`` (magnitude), ``P`` (phase), ``R`` (real), and
  the map name for inline maps, e.g. ``DERIVED\\PRIMARY\\T1 MAP\\MOCO\\T1`` (MyoMaps),
  ``...\\T2 MAP\\...``, ``...\\PSIR\\...`` (dcm2niix's Siemens notes list M, P, R and
  ``ImageTypeText``; T1 MAP / T2 MAP as in the project's routing-test headers).
* **Philips** classic images: value 3 joins the component and the sequence, ``M_FFE``,
  ``P_FFE``, ``R_IR``, ``M_IR``, ``M_SE`` ..., value 4 the component alone (``M``, ``P``,
  ``R``, ``I``), value 5 the sequence (``FFE``, ``IR``, ``SE``) — dcm2niix issue 408 and its
  Philips notes; computed maps carry ``T1`` or ``T2`` as value 3/4
  (``DERIVED\\PRIMARY\\T1\\T1``).
* **GE** classic images mostly write ``ORIGINAL\\PRIMARY\\OTHER`` (nih-fmrif/ge_test_dataset)
  and say little here; names and sequence facts then decide.

Fit by-products are recognised by tokens naming them (goodness of fit, standard deviation,
R-squared, error, the A/B parameters of the three-parameter fit).  An image whose tokens say
nothing is ``UNKNOWN``: the series-level judgement (:mod:`node.vendor.series`) then weighs
names and geometry.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["MAP_KINDS", "SIGNAL_KINDS", "ImageKind", "image_kind", "image_type_tokens"]


class ImageKind(enum.StrEnum):
    """What the pixel values of an image are."""

    T1_MAP = "t1_map"
    T2_MAP = "t2_map"
    T2STAR_MAP = "t2star_map"
    ECV_MAP = "ecv_map"
    FIT_PARAMETER = "fit_parameter"
    """A by-product of a fit: goodness of fit, SD, R-squared, A / B parameter, error map."""
    MAGNITUDE = "magnitude"
    PHASE = "phase"
    REAL = "real"
    PSIR = "psir"
    UNKNOWN = "unknown"


MAP_KINDS: Final = frozenset(
    {ImageKind.T1_MAP, ImageKind.T2_MAP, ImageKind.T2STAR_MAP, ImageKind.ECV_MAP}
)
SIGNAL_KINDS: Final = frozenset(
    {ImageKind.MAGNITUDE, ImageKind.PHASE, ImageKind.REAL, ImageKind.PSIR}
)

_FIT: Final = re.compile(
    r"^(gof|goodness.*|sd|std|stdev|stddev|r2|rsq|r_?squared|err|error|errmap|chi2?|"
    r"residuals?|conf|ci|[ab][ _]?(map|param(eter)?)|t1_?sd|t1_?err)$"
)
_ECV: Final = re.compile(r"^ecv([ _]?map)?$|^extra[ _-]?cellular")
_T1: Final = re.compile(r"^t1([ _]?map)?$")
_T2STAR: Final = re.compile(r"^(t2[ _]?star|t2\*|r2[ _]?star|r2\*)([ _]?map)?$")
_T2: Final = re.compile(r"^t2([ _]?map)?$")
_PSIR: Final = re.compile(r"^psir$|^ps_?ir$")
_MAGNITUDE: Final = re.compile(r"^(m|mag|magnitude)$|^m_[a-z0-9]+$")
_PHASE: Final = re.compile(r"^(p|pha|phase)$|^p_[a-z0-9]+$")
_REAL: Final = re.compile(r"^(r|real)$|^r_[a-z0-9]+$")


def image_type_tokens(value: object) -> tuple[str, ...]:
    """ImageType / FrameType values, lower-case, without the first two (pixel data and
    patient examination characteristics, always ORIGINAL/DERIVED and PRIMARY/SECONDARY)."""
    if value is None:
        return ()
    items: Iterable[object]
    if isinstance(value, str):
        items = value.split("\\")
    elif isinstance(value, Iterable):
        items = value
    else:
        items = (value,)
    tokens = tuple(str(item).strip().lower() for item in items)
    return tuple(t for t in tokens[2:] if t)


def image_kind(image_type: object, complex_component: object = None) -> ImageKind:
    """The kind of an image from its ImageType (or FrameType) and Complex Image Component.

    Examples
    --------
    >>> image_kind("DERIVED\\\\PRIMARY\\\\T1 MAP\\\\MOCO\\\\T1").value
    't1_map'
    >>> image_kind("ORIGINAL\\\\PRIMARY\\\\M_IR\\\\M\\\\IR").value
    'magnitude'
    >>> image_kind(["DERIVED", "PRIMARY", "T1_MAP", "NONE"], "MAGNITUDE").value
    't1_map'
    """
    tokens = image_type_tokens(image_type)
    # Maps first: a map image often also carries a component token (Siemens "M", Philips "T1")
    for token in tokens:
        if _FIT.match(token):
            return ImageKind.FIT_PARAMETER
    for token in tokens:
        if _ECV.match(token):
            return ImageKind.ECV_MAP
    for token in tokens:
        if _T2STAR.match(token):
            return ImageKind.T2STAR_MAP
    for token in tokens:
        if _T1.match(token):
            return ImageKind.T1_MAP
    for token in tokens:
        if _T2.match(token):
            return ImageKind.T2_MAP
    for token in tokens:
        if _PSIR.match(token):
            return ImageKind.PSIR
    component = str(complex_component or "").strip().upper()
    by_component = {
        "MAGNITUDE": ImageKind.MAGNITUDE,
        "PHASE": ImageKind.PHASE,
        "REAL": ImageKind.REAL,
    }
    if component in by_component:
        return by_component[component]
    for pattern, kind in ((_REAL, ImageKind.REAL), (_PHASE, ImageKind.PHASE),
                          (_MAGNITUDE, ImageKind.MAGNITUDE)):
        if any(pattern.match(token) for token in tokens):
            return kind
    return ImageKind.UNKNOWN
