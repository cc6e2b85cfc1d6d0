"""deploy/: the systemd units run `iopv run --config` with restart, readiness and watchdog; the
example configuration and environment files are valid settings (unknown keys would fail)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from iopv.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / name)
    return parser


def env_file(name: str) -> dict[str, str]:
    lines = (DEPLOY / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.mark.parametrize("name", ["iopv@.service", "iopv-board.service"])
def test_units_restart_and_notify(name):
    service = unit(name)["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "always" and int(service["WatchdogSec"]) > 0
    assert service["RestartPreventExitStatus"] == "2", "a bad configuration is not retried forever"
    assert " run --config /etc/iopv/engine.toml" in service["ExecStart"] and "--log-format json" in service["ExecStart"]
    assert service["EnvironmentFile"].startswith("/etc/iopv/")


def test_template_names_the_instance_after_the_unit():
    service = unit("iopv@.service")["Service"]
    assert service["EnvironmentFile"] == "/etc/iopv/%i.env" and service["Environment"] == "IOPV_ENGINE_INSTANCE=%i"


@pytest.mark.parametrize("name", ["iopv.env.example", "board.env.example"])
def test_example_files_are_valid_settings(tmp_path, name):
    environ = {k: v for k, v in env_file(name).items() if not k.endswith("_FILE")}  # secrets absent here
    settings = load_settings(DEPLOY / "engine.toml", environ={**environ, "IOPV_ENGINE_INSTANCE": "s0-a"})
    assert settings.engine.calendar == "XNYS" and settings.events.enabled


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path):
    for name in ("iopv@.service", "iopv-board.service"):
        target = tmp_path / (name.replace("@", "@x") if "@" in name else name)
        target.write_text((DEPLOY / name).read_text())
        result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(target)], capture_output=True, text=True)
        assert "Unknown key" not in result.stderr and "Invalid" not in result.stderr, result.stderr
