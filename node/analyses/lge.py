"""LGE scar quantification (``plugins.lge``), with the short-axis cine as companion.

Networks: the segmenter the site chose (``[analysis.lge] segmenter``, :data:`LGE_SEGMENTERS`:
the cascade by default, :mod:`models.runtime.lgeseg.cascade`: the one-stage U-Net for a stack it
is sure of, else the two-stage segmenter; ``"unet"``, the one-stage network of
:mod:`models.runtime.lgeseg.segmenter` alone; ``"two-stage"``,
:mod:`models.runtime.lgeseg.two_stage` alone, with the site's ``segmenter_weights`` when given)
as ``segmenter``; a selected network that is unavailable fails the analysis.  For a study with a
cine, the LGE + cine network (:mod:`models.runtime.lgeseg.fusion_segmenter`) as
``cine_segmenter``, or ``None`` and the INFO flag
saying why it is unavailable (``cine_segmenter_flag``).

Companion: the cine of the same slices, for the LGE + cine network.  It is found by a header
test (:func:`node.inputs.companions.looks_like_cine`) among every complete series of the study,
routed or not.  When such a series completes after the study's LGE was analysed without a
cine (flag ``cine_not_used``), the LGE is analysed again.

Options from the study: its clinical variables (sidecar, REST or ``--covariates``;
:mod:`node.inputs.covariates`) as :class:`~plugins.lge.clinical.ClinicalVariables`, for the site
infarct model (``[analysis.lge] infarct_model``).  An invalid sidecar gives
``clinical_error`` (the plugin reports it); posting variables for the study analyses its LGE
again (:func:`node.status.report.post_covariates`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from node.analyses.base import AnalysisDescriptor, Arrival, StudyFacts, supplied_or_error
from node.inputs.companions import CompanionRole, CompanionSpec, cine_of_slices, looks_like_cine
from node.inputs.covariates import clinical_options, has_clinical
from node.settings import LGE_SEGMENTERS
from plugins.api import AnalysisError
from plugins.lge.analysis import COMPANION_CINE
from plugins.lge.qc import QCCode
from plugins.lge.segmenter import LgeSegmenter

logger = logging.getLogger(__name__)

DEFAULT_SEGMENTER: Final = "cascade"
"""The LGE segmenter of a site that chooses none (one of :data:`LGE_SEGMENTERS`)."""

CINE = CompanionSpec(
    CompanionRole.CINE, (), cine_of_slices, "short-axis cine of the same slices",
    selects=looks_like_cine,
)


def study_clinical(facts: StudyFacts) -> dict[str, Any]:
    """The study's clinical variables, as plugin options (nothing when none were supplied)."""
    if facts.study_uid is None:
        return {}
    supplied = supplied_or_error(facts, "clinical variables", "clinical_error", has_clinical)
    if isinstance(supplied, dict):
        return supplied
    return clinical_options(supplied)


def lge_segmenter(chosen: str, segmenter_weights: str | None = None) -> LgeSegmenter:
    """The LGE segmenter named ``chosen`` (one of :data:`LGE_SEGMENTERS`), the two-stage one
    with the site's ``segmenter_weights`` when given.

    Raises
    ------
    AnalysisError
        If ``chosen`` is not a known segmenter, or a network it needs is unavailable.
    """
    if chosen not in LGE_SEGMENTERS:
        raise AnalysisError(f"segmenter = {chosen!r} is not one of {', '.join(LGE_SEGMENTERS)}")
    if chosen in ("two-stage", "cascade"):
        from models.runtime.lgeseg.site_weights import two_stage_segmenter
        from models.runtime.segmentation import ModelUnavailableError

        try:
            two_stage = two_stage_segmenter(segmenter_weights or None)
        except (ModelUnavailableError, ImportError) as exc:
            raise AnalysisError(
                f"The selected {chosen} LGE segmenter is unavailable, so LGE cannot be "
                f"analysed: the two-stage network: {exc}"
            ) from exc
        if chosen == "two-stage":
            return two_stage
    from models.runtime.lgeseg.segmenter import default_segmenter

    found, unavailable = default_segmenter()
    if found is None:
        reason = unavailable.message if unavailable is not None else "no LGE model"
        raise AnalysisError(
            f"The LGE segmentation model is unavailable, so LGE cannot be analysed: {reason}"
        )
    if chosen == "cascade":
        from models.runtime.lgeseg.cascade import CascadeLgeSegmenter

        return CascadeLgeSegmenter(found, two_stage)
    return found


def _uses_cine(options: Mapping[str, Any]) -> bool:
    """Whether the plugin may segment slices with the study's cine (one was found)."""
    companions = options.get("companions")
    found = companions.get(COMPANION_CINE) if isinstance(companions, Mapping) else None
    return found is not None and bool(options.get("use_cine", True))


def lge_networks(options: Mapping[str, Any]) -> dict[str, Any]:
    """``segmenter`` as the site chose it and, for a study with a cine, ``cine_segmenter``
    (``None`` and ``cine_segmenter_flag`` when the LGE + cine network is unavailable);
    segmenter objects already in ``options`` are kept.

    Raises
    ------
    AnalysisError
        If the chosen segmenter is unknown or unavailable.
    """
    found: dict[str, Any] = {}
    chosen = options.get("segmenter")
    if chosen is None or isinstance(chosen, str):
        weights = options.get("segmenter_weights")
        found["segmenter"] = lge_segmenter(chosen or DEFAULT_SEGMENTER,
                                           str(weights) if weights else None)
    if options.get("cine_segmenter") is None and _uses_cine(options):
        from models.runtime.lgeseg.fusion_segmenter import default_fusion_segmenter

        fusion, unavailable = default_fusion_segmenter()
        found["cine_segmenter"] = fusion
        if unavailable is not None:
            found["cine_segmenter_flag"] = unavailable
    return found


def load_lge_networks() -> None:
    """Load the trained LGE segmenters (torch; the LGE-only and LGE + cine U-Nets and the
    committed two-stage localiser + segmenter) now, and run each two-stage network once so
    that ``segmenter = "two-stage"`` meets its first series warm."""
    from models.runtime.lgeseg.fusion_segmenter import default_fusion_segmenter
    from models.runtime.lgeseg.segmenter import default_segmenter
    from models.runtime.lgeseg.two_stage import cached_default
    from models.runtime.segmentation import ModelUnavailableError

    default_segmenter()
    default_fusion_segmenter()
    try:
        cached_default().rehearse()
    except (ModelUnavailableError, ImportError) as exc:
        logger.warning("two-stage LGE segmenter not preloaded: %s", exc)


DESCRIPTOR = AnalysisDescriptor(
    name="lge",
    study_options=study_clinical,
    companions=(CINE,),
    networks=lge_networks,
    warm_up=load_lge_networks,
    arrivals=(
        Arrival(
            CINE, QCCode.CINE_NOT_USED,
            "cine series {series} completed after the LGE analysis, which had no cine: the"
            " LGE + cine network can now segment its slices",
        ),
    ),
    key_numbers=("scar_percent_lv_mass", "scar_mass_g"),
    analysed_first=True,
)
