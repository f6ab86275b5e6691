"""Rad-score model files: format, validation and scoring.

A rad-score model is trained by a site on its own cohort (:mod:`models.training.radscore.train`);
none is shipped, and the published study's 16 features and coefficients are unknown.  When no
model file is installed the caller reports the features and :data:`NO_MODEL_MESSAGE`.

File format (JSON, UTF-8)::

    {
      "format": "cmr-node-radscore-model",
      "format_version": 1,
      "model": {
        "features": [...], "coefficients": [...], "intercept": ...,
        "standardisation": {"means": [...], "sds": [...]} | null,
        "training": {"cohort_size": ..., "events": ..., "outcome": "...", "folds": ...,
                     "penalty_lambda": ..., "cv_auc": ..., "apparent_auc": ...,
                     "optimism_corrected_auc": ..., "optimism_corrected_auc_ci95": [lo, hi],
                     "bootstrap_resamples": ..., "seed": ...},
        "created": "YYYY-MM-DDTHH:MM:SSZ",
        "software": {"cmr-node": ..., "pyradiomics": ..., "scikit-learn": ..., ...}
      },
      "sha256": "<hex digest of the canonical JSON of 'format', 'format_version', 'model'>"
    }

The rad-score is ``intercept + Σ coefficient_i × z_i`` with ``z_i = (x_i − mean_i) / sd_i``
when the model was trained on standardised features (``x_i`` itself otherwise): the linear
predictor (log-odds) of the LASSO logistic model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "NO_MODEL_MESSAGE",
    "Contribution",
    "ModelError",
    "RadScoreError",
    "RadScoreModel",
    "RadScoreResult",
    "TrainingSummary",
    "canonical_sha256",
    "load_model",
    "model_document",
    "radscore",
]

MODEL_FORMAT: Final = "cmr-node-radscore-model"
MODEL_FORMAT_VERSION: Final = 1
NO_MODEL_MESSAGE: Final = (
    "No rad-score model installed: radiomic features were extracted, but no rad-score or "
    "radiomics-based LVRR probability is computed until the site trains and installs a model."
)
DEFAULT_TOP_CONTRIBUTIONS: Final = 5


class ModelError(ValueError):
    """A model file is missing, malformed, tampered with or refers to unknown features."""


class RadScoreError(ValueError):
    """A rad-score cannot be computed from the given features."""


@dataclass(frozen=True)
class TrainingSummary:
    """How and on what a model was trained.

    Attributes
    ----------
    cohort_size, events
        Patients and patients with the outcome.
    outcome
        Definition of the outcome (e.g. LVRR criteria and follow-up).
    folds
        Cross-validation folds used to choose the penalty.
    penalty_lambda
        Chosen L1 penalty (glmnet's λ: mean log-loss + λ Σ |β|).
    cv_auc
        Mean cross-validated AUC at the chosen penalty.
    apparent_auc
        AUC of the final model on its own training data.
    optimism_corrected_auc, optimism_corrected_auc_ci95
        Harrell's bootstrap optimism-corrected AUC and its 95 % interval.
    bootstrap_resamples, seed
        Bootstrap resamples and random seed.
    """

    cohort_size: int
    events: int
    outcome: str
    folds: int
    penalty_lambda: float
    cv_auc: float
    apparent_auc: float
    optimism_corrected_auc: float
    optimism_corrected_auc_ci95: tuple[float, float]
    bootstrap_resamples: int
    seed: int | None


@dataclass(frozen=True)
class RadScoreModel:
    """A validated rad-score model.

    Attributes
    ----------
    features
        Feature names, in the order of ``coefficients``.
    coefficients
        Coefficient of each (standardised, if ``means`` is set) feature; all non-zero.
    intercept
        Intercept of the linear predictor.
    means, sds
        Standardisation of each feature, or ``None`` if trained on raw values.
    training
        Training facts.
    created
        ISO-8601 UTC time the model was written.
    software
        Versions of the software used (package → version).
    sha256
        Digest of the canonical content, as stored in and verified against the file.
    source
        Path the model was loaded from, if any.
    """

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float
    means: tuple[float, ...] | None
    sds: tuple[float, ...] | None
    training: TrainingSummary
    created: str
    software: Mapping[str, str]
    sha256: str = ""
    source: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Contribution:
    """One feature's share of a rad-score.

    Attributes
    ----------
    feature
        Feature name.
    coefficient
        Model coefficient.
    value
        The feature's value.
    standardised_value
        ``(value − mean) / sd`` (``value`` for an unstandardised model).
    contribution
        ``coefficient × standardised_value``.
    """

    feature: str
    coefficient: float
    value: float
    standardised_value: float
    contribution: float


@dataclass(frozen=True)
class RadScoreResult:
    """A rad-score and its largest contributions.

    Attributes
    ----------
    value
        The rad-score (log-odds of the site's outcome).
    top_contributions
        Features with the largest absolute contributions, largest first.
    model_sha256
        Identifies the model.
    training
        The model's training facts (for provenance in the report).
    """

    value: float
    top_contributions: tuple[Contribution, ...]
    model_sha256: str
    training: TrainingSummary

    def as_json(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        t = self.training
        return {
            "radscore": self.value,
            "model_sha256": self.model_sha256,
            "model_cohort_size": t.cohort_size,
            "model_outcome": t.outcome,
            "model_optimism_corrected_auc": t.optimism_corrected_auc,
            "model_optimism_corrected_auc_ci95": list(t.optimism_corrected_auc_ci95),
            "top_contributions": [
                {
                    "feature": c.feature,
                    "coefficient": c.coefficient,
                    "value": c.value,
                    "standardised_value": c.standardised_value,
                    "contribution": c.contribution,
                }
                for c in self.top_contributions
            ],
        }


# --------------------------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------------------------


def canonical_sha256(document: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a model document without its ``sha256`` entry."""
    content = {k: v for k, v in document.items() if k != "sha256"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def model_document(model: RadScoreModel) -> dict[str, Any]:
    """The JSON document of a model, with its ``sha256``."""
    t = model.training
    body: dict[str, Any] = {
        "features": list(model.features),
        "coefficients": list(model.coefficients),
        "intercept": model.intercept,
        "standardisation": (
            None if model.means is None or model.sds is None
            else {"means": list(model.means), "sds": list(model.sds)}
        ),
        "training": {
            "cohort_size": t.cohort_size,
            "events": t.events,
            "outcome": t.outcome,
            "folds": t.folds,
            "penalty_lambda": t.penalty_lambda,
            "cv_auc": t.cv_auc,
            "apparent_auc": t.apparent_auc,
            "optimism_corrected_auc": t.optimism_corrected_auc,
            "optimism_corrected_auc_ci95": list(t.optimism_corrected_auc_ci95),
            "bootstrap_resamples": t.bootstrap_resamples,
            "seed": t.seed,
        },
        "created": model.created,
        "software": dict(model.software),
    }
    document: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "model": body,
    }
    document["sha256"] = canonical_sha256(document)
    return document


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(f"{what} is not a number: {value!r}.")
    if not math.isfinite(value):
        raise ModelError(f"{what} is not finite.")
    return float(value)


def _numbers(values: Any, n: int, what: str) -> tuple[float, ...]:
    if not isinstance(values, list) or len(values) != n:
        raise ModelError(f"{what} must be a list of {n} numbers.")
    return tuple(_finite(v, f"{what}[{i}]") for i, v in enumerate(values))


def _parse(document: Any, known_features: Collection[str] | None) -> RadScoreModel:
    if not isinstance(document, dict):
        raise ModelError("The model file is not a JSON object.")
    if document.get("format") != MODEL_FORMAT:
        raise ModelError(f"Not a rad-score model file (format {document.get('format')!r}).")
    if document.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelError(
            f"Unsupported model format version {document.get('format_version')!r}; "
            f"this node reads version {MODEL_FORMAT_VERSION}."
        )
    stored = document.get("sha256")
    try:
        actual = canonical_sha256(document)
    except ValueError as exc:
        raise ModelError(f"The model file holds non-finite numbers: {exc}") from exc
    if stored != actual:
        raise ModelError(
            "The model file's sha256 does not match its content: it was modified after "
            "training and is refused."
        )
    body = document.get("model")
    if not isinstance(body, dict):
        raise ModelError("The model file has no 'model' object.")
    try:
        features = body["features"]
        if not isinstance(features, list) or not features or not all(
            isinstance(f, str) for f in features
        ):
            raise ModelError("'features' must be a non-empty list of names.")
        if len(set(features)) != len(features):
            raise ModelError("'features' lists a feature twice.")
        if known_features is not None:
            unknown = sorted(set(features) - set(known_features))
            if unknown:
                raise ModelError(
                    f"The model uses {len(unknown)} feature(s) this node does not compute: "
                    f"{', '.join(unknown[:5])}."
                )
        n = len(features)
        coefficients = _numbers(body["coefficients"], n, "coefficients")
        intercept = _finite(body["intercept"], "intercept")
        standardisation = body["standardisation"]
        means: tuple[float, ...] | None = None
        sds: tuple[float, ...] | None = None
        if standardisation is not None:
            means = _numbers(standardisation["means"], n, "standardisation means")
            sds = _numbers(standardisation["sds"], n, "standardisation sds")
            if any(sd <= 0 for sd in sds):
                raise ModelError("Standardisation SDs must be positive.")
        t = body["training"]
        ci = _numbers(t["optimism_corrected_auc_ci95"], 2, "optimism_corrected_auc_ci95")
        training = TrainingSummary(
            cohort_size=int(_finite(t["cohort_size"], "cohort_size")),
            events=int(_finite(t["events"], "events")),
            outcome=str(t["outcome"]),
            folds=int(_finite(t["folds"], "folds")),
            penalty_lambda=_finite(t["penalty_lambda"], "penalty_lambda"),
            cv_auc=_finite(t["cv_auc"], "cv_auc"),
            apparent_auc=_finite(t["apparent_auc"], "apparent_auc"),
            optimism_corrected_auc=_finite(t["optimism_corrected_auc"], "optimism_corrected_auc"),
            optimism_corrected_auc_ci95=(ci[0], ci[1]),
            bootstrap_resamples=int(_finite(t["bootstrap_resamples"], "bootstrap_resamples")),
            seed=None if t.get("seed") is None else int(t["seed"]),
        )
        software = body["software"]
        if not isinstance(software, dict):
            raise ModelError("'software' must map package names to versions.")
        return RadScoreModel(
            features=tuple(features),
            coefficients=coefficients,
            intercept=intercept,
            means=means,
            sds=sds,
            training=training,
            created=str(body["created"]),
            software={str(k): str(v) for k, v in software.items()},
            sha256=actual,
        )
    except KeyError as exc:
        raise ModelError(f"The model file lacks the entry {exc.args[0]!r}.") from exc
    except (TypeError, AttributeError) as exc:
        raise ModelError(f"The model file is malformed: {exc}") from exc


def load_model(
    path: Path | str, known_features: Collection[str] | None = None
) -> RadScoreModel:
    """Read and validate a rad-score model file.

    Parameters
    ----------
    path
        The model file.
    known_features
        Feature names the node computes; default: the 869 of
        :func:`plugins.lib.radiomics.features.known_feature_names`.

    Returns
    -------
    RadScoreModel
        The model, with the verified ``sha256``.

    Raises
    ------
    ModelError
        If the file is missing or unreadable, not a model file, of another format version,
        modified after it was written (digest mismatch), uses unknown features, or holds
        non-finite or missing numbers.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"No rad-score model file at {path}.") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"Cannot read the rad-score model {path}: {exc}") from exc
    if known_features is None:
        from plugins.lib.radiomics.features import known_feature_names

        known_features = known_feature_names()
    model = _parse(document, known_features)
    logger.info("rad-score model %s loaded (sha256 %s)", path, model.sha256[:12])
    return RadScoreModel(**{**model.__dict__, "source": str(path)})


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def radscore(
    model: RadScoreModel,
    features: Mapping[str, float],
    top: int = DEFAULT_TOP_CONTRIBUTIONS,
) -> RadScoreResult:
    """Rad-score of one feature vector.

    Parameters
    ----------
    model
        A loaded model.
    features
        Feature name → value (e.g. ``FeatureVector.features``).
    top
        Number of largest contributions to report.

    Returns
    -------
    RadScoreResult
        ``intercept + Σ coefficient × standardised value`` and the ``top`` contributions by
        absolute size.

    Raises
    ------
    RadScoreError
        If a feature the model needs is missing or not finite.
    """
    missing = [f for f in model.features if f not in features]
    if missing:
        raise RadScoreError(
            f"{len(missing)} feature(s) the model needs are missing: {', '.join(missing[:5])}."
        )
    contributions: list[Contribution] = []
    for i, name in enumerate(model.features):
        value = float(features[name])
        if not math.isfinite(value):
            raise RadScoreError(f"Feature {name} is not finite on this slice.")
        z = value if model.means is None or model.sds is None else (
            (value - model.means[i]) / model.sds[i]
        )
        coefficient = model.coefficients[i]
        contributions.append(Contribution(name, coefficient, value, z, coefficient * z))
    score = model.intercept + math.fsum(c.contribution for c in contributions)
    ranked = sorted(contributions, key=lambda c: (-abs(c.contribution), c.feature))
    return RadScoreResult(
        value=score,
        top_contributions=tuple(ranked[: max(0, top)]),
        model_sha256=model.sha256,
        training=model.training,
    )

