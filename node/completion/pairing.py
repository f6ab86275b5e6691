"""Pairs of LGE reconstructions (PSIR and magnitude) of one acquisition: analyse one.

Scanners send a phase-sensitive (PSIR) and a magnitude reconstruction of the same LGE
acquisition as two series with identical geometry.  Analysing both would report the same scar
twice, so the node analyses the preferred one (PSIR by default: it keeps remote myocardium
near zero even when the inversion time was wrong; Kellman P et al., Magn Reson Med
2002;47:372) and records why the other was skipped.  Two series are one acquisition when they
share study, frame of reference, orientation, matrix and every slice position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom import Dataset

from plugins.lge import LgeContrast, contrast_from_names

logger = logging.getLogger(__name__)

__all__ = ["LgeReconstruction", "lge_reconstruction", "preferred_partner", "skip_reason"]

_POSITION_DECIMALS = 1
"""Slice positions are compared to 0.1 mm."""
_ORIENTATION_DECIMALS = 3


@dataclass(frozen=True)
class LgeReconstruction:
    """What identifies an LGE series' acquisition, and which reconstruction it is.

    Attributes
    ----------
    series_uid, series_number, description
        The series.
    acquisition
        Study, frame of reference, orientation, matrix and slice positions.
    contrast
        PSIR, magnitude, or ``None`` if the headers don't say.
    """

    series_uid: str
    series_number: str
    description: str
    acquisition: tuple[object, ...]
    contrast: LgeContrast | None


def _rounded(values: Iterable[object], decimals: int) -> tuple[float, ...]:
    return tuple(round(float(v), decimals) for v in values)  # type: ignore[arg-type]


def lge_reconstruction(series_uid: str, headers: Sequence[Dataset]) -> LgeReconstruction | None:
    """The acquisition key and contrast of a series, or ``None`` without geometry."""
    if not headers:
        return None
    first = headers[0]
    try:
        positions = tuple(sorted(
            _rounded(ds.ImagePositionPatient, _POSITION_DECIMALS) for ds in headers
        ))
        orientation = _rounded(first.ImageOrientationPatient, _ORIENTATION_DECIMALS)
    except (AttributeError, TypeError, ValueError):
        return None
    key = (
        str(first.get("StudyInstanceUID", "")),
        str(first.get("FrameOfReferenceUID", "")),
        orientation,
        int(first.get("Rows", 0) or 0),
        int(first.get("Columns", 0) or 0),
        positions,
    )
    names = [str(first.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName")]
    contrast, _evidence = contrast_from_names(first.get("ImageType"), names)
    return LgeReconstruction(
        series_uid=series_uid,
        series_number=str(first.get("SeriesNumber", "")),
        description=str(first.get("SeriesDescription", "")),
        acquisition=key,
        contrast=contrast,
    )


def preferred_partner(
    candidate: LgeReconstruction,
    others: Iterable[LgeReconstruction],
    prefer: LgeContrast = LgeContrast.PSIR,
) -> LgeReconstruction | None:
    """The other reconstruction of the same acquisition to analyse instead, if any.

    ``None`` when ``candidate`` has the preferred contrast, its contrast is unknown, or no
    series of the same acquisition has the preferred one.
    """
    if candidate.contrast is None or candidate.contrast is prefer:
        return None
    for other in others:
        if (
            other.series_uid != candidate.series_uid
            and other.acquisition == candidate.acquisition
            and other.contrast is prefer
        ):
            return other
    return None


def skip_reason(partner: LgeReconstruction, prefer: LgeContrast) -> str:
    """Why a series is not analysed because of its partner (for the record)."""
    return (
        f"another reconstruction of the same LGE acquisition is analysed instead: "
        f"{prefer.name} series {partner.series_number} '{partner.description}' "
        f"({partner.series_uid}); set analysis_options.lge.prefer to change this"
    )
