"""Tests of the router: default rules on realistic headers, rules validation, site overrides."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from node.routing import (
    CountOf,
    Outcome,
    RouteDecision,
    Router,
    RulesError,
    SeriesFacts,
    format_explanation,
    load_rules,
    route,
)

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BOTH = frozenset({"t1map", "lge"})
WITH_ECV = frozenset({"t1map", "ecv", "molli", "lge"})

SIEMENS: Mapping[str, Any] = {
    "Modality": "MR",
    "SOPClassUID": MR_IMAGE,
    "Manufacturer": "SIEMENS",
    "ManufacturerModelName": "MAGNETOM Sola",
    "MagneticFieldStrength": 1.5,
    "BodyPartExamined": "HEART",
    "PhotometricInterpretation": "MONOCHROME2",
}
PHILIPS: Mapping[str, Any] = {
    "Modality": "MR",
    "SOPClassUID": MR_IMAGE,
    "Manufacturer": "Philips Medical Systems",
    "ManufacturerModelName": "Ingenia",
    "MagneticFieldStrength": 3,
    "BodyPartExamined": "CHEST",
    "PhotometricInterpretation": "MONOCHROME2",
}
GE: Mapping[str, Any] = {
    "Modality": "MR",
    "SOPClassUID": MR_IMAGE,
    "Manufacturer": "GE MEDICAL SYSTEMS",
    "ManufacturerModelName": "SIGNA Artist",
    "MagneticFieldStrength": 1.5,
    "PhotometricInterpretation": "MONOCHROME2",
}

SIEMENS_MAP_TYPE = ["DERIVED", "PRIMARY", "T1 MAP", "MOCO", "T1", "DIS2D"]
MOLLI_TIS = [100, 180, 260, 1100, 1180, 1260, 2100, 3100]
ONE_PER_SLICE = {"instance_count": 3, "slice_count": 3, "max_images_per_slice": 1}


@dataclass(frozen=True)
class Case:
    """One series header variant and what the default rules must decide."""

    label: str
    vendor: Mapping[str, Any]
    header: Mapping[str, Any]
    expected: str | None
    deciding: str
    analysis: str = "t1map"
    available: frozenset[str] = field(default=BOTH)


CASES = [
    # ---- T1 maps that must be analysed -------------------------------------------------------
    Case(
        "siemens myomaps moco map",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1",
            "ProtocolName": "MOLLI_T1MAP_SAX",
            "ImageType": SIEMENS_MAP_TYPE,
            "SequenceName": "*tfi2d1_154",
            **ONE_PER_SLICE,
        },
        "t1map",
        "imagetype-t1-map",
    ),
    Case(
        "siemens inline map without moco",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI 5(3)3 b_T1MAP",
            "ImageType": "DERIVED\\PRIMARY\\T1 MAP\\ND",
            "InversionTime": 100,
            "distinct": {"InversionTime": [100]},
        },
        "t1map",
        "imagetype-t1-map",
    ),
    Case(
        "siemens map named only (ImageType generic)",
        SIEMENS,
        {"SeriesDescription": "T1MAP_SAX4_MOCO_T1", "ImageType": "DERIVED\\PRIMARY\\OTHER"},
        "t1map",
        "name-t1-map",
    ),
    Case(
        "siemens moco T1 output without T1MAP in the name",
        SIEMENS,
        {"SeriesDescription": "pre_SAX_MOCO_T1", "ImageType": "DERIVED\\PRIMARY\\OTHER"},
        "t1map",
        "name-moco-t1",
    ),
    Case(
        "siemens 3T native map with ContrastBolusAgent NONE",
        {**SIEMENS, "MagneticFieldStrength": 2.89},
        {
            "SeriesDescription": "ShMOLLI_192i_T1MAP",
            "ImageType": SIEMENS_MAP_TYPE,
            "ContrastBolusAgent": "NONE",
        },
        "t1map",
        "imagetype-t1-map",
    ),
    Case(
        "philips scanner map",
        PHILIPS,
        {
            "SeriesDescription": "T1map_MOLLI_SAX",
            "ImageType": "ORIGINAL\\PRIMARY\\T1 MAP\\T1\\UNSPECIFIED",
            **ONE_PER_SLICE,
        },
        "t1map",
        "imagetype-t1-map",
    ),
    Case(
        "philips derived T1 image",
        PHILIPS,
        {"SeriesDescription": "T1_MOLLI", "ImageType": "DERIVED\\PRIMARY\\T1\\T1"},
        "t1map",
        "imagetype-t1",
    ),
    Case(
        "philips series holding source images and the map",
        PHILIPS,
        {
            "SeriesDescription": "MOLLI_SAX_BH",
            "ImageType": "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE",
            "instance_count": 9,
            "slice_count": 1,
            "max_images_per_slice": 9,
            "distinct": {
                "InversionTime": MOLLI_TIS,
                "ImageType": [
                    "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE",
                    "ORIGINAL\\PRIMARY\\T1 MAP\\T1\\UNSPECIFIED",
                ],
            },
        },
        "t1map",
        "imagetype-t1-map",
    ),
    Case(
        "ge smart1map",
        GE,
        {"SeriesDescription": "SMART1Map SAX", "ImageType": "DERIVED\\PRIMARY"},
        "t1map",
        "name-t1-map",
    ),
    Case(
        "ge molli map",
        {**GE, "BodyPartExamined": "HEART"},
        {"SeriesDescription": "MOLLI T1 Map", "ImageType": "ORIGINAL\\PRIMARY\\OTHER"},
        "t1map",
        "name-t1-map",
    ),
    Case(
        "ge molli named map, one image per slice",
        GE,
        {"SeriesDescription": "MOLLI SAX", "ImageType": "DERIVED\\SECONDARY", **ONE_PER_SLICE},
        "t1map",
        "name-molli",
    ),
    Case(
        "siemens molli source images, fitted by the node",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI 5(3)3 b",
            "ImageType": "ORIGINAL\\PRIMARY\\M\\ND\\NORM",
            "SequenceName": "*tfi2d1_154",
            "instance_count": 8,
            "slice_count": 1,
            "max_images_per_slice": 8,
            "distinct": {"InversionTime": MOLLI_TIS},
        },
        "molli",
        "name-molli",
        analysis="molli",
        available=frozenset({"t1map", "molli", "lge"}),
    ),
    # ---- T1 mapping relatives that must not be analysed --------------------------------------
    Case(
        "siemens molli source images",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI 5(3)3 b",
            "ImageType": "ORIGINAL\\PRIMARY\\M\\ND\\NORM",
            "SequenceName": "*tfi2d1_154",
            "instance_count": 8,
            "slice_count": 1,
            "max_images_per_slice": 8,
            "distinct": {"InversionTime": MOLLI_TIS},
        },
        None,
        "source-many-tis",
    ),
    Case(
        "siemens motion-corrected source images",
        SIEMENS,
        {
            "SeriesDescription": "T1MAP_SAX4_MOCO",
            "ImageType": "ORIGINAL\\PRIMARY\\M\\MOCO\\DIS2D",
            "instance_count": 8,
        },
        None,
        "moco-source-name",
    ),
    Case(
        "philips source images without inversion times",
        PHILIPS,
        {
            "SeriesDescription": "MOLLI_SAX",
            "ImageType": "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE",
            "instance_count": 11,
        },
        None,
        "source-signal-imagetype",
    ),
    Case(
        "source images recognised by geometry alone",
        GE,
        {
            "SeriesDescription": "MOLLI SAX",
            "ImageType": "ORIGINAL\\PRIMARY\\OTHER",
            "instance_count": 8,
            "slice_count": 1,
            "max_images_per_slice": 8,
        },
        None,
        "source-images-per-slice",
    ),
    Case(
        "siemens T2 map",
        SIEMENS,
        {
            "SeriesDescription": "T2MAP_SAX_MOCO_T2",
            "ImageType": "DERIVED\\PRIMARY\\T2 MAP\\MOCO\\T2\\DIS2D",
        },
        None,
        "t2-map",
    ),
    Case(
        "T2* map",
        SIEMENS,
        {"SeriesDescription": "T2* map SAX", "ImageType": "DERIVED\\PRIMARY\\T2_STAR MAP"},
        None,
        "t2star-map",
    ),
    Case(
        "ECV map",
        SIEMENS,
        {"SeriesDescription": "ECV_T1MAP_SAX", "ImageType": "DERIVED\\PRIMARY\\ECV\\ND"},
        None,
        "ecv-map",
    ),
    Case(
        "post-contrast by name (siemens POST_MOLLI)",
        SIEMENS,
        {"SeriesDescription": "POST_MOLLI_T1MAP_MOCO_T1", "ImageType": SIEMENS_MAP_TYPE},
        None,
        "post-contrast-name",
    ),
    Case(
        "post-contrast by name (POSTCON1 prefix)",
        SIEMENS,
        {"SeriesDescription": "POSTCON1_T1MAP_SAX5_MOCO_T1", "ImageType": SIEMENS_MAP_TYPE},
        None,
        "post-contrast-name",
    ),
    Case(
        "post-contrast by name (+C)",
        PHILIPS,
        {"SeriesDescription": "T1map +C", "ImageType": "DERIVED\\PRIMARY\\T1\\T1"},
        None,
        "post-contrast-name",
    ),
    Case(
        "post-contrast by name (15 min Gd)",
        GE,
        {"SeriesDescription": "T1 Map GD 15min", "ImageType": "ORIGINAL\\PRIMARY\\OTHER"},
        None,
        "post-contrast-name",
    ),
    Case(
        "post-contrast by header only",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1",
            "ImageType": SIEMENS_MAP_TYPE,
            "ContrastBolusAgent": "Gadovist 1.0",
        },
        None,
        "contrast-agent-header",
    ),
    Case(
        "goodness-of-fit map",
        PHILIPS,
        {"SeriesDescription": "T1map_GOF", "ImageType": "DERIVED\\PRIMARY\\T1\\T1"},
        None,
        "fit-quality-map",
    ),
    Case(
        "standard deviation map",
        SIEMENS,
        {"SeriesDescription": "MOLLI_T1MAP_SD", "ImageType": SIEMENS_MAP_TYPE},
        None,
        "fit-quality-map",
    ),
    Case(
        "R-squared map",
        GE,
        {"SeriesDescription": "T1 Map R2", "ImageType": "DERIVED\\PRIMARY"},
        None,
        "fit-quality-map",
    ),
    Case(
        "apparent T1* map",
        SIEMENS,
        {"SeriesDescription": "pre_MOLLI_MOCO_T1S", "ImageType": "DERIVED\\PRIMARY\\OTHER"},
        None,
        "t1-star",
    ),
    Case(
        "localiser",
        SIEMENS,
        {"SeriesDescription": "localizer", "ImageType": "ORIGINAL\\PRIMARY\\LOCALIZER"},
        None,
        "localiser",
    ),
    Case(
        "non-MR object named T1 map",
        {**SIEMENS, "Modality": "OT"},
        {"SeriesDescription": "T1 map", "ImageType": "DERIVED\\SECONDARY"},
        None,
        "modality-mr",
    ),
    Case(
        "secondary capture of a T1 map",
        {**SIEMENS, "SOPClassUID": SECONDARY_CAPTURE},
        {"SeriesDescription": "T1 map report", "ImageType": "DERIVED\\SECONDARY"},
        None,
        "mr-image-storage",
    ),
    Case(
        "colour T1 map",
        {**SIEMENS, "PhotometricInterpretation": "RGB"},
        {"SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1", "ImageType": SIEMENS_MAP_TYPE},
        None,
        "colour-display",
    ),
    Case(
        "brain T1 map",
        {**SIEMENS, "BodyPartExamined": "BRAIN"},
        {"SeriesDescription": "T1map_MP2RAGE", "ImageType": "DERIVED\\PRIMARY\\T1 MAP\\ND"},
        None,
        "non-cardiac-body-part",
    ),
    Case(
        "kidney MOLLI map with no body part",
        {k: v for k, v in SIEMENS.items() if k != "BodyPartExamined"},
        {
            "SeriesDescription": "T1map_kidneys_cor-oblique_mbh_T1map",
            "ImageType": SIEMENS_MAP_TYPE,
        },
        None,
        "non-cardiac-organ-name",
    ),
    Case(
        "0.55 T map",
        {**SIEMENS, "MagneticFieldStrength": 0.55},
        {"SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1", "ImageType": SIEMENS_MAP_TYPE},
        None,
        "field-strength",
    ),
    Case(
        "T1rho map",
        PHILIPS,
        {"SeriesDescription": "T1rho_map_SAX", "ImageType": "DERIVED\\PRIMARY\\T1RHO"},
        None,
        "t1rho",
    ),
    Case(
        "own output sent back to the node",
        {**SIEMENS, "Manufacturer": "cmr-node project"},
        {"SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1", "ImageType": SIEMENS_MAP_TYPE},
        None,
        "own-output",
    ),
    # ---- LGE (the next analysis) -------------------------------------------------------------
    Case(
        "siemens LGE PSIR stack",
        SIEMENS,
        {
            "SeriesDescription": "LGE_PSIR_SAX",
            "ImageType": "DERIVED\\PRIMARY\\PSIR\\NORM",
            "ScanningSequence": "GR\\IR",
            "SequenceName": "*tfl2d1_16",
            "InversionTime": 300,
            "ContrastBolusAgent": "Gadovist",
            "instance_count": 12,
            "slice_count": 12,
            "max_images_per_slice": 1,
        },
        "lge",
        "name-lge",
        analysis="lge",
    ),
    Case(
        "siemens TFL PSIR magnitude",
        SIEMENS,
        {
            "SeriesDescription": "TFL_PSIR_MAG_SAX",
            "ImageType": "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D",
            "ScanningSequence": "GR\\IR",
            "InversionTime": 320,
        },
        "lge",
        "name-psir",
        analysis="lge",
    ),
    Case(
        "ge PSMDE",
        GE,
        {"SeriesDescription": "PSMDE SAX", "ScanningSequence": "GR\\IR", "InversionTime": 280},
        "lge",
        "name-lge",
        analysis="lge",
    ),
    Case(
        "philips IR TFE after contrast, no LGE naming",
        PHILIPS,
        {
            "SeriesDescription": "SAX_IR_TFE_BH",
            "ImageType": "ORIGINAL\\PRIMARY\\M_IR\\M\\IR",
            "ScanningSequence": "GR\\IR",
            "InversionTime": 280,
            "ContrastBolusAgent": "Dotarem",
        },
        "lge",
        "ir-gre-post-contrast",
        analysis="lge",
    ),
    Case(
        "siemens magnitude IR without LGE naming",
        SIEMENS,
        {"SeriesDescription": "SAX_IR_MAG", "ScanningSequence": "GR\\IR", "InversionTime": 330},
        "lge",
        "ir-magnitude",
        analysis="lge",
    ),
    Case(
        "LGE series when the lge plugin is not installed",
        SIEMENS,
        {"SeriesDescription": "LGE_PSIR_SAX", "ScanningSequence": "GR\\IR", "InversionTime": 300},
        None,
        "name-lge",
        analysis="lge",
        available=frozenset({"t1map"}),
    ),
    Case(
        "TI scout after contrast",
        SIEMENS,
        {
            "SeriesDescription": "TI_Scout_SAX",
            "ScanningSequence": "GR\\IR",
            "InversionTime": 250,
            "ContrastBolusAgent": "Gadovist",
            "instance_count": 25,
            "slice_count": 1,
            "max_images_per_slice": 25,
            "distinct": {"InversionTime": list(range(150, 400, 10))},
        },
        None,
        "ti-scout",
        analysis="lge",
    ),
    Case(
        "IR cine after contrast",
        PHILIPS,
        {
            "SeriesDescription": "SAX_cine_IR",
            "ScanningSequence": "GR\\IR",
            "InversionTime": 300,
            "ContrastBolusAgent": "Dotarem",
            "CardiacNumberOfImages": 30,
        },
        None,
        "cine",
        analysis="lge",
    ),
    Case(
        "flow magnitude named MAG",
        SIEMENS,
        {"SeriesDescription": "flow_aorta_MAG", "ScanningSequence": "GR"},
        None,
        "inversion-prepared",
        analysis="lge",
    ),
    Case(
        "dark-blood STIR",
        SIEMENS,
        {
            "SeriesDescription": "DE_T2_TIRM_SAX",
            "ScanningSequence": "SE\\IR",
            "InversionTime": 160,
        },
        None,
        "spin-echo",
        analysis="lge",
    ),
    Case(
        "T1 map is not LGE",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1",
            "ImageType": SIEMENS_MAP_TYPE,
            "ScanningSequence": "GR\\IR",
            "InversionTime": 300,
        },
        "t1map",
        "parametric-map",
        analysis="lge",
    ),
    # ---- post-contrast T1 maps: the ECV analysis ----------------------------------------------
    Case(
        "ecv: siemens post-contrast map by name and header",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI_4(1)3(1)2_SAX_POST_T1MAP",
            "ImageType": SIEMENS_MAP_TYPE,
            "ContrastBolusAgent": "Gadobutrol",
            **ONE_PER_SLICE,
        },
        "ecv",
        "imagetype-t1-map",
        analysis="ecv",
        available=WITH_ECV,
    ),
    Case(
        "ecv: post-contrast by header only (name says nothing)",
        PHILIPS,
        {
            "SeriesDescription": "T1map SAX",
            "ImageType": "DERIVED\\PRIMARY\\T1\\T1",
            "ContrastBolusAgent": "Dotarem",
        },
        "ecv",
        "imagetype-t1",
        analysis="ecv",
        available=WITH_ECV,
    ),
    Case(
        "ecv: GE map named 15 min Gd",
        GE,
        {"SeriesDescription": "T1 Map GD 15min", "ImageType": "ORIGINAL\\PRIMARY\\OTHER"},
        "ecv",
        "name-t1-map",
        analysis="ecv",
        available=WITH_ECV,
    ),
    Case(
        "ecv: native map is not post-contrast",
        SIEMENS,
        {"SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1", "ImageType": SIEMENS_MAP_TYPE},
        "t1map",
        "post-contrast",
        analysis="ecv",
        available=WITH_ECV,
    ),
    Case(
        "ecv: the scanner's ECV map is not analysed",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI_SAX_ECV_MAP",
            "ImageType": "DERIVED\\SECONDARY\\ECV MAP\\MOCO",
            "ContrastBolusAgent": "Gadobutrol",
        },
        None,
        "ecv-map",
        analysis="ecv",
        available=WITH_ECV,
    ),
    Case(
        "ecv: post-contrast MOLLI source images are not a map",
        SIEMENS,
        {
            "SeriesDescription": "MOLLI_SAX_POST",
            "ImageType": "ORIGINAL\\PRIMARY\\M\\ND",
            "ContrastBolusAgent": "Gadobutrol",
            "instance_count": 8,
            "slice_count": 1,
            "max_images_per_slice": 8,
            "distinct": {"InversionTime": MOLLI_TIS},
        },
        None,
        "source-many-tis",
        analysis="ecv",
        available=WITH_ECV,
    ),

]


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def _facts(vendor: Mapping[str, Any], header: Mapping[str, Any]) -> SeriesFacts:
    return SeriesFacts.from_dict({"SeriesInstanceUID": generate_uid(), **vendor, **header})


def test_case_table_is_large_and_covers_every_vendor():
    assert len(CASES) >= 25
    for vendor in (SIEMENS, PHILIPS, GE):
        outcomes = {c.expected for c in CASES if c.vendor["Manufacturer"] == vendor["Manufacturer"]}
        assert "t1map" in outcomes and None in outcomes


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_default_rules_route_realistic_headers(rules, case: Case):
    decision = route(rules, _facts(case.vendor, case.header), case.available)
    assert decision.analysis == case.expected, format_explanation(decision)
    trace = decision.trace(case.analysis)
    text = "\n".join(decision.explanation)
    assert case.deciding in text, text
    if case.expected == case.analysis:
        assert decision.matched_rule == f"{case.analysis}/{case.deciding}"
        assert trace.outcome is Outcome.MATCHED
    elif case.analysis not in case.available:
        assert trace.outcome is Outcome.NOT_INSTALLED
        assert trace.matched_rule == f"{case.analysis}/{case.deciding}"
        assert "not installed" in text
    else:
        deciding = {r.condition_id for r in (*trace.rejected_by, *trace.failed_requirements)}
        assert case.deciding in deciding, trace.explain()
        assert trace.outcome is not Outcome.MATCHED


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_headline_is_short_and_carries_no_header_text(rules, case: Case):
    header = {**case.header, "ImageComments": "Patient Jane Doe, room 12"}
    decision = route(rules, _facts(case.vendor, header), case.available)
    headline = decision.headline()
    assert 0 < len(headline) <= 120, headline
    assert "Jane Doe" not in headline
    description = str(case.header.get("SeriesDescription", "")).strip()
    if description:
        assert description not in headline
    if decision.analysis is not None:
        assert headline.startswith(decision.analysis) and str(decision.matched_rule) in headline
    else:
        deciding = {
            r.condition_id
            for t in decision.traces
            for r in (*t.rejected_by, *t.failed_requirements)
        }
        assert not deciding or any(cid in headline for cid in deciding) or (
            "not installed" in headline
        ), headline


def test_matched_decision_names_rule_and_summarises_other_analyses(rules):
    facts = _facts(
        SIEMENS, {"SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1", "ImageType": SIEMENS_MAP_TYPE}
    )
    decision = route(rules, facts, BOTH)
    assert decision.explanation[0].startswith("t1map: identified by 'imagetype-t1-map'")
    assert any(line.startswith("lge: ") for line in decision.explanation)
    assert decision.warnings == ()


def test_unmatched_series_explains_why_for_every_analysis(rules):
    facts = _facts(GE, {"SeriesDescription": "SAX cine FIESTA", "ScanningSequence": "GR"})
    decision = route(rules, facts, BOTH)
    assert decision.analysis is None and decision.matched_rule is None
    assert decision.explanation[0] == "no analysis applies to this series"
    t1_line = next(
        line for line in decision.explanation if line.startswith("t1map: not identified")
    )
    for cid in ("imagetype-t1-map", "name-t1-map", "name-molli"):
        assert cid in t1_line
    assert any(
        line.startswith("lge: requirement 'inversion-prepared'") for line in decision.explanation
    )
    text = format_explanation(decision)
    assert "-> no analysis" in text
    assert "SAX cine FIESTA" in text
    # the verbose listing shows every condition with the value it looked at
    assert "identify no   name-t1-map" in text
    assert "SeriesDescription='SAX cine FIESTA'" in text
    assert text.count("\n") > len(decision.explanation) + 20


def test_format_explanation_of_several_decisions(rules):
    decisions = [route(rules, _facts(c.vendor, c.header), c.available) for c in CASES[:3]]
    text = format_explanation(decisions, verbose=False)
    assert text.count("series ") >= 3
    assert text.count("-> t1map (rule t1map/") == 3
    assert "require " not in text  # the condition table only appears when verbose


def test_two_matching_analyses_use_priority_and_warn(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(
        textwrap.dedent(
            """
            schema = 1
            priority = ["beta", "alpha"]

            [analyses.alpha]
            [[analyses.alpha.identify]]
            id = "map-name"
            name = "named map"
            type = "regex"
            attribute = "SeriesDescription"
            pattern = "map"

            [analyses.beta]
            [[analyses.beta.identify]]
            id = "t1-name"
            name = "named T1"
            type = "regex"
            attribute = "SeriesDescription"
            pattern = "t1"
            """
        )
    )
    rules = load_rules(path)
    decision = route(rules, SeriesFacts.from_dict({"SeriesDescription": "T1 map"}))
    assert decision.analysis == "beta"
    assert decision.matched_rule == "beta/t1-name"
    assert len(decision.warnings) == 1
    assert "alpha" in decision.warnings[0] and "priority" in decision.warnings[0]
    assert decision.warnings[0] in decision.explanation
    reordered = path.read_text().replace('["beta", "alpha"]', '["alpha", "beta"]')
    path.write_text(reordered)
    assert (
        route(load_rules(path), SeriesFacts.from_dict({"SeriesDescription": "T1 map"})).analysis
        == "alpha"
    )


# --------------------------------------------------------------------------------------------
# Facts from DICOM headers
# --------------------------------------------------------------------------------------------


def _instance(number: int, position_z: float, **attributes: Any) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MR_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.MagneticFieldStrength = "1.5"
    ds.BodyPartExamined = "HEART"
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [-150.0, -120.0, position_z]
    ds.ImageOrientationPatient = [0.7, 0.7, 0.14, -0.1, 0.3, -0.95]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _write_and_read(datasets: list[Dataset], folder: Path) -> list[Dataset]:
    """Round-trip through files, read the way the node reads headers."""
    headers: list[Dataset] = []
    for ds in datasets:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        headers.append(pydicom.dcmread(path, stop_before_pixels=True))
    return headers


def test_facts_of_molli_source_series_from_files(rules, tmp_path):
    source = [
        _instance(
            n + 1,
            10.0,
            SeriesDescription="MOLLI 5(3)3 b",
            ImageType=["ORIGINAL", "PRIMARY", "M", "ND"],
            InversionTime=str(ti),
            SequenceName="*tfi2d1_154",
        )
        for n, ti in enumerate(MOLLI_TIS)
    ]
    headers = _write_and_read(list(reversed(source)), tmp_path)
    facts = rules.facts(headers)
    assert facts.instance_count == 8 and facts.frame_count == 8
    assert facts.slice_count == 1 and facts.max_images_per_slice == 8
    assert facts.distinct_count("InversionTime") == 8
    assert facts.header["InstanceNumber"] == 1  # the representative is the first instance
    assert facts.header["ImageType"] == ("ORIGINAL", "PRIMARY", "M", "ND")
    decision = route(rules, facts, BOTH)
    assert decision.analysis is None
    assert {"source-many-tis", "source-images-per-slice", "source-signal-imagetype"} <= {
        r.condition_id for r in decision.trace("t1map").rejected_by
    }


def test_facts_of_map_series_from_files(rules, tmp_path):
    maps = [
        _instance(
            n + 1,
            z,
            SeriesDescription="MOLLI_T1MAP_SAX_MOCO_T1",
            ImageType=SIEMENS_MAP_TYPE,
            SequenceName="*tfi2d1_154",
        )
        for n, z in enumerate((-10.0, 0.0, 10.0))
    ]
    facts = SeriesFacts.from_datasets(_write_and_read(maps, tmp_path))
    assert facts.slice_count == 3 and facts.max_images_per_slice == 1
    assert facts.series_description == "MOLLI_T1MAP_SAX_MOCO_T1"
    assert facts.distinct_count("InversionTime") == 0
    decision = route(rules, facts, {"t1map"})
    assert decision.analysis == "t1map"
    assert decision.series_instance_uid == "1.2.826.0.1.3680043.8.498.1"


def _enhanced(inversion_times: list[float], frame_type: list[str]) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = ENHANCED_MR_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.Manufacturer = "Philips Medical Systems"
    ds.MagneticFieldStrength = 3
    ds.SeriesDescription = "MOLLI_SAX"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "MIXED", "NONE"]
    ds.NumberOfFrames = len(inversion_times)
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PlaneOrientationSequence = [orientation]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for ti in inversion_times:
        position = Dataset()
        position.ImagePositionPatient = [0, 0, 5.0]
        modifier = Dataset()
        modifier.InversionTimes = [ti]
        frame_kind = Dataset()
        frame_kind.FrameType = frame_type
        frame = Dataset()
        frame.PlanePositionSequence = [position]
        frame.MRModifierSequence = [modifier]
        frame.MRImageFrameTypeSequence = [frame_kind]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    return ds


def test_enhanced_multiframe_uses_per_frame_values(rules):
    source = rules.facts(
        [_enhanced([float(t) for t in MOLLI_TIS], ["ORIGINAL", "PRIMARY", "M_FFE", "M"])]
    )
    assert source.instance_count == 1 and source.frame_count == 8
    assert source.distinct_count("InversionTime") == 8
    assert source.count(CountOf.IMAGES_PER_SLICE) == 8
    assert source.header["InversionTime"] == 100  # filled from the first frame
    assert route(rules, source, BOTH).analysis is None

    mapped = rules.facts([_enhanced([0.0], ["DERIVED", "PRIMARY", "T1 MAP", "T1"])])
    decision = route(rules, mapped, BOTH)
    assert decision.analysis == "t1map"
    assert decision.matched_rule == "t1map/imagetype-t1-map"


def test_facts_dict_round_trip_and_errors():
    facts = SeriesFacts.from_dict(
        {
            "ImageType": ["DERIVED", "PRIMARY", "T1 MAP"],
            "InversionTime": "100",
            "SeriesDescription": "  T1 map  ",
            "ContrastBolusAgent": "",
            "instance_count": 4,
            "distinct": {"InversionTime": [100, 100.0004, 180]},
        }
    )
    assert facts.header["ImageType"] == ("DERIVED", "PRIMARY", "T1 MAP")
    assert facts.series_description == "T1 map"
    assert facts.get("ContrastBolusAgent") is None  # empty counts as absent
    assert facts.frame_count == 4
    assert facts.distinct_count("InversionTime") == 2  # values equal to 1e-3 are one value
    assert SeriesFacts.from_dict(facts.to_dict()) == facts
    with pytest.raises(ValueError, match="instance_count"):
        SeriesFacts.from_dict({"instance_count": -1})
    with pytest.raises(ValueError, match="at least one instance"):
        SeriesFacts.from_datasets([])


# --------------------------------------------------------------------------------------------
# Condition semantics
# --------------------------------------------------------------------------------------------


def _single_rule(tmp_path: Path, condition: str, group: str = "identify") -> Router:
    """A router whose only analysis 'x' has one ``identify`` rule matching everything
    plus ``condition`` in ``group``."""
    text = (
        textwrap.dedent(
            """
        [analyses.x]
        [[analyses.x.identify]]
        id = "anything"
        name = "any MR"
        type = "equals"
        attribute = "Modality"
        value = "MR"
        """
        )
        + f"\n[[analyses.x.{group}]]\n"
        + textwrap.dedent(condition)
    )
    path = tmp_path / "r.toml"
    path.write_text(text)
    return Router(load_rules(path))


@pytest.mark.parametrize(
    ("condition", "header", "passes"),
    [
        # regex on a multi-valued attribute: joined value or any element
        (
            "type='regex'\nattribute='ImageType'\npattern='PRIMARY\\\\T1 MAP'",
            {"ImageType": "DERIVED\\PRIMARY\\T1 MAP"},
            True,
        ),
        (
            "type='regex'\nattribute='ImageType'\npattern='^t1 map$'",
            {"ImageType": "DERIVED\\PRIMARY\\T1 MAP"},
            True,
        ),
        (
            "type='regex'\nattribute='ImageType'\npattern='^primary\\\\t2'",
            {"ImageType": "DERIVED\\PRIMARY\\T1 MAP"},
            False,
        ),
        # scope over per-image values
        (
            "type='regex'\nattribute='ImageType'\npattern='^m$'\nscope='all'",
            {"ImageType": "A\\M", "distinct": {"ImageType": ["A\\M", "A\\T1"]}},
            False,
        ),
        (
            "type='regex'\nattribute='ImageType'\npattern='^m$'",
            {"ImageType": "A\\M", "distinct": {"ImageType": ["A\\M", "A\\T1"]}},
            True,
        ),
        # negation does not apply to a missing value: if_missing decides
        ("type='regex'\nattribute='BodyPartExamined'\npattern='heart'\nnegate=true", {}, False),
        (
            "type='regex'\nattribute='BodyPartExamined'\npattern='heart'\nnegate=true\nif_missing=true",
            {},
            True,
        ),
        (
            "type='regex'\nattribute='BodyPartExamined'\npattern='heart'\nnegate=true",
            {"BodyPartExamined": "KNEE"},
            True,
        ),
        # equals: text case-insensitively, numbers numerically
        (
            "type='equals'\nattribute='Manufacturer'\nvalue=['GE MEDICAL SYSTEMS', 'siemens']",
            {"Manufacturer": "SIEMENS"},
            True,
        ),
        (
            "type='equals'\nattribute='MagneticFieldStrength'\nvalue=3",
            {"MagneticFieldStrength": "3.0"},
            True,
        ),
        (
            "type='equals'\nattribute='MagneticFieldStrength'\nvalue=3",
            {"MagneticFieldStrength": "1.5"},
            False,
        ),
        # numeric range, inclusive
        (
            "type='range'\nattribute='InversionTime'\nmin=200\nmax=450",
            {"InversionTime": "450"},
            True,
        ),
        (
            "type='range'\nattribute='InversionTime'\nmin=200\nmax=450",
            {"InversionTime": "451"},
            False,
        ),
        ("type='range'\nattribute='InversionTime'\nmin=200", {"InversionTime": "n/a"}, False),
        # presence
        (
            "type='present'\nattribute=['ContrastBolusAgent', 'ContrastBolusRoute']",
            {"ContrastBolusRoute": "IV"},
            True,
        ),
        ("type='absent'\nattribute='ContrastBolusAgent'", {"ContrastBolusAgent": " "}, True),
        # counts
        ("type='count'\nof='instances'\nmin=2\nmax=4", {"instance_count": 4}, True),
        ("type='count'\nof='slices'\nmin=2", {}, False),
        ("type='count'\nof='slices'\nmin=2\nif_missing=true", {}, True),
        (
            "type='distinct_count'\nattribute='InversionTime'\nmin=3",
            {"instance_count": 5, "distinct": {"InversionTime": [1, 2, 3]}},
            True,
        ),
        ("type='distinct_count'\nattribute='EchoTime'\nmax=1", {"instance_count": 5}, False),
        ("type='distinct_count'\nattribute='EchoTime'\nmax=1", {"EchoTime": 1.2}, True),
        # compound
        (
            "type='all'\nconditions=[{type='present', attribute='EchoTime'},"
            " {type='range', attribute='EchoTime', max=2}]",
            {"EchoTime": 1.2},
            True,
        ),
        (
            "type='any'\nconditions=[{type='present', attribute='EchoTime'},"
            " {type='range', attribute='EchoTime', max=2}]",
            {"EchoTime": 9},
            True,
        ),
        (
            "type='all'\nnegate=true\nconditions=[{type='present', attribute='EchoTime'}]",
            {"EchoTime": 9},
            False,
        ),
    ],
)
def test_condition_semantics(tmp_path, condition, header, passes):
    router = _single_rule(tmp_path, f"id='c'\nname='test condition'\n{condition}\n", "require")
    decision = router.route(SeriesFacts.from_dict({"Modality": "MR", **header}))
    result = decision.trace("x").require[0]
    assert result.passed is passes, result
    assert (decision.analysis == "x") is passes


# --------------------------------------------------------------------------------------------
# Rules validation
# --------------------------------------------------------------------------------------------

_VALID_IDENTIFY = """
[analyses.x]
[[analyses.x.identify]]
id = "ok"
name = "fine"
type = "regex"
attribute = "SeriesDescription"
pattern = "t1"
"""


def _plus_reject(body: str) -> str:
    """The valid rules plus one reject condition with ``body`` (TOML lines)."""
    return _VALID_IDENTIFY + "[[analyses.x.reject]]\nid='r'\nname='r'\n" + body + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _VALID_IDENTIFY.replace('type = "regex"', 'type = "regexp"'),
            "unknown condition type 'regexp'",
        ),
        (
            _VALID_IDENTIFY.replace('pattern = "t1"', 'pattern = "t1(map"'),
            "invalid regular expression",
        ),
        (
            _VALID_IDENTIFY.replace('"SeriesDescription"', '"SeriesDescripton"'),
            "did you mean 'SeriesDescription'",
        ),
        (
            _VALID_IDENTIFY.replace('"SeriesDescription"', '"T1Relaxation"'),
            "unknown DICOM keyword 'T1Relaxation'",
        ),
        (_VALID_IDENTIFY.replace("pattern =", "patern ="), "unknown key(s) 'patern'"),
        (_VALID_IDENTIFY.replace('name = "fine"\n', ""), "human-readable name"),
        (_VALID_IDENTIFY.replace('id = "ok"', 'id = "Not OK"'), "needs an id"),
        (_VALID_IDENTIFY + _VALID_IDENTIFY.split("\n", 2)[2], "'ok' is used twice"),
        (
            _plus_reject("type='range'\nattribute='InversionTime'\nmin=500\nmax=100"),
            "empty range",
        ),
        (
            _plus_reject("type='range'\nattribute='InversionTime'"),
            "give 'min', 'max' or both",
        ),
        (
            _plus_reject("type='count'\nof='slabs'\nmin=1"),
            "'of' must be one of",
        ),
        (
            _plus_reject("type='count'\nof='frames'\nmin=1.5"),
            "min must be an integer",
        ),
        (
            _plus_reject("type='any'\nconditions=[]"),
            "non-empty list 'conditions'",
        ),
        (
            _plus_reject("type='regex'\nattribute='ImageType'\npattern='x'\nscope='most'"),
            "scope must be 'any' or 'all'",
        ),
        (
            _plus_reject("type='regex'\nattribute='ImageType'\npattern='x'\nnegate='yes'"),
            "negate must be true or false",
        ),
        (
            _VALID_IDENTIFY.replace("[[analyses.x.identify]]", "[[analyses.x.require]]"),
            "at least one enabled identify",
        ),
        ('priority = ["x", "lge"]\n' + _VALID_IDENTIFY, "undefined analysis(es) lge"),
        ("schema = 2\n" + _VALID_IDENTIFY, "schema 2 is not supported"),
        ('extends = "site-b"\n' + _VALID_IDENTIFY, "extends = 'site-b' is not supported"),
        (
            _VALID_IDENTIFY.replace("[analyses.x]\n", "[analyses.x]\ndisable = ['nope']\n"),
            "disable names unknown condition(s) nope",
        ),
        ("colour = 'blue'\n" + _VALID_IDENTIFY, "unknown key(s) 'colour'"),
        ("[analyses.x\n", "not valid TOML"),
        ("schema = 1\n", "defines no analysis"),
    ],
)
def test_rules_validation_errors(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as excinfo:
        load_rules(path)
    assert message in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_missing_rules_file_is_a_rules_error(tmp_path):
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.toml")


def test_default_rules_are_valid_and_collect_what_they_use(rules):
    assert rules.priority == ("t1map", "ecv", "molli", "lge", "t2map")
    assert set(rules.analyses) == {"t1map", "ecv", "molli", "lge", "t2map"}
    for analysis in rules.analyses.values():
        assert analysis.enabled and analysis.identify
        ids = [c.id for _, c in analysis.conditions()]
        assert len(ids) == len(set(ids))
        assert all(c.name for _, c in analysis.conditions())
    assert {"InversionTime", "ImageType", "ContrastBolusAgent"} <= set(rules.instance_keywords)


# --------------------------------------------------------------------------------------------
# Site overrides
# --------------------------------------------------------------------------------------------


def _site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site-rules.toml"
    path.write_text('extends = "default"\n' + textwrap.dedent(text))
    return path


def test_site_disables_a_condition(rules, tmp_path):
    facts = _facts(
        SIEMENS,
        {
            "SeriesDescription": "pre_MOLLI_T1MAP_SAX_MOCO_T1",
            "ImageType": SIEMENS_MAP_TYPE,
            "ContrastBolusAgent": "DOTAREM",  # filled in for the whole exam at this site
        },
    )
    assert route(rules, facts, BOTH).analysis is None
    site = load_rules(_site(tmp_path, '[analyses.t1map]\ndisable = ["contrast-agent-header"]\n'))
    decision = route(site, facts, BOTH)
    assert decision.analysis == "t1map"
    assert "contrast-agent-header" not in {c.id for _, c in site.analyses["t1map"].conditions()}
    assert "extending" in site.source
    # other analyses keep their conditions
    assert len(site.analyses["lge"].reject) == len(rules.analyses["lge"].reject)


def test_site_adds_a_naming(rules, tmp_path):
    facts = _facts(
        PHILIPS, {"SeriesDescription": "NATIVE_QMAP_SAX", "ImageType": "DERIVED\\PRIMARY\\OTHER"}
    )
    assert route(rules, facts, BOTH).analysis is None
    site = load_rules(
        _site(
            tmp_path,
            """
            [[analyses.t1map.identify]]
            id = "site-native-qmap"
            name = "Our protocol name for native T1 maps"
            type = "regex"
            attribute = ["SeriesDescription", "ProtocolName"]
            pattern = '^native_qmap'
            """,
        )
    )
    decision = route(site, facts, BOTH)
    assert decision.analysis == "t1map"
    assert decision.matched_rule == "t1map/site-native-qmap"
    assert "Our protocol name for native T1 maps" in decision.explanation[0]
    # the default signatures are still there, the new one comes last
    assert [c.id for c in site.analyses["t1map"].identify][:-1] == [
        c.id for c in rules.analyses["t1map"].identify
    ]


def test_site_replaces_a_condition_by_id(tmp_path):
    facts = _facts(
        {**SIEMENS, "MagneticFieldStrength": 0.55},
        {"SeriesDescription": "MOLLI_T1MAP_SAX_MOCO_T1", "ImageType": SIEMENS_MAP_TYPE},
    )
    site = load_rules(
        _site(
            tmp_path,
            """
            [[analyses.t1map.require]]
            id = "field-strength"
            name = "Low-field and clinical field strengths"
            type = "range"
            attribute = "MagneticFieldStrength"
            min = 0.5
            max = 3.5
            """,
        )
    )
    assert route(site, facts, BOTH).analysis == "t1map"
    requirement = next(c for c in site.analyses["t1map"].require if c.id == "field-strength")
    assert requirement.name == "Low-field and clinical field strengths"


def test_site_disables_an_analysis_and_a_common_condition(tmp_path):
    site = load_rules(
        _site(
            tmp_path,
            """
            priority = ["lge", "t1map"]
            [common]
            disable = ["non-cardiac-organ-name"]
            [analyses.t1map]
            enabled = false
            """,
        )
    )
    # Analyses the site's priority leaves out keep their default order after those it names.
    assert site.priority == ("lge", "t1map", "ecv", "molli", "t2map")
    facts = _facts(SIEMENS, {"SeriesDescription": "MOLLI_T1MAP", "ImageType": SIEMENS_MAP_TYPE})
    decision = route(site, facts, BOTH)
    assert decision.analysis is None
    assert decision.trace("t1map").outcome is Outcome.DISABLED
    assert "t1map: disabled in the routing rules" in decision.explanation
    assert "non-cardiac-organ-name" not in {c.id for c in site.analyses["lge"].reject}


def test_site_cannot_move_a_condition_between_groups(tmp_path):
    path = _site(
        tmp_path,
        """
        [[analyses.t1map.reject]]
        id = "name-molli"
        name = "no MOLLI at all"
        type = "regex"
        attribute = "SeriesDescription"
        pattern = "molli"
        """,
    )
    with pytest.raises(RulesError, match="'name-molli' is a identify condition"):
        load_rules(path)


def test_site_rules_without_extends_replace_the_defaults(tmp_path):
    path = tmp_path / "complete.toml"
    path.write_text(_VALID_IDENTIFY)
    rules = load_rules(path)
    assert set(rules.analyses) == {"x"}
    decision = route(rules, SeriesFacts.from_dict({"SeriesDescription": "T1"}), {"x"})
    assert decision.analysis == "x"


def test_router_default_available_treats_every_analysis_as_installed(rules):
    facts = _facts(
        SIEMENS,
        {"SeriesDescription": "LGE_PSIR_SAX", "ScanningSequence": "GR\\IR", "InversionTime": 300},
    )
    assert Router(rules).route(facts).analysis == "lge"
    assert isinstance(Router(rules, ()).route(facts), RouteDecision)
    assert Router(rules, ()).route(facts).analysis is None
