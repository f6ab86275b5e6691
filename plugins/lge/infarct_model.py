"""A site's infarct model: file format, validation and the combined probability.

A site trains the model on its own cohort with ``cmr-node classify train``
(:mod:`models.training.classify.train`); none is shipped and no coefficient is built in. Without
a model file the LGE analysis reports the image-only call (:mod:`plugins.lge.infarct`) as such.

File format (JSON, UTF-8)::

    {
      "format": "cmr-node-infarct-model",
      "format_version": 1,
      "model": {
        "features": [...], "coefficients": [...], "intercept": ...,
        "standardisation": {"means": [...], "sds": [...]},
        "training": {"cohort_size": ..., "events": ..., "outcome": "...", "folds": ...,
                     "penalty_lambda": ..., "cv_auc": ..., "cv_auc_ci95": [lo, hi],
                     "bootstrap_resamples": ..., "calibration": {...}, "data_sha256": "...",
                     "seed": ...},
        "created": "YYYY-MM-DDTHH:MM:SSZ",
        "software": {"cmr-node": ..., "numpy": ..., "scipy": ...}
      },
      "sha256": "<hex digest of the canonical JSON of 'format', 'format_version', 'model'>"
    }

The probability is ``1 / (1 + exp(-(intercept + Σ coefficient_i × z_i)))`` with
``z_i = (x_i − mean_i) / sd_i``; each term ``coefficient_i × z_i`` is that feature's
contribution to the log-odds, the "why this number" of the report.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from plugins.lib.radiomics.model import canonical_sha256

logger = logging.getLogger(__name__)

__all__ = [
    "CLINICAL_FEATURES",
    "IMAGE_FEATURES",
    "MODEL_FORMAT",
    "NO_MODEL_MESSAGE",
    "CombinedResult",
    "InfarctModel",
    "InfarctModelError",
    "combined_probability",
    "load_infarct_model",
]

MODEL_FORMAT: Final = "cmr-node-infarct-model"
MODEL_FORMAT_VERSION: Final = 1
CLINICAL_FEATURES: Final = (
    "sex", "age", "tobacco", "overweight", "arterial_hypertension", "diabetes",
    "family_history", "ecg_st_elevation", "troponin", "killip", "lvef", "ntprobnp",
)
"""EMIDEC's 12 clinical variables (Lalande A et al., Data 2020;5(4):89), as numbers coded by
the site (the same coding in training and at analysis)."""
IMAGE_FEATURES: Final = (
    "scar_percent", "enhanced_volume_ml", "myocardium_volume_ml", "lv_volume_ml",
)
"""Image features the LGE analysis supplies: network %scar, enhanced and myocardial volume,
LV blood-pool volume."""
NO_MODEL_MESSAGE: Final = (
    "No site infarct model configured: the infarct call is from the images alone."
)
DEFAULT_TOP: Final = 5


class InfarctModelError(ValueError):
    """A model file is missing, malformed or modified, or a feature it needs is missing."""


@dataclass(frozen=True)
class InfarctModel:
    """A validated infarct model (see the module docstring for the meaning of each part)."""

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float
    means: tuple[float, ...]
    sds: tuple[float, ...]
    training: Mapping[str, Any]
    created: str
    software: Mapping[str, str]
    sha256: str = ""


@dataclass(frozen=True)
class CombinedResult:
    """The combined probability of infarction and its largest contributions.

    Attributes
    ----------
    probability, log_odds
        The model's output.
    contributions
        (feature, coefficient, value, standardised value, contribution), largest absolute
        contribution first.
    model_sha256
        Identifies the model.
    training
        The model's training facts.
    """

    probability: float
    log_odds: float
    contributions: tuple[tuple[str, float, float, float, float], ...]
    model_sha256: str
    training: Mapping[str, Any]

    def as_json(self, top: int = DEFAULT_TOP) -> dict[str, Any]:
        """JSON form for ``results.json`` (the ``top`` largest contributions)."""
        t = self.training
        return {
            "available": True,
            "probability": round(self.probability, 4),
            "log_odds": round(self.log_odds, 4),
            "model_sha256": self.model_sha256,
            "model_cohort_size": t.get("cohort_size"),
            "model_cv_auc": t.get("cv_auc"),
            "model_cv_auc_ci95": t.get("cv_auc_ci95"),
            "top_contributions": [
                {"feature": f, "coefficient": round(c, 4), "value": v,
                 "standardised_value": round(z, 4), "contribution": round(k, 4)}
                for f, c, v, z, k in self.contributions[:top]
            ],
        }


def model_document(model: InfarctModel) -> dict[str, Any]:
    """The JSON document of a model, with its ``sha256``."""
    document: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "model": {
            "features": list(model.features),
            "coefficients": list(model.coefficients),
            "intercept": model.intercept,
            "standardisation": {"means": list(model.means), "sds": list(model.sds)},
            "training": dict(model.training),
            "created": model.created,
            "software": dict(model.software),
        },
    }
    document["sha256"] = canonical_sha256(document)
    return document


def _numbers(values: Any, n: int, what: str) -> tuple[float, ...]:
    if not isinstance(values, list) or len(values) != n or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in values):
        raise InfarctModelError(f"{what} must be a list of {n} finite numbers.")
    return tuple(float(v) for v in values)


def parse_infarct_model(document: Any) -> InfarctModel:
    """Validate a model document (format, digest, shapes)."""
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise InfarctModelError("Not an infarct model file.")
    if document.get("format_version") != MODEL_FORMAT_VERSION:
        raise InfarctModelError(
            f"Unsupported infarct model format version {document.get('format_version')!r}.")
    try:
        actual = canonical_sha256(document)
    except ValueError as exc:
        raise InfarctModelError(f"The model file holds non-finite numbers: {exc}") from exc
    if document.get("sha256") != actual:
        raise InfarctModelError("The model file's sha256 does not match its content: it was "
                                "modified after training and is refused.")
    try:
        body = document["model"]
        features = body["features"]
        known = set(CLINICAL_FEATURES) | set(IMAGE_FEATURES)
        if not isinstance(features, list) or not features or not set(features) <= known \
                or len(set(features)) != len(features):
            raise InfarctModelError(f"'features' must be distinct names among {sorted(known)}.")
        n = len(features)
        sds = _numbers(body["standardisation"]["sds"], n, "standardisation sds")
        if any(sd <= 0 for sd in sds):
            raise InfarctModelError("Standardisation SDs must be positive.")
        intercept = _numbers([body["intercept"]], 1, "intercept")[0]
        return InfarctModel(
            features=tuple(features),
            coefficients=_numbers(body["coefficients"], n, "coefficients"),
            intercept=intercept,
            means=_numbers(body["standardisation"]["means"], n, "standardisation means"),
            sds=sds,
            training=dict(body["training"]),
            created=str(body["created"]),
            software={str(k): str(v) for k, v in dict(body["software"]).items()},
            sha256=actual,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise InfarctModelError(f"The infarct model file is malformed: {exc!r}") from exc


def load_infarct_model(path: Path | str) -> InfarctModel:
    """Read and validate an infarct model file.

    Raises
    ------
    InfarctModelError
        If the file is missing, unreadable, not a model file or modified after training.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InfarctModelError(f"Cannot read the infarct model {path}: {exc}") from exc
    model = parse_infarct_model(document)
    logger.info("infarct model %s loaded (sha256 %s)", path, model.sha256[:12])
    return model


def combined_probability(model: InfarctModel, values: Mapping[str, float]) -> CombinedResult:
    """The model's probability of infarction for one study.

    Parameters
    ----------
    model
        A loaded model.
    values
        Feature name → value: the study's clinical variables and image features.

    Raises
    ------
    InfarctModelError
        If a feature the model needs is missing or not finite.
    """
    missing = [f for f in model.features if f not in values]
    if missing:
        raise InfarctModelError(f"The infarct model needs {', '.join(missing)}, not supplied.")
    rows = []
    for name, coefficient, mean, sd in zip(model.features, model.coefficients, model.means,
                                           model.sds, strict=True):
        value = float(values[name])
        if not math.isfinite(value):
            raise InfarctModelError(f"{name} is not a finite number.")
        z = (value - mean) / sd
        rows.append((name, coefficient, value, z, coefficient * z))
    log_odds = model.intercept + math.fsum(row[4] for row in rows)
    probability = 1.0 / (1.0 + math.exp(-log_odds)) if log_odds > -700 else 0.0
    ranked = tuple(sorted(rows, key=lambda row: (-abs(row[4]), row[0])))
    digest = model.sha256 or str(model_document(model)["sha256"])
    return CombinedResult(probability, log_odds, ranked, digest, model.training)
