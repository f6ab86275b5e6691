"""Settings: embedded defaults, site overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.settings import SettingsError, WarmUp, load_settings


def test_defaults_load_without_site_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CMR_NODE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.ae_title == "CMRNODE" and s.listen_port == 11112
    assert s.data_dir == tmp_path / "cmr-data"
    assert s.catalog_path.parent == s.data_dir
    assert "t1map" in s.enabled_analyses()


def test_site_file_overrides_and_resolves_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "site" / "node.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        '[node]\ndata_dir = "data"\nae_title = "CARDIO"\nallowed_calling_aets = ["MR1"]\n'
        '[[destination]]\nname = "pacs"\nae_title = "PACS"\nhost = "10.0.0.5"\nport = 104\n'
        "[analysis.t1map]\nenabled = false\n"
    )
    s = load_settings(cfg)
    assert s.data_dir == cfg.parent / "data"
    assert s.ae_title == "CARDIO" and s.allowed_calling_aets == ("MR1",)
    assert s.destinations[0].port == 104
    assert "t1map" not in s.enabled_analyses()


@pytest.mark.parametrize(
    "body, message",
    [
        ('[node]\nae_title = "A_TITLE_MUCH_TOO_LONG"\n', "AE title"),
        ("[node]\nlisten_port = 70000\n", "port"),
        ('[[destination]]\nname = "x"\nhost = "h"\nport = 1\n', "ae_title"),
        ("[node]\nstable_age_s = 0\n", "stable_age_s"),
        ("not toml at all [", "cannot read"),
        ('[node]\nwarm_up = "sometimes"\n', "node.warm_up"),
        ("[listener]\nmax_associations_per_address = 0\n", "max_associations_per_address"),
    ],
)
def test_invalid_settings_are_explained(tmp_path: Path, body: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    with pytest.raises(SettingsError, match=message):
        load_settings(cfg)


def test_site_reference_ranges_are_keyed_by_vendor_sequence_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        "[analysis.t1map.normal_ranges.molli_3t]\n"
        'vendor = "Siemens"\nsequence_family = "molli"\nfield_strength_t = 3.0\n'
        'mean_ms = 1200.0\nsd_ms = 40.0\nsource = "our volunteers"\n'
    )
    s = load_settings(cfg)
    ranges = s.analysis_options["t1map"]["normal_ranges"]
    assert ranges["molli_3t"]["mean_ms"] == 1200.0


@pytest.mark.parametrize(
    "body, message",
    [
        # The former format, keyed by field strength only, cannot be matched to a sequence.
        ('[analysis.t1map.normal_ranges."3"]\nmean_ms = 1052.0\nsd_ms = 23.0\n'
         'source = "x"\n', "vendor"),
        ("[analysis.t1map.normal_ranges.a]\n"
         'vendor = "ge"\nsequence_family = "molli"\nfield_strength_t = 1.5\n'
         'mean_ms = 1000.0\nsd_ms = 0\nsource = "x"\n', "sd_ms"),
        ("[analysis.t1map.normal_ranges.a]\n"
         'vendor = "unknown"\nsequence_family = "molli"\nfield_strength_t = 1.5\n'
         'mean_ms = 1000.0\nsd_ms = 30\nsource = "x"\n', "vendor"),
    ],
)
def test_malformed_reference_ranges_are_refused_at_load(
    tmp_path: Path, body: str, message: str
) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(body)
    with pytest.raises(SettingsError, match=f"normal_ranges.*{message}"):
        load_settings(cfg)


def test_warm_up_and_per_address_limit_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text("[node]\n")
    s = load_settings(cfg)
    assert s.warm_up == WarmUp.REHEARSE and s.listener.max_associations_per_address == 12
    cfg.write_text('[node]\nwarm_up = "load"\n[listener]\nmax_associations_per_address = 3\n')
    s = load_settings(cfg)
    assert s.warm_up == WarmUp.LOAD and s.listener.max_associations_per_address == 3
