"""Training of a site's rad-score model, bootstrap validation and the DeLong test.

The model file it writes is read by the T1-map analysis with
:func:`plugins.lib.radiomics.model.load_model`; its format is defined there.

As in the published study (glmnet, LASSO logistic regression):

1. Features are standardised (mean 0, SD 1 over the training data; features constant in the
   cohort are dropped).
2. LASSO logistic regression over a penalty grid (glmnet's λ, from the smallest λ that keeps
   every coefficient at zero down to ``lambda_min_ratio`` of it, log-spaced), 10-fold
   stratified cross-validation; the λ with the largest mean fold AUC is kept (glmnet
   ``type.measure = "auc"``, ``lambda.min``).  Folds standardise on their own training part.
3. Refit on all patients at that λ: the features with non-zero coefficients and the intercept
   form the rad-score (the model's log-odds).
4. Harrell's bootstrap validation: for each of ``bootstrap`` resamples (with replacement) the
   model is refitted at the chosen λ, standardisation included; optimism = AUC on the resample
   − AUC of that refit on the original patients; the optimism-corrected AUC is the apparent
   AUC minus the mean optimism, and its 95 % interval the 2.5th–97.5th percentiles of the
   apparent AUC minus each resample's optimism.  The penalty search is *not* repeated in each
   resample (1000 × 10-fold searches would take hours), so optimism from tuning λ is not
   included and the correction is slightly optimistic.
5. Two models' AUCs on the same patients are compared with DeLong's test, computed with the
   fast algorithm of Sun & Xu (IEEE Signal Process Lett 2014;21:1389–93).
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import math
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import stats

from plugins.lib.radiomics.model import RadScoreModel, TrainingSummary, model_document

logger = logging.getLogger(__name__)

__all__ = [
    "DeLongResult",
    "FeatureTable",
    "TrainingError",
    "TrainingReport",
    "auc",
    "delong_covariance",
    "delong_test",
    "fit_lasso_logistic",
    "lambda_grid",
    "read_table",
    "save_model",
    "train_from_csv",
    "train_radscore",
]

Array = npt.NDArray[np.float64]

DEFAULT_FOLDS: Final = 10
DEFAULT_BOOTSTRAP: Final = 1000
DEFAULT_N_LAMBDAS: Final = 30
DEFAULT_LAMBDA_MIN_RATIO: Final = 0.01
_MAX_ITER: Final = 5000
_TOL: Final = 1e-5


class TrainingError(ValueError):
    """The table cannot be used for training; the message says why."""


@dataclass(frozen=True)
class FeatureTable:
    """Features and outcomes of a cohort.

    Attributes
    ----------
    feature_names
        Column names of ``x``.
    x
        (patients, features) values.
    y
        Outcome 0/1 per patient.
    ignored_columns
        Columns of the file that were not used as features (identifiers, other data).
    """

    feature_names: tuple[str, ...]
    x: Array
    y: npt.NDArray[np.int_]
    ignored_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingReport:
    """Outcome of :func:`train_radscore`.

    Attributes
    ----------
    model
        The rad-score model (write it with :func:`save_model`).
    lambdas, cv_auc_mean, cv_auc_sd
        The penalty grid and the mean and SD of the fold AUCs at each penalty.
    chosen_index
        Index of the chosen penalty in ``lambdas``.
    bootstrap_optimism
        Optimism of each bootstrap resample.
    dropped_constant
        Features dropped because they are constant in the cohort.
    """

    model: RadScoreModel
    lambdas: Array
    cv_auc_mean: Array
    cv_auc_sd: Array
    chosen_index: int
    bootstrap_optimism: Array
    dropped_constant: tuple[str, ...]


@dataclass(frozen=True)
class DeLongResult:
    """DeLong comparison of two correlated AUCs.

    Attributes
    ----------
    auc_a, auc_b
        The two AUCs.
    covariance
        2 × 2 covariance matrix of (auc_a, auc_b).
    z
        (auc_a − auc_b) / SE of the difference.
    p_value
        Two-sided p-value.
    """

    auc_a: float
    auc_b: float
    covariance: Array
    z: float
    p_value: float

    @property
    def difference(self) -> float:
        """auc_a − auc_b."""
        return self.auc_a - self.auc_b


# --------------------------------------------------------------------------------------------
# AUC and DeLong (Sun & Xu 2014)
# --------------------------------------------------------------------------------------------


def _midranks(x: Array) -> Array:
    """Ranks 1..n of ``x``, ties sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    n = len(x)
    ranks_sorted = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and sorted_x[j] == sorted_x[i]:
            j += 1
        ranks_sorted[i:j] = 0.5 * (i + j - 1) + 1.0
        i = j
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def _split(y: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[Array, int, int]:
    labels = np.asarray(y)
    values = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if values.shape[1] != labels.shape[0]:
        raise ValueError("Scores and outcomes differ in length.")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("Outcomes must be 0 or 1.")
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError("The AUC needs patients with and without the outcome.")
    ordered = np.concatenate([values[:, positive], values[:, ~positive]], axis=1)
    return ordered, m, n


def delong_covariance(y: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[Array, Array]:
    """AUCs of one or more scores and their DeLong covariance (fast algorithm).

    Parameters
    ----------
    y
        Outcome 0/1 per subject.
    scores
        (k, subjects) or (subjects,): higher means more likely outcome 1.

    Returns
    -------
    aucs, covariance
        (k,) AUCs and (k, k) covariance ``S10 / m + S01 / n`` of DeLong et al. (Biometrics
        1988), with the structural components computed from midranks as in Sun & Xu (2014),
        O(k N log N).

    Raises
    ------
    ValueError
        If lengths differ, outcomes are not 0/1, or one class is absent.
    """
    ordered, m, n = _split(y, scores)
    k = ordered.shape[0]
    tx = np.empty((k, m))
    ty = np.empty((k, n))
    tz = np.empty((k, m + n))
    for r in range(k):
        tx[r] = _midranks(ordered[r, :m])
        ty[r] = _midranks(ordered[r, m:])
        tz[r] = _midranks(ordered[r])
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    # Structural components: V10 per positive (fraction of negatives scored below it, ties
    # 1/2), V01 per negative (fraction of positives scored above it).
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((k, k))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((k, k))
    return aucs, s10 / m + s01 / n


def auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann–Whitney, ties counted 1/2)."""
    ordered, m, n = _split(y, score)
    ranks = _midranks(ordered[0])
    return float(ranks[:m].sum() / (m * n) - (m + 1.0) / (2.0 * n))


def delong_test(y: npt.ArrayLike, score_a: npt.ArrayLike, score_b: npt.ArrayLike) -> DeLongResult:
    """DeLong test of two AUCs measured on the same subjects.

    Parameters
    ----------
    y
        Outcome 0/1 per subject.
    score_a, score_b
        The two models' scores (e.g. predicted probabilities) per subject.

    Returns
    -------
    DeLongResult
        AUCs, covariance, z statistic and two-sided p-value.
    """
    aucs, cov = delong_covariance(y, np.vstack([score_a, score_b]))
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    difference = float(aucs[0] - aucs[1])
    if variance <= 0.0:
        z = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
    else:
        z = difference / math.sqrt(variance)
    p_value = float(2.0 * stats.norm.sf(abs(z)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), cov, z, p_value)


# --------------------------------------------------------------------------------------------
# LASSO logistic regression
# --------------------------------------------------------------------------------------------


def _standardise(x: Array) -> tuple[Array, Array, Array]:
    means = x.mean(axis=0)
    sds = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.ones(x.shape[1])
    sds = np.where(sds > 0, sds, 1.0)
    return (x - means) / sds, means, sds


def lambda_grid(
    x: Array, y: npt.ArrayLike, n: int = DEFAULT_N_LAMBDAS,
    min_ratio: float = DEFAULT_LAMBDA_MIN_RATIO,
) -> Array:
    """glmnet's penalty grid for standardised ``x``: λ_max down to ``min_ratio`` · λ_max.

    λ_max = max_j |Σ_i z_ij (y_i − ȳ)| / N is the smallest penalty at which every
    coefficient is zero (objective: mean log-loss + λ Σ |β|).
    """
    z, _, _ = _standardise(np.asarray(x, dtype=np.float64))
    outcome = np.asarray(y, dtype=np.float64)
    lam_max = float(np.max(np.abs(z.T @ (outcome - outcome.mean()))) / len(outcome))
    if lam_max <= 0:
        raise TrainingError("No feature is associated with the outcome at all.")
    return np.asarray(np.geomspace(lam_max, lam_max * min_ratio, n), dtype=np.float64)


def fit_lasso_logistic(
    x: Array, y: npt.ArrayLike, lam: float, seed: int = 0
) -> tuple[float, Array, Array, Array]:
    """Fit LASSO logistic regression on standardised features.

    Parameters
    ----------
    x
        (patients, features) raw values.
    y
        Outcome 0/1.
    lam
        Penalty λ (objective: mean log-loss + λ Σ |β|, on standardised features).
    seed
        Seed of the solver.

    Returns
    -------
    intercept, coefficients, means, sds
        The fit on standardised features and the standardisation used.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    z, means, sds = _standardise(x)
    outcome = np.asarray(y)
    estimator = LogisticRegression(
        C=1.0 / (len(outcome) * lam), l1_ratio=1.0, solver="saga",
        max_iter=_MAX_ITER, tol=_TOL, random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            estimator.fit(z, outcome)
        except ConvergenceWarning:
            logger.warning("LASSO fit at lambda %.4g did not converge in %d iterations",
                           lam, _MAX_ITER)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                estimator.fit(z, outcome)
    return float(estimator.intercept_[0]), estimator.coef_[0].astype(np.float64), means, sds


def _predict(x: Array, fit: tuple[float, Array, Array, Array]) -> Array:
    intercept, coef, means, sds = fit
    return np.asarray(intercept + ((x - means) / sds) @ coef, dtype=np.float64)


def _stratified_folds(y: npt.NDArray[np.int_], folds: int, rng: np.random.Generator
                      ) -> list[npt.NDArray[np.int_]]:
    assignment = np.empty(len(y), dtype=np.int_)
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(y == label))
        assignment[members] = np.arange(len(members)) % folds
    return [np.flatnonzero(assignment == f) for f in range(folds)]


def _software(caller: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's versions (e.g. ``{"cmr-node": "0.1.0"}``), then the libraries'."""
    import sklearn

    versions = {
        **dict(caller or {}),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }
    try:
        from plugins.lib.radiomics.features import pyradiomics_version

        versions["pyradiomics"] = pyradiomics_version()
    except ImportError:
        versions["pyradiomics"] = "not installed"
    return versions


def train_radscore(
    table: FeatureTable,
    *,
    outcome_definition: str,
    folds: int = DEFAULT_FOLDS,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    n_lambdas: int = DEFAULT_N_LAMBDAS,
    lambda_min_ratio: float = DEFAULT_LAMBDA_MIN_RATIO,
    seed: int = 0,
    software: Mapping[str, str] | None = None,
) -> TrainingReport:
    """Train a rad-score model: LASSO with CV penalty choice, refit, bootstrap validation.

    Parameters
    ----------
    table
        Features and outcomes.
    outcome_definition
        What outcome 1 means (written into the model file).
    folds
        Cross-validation folds (stratified).
    bootstrap
        Bootstrap resamples for the optimism correction.
    n_lambdas, lambda_min_ratio
        Penalty grid (see :func:`lambda_grid`).
    seed
        Seed of fold assignment, bootstrap and solver.
    software
        Versions of the calling program (package -> version, e.g. ``{"cmr-node": "0.1.0"}``),
        recorded in the model before those of numpy, scikit-learn and pyradiomics.

    Returns
    -------
    TrainingReport
        The model and the validation details.

    Raises
    ------
    TrainingError
        With too few patients of either outcome for the folds, no usable feature, or when
        the LASSO keeps no feature.
    """
    y = np.asarray(table.y, dtype=np.int_)
    events, non_events = int(y.sum()), int((1 - y).sum())
    if min(events, non_events) < folds:
        raise TrainingError(
            f"{events} patient(s) with and {non_events} without the outcome: each of the "
            f"{folds} folds needs at least one of both."
        )
    if bootstrap < 1:
        raise TrainingError("At least one bootstrap resample is needed.")
    x_all = np.asarray(table.x, dtype=np.float64)
    if not np.isfinite(x_all).all():
        raise TrainingError("The table holds missing or non-finite feature values.")
    varying = x_all.std(axis=0) > 0
    dropped = tuple(n for n, keep in zip(table.feature_names, varying, strict=True) if not keep)
    names = tuple(n for n, keep in zip(table.feature_names, varying, strict=True) if keep)
    if not names:
        raise TrainingError("Every feature is constant in the cohort.")
    x = x_all[:, varying]
    rng = np.random.default_rng(seed)

    lambdas = lambda_grid(x, y, n_lambdas, lambda_min_ratio)
    fold_index = _stratified_folds(y, folds, rng)
    fold_auc = np.empty((folds, len(lambdas)))
    for f, test in enumerate(fold_index):
        train = np.setdiff1d(np.arange(len(y)), test)
        for j, lam in enumerate(lambdas):
            fit = fit_lasso_logistic(x[train], y[train], float(lam), seed)
            fold_auc[f, j] = auc(y[test], _predict(x[test], fit))
    mean_auc = fold_auc.mean(axis=0)
    sd_auc = fold_auc.std(axis=0, ddof=1)
    chosen = int(np.argmax(mean_auc))  # first maximum = largest λ among ties (sparsest)
    lam = float(lambdas[chosen])
    logger.info("LASSO: lambda %.4g chosen, mean CV AUC %.3f", lam, mean_auc[chosen])

    intercept, coef, means, sds = fit_lasso_logistic(x, y, lam, seed)
    selected = np.flatnonzero(coef != 0.0)
    if selected.size == 0:
        raise TrainingError(
            f"The LASSO keeps no feature at the best penalty (mean CV AUC "
            f"{mean_auc[chosen]:.3f}): the features carry no usable signal for this outcome."
        )
    apparent = auc(y, _predict(x, (intercept, coef, means, sds)))

    optimism: list[float] = []
    n = len(y)
    while len(optimism) < bootstrap:
        sample = rng.integers(0, n, n)
        if y[sample].min() == y[sample].max():
            continue
        fit = fit_lasso_logistic(x[sample], y[sample], lam, seed)
        optimism.append(auc(y[sample], _predict(x[sample], fit)) - auc(y, _predict(x, fit)))
    optimism_array = np.asarray(optimism)
    corrected = apparent - float(optimism_array.mean())
    low, high = np.percentile(apparent - optimism_array, [2.5, 97.5])

    training = TrainingSummary(
        cohort_size=n,
        events=events,
        outcome=outcome_definition,
        folds=folds,
        penalty_lambda=lam,
        cv_auc=float(mean_auc[chosen]),
        apparent_auc=apparent,
        optimism_corrected_auc=corrected,
        optimism_corrected_auc_ci95=(float(low), float(high)),
        bootstrap_resamples=bootstrap,
        seed=seed,
    )
    model = RadScoreModel(
        features=tuple(names[i] for i in selected),
        coefficients=tuple(float(coef[i]) for i in selected),
        intercept=intercept,
        means=tuple(float(means[i]) for i in selected),
        sds=tuple(float(sds[i]) for i in selected),
        training=training,
        created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        software=_software(software),
    )
    logger.info(
        "rad-score model: %d feature(s), CV AUC %.3f, optimism-corrected AUC %.3f (%.3f-%.3f)",
        len(selected), training.cv_auc, corrected, low, high,
    )
    return TrainingReport(model, lambdas, mean_auc, sd_auc, chosen, optimism_array, dropped)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _outcome(value: str, row: int, column: str) -> int:
    text = value.strip()
    if text in ("0", "1", "0.0", "1.0"):
        return int(float(text))
    raise TrainingError(f"Row {row}: outcome {column!r} is {value!r}, not 0 or 1.")


def read_table(
    path: Path | str, outcome: str, known_features: Collection[str] | None = None
) -> FeatureTable:
    """Read a cohort table (CSV, one row per patient, header row).

    Parameters
    ----------
    path
        The CSV file (e.g. written by ``cmr-node radiomics export`` plus an outcome column).
    outcome
        Column holding the outcome, 0 or 1.
    known_features
        Columns used as features; default: the 869 radiomic feature names.  Other columns
        (identifiers, clinical data) are ignored and listed in the result.

    Returns
    -------
    FeatureTable
        The features (in file column order) and outcomes.

    Raises
    ------
    TrainingError
        If the file cannot be read, lacks the outcome or any feature column, or a value is
        missing or not a number.
    """
    if known_features is None:
        from plugins.lib.radiomics.features import known_feature_names

        known_features = known_feature_names()
    known = set(known_features)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except OSError as exc:
        raise TrainingError(f"Cannot read the table {path}: {exc}") from exc
    if outcome not in columns:
        raise TrainingError(f"The table has no outcome column {outcome!r}.")
    features = [c for c in columns if c in known and c != outcome]
    if not features:
        raise TrainingError("The table has no radiomic feature column.")
    ignored = tuple(c for c in columns if c not in features and c != outcome)
    if not rows:
        raise TrainingError("The table has no patient rows.")
    x = np.empty((len(rows), len(features)))
    y = np.empty(len(rows), dtype=np.int_)
    for r, row in enumerate(rows, start=2):
        y[r - 2] = _outcome(row.get(outcome) or "", r, outcome)
        for c, name in enumerate(features):
            try:
                x[r - 2, c] = float(row[name])
            except (TypeError, ValueError) as exc:
                raise TrainingError(
                    f"Row {r}: feature {name!r} is {row[name]!r}, not a number."
                ) from exc
    logger.info("table %s: %d patients, %d features, %d ignored column(s)",
                path, len(rows), len(features), len(ignored))
    return FeatureTable(tuple(features), x, y, ignored)


def save_model(model: RadScoreModel, path: Path) -> str:
    """Write a model file; returns the content digest."""
    document = model_document(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    logger.info("rad-score model with %d feature(s) written to %s", len(model.features), path)
    return str(document["sha256"])


def train_from_csv(
    table_path: Path | str,
    outcome: str,
    out: Path | str,
    *,
    outcome_definition: str | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    known_features: Collection[str] | None = None,
    software: Mapping[str, str] | None = None,
) -> TrainingReport:
    """Read a table, train the rad-score model and write the model file.

    Parameters
    ----------
    table_path, outcome
        See :func:`read_table`.
    out
        Model file to write.
    outcome_definition
        Written into the model; default: the outcome column's name.
    bootstrap, folds, seed
        See :func:`train_radscore`.
    known_features
        See :func:`read_table`.
    software
        See :func:`train_radscore`.

    Returns
    -------
    TrainingReport
        The trained model and validation details.
    """
    table = read_table(table_path, outcome, known_features)
    report = train_radscore(
        table, outcome_definition=outcome_definition or outcome,
        folds=folds, bootstrap=bootstrap, seed=seed, software=software,
    )
    sha = save_model(report.model, Path(out))
    return TrainingReport(
        model=RadScoreModel(**{**report.model.__dict__, "sha256": sha, "source": str(out)}),
        lambdas=report.lambdas,
        cv_auc_mean=report.cv_auc_mean,
        cv_auc_sd=report.cv_auc_sd,
        chosen_index=report.chosen_index,
        bootstrap_optimism=report.bootstrap_optimism,
        dropped_constant=report.dropped_constant,
    )

