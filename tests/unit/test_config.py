"""One typed config per process: TOML + env overrides; bad input names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import AggregatorConfig
from edge_agent.config import AgentConfig
from vpp_common.config import ConfigError, load_config


def test_aggregator_config_from_toml_with_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "agg.toml"
    f.write_text('insecure = true\nstore_url = "memory://"\n[planning]\ncycle_s = 120\n'
                 '[[tariff]]\nstart = "00:00"\nend = "00:00"\nimport_price_per_kwh = 0.3\nexport_price_per_kwh = 0.1\n')
    monkeypatch.setenv("VPP_AGG_PLANNING__CYCLE_S", "60")
    cfg = load_config(AggregatorConfig, f)
    assert cfg.planning.cycle_s == 60  # env wins over the file
    assert cfg.tou_tariff().periods[0].import_price_per_kwh == 0.3


def test_bad_values_name_the_field(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('insecure = true\nhouse_id = "h1"\n[site]\nmax_import_w = -5\n[device]\nport = 70000\n')
    with pytest.raises(ConfigError) as err:
        load_config(AgentConfig, f)
    text = str(err.value)
    assert "site.max_import_w" in text and "device.port" in text and str(f) in text


def test_secure_by_default() -> None:
    with pytest.raises(ConfigError, match="tls"):
        load_config(AggregatorConfig, None)
    with pytest.raises(ConfigError, match="tls"):
        load_config(AgentConfig, None, house_id="h1")
    with pytest.raises(ConfigError, match="house_id is required"):
        load_config(AgentConfig, None, insecure=True)


def test_unknown_keys_and_bad_toml_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "agg.toml"
    f.write_text("insecure = true\nlisten_port = 5\n")
    with pytest.raises(ConfigError, match="listen_port"):
        load_config(AggregatorConfig, f)
    f.write_text("insecure = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(AggregatorConfig, f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(AggregatorConfig, tmp_path / "missing.toml")


def test_unknown_env_variables_are_refused_for_both_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    # pydantic-settings ignores an env variable that names no field: a typo left the default in force
    monkeypatch.setenv("VPP_AGG_PLANNING__CYCLE", "60")
    with pytest.raises(ConfigError, match="VPP_AGG_PLANNING__CYCLE: planning has no field 'cycle'; did you mean "
                                          "VPP_AGG_PLANNING__CYCLE_S"):
        load_config(AggregatorConfig, None, insecure=True)
    monkeypatch.delenv("VPP_AGG_PLANNING__CYCLE")
    monkeypatch.setenv("VPP_AGENT_DEVICE__HOST__X", "a")
    monkeypatch.setenv("VPP_AGENT_SITE__MAX_EXPORT_W", "0")  # a real field: applied
    with pytest.raises(ConfigError, match="device.host takes a value, it has no field 'x'"):
        load_config(AgentConfig, None, insecure=True, house_id="h1")
    monkeypatch.delenv("VPP_AGENT_DEVICE__HOST__X")
    assert load_config(AgentConfig, None, insecure=True, house_id="h1").site.max_export_w == 0


def test_nested_unknown_keys_and_non_finite_numbers_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('insecure = true\nhouse_id = "h1"\ntelemetry_interval_s = inf\n[device]\npoll_interval = 1\n'
                 '[control]\ntick_s = nan\n[battery]\nreserve_soc_pct = 50\nmax_soc_pct = 50\n')
    with pytest.raises(ConfigError) as err:
        load_config(AgentConfig, f)
    text = str(err.value)
    assert "device.poll_interval: unknown key; did you mean poll_interval_s?" in text
    assert "telemetry_interval_s: Input should be a finite number" in text and "control.tick_s" in text
    assert "reserve_soc_pct (50.0) must be below max_soc_pct (50.0)" in text
    f.write_text('insecure = true\nhouse_id = "h1"\n[device]\npoll_interval_s = 30\n[site]\nlatitude = 52\n')
    with pytest.raises(ConfigError) as err:
        load_config(AgentConfig, f)
    assert "device.poll_interval_s (30.0 s) must be below battery.revert_s / 2 (30.0 s)" in str(err.value)
    f.write_text('insecure = true\nhouse_id = "h1"\n[site]\nlatitude = 52\n')
    with pytest.raises(ConfigError, match="both latitude and longitude"):
        load_config(AgentConfig, f)


def test_tls_files_that_cannot_work_and_bad_addresses_are_refused(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_bytes(b"\x30\x82\x01\x0a")  # DER, not PEM
    key = tmp_path / "h.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
    f = tmp_path / "agent.toml"
    f.write_text(f'aggregator = "vpp:99999"\n[device]\nhost = ""\n[tls]\nca_file = "{pem}"\ncert_file = "{key}"\n'
                 f'key_file = "{key}"\n')
    with pytest.raises(ConfigError) as err:
        load_config(AgentConfig, f)
    text = str(err.value)
    assert "tls.ca_file: " in text and "is not PEM" in text and "tls.cert_file: " in text and "no PEM certificate" in text
    assert "aggregator: must be host:port (port 1-65535)" in text and "device.host: must name the device" in text


@pytest.mark.parametrize("peak", [float("nan"), float("inf"), -5.0, 0.0, 1.000001e6, 1e300])
def test_a_pv_peak_that_no_house_has_is_refused(peak: float) -> None:
    """The clear-sky PV each house sends is never below this prior: 1e300 would put a forecast past the
    aggregator's 1 MW bound and have every flexibility update of the house refused."""
    with pytest.raises(ValueError, match="pv_peak_w"):
        AgentConfig.model_validate({"house_id": "h", "insecure": True, "site": {"pv_peak_w": peak}})
    assert AgentConfig.model_validate({"house_id": "h", "insecure": True, "site": {"pv_peak_w": 1e6}}).site.pv_peak_w


def test_env_tables_lists_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables read as pydantic-settings read them (the loader replaced it, docs/performance.md):
    names in any case, a table or list as JSON whose ``__`` keys win, key by key into the file's
    tables; the variables win over the file, the CLI's flags over the variables."""
    f = tmp_path / "agent.toml"
    f.write_text('insecure = true\nhouse_id = "h1"\naggregator = "file:1"\n[device]\nhost = "y"\nunit_id = 3\n')
    monkeypatch.setenv("vpp_agent_device__PORT", "9")
    monkeypatch.setenv("VPP_AGENT_SITE", '{"MAX_EXPORT_W": 1, "timezone": "Europe/Berlin"}')
    monkeypatch.setenv("VPP_AGENT_SITE__MAX_EXPORT_W", "2")
    monkeypatch.setenv("VPP_AGENT_DEVICE__PARTS", '[{"role": "battery", "host": "a"}, {"role": "meter", "host": "b"}]')
    monkeypatch.setenv("VPP_AGENT_AGGREGATOR", "env:2")
    cfg = load_config(AgentConfig, f, aggregator="flag:3")
    assert (cfg.device.host, cfg.device.port, cfg.device.unit_id) == ("y", 9, 3)
    assert [p.role for p in cfg.device.parts] == ["battery", "meter"]
    assert (cfg.site.max_export_w, cfg.site.timezone) == (2.0, "Europe/Berlin")
    assert cfg.aggregator == "flag:3"  # the flag wins over the variable (README, --help)
    assert AgentConfig(insecure=True, house_id="h").aggregator == "env:2"  # read on construction too


@pytest.mark.parametrize(("name", "field", "value"), [
    ("VPP_AGENT_DEVICE", "device", "{bad"), ("VPP_AGENT_LAN_DEVICES", "lan_devices", "notjson"),
    ("VPP_AGENT_DEVICE__PARTS", "device.parts", "[{"), ("VPP_AGG_FEEDERS", "feeders", "[{bad")])
def test_env_json_that_cannot_be_read_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, field: str,
                                                         value: str) -> None:
    monkeypatch.setenv(name, value)
    cls = AggregatorConfig if name.startswith("VPP_AGG_") else AgentConfig
    with pytest.raises(ConfigError, match=f"environment: {name} \\({field}\\): not valid JSON"):
        load_config(cls, None, insecure=True, house_id="h1") if cls is AgentConfig \
            else load_config(cls, None, insecure=True)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "1e300", "1e999", "", "five"])
def test_hostile_env_numbers_are_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("VPP_AGENT_SITE__PV_PEAK_W", value)
    with pytest.raises(ConfigError, match="site.pv_peak_w"):
        load_config(AgentConfig, None, insecure=True, house_id="h1")


def test_the_file_then_the_variables_then_the_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # README and --help: a TOML file overridden by VPP_AGENT_* variables, overridden by the flags
    f = tmp_path / "agent.toml"
    f.write_text('aggregator = "file:1"\nhouse_id = "h"\ninsecure = true\n[site]\nmax_export_w = 3000\n')
    monkeypatch.setenv("VPP_AGENT_AGGREGATOR", "env:2")
    monkeypatch.setenv("VPP_AGENT_SITE__MAX_EXPORT_W", "0")
    cfg = load_config(AgentConfig, f)
    assert cfg.aggregator == "env:2" and cfg.site.max_export_w == 0
    cfg = load_config(AgentConfig, f, aggregator="flag:3")
    assert cfg.aggregator == "flag:3" and cfg.site.max_export_w == 0
    # built directly (not from a file and flags) the variables still win over the values given
    assert AgentConfig(aggregator="x:4", house_id="h", insecure=True).aggregator == "env:2"
