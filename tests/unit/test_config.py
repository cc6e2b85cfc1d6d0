"""Settings: TOML file < IOPV_* environment < overrides; unknown keys, bad types and bad ranges
fail with a message naming the key; settings are frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from iopv.config import ConfigError, EngineSettings, Settings, load_settings, redact_url


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def config(tmp_path) -> Path:
    return write(tmp_path / "conf" / "iopv.toml", """
[engine]
interval_s = 5
decimals = 3
instance = "from-file"

[mqtt]
url = "mqtt://file-host:1883"

[intake]
batch_capacity = 100
""")


def test_file_then_environment_then_overrides(config):
    settings = load_settings(
        config,
        environ={"IOPV_ENGINE_DECIMALS": "6", "IOPV_MQTT_URL": "mqtt://env-host:1884",
                 "IOPV_INTAKE_BATCH_CAPACITY": "200", "PATH": "/bin", "IOPV_CONFIG": "/ignored.toml"},
        overrides={"engine": {"decimals": 2, "interval_s": None}, "intake": {"batch_capacity": 300}},
    )
    assert settings.engine.interval_s == 5.0  # file (the None override is skipped)
    assert isinstance(settings.engine.interval_s, float)
    assert settings.engine.instance == "from-file"
    assert settings.engine.decimals == 2  # override beats environment beats file
    assert settings.mqtt.url == "mqtt://env-host:1884"  # environment beats file
    assert settings.intake.batch_capacity == 300
    assert settings.redis.url == Settings().redis.url  # untouched: the default
    assert settings.engine.interval_ns == 5_000_000_000


def test_empty_file_gives_defaults(tmp_path):
    settings = load_settings(write(tmp_path / "empty.toml", ""), environ={})
    defaults = Settings()
    assert settings.engine.interval_s == defaults.engine.interval_s == 15.0
    assert settings.engine.decimals == defaults.engine.decimals == 4
    assert settings.mqtt == defaults.mqtt and settings.intake == defaults.intake


def test_config_path_from_iopv_config(config):
    settings = load_settings(None, environ={"IOPV_CONFIG": str(config)})
    assert settings.engine.instance == "from-file"


@pytest.mark.parametrize("text,fragments", [
    ("[engine]\nintervl_s = 5\n", ["engine.intervl_s", "unknown key"]),
    ("[engine]\ninterval_s = 5\n[mqtt]\nurll = 'x'\n", ["mqtt.urll"]),
    ("[enigne]\ninterval_s = 5\n", ["[enigne]", "unknown section"]),
    ("decimals = 4\n", ["'decimals'", "top-level"]),
    ("[engine]\ndecimals = 'four'\n", ["engine.decimals", "expected int", "'four'"]),
    ("[engine]\ndecimals = 4.5\n", ["engine.decimals", "expected int"]),
    ("[engine]\ndecimals = true\n", ["engine.decimals", "expected int"]),
    ("[engine]\ninterval_s = 'fast'\n", ["engine.interval_s", "expected float"]),
    ("[engine]\ninterval_s = true\n", ["engine.interval_s", "expected float"]),
    ("[mqtt]\nurl = 1883\n", ["mqtt.url", "expected str"]),
    ("[engine]\ndecimals = 11\n", ["engine.decimals", "0..10"]),
    ("[engine]\ndecimals = -1\n", ["engine.decimals", "0..10"]),
    ("[engine]\ninterval_s = 0\n", ["engine.interval_s", "from 0.001 to 86400"]),
    ("[engine]\ninterval_s = inf\n", ["engine.interval_s"]),
    ("[engine]\ninterval_s = nan\n", ["engine.interval_s"]),
    ("[engine]\ninstance = 'a/b'\n", ["engine.instance"]),
    ("[engine]\npcf_path = ''\n", ["engine.pcf_path"]),
    ("[mqtt]\nurl = 'http://host:1883'\n", ["mqtt.url"]),
    ("[mqtt]\nvalue_qos = 3\n", ["mqtt.value_qos"]),
    ("[mqtt]\nkeepalive_s = 0\n", ["mqtt.keepalive_s"]),
    ("[mqtt]\ntick_topic_prefix = 'ticks/#'\n", ["mqtt.tick_topic_prefix"]),
    ("[mqtt]\nreconnect_min_s = 5.0\nreconnect_max_s = 1.0\n", ["mqtt.reconnect_min_s"]),
    ("[redis]\nurl = 'http://host'\n", ["redis.url"]),
    ("[redis]\nhistory_maxlen = 0\n", ["redis.history_maxlen"]),
    ("[intake]\nbatch_capacity = 0\n", ["intake.batch_capacity"]),
    ("[engine\n", ["not valid TOML"]),
])
def test_bad_file_names_the_key(tmp_path, text, fragments):
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("name,value,fragments", [
    ("IOPV_ENGINE_INTERVAL", "5", ["IOPV_ENGINE_INTERVAL", "unknown setting"]),
    ("IOPV_MQTT", "x", ["IOPV_MQTT"]),
    ("IOPV_ENGINE_DECIMALS", "four", ["IOPV_ENGINE_DECIMALS", "engine.decimals", "'four'"]),
    ("IOPV_ENGINE_INTERVAL_S", "soon", ["IOPV_ENGINE_INTERVAL_S", "engine.interval_s"]),
    ("IOPV_ENGINE_INTERVAL_S", "nan", ["engine.interval_s"]),
    ("IOPV_ENGINE_DECIMALS", "12", ["engine.decimals", "0..10"]),
])
def test_bad_environment_names_the_variable(config, name, value, fragments):
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={name: value})
    for fragment in fragments:
        assert fragment in str(info.value)


def test_environment_values_are_coerced(config):
    settings = load_settings(config, environ={"IOPV_ENGINE_INTERVAL_S": "0.25", "IOPV_MQTT_VALUE_QOS": "0"})
    assert settings.engine.interval_s == 0.25 and settings.engine.interval_ns == 250_000_000
    assert settings.mqtt.value_qos == 0


@pytest.mark.parametrize("overrides,fragments", [
    ({"engine": {"interval": 5}}, ["command line", "engine.interval"]),
    ({"engin": {"interval_s": 5}}, ["command line", "[engin]"]),
    ({"engine": {"decimals": "x"}}, ["command line", "engine.decimals"]),
])
def test_bad_overrides_name_the_key(config, overrides, fragments):
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={}, overrides=overrides)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.toml", environ={})
    assert str(tmp_path / "absent.toml") in str(info.value)


def test_relative_pcf_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    path = write(tmp_path / "etc" / "iopv.toml", '[engine]\npcf_path = "baskets/today.json"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(path, environ={})
    assert Path(settings.engine.pcf_path) == (tmp_path / "etc" / "baskets" / "today.json").resolve()
    absolute = write(tmp_path / "abs.toml", f'[engine]\npcf_path = "{tmp_path / "x.json"}"\n')
    assert load_settings(absolute, environ={}).engine.pcf_path == str(tmp_path / "x.json")


@pytest.mark.parametrize("url,secret", [
    ("mqtt://user:s3cret@broker:1883", "s3cret"),
    ("redis://:hunter2@cache:6379/0", "hunter2"),
    ("mqtt://user:p%40ss:w0rd@broker", "p%40ss:w0rd"),
    ("rediss://admin:admin-pw@cache.example.com:6380/2", "admin-pw"),
])
def test_redact_url_hides_the_password(url, secret):
    redacted = redact_url(url)
    assert secret not in redacted
    assert "***" in redacted
    assert redacted == url.replace(f":{secret}@", ":***@")


def test_redact_url_leaves_urls_without_password():
    for url in ("mqtt://broker:1883", "redis://user@cache:6379/0", "unix:///tmp/redis.sock"):
        assert redact_url(url) == url


def test_bad_url_error_does_not_leak_the_password(tmp_path):
    path = write(tmp_path / "c.toml", "[mqtt]\nurl = 'http://user:topsecret@host'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "mqtt.url" in str(info.value) and "topsecret" not in str(info.value)


def test_settings_are_frozen_and_keyword_only(config):
    settings = load_settings(config, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.engine.decimals = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.engine = EngineSettings()
    with pytest.raises(TypeError):
        EngineSettings(15.0)
    assert settings.engine.decimals == 3


@pytest.mark.parametrize("origin", ["file", "override"])
def test_huge_integer_for_a_float_setting_is_a_config_error(tmp_path, origin):
    huge = 10**400
    path = write(tmp_path / "c.toml", f"[engine]\ninterval_s = {huge}\n" if origin == "file" else "")
    overrides = {"engine": {"interval_s": huge}} if origin == "override" else None
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={}, overrides=overrides)
    assert "engine.interval_s" in str(info.value)


def test_interval_must_fit_int64_nanoseconds(tmp_path):
    path = write(tmp_path / "c.toml", "[engine]\ninterval_s = 1e12\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "engine.interval_s" in str(info.value)
