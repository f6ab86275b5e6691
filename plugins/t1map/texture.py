"""Radiomics of the mid-ventricular native T1 map, the rad-score and the LVRR probability.

The published study (native T1 radiomics in non-ischaemic DCM) selected 16 features by LASSO
but did not publish their coefficients: a rad-score is computed only from a model file a site
trained (``cmr-node radiomics train``) and named in the analysis options
(``radscore_model``). Without one the features are reported and the result says so.

The probability of LV reverse remodelling (LVRR) comes from the study's published logistic
models (:mod:`plugins.lib.radiomics.lvrr`) when the node supplies the patient's covariates in the
analysis options (``covariates``, from a sidecar file, the REST API, the command line or the
node's own LGE analysis of the study; ``covariates_source`` says which).  The richest model
whose inputs are all present is used; models that need the rad-score are used only when the
site's model produced one.

The function stays pure: covariates arrive as values, never as files or network calls.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final

import numpy as np

from plugins.api import Label, LoadedSeries, Measurement, QCFlag, Severity, SliceResult
from plugins.lib import codes

logger = logging.getLogger(__name__)

__all__ = [
    "LVRR_KEY",
    "RADSCORE_KEY",
    "TextureCode",
    "lvrr_assessment",
    "mid_slice_radiomics",
    "radiomics_measurements",
]

RADSCORE_KEY: Final = "radscore"
"""``results.json`` key of the rad-score measurement."""
LVRR_KEY: Final = "lvrr_probability_percent"
"""``results.json`` key of the LVRR probability measurement (per cent)."""
NO_COVARIATES_MESSAGE: Final = (
    "No clinical covariates were supplied for this study (sidecar file, REST call or command "
    "line), so no LVRR probability is computed."
)
EXTERNAL_RADSCORE_MESSAGE: Final = (
    "A rad-score supplied with the covariates is ignored: the rad-score comes only from this "
    "node's site model applied to this map."
)


class TextureCode:
    """Stable QC codes of the radiomics step."""

    NO_MID_SLICE = "radiomics_no_mid_slice"
    FAILED = "radiomics_failed"
    MODEL_INVALID = "radscore_model_invalid"
    RADSCORE_MODEL = "radscore_model"
    """INFO: the rad-score's model provenance and largest contributions."""
    LVRR = "lvrr_prediction"
    """INFO: the published LVRR model used, its AUC and its caveats."""
    COVARIATES_INVALID = "lvrr_covariates_invalid"
    """WARNING: the supplied covariates were refused; no LVRR probability."""
    LVRR_UNAVAILABLE = "lvrr_unavailable"
    """INFO: covariates were supplied but no published model has all its inputs."""


def mid_slice_radiomics(
    series: LoadedSeries,
    slices: Sequence[SliceResult],
    failed_frames: AbstractSet[int],
    scale: float,
    options: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, list[QCFlag]]:
    """Radiomic features of the mid-ventricular slice's myocardium, rad-score and LVRR.

    Parameters
    ----------
    series
        The analysed series.
    slices
        Slice results (label images, levels).
    failed_frames
        Frames whose measurements carry a FAILURE flag: never used.
    scale
        Factor from stored values to ms.
    options
        ``radiomics`` (default True) turns the step off when False; ``radscore_model``
        is the path of a site-trained rad-score model file (or a loaded
        :class:`~plugins.lib.radiomics.model.RadScoreModel`); ``covariates`` maps covariate
        names (:class:`~plugins.lib.radiomics.lvrr.Covariate` values) to values for the LVRR
        models, and ``covariates_source`` says where they came from;
        ``covariates_error`` is the reason the node could not use the study's covariates
        (an invalid sidecar file), reported as a WARNING.

    Returns
    -------
    tuple
        The ``extra["radiomics"]`` block (``None`` when the step did not run) and flags.
        The block holds ``radscore`` (with ``top_contributions`` when available) and
        ``lvrr``; :func:`radiomics_measurements` turns it into series-level measurements.
    """
    if not options.get("radiomics", True):
        return None, []
    block, flags = _features_and_radscore(series, slices, failed_frames, scale, options)
    if options.get("covariates_error"):
        flag = QCFlag(
            TextureCode.COVARIATES_INVALID,
            Severity.WARNING,
            f"The covariates supplied for this study were refused: {options['covariates_error']}",
        )
        lvrr_block: dict[str, Any] = {
            "available": False, "covariates_supplied": True,
            "covariates_source": options.get("covariates_source"), "reason": flag.message,
        }
        lvrr_flags = [flag]
    else:
        lvrr_block, lvrr_flags = lvrr_assessment(
            options.get("covariates"), options.get("covariates_source"), block["radscore"]
        )
    block["lvrr"] = lvrr_block
    return block, flags + lvrr_flags


def _features_and_radscore(
    series: LoadedSeries,
    slices: Sequence[SliceResult],
    failed_frames: AbstractSet[int],
    scale: float,
    options: Mapping[str, Any],
) -> tuple[dict[str, Any], list[QCFlag]]:
    """The feature block with its ``radscore`` entry (available or with the reason)."""
    try:
        from plugins.lib.radiomics.features import (
            FeatureExtractionError,
            choose_mid_slice,
            extract_features,
        )
        from plugins.lib.radiomics.model import NO_MODEL_MESSAGE
    except ImportError as exc:  # the optional radiomics extra is not installed
        reason = f"radiomics not installed: {exc}"
        return {"available": False, "reason": reason,
                "radscore": {"available": False, "reason": reason}}, []

    candidates = [s for s in slices if s.frame_index not in failed_frames]
    levels = [s.level for s in candidates]
    locations = [series.frames[s.frame_index].slice_location for s in candidates]
    chosen = choose_mid_slice(levels, locations) if candidates else None
    if chosen is None:
        flag = QCFlag(
            TextureCode.NO_MID_SLICE,
            Severity.INFO,
            "No usable mid-ventricular short-axis slice: radiomic features not computed.",
        )
        return {"available": False, "reason": flag.message,
                "radscore": _radscore_unavailable(options, flag.message)}, [flag]
    sl = candidates[chosen]
    frame = series.frames[sl.frame_index]
    t1 = np.asarray(frame.pixels, dtype=np.float32) * np.float32(scale)
    try:
        vector = extract_features(t1, sl.labels == Label.MYOCARDIUM, frame.pixel_spacing)
    except (FeatureExtractionError, RuntimeError, ValueError) as exc:
        logger.warning("radiomics failed on frame %d: %s", sl.frame_index, exc)
        flag = QCFlag(
            TextureCode.FAILED,
            Severity.WARNING,
            f"Radiomic features could not be computed: {exc}",
            frame_index=sl.frame_index,
        )
        return {"available": False, "reason": flag.message,
                "radscore": _radscore_unavailable(options, flag.message)}, [flag]
    block = vector.as_block(
        {
            "frame_index": sl.frame_index,
            "sop_instance_uid": frame.sop_instance_uid,
            "slice_location_mm": round(frame.slice_location, 3),
            "level": sl.level,
        }
    )
    block["available"] = True
    if not options.get("radscore_model"):
        block["radscore"] = {"available": False, "configured": False, "reason": NO_MODEL_MESSAGE}
        return block, []
    block["radscore"], flags = _radscore(options["radscore_model"], vector.features)
    return block, flags


def _radscore_unavailable(options: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """The ``radscore`` entry when no features were computed."""
    from plugins.lib.radiomics.model import NO_MODEL_MESSAGE

    if not options.get("radscore_model"):
        return {"available": False, "configured": False, "reason": NO_MODEL_MESSAGE}
    return {"available": False, "configured": True,
            "reason": f"No rad-score: {reason[0].lower()}{reason[1:]}"}


def _radscore(
    model_option: Any, features: Mapping[str, float]
) -> tuple[dict[str, Any], list[QCFlag]]:
    """Score the features with the configured model; a bad model is a WARNING, not a fault."""
    from plugins.lib.radiomics.model import RadScoreModel, load_model, radscore

    try:
        model = model_option if isinstance(model_option, RadScoreModel) else load_model(
            str(model_option)
        )
        score = radscore(model, features)
    except (OSError, ValueError) as exc:
        flag = QCFlag(
            TextureCode.MODEL_INVALID,
            Severity.WARNING,
            f"The configured rad-score model cannot be used: {exc}",
        )
        return {"available": False, "configured": True, "reason": flag.message}, [flag]
    entry: dict[str, Any] = {
        "available": True,
        "configured": True,
        **score.as_json(),
        "model_created": model.created,
        "model_source": model.source,
        "model_features": len(model.features),
    }
    t = model.training
    contributions = ", ".join(
        f"{c.feature} ({c.contribution:+.3f})" for c in score.top_contributions
    )
    text = (
        f"Rad-score {score.value:.3f} from the site's model (sha256 {model.sha256[:12]}, "
        f"{len(model.features)} features, trained {model.created} on {t.cohort_size} patients, "
        f"{t.events} with outcome '{t.outcome}'; optimism-corrected AUC "
        f"{t.optimism_corrected_auc:.3f}, 95 % CI {t.optimism_corrected_auc_ci95[0]:.3f}-"
        f"{t.optimism_corrected_auc_ci95[1]:.3f}). Largest contributions: {contributions}."
    )
    entry["text"] = text
    return entry, [QCFlag(TextureCode.RADSCORE_MODEL, Severity.INFO, text)]


def lvrr_assessment(
    covariates: Mapping[str, Any] | None,
    source: str | None,
    radscore_entry: Mapping[str, Any],
) -> tuple[dict[str, Any], list[QCFlag]]:
    """The probability of LVRR from the richest published model the inputs allow.

    Parameters
    ----------
    covariates
        Covariate name → value (as :func:`plugins.lib.radiomics.lvrr.parse_covariates`
        accepts), or ``None`` when none were supplied.  A ``radscore`` key is ignored.
    source
        Where the covariates came from, for the report.
    radscore_entry
        The ``radscore`` entry of the radiomics block: its value is the rad-score covariate
        when ``available``, otherwise its ``reason`` explains the models left out.

    Returns
    -------
    tuple
        The ``lvrr`` block (``available``, ``probability``, ``model``, ``published_auc``,
        ``caveats``, ``text``, ``all_models``, ``unavailable_models``, ``covariates_source``
        or ``reason``) and INFO/WARNING flags for the report.
    """
    from plugins.lib.radiomics.lvrr import (
        PUBLISHED_MODELS,
        Covariate,
        CovariateError,
        best_available_model,
        lvrr_probability,
        parse_covariates,
    )

    if covariates is None:
        return {"available": False, "covariates_supplied": False,
                "reason": NO_COVARIATES_MESSAGE}, []
    notes: list[str] = []
    raw = dict(covariates)
    if raw.pop(str(Covariate.RADSCORE), None) is not None:
        notes.append(EXTERNAL_RADSCORE_MESSAGE)
    try:
        values = {str(k): v for k, v in parse_covariates(raw).items()}
    except CovariateError as exc:
        flag = QCFlag(
            TextureCode.COVARIATES_INVALID,
            Severity.WARNING,
            f"The supplied LVRR covariates were refused ({source or 'unknown source'}): {exc}",
        )
        return {"available": False, "covariates_supplied": True, "covariates_source": source,
                "reason": flag.message}, [flag]
    if radscore_entry.get("available"):
        values[str(Covariate.RADSCORE)] = float(radscore_entry[RADSCORE_KEY])
    radscore_reason = str(radscore_entry.get("reason") or "no rad-score")
    all_models: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    for name, model in PUBLISHED_MODELS.items():
        missing = [str(c) for c in model.covariates if str(c) not in values]
        if not missing:
            all_models[name] = lvrr_probability(name, values).probability
        elif model.uses_radscore and str(Covariate.RADSCORE) in missing:
            unavailable[name] = radscore_reason
        else:
            unavailable[name] = f"missing covariates: {', '.join(missing)}"
    best = best_available_model(values)
    base: dict[str, Any] = {
        "covariates_supplied": True,
        "covariates_source": source,
        "all_models": all_models,
        "unavailable_models": unavailable,
        "notes": notes,
    }
    if best is None:
        needs = ", ".join(str(c) for c in PUBLISHED_MODELS["clinical"].covariates)
        message = (
            f"No LVRR probability: the supplied covariates ({source or 'unknown source'}) do not "
            f"complete any published model (the clinical model needs {needs}). "
            + " ".join(notes)
        ).strip()
        return {"available": False, **base, "reason": message}, [
            QCFlag(TextureCode.LVRR_UNAVAILABLE, Severity.INFO, message)
        ]
    result = lvrr_probability(best, values)
    left_out = [
        f"'{PUBLISHED_MODELS[n].title}' not used: {why}"
        for n, why in unavailable.items()
        if PUBLISHED_MODELS[n].published_auc > result.published_auc
    ]
    text = " ".join(
        [result.text, f"Covariates: {source or 'unknown source'}.", *left_out, *notes]
    )
    block = {"available": True, **base, **result.as_json(), "text": text}
    return block, [QCFlag(TextureCode.LVRR, Severity.INFO, text)]


def radiomics_measurements(block: Mapping[str, Any] | None) -> tuple[Measurement, ...]:
    """Series-level measurements of a radiomics block: rad-score and LVRR probability.

    The rad-score is reported when a model is configured (its value, or why there is none);
    the LVRR probability when covariates were supplied (in per cent, or why there is none).
    Neither appears otherwise: the block in ``extra`` then says why.

    Parameters
    ----------
    block
        The block :func:`mid_slice_radiomics` returned, or ``None``.

    Returns
    -------
    tuple of plugins.api.Measurement
        Whole-myocardium values (no finding site), UCUM "1" and "%".
    """
    if not block:
        return ()
    measurements: list[Measurement] = []
    radscore = block.get("radscore") or {}
    if radscore.get("available"):
        measurements.append(
            Measurement(RADSCORE_KEY, codes.RADSCORE, float(radscore[RADSCORE_KEY]),
                        codes.UCUM_NO_UNITS, Label.MYOCARDIUM)
        )
    elif radscore.get("configured"):
        measurements.append(
            Measurement(RADSCORE_KEY, codes.RADSCORE, None, codes.UCUM_NO_UNITS,
                        Label.MYOCARDIUM, reason=str(radscore.get("reason")))
        )
    lvrr = block.get("lvrr") or {}
    if lvrr.get("available"):
        measurements.append(
            Measurement(LVRR_KEY, codes.LVRR_PROBABILITY, 100.0 * float(lvrr["probability"]),
                        codes.UCUM_PERCENT, Label.MYOCARDIUM)
        )
    elif lvrr.get("covariates_supplied"):
        measurements.append(
            Measurement(LVRR_KEY, codes.LVRR_PROBABILITY, None, codes.UCUM_PERCENT,
                        Label.MYOCARDIUM, reason=str(lvrr.get("reason")))
        )
    return tuple(measurements)
