"""``cmr-node classify train`` on synthetic cohorts: planted clinical signal is recovered."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from models.training.radscore.train import auc
from node.cli.main import main
from plugins.lge.infarct_model import (
    CLINICAL_FEATURES,
    IMAGE_FEATURES,
    InfarctModelError,
    combined_probability,
    load_infarct_model,
)

PLANTED = {"troponin": 1.2, "ecg_st_elevation": 0.9}
"""Log-odds per SD of the two features that carry the signal; all others are noise."""
N = 400


def _log_odds(x: np.ndarray, columns: tuple[str, ...], effects: dict[str, float]) -> np.ndarray:
    return sum((effects[c] * x[:, columns.index(c)] for c in effects), np.zeros(len(x)))


def _cohort(rng: np.random.Generator, n: int, effects: dict[str, float]
            ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    columns = (*CLINICAL_FEATURES, *IMAGE_FEATURES)
    x = rng.standard_normal((n, len(columns)))
    eta = _log_odds(x, columns, effects)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    return columns, x, y, eta


def _write(path: Path, columns: tuple[str, ...], x: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", *columns, "infarct"])
        for i, (row, outcome) in enumerate(zip(x, y, strict=True)):
            writer.writerow([f"C{i:03d}", *(f"{v:.6f}" for v in row), int(outcome)])


def _hanley_mcneil_se(a: float, n1: int, n0: int) -> float:
    """Standard error of an AUC (Hanley JA, McNeil BJ, Radiology 1982;143:29)."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a))
                     / (n1 * n0))


def test_training_recovers_planted_clinical_signal(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(7)
    columns, x, y, _ = _cohort(rng, N, PLANTED)
    # The planted effect's own AUC (the true log-odds as the score), on a large independent
    # draw; the tool may fall short of it by estimation error only: 3 standard errors.
    _, _, y_big, eta_big = _cohort(np.random.default_rng(99), 200_000, PLANTED)
    planted_auc = auc(y_big, eta_big)
    bound = planted_auc - 3 * _hanley_mcneil_se(planted_auc, int(y.sum()), int(N - y.sum()))
    table, out = tmp_path / "cohort.csv", tmp_path / "model.json"
    _write(table, columns, x, y)
    code = main(["classify", "train", "--table", str(table), "--outcome", "infarct",
                 "--out", str(out), "--bootstrap", "200"])
    assert code == 0
    assert "CV AUC" in capsys.readouterr().out
    model = load_infarct_model(out)
    t = model.training
    assert t["cv_auc"] > bound, (t["cv_auc"], planted_auc, bound)
    assert t["cv_auc_ci95"][0] < t["cv_auc"] < t["cv_auc_ci95"][1]
    assert t["cohort_size"] == N and t["events"] == int(y.sum())
    assert len(t["data_sha256"]) == 64
    assert set(model.software) >= {"cmr-node", "numpy", "scipy"}
    # The planted features carry the two largest coefficients, with the planted signs.
    ranked = sorted(zip(model.features, model.coefficients, strict=True),
                    key=lambda item: -abs(item[1]))
    assert {name for name, _ in ranked[:2]} == set(PLANTED)
    assert all(c > 0 for name, c in ranked[:2])
    # Calibrated on the out-of-fold predictions: slope near 1 for a correctly specified model.
    assert 0.7 < t["calibration"]["slope"] < 1.3


def test_training_without_signal_finds_none(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    columns, x, y, _ = _cohort(rng, N, {})
    table, out = tmp_path / "cohort.csv", tmp_path / "model.json"
    _write(table, columns, x, y)
    assert main(["classify", "train", "--table", str(table), "--outcome", "infarct",
                 "--out", str(out), "--bootstrap", "200"]) == 0
    t = load_infarct_model(out).training
    null_se = _hanley_mcneil_se(0.5, int(y.sum()), int(N - y.sum()))
    assert t["cv_auc"] < 0.5 + 3 * null_se


def test_model_contributions_and_tampering(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    columns, x, y, _ = _cohort(rng, 200, PLANTED)
    table, out = tmp_path / "cohort.csv", tmp_path / "model.json"
    _write(table, columns, x, y)
    assert main(["classify", "train", "--table", str(table), "--outcome", "infarct",
                 "--out", str(out), "--bootstrap", "50"]) == 0
    model = load_infarct_model(out)
    values = dict.fromkeys(model.features, 0.0) | {"troponin": 3.0}
    result = combined_probability(model, values)
    z = (3.0 - model.means[model.features.index("troponin")]) / model.sds[
        model.features.index("troponin")]
    top = result.contributions[0]
    assert top[0] == "troponin"
    assert top[4] == pytest.approx(model.coefficients[model.features.index("troponin")] * z)
    sizes = [abs(c[4]) for c in result.contributions]
    assert sizes == sorted(sizes, reverse=True)
    assert result.log_odds == pytest.approx(model.intercept + sum(c[4] for c in
                                                                  result.contributions))
    with pytest.raises(InfarctModelError, match="needs"):
        combined_probability(model, {"troponin": 1.0})
    document = json.loads(out.read_text())
    document["model"]["coefficients"][0] += 1.0
    out.write_text(json.dumps(document))
    with pytest.raises(InfarctModelError, match="modified"):
        load_infarct_model(out)


def test_training_refuses_a_table_without_features(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("case,weight,infarct\nA,1,0\nB,2,1\n")
    assert main(["classify", "train", "--table", str(table), "--outcome", "infarct",
                 "--out", str(tmp_path / "m.json")]) == 1
    assert "no clinical or image feature" in capsys.readouterr().err
