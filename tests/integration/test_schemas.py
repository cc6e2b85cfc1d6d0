"""Every message the real service publishes -- boundary values and status on MQTT, real-time
values and their status, the Redis hashes and every history entry, the broker's last will
after a SIGKILL -- validates against its JSON Schema (iopv/schemas); broken records do not."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.subscribe
import pytest
import redis
from jsonschema import Draft202012Validator

from iopv.core import names
from iopv.schemas import load_schema
from tests.support.published import capture_live_service

ROOT = Path(__file__).resolve().parents[2]


def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def captured(tmp_path_factory, mosquitto, redis_server):
    return capture_live_service(tmp_path_factory.mktemp("schemas"), mosquitto, redis_server, boundaries=3)


def errors(name: str, record) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(name).iter_errors(record)]


def test_every_published_mqtt_message_validates(captured):
    values = captured.settings.mqtt.value_topic_prefix
    rt = captured.settings.realtime.topic_prefix
    seen = {"boundary-value": 0, "realtime-value": 0, "status": 0, "directory": 0, "session-event": 0,
            "heartbeat": 0}
    statuses = []
    for topic, record in captured.on(values) + captured.on(rt):
        kind = (names.topic_kind(rt, topic) if topic.startswith(rt + "/") else names.topic_kind(values, topic))[0]
        name = {"value": "realtime-value" if topic.startswith(rt + "/") else "boundary-value", "status": "status",
                "directory": "directory", "session": "session-event", "summary": "summary",
                "heartbeat": "heartbeat"}[kind]
        assert errors(name, record) == [], (topic, record)
        seen[name] += 1
        if name == "status":
            statuses.append((topic, record["status"], record.get("reason")))
        elif name in ("boundary-value", "realtime-value", "directory"):
            assert topic.rsplit("/", 1)[1] == record["fund"]
    funds = len(captured.document)
    assert seen["boundary-value"] >= 3 * funds and seen["realtime-value"] >= 1
    # the feed's reference data (tests/integration/test_feed_events.py has a whole session)
    assert seen["directory"] >= funds and seen["session-event"] >= 2 and seen["heartbeat"] >= 1
    instance = captured.settings.engine.instance
    # online at connect and offline on the clean stop, for both publishing connections
    for topic in (f"{values}/_status/{instance}", f"{rt}/_status/{instance}-rt"):
        assert (topic, "online", None) in statuses and (topic, "offline", "shutdown") in statuses
    # the optional fields were exercised, not only the required ones
    boundary = [r for t, r in captured.on(values) if names.topic_kind(values, t)[0] == "value"]
    assert any("premium_bps" in r and "as_of" in r and "prior_nav" in r for r in boundary)
    assert any("halted" in r["flags"] for r in boundary)


def test_every_redis_hash_and_history_entry_validates(captured):
    entries = 0
    for fund in (f["fund"] for f in captured.document):
        assert errors("redis-value", captured.hashes[fund]) == [], fund
        for entry_id, fields in captured.streams[fund]:
            assert errors("redis-value", fields) == [], (fund, entry_id)
            entries += 1
    assert entries >= 3 * len(captured.document)
    assert "market_price" in captured.hashes["F0"] and captured.hashes["F0"]["flags"].startswith("[")


def test_broken_records_are_rejected(captured):
    values = captured.settings.mqtt.value_topic_prefix
    good = next(r for t, r in captured.on(values) if names.topic_kind(values, t)[0] == "value" and "premium_bps" in r)
    assert errors("boundary-value", good) == []
    breakages = {
        "iopv as a string": ("iopv", "10.5"),
        "ts with a fraction": ("ts", 1.7e9 + 0.5),
        "unknown status": ("status", "fine"),
        "unknown flag": ("flags", ["sleepy"]),
        "coverage above 1": ("coverage", 1.5),
        "negative stale count": ("stale", -1),
        "fund with a slash": ("fund", "A/B"),
        "misspelt field": ("iopv_bdi", 1.0),
    }
    for what, (field, value) in breakages.items():
        broken = copy.deepcopy(good)
        broken[field] = value
        assert errors("boundary-value", broken), what
    missing = {k: v for k, v in good.items() if k != "iopv"}
    assert any("'iopv' is a required property" in e for e in errors("boundary-value", missing))
    no_market = {k: v for k, v in good.items() if k != "market_price"}
    assert errors("boundary-value", no_market), "premium_bps needs market_price"
    fields = dict(captured.hashes["F0"])
    assert errors("redis-value", {**fields, "iopv": "NaN"}) and errors("redis-value", {**fields, "flags": "stale"})
    assert errors("status", {"instance": "x", "status": "offline", "ts": 1}), "offline needs a reason"
    assert errors("realtime-value", {"fund": "F0", "ts": 1, "iopv": 1.0, "iopv_bid": 1.0, "iopv_ask": 1.0,
                                     "basket": "abc", "realtime": False})


def test_last_will_after_sigkill_validates(tmp_path, mosquitto, redis_server):
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOPV_")}
    env.update(PYTHONPATH=str(ROOT), IOPV_ENGINE_INSTANCE=f"kill{tag}", IOPV_MQTT_VALUE_TOPIC_PREFIX=f"iopv{tag}",
               IOPV_REDIS_KEY_PREFIX=f"iopv{tag}")
    process = subprocess.Popen([sys.executable, "-m", "iopv", "run", "--pcf", str(ROOT / "config/pcf/demo.json"),
                                "--mqtt-url", mosquitto.url, "--redis-url", redis_server.url, "--interval", "0.5"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(redis_server.url)
    topic = f"iopv{tag}/_status/kill{tag}"
    try:
        deadline = time.monotonic() + 60
        while not client.exists(f"iopv{tag}:PWB"):  # publishing: connected, status online
            assert time.monotonic() < deadline and process.poll() is None, "the engine never published"
            time.sleep(0.05)
        online = paho.mqtt.subscribe.simple(topic, hostname="127.0.0.1", port=mosquitto.port, retained=True)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + 10
        while True:
            message = paho.mqtt.subscribe.simple(topic, hostname="127.0.0.1", port=mosquitto.port, retained=True)
            if b"offline" in message.payload or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
        client.delete(*client.keys(f"iopv{tag}:*"))
        client.close()
    will = orjson.loads(message.payload)
    assert errors("status", orjson.loads(online.payload)) == [] and orjson.loads(online.payload)["status"] == "online"
    assert (will["status"], will["reason"], will["instance"]) == ("offline", "connection lost", f"kill{tag}")
    assert errors("status", will) == []
