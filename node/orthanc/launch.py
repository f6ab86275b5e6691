"""Start Debian's Orthanc with the cmr-node plugin for a data folder.

``python -m node.orthanc.launch --data ./orthanc-data [--config site.toml]`` renders
``<data>/orthanc.json`` from ``orthanc/orthanc.json.in`` (Orthanc's storage in
``<data>/orthanc-db``, the node's spool, catalog and results in ``<data>/node``) and replaces
itself with ``Orthanc <data>/orthanc.json``, run with ``TCP_NODELAY=1`` (dcmtk otherwise
leaves Nagle's algorithm on and C-STORE is 10-70x slower) and the project's virtual
environment on ``PYTHONPATH`` (Orthanc embeds Debian's Python, not the venv's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import string
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
ORTHANC_DIR = REPOSITORY / "orthanc"
TEMPLATE = ORTHANC_DIR / "orthanc.json.in"
PLUGIN_SCRIPT = ORTHANC_DIR / "plugin.py"
PLUGINS_DIR = Path("/usr/share/orthanc/plugins")
PYTHON_PLUGIN = "libOrthancPython.so"
DICOMWEB_PLUGIN = "libOrthancDicomWeb.so"
ORTHANC_BINARY = "Orthanc"


class LaunchError(RuntimeError):
    """Orthanc cannot be started as asked; the message says why."""


@dataclass(frozen=True)
class OrthancLaunch:
    """Everything that goes into a rendered Orthanc configuration.

    Attributes
    ----------
    data_dir
        Folder holding ``orthanc.json``, Orthanc's storage and the node's data.
    node_config
        The node's TOML settings (destinations, analyses); None: the embedded defaults.
    http_port, dicom_port, dicom_aet, name
        Orthanc's ports, AE title and name.
    stable_age_s
        Seconds without a new instance after which Orthanc declares a series stable.
    remote_access
        Accept HTTP from other hosts (then set ``users``).
    users
        HTTP users (name -> password); authentication is enabled when there is one.
    dicomweb
        Load the DICOMweb plugin too.
    """

    data_dir: Path
    node_config: Path | None = None
    http_port: int = 8042
    dicom_port: int = 4242
    dicom_aet: str = "CMRORTHANC"
    name: str = "cmr-node"
    stable_age_s: int = 10
    remote_access: bool = False
    users: Mapping[str, str] = field(default_factory=dict)
    dicomweb: bool = True

    @property
    def config_path(self) -> Path:
        """Where the rendered configuration is written."""
        return self.data_dir / "orthanc.json"

    @property
    def storage_dir(self) -> Path:
        """Orthanc's storage and index."""
        return self.data_dir / "orthanc-db"

    @property
    def node_data_dir(self) -> Path:
        """The node's spool, catalog and results."""
        return self.data_dir / "node"


def site_packages() -> str:
    """The running interpreter's site-packages (the project's venv when run from it)."""
    return sysconfig.get_paths()["purelib"]


def render_config(launch: OrthancLaunch, template: Path = TEMPLATE) -> dict[str, Any]:
    """Orthanc's configuration for ``launch``, checked to be valid JSON.

    Raises
    ------
    LaunchError
        When a plugin library is missing or the template does not render to JSON.
    """
    plugins = [PLUGINS_DIR / PYTHON_PLUGIN]
    if launch.dicomweb:
        plugins.append(PLUGINS_DIR / DICOMWEB_PLUGIN)
    missing = [str(p) for p in plugins if not p.exists()]
    if missing:
        raise LaunchError(
            f"Orthanc plugins not installed: {missing} (deploy/setup.sh installs them)"
        )
    data = launch.data_dir.resolve()
    values = {
        "name": launch.name,
        "storage_dir": str(data / "orthanc-db"),
        "http_port": launch.http_port,
        "dicom_port": launch.dicom_port,
        "dicom_aet": launch.dicom_aet,
        "remote_access": launch.remote_access,
        "authentication": bool(launch.users),
        "users": dict(launch.users),
        "stable_age": launch.stable_age_s,
        "plugins": [str(p) for p in plugins],
        "python_script": str(PLUGIN_SCRIPT),
        "node_config": str(launch.node_config.resolve()) if launch.node_config else None,
        "node_data_dir": str(data / "node"),
        "repository": str(REPOSITORY),
        "site_packages": site_packages(),
    }
    text = string.Template(template.read_text()).substitute(
        {k: json.dumps(v) for k, v in values.items()}
    )
    try:
        config: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LaunchError(f"{template} does not render to JSON: {exc}") from exc
    return config


def write_config(launch: OrthancLaunch) -> Path:
    """Render and write ``<data>/orthanc.json``; returns its path."""
    config = render_config(launch)
    launch.data_dir.mkdir(parents=True, exist_ok=True)
    launch.storage_dir.mkdir(parents=True, exist_ok=True)
    launch.config_path.write_text(json.dumps(config, indent=2) + "\n")
    return launch.config_path


def orthanc_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Orthanc: TCP_NODELAY=1 and the venv and repository on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env["TCP_NODELAY"] = "1"
    paths = [site_packages(), str(REPOSITORY)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def orthanc_command(config_path: Path, binary: str = ORTHANC_BINARY) -> list[str]:
    """The command line that starts Orthanc with a configuration.

    Raises
    ------
    LaunchError
        When the Orthanc binary is not installed.
    """
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if found is None:
        raise LaunchError(f"{binary} not found (deploy/setup.sh installs Debian's orthanc)")
    return [found, str(config_path)]


def _users(values: Sequence[str]) -> dict[str, str]:
    users = {}
    for value in values:
        name, sep, password = value.partition(":")
        if not sep or not name or not password:
            raise LaunchError(f"--user wants NAME:PASSWORD, got {value!r}")
        users[name] = password
    return users


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m node.orthanc.launch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="data folder")
    parser.add_argument("--config", type=Path, help="the node's settings (TOML)")
    parser.add_argument("--http-port", type=int, default=8042)
    parser.add_argument("--dicom-port", type=int, default=4242)
    parser.add_argument("--aet", default="CMRORTHANC", help="Orthanc's DICOM AE title")
    parser.add_argument("--stable-age", type=int, default=10, help="seconds (Orthanc StableAge)")
    parser.add_argument("--remote-access", action="store_true", help="accept HTTP from other hosts")
    parser.add_argument(
        "--user", action="append", default=[], metavar="NAME:PASSWORD", help="HTTP user"
    )
    parser.add_argument("--no-dicomweb", action="store_true", help="do not load DICOMweb")
    parser.add_argument("--verbose", action="store_true", help="Orthanc's --verbose (info lines)")
    parser.add_argument(
        "--render-only", action="store_true", help="write orthanc.json and print its path"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Render the configuration and replace this process with Orthanc."""
    args = build_parser().parse_args(argv)
    try:
        users = _users(args.user)
        if args.remote_access and not users:
            raise LaunchError("--remote-access needs at least one --user")
        launch = OrthancLaunch(
            data_dir=args.data.resolve(),
            node_config=args.config,
            http_port=args.http_port,
            dicom_port=args.dicom_port,
            dicom_aet=args.aet,
            stable_age_s=args.stable_age,
            remote_access=args.remote_access,
            users=users,
            dicomweb=not args.no_dicomweb,
        )
        config_path = write_config(launch)
        if args.render_only:
            print(config_path)
            return 0
        command = orthanc_command(config_path)
        if args.verbose:
            command.append("--verbose")
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execvpe(command[0], command, orthanc_environment())
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
