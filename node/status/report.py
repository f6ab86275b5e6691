"""What the node is doing: a status report for the command line and a small HTTP endpoint.

HTTP routes (JSON, bound to ``http_host``, loopback by default).  With a token configured
(``[node] http_token_env`` names the environment variable holding it) every route but
``/healthz`` needs ``Authorization: Bearer <token>`` and answers 401 without it; a status
endpoint bound beyond loopback must have one (node.settings refuses the configuration).

Writes (every ``POST``) always need the token: without one configured, the node makes one at
start and keeps it in ``<data_dir>/http-token`` (mode 0600, readable by the node's user only).
Any page a browser on the node's host opens could otherwise post to the endpoint.  Refused,
over every route but ``/healthz``:

* 421 a ``Host`` other than a loopback name, ``http_host`` or ``[http] allowed_hosts``
  (DNS rebinding: a foreign name resolved to this machine);
* 403 an ``Origin`` not in ``[http] allowed_origins`` (cross-site request forgery; the node
  serves no pages, so by default no origin is its own);
* 401 a write without the token;
* 415 a write whose ``Content-Type`` is not ``application/json`` (a form or ``text/plain``
  post, which browsers send cross-site without asking).

``GET /healthz``            liveness and version
``GET /status``             counts by state, recent series, jobs, outbox rows and events
``GET /metrics``            Prometheus text format 0.0.4 (:mod:`node.status.metrics`); same checks
                            as the other reads
``GET /jobs/<id>``          one job with its outbox rows and results.json
``POST /jobs/<id>/retry``   queue a failed job again
``POST /studies/<StudyInstanceUID>/covariates``
                            store a study's LVRR covariates (JSON object, keys as
                            :func:`plugins.lib.radiomics.lvrr.parse_covariates` accepts) in its
                            sidecar file (merged: a JSON merge patch, RFC 7396 — keys not named
                            are kept, ``null`` removes one) and analyse its T1 maps again; a
                            ``haematocrit`` key (fraction or per cent) is kept for ECV and
                            queues the study's ECV analyses again; the clinical variables of
                            the site infarct model (:mod:`plugins.lge.clinical`) queue its LGE
                            analyses again;
                            400 with the reason for invalid input (nothing stored)
``GET /studies/<StudyInstanceUID>/covariates``
                            the study's stored covariates (404 when none)
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from node import __version__
from node.catalog.catalog import Catalog
from node.corrections.agreement import DRIFT_MARGIN, DRIFT_WINDOW, summarise
from node.inputs.covariates import (
    ECV_ANALYSIS,
    LGE_ANALYSIS,
    T1MAP_ANALYSIS,
    CovariateFolder,
    CovariatesError,
    PostedKeys,
    supplied_document,
)
from node.status.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.status.metrics import median, metrics_text

logger = logging.getLogger(__name__)

_JOB_RE = re.compile(r"^/jobs/(\d+)(/retry)?$")
_COVARIATES_RE = re.compile(r"^/studies/([^/]+)/covariates$")
MAX_BODY_BYTES = 65536
"""Largest request body accepted (a covariates object is a few hundred bytes)."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host names a loopback endpoint always answers to."""
JSON_TYPE = "application/json"


def host_name(header: str) -> str:
    """The host of a ``Host`` header without its port, lower case (``[::1]:80`` -> ``::1``)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def write_token_file(path: Path) -> str:
    """Make a random write token and keep it in ``path`` (mode 0600); returns it."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def post_covariates(
    catalog: Catalog, folder: CovariateFolder, study_uid: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """Validate and store a study's covariates, then queue the analyses that use them again.

    LVRR covariates queue the study's T1 maps, a haematocrit its ECV analyses, clinical
    variables its LGE analyses.

    Returns
    -------
    tuple
        HTTP status (200, or 400 with ``error`` for invalid input) and the JSON answer:
        the covariates stored, the sidecar path and the ids of the re-queued jobs.
    """
    try:
        raw = json.loads(body.decode("utf-8"))
        path, supplied = folder.write_supplied(study_uid, raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return 400, {"error": f"The body is not JSON: {exc}"}
    except CovariatesError as exc:
        return 400, {"error": str(exc)}
    values = supplied.values
    posted = PostedKeys.of(raw)
    requeued: list[int] = []
    if posted.clinical:
        requeued += catalog.reanalyse_study(
            study_uid, LGE_ANALYSIS, f"clinical variables posted for the study ({path.name})"
        )
    if posted.lvrr:
        requeued += catalog.reanalyse_study(
            study_uid, T1MAP_ANALYSIS, f"LVRR covariates posted for the study ({path.name})"
        )
    if posted.haematocrit:
        requeued += catalog.reanalyse_study(
            study_uid, ECV_ANALYSIS, f"haematocrit posted for the study ({path.name})",
            states=("done", "running", "failed"),
        )
    logger.info("covariates of study %s stored; jobs queued again: %s", study_uid, requeued)
    return 200, {
        "study_instance_uid": study_uid,
        "covariates": values,
        "clinical": supplied.clinical.as_json() if supplied.clinical else None,
        "sidecar": str(path),
        "requeued_jobs": requeued,
    }


def status_report(catalog: Catalog, limit: int = 20) -> dict[str, Any]:
    """Counts and the most recent series, jobs, deliveries and events."""
    return {
        "version": __version__,
        "generated_at": time.time(),
        "counts": catalog.counts(),
        "series": catalog.recent_series(limit),
        "jobs": catalog.recent_jobs(limit),
        "outbox": catalog.outbox_items(limit=limit),
        "events": catalog.recent_events(limit),
        "corrections": corrections_report(catalog),
    }


def corrections_report(catalog: Catalog) -> list[dict[str, Any]]:
    """Reader-correction agreement per scanner, with drift warnings (node.corrections.agreement)."""
    report = []
    for scanner in summarise(catalog.corrections()).values():
        report.append({
            "station": scanner.station,
            "calling_ae": scanner.calling_ae,
            "corrections": scanner.count,
            "median_dice": {k: median(v) for k, v in sorted(scanner.dice.items())},
            "median_delta_t1_ms": median(scanner.delta_t1_ms) if scanner.delta_t1_ms else None,
            "median_delta_scar_percent": (median(scanner.delta_scar_percent)
                                          if scanner.delta_scar_percent else None),
            "drift": [
                f"{segment}: median Dice of the latest {DRIFT_WINDOW} corrections {latest:.3f}, "
                f"{earlier:.3f} before (drop over {DRIFT_MARGIN})"
                for segment, (earlier, latest) in sorted(scanner.drift.items())
            ],
        })
    return report


def job_detail(catalog: Catalog, job_id: int) -> dict[str, Any] | None:
    """One job with its deliveries and, when written, its results.json."""
    job = catalog.job(job_id)
    if job is None:
        return None
    results = None
    if job.get("result_dir"):
        path = Path(job["result_dir"]) / "results.json"
        if path.exists():
            results = json.loads(path.read_text())
    return {"job": job, "outbox": catalog.outbox_items(job_id=job_id), "results": results}


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _short(uid: str | None, width: int = 24) -> str:
    if not uid:
        return "-"
    return uid if len(uid) <= width else "…" + uid[-(width - 1) :]


def key_numbers_text(summary: dict[str, Any]) -> str:
    """The few numbers of a job's summary a reader looks for, and its worst QC flag.

    Summaries recorded before key numbers were kept show their QC flag codes only.
    """
    numbers = summary.get("key_numbers") or {}
    parts = [f"{k.removeprefix('global_')}={v}" for k, v in numbers.items() if v is not None]
    worst = summary.get("worst_flag")
    if worst:
        parts.append(f"worst QC: {worst}")
    elif summary.get("qc_flags") and "worst_flag" not in summary:
        parts.append(f"QC: {', '.join(summary['qc_flags'])}")
    return ", ".join(parts)


def format_report(report: dict[str, Any]) -> str:
    """The status report as text tables for a terminal."""
    lines = [f"cmr-node {report['version']}"]
    counts = report["counts"]
    lines.append(
        "instances stored: {}   series: {}   jobs: {}   outbox: {}".format(
            counts["instances"]["stored"],
            dict(counts["series"]) or "{}",
            dict(counts["jobs"]) or "{}",
            dict(counts["outbox"]) or "{}",
        )
    )
    lines.append("")
    lines.append("SERIES (most recent first)")
    lines.append(
        f"{'last received':19}  {'series UID':24}  {'n':>4}  {'state':10}  description / route"
    )
    for s in report["series"]:
        # A reader's SEG is no input of an analysis: its reason says what it corrects.
        target = "reader SEG" if s["state"] == "correction" else s.get("analysis") or "-"
        lines.append(
            f"{_when(s['last_received']):19}  {_short(s['series_instance_uid']):24}"
            f"  {s['instance_count']:>4}  {s['state']:10}  {s.get('description') or ''}"
            f" -> {target}: {s.get('route_reason') or ''}"
        )
    lines.append("")
    lines.append("JOBS")
    lines.append(
        f"{'id':>5}  {'analysis':8}  {'state':10}  {'try':>3}  {'total s':>7}  series / error"
    )
    for j in report["jobs"]:
        timings = j.get("timings") or {}
        total = timings.get("total_s")
        detail = j.get("error") or key_numbers_text(j.get("summary") or {})
        lines.append(
            f"{j['id']:>5}  {j['analysis']:8}  {j['state']:10}  {j['attempts']:>3}"
            f"  {total if total is None else f'{total:7.2f}'!s:>7}"
            f"  {_short(j['series_instance_uid'])}  {detail}"
        )
    lines.append("")
    lines.append("OUTBOX")
    for o in report["outbox"]:
        lines.append(
            f"{o['id']:>5}  job {o['job_id']:<4} {o['kind']:13} -> {o['destination']:10}"
            f" {o['state']:10} tries {o['attempts']}  {o.get('last_error') or ''}"
        )
    lines.append("")
    lines.append("CORRECTIONS (reader SEGs per scanner: station / calling AE)")
    for c in report.get("corrections", []):
        dice = ", ".join(f"{k} {v:.3f}" for k, v in c["median_dice"].items())
        extra = [f"{name} {c[key]:+.1f}" for key, name in (
            ("median_delta_t1_ms", "dT1 ms"), ("median_delta_scar_percent", "d%scar"))
            if c[key] is not None]
        lines.append(f"{c['station'] or '-'} / {c['calling_ae'] or '-'}: {c['corrections']}"
                     f" corrections; median Dice {dice}" + "".join(f"; {e}" for e in extra))
        lines += [f"  DRIFT WARNING {text}" for text in c["drift"]]
    lines.append("")
    lines.append("EVENTS")
    for e in report["events"]:
        lines.append(
            f"{_when(e['at'])}  {e['kind']:20}  {_short(e['series_instance_uid'])}  {e['message']}"
        )
    return "\n".join(lines)


class StatusServer:
    """The HTTP status endpoint, in a background thread.

    Parameters
    ----------
    catalog
        The node's catalog.
    host, port
        Where to listen (port 0: any free port).
    on_retry
        Called after a job was queued again (wakes the workers).
    covariates
        The covariates sidecar folder; without it the covariates routes answer 503.
    token
        Bearer token every route but ``/healthz`` requires; ``None``: reads need none
        (loopback only) and writes need :attr:`write_token`.
    allowed_hosts
        Host names answered besides the loopback names.
    allowed_origins
        Browser origins (``scheme://host[:port]``) whose requests are accepted.
    token_file
        Where the write token made without ``token`` is kept for the operator.
    """

    def __init__(
        self,
        catalog: Catalog,
        host: str,
        port: int,
        on_retry: Callable[[], None],
        covariates: CovariateFolder | None = None,
        token: str | None = None,
        allowed_hosts: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        token_file: Path | None = None,
    ) -> None:
        self._catalog = catalog
        self._on_retry = on_retry
        self._covariates = covariates
        self._token = token
        if token is not None:
            self.write_token = token
        elif token_file is not None:
            self.write_token = write_token_file(token_file)
        else:
            self.write_token = secrets.token_urlsafe(32)
        self._hosts = LOOPBACK_NAMES | {h.strip().lower() for h in allowed_hosts if h}
        self._origins = frozenset(o.strip().rstrip("/").lower() for o in allowed_origins)
        handler = self._make_handler()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="status-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()
        logger.info("status endpoint on http://%s:%d/status", *self.address)

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        catalog = self._catalog
        on_retry = self._on_retry
        covariates = self._covariates
        token = self._token
        write_token = self.write_token
        hosts = self._hosts
        origins = self._origins

        class Handler(BaseHTTPRequestHandler):
            server_version = f"cmr-node/{__version__}"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("http %s", format % args)

            def _send(self, code: int, payload: Any) -> None:
                body = json.dumps(payload, default=str).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _send_text(self, code: int, text: str, content_type: str) -> None:
                body = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _refuse(self, code: int, error: str, headers: dict[str, str] | None = None
                        ) -> bool:
                logger.warning("http %s %s from %s refused (%d): %s", self.command,
                               self.path.split("?", 1)[0], self.client_address[0], code, error)
                body = json.dumps({"error": error}).encode()
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return False

            def _has_token(self, expected: str) -> bool:
                scheme, _, value = self.headers.get("Authorization", "").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    value.strip().encode(), expected.encode()
                )

            def _allowed(self, write: bool) -> bool:
                """Whether the request may go on (else the refusal is sent)."""
                host = self.headers.get("Host")
                if host is not None and host_name(host) not in hosts:
                    return self._refuse(421, "this endpoint does not answer to that host name")
                origin = self.headers.get("Origin")
                if origin is not None and origin.strip().rstrip("/").lower() not in origins:
                    return self._refuse(403, "requests from that origin are not accepted")
                needed = write_token if write else token
                if needed is not None and not self._has_token(needed):
                    return self._refuse(401, "authentication required",
                                        {"WWW-Authenticate": 'Bearer realm="cmr-node"'})
                if write:
                    kind = self.headers.get("Content-Type", "").split(";", 1)[0].strip()
                    if kind.lower() != JSON_TYPE:
                        return self._refuse(415, f"only {JSON_TYPE} is accepted")
                return True

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, {"status": "ok", "version": __version__})
                elif not self._allowed(write=False):
                    return
                elif path == "/status":
                    self._send(200, status_report(catalog))
                elif path == "/metrics":
                    self._send_text(200, metrics_text(catalog), METRICS_CONTENT_TYPE)
                elif (m := _JOB_RE.match(path)) and not m.group(2):
                    detail = job_detail(catalog, int(m.group(1)))
                    self._send(200 if detail else 404, detail or {"error": "no such job"})
                elif m := _COVARIATES_RE.match(path):
                    self._get_covariates(m.group(1))
                else:
                    self._send(404, {"error": "not found"})

            def _get_covariates(self, study_uid: str) -> None:
                if covariates is None:
                    self._send(503, {"error": "no covariates folder configured"})
                    return
                try:
                    found = covariates.lookup(study_uid)
                except CovariatesError as exc:
                    self._send(409, {"error": f"the stored covariates are invalid: {exc}"})
                    return
                if found is None:
                    self._send(404, {"error": f"no covariates stored for study {study_uid}"})
                else:
                    self._send(200, {"study_instance_uid": study_uid,
                                     "covariates": supplied_document(found.values,
                                                                     found.clinical),
                                     "source": found.source})

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                if not self._allowed(write=True):
                    return
                m = _JOB_RE.match(path)
                if m and m.group(2):
                    ok = catalog.retry_job(int(m.group(1)))
                    if ok:
                        on_retry()
                    self._send(200 if ok else 409, {"retried": ok})
                elif m := _COVARIATES_RE.match(path):
                    self._post_covariates(m.group(1))
                else:
                    self._send(404, {"error": "not found"})

            def _post_covariates(self, study_uid: str) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 < length <= MAX_BODY_BYTES:
                    self._send(400, {"error": "a JSON body of at most "
                                              f"{MAX_BODY_BYTES} bytes is required"})
                    return
                body = self.rfile.read(length)
                if covariates is None:
                    self._send(503, {"error": "no covariates folder configured"})
                    return
                code, answer = post_covariates(catalog, covariates, study_uid, body)
                if answer.get("requeued_jobs"):
                    on_retry()
                self._send(code, answer)

        return Handler
