"""Soak (marker ``slow``, run by ``make test-slow``): several minutes at a sustained tick rate
against real servers. Memory must stay flat and no queue may grow: the sinks keep up, nothing
is dropped, the staging batch and the incoming queue stay bounded."""

from __future__ import annotations

import asyncio
import os
import resource
import time
import uuid

import aiomqtt
import orjson
import pytest
from test_integration import make_basket, settings_for, wait_for

from iopv.service.live import Service

SOAK_S = float(os.environ.get("SOAK_S", "180"))
TICKS_PER_S = 2000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.timeout(SOAK_S + 120)
def test_soak_flat_memory_no_backlog(tmp_path, mosquitto, redis_server):
    document = make_basket(seed=1)
    settings = settings_for(tmp_path, document, mosquitto, redis_server, interval_s=0.5)
    symbols = sorted({h["symbol"] for f in document for h in f["holdings"]})
    prefix = settings.mqtt.tick_topic_prefix

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        samples = []
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"soak-{uuid.uuid4().hex[:6]}") as client:
            started = time.monotonic()
            k = 0
            next_sample = started
            while time.monotonic() - started < SOAK_S:
                batch = [{"symbol": symbols[(k + i) % len(symbols)], "price": 50.0 + (k + i) % 100 / 10,
                          "ts": time.time_ns()} for i in range(100)]
                await client.publish(f"{prefix}/_batch", orjson.dumps(batch))
                k += 100
                await asyncio.sleep(100 / TICKS_PER_S)
                if time.monotonic() >= next_sample:
                    next_sample += SOAK_S / 20
                    samples.append((rss_mb(), service.redis_sink.queued, service.mqtt_sink.queued,
                                    service.engine.intake.pending))
        await wait_for(lambda: service.engine.intake.received >= k * 0.99, timeout_s=30, what="ticks drained")
        service.request_stop()
        code = await asyncio.wait_for(task, 5)
        return code, samples, service, k

    code, samples, service, sent = asyncio.run(scenario())
    assert code == 0 and len(samples) >= 4
    warm = samples[len(samples) // 4][0]
    assert max(s[0] for s in samples[len(samples) // 4:]) < warm + 30, f"memory grew: {samples}"
    assert all(s[1] <= 2 and s[2] <= 2 for s in samples), f"sink backlog grew: {samples}"
    assert service.redis_sink.dropped == 0 and service.mqtt_sink.dropped == 0
    # The feed has no queue to overflow: every tick sent on loopback must have been decoded.
    assert service.engine.intake.received == sent
