"""Image-only myocardial infarct call of one LGE study, with its evidence.

A pure function of what the LGE analysis measured (its scar lesions with their wall layer,
AHA segments and RV-insertion site, the enhanced and myocardial volumes, the slices that
could not be segmented and the QC state).  No threshold here was chosen on real images:

* **Pattern.**  Ischaemic late enhancement starts at the subendocardium and extends towards
  the epicardium (the wavefront of ischaemic necrosis), so an infarct is subendocardial or
  transmural, in the territory of a coronary artery; mid-wall and subepicardial enhancement,
  and enhancement confined to the RV insertion points, are the non-ischaemic patterns
  (Mahrholdt H et al., "Delayed enhancement cardiovascular magnetic resonance assessment of
  non-ischaemic cardiomyopathies", Eur Heart J 2005;26:1461-1474, figure 1; Thygesen K et
  al., "Fourth universal definition of myocardial infarction (2018)", Circulation
  2018;138:e618-e651, section "Magnetic resonance imaging": LGE in a subendocardial or
  transmural pattern is the imaging evidence of infarction).  The wall layer of a lesion is
  :func:`plugins.lge.quantify.lesions`' (touches the endocardium, the epicardium, both or
  neither).
* **Extent.**  The call needs ischaemic-pattern enhancement of at least
  :data:`plugins.lge.analysis.PRESENCE_PERCENT` of the LV myocardium: the node's LGE
  presence rule, fixed before any real image was seen.  Lesions smaller than
  :data:`plugins.lge.quantify.MIN_LESION_MM2` per slice were already dropped as noise.
* **Territory.**  Each AHA segment's usual coronary artery follows the AHA 17-segment
  assignment (Cerqueira MD et al., "Standardized myocardial segmentation and nomenclature
  for tomographic imaging of the heart", Circulation 2002;105:539-542, figure 3): LAD 1, 2,
  7, 8, 13, 14, 17; RCA 3, 4, 9, 10, 15; LCx 5, 6, 11, 12, 16.  The paper stresses the
  variability of the coronary supply, so the territory is reported as evidence, not used to
  make the call.
* **QC.**  A study with no analysed slice, or whose scar extent was withheld (remote
  myocardium brighter than blood), is *indeterminate*.  A study with slices that could not be
  segmented is *indeterminate* unless the segmented slices already show an infarct: missing
  slices can hide one, never remove one.

The confidence is categorical and says why: *high* when nothing below lowers it, *medium*
with one reason, *low* with two or more.  Reasons: slices not segmented; WARNING or FAILURE
QC flags about the scar; the n-SD or FWHM %scar falls on the other side of the presence rule
than the network's; the ischaemic-pattern extent is within a factor of two of the rule
(either side); the ischaemic enhancement is not mostly (> 50 %) in one coronary territory.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from plugins.api import Code, Finding, Label, Measurement
from plugins.lge.quantify import Layer, Lesion
from plugins.lib import codes
from plugins.lib.cardiac.aha import SEGMENT_NAMES

__all__ = [
    "CORONARY_TERRITORY",
    "ISCHAEMIC_LAYERS",
    "Aetiology",
    "Confidence",
    "InfarctAssessment",
    "InfarctCall",
    "InfarctEvidence",
    "assess_infarct",
    "infarct_finding",
]


class InfarctCall(enum.StrEnum):
    """Whether the study shows a myocardial infarct."""

    PRESENT = "present"
    ABSENT = "absent"
    INDETERMINATE = "indeterminate"


class Aetiology(enum.StrEnum):
    """The pattern of the late enhancement found."""

    NONE = "none"
    ISCHAEMIC = "ischaemic"
    NON_ISCHAEMIC = "non-ischaemic"
    MIXED = "ischaemic and non-ischaemic"
    NOT_ASSESSED = "not assessed"


class Confidence(enum.StrEnum):
    """How far the evidence supports the call."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


CORONARY_TERRITORY: Final[Mapping[int, str]] = {
    **{segment: "LAD" for segment in (1, 2, 7, 8, 13, 14, 17)},
    **{segment: "RCA" for segment in (3, 4, 9, 10, 15)},
    **{segment: "LCx" for segment in (5, 6, 11, 12, 16)},
}
"""Usual coronary artery of each AHA segment (Cerqueira et al. 2002, figure 3)."""
ISCHAEMIC_LAYERS: Final = frozenset({Layer.SUBENDOCARDIAL, Layer.TRANSMURAL})
"""Wall layers of ischaemic enhancement (Mahrholdt et al. 2005)."""
TERRITORY_MAJORITY: Final = 0.5
"""Ischaemic enhancement is "in one territory" when more than this fraction lies there."""
MARGIN_FACTOR: Final = 2.0
"""An extent within this factor of the presence rule (either side) lowers the confidence."""


@dataclass(frozen=True)
class InfarctEvidence:
    """What the call rests on.

    Attributes
    ----------
    enhanced_volume_ml, enhanced_percent
        All late enhancement (network scar, MVO included) in ml and per cent of the LV
        myocardium.
    ischaemic_volume_ml, ischaemic_percent
        Enhancement in lesions of an ischaemic pattern (subendocardial or transmural, not
        confined to an RV insertion point).
    non_ischaemic_volume_ml, non_ischaemic_percent
        Enhancement in mid-wall or subepicardial lesions or at the RV insertion points.
    layers_ml
        Enhanced volume by wall layer.
    segments
        AHA segments holding ischaemic-pattern enhancement, most involved first.
    territories
        Fraction of the ischaemic-pattern enhancement (of the part on divided slices) in each
        coronary territory, largest first.
    max_transmurality_percent
        Largest transmural extent of scar in any AHA segment, when segments were divided.
    method_percents
        %scar by each scar method (network, n-SD, FWHM).
    slices_analysed, slices_not_segmented
        Slices segmented and slices the network could not segment.
    """

    enhanced_volume_ml: float
    enhanced_percent: float
    ischaemic_volume_ml: float
    ischaemic_percent: float
    non_ischaemic_volume_ml: float
    non_ischaemic_percent: float
    layers_ml: Mapping[str, float]
    segments: tuple[int, ...]
    territories: Mapping[str, float]
    max_transmurality_percent: float | None
    method_percents: Mapping[str, float]
    slices_analysed: int
    slices_not_segmented: int


@dataclass(frozen=True)
class InfarctAssessment:
    """The image-only infarct call of a study.

    Attributes
    ----------
    call
        Present, absent or indeterminate.
    aetiology
        Pattern of the enhancement found (ischaemic, non-ischaemic, both, none).
    confidence
        High, medium or low; ``reasons`` says what lowered it.
    qc_state
        ``"ok"``, ``"partial"`` (slices not segmented) or ``"failed"`` (nothing usable).
    reasons
        Sentences explaining the call and the confidence.
    evidence
        The measured facts, ``None`` when nothing was measured.
    rule
        The presence rule, as text.
    """

    call: InfarctCall
    aetiology: Aetiology
    confidence: Confidence
    qc_state: str
    reasons: tuple[str, ...]
    evidence: InfarctEvidence | None
    rule: str
    confidence_reasons: tuple[str, ...] = field(default=())

    @property
    def territory(self) -> str | None:
        """The coronary territory holding most of the ischaemic enhancement, if any."""
        if self.evidence is None or not self.evidence.territories:
            return None
        return next(iter(self.evidence.territories))

    def summary(self) -> str:
        """One line for a reader, e.g. ``"Infarct present (ischaemic, LAD), confidence high"``."""
        text = f"Infarct {self.call}"
        if self.call is InfarctCall.PRESENT:
            where = f", {self.territory}" if self.territory else ""
            text += f" ({self.aetiology}{where})"
        elif self.aetiology in (Aetiology.NON_ISCHAEMIC, Aetiology.MIXED):
            text += f" ({self.aetiology} enhancement)"
        return f"{text}, confidence {self.confidence} [image only]"

    def as_json(self) -> dict[str, Any]:
        """JSON-serialisable form for ``results.json``."""
        evidence = None
        if self.evidence is not None:
            e = self.evidence
            evidence = {
                "enhanced_volume_ml": round(e.enhanced_volume_ml, 2),
                "enhanced_percent": round(e.enhanced_percent, 2),
                "ischaemic_volume_ml": round(e.ischaemic_volume_ml, 2),
                "ischaemic_percent": round(e.ischaemic_percent, 2),
                "non_ischaemic_volume_ml": round(e.non_ischaemic_volume_ml, 2),
                "non_ischaemic_percent": round(e.non_ischaemic_percent, 2),
                "layers_ml": {k: round(v, 2) for k, v in e.layers_ml.items()},
                "segments": [
                    {"segment": n, "name": SEGMENT_NAMES.get(n, "apex"),
                     "territory": CORONARY_TERRITORY.get(n)} for n in e.segments],
                "territories": {k: round(v, 3) for k, v in e.territories.items()},
                "max_transmurality_percent": e.max_transmurality_percent,
                "method_percents": {k: round(v, 2) for k, v in e.method_percents.items()},
                "slices_analysed": e.slices_analysed,
                "slices_not_segmented": e.slices_not_segmented,
            }
        return {
            "call": str(self.call),
            "aetiology": str(self.aetiology),
            "territory": self.territory,
            "confidence": str(self.confidence),
            "confidence_reasons": list(self.confidence_reasons),
            "qc_state": self.qc_state,
            "basis": "image only",
            "summary": self.summary(),
            "reasons": list(self.reasons),
            "rule": self.rule,
            "evidence": evidence,
        }


def _is_ischaemic(lesion: Lesion) -> bool:
    return lesion.layer in ISCHAEMIC_LAYERS and not lesion.at_insertion


def _territories(found: Sequence[Lesion]) -> tuple[tuple[int, ...], dict[str, float]]:
    per_segment: dict[int, int] = {}
    for lesion in found:
        for number, count in lesion.segments.items():
            per_segment[number] = per_segment.get(number, 0) + count
    total = sum(per_segment.values())
    if not total:
        return (), {}
    per_territory: dict[str, float] = {}
    for number, count in per_segment.items():
        artery = CORONARY_TERRITORY.get(number)
        if artery is not None:
            per_territory[artery] = per_territory.get(artery, 0.0) + count / total
    segments = tuple(sorted(per_segment, key=lambda n: (-per_segment[n], n)))
    ranked = dict(sorted(per_territory.items(), key=lambda kv: (-kv[1], kv[0])))
    return segments, ranked


def assess_infarct(
    found: Sequence[Lesion],
    *,
    slab_mm: float,
    myocardium_volume_ml: float,
    enhanced_volume_ml: float,
    presence_percent: float,
    slices_analysed: int,
    slices_not_segmented: int,
    method_percents: Mapping[str, float] | None = None,
    max_transmurality_percent: float | None = None,
    withheld_reason: str | None = None,
    scar_warnings: Sequence[str] = (),
) -> InfarctAssessment:
    """Call a study's infarct present, absent or indeterminate from its LGE lesions.

    Parameters
    ----------
    found
        The study's scar lesions (network scar), with layer, AHA segments and insertion site.
    slab_mm
        Slab of each slice (spacing between slice centres): lesion areas times it are volumes.
    myocardium_volume_ml, enhanced_volume_ml
        LV myocardium and all enhancement of the analysed slices.
    presence_percent
        Least ischaemic-pattern enhancement, per cent of the myocardium, of a present call.
    slices_analysed, slices_not_segmented
        Slices segmented and slices that failed segmentation.
    method_percents
        %scar by method (``"network"``, ``"n-SD"``, ``"FWHM"``), for the confidence.
    max_transmurality_percent
        Largest segmental transmurality, reported as evidence.
    withheld_reason
        Why scar extent was not reported (then the call is indeterminate).
    scar_warnings
        Codes of WARNING or FAILURE QC flags about the scar (each lowers the confidence).

    Returns
    -------
    InfarctAssessment
    """
    rule = (f"present when subendocardial or transmural enhancement (not confined to an RV "
            f"insertion point) is >= {presence_percent:g} % of the LV myocardium")
    if slices_analysed == 0 or myocardium_volume_ml <= 0.0:
        return InfarctAssessment(
            InfarctCall.INDETERMINATE, Aetiology.NOT_ASSESSED, Confidence.LOW, "failed",
            ("No slice could be segmented: the study cannot be assessed.",), None, rule,
            ("no slice segmented",))
    if withheld_reason is not None:
        return InfarctAssessment(
            InfarctCall.INDETERMINATE, Aetiology.NOT_ASSESSED, Confidence.LOW, "failed",
            (f"Scar extent was withheld: {withheld_reason}",), None, rule,
            ("scar extent withheld",))

    def volume(lesions: Sequence[Lesion]) -> float:
        return sum(lesion.area_mm2 for lesion in lesions) * slab_mm / 1000.0

    ischaemic = [lesion for lesion in found if _is_ischaemic(lesion)]
    other = [lesion for lesion in found if not _is_ischaemic(lesion)]
    ischaemic_ml, other_ml = volume(ischaemic), volume(other)
    ischaemic_pct = 100.0 * ischaemic_ml / myocardium_volume_ml
    other_pct = 100.0 * other_ml / myocardium_volume_ml
    layers: dict[str, float] = {}
    for lesion in found:
        layers[str(lesion.layer)] = layers.get(str(lesion.layer), 0.0) \
            + lesion.area_mm2 * slab_mm / 1000.0
    segments, territories = _territories(ischaemic)
    evidence = InfarctEvidence(
        enhanced_volume_ml=enhanced_volume_ml,
        enhanced_percent=100.0 * enhanced_volume_ml / myocardium_volume_ml,
        ischaemic_volume_ml=ischaemic_ml,
        ischaemic_percent=ischaemic_pct,
        non_ischaemic_volume_ml=other_ml,
        non_ischaemic_percent=other_pct,
        layers_ml=layers,
        segments=segments,
        territories=territories,
        max_transmurality_percent=max_transmurality_percent,
        method_percents=dict(method_percents or {}),
        slices_analysed=slices_analysed,
        slices_not_segmented=slices_not_segmented,
    )
    ischaemic_found = ischaemic_pct >= presence_percent
    other_found = other_pct >= presence_percent
    aetiology = (Aetiology.MIXED if ischaemic_found and other_found
                 else Aetiology.ISCHAEMIC if ischaemic_found
                 else Aetiology.NON_ISCHAEMIC if other_found else Aetiology.NONE)
    reasons = [
        f"Subendocardial or transmural enhancement {ischaemic_ml:.1f} ml "
        f"({ischaemic_pct:.1f} % of the LV myocardium; rule >= {presence_percent:g} %)."]
    if other_ml > 0:
        reasons.append(f"Mid-wall, subepicardial or RV-insertion enhancement {other_ml:.1f} ml "
                       f"({other_pct:.1f} %).")
    qc_state = "partial" if slices_not_segmented else "ok"
    if ischaemic_found:
        call = InfarctCall.PRESENT
    elif slices_not_segmented:
        call = InfarctCall.INDETERMINATE
        reasons.append(f"{slices_not_segmented} slice(s) could not be segmented and may hide an "
                       "infarct: not called absent.")
    else:
        call = InfarctCall.ABSENT
    lowered: list[str] = []
    if slices_not_segmented:
        lowered.append(f"{slices_not_segmented} slice(s) not segmented")
    lowered.extend(f"QC {code}" for code in scar_warnings)
    percents = dict(method_percents or {})
    network_found = percents.get("network", evidence.enhanced_percent) >= presence_percent
    disagree = sorted(k for k, v in percents.items()
                      if k != "network" and (v >= presence_percent) != network_found)
    if disagree:
        lowered.append(f"{' and '.join(disagree)} %scar on the other side of the rule")
    if call is not InfarctCall.INDETERMINATE and (
            presence_percent / MARGIN_FACTOR <= ischaemic_pct
            < presence_percent * MARGIN_FACTOR):
        lowered.append(f"extent within a factor {MARGIN_FACTOR:g} of the rule")
    if ischaemic_found and territories and next(iter(territories.values())) \
            <= TERRITORY_MAJORITY:
        lowered.append("ischaemic enhancement not mostly in one coronary territory")
    if call is InfarctCall.INDETERMINATE:
        confidence = Confidence.LOW
    else:
        confidence = (Confidence.HIGH if not lowered
                      else Confidence.MEDIUM if len(lowered) == 1 else Confidence.LOW)
    return InfarctAssessment(call, aetiology, confidence, qc_state, tuple(reasons), evidence,
                             rule, tuple(lowered))


_CALL_CODES: Final[Mapping[InfarctCall, Code]] = {
    InfarctCall.PRESENT: codes.PRESENT,
    InfarctCall.ABSENT: codes.ABSENT,
    InfarctCall.INDETERMINATE: codes.UNDETERMINED,
}
_AETIOLOGY_CODES: Final[Mapping[Aetiology, Code]] = {
    Aetiology.ISCHAEMIC: codes.ISCHEMIC_HEART_DISEASE,
    Aetiology.NON_ISCHAEMIC: codes.NON_ISCHAEMIC_ENHANCEMENT,
    Aetiology.MIXED: codes.MIXED_ENHANCEMENT,
    Aetiology.NONE: codes.NO_ENHANCEMENT,
}
_CONFIDENCE_CODES: Final[Mapping[Confidence, Code]] = {
    Confidence.HIGH: codes.HIGH,
    Confidence.MEDIUM: codes.MEDIUM,
    Confidence.LOW: codes.LOW,
}
_ARTERY_CODES: Final[Mapping[str, Code]] = {
    "LAD": codes.LEFT_ANTERIOR_DESCENDING_ARTERY,
    "RCA": codes.RIGHT_CORONARY_ARTERY,
    "LCx": codes.CIRCUMFLEX_CORONARY_ARTERY,
}
FINDING_KEY: Final = "infarct"
"""Key of the finding and of its ``extra`` entry in ``results.json``."""


def infarct_finding(assessment: InfarctAssessment,
                    combined: Mapping[str, Any] | None = None) -> Finding:
    """The assessment as a coded finding: call, pattern, territory, certainty, evidence.

    ``combined`` is the site model's block (``extra["infarct"]["combined"]``): its probability
    becomes a measurement of the finding, or its reason a line of evidence.
    """
    qualifiers: list[tuple[Code, Code]] = []
    if assessment.aetiology in _AETIOLOGY_CODES:
        qualifiers.append((codes.LGE_PATTERN, _AETIOLOGY_CODES[assessment.aetiology]))
    territory = assessment.territory
    if assessment.call is InfarctCall.PRESENT and territory is not None \
            and territory in _ARTERY_CODES:
        qualifiers.append((codes.CORONARY_TERRITORY, _ARTERY_CODES[territory]))
    qualifiers.append((codes.CERTAINTY_OF_FINDING, _CONFIDENCE_CODES[assessment.confidence]))
    evidence = [*assessment.reasons, f"Rule: {assessment.rule}."]
    if assessment.confidence_reasons:
        evidence.append(f"Confidence {assessment.confidence}: "
                        f"{'; '.join(assessment.confidence_reasons)}.")
    measurements: list[Measurement] = []
    e = assessment.evidence
    if e is not None:
        if e.segments:
            evidence.append("AHA segments with ischaemic-pattern enhancement: " + ", ".join(
                f"{n} {SEGMENT_NAMES.get(n, 'apex')} ({CORONARY_TERRITORY.get(n)})"
                for n in e.segments) + ".")
        if e.territories:
            evidence.append("Coronary territories (Cerqueira 2002): " + ", ".join(
                f"{k} {100 * v:.0f} %" for k, v in e.territories.items()) + ".")
        evidence.insert(0, f"All late enhancement {e.enhanced_volume_ml:.1f} ml "
                           f"({e.enhanced_percent:.1f} % of the LV myocardium).")
        measurements = [
            Measurement("infarct_ischaemic_percent", codes.ENHANCED_VOLUME_ISCHAEMIC,
                        round(e.ischaemic_percent, 2), codes.UCUM_PERCENT, Label.SCAR),
        ]
    if combined is not None and combined.get("available"):
        measurements.append(Measurement(
            "infarct_probability_percent", codes.INFARCT_PROBABILITY,
            round(100.0 * float(combined["probability"]), 1), codes.UCUM_PERCENT, Label.SCAR))
        evidence.append(
            f"Site model (sha256 {str(combined['model_sha256'])[:12]}, CV AUC "
            f"{combined.get('model_cv_auc')}): probability {100 * combined['probability']:.0f} "
            "% from the clinical variables and image features.")
    elif combined is not None:
        evidence.append(str(combined.get("reason")))
    return Finding(
        key=FINDING_KEY,
        concept=codes.MYOCARDIAL_INFARCTION,
        value=_CALL_CODES[assessment.call],
        summary=assessment.summary(),
        qualifiers=tuple(qualifiers),
        evidence=tuple(evidence),
        measurements=tuple(measurements),
    )
