"""Training of a site's infarct model: clinical variables and LGE image features.

The model file it writes is read by the LGE analysis with
:func:`plugins.lge.infarct_model.load_infarct_model`; its format is defined there.  Nothing
here holds a coefficient: every number of a model comes from the site's own table.

1. Features (EMIDEC's 12 clinical variables and the analysis' image features, those present
   in the table) are standardised (mean 0, SD 1; a fold standardises on its own training
   part).  A feature constant in the cohort is refused.
2. Ridge (L2) logistic regression, ``mean log-loss + λ/2 Σ β²``, over a log-spaced λ grid;
   stratified k-fold cross-validation; the λ with the smallest out-of-fold log-loss is kept.
3. Out-of-fold predictions at that λ give the cross-validated AUC, its 95 % interval (the
   2.5th-97.5th percentiles over bootstrap resamples of the patients) and the calibration:
   the logistic recalibration of Cox (Biometrika 1958;45:562) fits ``logit p' = a + b logit
   p`` to the out-of-fold predictions; ``a`` and ``b`` (calibration intercept and slope) and
   the Brier score before and after are reported.
4. The model refitted on all patients at that λ, recalibrated with ``a`` and ``b``
   (coefficients × b, intercept × b + a), is written with its provenance: SHA-256 of the
   table, cohort size, events, features, λ, CV AUC with CI, calibration, software versions.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import optimize

from models.training.radscore.train import auc
from plugins.lge.infarct_model import (
    CLINICAL_FEATURES,
    IMAGE_FEATURES,
    InfarctModel,
    model_document,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FOLDS",
    "ClassifyTrainingError",
    "CohortTable",
    "TrainingReport",
    "read_cohort",
    "train_from_csv",
    "train_infarct_model",
]

Array = npt.NDArray[np.float64]

DEFAULT_FOLDS: Final = 5
DEFAULT_BOOTSTRAP: Final = 1000
LAMBDAS: Final = tuple(float(v) for v in np.logspace(-4, 1, 16))
"""Penalty grid (λ of the mean log-loss + λ/2 Σ β²)."""


class ClassifyTrainingError(ValueError):
    """The table cannot be used for training; the message says why."""


@dataclass(frozen=True)
class CohortTable:
    """Features and outcomes of a cohort, with the digest of the file they came from."""

    features: tuple[str, ...]
    x: Array
    y: npt.NDArray[np.int_]
    data_sha256: str


@dataclass(frozen=True)
class TrainingReport:
    """The trained model and its cross-validated figures."""

    model: InfarctModel
    out_of_fold: Array
    cv_auc: float
    cv_auc_ci95: tuple[float, float]


def _fit(x: Array, y: Array, lam: float) -> tuple[float, Array]:
    """Ridge logistic regression on standardised ``x``: (intercept, coefficients)."""
    n, p = x.shape

    def loss(w: Array) -> tuple[float, Array]:
        eta = w[0] + x @ w[1:]
        # log(1 + exp(eta)) - y eta, stable
        value = float(np.mean(np.logaddexp(0.0, eta) - y * eta)) + 0.5 * lam * float(
            w[1:] @ w[1:])
        residual = 1.0 / (1.0 + np.exp(-eta)) - y
        grad = np.concatenate([[residual.mean()], x.T @ residual / n + lam * w[1:]])
        return value, grad

    solution = optimize.minimize(loss, np.zeros(p + 1), jac=True, method="L-BFGS-B")
    return float(solution.x[0]), np.asarray(solution.x[1:], dtype=np.float64)


def _standardise(x: Array) -> tuple[Array, Array]:
    return x.mean(axis=0), x.std(axis=0, ddof=1)


def _folds(y: npt.NDArray[np.int_], folds: int, rng: np.random.Generator) -> list[
        npt.NDArray[np.int_]]:
    assignment = np.empty(len(y), dtype=np.int_)
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(y == label))
        assignment[members] = np.arange(len(members)) % folds
    return [np.flatnonzero(assignment == f) for f in range(folds)]


def _out_of_fold(x: Array, y: npt.NDArray[np.int_], parts: Sequence[npt.NDArray[np.int_]],
                 lam: float) -> Array:
    """Out-of-fold log-odds."""
    eta = np.empty(len(y))
    for test in parts:
        train = np.setdiff1d(np.arange(len(y)), test)
        means, sds = _standardise(x[train])
        intercept, coef = _fit((x[train] - means) / sds, y[train].astype(np.float64), lam)
        eta[test] = intercept + ((x[test] - means) / sds) @ coef
    return eta


def _log_loss(y: npt.NDArray[np.int_], eta: Array) -> float:
    return float(np.mean(np.logaddexp(0.0, eta) - y * eta))


def _brier(y: npt.NDArray[np.int_], eta: Array) -> float:
    return float(np.mean((1.0 / (1.0 + np.exp(-eta)) - y) ** 2))


def train_infarct_model(
    table: CohortTable,
    *,
    outcome_definition: str,
    folds: int = DEFAULT_FOLDS,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    software: Mapping[str, str] | None = None,
) -> TrainingReport:
    """Cross-validate, calibrate and fit the infarct model (see the module docstring).

    Raises
    ------
    ClassifyTrainingError
        If a class has fewer patients than folds or a feature is constant.
    """
    y = table.y
    events = int(y.sum())
    if min(events, len(y) - events) < folds:
        raise ClassifyTrainingError(
            f"{events} patients with and {len(y) - events} without the outcome: each class "
            f"needs at least {folds} (one per fold).")
    sds = table.x.std(axis=0, ddof=1)
    constant = [f for f, sd in zip(table.features, sds, strict=True) if not sd > 0]
    if constant:
        raise ClassifyTrainingError(f"Constant in the cohort: {', '.join(constant)}.")
    rng = np.random.default_rng(seed)
    parts = _folds(y, folds, rng)
    losses = [_log_loss(y, _out_of_fold(table.x, y, parts, lam)) for lam in LAMBDAS]
    lam = LAMBDAS[int(np.argmin(losses))]
    eta = _out_of_fold(table.x, y, parts, lam)
    cv_auc = auc(y, eta)
    resampled = []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(y), len(y))
        if 0 < y[pick].sum() < len(pick):
            resampled.append(auc(y[pick], eta[pick]))
    low, high = (float(v) for v in np.percentile(resampled, [2.5, 97.5]))
    cal_intercept, cal_slope_arr = _fit(eta[:, None], y.astype(np.float64), 0.0)
    cal_slope = float(cal_slope_arr[0])
    recalibrated = cal_intercept + cal_slope * eta
    means, sds = _standardise(table.x)
    intercept, coef = _fit((table.x - means) / sds, y.astype(np.float64), lam)
    training: dict[str, Any] = {
        "cohort_size": len(y),
        "events": events,
        "outcome": outcome_definition,
        "folds": folds,
        "penalty": "ridge (L2) logistic, mean log-loss + lambda/2 sum beta^2",
        "penalty_lambda": lam,
        "cv_auc": round(cv_auc, 4),
        "cv_auc_ci95": [round(low, 4), round(high, 4)],
        "bootstrap_resamples": len(resampled),
        "calibration": {
            "method": "logistic recalibration of out-of-fold log-odds (Cox 1958)",
            "intercept": round(cal_intercept, 4),
            "slope": round(cal_slope, 4),
            "brier_before": round(_brier(y, eta), 4),
            "brier_after": round(_brier(y, recalibrated), 4),
        },
        "data_sha256": table.data_sha256,
        "seed": seed,
    }
    model = InfarctModel(
        features=table.features,
        coefficients=tuple(float(c) for c in cal_slope * coef),
        intercept=float(cal_slope * intercept + cal_intercept),
        means=tuple(float(m) for m in means),
        sds=tuple(float(s) for s in sds),
        training=training,
        created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        software={**dict(software or {}), "numpy": np.__version__,
                  "scipy": _scipy_version()},
    )
    logger.info("infarct model: %d patients, %d events, CV AUC %.3f (%.3f-%.3f)",
                len(y), events, cv_auc, low, high)
    return TrainingReport(model, eta, cv_auc, (low, high))


def _scipy_version() -> str:
    import scipy

    return str(scipy.__version__)


def read_cohort(path: Path | str, outcome: str) -> CohortTable:
    """Read a cohort CSV: one row per patient, an outcome column (0/1), feature columns.

    Feature columns are those named in :data:`plugins.lge.infarct_model.CLINICAL_FEATURES`
    and :data:`~plugins.lge.infarct_model.IMAGE_FEATURES`; other columns are ignored.

    Raises
    ------
    ClassifyTrainingError
        If the file cannot be read, has no outcome or feature column, or a value is not a
        number.
    """
    try:
        raw = Path(path).read_bytes()
        rows = list(csv.DictReader(raw.decode("utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassifyTrainingError(f"Cannot read the table {path}: {exc}") from exc
    if not rows:
        raise ClassifyTrainingError("The table has no patient rows.")
    columns = list(rows[0])
    if outcome not in columns:
        raise ClassifyTrainingError(f"The table has no outcome column {outcome!r}.")
    features = tuple(c for c in columns if c in (*CLINICAL_FEATURES, *IMAGE_FEATURES))
    if not features:
        raise ClassifyTrainingError("The table has no clinical or image feature column.")
    x = np.empty((len(rows), len(features)))
    y = np.empty(len(rows), dtype=np.int_)
    for r, row in enumerate(rows):
        text = (row.get(outcome) or "").strip()
        if text not in ("0", "1"):
            raise ClassifyTrainingError(f"Row {r + 2}: outcome is {text!r}, not 0 or 1.")
        y[r] = int(text)
        for c, name in enumerate(features):
            try:
                x[r, c] = float(row[name])
            except (TypeError, ValueError) as exc:
                raise ClassifyTrainingError(
                    f"Row {r + 2}: {name} is {row[name]!r}, not a number.") from exc
            if not math.isfinite(x[r, c]):
                raise ClassifyTrainingError(f"Row {r + 2}: {name} is not finite.")
    return CohortTable(features, x, y, hashlib.sha256(raw).hexdigest())


def train_from_csv(table_path: Path | str, outcome: str, out: Path | str, *,
                   outcome_definition: str | None = None, folds: int = DEFAULT_FOLDS,
                   bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                   software: Mapping[str, str] | None = None) -> TrainingReport:
    """Read a cohort table, train the model and write the model file."""
    table = read_cohort(table_path, outcome)
    report = train_infarct_model(table, outcome_definition=outcome_definition or outcome,
                                 folds=folds, bootstrap=bootstrap, seed=seed,
                                 software=software)
    document = model_document(report.model)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    logger.info("infarct model written to %s (sha256 %s)", target, document["sha256"][:12])
    model = InfarctModel(**{**report.model.__dict__, "sha256": str(document["sha256"])})
    return TrainingReport(model, report.out_of_fold, report.cv_auc, report.cv_auc_ci95)
