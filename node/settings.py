"""The node's typed settings: loaded once at start from the embedded defaults and a site file."""

from __future__ import annotations

import enum
import logging
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node.network.tls import TlsError, TlsSettings, parse_tls
from plugins.t1map.reference import parse_site_ranges

logger = logging.getLogger(__name__)

DEFAULTS_PATH = Path(__file__).with_name("defaults") / "node.toml"
CONFIG_ENV = "CMR_NODE_CONFIG"
CATALOG_URL_ENV = "CMR_NODE_CATALOG_URL"
"""Overrides ``[catalog] url`` (containers: one site file, the database from the environment)."""
AE_TITLE_MAX = 16


class SettingsError(ValueError):
    """The configuration is invalid; the message says which key and why."""


class DestinationKind(enum.StrEnum):
    """How the outbox delivers to a destination."""

    DICOM = "dicom"
    """C-STORE to a DICOM peer (the node's own sender)."""
    ORTHANC = "orthanc"
    """``POST /instances`` into the Orthanc that hosts the node as a plugin."""
    DICOMWEB = "dicomweb"
    """STOW-RS to a DICOMweb service (``url``; node.delivery.dicomweb)."""


@dataclass(frozen=True)
class Destination:
    """A peer that receives every output: a DICOM peer (PACS) by C-STORE, or the local Orthanc."""

    name: str
    ae_title: str
    host: str
    port: int
    kind: DestinationKind = DestinationKind.DICOM
    tls: bool = False
    """Reach this peer over DICOM TLS (``[tls]`` gives the certificates)."""
    server_name: str | None = None
    """Host name its TLS certificate must carry; ``host`` if None."""
    url: str | None = None
    """DICOMweb service root of a ``dicomweb`` destination."""
    username: str | None = None
    """HTTP basic user of a ``dicomweb`` destination."""
    password_env: str | None = None
    """Name of the environment variable holding that user's password."""


@dataclass(frozen=True)
class OrthancSettings:
    """How the node behaves when it runs as an Orthanc plugin (``orthanc/plugin.py``)."""

    store_results: bool = True
    """Store every output back into the Orthanc that received the series."""
    destination_name: str = "orthanc"
    """Outbox name of that local Orthanc destination."""
    intake_max_attempts: int = 5
    """Tries to fetch a stable series from Orthanc before its intake is marked failed."""


@dataclass(frozen=True)
class SenderSettings:
    """Retry policy of the outbox."""

    retry_initial_s: float = 2.0
    retry_max_s: float = 300.0
    max_attempts: int = 0
    network_timeout_s: float = 30.0


class DuplicatePolicy(enum.StrEnum):
    """What the listener does with an instance whose SOP Instance UID it already holds, when
    the content differs (an identical re-send is always answered Success)."""

    KEEP_FIRST = "keep_first"
    """Keep the stored instance; refuse the new one with 0xA900 and the reason (Orthanc's
    default, ``OverwriteInstances = false``)."""
    REPLACE = "replace"
    """Store the new one in its place (audited with both content hashes)."""


class WarmUp(enum.StrEnum):
    """What a process that runs analysis workers does with its analyses at start
    (node.jobs.warmup)."""

    REHEARSE = "rehearse"
    """Load them, then analyse one synthetic series of each analysis that has one (the first
    real series is then as fast as the next ones)."""
    LOAD = "load"
    """Load their modules and weights only (the first real series pays its writers' imports
    and the first inference)."""
    OFF = "off"
    """Nothing at start: the first job of each analysis loads it."""


MAX_RECEIVER_PROCESSES = 64
"""Upper bound of ``[listener] processes``."""


@dataclass(frozen=True)
class ListenerSettings:
    """How the DICOM listener admits associations and treats re-sent instances."""

    require_called_aet: bool = True
    """Refuse associations whose called AE title is not the node's ``ae_title``."""
    max_associations: int = 16
    """Associations served at once."""
    request_timeout_s: float = 5.0
    """A connection that sent nothing (no A-ASSOCIATE-RQ) for this long is closed; until it
    speaks it takes no association slot."""
    max_waiting_per_address: int = 8
    """Connections of one address waiting to speak; a newer one closes the oldest."""
    max_associations_per_address: int = 12
    """Associations one address may hold at once; one more is rejected (A-ASSOCIATE-RJ,
    transient, local limit exceeded), so one peer cannot take every slot."""
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    """A second instance with a stored SOP Instance UID but other content."""
    processes: int = 1
    """Receiver processes accepting on the DICOM port (node.receive.receivers); 1: the listener runs
    in the node's own process."""


@dataclass(frozen=True)
class HttpSettings:
    """Who may call the status endpoint (node.status.report) besides the token."""

    allowed_hosts: tuple[str, ...] = ()
    """Host names the endpoint answers to besides loopback names and ``http_host``
    (a request naming another host is refused: DNS rebinding)."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins (``https://viewer.example.org``) whose requests are accepted; a
    request from any other origin is refused (cross-site request forgery)."""


@dataclass(frozen=True)
class Settings:
    """Everything the node needs to run, resolved to absolute paths."""

    data_dir: Path
    ae_title: str = "CMRNODE"
    listen_host: str = "127.0.0.1"
    listen_port: int = 11112
    allowed_calling_aets: tuple[str, ...] = ()
    stable_age_s: float = 30.0
    release_grace_s: float = 1.0
    """Seconds after an association's release (A-RELEASE) at which the series it carried are
    complete (0: releases are not used; node.completion.tracker). A scanner that sends one image per
    association opens the next one right after releasing the previous, well within it; one
    that pauses longer only costs a re-analysis (the late instance re-opens the series)."""
    count_grace_s: float = 2.0
    """Seconds without a further instance after a series' announced count (ImagesInAcquisition)
    arrived at which it is complete, unless its association is released first (then at once).
    The count is one acquisition's: an instance within the grace shows that the series holds
    several (node.completion.tracker)."""
    min_free_disk_mb: int = 200
    worker_count: int = 1
    max_job_attempts: int = 3
    http_host: str = "127.0.0.1"
    http_port: int = 8089
    http_token_env: str | None = None
    """Environment variable holding the status endpoint's bearer token (node.status.report)."""
    rules_file: Path | None = None
    log_level: str = "INFO"
    log_uids: str = "plain"
    """``"plain"`` or ``"hashed"``: DICOM UIDs in the ordinary log (node.catalog.audit)."""
    values_in_reasons: bool = False
    """Debug: keep quoted header values (free text) in the routing reasons, job errors and
    events the catalog and status show (withheld by default, as in the logs)."""
    sender: SenderSettings = field(default_factory=SenderSettings)
    listener: ListenerSettings = field(default_factory=ListenerSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    destinations: tuple[Destination, ...] = ()
    manufacturer: str = "cmr-node project"
    institution_name: str | None = None
    analysis_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    orthanc: OrthancSettings = field(default_factory=OrthancSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    covariates_dir: Path | None = None
    """Sidecar folder of per-study LVRR covariates; None: ``data_dir/covariates``."""
    catalog_url: str | None = None
    """``postgresql://`` URL of a catalog shared with other processes; None: SQLite file."""
    worker_name: str = field(default_factory=socket.gethostname)
    """This process's name among the workers of one catalog (``host/name`` in the jobs)."""
    job_lease_s: float = 60.0
    """A running job whose worker sent no heartbeat for this long is queued again."""
    warm_up: WarmUp = WarmUp.REHEARSE
    """What a process with analysis workers does with its analyses at start."""
    probability_seg: bool = False
    """Also send a FRACTIONAL SEG of the network's per-pixel probabilities (``[outputs]``)."""
    uncertainty_map: bool = False
    """Also send a Parametric Map of the network's per-pixel uncertainty (``[outputs]``)."""

    @property
    def spool_dir(self) -> Path:
        """Where received instances are stored."""
        return self.data_dir / "spool"

    @property
    def results_dir(self) -> Path:
        """Where outputs of analyses are written before sending."""
        return self.data_dir / "results"

    @property
    def covariates_folder(self) -> Path:
        """Where per-study covariates for the LVRR models are found (``<StudyUID>.json``)."""
        return self.covariates_dir if self.covariates_dir is not None else (
            self.data_dir / "covariates"
        )

    @property
    def catalog_path(self) -> Path:
        """The SQLite catalog of instances, series, jobs and outbox."""
        return self.data_dir / "catalog.sqlite3"

    @property
    def catalog_location(self) -> Path | str:
        """Where the catalog is: the PostgreSQL URL if configured, else the SQLite file."""
        return self.catalog_url or self.catalog_path

    def enabled_analyses(self) -> frozenset[str]:
        """Names of analyses the site has not disabled."""
        return frozenset(
            name for name, opts in self.analysis_options.items() if opts.get("enabled", True)
        )

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (command-line options)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _ae_title(value: Any, key: str) -> str:
    title = str(value).strip()
    if not title or len(title) > AE_TITLE_MAX or "\\" in title:
        raise SettingsError(f"{key}: AE title must be 1-16 characters without backslash: {value!r}")
    return title


def _port(value: Any, key: str, *, allow_zero: bool = False) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{key}: not a port number: {value!r}") from exc
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise SettingsError(f"{key}: port out of range: {port}")
    return port


def _orthanc_settings(raw: Mapping[str, Any], destination_names: list[str]) -> OrthancSettings:
    name = str(raw.get("destination_name", "orthanc")).strip()
    if not name:
        raise SettingsError("orthanc.destination_name must not be empty")
    if name in destination_names:
        raise SettingsError(
            f"orthanc.destination_name {name!r} is also the name of a [[destination]]"
        )
    attempts = int(raw.get("intake_max_attempts", 5))
    if attempts < 1:
        raise SettingsError("orthanc.intake_max_attempts must be at least 1")
    return OrthancSettings(
        store_results=bool(raw.get("store_results", True)),
        destination_name=name,
        intake_max_attempts=attempts,
    )


def _dicomweb_destination(item: Mapping[str, Any], key: str, index: int) -> Destination:
    url = str(item.get("url") or "").strip()
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(f"{key}.url must be an http(s) DICOMweb service root, not {url!r}")
    return Destination(
        name=str(item.get("name") or f"destination-{index}"),
        ae_title=str(item.get("ae_title") or "DICOMWEB"),
        host=parsed.hostname,
        port=parsed.port or (443 if parsed.scheme == "https" else 80),
        kind=DestinationKind.DICOMWEB,
        url=url.rstrip("/"),
        username=str(item["username"]) if item.get("username") else None,
        password_env=str(item["password_env"]) if item.get("password_env") else None,
    )


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _http_token_env(node: Mapping[str, Any]) -> str | None:
    name = str(node.get("http_token_env", "") or "").strip() or None
    host = str(node.get("http_host", "127.0.0.1"))
    port = int(node.get("http_port", 8089) or 0)
    if port and host not in LOOPBACK_HOSTS and name is None:
        raise SettingsError(
            f"node.http_host = {host!r} exposes the status endpoint beyond this machine: set "
            "node.http_token_env to the environment variable holding its bearer token"
        )
    return name


def http_token(settings: Settings) -> str | None:
    """The status endpoint's token from the environment, if one is configured.

    Raises
    ------
    SettingsError
        If the configured variable is unset or empty (the endpoint would be open).
    """
    if settings.http_token_env is None:
        return None
    value = os.environ.get(settings.http_token_env, "")
    if len(value) < MIN_TOKEN_LENGTH:
        raise SettingsError(
            f"environment variable {settings.http_token_env} must hold the status endpoint's "
            f"token (at least {MIN_TOKEN_LENGTH} characters)"
        )
    return value


MIN_TOKEN_LENGTH = 16
"""Shortest bearer token accepted (guessable tokens protect nothing)."""


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{key}: expected true or false, got {value!r}")
    return value


def _choice(value: Any, allowed: tuple[str, ...], key: str) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise SettingsError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")
    return text


def _tls_settings(raw: Mapping[str, Any], path: Callable[[str], Path]) -> TlsSettings:
    try:
        return parse_tls(raw, path)
    except TlsError as exc:
        raise SettingsError(str(exc)) from exc


def settings_from_mapping(raw: Mapping[str, Any], base_dir: Path) -> Settings:
    """Build validated settings from a parsed configuration (defaults already merged)."""
    node = dict(raw.get("node", {}))
    sender = dict(raw.get("sender", {}))
    writer = dict(raw.get("writer", {}))
    orthanc = dict(raw.get("orthanc", {}))
    listener = dict(raw.get("listener", {}))
    http = dict(raw.get("http", {}))
    outputs = dict(raw.get("outputs", {}))

    def path(value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (base_dir / p).resolve()

    destinations = []
    for i, item in enumerate(raw.get("destination", [])):
        key = f"destination[{i}]"
        if str(item.get("kind", DestinationKind.DICOM)) == DestinationKind.DICOMWEB:
            destinations.append(_dicomweb_destination(item, key, i))
            continue
        try:
            destinations.append(
                Destination(
                    name=str(item.get("name") or f"destination-{i}"),
                    ae_title=_ae_title(item["ae_title"], f"{key}.ae_title"),
                    host=str(item["host"]),
                    port=_port(item["port"], f"{key}.port"),
                    tls=bool(item.get("tls", False)),
                    server_name=str(item["server_name"]) if item.get("server_name") else None,
                )
            )
        except KeyError as exc:
            raise SettingsError(f"{key}: missing key {exc.args[0]!r}") from exc
    names = [d.name for d in destinations]
    if len(set(names)) != len(names):
        raise SettingsError(f"destination names must be unique: {names}")

    stable_age = float(node.get("stable_age_s", 30.0))
    if stable_age <= 0:
        raise SettingsError("node.stable_age_s must be positive")
    release_grace = float(node.get("release_grace_s", 1.0))
    if release_grace < 0:
        raise SettingsError("node.release_grace_s must be 0 or more")
    count_grace = float(node.get("count_grace_s", 2.0))
    if count_grace < 0:
        raise SettingsError("node.count_grace_s must be 0 or more")
    workers = int(node.get("worker_count", 1))
    if workers < 0:
        raise SettingsError("node.worker_count must be 0 or more")
    catalog = dict(raw.get("catalog", {}))
    lease = float(catalog.get("job_lease_s", 60.0))
    if lease < 5:
        raise SettingsError("catalog.job_lease_s must be at least 5 seconds")
    rules = str(node.get("rules_file", "") or "")
    return Settings(
        data_dir=path(str(node.get("data_dir", "./cmr-data"))),
        ae_title=_ae_title(node.get("ae_title", "CMRNODE"), "node.ae_title"),
        listen_host=str(node.get("listen_host", "127.0.0.1")),
        listen_port=_port(node.get("listen_port", 11112), "node.listen_port", allow_zero=True),
        allowed_calling_aets=tuple(
            _ae_title(a, "node.allowed_calling_aets") for a in node.get("allowed_calling_aets", [])
        ),
        stable_age_s=stable_age,
        release_grace_s=release_grace,
        count_grace_s=count_grace,
        min_free_disk_mb=int(node.get("min_free_disk_mb", 200)),
        worker_count=workers,
        max_job_attempts=max(1, int(node.get("max_job_attempts", 3))),
        http_host=str(node.get("http_host", "127.0.0.1")),
        http_port=_port(node.get("http_port", 8089), "node.http_port", allow_zero=True),
        http_token_env=_http_token_env(node),
        rules_file=path(rules) if rules else None,
        log_level=str(node.get("log_level", "INFO")).upper(),
        log_uids=_choice(node.get("log_uids", "plain"), ("plain", "hashed"), "node.log_uids"),
        values_in_reasons=bool(node.get("values_in_reasons", False)),
        sender=SenderSettings(
            retry_initial_s=float(sender.get("retry_initial_s", 2.0)),
            retry_max_s=float(sender.get("retry_max_s", 300.0)),
            max_attempts=int(sender.get("max_attempts", 0)),
            network_timeout_s=float(sender.get("network_timeout_s", 30.0)),
        ),
        listener=_listener_settings(listener),
        http=HttpSettings(
            allowed_hosts=tuple(str(h).strip().lower() for h in http.get("allowed_hosts", [])),
            allowed_origins=tuple(
                str(o).strip().rstrip("/").lower() for o in http.get("allowed_origins", [])
            ),
        ),
        destinations=tuple(destinations),
        manufacturer=str(writer.get("manufacturer", "cmr-node project")),
        institution_name=str(writer.get("institution_name") or "") or None,
        probability_seg=_flag(outputs.get("probability_seg", False), "outputs.probability_seg"),
        uncertainty_map=_flag(outputs.get("uncertainty_map", False), "outputs.uncertainty_map"),
        analysis_options=_analysis_options(dict(raw.get("analysis", {})), path),
        orthanc=_orthanc_settings(orthanc, names),
        tls=_tls_settings(dict(raw.get("tls", {})), path),
        covariates_dir=(
            path(str(node["covariates_dir"])) if node.get("covariates_dir") else None
        ),
        catalog_url=_catalog_url(catalog.get("url", "")),
        worker_name=_worker_name(node.get("worker_name", "")),
        job_lease_s=lease,
        warm_up=WarmUp(_choice(node.get("warm_up", WarmUp.REHEARSE),
                               tuple(w.value for w in WarmUp), "node.warm_up")),
    )


def _analysis_options(
    raw: Mapping[str, Any], path: Callable[[str], Path]
) -> dict[str, dict[str, Any]]:
    """``[analysis.<name>]`` tables; the T1 reference ranges and the LGE segmenter (and its
    site weights) are checked here, at load time."""
    options = {name: dict(table) for name, table in raw.items()}
    if "lge" in options:
        _lge_segmenter(options["lge"], path)
    for name in ("t1map", "ecv"):
        ranges = options.get(name, {}).get("normal_ranges")
        if ranges is None:
            continue
        if not isinstance(ranges, Mapping):
            raise SettingsError(f"analysis.{name}.normal_ranges must be a table of ranges")
        try:
            parse_site_ranges(ranges)
        except ValueError as exc:
            raise SettingsError(f"analysis.{name}.{exc}") from exc
    return options


LGE_SEGMENTERS = ("cascade", "unet", "two-stage")
"""``[analysis.lge] segmenter``: the cascade (default: the one-stage U-Net for stacks it is
sure of, else the two-stage segmenter), the one-stage U-Net or the two-stage one alone."""


def _lge_segmenter(table: dict[str, Any], path: Callable[[str], Path]) -> None:
    """Check ``segmenter`` and ``segmenter_weights`` (site weights: file present, SHA-256 as
    in its provenance record); the weights path is stored resolved."""
    if "segmenter" in table:
        table["segmenter"] = _choice(table["segmenter"], LGE_SEGMENTERS,
                                     "analysis.lge.segmenter")
    weights = str(table.pop("segmenter_weights", "") or "")
    if not weights:
        return
    if table.get("segmenter", "cascade") not in ("two-stage", "cascade"):
        raise SettingsError('analysis.lge.segmenter_weights needs segmenter = "two-stage" or '
                            '"cascade" (site weights fine-tune the two-stage segmenter)')
    from models.runtime.lgeseg.site_weights import verify_weights
    from models.runtime.segmentation import ModelUnavailableError

    resolved = path(weights)
    try:
        verify_weights(resolved)
    except ModelUnavailableError as exc:
        raise SettingsError(f"analysis.lge.segmenter_weights: {exc}") from exc
    table["segmenter_weights"] = str(resolved)


def _listener_settings(raw: Mapping[str, Any]) -> ListenerSettings:
    max_associations = int(raw.get("max_associations", 16))
    timeout = float(raw.get("request_timeout_s", 5.0))
    per_address = int(raw.get("max_waiting_per_address", 8))
    processes = int(raw.get("processes", 1))
    if max_associations < 1 or per_address < 1:
        raise SettingsError("listener.max_associations and max_waiting_per_address must be >= 1")
    if not 1 <= processes <= MAX_RECEIVER_PROCESSES:
        raise SettingsError(f"listener.processes must be in [1, {MAX_RECEIVER_PROCESSES}]")
    associations_per_address = int(raw.get("max_associations_per_address", 12))
    if associations_per_address < 1:
        raise SettingsError("listener.max_associations_per_address must be >= 1")
    if not 0 < timeout <= 300:
        raise SettingsError("listener.request_timeout_s must be in (0, 300] seconds")
    policy = _choice(
        raw.get("duplicate_policy", DuplicatePolicy.KEEP_FIRST),
        tuple(p.value for p in DuplicatePolicy),
        "listener.duplicate_policy",
    )
    return ListenerSettings(
        require_called_aet=bool(raw.get("require_called_aet", True)),
        max_associations=max_associations,
        request_timeout_s=timeout,
        max_waiting_per_address=per_address,
        max_associations_per_address=associations_per_address,
        duplicate_policy=DuplicatePolicy(policy),
        processes=processes,
    )


def _catalog_url(value: Any) -> str | None:
    url = str(value or "").strip()
    if not url:
        return None
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            f"catalog.url must be a postgresql:// URL (or empty for SQLite), not {url!r}"
        )
    if urlsplit(url).password:
        raise SettingsError(
            "catalog.url must not carry a password: use PGPASSWORD or ~/.pgpass (libpq)"
        )
    return url


def _worker_name(value: Any) -> str:
    name = str(value or "").strip() or socket.gethostname()
    if "#" in name:
        raise SettingsError(f"node.worker_name must not contain '#': {name!r}")
    return name


def load_settings(path: Path | None = None) -> Settings:
    """Load the embedded defaults, then the site file (argument or ``CMR_NODE_CONFIG``).

    Parameters
    ----------
    path
        Site configuration (TOML). Relative paths inside it resolve against its folder;
        without a site file they resolve against the current directory.

    Raises
    ------
    SettingsError
        When the file cannot be read or a value is invalid.
    """
    with DEFAULTS_PATH.open("rb") as fh:
        raw: dict[str, Any] = tomllib.load(fh)
    base_dir = Path.cwd()
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    if path is not None:
        try:
            with path.open("rb") as fh:
                site = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read configuration {path}: {exc}") from exc
        raw = _merge(raw, site)
        base_dir = path.resolve().parent
        logger.info("configuration loaded from %s", path)
    if os.environ.get(CATALOG_URL_ENV):
        raw = _merge(raw, {"catalog": {"url": os.environ[CATALOG_URL_ENV]}})
    return settings_from_mapping(raw, base_dir)
