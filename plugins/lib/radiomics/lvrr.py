"""Probability of LV reverse remodelling (LVRR) from the published logistic models.

The five models of the native-T1 radiomics study (Korean J Radiol 2023: one centre, 274
patients with non-ischaemic dilated cardiomyopathy, 3 T Siemens; LVRR = LVEF +≥10 % and
LVEDDi −≥10 % at ≥180 days, 44.9 % of patients).  Coefficients are log-odds per unit of
each covariate, exactly as printed in the source text, except for one documented sign
correction (see :data:`PUBLISHED_MODELS`).  The AUCs are the published optimism-corrected
ones (1000 bootstrap resamples).
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = [
    "DERIVATION_CAVEAT",
    "PUBLISHED_MODELS",
    "RADSCORE_CAVEAT",
    "Covariate",
    "CovariateError",
    "LvrrResult",
    "PublishedModel",
    "best_available_model",
    "lvrr_probability",
    "parse_covariates",
]


class CovariateError(ValueError):
    """A covariate is unknown, missing, out of range or in the wrong unit."""


class Covariate(enum.StrEnum):
    """Covariates of the published models (keys of the covariates mapping)."""

    SBP = "sbp_mmhg"
    LVEF = "lvef_percent"
    LVEDDI = "lveddi_mm_per_m2"
    SMOKING = "smoking"
    LGE_EXTENT = "lge_percent_lv_mass"
    SEPTAL_MIDWALL_LGE = "septal_midwall_lge"
    RADSCORE = "radscore"


@dataclass(frozen=True)
class _Spec:
    unit: str
    accepted_units: frozenset[str]
    low: float
    high: float
    binary: bool = False


_SPECS: Final[dict[Covariate, _Spec]] = {
    Covariate.SBP: _Spec("mmHg", frozenset({"mmHg", "mm[Hg]", "mmhg"}), 40.0, 300.0),
    Covariate.LVEF: _Spec("%", frozenset({"%", "percent"}), 1.0, 95.0),
    Covariate.LVEDDI: _Spec("mm/m2", frozenset({"mm/m2", "mm/m²", "mm/m^2"}), 10.0, 100.0),
    Covariate.SMOKING: _Spec("1", frozenset({"1", "", "bool"}), 0.0, 1.0, binary=True),
    Covariate.LGE_EXTENT: _Spec("%", frozenset({"%", "percent"}), 0.0, 100.0),
    Covariate.SEPTAL_MIDWALL_LGE: _Spec("1", frozenset({"1", "", "bool"}), 0.0, 1.0, binary=True),
    Covariate.RADSCORE: _Spec("1", frozenset({"1", ""}), -50.0, 50.0),
}
"""Unit and plausible range of each covariate (values outside are refused as entry errors)."""


@dataclass(frozen=True)
class PublishedModel:
    """One published logistic model.

    Attributes
    ----------
    name
        Key in :data:`PUBLISHED_MODELS`.
    title
        Human-readable name.
    intercept
        Log-odds at all covariates zero.
    coefficients
        Log-odds per unit of each covariate.
    published_auc
        Optimism-corrected AUC reported for the model.
    """

    name: str
    title: str
    intercept: float
    coefficients: Mapping[Covariate, float]
    published_auc: float

    @property
    def covariates(self) -> tuple[Covariate, ...]:
        """The covariates the model needs."""
        return tuple(self.coefficients)

    @property
    def uses_radscore(self) -> bool:
        """Whether the model includes the rad-score."""
        return Covariate.RADSCORE in self.coefficients


_C = Covariate
PUBLISHED_MODELS: Final[dict[str, PublishedModel]] = {
    "clinical": PublishedModel(
        "clinical", "Clinical", -4.145,
        {_C.SBP: 0.032, _C.LVEF: -0.075, _C.LVEDDI: 0.054, _C.SMOKING: 0.408}, 0.676,
    ),
    "radiomics": PublishedModel(
        "radiomics", "Radiomics only", 0.164, {_C.RADSCORE: 1.758}, 0.753,
    ),
    # The source text prints this intercept as +4.621.  With typical covariates (SBP 120,
    # LVEF 30 %, LVEDDi 35 mm/m², no smoking, LGE 5 %, no septal LGE) +4.621 gives log-odds
    # ~+8.5, a probability of 0.9998, for nearly every patient, whereas the cohort's LVRR
    # prevalence was 45 % and the other models' intercepts (-4.145 clinical) are negative.
    # -4.621 gives log-odds ~-0.7 (p ~0.33) for that patient, in line with the clinical model;
    # the minus sign was evidently lost in typesetting.
    "clinical_lge": PublishedModel(
        "clinical_lge", "Clinical + LGE", -4.621,
        {_C.SBP: 0.030, _C.LVEF: -0.073, _C.LVEDDI: 0.078, _C.SMOKING: 0.531,
         _C.LGE_EXTENT: -0.052, _C.SEPTAL_MIDWALL_LGE: -0.233},
        0.716,
    ),
    "clinical_radiomics": PublishedModel(
        "clinical_radiomics", "Clinical + radiomics", -0.588,
        {_C.SBP: 0.012, _C.LVEF: -0.089, _C.LVEDDI: 0.041, _C.SMOKING: 0.324,
         _C.RADSCORE: 1.937},
        0.794,
    ),
    "clinical_lge_radiomics": PublishedModel(
        "clinical_lge_radiomics", "Clinical + LGE + radiomics", -0.969,
        {_C.SBP: 0.010, _C.LVEF: -0.085, _C.LVEDDI: 0.059, _C.SMOKING: 0.421,
         _C.LGE_EXTENT: -0.044, _C.SEPTAL_MIDWALL_LGE: -0.139, _C.RADSCORE: 1.825},
        0.811,
    ),
}
"""The five published models, by name."""

_PREFERENCE: Final = tuple(
    sorted(PUBLISHED_MODELS, key=lambda n: PUBLISHED_MODELS[n].published_auc, reverse=True)
)
"""Models from the best published AUC down; each richer model's covariates include a poorer
one's, so this is also "richest first"."""

DERIVATION_CAVEAT: Final = (
    "Published model derived in one centre on 274 patients with non-ischaemic dilated "
    "cardiomyopathy at 3 T (Siemens) and not externally validated; it does not apply to other "
    "cardiomyopathies and its calibration at this site is unknown."
)
RADSCORE_CAVEAT: Final = (
    "The published radiomics coefficient refers to the study's own rad-score (its 16 "
    "LASSO-selected features); this site's rad-score comes from a locally trained model with "
    "other features, scale and calibration, so the probability is indicative only."
)


@dataclass(frozen=True)
class LvrrResult:
    """An LVRR probability and how it was obtained.

    Attributes
    ----------
    probability
        Probability of LVRR, 0..1.
    log_odds
        The model's linear predictor.
    model
        The published model used.
    covariates
        The covariate values used, in the model's units.
    caveats
        Sentences to report with the probability.
    """

    probability: float
    log_odds: float
    model: PublishedModel
    covariates: Mapping[Covariate, float]
    caveats: tuple[str, ...]

    @property
    def published_auc(self) -> float:
        """Optimism-corrected AUC published for the model."""
        return self.model.published_auc

    @property
    def text(self) -> str:
        """One paragraph for a report."""
        return (
            f"Probability of LV reverse remodelling {self.probability:.0%} "
            f"(published model '{self.model.title}', optimism-corrected AUC "
            f"{self.model.published_auc:.3f}). " + " ".join(self.caveats)
        )

    def as_json(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "probability": self.probability,
            "log_odds": self.log_odds,
            "model": self.model.name,
            "model_title": self.model.title,
            "published_auc": self.model.published_auc,
            "covariates": {str(k): v for k, v in self.covariates.items()},
            "caveats": list(self.caveats),
            "text": self.text,
        }


def _value(key: Covariate, raw: Any) -> float:
    spec = _SPECS[key]
    unit = None
    if isinstance(raw, Mapping):
        if "value" not in raw:
            raise CovariateError(f"Covariate {key} is an object without 'value'.")
        unit = raw.get("unit")
        raw = raw["value"]
    if unit is not None and str(unit) not in spec.accepted_units:
        raise CovariateError(
            f"Covariate {key} is given in {unit!r}; it must be in {spec.unit}."
        )
    if isinstance(raw, bool):
        raw = int(raw)
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise CovariateError(f"Covariate {key} is not a number: {raw!r}.") from exc
    if not math.isfinite(value):
        raise CovariateError(f"Covariate {key} is not finite.")
    if spec.binary and value not in (0.0, 1.0):
        raise CovariateError(f"Covariate {key} must be 0 or 1, not {value:g}.")
    if not spec.low <= value <= spec.high:
        raise CovariateError(
            f"Covariate {key} = {value:g} {spec.unit} is outside the plausible range "
            f"{spec.low:g}..{spec.high:g} {spec.unit}."
        )
    return value


def parse_covariates(covariates: Mapping[str, Any]) -> dict[Covariate, float]:
    """Validate covariates and convert them to numbers in the models' units.

    Parameters
    ----------
    covariates
        Covariate name (:class:`Covariate` value) → number in the covariate's unit, or
        ``{"value": number, "unit": "..."}``, or ``None`` for "not available".  Units: SBP
        mmHg, LVEF %, LVEDDi mm/m², smoking 0/1, LGE extent % of LV mass, septal mid-wall
        LGE 0/1, rad-score unitless.

    Returns
    -------
    dict
        The available covariates.

    Raises
    ------
    CovariateError
        For an unknown name (a typo must not silently drop a covariate), a wrong unit, a
        non-number, a non-binary flag or a value outside the plausible range.
    """
    known = {str(c): c for c in Covariate}
    parsed: dict[Covariate, float] = {}
    for name, raw in covariates.items():
        if name not in known:
            raise CovariateError(
                f"Unknown covariate {name!r}; known: {', '.join(sorted(known))}."
            )
        if raw is None:
            continue
        parsed[known[name]] = _value(known[name], raw)
    return parsed


def best_available_model(covariates: Mapping[str, Any]) -> str | None:
    """The richest published model whose covariates are all available.

    Parameters
    ----------
    covariates
        As for :func:`parse_covariates`.

    Returns
    -------
    str or None
        Model name, from ``clinical_lge_radiomics`` (best AUC) down to ``clinical``; ``None``
        when no model's covariates are complete.
    """
    present = set(parse_covariates(covariates))
    for name in _PREFERENCE:
        if set(PUBLISHED_MODELS[name].covariates) <= present:
            return name
    return None


def lvrr_probability(model_name: str, covariates: Mapping[str, Any]) -> LvrrResult:
    """Probability of LVRR from one published model.

    Parameters
    ----------
    model_name
        Key of :data:`PUBLISHED_MODELS`.
    covariates
        As for :func:`parse_covariates`; covariates the model does not use are ignored.

    Returns
    -------
    LvrrResult
        ``1 / (1 + exp(-(intercept + Σ coefficient × covariate)))`` with the model and caveats.

    Raises
    ------
    KeyError
        For an unknown model name.
    CovariateError
        For invalid covariates or one the model needs that is missing.
    """
    if model_name not in PUBLISHED_MODELS:
        raise KeyError(
            f"Unknown LVRR model {model_name!r}; known: {', '.join(PUBLISHED_MODELS)}."
        )
    model = PUBLISHED_MODELS[model_name]
    values = parse_covariates(covariates)
    missing = [str(c) for c in model.covariates if c not in values]
    if missing:
        raise CovariateError(
            f"Model '{model.title}' needs {', '.join(missing)}, which were not supplied."
        )
    log_odds = model.intercept + sum(
        coefficient * values[c] for c, coefficient in model.coefficients.items()
    )
    probability = 1.0 / (1.0 + math.exp(-log_odds))
    caveats = (DERIVATION_CAVEAT, RADSCORE_CAVEAT) if model.uses_radscore else (
        DERIVATION_CAVEAT,
    )
    logger.debug("LVRR %s: log-odds %.3f, p %.3f", model_name, log_odds, probability)
    return LvrrResult(
        probability=probability,
        log_odds=log_odds,
        model=model,
        covariates={c: values[c] for c in model.covariates},
        caveats=caveats,
    )
