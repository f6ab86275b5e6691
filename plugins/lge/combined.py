"""The site infarct model's probability of infarction for an analysed LGE stack, from the
study's clinical variables and the stack's image features (``extra["infarct"]["combined"]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from plugins.api import QCFlag, Severity
from plugins.lge.measure import AnalysedSlice, ScarMethod
from plugins.lge.qc import QCCode


def combined_infarct(options: Mapping[str, Any],
                      totals: Mapping[ScarMethod, Mapping[str, float]],
                      analysed: Sequence[AnalysedSlice], spacing_mm: float, withheld: str | None,
                      flags: list[QCFlag]) -> dict[str, Any]:
    """The site model's probability of infarction from the clinical variables and the image
    features (``options["infarct_model"]``, ``options["clinical"]``), or why there is none."""
    from plugins.lge.clinical import ClinicalVariables
    from plugins.lge.infarct_model import (
        CLINICAL_FEATURES,
        NO_MODEL_MESSAGE,
        InfarctModel,
        InfarctModelError,
        combined_probability,
        load_infarct_model,
    )

    configured = options.get("infarct_model")
    if not configured:
        return {"available": False, "configured": False, "reason": NO_MODEL_MESSAGE}
    if options.get("clinical_error"):
        return {"available": False, "configured": True,
                "reason": f"The study's clinical variables were refused "
                          f"({options['clinical_error']}): the infarct call is from the images "
                          "alone."}
    clinical = options.get("clinical")
    if isinstance(clinical, ClinicalVariables):
        clinical = clinical.features()
    if not isinstance(clinical, Mapping) or not clinical:
        return {"available": False, "configured": True,
                "reason": "No clinical variables supplied for the study: the infarct call is "
                          "from the images alone."}
    if withheld is not None:
        return {"available": False, "configured": True,
                "reason": f"Image features withheld: {withheld}"}
    net = totals[ScarMethod.NETWORK]
    values = {
        "scar_percent": net["percent"],
        "enhanced_volume_ml": net["scar_volume_ml"],
        "myocardium_volume_ml": net["myocardium_volume_ml"],
        "lv_volume_ml": sum(s.area(s.lv_blood) for s in analysed) * spacing_mm / 1000.0,
    }
    try:
        unknown = sorted(str(k) for k in clinical if str(k) not in CLINICAL_FEATURES)
        if unknown:
            raise InfarctModelError(f"unknown clinical variable(s) {', '.join(unknown)}; "
                                    f"known: {', '.join(CLINICAL_FEATURES)}")
        values |= {str(k): float(v) for k, v in clinical.items()}
        model = configured if isinstance(configured, InfarctModel) \
            else load_infarct_model(str(configured))
        result = combined_probability(model, values)
    except (InfarctModelError, TypeError, ValueError) as exc:
        flags.append(QCFlag(QCCode.INFARCT_MODEL_UNUSABLE, Severity.WARNING,
                            f"The site infarct model could not be applied: {exc}"))
        return {"available": False, "configured": True, "reason": str(exc)}
    return {**result.as_json(), "configured": True,
            "clinical_source": options.get("clinical_source")}
