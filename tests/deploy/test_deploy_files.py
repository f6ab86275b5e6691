"""The deployment files (deploy/) are valid and agree with the node they deploy.

systemd units: always parsed as INI and checked for the keys the deployment relies on; when
``systemd-analyze`` is installed they must also pass ``systemd-analyze verify`` without a
warning (after ``install.sh`` rendered them for this checkout, so that the executables exist).
``install.sh``: ``bash -n``, shellcheck when installed, and a real run into a scratch root.
YAML (compose, Kubernetes): parsed with PyYAML. Site files (the example and the ConfigMap's):
loaded with :mod:`node.settings`, and every key checked against the keys the node reads.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

from node import __version__
from node.catalog.catalog import Catalog
from node.cli import main as cli
from node.orthanc import launch as orthanc_launch
from node.settings import DEFAULTS_PATH, Settings, load_settings
from node.status.report import StatusServer
from plugins import PLUGIN_NAMES
from plugins.lge import LgeContrast
from plugins.lge.quantify import N_SD_RANGE
from plugins.t1map.reference import parse_site_ranges

yaml = pytest.importorskip("yaml", reason="PyYAML parses the compose and Kubernetes files")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
EXAMPLE_SITE = DEPLOY / "examples" / "site.toml"
INSTALL_SH = SYSTEMD / "install.sh"
UNITS = ("cmr-node.service", "cmr-node-orthanc.service", "cmr-node-worker@.service")
PREFIX_IN_FILES = "/opt/cmr-node"
"""Where the units, the image and the compose file expect the checkout."""
SITE_IN_FILES = "/etc/cmr-node/site.toml"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SHELLCHECK = shutil.which("shellcheck")
VENV_CLI = REPO / ".venv" / "bin" / "cmr-node"


# ------------------------------------------------------------------------------ helpers


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values in order]}} (keys may repeat; a line ending
    in a backslash continues on the next)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(re.sub(r"\\\n", " ", text).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {number} outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"line {number} is not KEY=VALUE: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: Mapping[str, Mapping[str, list[str]]], section: str, key: str) -> str:
    """The single value of ``key`` in ``section``."""
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing"
    assert len(values) == 1, f"[{section}] {key}= is given {len(values)} times"
    return values[0]


def in_repo(path: str) -> Path:
    """The checkout file that ``/opt/cmr-node/...`` names in a deployment file."""
    assert path.startswith(PREFIX_IN_FILES + "/"), f"{path} is not under {PREFIX_IN_FILES}"
    return REPO / path[len(PREFIX_IN_FILES) + 1 :]


def run_install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL_SH), *args], capture_output=True, text=True, timeout=60, check=False
    )


def keys_read(pattern: str, folders: tuple[str, ...] = ("node", "plugins")) -> set[str]:
    """String keys the node's code reads with a given access pattern (regex, one group)."""
    found: set[str] = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            found.update(re.findall(pattern, path.read_text()))
    return found


def analysis_option_keys(analysis: str) -> set[str]:
    """The options of one analysis that the node or its plugin package read
    (``options.get("x"...)``, ``options["x"]``, ``opts.get("x"...)``)."""
    return keys_read(
        r"""\b(?:options|opts)(?:\.get\(|\[)\s*["']([a-z_0-9]+)["']""",
        ("node", f"plugins/{analysis}"),
    )


def check_site_keys(raw: Mapping[str, Any], where: str) -> None:
    """Every key of a site file is one the node reads."""
    with DEFAULTS_PATH.open("rb") as fh:
        defaults = tomllib.load(fh)
    settings_source = (REPO / "node" / "settings.py").read_text()
    sections = set(re.findall(r"""raw\.get\(["']([a-z_]+)["']""", settings_source))
    assert {"node", "destination", "analysis"} <= sections, "settings.py reads other sections"
    unknown = set(raw) - sections
    assert not unknown, f"{where}: sections the node does not read: {sorted(unknown)}"
    for section in ("node", "sender", "writer", "orthanc"):
        unknown = set(raw.get(section, {})) - set(defaults[section])
        assert not unknown, f"{where}: [{section}] keys not in node.toml: {sorted(unknown)}"
    destination_keys = set(re.findall(r"""item(?:\.get\(|\[)["']([a-z_]+)["']""", settings_source))
    for i, item in enumerate(raw.get("destination", [])):
        unknown = set(item) - destination_keys
        assert not unknown, f"{where}: destination[{i}] keys the node ignores: {sorted(unknown)}"
    for name, options in raw.get("analysis", {}).items():
        assert name in PLUGIN_NAMES, f"{where}: no analysis named {name!r}"
        option_keys = analysis_option_keys(name)
        assert "enabled" in option_keys, "the option scan no longer finds settings.py's reads"
        unknown = set(options) - option_keys
        assert not unknown, f"{where}: [analysis.{name}] options never read: {sorted(unknown)}"


def check_analysis_options(settings: Settings) -> None:
    """Values of the analysis options are ones the plugins accept."""
    t1map = settings.analysis_options.get("t1map", {})
    if "normal_ranges" in t1map:
        for reference in parse_site_ranges(t1map["normal_ranges"]):
            assert reference.sd_ms > 0 and reference.vendor != "unknown"
    lge = settings.analysis_options.get("lge", {})
    if "n_sd" in lge:
        assert N_SD_RANGE[0] <= float(lge["n_sd"]) <= N_SD_RANGE[1]
    if "prefer" in lge:
        LgeContrast(str(lge["prefer"]).lower())
    if "partner_wait_s" in lge:
        assert float(lge["partner_wait_s"]) >= 0


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in k8s_documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def configmap_site(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The ConfigMap's site.toml, written to a file, and its parsed content."""
    text = k8s_object("ConfigMap", "cmr-node-site")["data"]["site.toml"]
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path, tomllib.loads(text)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return data


def expand_compose(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?message}`` with VAR unset (tests only)."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "secret", value)


def compose_mounts(volumes: list[str]) -> dict[str, str]:
    """Short-syntax compose volumes as {container path: source}."""
    mounts = {}
    for volume in volumes:
        source, target, *_mode = expand_compose(volume).split(":")
        mounts[target] = source
    return mounts


def search(pattern: str, text: str) -> re.Match[str]:
    """The first match of ``pattern`` (multi-line) in ``text``; fails the test when none."""
    found = re.search(pattern, text, re.M)
    assert found is not None, f"{pattern!r} not found"
    return found


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", COMPOSE / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ systemd


@pytest.fixture(scope="module")
def installed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """install.sh run into a scratch root with this checkout as prefix."""
    root = tmp_path_factory.mktemp("root")
    result = run_install("--root", str(root), "--prefix", str(REPO))
    assert result.returncode == 0, result.stderr + result.stdout
    return root


def test_install_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(INSTALL_SH)], check=True, timeout=30)


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
def test_install_script_passes_shellcheck() -> None:
    result = subprocess.run(
        [str(SHELLCHECK), "--severity=style", str(INSTALL_SH)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout


def test_install_renders_units_and_site_and_is_idempotent(installed_root: Path) -> None:
    unit_dir = installed_root / "etc" / "systemd" / "system"
    for name in UNITS:
        text = (unit_dir / name).read_text()
        assert PREFIX_IN_FILES + "/" not in text and f"{REPO}/" in text
        assert text == (SYSTEMD / name).read_text().replace(PREFIX_IN_FILES, str(REPO))
    site = installed_root / "etc" / "cmr-node" / "site.toml"
    assert site.read_text() == EXAMPLE_SITE.read_text()
    for folder in ("var/lib/cmr-node", "var/lib/cmr-node-orthanc"):
        assert (installed_root / folder).is_dir()
    site.write_text(site.read_text() + "\n# edited by the site\n")
    before = {p: (p.read_text(), p.stat().st_mtime_ns) for p in installed_root.rglob("*")
              if p.is_file()}
    again = run_install("--root", str(installed_root), "--prefix", str(REPO))
    assert again.returncode == 0, again.stderr
    assert "keeping existing" in again.stdout and "up to date" in again.stdout
    after = {p: (p.read_text(), p.stat().st_mtime_ns) for p in installed_root.rglob("*")
             if p.is_file()}
    assert after == before


def test_install_dry_run_changes_nothing(tmp_path: Path) -> None:
    result = run_install("--dry-run", "--root", str(tmp_path), "--prefix", str(REPO))
    assert result.returncode == 0, result.stderr
    assert "would write" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_install_refuses_bad_arguments(tmp_path: Path) -> None:
    assert run_install("--root", str(tmp_path), "--start", "node").returncode == 2
    assert run_install("--root", str(tmp_path), "--enable", "nothing").returncode == 2
    assert run_install("--root", str(tmp_path), "--prefix", "relative/path").returncode == 2
    assert run_install("--root", str(tmp_path), "--prefix", "/opt/a&b").returncode == 2
    assert run_install("--root", str(tmp_path), "--config", str(tmp_path / "no.toml")).returncode \
        == 2


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed: "
                    "units are only parsed as INI (test_units_have_*)")
@pytest.mark.skipif(not VENV_CLI.exists(), reason="no .venv/bin/cmr-node for ExecStart")
def test_units_pass_systemd_analyze_verify(installed_root: Path) -> None:
    unit_dir = installed_root / "etc" / "systemd" / "system"
    units = []
    for name in UNITS:
        if name.endswith("@.service"):  # a template is verified as one of its instances
            instance = unit_dir / name.replace("@.service", "@w1.service")
            shutil.copyfile(unit_dir / name, instance)
            name = instance.name
        units.append(str(unit_dir / name))
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", *units],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    own = [line for line in result.stderr.splitlines() if "cmr-node" in line]
    assert not own, "\n".join(own)


@pytest.mark.parametrize("name", UNITS)
def test_units_have_user_restart_and_hardening(name: str) -> None:
    unit = parse_unit((SYSTEMD / name).read_text())
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Unit", "Description")
    assert "network-online.target" in one(unit, "Unit", "After")
    assert one(unit, "Service", "User") == "cmr-node"
    assert one(unit, "Service", "Restart") == "on-failure"
    # configuration errors (and, for workers, a name held by another process)
    assert "2" in one(unit, "Service", "RestartPreventExitStatus").split()
    assert "TCP_NODELAY=1" in unit["Service"]["Environment"]
    for key, value in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
        "ProtectHome": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
    }.items():
        assert one(unit, "Service", key) == value, key
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_node_unit_runs_the_cli_with_the_site_file_and_may_write_its_data_dir() -> None:
    unit = parse_unit((SYSTEMD / "cmr-node.service").read_text())
    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert in_repo(argv[0]) == REPO / ".venv" / "bin" / "cmr-node"
    assert "cmr-node" in tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "scripts"]
    args = cli.build_parser().parse_args(argv[1:])
    assert args.func is cli.cmd_run and args.config == SITE_IN_FILES
    data_dir = str(load_settings(EXAMPLE_SITE).data_dir)
    assert one(unit, "Service", "ReadWritePaths") == data_dir
    assert one(unit, "Service", "StateDirectory") == Path(data_dir).name
    assert one(unit, "Service", "WorkingDirectory") == data_dir


def test_worker_unit_runs_a_named_worker_on_the_site_file() -> None:
    unit = parse_unit((SYSTEMD / "cmr-node-worker@.service").read_text())
    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert in_repo(argv[0]) == REPO / ".venv" / "bin" / "cmr-node"
    args = cli.build_parser().parse_args(argv[1:])
    assert args.func is cli.cmd_worker and args.config == SITE_IN_FILES and args.name == "%i"
    node = parse_unit((SYSTEMD / "cmr-node.service").read_text())
    assert one(unit, "Service", "ReadWritePaths") == one(node, "Service", "ReadWritePaths")
    assert one(unit, "Service", "RestartPreventExitStatus").split() == ["2", "3"]


def test_orthanc_unit_runs_the_launcher_with_valid_options() -> None:
    unit = parse_unit((SYSTEMD / "cmr-node-orthanc.service").read_text())
    argv = shlex.split(one(unit, "Service", "ExecStart"))
    script = in_repo(argv[0])
    assert script == REPO / "orthanc" / "run.sh" and script.stat().st_mode & 0o111
    options = [a for a in argv[1:] if not a.startswith("$")]
    args = orthanc_launch.build_parser().parse_args(options)
    assert str(args.config) == SITE_IN_FILES
    assert one(unit, "Service", "ReadWritePaths") == str(args.data)
    assert one(unit, "Service", "StateDirectory") == args.data.name
    assert "orthanc.service" in one(unit, "Unit", "Conflicts")
    # The variable of the optional EnvironmentFile is expanded into the options.
    env_file = one(unit, "Service", "EnvironmentFile")
    assert env_file.startswith("-/etc/cmr-node/")
    assert "$CMR_ORTHANC_OPTIONS" in argv


# ------------------------------------------------------------------------------ site files


def test_example_site_loads_and_every_key_is_read_by_the_node() -> None:
    settings = load_settings(EXAMPLE_SITE)
    assert settings.data_dir == Path("/var/lib/cmr-node")
    assert settings.listen_host == "0.0.0.0" and settings.http_host == "127.0.0.1"
    assert settings.allowed_calling_aets, "the example shows a calling-AE allowlist"
    assert [d.name for d in settings.destinations] == ["pacs", "research-archive"]
    assert settings.enabled_analyses() == {"t1map", "lge", "molli", "ecv", "t2map"}
    assert settings.analysis_options["t1map"]["radiomics"] is True
    check_analysis_options(settings)
    check_site_keys(tomllib.loads(EXAMPLE_SITE.read_text()), str(EXAMPLE_SITE))


def test_site_key_check_catches_an_unknown_key(tmp_path: Path) -> None:
    raw = tomllib.loads(EXAMPLE_SITE.read_text())
    raw["analysis"]["lge"]["n_sdd"] = 4.0
    with pytest.raises(AssertionError, match="n_sdd"):
        check_site_keys(raw, "typo")
    raw = tomllib.loads(EXAMPLE_SITE.read_text())
    raw["analysis"]["t1map"]["n_sd"] = 4.0  # an LGE option under the wrong analysis
    with pytest.raises(AssertionError, match="n_sd"):
        check_site_keys(raw, "misplaced")
    raw = tomllib.loads(EXAMPLE_SITE.read_text())
    raw["node"]["listen_prot"] = 104
    with pytest.raises(AssertionError, match="listen_prot"):
        check_site_keys(raw, "typo")


def test_configmap_site_loads_and_listens_where_the_probes_look(tmp_path: Path) -> None:
    path, raw = configmap_site(tmp_path)
    settings = load_settings(path)
    check_site_keys(raw, "configmap.yaml")
    check_analysis_options(settings)
    assert settings.http_host == "0.0.0.0", "the kubelet probes /healthz on the pod address"
    assert settings.listen_host == "0.0.0.0"


# ------------------------------------------------------------------------------ image, compose


def test_dockerfile_installs_what_setup_sh_installs() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    setup = (DEPLOY / "setup.sh").read_text()
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:12$", text, re.M)
    assert text.count("FROM ${DEBIAN_IMAGE}") == 2
    setup_packages = set(search(r"APT_PACKAGES=\(([^)]*)\)", setup).group(1).split())
    installs = re.findall(r"apt-get install -y --no-install-recommends\s*\\?\s*([^&]*)&&", text)
    packages = {p for block in installs for p in block.replace("\\", " ").split()}
    build_only = {"python3", "python3-venv", "python3-dev", "build-essential", "ca-certificates"}
    assert {"orthanc", "orthanc-python", "orthanc-dicomweb", "dcmtk"} <= packages
    assert packages - build_only <= setup_packages
    torch_pin = search(r'"torch==([0-9.]+)"', setup).group(1)
    assert f"ARG TORCH_VERSION={torch_pin}" in text
    assert "-c deploy/constraints.txt" in text and "-e '.[radiomics]'" in text
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / source).exists(), source
    uid = search(r"ARG CMR_UID=(\d+)", text).group(1)
    pod = k8s_object("Deployment", "cmr-node")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    exposed = {int(p) for p in search(r"^EXPOSE (.*)$", text).group(1).split()}
    assert exposed == {11112, 8089, 4242, 8042}


def test_compose_builds_the_image_from_the_repository() -> None:
    data = compose()
    assert set(data["services"]) == {"node", "orthanc"}
    for service in data["services"].values():
        build = service["build"]
        assert (COMPOSE / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).is_file()
        assert service["image"] == f"cmr-node:{__version__}"
        assert service["read_only"] is True and "ALL" in service["cap_drop"]
        assert str(service["environment"]["TCP_NODELAY"]) == "1"
        mounts = compose_mounts(service["volumes"])
        assert (COMPOSE / mounts[SITE_IN_FILES]).resolve() == EXAMPLE_SITE
        assert [v for v in service["volumes"] if v.endswith(":ro")] == [
            v for v in service["volumes"] if SITE_IN_FILES in v
        ]
        assert mounts["/var/lib/cmr-node"] == "cmr-data" and "cmr-data" in data["volumes"]
        check = service["healthcheck"]["test"]
        assert check[0] == "CMD" and in_repo(check[1]) == REPO / ".venv" / "bin" / "python"
        assert in_repo(check[2]) == COMPOSE / "healthcheck.py"


def test_compose_node_ports_and_health_match_the_site_file() -> None:
    node = compose()["services"]["node"]
    settings = load_settings(EXAMPLE_SITE)
    with DEFAULTS_PATH.open("rb") as fh:
        defaults = tomllib.load(fh)["node"]
    assert settings.listen_port == defaults["listen_port"]
    assert node["ports"] == [f"{settings.listen_port}:{settings.listen_port}"]
    args = cli.build_parser().parse_args(node["command"][1:])
    assert node["command"][0] == "cmr-node" and args.config == SITE_IN_FILES
    assert args.data_dir is None, "data_dir comes from the site file"
    assert str(settings.data_dir) in compose_mounts(node["volumes"])
    url = node["healthcheck"]["test"][3]
    assert url == f"http://{settings.http_host}:{settings.http_port}/healthz"


def test_compose_orthanc_command_ports_and_health_agree() -> None:
    data = compose()
    orthanc = data["services"]["orthanc"]
    command = [expand_compose(str(c)) for c in orthanc["command"]]
    assert in_repo(command[0]) == REPO / "orthanc" / "run.sh"
    args = orthanc_launch.build_parser().parse_args(command[1:])
    assert args.remote_access and args.user == ["admin:secret"]
    assert str(args.config) == SITE_IN_FILES
    mounts = compose_mounts(orthanc["volumes"])
    assert any(str(args.data).startswith(m + "/") for m in mounts if mounts[m] == "cmr-data")
    published = {p.rsplit(":", 1)[-1]: p for p in orthanc["ports"]}
    assert set(published) == {str(args.dicom_port), str(args.http_port)}
    assert published[str(args.http_port)].startswith("127.0.0.1:")
    check = orthanc["healthcheck"]["test"]
    assert check[3] == f"http://127.0.0.1:{args.http_port}/cmr-node/health"
    auth_var = option(check, "--auth-env")
    assert expand_compose(orthanc["environment"][auth_var]) == "admin:secret"
    # The node and Orthanc's node keep separate catalogs on the shared volume.
    assert args.data != load_settings(EXAMPLE_SITE).data_dir


# ------------------------------------------------------------------------------ health check


HEALTH_ANSWERS: Mapping[str, tuple[int, bytes]] = {
    "/ok": (200, json.dumps({"status": "ok", "version": "9"}).encode()),
    "/stopped": (200, json.dumps({"status": "stopped"}).encode()),
    "/broken": (500, b"{}"),
    "/html": (200, b"<html></html>"),
}
"""Answers of the stand-in health endpoint, by path."""


class _Health(BaseHTTPRequestHandler):

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/auth":
            if self.headers.get("Authorization") != "Basic YWRtaW46czNjcmV0":  # admin:s3cret
                self.send_response(401)
                self.end_headers()
                return
            code, body = HEALTH_ANSWERS["/ok"]
        else:
            code, body = HEALTH_ANSWERS.get(self.path, (404, b"{}"))
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_healthcheck_exit_status_follows_the_answer(
    health_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = load_healthcheck()
    assert health.main([f"{health_server}/ok"]) == 0
    for path in ("/stopped", "/broken", "/html", "/auth", "/missing"):
        assert health.main([f"{health_server}{path}", "--timeout", "2"]) == 1, path
    monkeypatch.setenv("ORTHANC_AUTH", "admin:s3cret")
    assert health.main([f"{health_server}/auth", "--auth-env", "ORTHANC_AUTH"]) == 0
    monkeypatch.setenv("ORTHANC_AUTH", "admin:wrong")
    assert health.main([f"{health_server}/auth", "--auth-env", "ORTHANC_AUTH"]) == 1
    assert health.main(["http://127.0.0.1:9/healthz", "--timeout", "2"]) == 1


def test_healthcheck_accepts_the_node_status_endpoint(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    server = StatusServer(catalog, "127.0.0.1", 0, on_retry=lambda: None)
    server.start()
    try:
        host, port = server.address
        assert load_healthcheck().main([f"http://{host}:{port}/healthz"]) == 0
    finally:
        server.stop()
        catalog.close()


def test_healthcheck_runs_as_a_script(health_server: str) -> None:
    result = subprocess.run(
        [sys.executable, str(COMPOSE / "healthcheck.py"), f"{health_server}/ok"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0 and "version 9" in result.stdout


# ------------------------------------------------------------------------------ Kubernetes


def test_kustomization_lists_every_manifest_and_pins_the_image() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
    (image,) = kustomization["images"]
    assert image["name"] == "cmr-node" and image["newTag"] == __version__
    namespace = kustomization["namespace"]
    for doc in k8s_documents():
        if doc["kind"] not in {"Namespace", "Kustomization"}:
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
    assert k8s_object("Namespace")["metadata"]["name"] == namespace


def test_deployment_is_one_replica_with_probes_on_healthz(tmp_path: Path) -> None:
    deployment = k8s_object("Deployment", "cmr-node")
    spec = deployment["spec"]
    assert spec["replicas"] == 1, "the SQLite catalog has a single writer"
    assert spec["strategy"]["type"] == "Recreate", "no overlap of old and new pod"
    assert "single writer" in (K8S / "deployment.yaml").read_text()
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"][
        "labels"].items()
    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == "cmr-node"
    settings = load_settings(configmap_site(tmp_path)[0])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"dicom": settings.listen_port, "http": settings.http_port}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] == "http", probe
    args = cli.build_parser().parse_args(container["command"][1:])
    assert container["command"][0] == "cmr-node" and args.func is cli.cmd_run
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes)
    assert mounts["data"]["mountPath"] == str(settings.data_dir)
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert k8s_object("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert mounts["site"]["readOnly"] is True
    assert str(Path(mounts["site"]["mountPath"]) / "site.toml") == args.config
    assert volumes["site"]["configMap"]["name"] == "cmr-node-site"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert {"name": "TCP_NODELAY", "value": "1"} in container["env"]


def test_deployment_resources_match_the_measured_figures() -> None:
    container = k8s_object("Deployment", "cmr-node")["spec"]["template"]["spec"]["containers"][0]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]

    def mebibytes(value: str) -> float:
        units = {"Mi": 1.0, "Gi": 1024.0}
        return float(value[:-2]) * units[value[-2:]]

    assert str(requests["cpu"]) == "2"
    assert 700 * 1e6 / 2**20 <= mebibytes(requests["memory"]) <= mebibytes(limits["memory"])


def test_services_and_network_policy_target_the_container_ports() -> None:
    container = k8s_object("Deployment", "cmr-node")["spec"]["template"]["spec"]["containers"][0]
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    labels = k8s_object("Deployment", "cmr-node")["spec"]["template"]["metadata"]["labels"]
    internal = k8s_object("Service", "cmr-node")["spec"]
    assert {p["targetPort"] for p in internal["ports"]} == set(by_name)
    external = k8s_object("Service", "cmr-node-dicom")["spec"]
    assert [p["targetPort"] for p in external["ports"]] == ["dicom"]
    for spec in (internal, external):
        assert spec["selector"].items() <= labels.items()
    policy = k8s_object("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    allowed = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert allowed == set(by_name.values())


# ------------------------------------------------------------------------------ scale-out


def _parse_cli(command: list[str]) -> Any:
    assert command[0] == "cmr-node"
    return cli.build_parser().parse_args([str(c) for c in command[1:]])


def test_k8s_scale_out_runs_named_workers_on_the_shared_catalog(tmp_path: Path) -> None:
    folder = K8S / "scale-out"
    docs = {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d]
            for p in folder.glob("*.yaml")}
    [kustomization] = docs["kustomization.yaml"]
    assert "../" in kustomization["resources"] and "worker.yaml" in kustomization["resources"]
    for patch in kustomization["patches"]:
        assert (folder / patch["path"]).is_file(), patch
    _, raw = configmap_site(tmp_path)
    data_dir = raw["node"]["data_dir"]
    [worker] = docs["worker.yaml"]
    assert worker["spec"]["replicas"] >= 2
    pod = worker["spec"]["template"]["spec"]
    base_pod = k8s_object("Deployment", "cmr-node")["spec"]["template"]["spec"]
    assert pod["securityContext"] == base_pod["securityContext"]
    [container] = pod["containers"]
    args = _parse_cli(container["command"])
    assert args.func is cli.cmd_worker and args.config == SITE_IN_FILES
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]
               if "valueFrom" in e}
    assert secrets == {"CMR_NODE_CATALOG_URL": "cmr-node-db", "PGPASSWORD": "cmr-node-db"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == data_dir and mounts["site"] == str(Path(SITE_IN_FILES).parent)
    claim = {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"]
    assert claim == k8s_object("PersistentVolumeClaim")["metadata"]["name"]
    [pvc] = docs["pvc-patch.yaml"]
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    [node_patch] = docs["node-patch.yaml"]
    [node] = node_patch["spec"]["template"]["spec"]["containers"]
    assert node["name"] == base_pod["containers"][0]["name"]
    run = _parse_cli(node["command"])
    assert run.func is cli.cmd_run and run.worker_count == 0
    assert {e["name"] for e in node["env"]} == set(secrets)


def test_compose_scale_out_shares_one_catalog_and_one_data_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    override = yaml.safe_load((COMPOSE / "docker-compose.scale-out.yml").read_text())
    base = compose()["services"]["node"]
    services = override["services"]
    run = _parse_cli(services["node"]["command"])
    assert run.func is cli.cmd_run and run.worker_count == 0
    worker = services["worker"]
    args = _parse_cli(worker["command"])
    assert args.func is cli.cmd_worker and args.config == SITE_IN_FILES
    assert worker["image"] == base["image"] and worker["read_only"] is True
    assert compose_mounts(worker["volumes"]) == compose_mounts(base["volumes"])
    url = services["node"]["environment"]["CMR_NODE_CATALOG_URL"]
    assert worker["environment"]["CMR_NODE_CATALOG_URL"] == url
    assert urlsplit(url).hostname in services, "the URL names the compose database service"
    assert services["db"]["environment"]["POSTGRES_DB"] == urlsplit(url).path.lstrip("/")
    monkeypatch.setenv("CMR_NODE_CATALOG_URL", url)
    settings = load_settings(EXAMPLE_SITE)
    assert settings.catalog_location == url and settings.catalog_url == url
