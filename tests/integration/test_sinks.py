"""The sinks at more funds than one window or chunk: MQTT publishes every fund once, Redis writes
every fund once per boundary in order (also when a send fails part-way and is resumed), the
hiredis packing matches redis-py's, and a cancelled Redis sink finishes cancelling promptly."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import aiomqtt
import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from iopv.adapters.mqtt import sink as mqtt_sink_module
from iopv.adapters.mqtt.sink import MqttSink
from iopv.adapters.redis import sink as redis_sink_module
from iopv.adapters.redis.client import HiredisConnection
from iopv.adapters.redis.sink import RedisSink, field_args
from iopv.config import load_settings
from iopv.engine.codec import encode_record
from iopv.engine.publication import Publication
from tests.support.live import wait_for


def redis_fields(record: dict) -> dict[str, str]:
    """The README's rule for Redis fields, written plainly: every record field but the fund,
    strings as they are, anything else as its JSON text."""
    return {key: value if isinstance(value, str) else orjson.dumps(value).decode()
            for key, value in record.items() if key != "fund"}


def publication(ts_ns: int, funds: int) -> Publication:
    names = tuple(f"F{i:04d}" for i in range(funds))
    records = [{"fund": name, "ts": ts_ns, "iopv": 10.0 + i / 1e4, "coverage": 0.5, "stale": i % 3,
                "status": "ok", "flags": ["stale"] if i % 3 else [], "basket": "v1", "as_of": "2024-04-01"}
               for i, name in enumerate(names)]
    return Publication(ts_ns, names, records, [encode_record(r) for r in records])


def sink_settings(mosquitto, redis_server):
    tag = uuid.uuid4().hex[:8]
    return load_settings(environ={}, overrides={
        "mqtt": {"url": mosquitto.url, "value_topic_prefix": f"iopv{tag}"},
        "redis": {"url": redis_server.url, "key_prefix": f"iopv{tag}", "history_maxlen": 1000},
    })


def test_field_args_are_redis_fields_flattened_and_pack_like_redis_py():
    record = publication(7, 3).records[1] | {"market_price": 10.5, "premium_bps": -1.25, "note": "é"}
    args = field_args(record)
    expected = redis_fields(record)
    assert [a if isinstance(a, str) else a.decode() for a in args] == \
        [x for item in expected.items() for x in item]
    command = ("XADD", "iopv:F0001:history", "MAXLEN", "~", 1000, "*", *args)
    assert HiredisConnection().pack_command(*command) == [b"".join(Connection().pack_command(*command))]
    assert HiredisConnection().pack_command("CONFIG GET", "maxmemory") == \
        [b"".join(Connection().pack_command("CONFIG GET", "maxmemory"))]


def test_mqtt_sink_publishes_every_fund_beyond_one_window(mosquitto, redis_server, monkeypatch):
    monkeypatch.setattr(mqtt_sink_module, "PUBLISH_WINDOW", 7)
    settings = sink_settings(mosquitto, redis_server)
    funds = 50
    pub = publication(123_000_000, funds)

    async def scenario():
        sink = MqttSink(settings.mqtt, instance=f"t{uuid.uuid4().hex[:6]}", max_queued=4)
        task = asyncio.create_task(sink.run())
        await wait_for(lambda: sink.connected, what="mqtt sink connected")
        sink.offer(pub)
        await wait_for(lambda: sink.last_ts_ns == 123_000_000, what="publication sent")
        received = {}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"sub-{uuid.uuid4().hex[:6]}") as sub:
            await sub.subscribe(f"{settings.mqtt.value_topic_prefix}/+")
            async with asyncio.timeout(5):
                async for message in sub.messages:
                    received[str(message.topic)] = message.payload
                    if len(received) == funds:
                        break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return received, sink.published

    received, published = asyncio.run(scenario())
    prefix = settings.mqtt.value_topic_prefix
    assert published == 1
    assert received == {f"{prefix}/{f}": p for f, p in zip(pub.funds, pub.payloads)}


def test_redis_sink_writes_every_fund_in_order_across_chunks_and_resumes_a_failed_chunk(
        mosquitto, redis_server, monkeypatch):
    monkeypatch.setattr(redis_sink_module, "CHUNK_FUNDS", 4)
    settings = sink_settings(mosquitto, redis_server)
    # Pipeline mode (script mode's resume is tested in test_redis_script.py).
    settings = dataclasses.replace(settings, redis=dataclasses.replace(settings.redis, write_mode="pipeline"))
    prefix, funds = settings.redis.key_prefix, 10
    pubs = [publication(ts, funds) for ts in (1_000_000_000, 2_000_000_000, 3_000_000_000)]

    async def scenario():
        sink = RedisSink(settings.redis, max_queued=8, state_key=f"{prefix}:_state:t")
        sink.pending_state = b"state-1"
        task = asyncio.create_task(sink.run())
        await wait_for(lambda: sink.connected, what="redis sink connected")
        sink.offer(pubs[0])
        sink.offer(pubs[1])
        await wait_for(lambda: sink.last_ts_ns == 2_000_000_000, what="two publications written")
        # The third fails on its second chunk once: the first chunk must not be written twice.
        original = aioredis.client.Pipeline.execute
        calls = {"n": 0}

        async def flaky(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise ConnectionError("injected")
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(aioredis.client.Pipeline, "execute", flaky)
        sink.offer(pubs[2])
        await wait_for(lambda: sink.last_ts_ns == 3_000_000_000, what="third publication written")
        monkeypatch.setattr(aioredis.client.Pipeline, "execute", original)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            hashes = {f: await client.hgetall(f"{prefix}:{f}") for f in pubs[0].funds}
            history = {f: await client.xrange(f"{prefix}:{f}:history") for f in pubs[0].funds}
            state = await client.get(f"{prefix}:_state:t")
        finally:
            await client.aclose()
        return hashes, history, state, sink.reconnects, sink.pending_state

    hashes, history, state, reconnects, pending = asyncio.run(scenario())
    assert reconnects == 1
    for i, fund in enumerate(pubs[0].funds):
        assert hashes[fund] == redis_fields(pubs[2].records[i])
        assert [fields for _, fields in history[fund]] == [redis_fields(p.records[i]) for p in pubs]
    assert state == "state-1" and pending is None


@pytest.mark.parametrize("write_mode", ["script", "pipeline"])
def test_cancelled_redis_sink_finishes_within_a_bound_mid_send(mosquitto, redis_server, write_mode):
    settings = sink_settings(mosquitto, redis_server)
    settings = dataclasses.replace(settings, redis=dataclasses.replace(settings.redis, write_mode=write_mode))

    async def scenario():
        sink = RedisSink(settings.redis, max_queued=8)
        task = asyncio.create_task(sink.run())
        await wait_for(lambda: sink.connected, what="redis sink connected")
        durations = []
        for delay_s in (0.0, 0.001, 0.005, 0.02):
            sink.offer(publication(time.time_ns(), 2_000))
            await asyncio.sleep(delay_s)  # somewhere inside packing, writing or reading replies
            if task.done():
                break
            started = time.monotonic()
            task.cancel()
            await asyncio.wait([task], timeout=5)
            durations.append(time.monotonic() - started)
            assert task.done() and task.cancelled()
            task = asyncio.create_task(sink.run())
            await wait_for(lambda: sink.connected, what="redis sink reconnected")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return durations

    durations = asyncio.run(scenario())
    assert durations and max(durations) < 2.0
