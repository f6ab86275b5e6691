"""Container health check: exit 0 when a cmr-node health route answers ``"status": "ok"``.

``python deploy/compose/healthcheck.py http://127.0.0.1:8089/healthz`` checks the node's status
endpoint; ``.../cmr-node/health`` checks the node inside Orthanc. HTTP basic credentials, when
Orthanc requires them, come from the environment variable named by ``--auth-env``
(``NAME:PASSWORD``), never from the command line. Only the standard library is used, so the
check costs a Python start and one request.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

HEALTHY_STATUS = "ok"
"""Value of the ``status`` key of a healthy answer (``/healthz`` and ``/cmr-node/health``)."""
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
"""Docker treats exit status 1 as unhealthy (other values are reserved)."""


class HealthCheckError(RuntimeError):
    """The endpoint did not answer healthy; the message says why."""


def check(url: str, timeout_s: float = 5.0, credentials: str | None = None) -> dict[str, object]:
    """Fetch ``url`` and return its JSON answer when it says ``"status": "ok"``.

    Parameters
    ----------
    url
        Health route of the node or of Orthanc's plugin.
    timeout_s
        Seconds to wait for the answer.
    credentials
        ``NAME:PASSWORD`` for HTTP basic authentication, or None.

    Raises
    ------
    HealthCheckError
        When the request fails, the status is not 200, the body is not a JSON object or its
        ``status`` is not ``ok``.
    """
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if credentials:
        token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise HealthCheckError(f"{url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise HealthCheckError(f"{url} cannot be reached: {exc}") from exc
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HealthCheckError(f"{url} did not answer JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise HealthCheckError(f"{url} answered {type(payload).__name__}, not a JSON object")
    if payload.get("status") != HEALTHY_STATUS:
        raise HealthCheckError(f"{url} says status {payload.get('status')!r}")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; print one line and exit 0 (healthy) or 1 (unhealthy)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="health route, e.g. http://127.0.0.1:8089/healthz")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument(
        "--auth-env", metavar="VAR", help="environment variable holding NAME:PASSWORD"
    )
    args = parser.parse_args(argv)
    credentials = os.environ.get(args.auth_env) if args.auth_env else None
    try:
        payload = check(args.url, args.timeout, credentials)
    except HealthCheckError as exc:
        print(f"unhealthy: {exc}")
        return EXIT_UNHEALTHY
    print(f"healthy: version {payload.get('version', '?')}")
    return EXIT_HEALTHY


if __name__ == "__main__":
    sys.exit(main())
