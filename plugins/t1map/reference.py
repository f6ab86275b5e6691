"""Reference (normal) ranges of native myocardial T1, keyed by vendor, sequence and field.

Native T1 depends on the scanner's vendor, the mapping sequence (MOLLI, ShMOLLI, SASHA ...,
and even the MOLLI scheme), and the field strength, far more than on the small differences
between healthy and diseased myocardium: the SCMR/EACVI consensus asks each site to use
reference values of its own scanner and sequence (Messroghli DR et al., J Cardiovasc Magn
Reson 2017;19:75).  A z-score is therefore computed only against a range whose vendor,
sequence family and field strength all match the series' :class:`~plugins.api.Acquisition`;
with an unknown vendor or sequence, or no matching range, the analysis reports values only
and says so (:data:`NO_RANGE_TEXT`).

Published ranges shipped here are only those whose publication states vendor, sequence and
field strength, transcribed from the publication's abstract:

* Dabir D et al., "Reference values for healthy human myocardium using a T1 mapping
  methodology: results from the International T1 Multicenter cardiovascular magnetic
  resonance study", J Cardiovasc Magn Reson 2014;16:69 (doi:10.1186/s12968-014-0069-x):
  MOLLI 3(3)3(3)5 on Philips 1.5 T and 3 T scanners, single mid-ventricular slice,
  healthy controls 950 ± 21 ms (1.5 T) and 1052 ± 23 ms (3 T).

A site adds its own ranges in ``[analysis.t1map.normal_ranges.<name>]`` (see
``node/defaults/node.toml``); a site range wins over a published one with the same key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from plugins.api import Acquisition

__all__ = [
    "NO_RANGE_TEXT",
    "PUBLISHED_RANGES",
    "ReferenceRange",
    "describe_missing",
    "parse_site_ranges",
    "reference_range",
]

NO_RANGE_TEXT: Final = "no reference range for this sequence"
"""Wording of every output when no matching range exists (values only, no z-scores)."""

FIELD_TOLERANCE_T: Final = 0.25
"""Field strengths closer than this are the same nominal field (1.494 T is 1.5 T)."""

_UNKNOWN: Final = "unknown"


@dataclass(frozen=True)
class ReferenceRange:
    """Normal native myocardial T1 of one vendor, sequence family and field strength.

    Attributes
    ----------
    vendor
        Normalised vendor as in :class:`plugins.api.Acquisition` ("siemens", "philips", ...).
    sequence_family
        Normalised sequence family ("molli", "shmolli", "sasha", ...).
    field_strength_t
        Nominal field strength (T).
    mean_ms, sd_ms
        Mean and standard deviation of healthy myocardial T1.
    source
        The publication (with the exact protocol it used) or the site's own validation.
    origin
        "published" or "site".
    """

    vendor: str
    sequence_family: str
    field_strength_t: float
    mean_ms: float
    sd_ms: float
    source: str
    origin: str = "published"

    def z_score(self, t1_ms: float) -> float:
        """Standard deviations of ``t1_ms`` from the normal mean."""
        return (t1_ms - self.mean_ms) / self.sd_ms

    def matches(self, vendor: str, sequence_family: str, field_strength_t: float) -> bool:
        """Whether this range applies to a series of that vendor, family and field."""
        return (
            self.vendor == vendor
            and self.sequence_family == sequence_family
            and abs(self.field_strength_t - field_strength_t) < FIELD_TOLERANCE_T
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form for ``results.json``."""
        return {
            "vendor": self.vendor,
            "sequence_family": self.sequence_family,
            "field_strength_t": self.field_strength_t,
            "mean_ms": self.mean_ms,
            "sd_ms": self.sd_ms,
            "source": self.source,
            "origin": self.origin,
        }


_DABIR_2014: Final = (
    "Dabir D et al., J Cardiovasc Magn Reson 2014;16:69 (International T1 Multicenter "
    "study): healthy controls, MOLLI 3(3)3(3)5 on Philips {field} T scanners, "
    "mid-ventricular slice, core-lab analysis"
)

PUBLISHED_RANGES: Final[tuple[ReferenceRange, ...]] = (
    ReferenceRange("philips", "molli", 1.5, 950.0, 21.0, _DABIR_2014.format(field="1.5")),
    ReferenceRange("philips", "molli", 3.0, 1052.0, 23.0, _DABIR_2014.format(field="3")),
)
"""Published ranges whose source states vendor, sequence and field strength."""

_REQUIRED: Final = ("vendor", "sequence_family", "field_strength_t", "mean_ms", "sd_ms",
                    "source")


def parse_site_ranges(raw: Mapping[str, Any] | None) -> tuple[ReferenceRange, ...]:
    """The site's own ranges from ``[analysis.t1map.normal_ranges.<name>]`` tables.

    Parameters
    ----------
    raw
        ``{name: {"vendor": ..., "sequence_family": ..., "field_strength_t": ...,
        "mean_ms": ..., "sd_ms": ..., "source": ...}}``.

    Raises
    ------
    ValueError
        If an entry lacks a key, names an unknown vendor or family, or has a
        non-positive SD or field strength.  Ranges keyed by field strength alone (the
        former format) are refused: a range without vendor and sequence cannot be matched.
    """
    found: list[ReferenceRange] = []
    for name, item in (raw or {}).items():
        if not isinstance(item, Mapping):
            raise ValueError(f"normal_ranges.{name} must be a table with {', '.join(_REQUIRED)}")
        missing = [key for key in _REQUIRED if key not in item]
        if missing:
            raise ValueError(
                f"normal_ranges.{name} lacks {', '.join(missing)}: a reference range applies "
                "only to one vendor, sequence family and field strength"
            )
        vendor = str(item["vendor"]).strip().lower()
        family = str(item["sequence_family"]).strip().lower()
        if vendor in ("", _UNKNOWN) or family in ("", _UNKNOWN):
            raise ValueError(f"normal_ranges.{name} must name a vendor and a sequence family")
        try:
            field = float(item["field_strength_t"])
            mean = float(item["mean_ms"])
            sd = float(item["sd_ms"])
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"normal_ranges.{name}: field_strength_t, mean_ms and sd_ms must be numbers"
            ) from exc
        if not (math.isfinite(field) and field > 0):
            raise ValueError(f"normal_ranges.{name}.field_strength_t must be positive")
        if not (math.isfinite(sd) and sd > 0) or not math.isfinite(mean):
            raise ValueError(f"normal_ranges.{name}: mean_ms must be finite, sd_ms positive")
        source = str(item["source"]).strip()
        if not source:
            raise ValueError(f"normal_ranges.{name}.source must say where the range comes from")
        found.append(ReferenceRange(vendor, family, field, mean, sd, source, origin="site"))
    return tuple(found)


def reference_range(
    acquisition: Acquisition,
    field_strength_t: float | None,
    site_ranges: Mapping[str, Any] | None = None,
) -> ReferenceRange | None:
    """The range matching the series' vendor, sequence family and field strength, if any.

    Parameters
    ----------
    acquisition
        What the node learnt from the header; unknown vendor or family gives ``None``.
    field_strength_t
        The series' field strength (the analysis' own reading, which may override the
        acquisition's); ``None`` gives ``None``.
    site_ranges
        The ``normal_ranges`` analysis option (see :func:`parse_site_ranges`).

    Raises
    ------
    ValueError
        If ``site_ranges`` is malformed.
    """
    site = parse_site_ranges(site_ranges)
    field = field_strength_t if field_strength_t is not None else acquisition.field_strength_t
    vendor = acquisition.vendor.strip().lower()
    family = acquisition.sequence_family.strip().lower()
    if field is None or _UNKNOWN in (vendor, family) or not vendor or not family:
        return None
    for candidate in (*site, *PUBLISHED_RANGES):
        if candidate.matches(vendor, family, field):
            return candidate
    return None


def describe_missing(acquisition: Acquisition, field_strength_t: float | None) -> str:
    """Why no range applies, e.g. "no reference range for this sequence (vendor unknown ...)"."""
    field = field_strength_t if field_strength_t is not None else acquisition.field_strength_t
    parts = [
        f"vendor {acquisition.vendor or _UNKNOWN}",
        f"sequence {acquisition.sequence_family or _UNKNOWN}",
        "field strength unknown" if field is None else f"{field:g} T",
    ]
    return f"{NO_RANGE_TEXT} ({', '.join(parts)}): values only, no z-scores"
