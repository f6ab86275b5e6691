"""The sequence family of a series, and whether it was acquired with ECG gating.

The family names (:attr:`plugins.api.Acquisition.sequence_family`) are the keys of reference
ranges, so they are only given on evidence; otherwise "unknown".  Evidence, by family:

* **molli / shmolli / sasha / smart1map**: the series or protocol name — the sequences are
  vendor products or works-in-progress named so on the console (Siemens MyoMaps "MOLLI",
  Oxford ShMOLLI WIP "ShMOLLI", SASHA, GE "SMART1Map"); names are the only public marker.
* **look_locker**: TI scout / TI finder / Look-Locker names (Siemens "TI_Scout", Philips
  "LL" / "Look-Locker", GE "TI Scout" / "CINE IR").
* **psir**: a PSIR image (Siemens ImageType "PSIR"), a real-valued IR reconstruction
  (Philips ImageType "R_IR", dcm2niix issue 408 for the Philips ImageType layout), or the name
  (PSIR, GE "PSMDE").
* **ir_tfe_lge / ir_gre_lge**: an inversion-recovery magnitude acquisition with an LGE name,
  or post-contrast with one inversion time in the myocardial-nulling range; IR-TFE when the
  scanner says TFE (Philips: ImageType/SequenceName "TFE", or any Philips IR gradient echo),
  IR-GRE otherwise.
* **bssfp_cine**: a cine (name, or CardiacNumberOfImages >= 10) with a balanced SSFP readout:
  Siemens ``*tfi`` (trueFISP) sequence names, GE "FIESTA", Philips "BTFE" / "B-TFE" / "BFFE";
  "cine" when the readout is not known to be bSSFP.
* **perfusion**: first-pass perfusion names.
* **t2_prep**: T2 maps (T2-prepared bSSFP on all three vendors' product mapping).
* **localiser**: localiser / survey images (ImageType LOCALIZER, names).

ECG gating: TriggerTime (0018,1060) or HeartRate (0018,1088) or NominalInterval (0018,1062)
above 0, Cardiac Synchronization Technique (0018,9037) other than NONE (enhanced MR), Scan
Options (0018,0022) "CG" (cardiac gating) or "PPG" (peripheral pulse gating) (PS3.3 C.8.3.1),
or a cardiac sequence family or view name (SAX, 4CH, LVOT ...).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from node.vendor.access import HeaderView
from node.vendor.image_kind import ImageKind, image_type_tokens
from plugins.api import ContrastPhase

__all__ = ["CARDIAC_FAMILIES", "SeriesShape", "is_gated", "sequence_family"]

CARDIAC_FAMILIES: Final = frozenset({
    "molli", "shmolli", "sasha", "smart1map", "look_locker", "ir_gre_lge", "ir_tfe_lge",
    "psir", "bssfp_cine", "perfusion", "t2_prep",
})

_B = r"(?<![a-z0-9])"
_E = r"(?![a-z0-9])"
_NAMES: Final = (
    ("localiser", re.compile(
        rf"{_B}(locali[sz]er|loc|survey|smartscout|(?<!ti[ _-])scout|tri[ _-]?pilot|pilot|"
        rf"3[ _-]?pl(ane)?[ _-]?loc|three[ _-]?plane){_E}", re.IGNORECASE)),
    ("look_locker", re.compile(
        rf"{_B}ti[ _-]?(scout|find(er)?|select(ion)?|test){_E}|look[ _-]?locker|{_B}ll{_E}|"
        rf"inversion[ _-]?scout|{_B}cine[ _-]?ir{_E}", re.IGNORECASE)),
    ("shmolli", re.compile(r"sh[ _-]?molli", re.IGNORECASE)),
    ("sasha", re.compile(r"sasha|sapphire", re.IGNORECASE)),
    ("smart1map", re.compile(r"smart1", re.IGNORECASE)),
    ("molli", re.compile(r"molli", re.IGNORECASE)),
    ("perfusion", re.compile(rf"perf|first[ _-]?pass|{_B}fpp{_E}", re.IGNORECASE)),
    ("t2_prep", re.compile(rf"{_B}t2[ _-]?(map|prep){_E}|{_B}t2map", re.IGNORECASE)),
)
_LGE_NAME: Final = re.compile(
    rf"lge|{_B}(de|mde|psmde|scar){_E}|late[ _-]?(gad|gd|enh)|delayed|viab|hyper[ _-]?enh",
    re.IGNORECASE)
_PSIR_NAME: Final = re.compile(r"psir|psmde|phase[ _-]?sensitive", re.IGNORECASE)
_CINE_NAME: Final = re.compile(rf"cine|{_B}retro{_E}", re.IGNORECASE)
_BSSFP: Final = re.compile(r"^\*?tfi|fiesta|b[ _-]?tfe|bffe|balanced|ssfp|true[ _-]?fisp",
                           re.IGNORECASE)
_TFE: Final = re.compile(rf"{_B}tfe{_E}|ir[ _-]?tfe|tfe[ _-]?ir", re.IGNORECASE)
_VIEW_NAME: Final = re.compile(
    rf"{_B}(sax|sa|short[ _-]?axis|[234][ _-]?ch|[234]cv|lvot|rvot|hla|vla|cardiac|heart|"
    rf"myocard\w*|cmr|cardio){_E}", re.IGNORECASE)
_NO_SYNC: Final = frozenset({"", "NONE"})
_LGE_TI_RANGE_MS: Final = (150.0, 650.0)


@dataclass(frozen=True)
class SeriesShape:
    """What the series' images have in common, as the family needs it."""

    kinds: Collection[ImageKind]
    inversion_times_ms: Collection[float]
    max_images_per_slice: int | None
    tokens: Collection[str]
    trigger_times_ms: Collection[float] = ()


def _number(value: object) -> float | None:
    try:
        return float(str(value).split("\\")[0])
    except (TypeError, ValueError):
        return None


def _names(header: HeaderView) -> str:
    return " ".join(str(header.get(k) or "") for k in ("SeriesDescription", "ProtocolName"))


def _sequence_names(header: HeaderView) -> str:
    return " ".join(str(header.get(k) or "") for k in ("SequenceName", "PulseSequenceName"))


def inversion_recovery(header: HeaderView, shape: SeriesShape) -> str | None:
    """The evidence that the series is inversion-recovery prepared, or ``None``."""
    scanning = image_type_tokens(["", "", *_multi(header.get("ScanningSequence"))])
    if "ir" in scanning:
        return "ScanningSequence IR"
    if str(header.get("InversionRecovery") or "").upper() == "YES":
        return "InversionRecovery YES"
    if shape.inversion_times_ms:
        return "an inversion time is given"
    if any(t in {"ir", "m_ir", "r_ir"} or t.endswith("_ir") for t in shape.tokens):
        return "ImageType names an IR reconstruction"
    return None


def _multi(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split("\\")
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    return [str(value)]


def sequence_family(
    header: HeaderView, vendor: str, shape: SeriesShape, contrast: ContrastPhase
) -> tuple[str, str]:
    """The sequence family and the evidence for it (see the module docstring)."""
    names = _names(header)
    tokens = set(shape.tokens)
    if "localizer" in tokens or "localiser" in tokens:
        return "localiser", "ImageType LOCALIZER"
    for family, pattern in _NAMES:
        match = pattern.search(names)
        if match:
            return family, f"name '{match.group(0)}' ({names.strip()})"
    if ImageKind.T2_MAP in shape.kinds:
        return "t2_prep", "T2 map images (ImageType)"
    sequence_names = _sequence_names(header)
    ir = inversion_recovery(header, shape)
    cardiac_images = _number(header.get("CardiacNumberOfImages")) or 0
    if _CINE_NAME.search(names) or (cardiac_images >= 10 and ir is None):
        reason = "cine name" if _CINE_NAME.search(names) else \
            f"CardiacNumberOfImages {cardiac_images:g}"
        if _BSSFP.search(sequence_names) or _BSSFP.search(names) or \
                any(_BSSFP.search(t) for t in tokens):
            return "bssfp_cine", f"{reason}, balanced SSFP readout"
        return "cine", reason
    if ImageKind.PSIR in shape.kinds or _PSIR_NAME.search(names):
        return "psir", "PSIR image or name"
    if ir is not None and ImageKind.REAL in shape.kinds:
        return "psir", f"real-valued inversion-recovery reconstruction ({ir})"
    if ir is not None and not (shape.kinds and set(shape.kinds) <= {ImageKind.T1_MAP}):
        few_tis = len(set(shape.inversion_times_ms)) <= 2
        in_range = not shape.inversion_times_ms or any(
            _LGE_TI_RANGE_MS[0] <= ti <= _LGE_TI_RANGE_MS[1] for ti in shape.inversion_times_ms)
        named = _LGE_NAME.search(names)
        one_phase = (shape.max_images_per_slice or 1) <= 2
        if named or (contrast is ContrastPhase.POST_CONTRAST and few_tis and in_range
                     and one_phase):
            why = (f"name '{named.group(0)}'" if named
                   else "post-contrast, one image per slice, TI (if given) in 150-650 ms")
            tfe = vendor == "philips" or _TFE.search(sequence_names) or "tfe" in tokens
            family = "ir_tfe_lge" if tfe else "ir_gre_lge"
            return family, f"inversion recovery ({ir}), {why}"
        many_tis = len(set(shape.inversion_times_ms)) >= 6
        if many_tis and (shape.max_images_per_slice or 0) >= 14 and \
                ImageKind.T1_MAP not in shape.kinds:
            return "look_locker", (f"{len(set(shape.inversion_times_ms))} inversion times, "
                                   f"{shape.max_images_per_slice} images per slice, no map")
    return "unknown", "no sequence marker recognised"


def is_gated(header: HeaderView, family: str, shape: SeriesShape) -> tuple[bool, str]:
    """Whether the series was acquired with cardiac (ECG or pulse) gating, and why."""
    if any(t > 0 for t in shape.trigger_times_ms):
        return True, "TriggerTime > 0"
    for keyword in ("HeartRate", "NominalInterval"):
        value = _number(header.get(keyword))
        if value is not None and value > 0:
            return True, f"{keyword} {value:g}"
    sync = str(header.get("CardiacSynchronizationTechnique") or "").strip().upper()
    if sync not in _NO_SYNC:
        return True, f"CardiacSynchronizationTechnique {sync}"
    options = {o.strip().upper() for o in _multi(header.get("ScanOptions"))}
    if options & {"CG", "PPG"}:
        return True, f"ScanOptions {'/'.join(sorted(options & {'CG', 'PPG'}))}"
    if family in CARDIAC_FAMILIES:
        return True, f"cardiac sequence family {family}"
    match = _VIEW_NAME.search(_names(header))
    if match:
        return True, f"cardiac view in the name ('{match.group(0)}')"
    return False, "no gating, cardiac sequence or cardiac view in the header"
