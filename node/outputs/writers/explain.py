""""Why this number": the largest contributions to every model-based number of a result.

A logistic model's output is ``intercept + Σ coefficient × input``; the share of one input is
its term.  For the site-trained models (rad-score, infarct model) the inputs are standardised
with the training cohort's means and SDs, so a term is *coefficient × standardised value*
(log-odds per SD times SDs from the cohort mean).  The published LVRR models are per unit of
each covariate and their cohort means are not published, so their terms are *coefficient ×
value*: comparable with each other within the model, not with a standardised term.

The writers (SR, summary image) list these terms, largest absolute first; nothing here
computes a new number from a model: the terms come from the analysis' own results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from plugins.api import AnalysisResult

__all__ = ["DEFAULT_TOP", "Contribution", "ModelExplanation", "model_explanations"]

DEFAULT_TOP: Final = 5
"""Contributions listed per number."""
STANDARDISED: Final = "coefficient x standardised value"
PER_UNIT: Final = "coefficient x value (published per-unit model)"


@dataclass(frozen=True)
class Contribution:
    """One input's term of a model's log-odds."""

    feature: str
    coefficient: float
    value: float
    contribution: float


@dataclass(frozen=True)
class ModelExplanation:
    """A model-based number and its largest contributions.

    Attributes
    ----------
    quantity
        What the number is ("rad-score", "LVRR probability", "infarct probability").
    value
        The number as reported (with its unit).
    model
        Which model produced it.
    basis
        How a contribution is computed (:data:`STANDARDISED` or :data:`PER_UNIT`).
    contributions
        Largest absolute contribution first.
    """

    quantity: str
    value: str
    model: str
    basis: str
    contributions: tuple[Contribution, ...]

    def text(self, top: int = DEFAULT_TOP) -> str:
        """One sentence: the number, the model and its ``top`` largest contributions."""
        terms = ", ".join(f"{c.feature} {c.contribution:+.3f} ({c.coefficient:+.3g} x "
                          f"{c.value:.3g})" for c in self.contributions[:top])
        return (f"{self.quantity} {self.value} ({self.model}); largest contributions to the "
                f"log-odds, {self.basis}: {terms}.")


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _ranked(rows: Sequence[Mapping[str, Any]], value_key: str) -> tuple[Contribution, ...]:
    found = []
    for row in rows:
        numbers = [_finite(row.get(k)) for k in ("coefficient", value_key, "contribution")]
        if None in numbers:
            continue
        coefficient, value, contribution = (float(n) for n in numbers)  # type: ignore[arg-type]
        found.append(Contribution(str(row.get("feature")), coefficient, value, contribution))
    return tuple(sorted(found, key=lambda c: (-abs(c.contribution), c.feature)))


def _radscore(block: Mapping[str, Any]) -> ModelExplanation | None:
    entry = block.get("radscore") or {}
    if not entry.get("available") or not entry.get("top_contributions"):
        return None
    return ModelExplanation(
        "rad-score", f"{float(entry['radscore']):.3f}",
        f"site rad-score model sha256 {str(entry.get('model_sha256'))[:12]}", STANDARDISED,
        _ranked(entry["top_contributions"], "standardised_value"))


def _lvrr(block: Mapping[str, Any]) -> ModelExplanation | None:
    entry = block.get("lvrr") or {}
    if not entry.get("available"):
        return None
    from plugins.lib.radiomics.lvrr import PUBLISHED_MODELS

    model = PUBLISHED_MODELS.get(str(entry.get("model")))
    covariates = entry.get("covariates") or {}
    if model is None:
        return None
    rows = []
    for covariate, coefficient in model.coefficients.items():
        value = _finite(covariates.get(str(covariate)))
        if value is not None:
            rows.append({"feature": str(covariate), "coefficient": coefficient,
                         "value": value, "contribution": coefficient * value})
    return ModelExplanation(
        "LVRR probability", f"{100 * float(entry['probability']):.0f} %",
        f"published model '{model.title}', intercept {model.intercept:+.3f}", PER_UNIT,
        _ranked(rows, "value"))


def _infarct(block: Mapping[str, Any]) -> ModelExplanation | None:
    entry = block.get("combined") or {}
    if not entry.get("available") or not entry.get("top_contributions"):
        return None
    return ModelExplanation(
        "infarct probability", f"{100 * float(entry['probability']):.0f} %",
        f"site infarct model sha256 {str(entry.get('model_sha256'))[:12]}, CV AUC "
        f"{entry.get('model_cv_auc')}", STANDARDISED,
        _ranked(entry["top_contributions"], "standardised_value"))


def model_explanations(result: AnalysisResult) -> list[ModelExplanation]:
    """Every model-based number of ``result`` with its contributions (may be empty)."""
    found: list[ModelExplanation | None] = []
    radiomics = result.extra.get("radiomics")
    if isinstance(radiomics, Mapping):
        found += [_radscore(radiomics), _lvrr(radiomics)]
    infarct = result.extra.get("infarct")
    if isinstance(infarct, Mapping):
        found.append(_infarct(infarct))
    return [item for item in found if item is not None]
