"""Run the real service on the throwaway Mosquitto and Redis and keep everything it published:
every MQTT message on its value, real-time and status topics (from a subscriber connected
before it starts and after it stops), and its Redis hashes and history streams. Tests of the
readers (history, schemas) look at what a subscriber really receives, not at what the code
means to send."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

import aiomqtt
import orjson
import redis.asyncio as aioredis

from iopv.service.live import Service
from tests.support.live import make_basket, publish_all, settings_for, wait_for


@dataclasses.dataclass
class Captured:
    settings: object
    document: list[dict]
    #: (topic, payload, retained) in arrival order
    messages: list[tuple[str, bytes, bool]]
    #: fund -> the latest-value hash (str fields)
    hashes: dict[str, dict[str, str]]
    #: fund -> the history stream's entries (id, fields)
    streams: dict[str, list[tuple[str, dict[str, str]]]]
    #: the boundaries published (int ns), in order
    boundaries: list[int]

    def on(self, prefix: str) -> list[tuple[str, dict]]:
        """(topic, decoded payload) of the messages under ``prefix/``."""
        return [(topic, orjson.loads(payload)) for topic, payload, _ in self.messages
                if topic.startswith(prefix + "/") and payload]  # an empty payload clears a retained topic


def rich_basket(seed: int) -> list[dict]:
    """``make_basket`` plus every optional field the publication can carry: vendor fields, as_of,
    a fund that ticks itself (market price, premium)."""
    document = make_basket(seed)
    first = document[0]
    first.update({"name": "Test fund zero", "as_of": "2024-12-06", "total_cash": 1234.5,
                  "shares_outstanding": 957950000, "prior_nav": float(first["holdings"][0]["price"])})
    return document


def capture_live_service(tmp_path: Path, mosquitto, redis_server, *, boundaries: int = 3,
                         seed: int = 21) -> Captured:
    document = rich_basket(seed)
    settings = settings_for(tmp_path, document, mosquitto, redis_server, interval_s=0.5)
    rt_prefix = f"rt{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(settings, realtime=dataclasses.replace(
        settings.realtime, enabled=True, throttle_ms=0.0, topic_prefix=rt_prefix))
    values = settings.mqtt.value_topic_prefix
    ticks = settings.mqtt.tick_topic_prefix
    symbols = sorted({h["symbol"] for f in document for h in f["holdings"]})

    async def scenario() -> Captured:
        messages: list[tuple[str, bytes, bool]] = []
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"cap-{uuid.uuid4().hex[:6]}") as sub:
            await sub.subscribe(f"{values}/#", qos=1)
            await sub.subscribe(f"{rt_prefix}/#", qos=1)

            async def collect():
                async for message in sub.messages:
                    messages.append((message.topic.value, bytes(message.payload), bool(message.retain)))

            collector = asyncio.create_task(collect())
            service = Service(settings)
            task = asyncio.create_task(service.run(handle_signals=False))
            await asyncio.wait_for(service.feed.subscribed.wait(), 10)
            now = time.time_ns()
            batch = [(f"{ticks}/{s}", orjson.dumps({"symbol": s, "price": 10.0 + k / 8, "ts": now + k}))
                     for k, s in enumerate(symbols[:12])]
            batch.append((f"{ticks}/F0", orjson.dumps({"symbol": "F0", "price": 12.34, "ts": now})))  # market price
            batch.append((f"{ticks}/{symbols[0]}", orjson.dumps({"symbol": symbols[0], "status": "halted",
                                                                 "ts": now + 100})))
            await publish_all("127.0.0.1", mosquitto.port, batch)
            start = service.redis_sink.published
            await wait_for(lambda: service.redis_sink.published >= start + boundaries, what="boundaries in Redis")
            service.request_stop()
            assert await asyncio.wait_for(task, 5) == 0
            await asyncio.sleep(0.3)  # the offline status
            collector.cancel()
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        prefix = settings.redis.key_prefix
        hashes = {f["fund"]: await r.hgetall(f"{prefix}:{f['fund']}") for f in document}
        streams = {f["fund"]: await r.xrange(f"{prefix}:{f['fund']}:history") for f in document}
        await r.aclose()
        stamps = [int(fields["ts"]) for _, fields in streams[document[0]["fund"]]]
        return Captured(settings, document, messages, hashes, streams, stamps)

    return asyncio.run(scenario())
