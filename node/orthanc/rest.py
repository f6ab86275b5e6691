"""REST routes of the node inside Orthanc, under ``/cmr-node/`` (Orthanc's authentication applies).

``GET  /cmr-node/health``                  liveness, version, queue lengths
``GET  /cmr-node/version``                 versions of the node and its analyses
``GET  /cmr-node/jobs``                    jobs, newest first; filters ``state`` (comma-separated),
                                           ``series`` (SeriesInstanceUID or Orthanc ID),
                                           ``analysis``, ``limit``
``GET  /cmr-node/jobs/<id>``               one job: results, timings, deliveries and its log
``POST /cmr-node/jobs/<id>/retry``         queue a failed job again (409 if it is not failed)
``GET  /cmr-node/series/<id>``             what the node did with a series (Orthanc ID or UID)
``POST /cmr-node/series/<id>/rerun``       fetch and analyse a series again
``GET  /cmr-node/studies/<id>``            the same for every series of an Orthanc study
``GET  /cmr-node/dashboard``               counts, queue, processing times, recent jobs, failures,
                                           reader corrections per scanner
``GET  /cmr-node/ui``                      the dashboard page (HTML)

Errors are answered with the HTTP status only (404 unknown, 405 method, 409 conflict): the
Python plugin of Orthanc 1.10 cannot send an error status with a body.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node import __version__
from node.orthanc.node import IntakeState, OrthancNode
from node.status.report import corrections_report, job_detail

logger = logging.getLogger(__name__)

PREFIX = "/cmr-node"
ASSETS_DIR = Path(__file__).resolve().parents[2] / "orthanc" / "explorer"
EXPLORER_SCRIPT = "extension.js"
DASHBOARD_PAGE = "dashboard.html"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
TIMING_SAMPLE = 200
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)+$")
JOB_STATES = ("queued", "running", "done", "failed", "superseded")


class HttpError(Exception):
    """An answer other than 200; the message is logged."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    """What a route handler sees of a request."""

    method: str
    groups: tuple[str, ...]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    """A successful answer."""

    body: bytes
    content_type: str = "application/json"


def json_response(payload: Any) -> Response:
    """A JSON answer (non-JSON values such as paths are written as strings)."""
    return Response(json.dumps(payload, default=str).encode("utf-8"))


def read_asset(name: str) -> str:
    """Text of a file of the Explorer extension (``orthanc/explorer``)."""
    return (ASSETS_DIR / name).read_text(encoding="utf-8")


def explorer_extension() -> str:
    """The JavaScript added to Orthanc Explorer."""
    return read_asset(EXPLORER_SCRIPT)


def _limit(query: Mapping[str, str]) -> int:
    try:
        value = int(query.get("limit", DEFAULT_LIMIT))
    except ValueError as exc:
        raise HttpError(400, f"limit is not a number: {query.get('limit')!r}") from exc
    return max(1, min(MAX_LIMIT, value))


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def timing_stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, median, 90th percentile and maximum of durations in seconds."""
    if not values:
        return {"n": 0, "mean_s": None, "median_s": None, "p90_s": None, "max_s": None}
    return {
        "n": len(values),
        "mean_s": round(statistics.fmean(values), 3),
        "median_s": round(statistics.median(values), 3),
        "p90_s": round(_percentile(values, 0.9), 3),
        "max_s": round(max(values), 3),
    }


def _job_row(row: Mapping[str, Any]) -> dict[str, Any]:
    item = dict(row)
    for key in ("timings", "summary"):
        if isinstance(item.get(key), str):
            item[key] = json.loads(item[key])
    return item


class RestRoutes:
    """The route handlers, wired to Orthanc by :meth:`register`.

    Parameters
    ----------
    node
        The node running inside Orthanc.
    """

    def __init__(self, node: OrthancNode) -> None:
        self.node = node
        self.routes: list[tuple[str, tuple[str, ...], Callable[[Request], Response]]] = [
            ("/health", ("GET",), self.health),
            ("/version", ("GET",), self.version),
            ("/jobs", ("GET",), self.jobs),
            ("/jobs/([0-9]+)", ("GET",), self.job),
            ("/jobs/([0-9]+)/retry", ("POST",), self.retry),
            ("/series/([^/]+)", ("GET",), self.series),
            ("/series/([^/]+)/rerun", ("POST",), self.rerun),
            ("/studies/([^/]+)", ("GET",), self.study),
            ("/dashboard", ("GET",), self.dashboard),
            ("/ui", ("GET",), self.ui),
        ]

    # ------------------------------------------------------------------ wiring

    def register(self, api: Any) -> None:
        """Register every route with Orthanc."""
        for pattern, methods, handler in self.routes:
            api.RegisterRestCallback(PREFIX + pattern, self.callback(methods, handler))

    def callback(
        self, methods: tuple[str, ...], handler: Callable[[Request], Response]
    ) -> Callable[..., None]:
        """An Orthanc REST callback around a handler."""

        def on_rest(output: Any, uri: str, **request: Any) -> None:
            method = str(request.get("method", "GET"))
            if method not in methods:
                output.SendMethodNotAllowed(",".join(methods))
                return
            body = request.get("body") or b""
            req = Request(
                method=method,
                groups=tuple(request.get("groups") or ()),
                query=dict(request.get("get") or {}),
                body=body.encode() if isinstance(body, str) else bytes(body),
            )
            try:
                response = handler(req)
            except HttpError as exc:
                logger.info("%s %s: %d %s", method, uri, exc.status, exc)
                output.SendHttpStatusCode(exc.status)
                return
            except Exception:
                logger.exception("%s %s failed", method, uri)
                output.SendHttpStatusCode(500)
                return
            output.AnswerBuffer(response.body, response.content_type)

        return on_rest

    # ------------------------------------------------------------------ helpers

    def _orthanc_json(self, uri: str) -> Any:
        try:
            return json.loads(self.node.api.RestApiGet(uri))
        except self.node.api.OrthancException as exc:
            raise HttpError(404, f"{uri}: {exc}") from exc

    def _orthanc_series_id(self, key: str) -> str:
        """Orthanc ID of a series given its Orthanc ID or SeriesInstanceUID."""
        if not _UID_RE.match(key):
            self._orthanc_json(f"/series/{key}")
            return key
        known = self.node.store.orthanc_series_of(key)
        if known:
            return known
        try:
            found = json.loads(self.node.api.RestApiPost("/tools/lookup", key))
        except self.node.api.OrthancException as exc:
            raise HttpError(404, f"lookup of {key}: {exc}") from exc
        for item in found:
            if item.get("Type") == "Series":
                return str(item["ID"])
        raise HttpError(404, f"no series {key} in Orthanc")

    def _series_uid(self, key: str) -> str:
        if _UID_RE.match(key):
            return key
        known = self.node.store.series_uid_of(key)
        if known:
            return known
        tags = self._orthanc_json(f"/series/{key}").get("MainDicomTags") or {}
        uid = tags.get("SeriesInstanceUID")
        if not uid:
            raise HttpError(404, f"Orthanc series {key} has no SeriesInstanceUID")
        return str(uid)

    def list_jobs(
        self,
        *,
        states: Sequence[str] = (),
        series_uid: str | None = None,
        analysis: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[dict[str, Any]]:
        """Jobs matching the filters, newest first, with their series' description."""
        where: list[str] = []
        params: list[Any] = []
        if states:
            where.append(f"j.state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if series_uid:
            where.append("j.series_instance_uid=?")
            params.append(series_uid)
        if analysis:
            where.append("j.analysis=?")
            params.append(analysis)
        sql = (
            "SELECT j.*, s.description AS series_description,"
            " s.study_instance_uid AS study_instance_uid,"
            " (SELECT orthanc_series_id FROM orthanc_intake i"
            "  WHERE i.series_instance_uid=j.series_instance_uid"
            "  ORDER BY i.id DESC LIMIT 1) AS orthanc_series_id"
            " FROM jobs j LEFT JOIN series s ON s.series_instance_uid=j.series_instance_uid"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY j.id DESC LIMIT ?"
        )
        params.append(limit)
        return [_job_row(r) for r in self.node.store.query(sql, tuple(params))]

    def job_log(self, job: Mapping[str, Any], outbox: Sequence[Mapping[str, Any]]) -> list[dict]:
        """What happened to a job, in time order: intake, routing, runs, deliveries."""
        created = float(job["created_at"])
        end = float(job.get("finished_at") or time.time())
        uid = job["series_instance_uid"]
        log: list[dict[str, Any]] = []
        intake = self.node.store.query(
            "SELECT * FROM orthanc_intake WHERE series_instance_uid=? AND created_at<=?"
            " ORDER BY id DESC LIMIT 1",
            (uid, created + 1.0),
        )
        for row in intake:
            log.append(
                {
                    "at": row["created_at"],
                    "source": "orthanc",
                    "message": f"series {row['orthanc_series_id']} handed over ({row['reason']})",
                }
            )
            if row["finished_at"]:
                log.append(
                    {"at": row["finished_at"], "source": "intake", "message": row["message"]}
                )
        for event in self.node.store.query(
            "SELECT * FROM events WHERE series_instance_uid=? AND at BETWEEN ? AND ? ORDER BY id",
            (uid, created - 1.0, end + 1.0),
        ):
            log.append({"at": event["at"], "source": event["kind"], "message": event["message"]})
        log.append({"at": created, "source": "job", "message": f"queued ({job['analysis']})"})
        if job.get("started_at"):
            log.append(
                {
                    "at": job["started_at"],
                    "source": "job",
                    "message": f"started (attempt {job['attempts']})",
                }
            )
        if job.get("finished_at"):
            text = job["state"] + (f": {job['error']}" if job.get("error") else "")
            log.append({"at": job["finished_at"], "source": "job", "message": text})
        elif job.get("error"):
            log.append({"at": end, "source": "job", "message": f"last error: {job['error']}"})
        for out in outbox:
            log.append(
                {
                    "at": out["created_at"],
                    "source": "outbox",
                    "message": f"{out['kind']} queued for {out['destination']}",
                }
            )
            if out.get("sent_at"):
                log.append(
                    {
                        "at": out["sent_at"],
                        "source": "outbox",
                        "message": f"{out['kind']} delivered to {out['destination']}"
                        f" after {out['attempts']} attempt(s)",
                    }
                )
            elif out.get("last_error"):
                log.append(
                    {
                        "at": out.get("next_attempt_at") or end,
                        "source": "outbox",
                        "message": f"{out['kind']} to {out['destination']}: {out['last_error']}"
                        f" ({out['state']}, {out['attempts']} attempt(s))",
                    }
                )
        log.sort(key=lambda item: float(item["at"] or 0.0))
        return log

    def series_view(self, key: str) -> dict[str, Any]:
        """What the node did with one series: role, state, latest job, key numbers, outputs."""
        uid = self._series_uid(key)
        orthanc_id = key if not _UID_RE.match(key) else self.node.store.orthanc_series_of(uid)
        output = self.node.store.output_row(uid)
        if output is not None:
            return {
                "role": "output",
                "series_instance_uid": uid,
                "orthanc_series_id": orthanc_id,
                "kind": output["kind"],
                "job_id": output["job_id"],
                "input_series_uid": output["input_series_uid"],
                "input_orthanc_series_id": self.node.store.orthanc_series_of(
                    output["input_series_uid"]
                ),
            }
        series = self.node.store.query(
            "SELECT state, analysis, route_reason, generation, instance_count FROM series"
            " WHERE series_instance_uid=?",
            (uid,),
        )
        intake = self.node.store.query(
            "SELECT state, reason, message, created_at, finished_at FROM orthanc_intake"
            " WHERE series_instance_uid=? OR orthanc_series_id=? ORDER BY id DESC LIMIT 1",
            (uid, orthanc_id or ""),
        )
        jobs = self.list_jobs(series_uid=uid, limit=10)
        latest = jobs[0] if jobs else None
        done = next((j for j in jobs if j["state"] == "done"), None)
        outputs = []
        if done is not None:
            outputs = [
                {
                    "kind": o["kind"],
                    "sop_instance_uid": o["sop_instance_uid"],
                    "orthanc_id": o["orthanc_id"],
                    "orthanc_series_id": o["orthanc_series_id"],
                }
                for o in self.node.store.outputs_of(uid)
                if o["job_id"] == done["id"]
            ]
        return {
            "role": "input",
            "series_instance_uid": uid,
            "orthanc_series_id": orthanc_id,
            "analysed": done is not None,
            "series": series[0] if series else None,
            "intake": intake[0] if intake else None,
            "job": latest,
            "result_job": done,
            "outputs": outputs,
        }

    # ------------------------------------------------------------------ routes

    def health(self, _req: Request) -> Response:
        """Liveness, version and queue lengths."""
        counts = self.node.catalog.counts()
        intake = self.node.store.intake_counts()
        running = self.node.running
        return json_response(
            {
                "status": "ok" if running else "stopped",
                "version": __version__,
                "started_at": self.node.started_at,
                "analyses": sorted(self.node.available),
                "destinations": [
                    {"name": d.name, "kind": str(d.kind)} for d in self.node.settings.destinations
                ],
                "queue": {
                    "intake_pending": intake.get(IntakeState.PENDING, 0),
                    "jobs_queued": counts["jobs"].get("queued", 0),
                    "jobs_running": counts["jobs"].get("running", 0),
                    "outbox_pending": counts["outbox"].get("pending", 0),
                    "outbox_failed": counts["outbox"].get("failed", 0),
                },
            }
        )

    def version(self, _req: Request) -> Response:
        """Versions of the node, its Python and its analyses (those loaded so far)."""
        analyses = {}
        for name in sorted(self.node.available):
            module = sys.modules.get(f"plugins.{name}")
            analyses[name] = getattr(module, "VERSION", None) if module else None
        return json_response(
            {
                "name": "cmr-node",
                "version": __version__,
                "python": sys.version.split()[0],
                "analyses": analyses,
            }
        )

    def jobs(self, req: Request) -> Response:
        """Jobs with filters."""
        states = [s for s in req.query.get("state", "").split(",") if s]
        unknown = sorted(set(states) - set(JOB_STATES))
        if unknown:
            raise HttpError(400, f"unknown job states {unknown}")
        series = req.query.get("series")
        uid = self._series_uid(series) if series else None
        jobs = self.list_jobs(
            states=states,
            series_uid=uid,
            analysis=req.query.get("analysis"),
            limit=_limit(req.query),
        )
        return json_response({"jobs": jobs})

    def job(self, req: Request) -> Response:
        """One job with results, deliveries and log."""
        job_id = int(req.groups[0])
        detail = job_detail(self.node.catalog, job_id)
        if detail is None:
            raise HttpError(404, f"no job {job_id}")
        detail["log"] = self.job_log(detail["job"], detail["outbox"])
        detail["timings"] = detail["job"].get("timings")
        detail["outputs"] = [
            o
            for o in self.node.store.outputs_of(detail["job"]["series_instance_uid"])
            if o["job_id"] == job_id
        ]
        detail["orthanc_series_id"] = self.node.store.orthanc_series_of(
            detail["job"]["series_instance_uid"]
        )
        return json_response(detail)

    def retry(self, req: Request) -> Response:
        """Queue a failed job again."""
        job_id = int(req.groups[0])
        job = self.node.catalog.job(job_id)
        if job is None:
            raise HttpError(404, f"no job {job_id}")
        if not self.node.catalog.retry_job(job_id):
            raise HttpError(409, f"job {job_id} is {job['state']}, not failed")
        self.node.catalog.record_event(
            "job_retry", job["series_instance_uid"], f"job {job_id} queued again by an operator"
        )
        self.node.workers.wake()
        return json_response({"retried": True, "job_id": job_id})

    def series(self, req: Request) -> Response:
        """What the node did with a series."""
        return json_response(self.series_view(req.groups[0]))

    def rerun(self, req: Request) -> Response:
        """Fetch and analyse a series again."""
        orthanc_id = self._orthanc_series_id(req.groups[0])
        intake_id = self.node.rerun(orthanc_id)
        return json_response(
            {"queued": True, "intake_id": intake_id, "orthanc_series_id": orthanc_id}
        )

    def study(self, req: Request) -> Response:
        """The series view of every series of an Orthanc study."""
        study = self._orthanc_json(f"/studies/{req.groups[0]}")
        views = []
        for series_id in study.get("Series") or []:
            try:
                views.append(self.series_view(series_id))
            except HttpError:
                continue  # deleted meanwhile
        return json_response({"orthanc_study_id": req.groups[0], "series": views})

    def dashboard(self, req: Request) -> Response:
        """Everything the dashboard page shows."""
        limit = _limit(req.query)
        store = self.node.store
        done = store.query(
            "SELECT timings, created_at, started_at, finished_at FROM jobs WHERE state='done'"
            " ORDER BY id DESC LIMIT ?",
            (TIMING_SAMPLE,),
        )
        totals, waits = [], []
        for row in done:
            timings = json.loads(row["timings"]) if row["timings"] else {}
            if isinstance(timings.get("total_s"), int | float):
                totals.append(float(timings["total_s"]))
            if row["started_at"] and row["created_at"]:
                waits.append(max(0.0, float(row["started_at"]) - float(row["created_at"])))
        counts = self.node.catalog.counts()
        intake = store.intake_counts()
        outbox_problems = store.query(
            "SELECT * FROM outbox WHERE state='failed' OR (state='pending' AND attempts>0)"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return json_response(
            {
                "version": __version__,
                "generated_at": time.time(),
                "started_at": self.node.started_at,
                "running": self.node.running,
                "queue": {
                    "intake_pending": intake.get(IntakeState.PENDING, 0),
                    "jobs_queued": counts["jobs"].get("queued", 0),
                    "jobs_running": counts["jobs"].get("running", 0),
                    "outbox_pending": counts["outbox"].get("pending", 0),
                },
                "counts": {**counts, "intake": intake},
                "processing": timing_stats(totals),
                "waiting": timing_stats(waits),
                "recent_jobs": self.list_jobs(limit=limit),
                "failures": self.list_jobs(states=["failed"], limit=limit),
                "outbox_problems": outbox_problems,
                "intake": store.intake_rows(limit),
                "events": self.node.catalog.recent_events(limit),
                "corrections": corrections_report(self.node.catalog),
            }
        )

    def ui(self, _req: Request) -> Response:
        """The dashboard page."""
        return Response(read_asset(DASHBOARD_PAGE).encode("utf-8"), "text/html; charset=utf-8")
