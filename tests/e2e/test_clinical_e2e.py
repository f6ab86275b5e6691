"""End to end: clinical variables posted over HTTP reach the LGE analysis and the PACS.

A node configured with a site infarct model (trained in the test by ``cmr-node classify
train`` on a synthetic cohort: no coefficient is written here) analyses an LGE study; its SR
reports the image-only call, without a combined probability.  The study's twelve clinical
variables are then posted to ``/studies/<uid>/covariates`` (a bad value first: refused, 400,
nothing stored); the LGE is analysed again and the new SR at the test PACS carries the
model's probability, equal to the model applied to the posted variables.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from models.phantoms.dicom_lge import write_lge_study_series
from plugins.lge.clinical import parse_clinical
from plugins.lge.infarct_model import combined_probability, load_infarct_model
from plugins.lib.codes import INFARCT_PROBABILITY
from tests.netutil import NodeProcess, PacsScp, dciodvfy_errors, free_port, send_files, wait_for
from tests.node.test_covariates import _post
from tests.node.test_covariates_clinical import VARIABLES, train_model

pytestmark = pytest.mark.e2e

RESULT_TIMEOUT_S = 180.0


def _delivered(node: NodeProcess, series_uid: str, after: int
               ) -> tuple[int, Path, list[Any]] | None:
    """The newest generation (> ``after``) of the series' analysis, once it is done, nothing
    newer waits and all its outputs were sent: (generation, result folder, outbox rows)."""
    jobs = node.query("SELECT id, generation, state, result_dir FROM jobs"
                      " WHERE series_instance_uid=? ORDER BY generation DESC LIMIT 1",
                      (series_uid,))
    if not jobs or jobs[0]["state"] != "done" or jobs[0]["generation"] <= after:
        return None
    rows = node.query("SELECT state, path FROM outbox WHERE job_id=?", (jobs[0]["id"],))
    if not rows or any(r["state"] != "sent" for r in rows):
        return None
    return int(jobs[0]["generation"]), Path(jobs[0]["result_dir"]), rows


def _sr_items(srs: list[Any], value_type: str, code_value: str) -> list[Any]:
    """Every content item of ``value_type`` and concept ``code_value`` in the SRs' trees (a
    code value over 16 characters is a Long Code Value, PS3.3 8.8)."""
    found: list[Any] = []

    def walk(items: Any) -> None:
        for item in items:
            name = item.get("ConceptNameCodeSequence")
            value = (name[0].get("CodeValue") or name[0].get("LongCodeValue")) if name else None
            if item.get("ValueType") == value_type and value == code_value:
                found.append(item)
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    for sr in srs:
        walk(sr.ContentSequence)
    return found


def _sr_values(srs: list[Any], code_value: str) -> list[float]:
    """Every NUM value of the concept ``code_value`` in the SRs."""
    return [float(item.MeasuredValueSequence[0].NumericValue)
            for item in _sr_items(srs, "NUM", code_value)]


def _srs(paths: list[Path]) -> list[Any]:
    datasets = [dcmread(p) for p in paths]
    return [ds for ds in datasets if ds.Modality == "SR"]


def test_posted_clinical_variables_give_the_sr_a_combined_probability(
    tmp_path: Path, pacs: PacsScp
) -> None:
    model_path = train_model(tmp_path / "site")
    truth = write_lge_study_series(tmp_path / "study", seed=8, scar_pattern="ischaemic_lad",
                                   n_slices=8)
    by_kind = {s["kind"]: s for s in truth["series"]}
    root = tmp_path / "study"
    files = {kind: [root / i["file"] for i in s["instances"]] for kind, s in by_kind.items()}
    study_uid = str(dcmread(files["lge_psir"][0], stop_before_pixels=True).StudyInstanceUID)
    psir_uid = by_kind["lge_psir"]["series_instance_uid"]
    node = NodeProcess(tmp_path / "node", pacs.port, http_port=free_port(),
                       extra_config=f'[analysis.lge]\ninfarct_model = "{model_path}"\n')
    try:
        node.start(timeout=120)
        for kind in ("lge_magnitude", "lge_psir", "cine"):
            assert set(send_files(files[kind], node.port)) == {0}, kind
        # (The cine may complete after the LGE was analysed: the LGE is then analysed again
        # with it, a later generation.)
        generation, folder, first = wait_for(lambda: _delivered(node, psir_uid, -1),
                                             RESULT_TIMEOUT_S, interval=0.5)
        time.sleep(3.0)  # the cine's arrival, if it re-queues the LGE, has happened by now
        generation, folder, first = wait_for(lambda: _delivered(node, psir_uid, -1),
                                             RESULT_TIMEOUT_S, interval=0.5)
        results = json.loads((folder / "results.json").read_text())
        combined = results["extra"]["infarct"]["combined"]
        assert combined["available"] is False and combined["configured"] is True
        assert "No clinical variables supplied" in combined["reason"]
        assert not _sr_values(_srs([Path(r["path"]) for r in first]),
                              INFARCT_PROBABILITY.value)

        token = (node.data_dir / "http-token").read_text().strip()
        bad = json.dumps({**VARIABLES, "killip": 6}).encode()
        status, answer = _post(node.http_port, study_uid, bad, token)
        assert status == 400 and "killip" in answer["error"], answer
        assert not (node.data_dir / "covariates" / f"{study_uid}.json").exists()

        status, answer = _post(node.http_port, study_uid, json.dumps(VARIABLES).encode(), token)
        assert status == 200, answer
        [requeued] = node.query("SELECT id FROM jobs WHERE series_instance_uid=? AND"
                                " generation=?", (psir_uid, generation + 1))
        assert requeued["id"] in answer["requeued_jobs"]
        _, folder, second = wait_for(lambda: _delivered(node, psir_uid, generation),
                                     RESULT_TIMEOUT_S, interval=0.5)
        results = json.loads((folder / "results.json").read_text())
    finally:
        node.stop()

    combined = results["extra"]["infarct"]["combined"]
    expected = combined_probability(load_infarct_model(model_path),
                                    parse_clinical(VARIABLES).features())
    assert combined["available"] is True, combined
    assert combined["clinical_source"] == f"sidecar {study_uid}.json"
    assert combined["probability"] == pytest.approx(expected.probability, abs=1e-3)
    # The re-analysis SRs reached the PACS and carry the probability (per cent).
    received = pacs.latest_by_uid()
    objects = [received[str(dcmread(Path(r["path"]), stop_before_pixels=True).SOPInstanceUID)]
               for r in second]
    srs = [ds for ds in objects if ds.Modality == "SR"]
    values = _sr_values(srs, INFARCT_PROBABILITY.value)
    # The SR keeps one decimal of the per cent (± 0.05) of a probability kept to 4 (± 0.005).
    assert values and all(v == pytest.approx(100 * expected.probability, abs=0.055)
                          for v in values)
    # ... and why: the largest contributions, troponin among them (the planted signal).
    why = [str(item.TextValue) for item in _sr_items(srs, "TEXT", "CONTRIB")
           if str(item.TextValue).startswith("infarct probability")]
    assert why and "troponin" in why[0], why
    for row in second:
        assert dciodvfy_errors(Path(row["path"])) == [], row["path"]
