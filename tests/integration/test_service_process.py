"""The service and the demo as real processes: clean stop on SIGTERM/SIGINT, values in Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
DEMO_PCF = ROOT / "config" / "pcf" / "demo.json"


def iopv(*args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOPV_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "iopv", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_key(client: redis.Redis, key: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fields = client.hgetall(key)
        if fields:
            return fields
        time.sleep(0.05)
    raise AssertionError(f"{key} never appeared in Redis")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_signal(signum, mosquitto, redis_server):
    process = iopv("run", "--pcf", str(DEMO_PCF), "--mqtt-url", mosquitto.url, "--redis-url",
                   redis_server.url, "--interval", "0.5")
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        # Default key prefix "iopv": the demo fund PWB must appear at the first boundary.
        fields = wait_for_key(client, "iopv:PWB")
        assert float(fields["iopv"]) == pytest.approx(10.0, abs=0.01)
        assert int(fields["ts"]) % 500_000_000 == 0
        started = time.monotonic()
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
        client.delete(*client.keys("iopv:*"))
    assert process.returncode == 0, err
    assert elapsed < 5.0
    assert "stopped (exit 0)" in err


def test_run_logs_json_lines_with_the_text_fields(mosquitto, redis_server):
    """``--log-format json``: every stderr line is a JSON object with the text line's fields."""
    import re
    import uuid

    import orjson

    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOPV_")}
    env.update(PYTHONPATH=str(ROOT), IOPV_MQTT_VALUE_TOPIC_PREFIX=f"iopv{tag}", IOPV_REDIS_KEY_PREFIX=f"iopv{tag}")
    process = subprocess.Popen([sys.executable, "-m", "iopv", "--log-format", "json", "run", "--pcf", str(DEMO_PCF),
                                "--mqtt-url", mosquitto.url, "--redis-url", redis_server.url, "--interval", "0.5",
                                "--instance", f"log{tag}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        wait_for_key(client, f"iopv{tag}:PWB")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        client.delete(*client.keys(f"iopv{tag}:*"))
    assert process.returncode == 0, err
    lines = err.splitlines()
    records = [orjson.loads(line) for line in lines]  # every line parses
    assert len(records) >= 4
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys() <= {"time", "level", "logger", "message",
                                                                           "exc_info"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", record["time"])  # the text line's asctime
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    messages = [(r["logger"], r["message"]) for r in records]
    assert ("iopv.service.live", f"engine log{tag} stopped (exit 0)") in messages
    assert any(logger == "iopv.engine.cycle" and message.startswith("cycle ts=") for logger, message in messages)
    assert any(logger == "iopv.service.feed_events" and "start_of_day" in message for logger, message in messages)


def test_bad_config_exits_2_naming_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[engine]\ninterval_s = 15\nintervall = 3\n")
    process = iopv("run", "--config", str(config))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "engine.intervall" in err and str(config) in err
    assert "Traceback" not in err


def test_bad_pcf_exits_2_naming_file_fund_and_field(tmp_path, mosquitto, redis_server):
    pcf = tmp_path / "bad.json"
    pcf.write_text('[{"fund": "XYZ", "creation_unit": 0, "currency": "USD", "cash": 1, "holdings": []}]')
    process = iopv("run", "--pcf", str(pcf), "--mqtt-url", mosquitto.url, "--redis-url", redis_server.url)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert str(pcf) in err and "fund XYZ" in err and "creation_unit" in err


def test_demo_shows_live_values_from_real_brokers(redis_server):
    """`iopv demo` with its own throwaway Mosquitto, and the fixture's Redis for inspection."""
    process = iopv("demo", "--interval", "1", "--duration", "4.5", "--ticks-per-s", "400",
                   "--redis-url", redis_server.url)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    tables = [block for block in out.split("IOPV at ")[1:]]
    assert len(tables) >= 3, out
    last = tables[-1]
    assert "PWB" in last and "ZRLC" in last
    assert "accepted 0 " not in last, "live ticks must have reached the engine"
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        history = client.xrange("iopv:PWB:history")
        assert len(history) >= 3
        values = {fields["iopv"] for _, fields in history}
        assert len(values) > 1, "values must move with the simulated ticks"
    finally:
        client.delete(*client.keys("iopv:*"))
