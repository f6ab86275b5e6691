"""Vendor knowledge: what Siemens, Philips, GE, Canon and United Imaging headers mean.

One module per concern, each citing the public source of every convention it applies (the
same sources are tabled in ``docs/vendor-conventions.md``):

:mod:`~node.vendor.access`
    Attribute access to one image: a classic instance or one frame of an enhanced
    multi-frame instance (per-frame, then shared functional groups, then the top level), and
    vendor private tags.
:mod:`~node.vendor.manufacturer`
    The normalised vendor name.
:mod:`~node.vendor.inversion`
    The inversion time of an image, from the standard attribute, the enhanced MR functional
    groups or the vendor's private tag.
:mod:`~node.vendor.image_kind`
    What an image holds: a T1 / T2 / T2* / ECV map, a fit parameter or goodness-of-fit image,
    a magnitude, phase, real or PSIR reconstruction.
:mod:`~node.vendor.sequence`
    The sequence family (MOLLI, ShMOLLI, SASHA, Look-Locker, IR-GRE / IR-TFE LGE, PSIR,
    bSSFP cine, perfusion, T2 prep ...) and whether the acquisition is ECG-gated.
:mod:`~node.vendor.contrast`
    Native or post-contrast.
:mod:`~node.vendor.field`
    The nominal field strength.
:mod:`~node.vendor.values`
    Real-world values: which value transformation a vendor's stored values need.
:mod:`~node.vendor.series`
    All of the above for a whole series, as the router's derived facts and as
    :class:`plugins.api.Acquisition`.
"""

from __future__ import annotations

from node.vendor.series import (
    DERIVED_FACTS,
    ImageFacts,
    VendorSeriesFacts,
    describe_headers,
    describe_series,
)

__all__ = [
    "DERIVED_FACTS",
    "ImageFacts",
    "VendorSeriesFacts",
    "describe_headers",
    "describe_series",
]
