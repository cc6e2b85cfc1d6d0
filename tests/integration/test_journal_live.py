"""The audit journal end to end: `iopv run` as a real process on real Mosquitto and Redis with
the journal on, valid and hostile ticks, a basket reload (SIGHUP), a kill -9 and a restart; then
`iopv replay --journal` must reproduce every record MQTT and Redis received, byte for byte, and
`iopv explain` must sum to a published value (and to the Decimal reference)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import redis

from iopv.adapters.journal import JournalReader
from iopv.adapters.journal import format as fmt
from iopv.localservers.servers import free_port
from tests.support.live import exact, make_basket

ROOT = Path(__file__).resolve().parents[2]


class Collector:
    """Every value message the broker delivers (QoS 1), in arrival order."""

    def __init__(self, port: int, prefix: str):
        self.payloads: list[bytes] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"col-{uuid.uuid4().hex[:6]}")
        self.client.on_message = lambda _c, _u, m: (None if "/_" in m.topic else self.payloads.append(m.payload))
        self.client.on_subscribe = lambda *_args: self.ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{prefix}/#", qos=1)
        self.client.loop_start()
        assert self.ready.wait(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start(env: dict, pcf: Path, mosquitto, redis_server, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "iopv", "run", "--pcf", str(pcf), "--mqtt-url", mosquitto.url,
                             "--redis-url", redis_server.url, "--interval", "1", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_boundaries(client: redis.Redis, key: str, count: int, timeout_s: float = 30) -> int:
    """Wait until the history stream of ``key`` has grown by ``count`` entries."""
    start = client.xlen(key)
    deadline = time.monotonic() + timeout_s
    while client.xlen(key) < start + count:
        assert time.monotonic() < deadline, f"{key}: no new boundary"
        time.sleep(0.05)
    return client.xlen(key)


def send_ticks(port: int, prefix: str, rounds: int, seed: int) -> None:
    """A mix of valid and hostile messages at QoS 0, spread over ``rounds`` x 0.3 s."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for r in range(rounds):
            now = time.time_ns()
            k = seed * 100 + r
            messages = [
                ("S001", {"symbol": "S001", "price": 10 + k / 100, "ts": now}),
                ("_batch", [{"symbol": f"S{i:03d}", "price": round(5 + i * 1.37 + k / 50, 4), "ts": now}
                            for i in range(2, 40, 3)]),
                ("EURUSD", {"symbol": "EURUSD", "price": 1.08 + k / 1e4, "ts": now}),
                ("S005", {"price": 31.5 + k / 10}),  # symbol from the topic, receive time as ts
                ("S006", {"symbol": "S006", "price": -3, "ts": now}),
                ("S007", {"symbol": "S007", "price": "12.5", "ts": now}),
                ("S008", {"symbol": "S008", "price": 44.0, "bid": 43.9, "ask": 44.1, "ts": now}),
                ("S009", {"symbol": "S009", "price": 17.0, "ts": 5}),  # out of order once S009 ticked
                ("NOPE", {"symbol": "NOPE", "price": 1.0, "ts": now}),
            ]
            for symbol, body in messages:
                client.publish(f"{prefix}/{symbol}", orjson.dumps(body), qos=0)
            client.publish(f"{prefix}/S010", b'{"symbol": "S010", "price": 1e400}', qos=0)
            client.publish(f"{prefix}/S011", b"\xff\xfe not json", qos=0)
            time.sleep(0.3)
    finally:
        client.loop_stop()
        client.disconnect()


def _field(value: bytes):
    """A Redis field: numbers and lists as JSON text, strings as they are."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode()


def test_replay_and_explain_reproduce_a_killed_and_restarted_session(tmp_path, mosquitto, redis_server):
    tag = uuid.uuid4().hex[:8]
    document = make_basket(12)
    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps(document))
    journal_dir = tmp_path / "journal"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOPV_")}
    env.update(PYTHONPATH=str(ROOT), IOPV_ENGINE_INSTANCE=f"j{tag}", IOPV_ENGINE_CALENDAR="always",
               IOPV_MQTT_TICK_TOPIC_PREFIX=f"ticks{tag}", IOPV_MQTT_VALUE_TOPIC_PREFIX=f"iopv{tag}",
               IOPV_REDIS_KEY_PREFIX=f"iopv{tag}", IOPV_OPS_JOURNAL_DIR=str(journal_dir))
    client = redis.Redis.from_url(redis_server.url)
    history = f"iopv{tag}:F1:history"
    collector = Collector(mosquitto.port, f"iopv{tag}")
    first = second = None
    try:
        first = start(env, pcf, mosquitto, redis_server)
        wait_boundaries(client, history, 1)
        time.sleep(0.3)  # subscribed by now (it subscribes before the first boundary)
        send_ticks(mosquitto.port, f"ticks{tag}", 5, seed=1)
        document[1]["holdings"][0]["shares"] += 250  # a new basket version, swapped at a boundary
        pcf.write_bytes(orjson.dumps(document))
        first.send_signal(signal.SIGHUP)
        send_ticks(mosquitto.port, f"ticks{tag}", 5, seed=2)
        wait_boundaries(client, history, 1)
        first.kill()  # SIGKILL: no clean stop, no END record
        first.wait(10)
        http_port = free_port()
        second = start(env, pcf, mosquitto, redis_server, "--http-port", str(http_port))
        wait_boundaries(client, history, 1)
        time.sleep(0.3)
        send_ticks(mosquitto.port, f"ticks{tag}", 6, seed=3)
        wait_boundaries(client, history, 1)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert "iopv_journal_dropped_total 0.0" in metrics and "iopv_journal_failed 0.0" in metrics
        written = next(line for line in metrics.splitlines() if line.startswith("iopv_journal_written_bytes_total"))
        assert float(written.split()[-1]) > 0
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=15)
        assert second.returncode == 0, err[-2000:]
        time.sleep(0.5)  # the last QoS 1 deliveries
    finally:
        collector.close()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    files = sorted(journal_dir.glob("*.iopvj"))
    assert len(files) == 1, "one file per session day, appended by the restarted process"
    kinds = [record.kind for record in JournalReader(str(files[0]))]
    assert fmt.READ in kinds, "the feed's messages are recorded one socket read at a time, as received"
    replay = subprocess.run([sys.executable, "-m", "iopv", "replay", "--journal", str(files[0])],
                            env=env, capture_output=True, timeout=120)
    err = replay.stderr.decode()
    assert replay.returncode == 0, err
    assert "2 session(s), 1 basket reload(s), 1 restart restore(s)" in err and " 0 different" in err
    replayed = replay.stdout.splitlines()
    # Every value MQTT delivered, every byte, is a replayed record.
    assert len(collector.payloads) > 20
    assert set(collector.payloads) <= set(replayed)
    # Every history entry in Redis (both processes) equals the replayed record of its fund and boundary.
    by_key = {}
    for line in replayed:
        record = orjson.loads(line)
        by_key[(record["fund"], record["ts"])] = record
    checked = 0
    for fund in ("F0", "F1", "F2", "F3", "CASH"):
        for _id, fields in client.xrange(f"iopv{tag}:{fund}:history"):
            fields = {k.decode(): _field(v) for k, v in fields.items()}
            assert fields.pop("instance") == f"j{tag}"  # Redis names the instance that wrote it
            assert {"fund": fund, **fields} == by_key[(fund, fields["ts"])]
            checked += 1
    assert checked >= 5 * 6
    versions = {orjson.loads(p)["basket"] for p in collector.payloads}
    assert len(versions) == 2, "the reload shows in what was published"
    # Explain one fund at a boundary of the restarted process.
    record = next(orjson.loads(p) for p in reversed(collector.payloads) if orjson.loads(p)["fund"] == "F1")
    explained = subprocess.run([sys.executable, "-m", "iopv", "explain", "F1", "--at", str(record["ts"] + 400_000_000),
                                "--journal", str(files[0]), "--json"], env=env, capture_output=True, timeout=120)
    assert explained.returncode == 0, explained.stderr.decode()
    found = orjson.loads(explained.stdout)
    assert found["boundary_ns"] == record["ts"] and found["equal"] and found["published"] == record["iopv"]
    total = Decimal(found["cash"]) + sum(Decimal(h["contribution"]) for h in found["holdings"])
    assert total == Decimal(found["sum"])
    prices = {h["symbol"]: Decimal(h["price"]) for h in found["holdings"]}
    prices.update({h["fx"]["pair"]: Decimal(h["fx"]["rate"]) for h in found["holdings"] if "fx" in h})
    assert Decimal(exact(document, prices)["F1"]) == Decimal(found["rounded"]) == Decimal(repr(record["iopv"]))
    assert any(h["source"] == "tick" for h in found["holdings"])
