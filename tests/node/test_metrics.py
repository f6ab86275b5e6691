"""``GET /metrics``: the Prometheus text format 0.0.4, parsed strictly, over real HTTP.

prometheus_client is not among the node's dependencies, so the parser here follows the
format's rules itself: HELP/TYPE lines before a family's samples, each family once, sample
names of the family's type (histogram ``_bucket``/``_sum``/``_count``, summary quantiles),
valid metric and label names, escaped label values, float values, no repeated series,
cumulative histogram buckets ending at ``+Inf`` equal to ``_count``.
"""

from __future__ import annotations

import math
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.catalog.catalog import Catalog
from node.catalog.job_queue import OutputFile
from node.catalog.series import InstanceRecord
from node.status.metrics import CONTENT_TYPE, MetricFamily, render
from node.status.report import StatusServer

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_RE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_SUFFIXES = {"counter": ("",), "gauge": ("",), "untyped": ("",),
             "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


@dataclass
class Family:
    kind: str
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL_RE.match(text, position)
        assert match, f"bad label set {text!r} at {position}"
        name = match.group(1)
        assert name not in labels, f"label {name} repeated"
        labels[name] = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)),
                              match.group(2))
        position = match.end()
        if position < len(text):
            assert text[position] == ",", f"labels not separated by a comma: {text!r}"
            position += 1
    return labels


def parse(text: str) -> dict[str, Family]:
    """Parse the text format strictly; an assertion fails on any deviation."""
    assert text.endswith("\n"), "the exposition must end with a line feed"
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    closed: set[str] = set()
    current: str | None = None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name) and name not in helps, line
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name) and kind in _SUFFIXES, line
            assert name not in families and name not in closed, f"family {name} given twice"
            if current is not None:
                closed.add(current)
            families[name] = Family(kind, helps.get(name))
            current = name
        else:
            assert not line.startswith("#") and line.strip(), f"unexpected line {line!r}"
            match = _SAMPLE_RE.match(line)
            assert match, f"bad sample line {line!r}"
            name, label_text, value_text = match.groups()
            assert current is not None, f"sample {name} before any TYPE line"
            family = families[current]
            suffix = name[len(current):] if name.startswith(current) else None
            assert suffix in _SUFFIXES[family.kind], f"{name} is not a sample of {current}"
            value = float(value_text)  # accepts +Inf, -Inf, NaN as the format writes them
            labels = _labels(label_text or "")
            key = (name, tuple(sorted(labels.items())))
            assert key not in seen, f"series {key} repeated"
            seen.add(key)
            family.samples.append((name, labels, value))
    for name, family in families.items():
        if family.kind == "histogram":
            _check_histogram(name, family)
        if family.kind == "summary":
            for sample_name, labels, _ in family.samples:
                if sample_name == name:
                    assert 0.0 <= float(labels["quantile"]) <= 1.0
    return families


def _check_histogram(name: str, family: Family) -> None:
    groups: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for sample_name, labels, value in family.samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        if sample_name == name + "_bucket":
            groups.setdefault(rest, []).append((float(labels["le"]), value))
        elif sample_name == name + "_count":
            counts[rest] = value
    for rest, buckets in groups.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and math.isinf(bounds[-1]), bounds
        values = [v for _, v in buckets]
        assert values == sorted(values), f"buckets of {rest} not cumulative"
        assert values[-1] == counts[rest], "the +Inf bucket differs from _count"


def _sample(families: dict[str, Family], name: str, **labels: str) -> float:
    family = families[name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")]
    found = [v for n, lab, v in family.samples
             if n == name and all(lab.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


def _record(tmp: Path, sop: str, series: str, aet: str) -> InstanceRecord:
    return InstanceRecord(sop, series, "1.2", "1.2.840.10008.5.1.4.1.1.4", None,
                          tmp / f"{sop}.dcm", 10, aet, "MR", "T1MAP", None)


def _populated(location: str | Path, tmp: Path) -> Catalog:
    """A catalog with one delivered job (one retry), one failed job, one pending delivery."""
    catalog = Catalog(location)
    received = time.time() - 42.0
    for i in (1, 2):
        catalog.record_instance(_record(tmp, f"1.1.{i}", "1.3.1", "SCANNER_A"), now=received)
    catalog.record_instance(_record(tmp, "1.2.1", "1.3.2", 'ODD "AE"'), now=received)
    catalog.record_instance(_record(tmp, "1.3.1", "1.3.3", "SCANNER_A"))
    for series in ("1.3.1", "1.3.2", "1.3.3"):
        assert catalog.complete_series(series, 0)
        catalog.route_series(series, 0, ["t1map"], "test")
    outputs = [OutputFile(tmp / f"{k}.dcm", f"2.25.{n}", "1.2.840.10008.5.1.4.1.1.88.33", k)
               for n, k in enumerate(("sr", "seg"))]
    done = {}
    for _ in range(3):
        job = catalog.claim_job()
        assert job is not None
        done[job.series_instance_uid] = job
    catalog.finish_job(done["1.3.1"], outputs, ["pacs"], result_dir=tmp, timings={},
                       summary={})
    catalog.fail_job(done["1.3.2"], "cannot analyse", retry_at=None)
    catalog.finish_job(done["1.3.3"], [OutputFile(tmp / "x.dcm", "2.25.9", "1.2", "sr")],
                       ["pacs"], result_dir=tmp, timings={}, summary={})
    for item in catalog.due_outbox():
        if item.job_id != done["1.3.1"].id:
            continue
        catalog.mark_send_attempt(item.id)
        if item.kind == "sr":
            catalog.mark_send_failed(item.id, "refused", 0xA700, time.time())
            catalog.mark_send_attempt(item.id)
        catalog.mark_sent(item.id, 0)
    return catalog


@pytest.fixture
def server(tmp_path: Path, catalog_location: str | Path) -> StatusServer:
    catalog = _populated(catalog_location, tmp_path)
    status = StatusServer(catalog, "127.0.0.1", 0, on_retry=lambda: None)
    status.start()
    yield status
    status.stop()
    catalog.close()


def _get(server: StatusServer, headers: dict[str, str] | None = None) -> tuple[str, str]:
    host, port = server.address
    request = urllib.request.Request(f"http://{host}:{port}/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.headers["Content-Type"], reply.read().decode()


def test_metrics_parse_and_count_what_the_catalog_holds(server: StatusServer) -> None:
    content_type, text = _get(server)
    assert content_type == CONTENT_TYPE
    families = parse(text)
    assert {name: f.kind for name, f in families.items()} == {
        "cmr_node_series": "gauge", "cmr_node_jobs": "gauge", "cmr_node_outbox": "gauge",
        "cmr_node_job_outcomes_total": "counter",
        "cmr_node_time_to_result_seconds": "histogram",
        "cmr_node_delivery_retries_total": "counter", "cmr_node_corrections_total": "counter",
        "cmr_node_correction_dice": "summary", "cmr_node_correction_drift": "gauge",
    }
    assert all(f.help for f in families.values())
    assert _sample(families, "cmr_node_jobs", state="done") == 2
    assert _sample(families, "cmr_node_jobs", state="failed") == 1
    assert _sample(families, "cmr_node_job_outcomes_total", analysis="t1map",
                   outcome="failed") == 1
    assert _sample(families, "cmr_node_outbox", destination="pacs", state="sent") == 2
    assert _sample(families, "cmr_node_outbox", destination="pacs", state="pending") == 1
    assert _sample(families, "cmr_node_delivery_retries_total", destination="pacs") == 1
    # One series delivered, 42 s after its last instance; the other is not delivered yet.
    labels = {"calling_ae": "SCANNER_A", "analysis": "t1map"}
    assert _sample(families, "cmr_node_time_to_result_seconds_count", **labels) == 1
    assert 42.0 <= _sample(families, "cmr_node_time_to_result_seconds_sum", **labels) < 60.0
    assert _sample(families, "cmr_node_time_to_result_seconds_bucket", **labels, le="30") == 0
    assert _sample(families, "cmr_node_time_to_result_seconds_bucket", **labels, le="60") == 1


def test_metrics_refuse_a_foreign_host_and_need_the_token_when_one_is_set(
    tmp_path: Path, server: StatusServer
) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(server, {"Host": "attacker.example:80"})
    assert refused.value.code == 421
    catalog = Catalog(tmp_path / "other.sqlite3")
    guarded = StatusServer(catalog, "127.0.0.1", 0, on_retry=lambda: None, token="s3cret")
    guarded.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get(guarded)
        assert missing.value.code == 401
        _, text = _get(guarded, {"Authorization": "Bearer s3cret"})
        assert parse(text)["cmr_node_jobs"].samples == []
    finally:
        guarded.stop()
        catalog.close()


def test_label_values_are_escaped_so_that_they_parse_back() -> None:
    family = MetricFamily("cmr_node_test", "gauge", "a help\nwith \\ a line feed")
    odd = 'ODD "AE"\\ \nline'
    family.add(1.5, calling_ae=odd)
    family.add(math.inf, calling_ae="plain")
    parsed = parse(render([family]))["cmr_node_test"]
    assert parsed.samples == [("cmr_node_test", {"calling_ae": odd}, 1.5),
                              ("cmr_node_test", {"calling_ae": "plain"}, math.inf)]
    with pytest.raises(ValueError):
        render([MetricFamily("bad-name", "gauge", "x")])
    with pytest.raises(ValueError):
        render([family, family])
