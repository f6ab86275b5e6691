"""A study's clinical variables for the site infarct model: names, types, units, coding.

EMIDEC's twelve clinical variables (Lalande A et al., "Emidec: a database usable for the
automatic evaluation of myocardial infarction from delayed-enhancement cardiac MRI", Data
2020;5(4):89): sex, age, tobacco (yes / no / former smoker), overweight (BMI > 25), arterial
hypertension, diabetes, familial history of coronary artery disease, ECG ST elevation
(STEMI), troponin, Killip class (1-4; Killip T, Kimball JT, Am J Cardiol 1967;20:457-464),
LV ejection fraction and NT-proBNP.  EMIDEC's case files give troponin and NT-proBNP without
a unit, so this module asks for one: a bare troponin or NT-proBNP is refused rather than
guessed, since assays report in ng/L or µg/L (a factor of 1000).

:func:`parse_clinical` validates what a site supplies (sidecar, REST, command line) and
returns :class:`ClinicalVariables`, the typed input of the LGE analysis.  Each variable is
coded as one number for the model (:meth:`ClinicalVariables.features`, the names of
:data:`plugins.lge.infarct_model.CLINICAL_FEATURES`); the training table of ``cmr-node
classify train`` must use the same coding:

==========================  ==============================================  ================
key                         accepted                                        model feature
==========================  ==============================================  ================
``sex``                     ``"M"`` / ``"F"`` (``male`` / ``female``)       ``sex`` 1 / 0
``age``                     years, 0-120                                    ``age``
``tobacco``                 ``"never"`` (``no``), ``"former"``,             ``tobacco``
                            ``"current"`` (``yes``)                         0 / 1 / 2
``overweight``,             ``true`` / ``false``, ``"Y"`` / ``"N"``,        1 / 0
``arterial_hypertension``,  ``"yes"`` / ``"no"``, 1 / 0
``diabetes``,
``family_history``,
``ecg_st_elevation``
``troponin``                ``{"value": v, "unit": u}``, u in ng/L, pg/mL,  ``troponin``
                            ng/mL, µg/L (ug/L); 0-10⁶ ng/L                  in ng/L
``killip``                  1-4 or ``"I"``-``"IV"``                         ``killip``
``lvef_percent``            per cent, 1-95 (the LVRR covariate of the same  ``lvef``
                            name: one LVEF per study)
``ntprobnp``                ``{"value": v, "unit": u}``, u in pg/mL, ng/L,  ``ntprobnp``
                            ng/mL; 0-10⁶ pg/mL                              in pg/mL
==========================  ==============================================  ================

The ranges are plausibility bounds against entry errors (a wrong unit, a slipped digit), not
reference ranges; ``null`` means "not available".  The tobacco order (never < former <
current) is the node's coding of EMIDEC's three categories, not a published score.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from plugins.lge.infarct_model import CLINICAL_FEATURES

__all__ = [
    "BINARY_KEYS",
    "CLINICAL_KEYS",
    "LVEF_KEY",
    "ClinicalError",
    "ClinicalVariables",
    "Sex",
    "Tobacco",
    "parse_clinical",
]

LVEF_KEY: Final = "lvef_percent"
"""Key of the LVEF: shared with the LVRR covariates (:mod:`plugins.lib.radiomics.lvrr`)."""
BINARY_KEYS: Final = (
    "overweight", "arterial_hypertension", "diabetes", "family_history", "ecg_st_elevation",
)
CLINICAL_KEYS: Final = (
    "sex", "age", "tobacco", *BINARY_KEYS, "troponin", "killip", "ntprobnp",
)
"""The keys of the clinical variables, the LVEF (:data:`LVEF_KEY`) aside."""
_YES: Final = frozenset({"y", "yes", "true", "1"})
_NO: Final = frozenset({"n", "no", "false", "0"})
_ROMAN: Final = {"i": 1, "ii": 2, "iii": 3, "iv": 4}
AGE_RANGE: Final = (0.0, 120.0)
LVEF_RANGE: Final = (1.0, 95.0)
"""As the LVRR covariate ``lvef_percent`` (:mod:`plugins.lib.radiomics.lvrr`)."""
TROPONIN_MAX_NG_L: Final = 1e6
NTPROBNP_MAX_PG_ML: Final = 1e6
TROPONIN_UNITS: Final[Mapping[str, float]] = {
    "ng/l": 1.0, "pg/ml": 1.0, "ng/ml": 1000.0, "µg/l": 1000.0, "ug/l": 1000.0,
}
"""Troponin units → factor to ng/L (1 ng/mL = 1 µg/L = 1000 ng/L = 1000 pg/mL)."""
NTPROBNP_UNITS: Final[Mapping[str, float]] = {"pg/ml": 1.0, "ng/l": 1.0, "ng/ml": 1000.0}
"""NT-proBNP units → factor to pg/mL (molar units are refused: no conversion is assumed)."""


class ClinicalError(ValueError):
    """A clinical variable is unknown, of a wrong type or unit, or implausible."""


class Sex(enum.StrEnum):
    """Sex as EMIDEC records it."""

    MALE = "M"
    FEMALE = "F"


class Tobacco(enum.StrEnum):
    """Smoking status, EMIDEC's three categories."""

    NEVER = "never"
    FORMER = "former"
    CURRENT = "current"


_TOBACCO_CODE: Final[Mapping[Tobacco, float]] = {
    Tobacco.NEVER: 0.0, Tobacco.FORMER: 1.0, Tobacco.CURRENT: 2.0,
}


@dataclass(frozen=True)
class ClinicalVariables:
    """The clinical variables supplied for one study (None: not available).

    Attributes
    ----------
    sex, age_years, tobacco
        Demographics and smoking status.
    overweight, arterial_hypertension, diabetes, family_history, ecg_st_elevation
        Yes / no.
    troponin_ng_per_l, ntprobnp_pg_per_ml
        Biomarkers in ng/L and pg/mL.
    killip_class
        1-4.
    lvef_percent
        LV ejection fraction, per cent.
    """

    sex: Sex | None = None
    age_years: float | None = None
    tobacco: Tobacco | None = None
    overweight: bool | None = None
    arterial_hypertension: bool | None = None
    diabetes: bool | None = None
    family_history: bool | None = None
    ecg_st_elevation: bool | None = None
    troponin_ng_per_l: float | None = None
    killip_class: int | None = None
    lvef_percent: float | None = None
    ntprobnp_pg_per_ml: float | None = None

    def features(self) -> dict[str, float]:
        """The available variables as the model's features (coding in the module docstring)."""
        coded: dict[str, float | None] = {
            "sex": None if self.sex is None else float(self.sex is Sex.MALE),
            "age": self.age_years,
            "tobacco": None if self.tobacco is None else _TOBACCO_CODE[self.tobacco],
            **{key: None if getattr(self, key) is None else float(getattr(self, key))
               for key in BINARY_KEYS},
            "troponin": self.troponin_ng_per_l,
            "killip": None if self.killip_class is None else float(self.killip_class),
            "lvef": self.lvef_percent,
            "ntprobnp": self.ntprobnp_pg_per_ml,
        }
        return {name: value for name in CLINICAL_FEATURES
                if (value := coded[name]) is not None}

    def missing(self) -> tuple[str, ...]:
        """Model features not supplied."""
        given = self.features()
        return tuple(name for name in CLINICAL_FEATURES if name not in given)

    def as_json(self) -> dict[str, Any]:
        """The supplied variables in the form :func:`parse_clinical` reads (units explicit)."""
        document: dict[str, Any] = {
            "sex": None if self.sex is None else str(self.sex),
            "age": self.age_years,
            "tobacco": None if self.tobacco is None else str(self.tobacco),
            **{key: getattr(self, key) for key in BINARY_KEYS},
            "troponin": None if self.troponin_ng_per_l is None
            else {"value": self.troponin_ng_per_l, "unit": "ng/L"},
            "killip": self.killip_class,
            LVEF_KEY: self.lvef_percent,
            "ntprobnp": None if self.ntprobnp_pg_per_ml is None
            else {"value": self.ntprobnp_pg_per_ml, "unit": "pg/mL"},
        }
        return {key: value for key, value in document.items() if value is not None}

    def __bool__(self) -> bool:
        """Whether any variable is supplied."""
        return any(getattr(self, f.name) is not None for f in fields(self))


def _text(key: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ClinicalError(f"Clinical variable {key} must be text, not {raw!r}.")
    return raw.strip().lower()


def _number(key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ClinicalError(f"Clinical variable {key} is not a number: {raw!r}.")
    try:
        value = float(raw)
    except ValueError as exc:
        raise ClinicalError(f"Clinical variable {key} is not a number: {raw!r}.") from exc
    if not math.isfinite(value):
        raise ClinicalError(f"Clinical variable {key} is not finite.")
    return value


def _in_range(key: str, value: float, low: float, high: float, unit: str) -> float:
    if not low <= value <= high:
        raise ClinicalError(f"Clinical variable {key} = {value:g} {unit} is outside the "
                            f"plausible range {low:g}..{high:g} {unit}.")
    return value


def _binary(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    text = _text(key, raw) if isinstance(raw, str) else None
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ClinicalError(f"Clinical variable {key} must be yes or no (true/false, Y/N, 1/0), "
                        f"not {raw!r}.")


def _sex(raw: Any) -> Sex:
    text = _text("sex", raw)
    found = {"m": Sex.MALE, "male": Sex.MALE, "f": Sex.FEMALE, "female": Sex.FEMALE}.get(text)
    if found is None:
        raise ClinicalError(f"Clinical variable sex must be M or F, not {raw!r}.")
    return found


def _tobacco(raw: Any) -> Tobacco:
    text = raw.strip().lower() if isinstance(raw, str) else ""
    found = {"never": Tobacco.NEVER, "no": Tobacco.NEVER, "n": Tobacco.NEVER,
             "former": Tobacco.FORMER, "current": Tobacco.CURRENT, "yes": Tobacco.CURRENT,
             "y": Tobacco.CURRENT}.get(text)
    if found is None:
        raise ClinicalError("Clinical variable tobacco must be never, former or current (a "
                            f"numeric code is refused: codings differ), not {raw!r}.")
    return found


def _killip(raw: Any) -> int:
    if isinstance(raw, str) and raw.strip().lower() in _ROMAN:
        return _ROMAN[raw.strip().lower()]
    value = _number("killip", raw)
    if value not in (1.0, 2.0, 3.0, 4.0):
        raise ClinicalError(f"Clinical variable killip must be a class 1-4 (I-IV), not {raw!r}.")
    return int(value)


def _with_unit(key: str, raw: Any, units: Mapping[str, float], canonical: str,
               high: float) -> float:
    if not isinstance(raw, Mapping) or "value" not in raw or "unit" not in raw:
        raise ClinicalError(
            f"Clinical variable {key} needs a unit: give {{\"value\": ..., \"unit\": ...}} with "
            f"unit one of {', '.join(sorted(units))}.")
    unit = str(raw["unit"]).strip().lower().replace("μ", "µ")
    if unit not in units:
        raise ClinicalError(f"Clinical variable {key} is given in {raw['unit']!r}; accepted: "
                            f"{', '.join(sorted(units))}.")
    value = _number(key, raw["value"]) * units[unit]
    return _in_range(key, value, 0.0, high, canonical)


def _lvef(raw: Any) -> float:
    if isinstance(raw, Mapping):
        unit = str(raw.get("unit", "%")).strip().lower()
        if unit not in ("%", "percent"):
            raise ClinicalError(f"Clinical variable {LVEF_KEY} is given in {raw.get('unit')!r};"
                                " it must be in %.")
        raw = raw.get("value")
    return _in_range(LVEF_KEY, _number(LVEF_KEY, raw), *LVEF_RANGE, "%")


def parse_clinical(raw: Mapping[str, Any]) -> ClinicalVariables:
    """Validate a study's clinical variables.

    Parameters
    ----------
    raw
        Key (:data:`CLINICAL_KEYS` or :data:`LVEF_KEY`) → value as the module docstring
        says; ``None`` for "not available".

    Returns
    -------
    ClinicalVariables

    Raises
    ------
    ClinicalError
        For an unknown key (a typo must not drop a variable silently), a wrong type or unit
        or an implausible value; the message names the variable.
    """
    known = (*CLINICAL_KEYS, LVEF_KEY)
    unknown = sorted(str(k) for k in raw if str(k) not in known)
    if unknown:
        raise ClinicalError(f"Unknown clinical variable(s) {', '.join(unknown)}; known: "
                            f"{', '.join(known)}.")
    given = {str(k): v for k, v in raw.items() if v is not None}
    values: dict[str, Any] = {}
    if "sex" in given:
        values["sex"] = _sex(given["sex"])
    if "age" in given:
        values["age_years"] = _in_range("age", _number("age", given["age"]), *AGE_RANGE,
                                        "years")
    if "tobacco" in given:
        values["tobacco"] = _tobacco(given["tobacco"])
    for key in BINARY_KEYS:
        if key in given:
            values[key] = _binary(key, given[key])
    if "troponin" in given:
        values["troponin_ng_per_l"] = _with_unit("troponin", given["troponin"],
                                                 TROPONIN_UNITS, "ng/L", TROPONIN_MAX_NG_L)
    if "killip" in given:
        values["killip_class"] = _killip(given["killip"])
    if LVEF_KEY in given:
        values["lvef_percent"] = _lvef(given[LVEF_KEY])
    if "ntprobnp" in given:
        values["ntprobnp_pg_per_ml"] = _with_unit("ntprobnp", given["ntprobnp"],
                                                  NTPROBNP_UNITS, "pg/mL", NTPROBNP_MAX_PG_ML)
    return ClinicalVariables(**values)
