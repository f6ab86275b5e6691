"""Clinical covariates of a study for the LVRR models, and where the node finds them.

The T1-map plugin computes the probability of LV reverse remodelling from covariates it gets
in its options (``covariates``, ``covariates_source``); it never reads files.  This module is
the node's side:

* **sidecar files**: ``<StudyInstanceUID>.json`` or ``<AccessionNumber>.json`` in the
  covariates folder (``node.covariates_dir``), holding a JSON object with the keys
  :func:`plugins.lib.radiomics.lvrr.parse_covariates` accepts, e.g.
  ``{"sbp_mmhg": 128, "lvef_percent": 31, "lveddi_mm_per_m2": 36, "smoking": 0}``.
  ``POST /studies/<StudyInstanceUID>/covariates`` on the status endpoint writes one;
* **a command-line file** for ``cmr-node analyse --covariates FILE.json``: a mapping from
  StudyInstanceUID or AccessionNumber to covariates, or one flat mapping for every study;
* **the node's own LGE analysis** of the same study: scar extent (% of LV mass, network
  method) and septal mid-wall LGE from its ``results.json``, used for the keys the explicit
  covariates do not give.

The same sidecars, REST body and ``--covariates`` file may hold the study's **clinical
variables** for the site infarct model of the LGE analysis (EMIDEC's twelve: ``sex``, ``age``,
``tobacco``, ``overweight``, ``arterial_hypertension``, ``diabetes``, ``family_history``,
``ecg_st_elevation``, ``troponin``, ``killip``, ``ntprobnp``, and the LVEF, ``lvef_percent``,
shared with the LVRR covariates).  Types, units and ranges are checked by
:func:`plugins.lge.clinical.parse_clinical`; they are kept as
:class:`~plugins.lge.clinical.ClinicalVariables` in :attr:`SuppliedCovariates.clinical` and
handed to the LGE plugin by :func:`clinical_options`.

The same sidecars, REST body and ``--covariates`` file may hold the study's **haematocrit**
(``haematocrit``, also spelt ``hematocrit`` or ``hct``: a fraction 0.15-0.70 or per cent
15-70, or ``{"value": 42, "unit": "%"}``) for the ECV analysis.  It is validated by
:func:`plugins.ecv.parse_haematocrit`, kept apart from the LVRR covariates (whose parser
rejects unknown keys) under :data:`HAEMATOCRIT_KEY`, and handed to the ECV plugin by
:func:`haematocrit_options`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from node.catalog.spool import write_atomic
from plugins.ecv.analysis import HaematocritError, parse_haematocrit
from plugins.lge.clinical import (
    CLINICAL_KEYS,
    LVEF_KEY,
    ClinicalError,
    ClinicalVariables,
    parse_clinical,
)
from plugins.lib.radiomics.lvrr import Covariate, CovariateError, parse_covariates

logger = logging.getLogger(__name__)

__all__ = [
    "ECV_ANALYSIS",
    "HAEMATOCRIT_KEY",
    "LGE_ANALYSIS",
    "T1MAP_ANALYSIS",
    "CovariateFolder",
    "CovariatesError",
    "CovariatesTable",
    "PostedKeys",
    "SuppliedCovariates",
    "analysis_covariate_options",
    "clinical_options",
    "haematocrit_options",
    "has_clinical",
    "lge_covariates",
    "lge_results_covariates",
    "merge_covariates",
    "normalise_covariates",
    "parse_supplied",
    "read_covariates_table",
    "supplied_document",
    "valid_study_uid",
]

T1MAP_ANALYSIS: Final = "t1map"
LGE_ANALYSIS: Final = "lge"
ECV_ANALYSIS: Final = "ecv"
HAEMATOCRIT_KEY: Final = "haematocrit"
"""Key of the haematocrit (fraction) among a study's supplied values."""
HAEMATOCRIT_ALIASES: Final = ("haematocrit", "hematocrit", "hct")
"""Accepted spellings of the haematocrit key (case-insensitive)."""
_FRACTION_UNITS: Final = ("1", "l/l", "fraction")
_UID_RE: Final = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SAFE_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
_LGE_KEYS: Final = (str(Covariate.LGE_EXTENT), str(Covariate.SEPTAL_MIDWALL_LGE))


class CovariatesError(ValueError):
    """Covariates or a covariates file are invalid; the message says why."""


@dataclass(frozen=True)
class SuppliedCovariates:
    """Covariates of one study and where they came from.

    Attributes
    ----------
    values
        Covariate name → number in the models' units (validated).
    source
        Human-readable origin (file, REST, command line, LGE job).
    clinical
        The clinical variables of the infarct model, when any was supplied.
    """

    values: Mapping[str, float]
    source: str
    clinical: ClinicalVariables | None = None


def valid_study_uid(uid: str) -> bool:
    """Whether ``uid`` is a syntactically valid DICOM UID (digits and dots, ≤ 64 chars)."""
    return len(uid) <= 64 and bool(_UID_RE.match(uid))


def normalise_covariates(raw: Any) -> dict[str, float]:
    """Validate covariates and return the LVRR covariates and haematocrit as numbers.

    Clinical variables in ``raw`` are validated too (:func:`parse_supplied` returns them).

    Parameters
    ----------
    raw
        A JSON object as :func:`plugins.lib.radiomics.lvrr.parse_covariates` accepts, plus
        the haematocrit and the clinical variables.

    Raises
    ------
    CovariatesError
        If ``raw`` is not an object, or a covariate is unknown, out of range or in a wrong
        unit.
    """
    return parse_supplied(raw)[0]


def parse_supplied(raw: Any) -> tuple[dict[str, float], ClinicalVariables | None]:
    """Validate what was supplied for a study: LVRR covariates and haematocrit (numbers in
    the models' units), and the clinical variables (None when none of
    :data:`~plugins.lge.clinical.CLINICAL_KEYS` is given; the LVEF alone is an LVRR
    covariate).

    Raises
    ------
    CovariatesError
        If ``raw`` is not an object, or a value is unknown, of a wrong type or unit, or out
        of range; nothing is returned then.
    """
    if not isinstance(raw, Mapping):
        raise CovariatesError("Covariates must be a JSON object of covariate name to value.")
    known = (*(str(c) for c in Covariate), *CLINICAL_KEYS)
    for name in raw:
        if str(name) not in known and str(name).lower() not in HAEMATOCRIT_ALIASES:
            raise CovariatesError(f"Unknown covariate {str(name)!r}; known: "
                                  f"{', '.join(sorted(known))}, haematocrit.")
    clinical_raw = {str(k): v for k, v in raw.items() if str(k) in CLINICAL_KEYS}
    values = _lvrr_and_haematocrit(
        {k: v for k, v in raw.items() if str(k) not in CLINICAL_KEYS})
    if not any(v is not None for v in clinical_raw.values()):
        return values, None
    if LVEF_KEY in values:
        clinical_raw[LVEF_KEY] = values[LVEF_KEY]
    try:
        return values, parse_clinical(clinical_raw)
    except ClinicalError as exc:
        raise CovariatesError(str(exc)) from exc


def supplied_document(values: Mapping[str, float],
                      clinical: ClinicalVariables | None) -> dict[str, Any]:
    """The JSON object of a study's sidecar: what :func:`parse_supplied` reads back."""
    return {**values, **(clinical.as_json() if clinical is not None else {})}


def _lvrr_and_haematocrit(raw: Mapping[Any, Any]) -> dict[str, float]:
    lvrr = {k: v for k, v in raw.items() if str(k).lower() not in HAEMATOCRIT_ALIASES}
    given = [(str(k), v) for k, v in raw.items() if str(k).lower() in HAEMATOCRIT_ALIASES]
    if len(given) > 1:
        raise CovariatesError(
            f"The haematocrit is given {len(given)} times ({', '.join(k for k, _ in given)})."
        )
    try:
        values: dict[str, float] = {str(k): v for k, v in parse_covariates(lvrr).items()}
    except CovariateError as exc:
        raise CovariatesError(str(exc)) from exc
    if given and given[0][1] is not None:
        values[HAEMATOCRIT_KEY] = _haematocrit(given[0][1])
    return values


def _haematocrit(raw: Any) -> float:
    """A supplied haematocrit (number, or ``{"value", "unit"}`` with unit % or 1) as a
    fraction."""
    value = raw
    if isinstance(raw, Mapping):
        unit = str(raw.get("unit", "")).strip().lower()
        value = raw.get("value")
        if unit in ("%", "percent"):
            try:
                value = float(str(value)) / 100.0
            except (TypeError, ValueError) as exc:
                raise CovariatesError(f"haematocrit value {value!r} is not a number") from exc
        elif unit not in _FRACTION_UNITS:
            raise CovariatesError(
                f"haematocrit unit {raw.get('unit')!r} is not % or 1 (a fraction)"
            )
    try:
        return parse_haematocrit(value)
    except HaematocritError as exc:
        raise CovariatesError(str(exc)) from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CovariatesError(f"Cannot read the covariates file {path}: {exc}") from exc


class CovariateFolder:
    """The sidecar folder: ``<StudyInstanceUID>.json`` or ``<AccessionNumber>.json``.

    Parameters
    ----------
    folder
        The folder (created on the first write).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, key: str) -> Path | None:
        """The sidecar path of a study UID or accession number; None for an unsafe name."""
        key = key.strip()
        if not key or not _SAFE_NAME_RE.match(key):
            return None
        return self.folder / f"{key}.json"

    def lookup(self, study_uid: str | None, accession: str | None = None
               ) -> SuppliedCovariates | None:
        """Covariates of a study from its sidecar (study UID first, then accession number).

        Raises
        ------
        CovariatesError
            If the sidecar exists but is unreadable or invalid.
        """
        for kind, key in (("StudyInstanceUID", study_uid), ("AccessionNumber", accession)):
            path = self.path_for(key) if key else None
            if path is None or not path.is_file():
                continue
            values, clinical = parse_supplied(_read_json(path))
            logger.info("covariates of study %s from %s (%s)", study_uid, path, kind)
            return SuppliedCovariates(values, f"sidecar {path.name}", clinical)
        return None

    def write(self, study_uid: str, raw: Any) -> tuple[Path, dict[str, float]]:
        """Validate covariates and write them atomically as the study's sidecar.

        As :meth:`write_supplied`; returns the sidecar path and the LVRR covariates and
        haematocrit written.
        """
        path, supplied = self.write_supplied(study_uid, raw)
        return path, dict(supplied.values)

    def write_supplied(self, study_uid: str, raw: Any) -> tuple[Path, SuppliedCovariates]:
        """Validate a study's covariates and clinical variables, merged into its sidecar, and
        write the sidecar atomically.

        ``raw`` is a merge patch of the stored object (JSON Merge Patch, RFC 7396): its keys
        replace the stored ones, a key whose value is ``null`` is removed, the keys it does
        not name are kept — so the LVRR covariates, a haematocrit and the clinical
        variables can come from different systems.  A haematocrit, under any of its
        spellings, replaces the stored one.  A stored sidecar that cannot be read is
        replaced (logged).

        Returns
        -------
        tuple
            The sidecar path and everything the sidecar now holds (validated, in canonical
            units).

        Raises
        ------
        CovariatesError
            For an invalid study UID, a body that is not an object, or invalid values (of the
            merged whole); nothing is written then.
        """
        if not valid_study_uid(study_uid):
            raise CovariatesError(f"{study_uid!r} is not a valid StudyInstanceUID.")
        if not isinstance(raw, Mapping):
            raise CovariatesError("Covariates must be a JSON object of covariate name to value.")
        path = self.path_for(study_uid)
        if path is None:  # unreachable for a valid UID; kept for the type checker
            raise CovariatesError(f"{study_uid!r} cannot name a file.")
        values, clinical = parse_supplied(_merge_patch(self._stored(path), raw))
        self.folder.mkdir(parents=True, exist_ok=True)
        document = supplied_document(values, clinical)
        write_atomic(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
        logger.info("covariates of study %s written to %s", study_uid, path)
        return path, SuppliedCovariates(values, f"sidecar {path.name}", clinical)

    @staticmethod
    def _stored(path: Path) -> dict[str, Any]:
        """The sidecar's object as stored; empty when there is none or it cannot be read."""
        if not path.is_file():
            return {}
        try:
            stored = _read_json(path)
        except CovariatesError as exc:
            logger.warning("sidecar %s cannot be read and is replaced: %s", path.name, exc)
            return {}
        return dict(stored) if isinstance(stored, Mapping) else {}


@dataclass(frozen=True)
class PostedKeys:
    """Which inputs a posted body names (set or removed), i.e. which analyses it concerns."""

    lvrr: bool
    """An LVRR covariate (the T1-map analysis)."""
    haematocrit: bool
    """The haematocrit (the ECV analysis)."""
    clinical: bool
    """A clinical variable of the infarct model, the LVEF included (the LGE analysis)."""

    @classmethod
    def of(cls, raw: Mapping[Any, Any]) -> PostedKeys:
        """The kinds of input the keys of ``raw`` name."""
        keys = [str(key) for key in raw]
        return cls(
            lvrr=any(k not in CLINICAL_KEYS and k.lower() not in HAEMATOCRIT_ALIASES
                     for k in keys),
            haematocrit=any(k.lower() in HAEMATOCRIT_ALIASES for k in keys),
            clinical=any(k in CLINICAL_KEYS or k == LVEF_KEY for k in keys),
        )


def _merge_patch(stored: Mapping[str, Any], patch: Mapping[Any, Any]) -> dict[str, Any]:
    """``stored`` with the top-level keys of ``patch`` applied (RFC 7396: null removes)."""
    merged = dict(stored)
    if any(str(key).lower() in HAEMATOCRIT_ALIASES for key in patch):
        merged = {k: v for k, v in merged.items() if k.lower() not in HAEMATOCRIT_ALIASES}
    for key, value in patch.items():
        if value is None:
            merged.pop(str(key), None)
        else:
            merged[str(key)] = value
    return merged


@dataclass(frozen=True)
class CovariatesTable:
    """The covariates of ``cmr-node analyse --covariates FILE``.

    Attributes
    ----------
    path
        The file read.
    by_key
        StudyInstanceUID or AccessionNumber → covariates and clinical variables; empty for
        a flat file.
    flat
        Covariates and clinical variables for every study, for a flat file.
    """

    path: Path
    by_key: Mapping[str, tuple[Mapping[str, float], ClinicalVariables | None]]
    flat: tuple[Mapping[str, float], ClinicalVariables | None] | None = None

    def lookup(self, study_uid: str | None, accession: str | None = None
               ) -> SuppliedCovariates | None:
        """Covariates of a study (by study UID, then accession, then the flat mapping)."""
        for key in (study_uid, accession):
            if key and key in self.by_key:
                values, clinical = self.by_key[key]
                return SuppliedCovariates(
                    values, f"command line file {self.path.name} [{key}]", clinical
                )
        if self.flat is not None:
            return SuppliedCovariates(self.flat[0], f"command line file {self.path.name}",
                                      self.flat[1])
        return None


def read_covariates_table(path: Path) -> CovariatesTable:
    """Read a ``--covariates`` file: keyed by study UID or accession number, or flat.

    A file whose keys are all covariate names is flat; otherwise every value must be a
    covariates object.

    Raises
    ------
    CovariatesError
        If the file is unreadable, not an object, or holds invalid covariates (the message
        names the study key).
    """
    document = _read_json(path)
    if not isinstance(document, Mapping):
        raise CovariatesError(f"{path}: the covariates file must hold a JSON object.")
    known = {str(c) for c in Covariate} | set(HAEMATOCRIT_ALIASES) | set(CLINICAL_KEYS)
    if document and {str(k).lower() for k in document} <= known:
        return CovariatesTable(path, {}, parse_supplied(document))
    by_key: dict[str, tuple[Mapping[str, float], ClinicalVariables | None]] = {}
    for key, raw in document.items():
        try:
            by_key[str(key)] = parse_supplied(raw)
        except CovariatesError as exc:
            raise CovariatesError(f"{path}: covariates of {key!r}: {exc}") from exc
    return CovariatesTable(path, by_key)


def lge_covariates(results: Mapping[str, Any]) -> dict[str, float]:
    """LGE covariates from an LGE analysis' ``results.json`` entry.

    Parameters
    ----------
    results
        The entry (``extra.lge.methods.network.percent``, ``extra.lge.septal_midwall``).

    Returns
    -------
    dict
        ``lge_percent_lv_mass`` and ``septal_midwall_lge`` where present; empty when the
        analysis failed QC or reports neither.
    """
    if results.get("qc_failure"):
        return {}
    extra = results.get("extra")
    lge = extra.get("lge") if isinstance(extra, Mapping) else None
    if not isinstance(lge, Mapping):
        return {}
    found: dict[str, Any] = {}
    methods = lge.get("methods")
    network = methods.get("network") if isinstance(methods, Mapping) else None
    if isinstance(network, Mapping) and network.get("percent") is not None:
        found[str(Covariate.LGE_EXTENT)] = network["percent"]
    if isinstance(lge.get("septal_midwall"), bool):
        found[str(Covariate.SEPTAL_MIDWALL_LGE)] = int(lge["septal_midwall"])
    try:
        return normalise_covariates(found)
    except CovariatesError as exc:
        logger.warning("LGE results give unusable covariates: %s", exc)
        return {}


def merge_covariates(
    explicit: SuppliedCovariates | None, lge: SuppliedCovariates | None
) -> SuppliedCovariates | None:
    """Explicit covariates, completed by the LGE analysis' values for keys they lack."""
    if lge is not None and lge.values:
        used = {k: v for k, v in lge.values.items() if explicit is None or k not in explicit.values}
        if used:
            values = {**(explicit.values if explicit else {}), **used}
            sources = [explicit.source] if explicit else []
            sources.append(f"{lge.source} ({', '.join(sorted(used))})")
            return SuppliedCovariates(values, "; ".join(sources),
                                      explicit.clinical if explicit else None)
    return explicit


def has_clinical(supplied: SuppliedCovariates) -> bool:
    """Whether ``supplied`` holds clinical variables."""
    return bool(supplied.clinical)


def clinical_options(covariates: SuppliedCovariates | None) -> dict[str, Any]:
    """The LGE plugin options that carry a study's clinical variables (empty when none).

    Returns
    -------
    dict
        ``clinical`` (:class:`~plugins.lge.clinical.ClinicalVariables`) and
        ``clinical_source`` (where they came from).
    """
    if covariates is None or not covariates.clinical:
        return {}
    return {"clinical": covariates.clinical, "clinical_source": covariates.source}


def analysis_covariate_options(covariates: SuppliedCovariates | None) -> dict[str, Any]:
    """The plugin options that carry LVRR covariates (empty when there are none).

    The haematocrit is not an LVRR covariate: it is left out (see
    :func:`haematocrit_options`).
    """
    if covariates is None:
        return {}
    values = {k: v for k, v in covariates.values.items() if k != HAEMATOCRIT_KEY}
    if not values:
        return {}
    return {"covariates": values, "covariates_source": covariates.source}


def haematocrit_options(covariates: SuppliedCovariates | None) -> dict[str, Any]:
    """The ECV plugin options that carry a study's haematocrit (empty when it has none).

    Returns
    -------
    dict
        ``haematocrit`` (fraction) and ``haematocrit_source`` (where it came from).
    """
    if covariates is None or covariates.values.get(HAEMATOCRIT_KEY) is None:
        return {}
    return {
        "haematocrit": float(covariates.values[HAEMATOCRIT_KEY]),
        "haematocrit_source": covariates.source,
    }


def lge_results_covariates(results_json: Path, label: str) -> SuppliedCovariates | None:
    """LGE covariates from a ``results.json`` file; None when absent or unusable."""
    try:
        document = json.loads(results_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("cannot read LGE results %s: %s", results_json, exc)
        return None
    values = lge_covariates(document) if isinstance(document, Mapping) else {}
    return SuppliedCovariates(values, label) if values else None
