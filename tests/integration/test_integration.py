"""End to end against real Mosquitto and Redis (throwaway servers on free ports, see conftest).

Ticks go in with a real MQTT client; values come back from the retained MQTT topics and from
Redis, and must equal the exact Decimal value of the formula rounded half-up to 4 decimals.
"""

from __future__ import annotations

import asyncio
import math
import time
from decimal import Decimal, getcontext

import numpy as np
import orjson
import redis.asyncio as aioredis

from iopv.core.constants import TickOutcome
from iopv.service.live import Service
from tests.support.live import (
    assert_valid,
    exact,
    make_basket,
    publish_all,
    read_retained,
    settings_for,
    tick,
    wait_for,
)

getcontext().prec = 60


def test_ticks_in_values_out_match_exact_reference(tmp_path, mosquitto, redis_server):
    document = make_basket(seed=7)
    settings = settings_for(tmp_path, document, mosquitto, redis_server)
    prefix = settings.mqtt.tick_topic_prefix
    rng = np.random.default_rng(11)
    symbols = sorted({h["symbol"] for f in document for h in f["holdings"]})
    base = time.time_ns()

    messages: list[tuple[str, bytes]] = []
    expected_prices: dict[str, Decimal] = {}
    last_ts: dict[str, int] = {}
    good = 0

    def accept(symbol, price, ts):
        if ts >= last_ts.get(symbol, -1):
            expected_prices[symbol] = Decimal(repr(price))
            last_ts[symbol] = ts

    for k in range(300):
        symbol = str(rng.choice(symbols))
        price = round(float(rng.uniform(1, 300)), int(rng.integers(0, 5)))
        ts = base + k * 1_000_000 + int(rng.integers(-3, 4)) * 5_000_000  # some arrive out of order
        if k % 10 == 0:
            batch = [tick(symbol, price, ts), tick(str(rng.choice(symbols)), 77.5, ts + 1)]
            messages.append((f"{prefix}/_batch", orjson.dumps(batch)))
            for t in batch:
                accept(t["symbol"], t["price"], t["ts"])
            good += 2
        else:
            messages.append((f"{prefix}/{symbol}", orjson.dumps(tick(symbol, price, ts))))
            accept(symbol, price, ts)
            good += 1
    # FX rate tick, and the topic standing in for a payload without a symbol.
    messages.append((f"{prefix}/EURUSD", orjson.dumps({"price": 1.1234, "ts": base + 10**9})))
    accept("EURUSD", 1.1234, base + 10**9)
    good += 1
    hostile = [
        b"{not json", b'{"symbol": "S001", "price": NaN, "ts": 1}', b'{"symbol": "S001", "price": "12.5"}',
        b'{"symbol": "S001", "price": true}', b'{"symbol": "S001", "price": 0}', b'{"symbol": "S001", "price": -3}',
        b'{"symbol": "S001"}', b'{"price": 10.0}', b'{"symbol": "S001", "price": 1e400}', b"[1, 2]",
        b'{"symbol": "S001", "price": 10.0, "ts": "yesterday"}',
    ]
    messages += [(f"{prefix}/_bad", payload) for payload in hostile]
    messages.append((f"{prefix}/NOPE", orjson.dumps(tick("NOPE", 5.0, base))))  # unknown: ignored

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        await publish_all("127.0.0.1",
                          mosquitto.port, messages)
        intake = service.engine.intake
        total = good + len(hostile) + 1 + 1  # "[1, 2]" is two rejected ticks
        await wait_for(lambda: intake.received + intake.pending >= total, what="all ticks received")
        after = time.time_ns()
        await wait_for(lambda: service.redis_sink.last_ts_ns > after and service.mqtt_sink.last_ts_ns > after,
                       what="a publication after the last tick on both sinks")
        await wait_for(lambda: service.redis_sink.published >= 3, what="three boundaries in Redis")
        counts = dict(zip(("accepted", "unknown", "out_of_order"), intake.counts[:3].tolist()))
        # Ticks stamped before a boundary the engine cut before they arrived (a slow start) are
        # applied all the same, counted late (event time: docs/methodology.md).
        counts["accepted"] += int(intake.counts[TickOutcome.LATE])
        rejected = intake.rejected
        mqtt_values = await read_retained("127.0.0.1", mosquitto.port, settings.mqtt.value_topic_prefix,
                                          len(document))
        r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        hashes = {f["fund"]: await r.hgetall(f"{settings.redis.key_prefix}:{f['fund']}") for f in document}
        history = await r.xrange(f"{settings.redis.key_prefix}:F0:history")
        await r.aclose()
        service.request_stop()
        assert await asyncio.wait_for(task, 5) == 0
        return counts, rejected, mqtt_values, hashes, history

    counts, rejected, mqtt_values, hashes, history = asyncio.run(scenario())
    reference = exact(document, expected_prices)
    assert counts["unknown"] == 1
    assert counts["accepted"] + counts["out_of_order"] == good
    assert counts["out_of_order"] > 0, "the tape was built to contain out-of-order ticks"
    assert rejected == len(hostile) + 1
    for fund, value in reference.items():
        assert f"{mqtt_values[fund]['iopv']:.4f}" == value, fund
        assert Decimal(hashes[fund]["iopv"]).quantize(Decimal("0.0001")) == Decimal(value), fund
        assert int(hashes[fund]["ts"]) == mqtt_values[fund]["ts"]
        assert mqtt_values[fund]["ts"] % settings.engine.interval_ns == 0
    assert reference["CASH"] == "2.4691"
    # One history entry per boundary, in order, each with the contract's fields.
    stamps = [int(fields["ts"]) for _, fields in history]
    assert len(stamps) >= 2 and stamps == sorted(stamps)
    assert all(b - a == settings.engine.interval_ns for a, b in zip(stamps, stamps[1:]))
    assert all(not math.isnan(float(fields["iopv"])) for _, fields in history)
    # Redis as published: each hash and history entry validates against its schema (iopv/schemas)
    for fields in [*hashes.values(), *(fields for _, fields in history)]:
        assert_valid("redis-value", fields)


def test_absent_redis_delays_neither_clock_nor_mqtt(tmp_path, mosquitto, redis_server):
    """Redis unreachable: boundaries keep coming, MQTT keeps publishing, Redis queue is bounded
    and what it drops is counted."""
    document = make_basket(seed=3)
    settings = settings_for(tmp_path, document, mosquitto, redis_server, interval_s=0.2)
    import dataclasses

    from iopv.localservers.servers import free_port

    dead = dataclasses.replace(settings.redis, url=f"redis://127.0.0.1:{free_port()}/0",
                               reconnect_min_s=0.05, reconnect_max_s=0.2, history_queue_cycles=3)
    settings = dataclasses.replace(settings, redis=dead,
                                   intake=dataclasses.replace(settings.intake, sink_queue_cycles=3))

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.sleep(2.2)
        cycles, published = service.engine.cycles, service.mqtt_sink.published
        dropped, queued = service.redis_sink.dropped, service.redis_sink.queued
        reconnects, missed = service.redis_sink.reconnects, service.clock.missed
        service.request_stop()
        started = time.monotonic()
        code = await asyncio.wait_for(task, 5)
        return cycles, published, dropped, queued, reconnects, missed, code, time.monotonic() - started

    cycles, published, dropped, queued, reconnects, missed, code, stop_s = asyncio.run(scenario())
    assert cycles >= 8, "the clock must keep its 0.2 s boundaries with Redis down"
    assert missed == 0
    assert published >= cycles - 1, "MQTT must keep publishing every boundary"
    assert queued == 3 and dropped == cycles - 3, "Redis queue bounded at 3, overflow counted"
    assert reconnects >= 2
    assert code == 0 and stop_s < 5
