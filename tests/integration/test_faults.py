"""Fault injection with real servers: Redis and Mosquitto are stopped and restarted (same port)
while the engine runs. The engine keeps computing, the other sink keeps publishing, and on the
way back it re-subscribes, republishes the latest values, and flushes the Redis history without
a gap. Also: the retained status topic, its last will, and the HTTP health endpoint.

These tests own their servers (a fresh pair per test), so restarting them disturbs no one else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aiomqtt
import orjson
import pytest
import redis.asyncio as aioredis
from test_integration import make_basket, settings_for, wait_for

from iopv.localservers.servers import MosquittoServer, RedisServer
from iopv.service.live import Service
from tests.support.live import stopped_on_exit


@pytest.fixture
def own_servers():
    directory = Path(tempfile.mkdtemp(prefix="iopv-faults-"))
    mosquitto = MosquittoServer(directory).start()
    redis_server = RedisServer(directory, persistent=True).start()
    with stopped_on_exit(mosquitto, redis_server, directory=directory):
        yield mosquitto, redis_server


def fast(settings, **ops):
    return dataclasses.replace(
        settings,
        mqtt=dataclasses.replace(settings.mqtt, reconnect_min_s=0.05, reconnect_max_s=0.3),
        redis=dataclasses.replace(settings.redis, reconnect_min_s=0.05, reconnect_max_s=0.3),
        ops=dataclasses.replace(settings.ops, **ops))


async def retained(port: int, topic: str, timeout_s: float = 5.0) -> dict:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"sub-{uuid.uuid4().hex[:6]}") as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                return orjson.loads(message.payload)


async def send_tick(port: int, topic: str, payload: dict) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"pub-{uuid.uuid4().hex[:6]}") as client:
        await client.publish(topic, orjson.dumps(payload), qos=1)


def test_redis_restart_history_has_no_gap_and_mqtt_keeps_publishing(tmp_path, own_servers):
    mosquitto, redis_server = own_servers
    settings = fast(settings_for(tmp_path, make_basket(seed=5), mosquitto, redis_server, interval_s=0.2))
    interval = settings.engine.interval_ns

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await wait_for(lambda: service.redis_sink.published >= 3, what="three boundaries in Redis")
        await asyncio.to_thread(redis_server.stop)
        cycles, mqtt_sent = service.engine.cycles, service.mqtt_sink.published
        await asyncio.sleep(1.5)
        during = (service.engine.cycles - cycles, service.mqtt_sink.published - mqtt_sent,
                  service.redis_sink.queued, service.redis_sink.connected)
        await asyncio.to_thread(redis_server.start)
        await wait_for(lambda: service.redis_sink.connected and service.redis_sink.queued == 0
                       and service.redis_sink.last_ts_ns >= service.engine.last_publication.ts_ns,
                       what="Redis backlog flushed")
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        history = await r.xrange(f"{settings.redis.key_prefix}:F0:history")
        await r.aclose()
        service.request_stop()
        code = await asyncio.wait_for(task, 5)
        return during, history, service.redis_sink.dropped, service.redis_sink.reconnects, code

    during, history, dropped, reconnects, code = asyncio.run(scenario())
    cycles, mqtt_sent, queued, connected = during
    assert cycles >= 5, "the engine keeps computing while Redis is down"
    assert mqtt_sent >= cycles - 1, "MQTT keeps publishing while Redis is down"
    assert queued >= 5 and not connected
    stamps = [int(fields["ts"]) for _, fields in history]
    assert all(b - a == interval for a, b in zip(stamps, stamps[1:])), "history has a gap"
    assert len(stamps) >= 10 and dropped == 0 and reconnects >= 1 and code == 0


def test_mosquitto_restart_resubscribes_and_republishes_at_once(tmp_path, own_servers):
    mosquitto, redis_server = own_servers
    settings = fast(settings_for(tmp_path, make_basket(seed=6), mosquitto, redis_server, interval_s=0.3))
    prefix, ticks = settings.mqtt.value_topic_prefix, settings.mqtt.tick_topic_prefix
    symbol = make_basket(seed=6)[0]["holdings"][0]["symbol"]

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        await wait_for(lambda: service.mqtt_sink.published >= 1, what="first MQTT publication")
        await asyncio.to_thread(mosquitto.stop)
        redis_sent = service.redis_sink.published
        await asyncio.sleep(1.2)
        redis_during = service.redis_sink.published - redis_sent
        await asyncio.to_thread(mosquitto.start)
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        # The restarted broker lost every retained message: the values must be back at once.
        started = time.monotonic()
        value = await retained(mosquitto.port, f"{prefix}/F0")
        status = await retained(mosquitto.port, f"{prefix}/_status/{settings.engine.instance}")
        back_s = time.monotonic() - started
        # Re-subscribed: a new tick moves the value.
        await send_tick(mosquitto.port, f"{ticks}/{symbol}", {"symbol": symbol, "price": 9999.0,
                                                             "ts": time.time_ns()})
        await wait_for(lambda: service.engine.intake.accepted >= 1, what="tick after the restart")
        reconnects = service.feed.reconnects, service.mqtt_sink.reconnects
        service.request_stop()
        code = await asyncio.wait_for(task, 5)
        return redis_during, value, status, back_s, reconnects, code

    redis_during, value, status, back_s, reconnects, code = asyncio.run(scenario())
    assert redis_during >= 2, "Redis keeps publishing while the broker is down"
    assert value["fund"] == "F0" and back_s < 2
    assert status["status"] == "online"
    assert reconnects[0] >= 1 and reconnects[1] >= 1 and code == 0


def test_status_topic_health_endpoint_and_offline_on_stop(tmp_path, own_servers):
    mosquitto, redis_server = own_servers
    settings = fast(settings_for(tmp_path, make_basket(seed=8), mosquitto, redis_server, interval_s=0.2),
                    http_port=1, feed_silence_s=0.5)  # any port turns HTTP on; 0 is set below
    status_topic = f"{settings.mqtt.value_topic_prefix}/_status/{settings.engine.instance}"
    symbol = make_basket(seed=8)[0]["holdings"][0]["symbol"]

    def get(port, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    async def scenario():
        service = Service(settings)
        service.http.port = 0  # a free port, read back after start
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        await wait_for(lambda: service.mqtt_sink.connected and service.redis_sink.connected, what="sinks up")
        port = service.http.port
        online = await retained(mosquitto.port, status_topic)
        await send_tick(mosquitto.port, f"{settings.mqtt.tick_topic_prefix}/{symbol}",
                        {"symbol": symbol, "price": 12.5, "ts": time.time_ns()})
        await send_tick(mosquitto.port, f"{settings.mqtt.tick_topic_prefix}/_bad", {"price": 1.0})
        # A trading-status message is well-formed: counted by outcome, never as a rejection.
        await send_tick(mosquitto.port, f"{settings.mqtt.tick_topic_prefix}/{symbol}",
                        {"symbol": symbol, "status": "halted", "ts": time.time_ns()})
        await wait_for(lambda: service.engine.intake.received >= 3, what="ticks")
        await wait_for(lambda: service.redis_sink.published >= 2, what="publications")
        ready = await asyncio.to_thread(get, port, "/readyz")
        metrics = await asyncio.to_thread(get, port, "/metrics")
        health = await asyncio.to_thread(get, port, "/healthz")
        await wait_for(lambda: service.feed.silent, what="feed reported silent")
        silent = await asyncio.to_thread(get, port, "/readyz")
        missing = await asyncio.to_thread(get, port, "/nope")
        service.request_stop()
        code = await asyncio.wait_for(task, 5)
        offline = await retained(mosquitto.port, status_topic)
        return online, ready, metrics, health, silent, missing, offline, code

    online, ready, metrics, health, silent, missing, offline, code = asyncio.run(scenario())
    assert online["status"] == "online"
    assert ready[0] == 200 and json.loads(ready[1])["ready"] is True
    assert health[0] == 200
    assert silent[0] == 503 and json.loads(silent[1])["checks"]["feed_not_silent"] is False
    assert missing[0] == 404
    body = metrics[1]
    for needle in ('iopv_ticks_total{outcome="accepted"} 1.0', 'iopv_ticks_total{outcome="missing_symbol"} 1.0',
                   'iopv_ticks_total{outcome="status"} 1.0', "iopv_ticks_rejected_total 1.0",
                   "iopv_cycle_duration_seconds_count", 'iopv_publish_latency_seconds_count{sink="redis"}',
                   'iopv_sink_queue_depth{sink="mqtt"}', 'iopv_reconnects_total{connection="ticks"}',
                   'iopv_symbols{status="never_ticked"}', 'iopv_connected{connection="redis"} 1.0',
                   "iopv_redis_skipped_writes_total 0.0"):
        assert needle in body, needle
    assert offline["status"] == "offline" and offline["reason"] == "shutdown" and code == 0


def test_restarted_engine_publishes_the_same_values_and_clean_start_does_not(tmp_path, own_servers):
    mosquitto, redis_server = own_servers
    document = make_basket(seed=9)
    settings = fast(settings_for(tmp_path, document, mosquitto, redis_server, interval_s=0.2))
    symbols = sorted({h["symbol"] for f in document for h in f["holdings"]})
    ticks = [{"symbol": s, "price": 100.0 + k / 7, "ts": time.time_ns()} for k, s in enumerate(symbols)]

    async def first_values(service_settings, send=False):
        service = Service(service_settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        if send:
            await send_tick(mosquitto.port, f"{service_settings.mqtt.tick_topic_prefix}/_batch", ticks)
            # Stamped before the service started: after a slow start's first cut they are late
            # (applied, counted from the next boundary), which is as good here.
            intake = service.engine.intake
            await wait_for(lambda: intake.accepted + intake.late == len(ticks), what="ticks applied")
            after = time.time_ns()
            await wait_for(lambda: service.redis_sink.last_ts_ns > after, what="publication after ticks")
        else:
            await wait_for(lambda: service.engine.last_publication is not None, what="first publication")
        publication = service.engine.last_publication
        service.request_stop()
        assert await asyncio.wait_for(task, 5) == 0
        return [r["iopv"] for r in publication.records], service.restored_symbols

    async def scenario():
        before, _ = await first_values(settings, send=True)
        restored, n_restored = await first_values(settings)
        clean, n_clean = await first_values(fast(settings, restore_state=False))
        return before, restored, n_restored, clean, n_clean

    before, restored, n_restored, clean, n_clean = asyncio.run(scenario())
    assert restored == before, "a restarted engine must publish what it published before"
    assert n_restored >= len(symbols) and n_clean == 0
    assert clean != before, "a clean start goes back to previous closes"
