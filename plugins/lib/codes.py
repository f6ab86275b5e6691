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
* LGE: scar is SCT 12402003 "Scar tissue" (CID 7151 / 7191, category "Tissue").  Microvascular
  obstruction has no code in any segmentation context group; it is the private concept
  ``mvo`` with category "Morphologically Abnormal Structure" (SCT 49755003, CID 7150).  Mass
  SCT 118538004 and Volume SCT 118565006 (CID 12304); UCUM "g" and "ml".  Scar extent as per
  cent of LV myocardial mass, its method variants and the maximum transmurality have no
  standard concept and are private.
* AHA segments: the finding sites of per-segment values are the members of CID 3717 "Left
  Ventricle Myocardial Wall 17-Segment Model" (SNOMED CT).
"""

from __future__ import annotations

import dataclasses
from typing import Final

from plugins.api import Code, Label, SegmentDefinition

__all__ = [
    "AHA_SEGMENT_SITES",
    "ANATOMICAL_STRUCTURE",
    "AREA",
    "AREA_FRACTION",
    "BLOOD",
    "COLOUR_LV_BLOOD_POOL",
    "COLOUR_MVO",
    "COLOUR_MYOCARDIUM",
    "COLOUR_RV_BLOOD_POOL",
    "COLOUR_SCAR",
    "DERIVATION",
    "HEART",
    "LEFT_VENTRICLE",
    "LVRR_PROBABILITY",
    "MASS",
    "MAX_TRANSMURALITY",
    "MEAN",
    "MEDIAN",
    "MICROVASCULAR_OBSTRUCTION",
    "MORPHOLOGICALLY_ABNORMAL_STRUCTURE",
    "MVO_EXTENT",
    "MYOCARDIUM",
    "NUMBER_OF_PIXELS",
    "PRIVATE_SCHEME",
    "RADSCORE",
    "RIGHT_VENTRICLE",
    "SCAR_EXTENT",
    "SCAR_EXTENT_FWHM",
    "SCAR_EXTENT_NSD",
    "SCAR_TISSUE",
    "SEGMENT_LGE_MYOCARDIUM",
    "SEGMENT_LV_BLOOD_POOL",
    "SEGMENT_MVO",
    "SEGMENT_MYOCARDIUM",
    "SEGMENT_RV_BLOOD_POOL",
    "SEGMENT_SCAR",
    "STANDARD_DEVIATION",
    "T1",
    "T1_Z_SCORE",
    "TISSUE",
    "UCUM_GRAM",
    "UCUM_MILLILITER",
    "UCUM_MILLIMETER",
    "UCUM_MILLISECOND",
    "UCUM_NO_UNITS",
    "UCUM_PERCENT",
    "UCUM_PIXELS",
    "UCUM_SQUARE_MILLIMETER",
    "VOLUME",
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

SCAR_TISSUE: Final = Code("12402003", "SCT", "Scar tissue")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE: Final = Code(
    "49755003", "SCT", "Morphologically Abnormal Structure"
)
MICROVASCULAR_OBSTRUCTION: Final = Code("mvo", PRIVATE_SCHEME, "Microvascular obstruction")
# Measurement concepts (CID 7469 / CID 218)
T1: Final = Code("113063", "DCM", "T1")
AREA: Final = Code("42798000", "SCT", "Area")
WALL_THICKNESS: Final = Code("122445", "DCM", "Wall Thickness")
NUMBER_OF_PIXELS: Final = Code("number-of-pixels", PRIVATE_SCHEME, "Number of pixels")
MASS: Final = Code("118538004", "SCT", "Mass")
VOLUME: Final = Code("118565006", "SCT", "Volume")
SCAR_EXTENT: Final = Code("scar-percent-lv-mass", PRIVATE_SCHEME, "Scar extent (% of LV mass)")
SCAR_EXTENT_NSD: Final = Code(
    "scar-percent-lv-mass-nsd", PRIVATE_SCHEME, "Scar extent, n-SD threshold (% of LV mass)"
)
SCAR_EXTENT_FWHM: Final = Code(
    "scar-percent-lv-mass-fwhm", PRIVATE_SCHEME, "Scar extent, FWHM threshold (% of LV mass)"
)
MVO_EXTENT: Final = Code("mvo-percent-lv-mass", PRIVATE_SCHEME, "MVO extent (% of LV mass)")
MAX_TRANSMURALITY: Final = Code(
    "max-transmurality", PRIVATE_SCHEME, "Maximum transmural extent of scar"
)
AREA_FRACTION: Final = Code("area-percent", PRIVATE_SCHEME, "Fraction of myocardial area")
T1_Z_SCORE: Final = Code("t1-z-score", PRIVATE_SCHEME, "T1 z-score against the normal range")
# Native T1 radiomics: the site model's rad-score (log-odds of its outcome, unitless) and the
# probability of LV reverse remodelling from a published logistic model (issue 6); neither
# has a standard concept.
RADSCORE: Final = Code("radscore", PRIVATE_SCHEME, "Radiomics score (rad-score)")
LVRR_PROBABILITY: Final = Code(
    "lvrr-probability", PRIVATE_SCHEME, "Probability of LV reverse remodelling"
)

# Infarct call of an LGE study (issue 15).  Codes checked in pydicom 3.0's PS3.16 tables
# (pydicom.sr._concepts_dict / _cid_dict): "Myocardial infarction" SCT 22298006 (CID 3121
# Cardiac Diagnosis); presence values from CID 240 "Present-Absent-Undetermined" (Present
# SCT 52101004, Absent SCT 272519000, Undetermined SCT 373068000); the ischaemic pattern as
# "Ischemic heart disease" SCT 414545008 (CID 3727); certainty under DCM 111012 "Certainty of
# Finding" (CID 6048) with SCT High 75540009 / Medium 255508009 / Low 62482003; coronary
# arteries of the territory from CID 12292 (LAD SCT 59438005, RCA SCT 13647002, circumflex
# SCT 57396003).  PS3.16 has no concept for a non-ischaemic enhancement pattern, for the
# pattern itself or for a coronary territory: those are private.
MYOCARDIAL_INFARCTION: Final = Code("22298006", "SCT", "Myocardial infarction")
PRESENT: Final = Code("52101004", "SCT", "Present")
ABSENT: Final = Code("272519000", "SCT", "Absent")
UNDETERMINED: Final = Code("373068000", "SCT", "Undetermined")
ISCHEMIC_HEART_DISEASE: Final = Code("414545008", "SCT", "Ischemic heart disease")
NON_ISCHAEMIC_ENHANCEMENT: Final = Code(
    "non-ischaemic-lge", PRIVATE_SCHEME, "Non-ischaemic late enhancement pattern"
)
MIXED_ENHANCEMENT: Final = Code(
    "mixed-lge", PRIVATE_SCHEME, "Ischaemic and non-ischaemic late enhancement patterns"
)
NO_ENHANCEMENT: Final = Code("no-lge", PRIVATE_SCHEME, "No late enhancement pattern")
LGE_PATTERN: Final = Code("lge-pattern", PRIVATE_SCHEME, "Late enhancement pattern")
CORONARY_TERRITORY: Final = Code("coronary-territory", PRIVATE_SCHEME, "Coronary territory")
CERTAINTY_OF_FINDING: Final = Code("111012", "DCM", "Certainty of Finding")
HIGH: Final = Code("75540009", "SCT", "High")
MEDIUM: Final = Code("255508009", "SCT", "Medium")
LOW: Final = Code("62482003", "SCT", "Low")
LEFT_ANTERIOR_DESCENDING_ARTERY: Final = Code(
    "59438005", "SCT", "Left anterior descending coronary artery"
)
RIGHT_CORONARY_ARTERY: Final = Code("13647002", "SCT", "Right coronary artery")
CIRCUMFLEX_CORONARY_ARTERY: Final = Code("57396003", "SCT", "Circumflex coronary artery")
INFARCT_PROBABILITY: Final = Code(
    "infarct-probability", PRIVATE_SCHEME, "Probability of myocardial infarction (site model)"
)
ENHANCED_VOLUME_ISCHAEMIC: Final = Code(
    "ischaemic-lge-percent", PRIVATE_SCHEME,
    "Subendocardial or transmural enhancement (% of LV myocardium)"
)

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
UCUM_GRAM: Final = Code("g", "UCUM", "gram")
UCUM_NO_UNITS: Final = Code("1", "UCUM", "no units")
UCUM_MILLILITER: Final = Code("ml", "UCUM", "milliliter")
# AHA 17-segment model sites (CID 3717), by segment number 1-16
AHA_SEGMENT_SITES: Final = {
    1: Code("264850008", "SCT", "left ventricle basal anterior segment"),
    2: Code("396482007", "SCT", "left ventricle basal anteroseptal segment"),
    3: Code("396646008", "SCT", "left ventricle basal inferoseptal segment"),
    4: Code("264846001", "SCT", "left ventricle basal inferior segment"),
    5: Code("396652009", "SCT", "left ventricle basal inferolateral segment"),
    6: Code("396654005", "SCT", "left ventricle basal anterolateral segment"),
    7: Code("264848000", "SCT", "left ventricle mid anterior segment"),
    8: Code("396647004", "SCT", "left ventricle mid anteroseptal segment"),
    9: Code("396649001", "SCT", "left ventricle mid inferoseptal segment"),
    10: Code("264847005", "SCT", "left ventricle mid inferior segment"),
    11: Code("396655006", "SCT", "left ventricle mid inferolateral segment"),
    12: Code("396656007", "SCT", "left ventricle mid anterolateral segment"),
    13: Code("264844003", "SCT", "left ventricle apical anterior segment"),
    14: Code("264845002", "SCT", "left ventricle apical septal segment"),
    15: Code("264849008", "SCT", "left ventricle apical inferior segment"),
    16: Code("264853005", "SCT", "left ventricle apical lateral segment"),
}

# Recommended display colours (RGB): red myocardium, yellow LV blood, blue RV blood, the
# usual cardiac-MR contour colours (red epicardium/myocardium, yellow-green endocardium).
COLOUR_MYOCARDIUM: Final = (220, 40, 40)
COLOUR_LV_BLOOD_POOL: Final = (250, 220, 40)
COLOUR_RV_BLOOD_POOL: Final = (60, 120, 230)
COLOUR_SCAR: Final = (40, 230, 120)
COLOUR_MVO: Final = (200, 60, 230)

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

SEGMENT_LGE_MYOCARDIUM: Final = dataclasses.replace(
    SEGMENT_MYOCARDIUM, includes=(Label.SCAR, Label.MVO)
)
"""The whole LV wall of an LGE result: healthy myocardium, scar and MVO."""

SEGMENT_SCAR: Final = SegmentDefinition(
    label=Label.SCAR,
    name="LV myocardial scar (LGE)",
    category=TISSUE,
    property_type=SCAR_TISSUE,
    colour_rgb=COLOUR_SCAR,
    anatomic_region=MYOCARDIUM,
    includes=(Label.MVO,),
)
"""Late-enhancing scar, microvascular obstruction included (as readers count it)."""

SEGMENT_MVO: Final = SegmentDefinition(
    label=Label.MVO,
    name="Microvascular obstruction",
    category=MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    property_type=MICROVASCULAR_OBSTRUCTION,
    colour_rgb=COLOUR_MVO,
    anatomic_region=MYOCARDIUM,
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
