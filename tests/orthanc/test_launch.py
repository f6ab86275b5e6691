"""The launcher renders Orthanc's configuration and environment for a data folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.orthanc import launch as orthanc_launch
from node.orthanc.launch import (
    OrthancLaunch,
    main,
    orthanc_environment,
    render_config,
    site_packages,
)
from tests.orthanc.orthancutil import ORTHANC_AVAILABLE

needs_plugins = pytest.mark.skipif(not ORTHANC_AVAILABLE, reason="Orthanc's plugin libraries")


@needs_plugins
def test_rendered_config_points_orthanc_at_the_plugin_and_the_node(tmp_path: Path) -> None:
    node_config = tmp_path / "site.toml"
    node_config.write_text("")
    launch = OrthancLaunch(
        data_dir=tmp_path / "data",
        node_config=node_config,
        http_port=18123,
        dicom_port=14123,
        dicom_aet="SITEORTHANC",
        stable_age_s=3,
        users={"alice": 'pa"ss'},
    )
    config = render_config(launch)
    assert config["HttpPort"] == 18123 and config["DicomPort"] == 14123
    assert config["DicomAet"] == "SITEORTHANC" and config["StableAge"] == 3
    assert config["AuthenticationEnabled"] is True
    assert config["RegisteredUsers"] == {"alice": 'pa"ss'}
    assert config["RemoteAccessAllowed"] is False
    assert config["StorageDirectory"] == str((tmp_path / "data" / "orthanc-db").resolve())
    assert Path(config["PythonScript"]) == orthanc_launch.PLUGIN_SCRIPT
    assert Path(config["PythonScript"]).exists()
    assert any(p.endswith("libOrthancPython.so") for p in config["Plugins"])
    section = config["CmrNode"]
    assert section["Config"] == str(node_config.resolve())
    assert section["DataDirectory"] == str((tmp_path / "data" / "node").resolve())
    assert section["SitePackages"] == site_packages()
    assert (Path(section["Repository"]) / "node" / "orthanc" / "node.py").exists()


@needs_plugins
def test_without_users_authentication_is_off_and_dicomweb_optional(tmp_path: Path) -> None:
    config = render_config(OrthancLaunch(data_dir=tmp_path, dicomweb=False))
    assert config["AuthenticationEnabled"] is False
    assert config["CmrNode"]["Config"] is None
    assert not any("DicomWeb" in p for p in config["Plugins"])


def test_environment_sets_tcp_nodelay_and_puts_the_venv_first() -> None:
    env = orthanc_environment({"PYTHONPATH": "/elsewhere", "HOME": "/root"})
    assert env["TCP_NODELAY"] == "1"
    paths = env["PYTHONPATH"].split(":")
    assert paths[0] == site_packages() and paths[-1] == "/elsewhere"
    assert env["HOME"] == "/root"


@needs_plugins
def test_render_only_writes_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["--data", str(data), "--http-port", "18999", "--render-only"]) == 0
    assert capsys.readouterr().out.strip() == str(data / "orthanc.json")
    assert json.loads((data / "orthanc.json").read_text())["HttpPort"] == 18999
    assert (data / "orthanc-db").is_dir()


def test_bad_options_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path), "--user", "nopassword"]) == 2
    assert "NAME:PASSWORD" in capsys.readouterr().err
    assert main(["--data", str(tmp_path), "--remote-access"]) == 2
    assert "--user" in capsys.readouterr().err
