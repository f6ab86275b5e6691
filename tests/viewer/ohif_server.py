"""Serve the prebuilt OHIF viewer with a same-origin proxy to Orthanc's DICOMweb.

OHIF is a static single-page app.  This server

* serves its ``dist/`` folder at ``/``, answering ``index.html`` for paths that are no file
  (the app's own routes such as ``/viewer``);
* answers ``/app-config.js`` with a configuration whose only data source is DICOMweb at the
  page's own origin (``<origin>/dicom-web``);
* forwards ``/dicom-web`` and ``/wado`` to Orthanc, keeping the browser's ``Host`` header so
  the bulk-data addresses Orthanc writes into its answers point back at this server;
* adds ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy:
  require-corp`` to every answer, which OHIF's decoders need for ``SharedArrayBuffer``.

Run by hand to look at a study::

    python -m tests.viewer.ohif_server --dist build/viewer/ohif \\
        --orthanc http://127.0.0.1:8042 --port 3000
"""

from __future__ import annotations

import argparse
import http.client
import logging
import posixpath
import sys
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

logger = logging.getLogger(__name__)

PROXIED_PREFIXES = ("/dicom-web", "/wado")
"""Paths forwarded to Orthanc (its DICOMweb root and its WADO-URI root)."""

APP_CONFIG_PATH = "/app-config.js"

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Headers added to every answer (cross-origin isolation for ``SharedArrayBuffer``)."""

HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
"""Headers that are not forwarded (the length is set again from the body read)."""

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

UPSTREAM_TIMEOUT_S = 60.0
SHUTDOWN_POLL_S = 0.05

APP_CONFIG_TEMPLATE = """\
/* Written by cmr-node's viewer test server: one DICOMweb data source at this origin. */
window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  showErrorDetails: 'always',
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'Orthanc (cmr-node test)',
        name: 'orthanc',
        wadoUriRoot: window.location.origin + '/wado',
        qidoRoot: window.location.origin + '/dicom-web',
        wadoRoot: window.location.origin + '/dicom-web',
        qidoSupportsIncludeField: false,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""


class OhifRequestHandler(BaseHTTPRequestHandler):
    """Static files of OHIF, its generated configuration, and the proxy to Orthanc."""

    protocol_version = "HTTP/1.1"
    server: OhifHttpServer

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    # -- dispatch ------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def do_POST(self) -> None:
        if self._is_proxied():
            self._proxy(send_body=True)
        else:
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED, b"", "text/plain", send_body=True)

    def _dispatch(self, *, send_body: bool) -> None:
        if self._is_proxied():
            self._proxy(send_body=send_body)
        elif self._path() == APP_CONFIG_PATH:
            self._answer(
                HTTPStatus.OK,
                self.server.app_config.encode(),
                CONTENT_TYPES[".js"],
                send_body=send_body,
            )
        else:
            self._static(send_body=send_body)

    def _path(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    def _is_proxied(self) -> bool:
        path = self._path()
        return any(path == p or path.startswith(p + "/") for p in PROXIED_PREFIXES)

    # -- answers -------------------------------------------------------------------------

    def _answer(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        send_body: bool,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _static(self, *, send_body: bool) -> None:
        root = self.server.dist
        relative = posixpath.normpath(urllib.parse.unquote(self._path())).lstrip("/")
        candidate = (root / relative).resolve() if relative not in ("", ".") else root
        if not candidate.is_relative_to(root) or not candidate.is_file():
            candidate = root / "index.html"
        content_type = CONTENT_TYPES.get(candidate.suffix.lower(), DEFAULT_CONTENT_TYPE)
        cache = "no-cache" if candidate.suffix == ".html" else "max-age=3600"
        self._answer(
            HTTPStatus.OK,
            candidate.read_bytes(),
            content_type,
            send_body=send_body,
            headers=[("Cache-Control", cache)],
        )

    def _proxy(self, *, send_body: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request_body = self.rfile.read(length) if length else None
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP_HEADERS
        }
        upstream = http.client.HTTPConnection(
            self.server.orthanc_host, self.server.orthanc_port, timeout=UPSTREAM_TIMEOUT_S
        )
        try:
            upstream.request(self.command, self.path, body=request_body, headers=headers)
            response = upstream.getresponse()
            body = response.read()
        except OSError as exc:
            logger.warning("Orthanc did not answer %s %s: %s", self.command, self.path, exc)
            self._answer(
                HTTPStatus.BAD_GATEWAY,
                f"Orthanc did not answer: {exc}".encode(),
                "text/plain; charset=utf-8",
                send_body=send_body,
            )
            return
        finally:
            upstream.close()
        if response.status >= HTTPStatus.BAD_REQUEST:
            logger.info("Orthanc answered %d to %s %s", response.status, self.command, self.path)
        passed = [
            (name, value)
            for name, value in response.getheaders()
            if name.lower() not in HOP_BY_HOP_HEADERS and name.lower() != "content-type"
        ]
        self._answer(
            response.status,
            body,
            response.getheader("Content-Type", DEFAULT_CONTENT_TYPE),
            send_body=send_body and self.command != "HEAD",
            headers=passed,
        )


class OhifHttpServer(ThreadingHTTPServer):
    """The HTTP server; holds the OHIF folder, the configuration and Orthanc's address."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], dist: Path, orthanc_host: str, orthanc_port: int
    ) -> None:
        super().__init__(address, OhifRequestHandler)
        self.dist = dist.resolve()
        self.orthanc_host = orthanc_host
        self.orthanc_port = orthanc_port
        self.app_config = APP_CONFIG_TEMPLATE


class OhifServerError(RuntimeError):
    """The viewer cannot be served (no OHIF build, bad Orthanc address)."""


@dataclass
class OhifServer:
    """OHIF and the proxy to Orthanc, served from a background thread.

    Parameters
    ----------
    dist
        OHIF's prebuilt ``dist/`` folder (holding ``index.html``).
    orthanc_url
        Base address of Orthanc's HTTP server, e.g. ``http://127.0.0.1:8042``.
    host, port
        Address to listen on; port 0 picks a free one.
    """

    dist: Path
    orthanc_url: str
    host: str = "127.0.0.1"
    port: int = 0
    _server: OhifHttpServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """Base address of the viewer (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> OhifServer:
        """Start serving; return ``self``."""
        if not (self.dist / "index.html").is_file():
            raise OhifServerError(f"No OHIF build in {self.dist} (index.html is missing).")
        upstream = urllib.parse.urlsplit(self.orthanc_url)
        if upstream.scheme != "http" or upstream.hostname is None:
            raise OhifServerError(f"Orthanc address {self.orthanc_url!r} is not http://host:port")
        self._server = OhifHttpServer(
            (self.host, self.port), self.dist, upstream.hostname, upstream.port or 80
        )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="ohif-server",
            daemon=True,
        )
        self._thread.start()
        logger.info(
            "Serving OHIF from %s at %s (Orthanc %s)", self.dist, self.url, self.orthanc_url
        )
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> OhifServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve OHIF until interrupted; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.viewer.ohif_server",
        description="Serve OHIF with a same-origin proxy to Orthanc's DICOMweb.",
    )
    parser.add_argument("--dist", type=Path, default=Path("build/viewer/ohif"),
                        help="OHIF dist folder (default build/viewer/ohif)")
    parser.add_argument("--orthanc", default="http://127.0.0.1:8042",
                        help="Orthanc base address (default http://127.0.0.1:8042)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    server = OhifServer(args.dist, args.orthanc, args.host, args.port)
    try:
        server.start()
    except (OhifServerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"OHIF at {server.url}/ (Ctrl-C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
