"""Operations metrics in the Prometheus text exposition format (version 0.0.4).

Served by the status endpoint as ``GET /metrics`` (:mod:`node.status.report`).  Every figure is read
from the durable catalog when scraped, so counters survive restarts and several processes
sharing one catalog report the same numbers; nothing is kept in memory.

Families
--------
``cmr_node_series`` (gauge, by ``state``)
    series by state; ``receiving`` and ``complete`` are the series waiting.
``cmr_node_jobs`` (gauge, by ``state``)
    analysis jobs by state (``queued`` is the queue depth).
``cmr_node_outbox`` (gauge, by ``destination`` and ``state``)
    deliveries by state (``pending``: outputs waiting to be delivered).
``cmr_node_job_outcomes_total`` (counter, by ``analysis`` and ``outcome``)
    finished jobs: ``done``, ``failed`` or ``superseded``.
``cmr_node_time_to_result_seconds`` (histogram, by ``calling_ae`` and ``analysis``)
    from the last instance of a series to the last output of its analysis accepted by every
    destination; only the first job queued after that instance counts (a later re-analysis,
    e.g. for posted covariates, measures no scanner-to-PACS delay).
``cmr_node_delivery_retries_total`` (counter, by ``destination``)
    delivery attempts beyond the first of each output.
``cmr_node_corrections_total`` (counter, by ``station`` and ``calling_ae``)
    reader corrections matched to a node result (:mod:`node.corrections.agreement`).
``cmr_node_correction_dice`` (summary, by ``station``, ``calling_ae`` and ``segment``)
    Dice of the node's segment against the reader's correction (0.5 quantile, sum, count).
``cmr_node_correction_drift`` (gauge, by ``station``, ``calling_ae`` and ``segment``)
    1 when the drift rule of :mod:`node.corrections.agreement` fires, else 0.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from node.catalog.catalog import Catalog
from node.corrections.agreement import ScannerAgreement, summarise

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Content type of the text exposition format 0.0.4."""

TIME_TO_RESULT_BUCKETS_S = (10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
                            1800.0, 3600.0)
"""Upper bounds of the time-to-result histogram: a result is expected within minutes."""

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})


@dataclass
class MetricFamily:
    """One metric family: its name, type, help text and samples.

    Attributes
    ----------
    name, kind, help
        Family name, Prometheus type and one-line description.
    samples
        ``(suffix, labels, value)``: the sample name is ``name + suffix`` (``_bucket``,
        ``_sum``, ``_count`` for histograms and summaries, ``""`` otherwise).
    """

    name: str
    kind: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        """Add one sample."""
        self.samples.append((suffix, labels, value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    """A sample value as the text format writes it (``+Inf``, ``NaN``, shortest float)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[MetricFamily]) -> str:
    """Return families in the text exposition format 0.0.4.

    Raises
    ------
    ValueError
        On an invalid metric or label name, an unknown type, or a family given twice.
    """
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        if not _NAME_RE.match(family.name) or family.kind not in _TYPES:
            raise ValueError(f"invalid metric family {family.name!r} of type {family.kind!r}")
        if family.name in seen:
            raise ValueError(f"metric family {family.name!r} given twice")
        seen.add(family.name)
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            bad = [k for k in labels if not _LABEL_RE.match(k) or k.startswith("__")]
            if bad:
                raise ValueError(f"invalid label names {bad} in {family.name}")
            text = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            name = family.name + suffix
            lines.append(f"{name}{{{text}}} {format_value(value)}" if text
                         else f"{name} {format_value(value)}")
    return "\n".join(lines) + "\n"


def histogram(
    family: MetricFamily, observations: Sequence[float], buckets: Sequence[float],
    **labels: str,
) -> None:
    """Add the cumulative buckets, sum and count of ``observations`` to ``family``."""
    for bound in (*buckets, math.inf):
        count = sum(1 for value in observations if value <= bound)
        family.add(count, "_bucket", **labels, le=format_value(bound))
    family.add(sum(observations), "_sum", **labels)
    family.add(len(observations), "_count", **labels)


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (NaN when empty)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _by_state(catalog: Catalog, name: str, table: str, help_text: str) -> MetricFamily:
    family = MetricFamily(name, "gauge", help_text)
    for row in catalog.query(f"SELECT state, COUNT(*) AS n FROM {table} GROUP BY state"
                             " ORDER BY state"):
        family.add(int(row["n"]), state=str(row["state"]))
    return family


def time_to_result(catalog: Catalog) -> dict[tuple[str, str], list[float]]:
    """Seconds from a series' last instance to its analysis' last delivered output.

    Returns
    -------
    dict
        By (calling AE title of the last instance, analysis): one value per series whose
        first job queued after its last instance is done and delivered everywhere.
    """
    rows = catalog.query(
        "SELECT j.series_instance_uid AS series, j.analysis AS analysis,"
        " s.last_received AS last_received, MAX(o.sent_at) AS delivered,"
        " SUM(CASE WHEN o.state='sent' THEN 0 ELSE 1 END) AS unsent,"
        " (SELECT i.calling_aet FROM instances i WHERE i.series_instance_uid=s.series_instance_uid"
        "  ORDER BY i.received_at DESC LIMIT 1) AS calling_aet"
        " FROM jobs j JOIN series s ON s.series_instance_uid=j.series_instance_uid"
        " JOIN outbox o ON o.job_id=j.id"
        " WHERE j.state='done' AND j.id=(SELECT MIN(k.id) FROM jobs k"
        "  WHERE k.series_instance_uid=j.series_instance_uid AND k.analysis=j.analysis"
        "  AND k.created_at>=s.last_received)"
        " GROUP BY j.id, j.series_instance_uid, j.analysis, s.last_received,"
        " s.series_instance_uid"
    )
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if int(row["unsent"]) or row["delivered"] is None:
            continue
        key = (str(row["calling_aet"] or ""), str(row["analysis"]))
        found[key].append(max(float(row["delivered"]) - float(row["last_received"]), 0.0))
    return dict(found)


def collect(catalog: Catalog) -> list[MetricFamily]:
    """Read the metric families from the catalog."""
    families = [
        _by_state(catalog, "cmr_node_series", "series",
                  "Series by state (receiving and complete: waiting for analysis)."),
        _by_state(catalog, "cmr_node_jobs", "jobs",
                  "Analysis jobs by state (queued: queue depth)."),
    ]
    outbox = MetricFamily("cmr_node_outbox", "gauge",
                          "Deliveries by destination and state (pending: waiting).")
    for row in catalog.query(
        "SELECT destination, state, COUNT(*) AS n FROM outbox GROUP BY destination, state"
        " ORDER BY destination, state"
    ):
        outbox.add(int(row["n"]), destination=str(row["destination"]), state=str(row["state"]))
    retries = MetricFamily("cmr_node_delivery_retries_total", "counter",
                           "Delivery attempts beyond the first of each output.")
    for row in catalog.query(
        "SELECT destination, SUM(CASE WHEN attempts>1 THEN attempts-1 ELSE 0 END) AS retries"
        " FROM outbox GROUP BY destination ORDER BY destination"
    ):
        retries.add(int(row["retries"] or 0), destination=str(row["destination"]))
    outcomes = MetricFamily("cmr_node_job_outcomes_total", "counter",
                            "Finished analysis jobs by analysis and outcome.")
    for row in catalog.query(
        "SELECT analysis, state, COUNT(*) AS n FROM jobs"
        " WHERE state IN ('done', 'failed', 'superseded') GROUP BY analysis, state"
        " ORDER BY analysis, state"
    ):
        outcomes.add(int(row["n"]), analysis=str(row["analysis"]), outcome=str(row["state"]))
    latency = MetricFamily(
        "cmr_node_time_to_result_seconds", "histogram",
        "Seconds from the last instance of a series to the last output delivered.",
    )
    for (calling_ae, analysis), values in sorted(time_to_result(catalog).items()):
        histogram(latency, values, TIME_TO_RESULT_BUCKETS_S,
                  calling_ae=calling_ae, analysis=analysis)
    return [*families, outbox, outcomes, latency, retries,
            *correction_families(summarise(catalog.corrections()).values())]


def correction_families(scanners: Iterable[ScannerAgreement]) -> list[MetricFamily]:
    """The reader-correction families (:mod:`node.corrections.agreement`)."""
    total = MetricFamily("cmr_node_corrections_total", "counter",
                         "Reader corrections matched to a node result.")
    dice = MetricFamily("cmr_node_correction_dice", "summary",
                        "Dice of the node's segment against the reader's correction.")
    drifted = MetricFamily("cmr_node_correction_drift", "gauge",
                           "1 when the agreement drift rule fires for a scanner and segment.")
    for scanner in scanners:
        total.add(scanner.count, station=scanner.station, calling_ae=scanner.calling_ae)
        for segment, values in sorted(scanner.dice.items()):
            labels = {"station": scanner.station, "calling_ae": scanner.calling_ae,
                      "segment": segment}
            dice.add(median(values), **labels, quantile="0.5")
            dice.add(sum(values), "_sum", **labels)
            dice.add(len(values), "_count", **labels)
            drifted.add(1 if segment in scanner.drift else 0, **labels)
    return [total, dice, drifted]


def metrics_text(catalog: Catalog) -> str:
    """The node's metrics in the text exposition format (``GET /metrics``)."""
    return render(collect(catalog))
