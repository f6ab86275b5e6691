"""The normalised vendor name of a series.

The vendor is read from Manufacturer (0008,0070) by its first two letters, as dcm2niix does
(``dcmStrManufacturer`` in rordenlab/dcm2niix console/nii_dicom.cpp): "SI" Siemens ("SIEMENS",
"Siemens Healthineers"), "CP" Siemens (a Siemens venture, dcm2niix issue 568), "PH" Philips
("Philips Medical Systems", "Philips Healthcare"), "GE" GE ("GE MEDICAL SYSTEMS"), "TO" and
"CA" Canon ("TOSHIBA_MEC", "CANON_MEC": Toshiba Medical became Canon Medical), "UI" United
Imaging ("UIH").
"""

from __future__ import annotations

from typing import Final

__all__ = ["VENDORS", "normalise_vendor"]

VENDORS: Final = ("siemens", "philips", "ge", "canon", "united_imaging", "unknown")
"""The vocabulary of :attr:`plugins.api.Acquisition.vendor`."""

_PREFIXES: Final = {
    "SI": "siemens",
    "CP": "siemens",
    "PH": "philips",
    "GE": "ge",
    "TO": "canon",
    "CA": "canon",
    "UI": "united_imaging",
}


def normalise_vendor(manufacturer: object) -> str:
    """The vendor named by a Manufacturer value, or "unknown".

    Examples
    --------
    >>> normalise_vendor("Philips Medical Systems"), normalise_vendor("GE MEDICAL SYSTEMS")
    ('philips', 'ge')
    >>> normalise_vendor("TOSHIBA_MEC"), normalise_vendor(None)
    ('canon', 'unknown')
    """
    if manufacturer is None:
        return "unknown"
    return _PREFIXES.get(str(manufacturer).strip()[:2].upper(), "unknown")
