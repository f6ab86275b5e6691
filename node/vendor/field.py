"""The nominal field strength of a series.

MagneticFieldStrength (0018,0087) is in tesla (PS3.3 C.8.3.1), but scanners may report the
calibrated rather than the nominal value: a Siemens 7 T system writes 6.98
(OpenNeuroDatasets/ds006654, README-Series.txt header dumps).  Reference ranges are keyed
on the nominal value, so the value is rounded to the nearest nominal field within 10 %.
Philips also keeps the field strength in the private (2001,xx85) "Magnetic Field Strength"
of "Philips Imaging DD 001" (pydicom's private data dictionary), used when the public
attribute is missing.
"""

from __future__ import annotations

from typing import Final

from node.vendor.access import HeaderView, private_float

__all__ = ["NOMINAL_FIELDS_T", "nominal_field_strength"]

NOMINAL_FIELDS_T: Final = (0.35, 0.55, 1.0, 1.5, 3.0, 5.0, 7.0)
"""Nominal clinical and research field strengths (tesla)."""
TOLERANCE: Final = 0.10
PHILIPS_FIELD_STRENGTH: Final = (0x2001, 0x1085)


def nominal_field_strength(image: HeaderView, vendor: str) -> tuple[float | None, str]:
    """The nominal field strength in tesla and the evidence, ``(None, reason)`` if unknown.

    Examples
    --------
    >>> from node.vendor.access import MappingView
    >>> nominal_field_strength(MappingView({"MagneticFieldStrength": 2.89}), "siemens")[0]
    3.0
    """
    raw = private_float(image.get("MagneticFieldStrength"))
    source = "MagneticFieldStrength"
    if (raw is None or raw <= 0) and vendor == "philips":
        raw = private_float(image.private(*PHILIPS_FIELD_STRENGTH))
        source = "Philips private (2001,1085)"
    if raw is None or raw <= 0:
        return None, "field strength unknown (no MagneticFieldStrength)"
    nominal = min(NOMINAL_FIELDS_T, key=lambda f: abs(f - raw))
    if abs(nominal - raw) > TOLERANCE * nominal:
        return None, f"{source} {raw:g} T is not near a nominal field strength"
    return nominal, f"field {nominal:g} T from {source} {raw:g}"
