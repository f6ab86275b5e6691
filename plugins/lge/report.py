"""The LGE result's identity and tables: name and version, segments, the measurements of the
series, of each AHA segment and of each slice, the rows of ``extra``, the networks used and
the provenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from plugins.api import Code, Label, Measurement, Provenance, SegmentDefinition
from plugins.lge.measure import (
    MYOCARDIAL_DENSITY_G_PER_ML,
    AnalysedSlice,
    ScarMethod,
    SegmentationMode,
)
from plugins.lge.quantify import Lesion
from plugins.lge.segmenter import LgeSegmenter
from plugins.lib import codes

NAME: Final = "lge"
VERSION: Final = "0.1.0"
ALGORITHM_NAME: Final = "cmr-node lge"

SEGMENTS: Final[tuple[SegmentDefinition, ...]] = (
    codes.SEGMENT_LGE_MYOCARDIUM,
    codes.SEGMENT_SCAR,
    codes.SEGMENT_MVO,
    codes.SEGMENT_LV_BLOOD_POOL,
    codes.SEGMENT_RV_BLOOD_POOL,
)


def _measurement(key: str, name: Code, value: float | None, unit: Code, region: Label,
                 site: Code | None = None, digits: int = 1) -> Measurement:
    """A measurement with its value rounded to ``digits``."""
    return Measurement(key=key, name=name, value=None if value is None else round(value, digits),
                       unit=unit, region=region, site=site)


def series_measurements(totals: Mapping[ScarMethod, Mapping[str, float]]) -> list[Measurement]:
    """Volumes, masses, %scar by each method and MVO of the stack."""
    net = totals[ScarMethod.NETWORK]
    return [
        _measurement("lv_myocardium_volume_ml", codes.VOLUME, net["myocardium_volume_ml"],
                     codes.UCUM_MILLILITER, Label.MYOCARDIUM),
        _measurement("lv_myocardium_mass_g", codes.MASS, net["myocardium_mass_g"],
                     codes.UCUM_GRAM, Label.MYOCARDIUM),
        _measurement("scar_volume_ml", codes.VOLUME, net["scar_volume_ml"],
                     codes.UCUM_MILLILITER, Label.SCAR, digits=2),
        _measurement("scar_mass_g", codes.MASS, net["scar_mass_g"], codes.UCUM_GRAM, Label.SCAR,
                     digits=2),
        _measurement("scar_percent_lv_mass", codes.SCAR_EXTENT, net["percent"],
                     codes.UCUM_PERCENT, Label.SCAR),
        _measurement("scar_percent_lv_mass_nsd", codes.SCAR_EXTENT_NSD,
                     totals[ScarMethod.NSD]["percent"], codes.UCUM_PERCENT, Label.SCAR),
        _measurement("scar_percent_lv_mass_fwhm", codes.SCAR_EXTENT_FWHM,
                     totals[ScarMethod.FWHM]["percent"], codes.UCUM_PERCENT, Label.SCAR),
        _measurement("mvo_mass_g", codes.MASS, net["mvo_mass_g"], codes.UCUM_GRAM, Label.MVO,
                     digits=2),
        _measurement("mvo_percent_lv_mass", codes.MVO_EXTENT, net["mvo_percent"],
                     codes.UCUM_PERCENT, Label.MVO),
    ]


def segment_measurements(aha: Mapping[str, Any] | None) -> list[Measurement]:
    """%scar and maximum transmurality of each AHA segment."""
    if aha is None:
        return []
    found: list[Measurement] = []
    for number, item in aha["segments"].items():
        site = codes.AHA_SEGMENT_SITES[int(number)]
        found.append(_measurement(f"segment_{number}_scar_percent", codes.AREA_FRACTION,
                                  item["scar_percent"], codes.UCUM_PERCENT, Label.SCAR, site))
        found.append(_measurement(
            f"segment_{number}_max_transmurality_percent", codes.MAX_TRANSMURALITY,
            item["max_transmurality_percent"], codes.UCUM_PERCENT, Label.SCAR, site))
    return found


def slice_measurements(s: AnalysedSlice) -> tuple[Measurement, ...]:
    """Myocardium and scar area and %scar of one slice."""
    assert s.scar is not None
    myo = s.area(s.myocardium)
    scar = s.area(s.scar[ScarMethod.NETWORK])
    wall = _measurement("myocardium_area_mm2", codes.AREA, myo, codes.UCUM_SQUARE_MILLIMETER,
                        Label.MYOCARDIUM)
    if scar == 0.0:  # nothing to outline; results.json still lists the zero
        return (wall,)
    return (
        wall,
        _measurement("scar_area_mm2", codes.AREA, scar, codes.UCUM_SQUARE_MILLIMETER,
                     Label.SCAR),
        _measurement("scar_percent_of_slice", codes.AREA_FRACTION,
                     100.0 * scar / myo if myo else None, codes.UCUM_PERCENT, Label.SCAR),
    )


def slice_row(s: AnalysedSlice, spacing_mm: float) -> dict[str, Any]:
    """One row of ``extra["slices"]``."""
    assert s.scar is not None and s.mvo is not None
    return {
        "frame_index": s.index,
        "sop_instance_uid": s.frame.sop_instance_uid,
        "frame_number": s.frame.frame_number,
        "slice_location_mm": round(s.frame.slice_location, 2),
        "level": s.level,
        "mode": str(s.mode),
        "cine": dict(s.cine) if s.cine is not None else None,
        "myocardium_area_mm2": round(s.area(s.myocardium), 1),
        "lv_blood_pool_area_mm2": round(s.area(s.lv_blood), 1),
        "scar_area_mm2": {str(m): round(s.area(v), 1) for m, v in s.scar.items()},
        "mvo_area_mm2": {str(m): round(s.area(v), 1) for m, v in s.mvo.items()},
        "slab_mm": round(spacing_mm, 2),
        "signal_zero": s.zero,
        "remote": None if s.remote is None else {
            "mean": round(s.remote.mean, 2), "sd": round(s.remote.sd, 2),
            "pixels": int(s.remote.mask.sum()),
            "arc_deg": [round(a, 1) for a in s.remote.arc_deg],
        },
        "fwhm_threshold": None if s.fwhm_threshold is None else round(s.fwhm_threshold, 2),
        "segmentation_uncertainty": None if s.uncertainty is None else round(s.uncertainty, 3),
        "segmenter": dict(s.details),
    }


def lesion_row(lesion: Lesion) -> dict[str, Any]:
    """One row of ``extra["lge"]["lesions"]``."""
    return {
        "frame_index": lesion.frame_index,
        "area_mm2": round(lesion.area_mm2, 1),
        "layer": str(lesion.layer),
        "segments": {str(k): v for k, v in sorted(lesion.segments.items())},
        "septal_fraction": None if lesion.septal_fraction is None
        else round(lesion.septal_fraction, 2),
        "at_rv_insertion": lesion.at_insertion,
    }


def rounded(values: Mapping[str, float]) -> dict[str, float]:
    """``values`` rounded to two decimals."""
    return {k: round(v, 2) for k, v in values.items()}


def network_text(segmenter: LgeSegmenter) -> str:
    """Name, version and weights hash of a network, as the provenance names it."""
    text = f"{segmenter.name} {segmenter.version}"
    if segmenter.weights_sha256:
        text += f" (weights sha256 {segmenter.weights_sha256})"
    return text


def network_rows(segmenter: LgeSegmenter, fusion: LgeSegmenter | None,
              analysed: Sequence[AnalysedSlice]) -> list[dict[str, Any]]:
    """Name, version, weights hash and slice count of each network that segmented slices."""
    rows = []
    for mode, network in ((SegmentationMode.LGE, segmenter),
                          (SegmentationMode.LGE_CINE, fusion)):
        count = sum(s.mode is mode for s in analysed)
        if network is None or not count:
            continue
        rows.append({"mode": str(mode), "name": network.name, "version": network.version,
                     "weights_sha256": network.weights_sha256, "slices": count})
    return rows


def build_provenance(segmenter: LgeSegmenter, n_sd: float, fusion: LgeSegmenter | None = None,
                counts: tuple[int, int] = (0, 0), chosen_by: str | None = None) -> Provenance:
    """The method record; with ``fusion`` (used on ``counts[0]`` slices, the LGE-only
    segmenter on ``counts[1]``) both networks are named and the fusion network is the model;
    ``chosen_by`` says which cascade chose the LGE-only network and why."""
    if fusion is None:
        segmentation = f"LV myocardium, scar and MVO by {segmenter.name} {segmenter.version}"
        if chosen_by:
            segmentation += f" (chosen by {chosen_by})"
    else:
        with_cine, alone = counts
        segmentation = (
            f"LV myocardium, scar and MVO by {network_text(fusion)} from the LGE and the "
            f"matched cine image on {with_cine} slice(s)"
        )
        if alone:
            segmentation += f" and by {network_text(segmenter)} from the LGE alone on {alone}"
    method = (
        f"{segmentation}; scar also by "
        f"{n_sd:g}-SD over automatically found remote myocardium and by FWHM; volumes from slice "
        f"areas x spacing between slices; mass at {MYOCARDIAL_DENSITY_G_PER_ML} g/ml."
    )
    model = fusion if fusion is not None else segmenter
    if model.weights_sha256 is None:
        return Provenance(ALGORITHM_NAME, VERSION, method)
    return Provenance(ALGORITHM_NAME, VERSION, method, model_name=model.name,
                      model_version=model.version, model_sha256=model.weights_sha256)
