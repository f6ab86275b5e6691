"""Coded concepts used by the analysis plugins and written into SEG and SR objects.

Every code below was checked against a published source rather than remembered:

* ``pydicom.sr`` concept and context-group tables (pydicom 3.0, generated from DICOM PS3.16),
  which list the context groups a code belongs to;
* the DICOM PS3.16 context groups as published in HL7 FHIR form
  (github.com/bvdh/dicom-terminology-in-fhir, ``ValueSet-dicom-cid-*.fsh``);
* SNOMED CT for concepts that PS3.16 does not (yet) list in a segmentation context group.

Notes on choices
----------------
* Myocardium: SNOMED CT 74281007 "Myocardium structure (body structure)", preferred display
  "Myocardium", as used for heart-muscle segments by TotalSegmentator/MOOSE-to-SNOMED
  mappings.  It is not in pydicom's copy of CID 7151, which is an *extensible* context group,
  so a SNOMED body structure is allowed.  Category "Anatomical Structure" (SCT 91723000,
  CID 7150) and anatomic region "Left ventricle" (SCT 87878005, CID 7151/7152) say it is the
  LV myocardium.  (SCT 49848007 "Left ventricle myocardium" exists too but is listed only in
  the echo anatomic-site group CID 12305.)
* Blood pools: there is no "left ventricular cavity" concept in any segmentation context
  group.  The segment is written as what it is — "Blood" (SCT 87612001, CID 7166 Common
  Tissue Segmentation Type, category "Tissue" SCT 85756007) with anatomic region "Left
  ventricle" (SCT 87878005) or "Right ventricle" (SCT 53085002).
* T1: DCM 113063 "T1" is in CID 218 (Quantitative Image Features), CID 7180 (Abstract
  Multi-dimensional Image Model Component Semantics, i.e. the Real World Value quantity of a
  T1 map) and CID 7469 (Generic Intensity and Size Measurements, the concept names of
  TID 1419 ROI measurements).
* Statistics: Mean SCT 373098007, Median SCT 373099004 and Standard Deviation SCT 386136009
  are the members of CID 7464 (General Region of Interest Measurement Modifiers), written
  with concept name DCM 121401 "Derivation".  (DCM 113061 "Standard Deviation" and DCM
  130290 "Median" exist but are not in CID 7464.)
* Area: SCT 42798000 "Area" (CID 7469).  Wall thickness: DCM 122445 "Wall Thickness".
* Units: UCUM "ms" (millisecond) and "mm2" (square millimeter) as in CID 7181; pixel counts
  use the UCUM annotation "{pixels}".
* The number of pixels a statistic used has no standard concept; it is coded in the private
  coding scheme ``99CMRNODE`` (private schemes start with "99", PS3.3 8.1).
"""

from __future__ import annotations

from typing import Final

from plugins.api import Code, Label, SegmentDefinition

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "AREA",
    "BLOOD",
    "DERIVATION",
    "HEART",
    "LEFT_VENTRICLE",
    "MEAN",
    "MEDIAN",
    "MYOCARDIUM",
    "NUMBER_OF_PIXELS",
    "PRIVATE_SCHEME",
    "RIGHT_VENTRICLE",
    "SEGMENT_LV_BLOOD_POOL",
    "SEGMENT_MYOCARDIUM",
    "SEGMENT_RV_BLOOD_POOL",
    "STANDARD_DEVIATION",
    "T1",
    "TISSUE",
    "UCUM_MILLIMETER",
    "UCUM_MILLISECOND",
    "UCUM_PERCENT",
    "UCUM_PIXELS",
    "UCUM_SQUARE_MILLIMETER",
    "WALL_THICKNESS",
    "segment_definition",
]

PRIVATE_SCHEME: Final = "99CMRNODE"
"""Private coding scheme designator for concepts without a standard code."""

# Segmentation property categories (CID 7150)
TISSUE: Final = Code("85756007", "SCT", "Tissue")
ANATOMICAL_STRUCTURE: Final = Code("91723000", "SCT", "Anatomical Structure")

# Segmentation property types and anatomic regions
MYOCARDIUM: Final = Code("74281007", "SCT", "Myocardium")
BLOOD: Final = Code("87612001", "SCT", "Blood")
HEART: Final = Code("80891009", "SCT", "Heart")
LEFT_VENTRICLE: Final = Code("87878005", "SCT", "Left ventricle")
RIGHT_VENTRICLE: Final = Code("53085002", "SCT", "Right ventricle")

# Measurement concepts (CID 7469 / CID 218)
T1: Final = Code("113063", "DCM", "T1")
AREA: Final = Code("42798000", "SCT", "Area")
WALL_THICKNESS: Final = Code("122445", "DCM", "Wall Thickness")
NUMBER_OF_PIXELS: Final = Code("number-of-pixels", PRIVATE_SCHEME, "Number of pixels")

# Statistics (CID 7464), written under the concept name "Derivation"
DERIVATION: Final = Code("121401", "DCM", "Derivation")
MEAN: Final = Code("373098007", "SCT", "Mean")
MEDIAN: Final = Code("373099004", "SCT", "Median")
STANDARD_DEVIATION: Final = Code("386136009", "SCT", "Standard Deviation")

# Units (UCUM, CID 7181)
UCUM_MILLISECOND: Final = Code("ms", "UCUM", "millisecond")
UCUM_SQUARE_MILLIMETER: Final = Code("mm2", "UCUM", "square millimeter")
UCUM_MILLIMETER: Final = Code("mm", "UCUM", "millimeter")
UCUM_PERCENT: Final = Code("%", "UCUM", "percent")
UCUM_PIXELS: Final = Code("{pixels}", "UCUM", "pixels")

# Recommended display colours (RGB): red myocardium, yellow LV blood, blue RV blood, the
# usual cardiac-MR contour colours (red epicardium/myocardium, yellow-green endocardium).
COLOUR_MYOCARDIUM: Final = (220, 40, 40)
COLOUR_LV_BLOOD_POOL: Final = (250, 220, 40)
COLOUR_RV_BLOOD_POOL: Final = (60, 120, 230)

SEGMENT_LV_BLOOD_POOL: Final = SegmentDefinition(
    label=Label.LV_BLOOD_POOL,
    name="LV blood pool",
    category=TISSUE,
    property_type=BLOOD,
    colour_rgb=COLOUR_LV_BLOOD_POOL,
    anatomic_region=LEFT_VENTRICLE,
)
SEGMENT_MYOCARDIUM: Final = SegmentDefinition(
    label=Label.MYOCARDIUM,
    name="LV myocardium",
    category=ANATOMICAL_STRUCTURE,
    property_type=MYOCARDIUM,
    colour_rgb=COLOUR_MYOCARDIUM,
    anatomic_region=LEFT_VENTRICLE,
)
SEGMENT_RV_BLOOD_POOL: Final = SegmentDefinition(
    label=Label.RV_BLOOD_POOL,
    name="RV blood pool",
    category=TISSUE,
    property_type=BLOOD,
    colour_rgb=COLOUR_RV_BLOOD_POOL,
    anatomic_region=RIGHT_VENTRICLE,
)

_SEGMENTS: Final = {
    segment.label: segment
    for segment in (SEGMENT_LV_BLOOD_POOL, SEGMENT_MYOCARDIUM, SEGMENT_RV_BLOOD_POOL)
}


def segment_definition(label: Label) -> SegmentDefinition:
    """The SEG segment definition for a label value.

    Parameters
    ----------
    label
        A label value of a plugin's label images.

    Returns
    -------
    plugins.api.SegmentDefinition
        Name, category, property type, anatomic region and display colour.

    Raises
    ------
    KeyError
        If no definition exists for ``label`` here.
    """
    return _SEGMENTS[label]
