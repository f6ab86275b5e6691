"""The networks the node gives each analysis (``networks`` of :mod:`node.analyses`): the same
choices the plugins made themselves before they were given them (issue 18)."""

from __future__ import annotations

from typing import Any

import pytest

import models.runtime.lgeseg.fusion_segmenter as fusion_module
import models.runtime.lgeseg.segmenter as lge_module
import models.runtime.lgeseg.site_weights as site_weights
import models.runtime.t1seg.segmenter as t1_module
from models.runtime.lgeseg.cascade import CascadeLgeSegmenter
from models.runtime.segmentation import ModelUnavailableError
from node.analyses import assemble_options, descriptor, with_networks
from node.analyses.base import StudyFacts
from node.analyses.t1map import t1_networks
from node.settings import LGE_SEGMENTERS
from plugins.api import AnalysisError, QCFlag, Severity
from plugins.lge import QCCode
from plugins.t1map import ClassicalSegmenter


class _Network:
    """Stands for a loaded network (identity is what is checked)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = "0"
        self.weights_sha256 = name


UNET = _Network("one-stage")
FUSION = _Network("lge+cine")
TWO_STAGE = {None: _Network("two-stage"), "/site/segment.pt": _Network("two-stage+site")}
CINE = {"companions": {"cine": object()}}


@pytest.fixture
def fake_lge(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The LGE networks replaced by stand-ins; returns the segmenter weights asked for."""
    asked: list[str | None] = []

    def two_stage(weights: str | None = None) -> _Network:
        asked.append(weights)
        return TWO_STAGE[weights]

    monkeypatch.setattr(site_weights, "two_stage_segmenter", two_stage)
    monkeypatch.setattr(lge_module, "default_segmenter", lambda: (UNET, None))
    monkeypatch.setattr(fusion_module, "default_fusion_segmenter", lambda: (FUSION, None))
    return asked


def _unavailable(code: str, severity: Severity = Severity.INFO) -> QCFlag:
    return QCFlag(code, severity, f"The model is unavailable (missing weights) [{code}].")


@pytest.mark.parametrize(("options", "first", "weights"), [
    ({}, UNET, None),
    ({"segmenter": "cascade"}, UNET, None),
    ({"segmenter_weights": "/site/segment.pt"}, UNET, "/site/segment.pt"),
])
def test_lge_cascade_by_default_with_the_committed_or_site_two_stage(
    fake_lge: list[str | None], options: dict[str, Any], first: _Network, weights: str | None,
) -> None:
    segmenter = with_networks("lge", options)["segmenter"]
    assert isinstance(segmenter, CascadeLgeSegmenter)
    assert segmenter.networks() == (first, TWO_STAGE[weights])
    assert fake_lge == [weights]


@pytest.mark.parametrize(("options", "chosen", "asked"), [
    ({"segmenter": "unet"}, UNET, []),
    ({"segmenter": "two-stage"}, TWO_STAGE[None], [None]),
    ({"segmenter": "two-stage", "segmenter_weights": "/site/segment.pt"},
     TWO_STAGE["/site/segment.pt"], ["/site/segment.pt"]),
])
def test_lge_unet_or_two_stage_alone(fake_lge: list[str | None], options: dict[str, Any],
                                     chosen: _Network, asked: list[str | None]) -> None:
    found = with_networks("lge", options)
    assert found["segmenter"] is chosen
    assert fake_lge == asked
    assert "cine_segmenter" not in found  # no cine in the study


def test_lge_segmenter_objects_given_are_kept(fake_lge: list[str | None]) -> None:
    own, own_fusion = _Network("own"), _Network("own fusion")
    found = with_networks("lge", {"segmenter": own, "cine_segmenter": own_fusion, **CINE})
    assert found["segmenter"] is own and found["cine_segmenter"] is own_fusion
    assert fake_lge == []


def test_an_unknown_lge_segmenter_is_an_analysis_error(fake_lge: list[str | None]) -> None:
    with pytest.raises(AnalysisError, match=r"segmenter = 'three-stage' is not one of "
                                            r"cascade, unet, two-stage"):
        with_networks("lge", {"segmenter": "three-stage"})
    assert LGE_SEGMENTERS == ("cascade", "unet", "two-stage")


@pytest.mark.parametrize("chosen", ["two-stage", "cascade"])
def test_an_unavailable_two_stage_network_fails_the_analysis(
    fake_lge: list[str | None], monkeypatch: pytest.MonkeyPatch, chosen: str,
) -> None:
    def missing(weights: str | None = None) -> _Network:
        raise ModelUnavailableError("weights file /site/x.pt does not exist")

    monkeypatch.setattr(site_weights, "two_stage_segmenter", missing)
    with pytest.raises(AnalysisError) as raised:
        with_networks("lge", {"segmenter": chosen})
    assert str(raised.value) == (
        f"The selected {chosen} LGE segmenter is unavailable, so LGE cannot be analysed: the"
        " two-stage network: weights file /site/x.pt does not exist")
    assert with_networks("lge", {"segmenter": "unet"})["segmenter"] is UNET


@pytest.mark.parametrize("chosen", ["unet", "cascade"])
def test_an_unavailable_one_stage_network_fails_the_analysis(
    fake_lge: list[str | None], monkeypatch: pytest.MonkeyPatch, chosen: str,
) -> None:
    flag = _unavailable("trained_model_unavailable", Severity.WARNING)
    monkeypatch.setattr(lge_module, "default_segmenter", lambda: (None, flag))
    with pytest.raises(AnalysisError) as raised:
        with_networks("lge", {"segmenter": chosen})
    assert str(raised.value) == ("The LGE segmentation model is unavailable, so LGE cannot be"
                                 f" analysed: {flag.message}")
    assert with_networks("lge", {"segmenter": "two-stage"})["segmenter"] is TWO_STAGE[None]


def test_the_fusion_network_is_given_for_a_study_with_a_cine(
    fake_lge: list[str | None], monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert with_networks("lge", CINE)["cine_segmenter"] is FUSION
    assert "cine_segmenter" not in with_networks("lge", {**CINE, "use_cine": False})
    assert "cine_segmenter" not in with_networks("lge", {"companions": {}})
    flag = _unavailable(QCCode.FUSION_UNAVAILABLE)
    monkeypatch.setattr(fusion_module, "default_fusion_segmenter", lambda: (None, flag))
    found = with_networks("lge", CINE)
    assert found["cine_segmenter"] is None and found["cine_segmenter_flag"] == flag


def test_assembled_lge_options_hold_the_networks(fake_lge: list[str | None]) -> None:
    options = assemble_options("lge", {"segmenter": "unet"}, [], StudyFacts(study_uid=None))
    assert options["segmenter"] is UNET


def test_the_committed_lge_networks_by_default() -> None:
    pytest.importorskip("torch")
    from models.runtime.lgeseg.two_stage import DEFAULT_LOCATOR, DEFAULT_SEGMENTER, cached_default

    if not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()):
        pytest.skip("two-stage weights not committed")
    segmenter = with_networks("lge", {})["segmenter"]
    assert isinstance(segmenter, CascadeLgeSegmenter)
    assert segmenter.networks() == (lge_module.default_segmenter()[0], cached_default())


@pytest.mark.parametrize("analysis", ["t1map", "molli", "ecv"])
def test_t1_maps_get_the_unet_or_the_classical_segmenter_with_a_flag(
    monkeypatch: pytest.MonkeyPatch, analysis: str,
) -> None:
    assert descriptor(analysis).networks is t1_networks
    monkeypatch.setattr(t1_module, "default_segmenter", lambda: (UNET, None))
    assert with_networks(analysis, {}) == {"segmenter": UNET}
    flag = _unavailable("trained_model_unavailable")
    monkeypatch.setattr(t1_module, "default_segmenter", lambda: (None, flag))
    found = with_networks(analysis, {"core": "midwall"})
    assert isinstance(found["segmenter"], ClassicalSegmenter)
    assert found["segmenter_flag"] is flag and found["core"] == "midwall"
    own = ClassicalSegmenter()
    assert with_networks(analysis, {"segmenter": own}) == {"segmenter": own}


def test_the_t2_map_gets_the_two_stage_network_without_its_scar_rule() -> None:
    pytest.importorskip("torch")
    from models.runtime.lgeseg.two_stage import (
        DEFAULT_LOCATOR,
        DEFAULT_SEGMENTER,
        TwoStageLgeSegmenter,
    )

    if not (DEFAULT_LOCATOR.exists() and DEFAULT_SEGMENTER.exists()):
        pytest.skip("two-stage weights not committed")
    segmenter = with_networks("t2map", {})["segmenter"]
    assert isinstance(segmenter, TwoStageLgeSegmenter) and segmenter.scar_rule is None
    assert with_networks("t2map", {})["segmenter"] is segmenter  # loaded once


def test_an_unavailable_t2_network_fails_the_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    import node.analyses.t2map as t2_module

    def missing() -> _Network:
        raise ModelUnavailableError("weights missing")

    monkeypatch.setattr(t2_module, "t2_segmenter", missing)
    with pytest.raises(AnalysisError, match=r"^the segmentation network is unavailable: weights"
                                            r" missing$"):
        with_networks("t2map", {})


def test_an_analysis_without_networks_gets_its_options_unchanged() -> None:
    assert with_networks("a-site-plugin", {"x": 1}) == {"x": 1}
