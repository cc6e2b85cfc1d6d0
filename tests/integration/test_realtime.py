"""Real-time mode: per-fund throttling, values equal to a full
valuation at that instant (and to the exact Decimal reference), end to end over Mosquitto."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from decimal import Decimal

import aiomqtt
import orjson

from iopv.config import load_settings
from iopv.core.universe import build_universe
from iopv.engine.cycle import Engine
from iopv.engine.realtime import RealtimePublisher
from iopv.service.live import Service
from tests.support.live import CollectingSink as Collector
from tests.support.live import exact, make_basket, settings_for


def engine_for(document, **realtime) -> tuple[Engine, RealtimePublisher, Collector]:
    settings = load_settings(environ={}, overrides={"engine": {"calendar": "always"}})
    engine = Engine(build_universe(document), settings)
    sink = Collector()
    publisher = RealtimePublisher(engine, sink, throttle_ms=realtime.get("throttle_ms", 0.0))
    engine.intake.on_applied.append(publisher.on_applied)
    return engine, publisher, sink


def test_a_tick_publishes_exactly_the_funds_it_moves_with_the_full_valuation():
    document = make_basket(seed=9)
    engine, publisher, sink = engine_for(document)
    symbol = document[0]["holdings"][0]["symbol"]
    holders = {f["fund"] for f in document if any(h["symbol"] == symbol for h in f["holdings"])}
    engine.intake.decode(orjson.dumps({"symbol": symbol, "price": 123.4567, "ts": time.time_ns()}))
    engine.intake.flush()
    assert len(sink.publications) == 1
    publication = sink.publications[0]
    assert set(publication.funds) == holders
    full = engine.valuer.frame(engine.book, publication.ts_ns, 0)
    for fund, record in zip(publication.funds, publication.records):
        f = engine.universe.funds.index(fund)
        assert record["iopv"] == full.values[f]
        assert record["realtime"] is True and record["ts"] == publication.ts_ns
    reference = exact(document, {symbol: Decimal("123.4567")})
    assert {r["fund"]: f"{r['iopv']:.4f}" for r in publication.records} == {f: reference[f] for f in holders}


def test_unknown_and_rejected_ticks_publish_nothing():
    engine, publisher, sink = engine_for(make_basket(seed=9))
    for payload in (b'{"symbol": "NOPE", "price": 1.0}', b'{"symbol": "S007", "price": -1}', b"{bad"):
        engine.intake.decode(payload)
    engine.intake.flush()
    assert sink.publications == [] and publisher.dirty.sum() == 0


def test_throttle_holds_a_fund_until_its_window_ends_and_keeps_the_last_move():
    engine, publisher, sink = engine_for(make_basket(seed=9), throttle_ms=1000.0)
    t0 = time.time_ns()
    engine.intake.decode(orjson.dumps({"symbol": "S007", "price": 50.0, "ts": t0}))
    engine.intake.flush()
    first = len(sink.publications)
    assert first == 1
    engine.intake.decode(orjson.dumps({"symbol": "S007", "price": 60.0, "ts": t0 + 1}))
    engine.intake.flush()
    assert len(sink.publications) == first, "inside the window: held, not published"
    assert publisher.dirty.any(), "held funds stay marked"
    assert publisher.step(now_ns=time.time_ns()) == 0
    published = publisher.step(now_ns=time.time_ns() + 2_000_000_000)
    assert published == len(sink.publications[0].funds)
    engine_value = engine.valuer.frame(engine.book, 0, 0).values
    for fund, record in zip(sink.publications[-1].funds, sink.publications[-1].records):
        assert record["iopv"] == engine_value[engine.universe.funds.index(fund)], "the held value is the latest"


def test_realtime_values_over_mosquitto(tmp_path, mosquitto, redis_server):
    document = make_basket(seed=13)
    settings = settings_for(tmp_path, document, mosquitto, redis_server, interval_s=60.0)
    rt_prefix = f"rt{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(settings, realtime=dataclasses.replace(
        settings.realtime, enabled=True, throttle_ms=50.0, topic_prefix=rt_prefix))
    symbol = document[0]["holdings"][0]["symbol"]
    holders = {f["fund"] for f in document if any(h["symbol"] == symbol for h in f["holdings"])}
    assert holders

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        received: dict[str, dict] = {}
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"rt-{uuid.uuid4().hex[:6]}") as client:
            await client.subscribe(f"{rt_prefix}/#")
            sent = time.monotonic()
            await client.publish(f"{settings.mqtt.tick_topic_prefix}/{symbol}",
                                 orjson.dumps({"symbol": symbol, "price": 99.99}), qos=1)
            async with asyncio.timeout(10):
                async for message in client.messages:
                    if "/_status/" in message.topic.value:
                        continue
                    record = orjson.loads(message.payload)
                    received[record["fund"]] = record
                    if set(received) >= holders:
                        break
            latency = time.monotonic() - sent
        service.request_stop()
        assert await asyncio.wait_for(task, 5) == 0
        return received, latency

    received, latency = asyncio.run(scenario())
    reference = exact(document, {symbol: Decimal("99.99")})
    assert set(received) == holders, "only the funds holding the symbol publish"
    for fund, record in received.items():
        assert f"{record['iopv']:.4f}" == reference[fund] and record["realtime"] is True
    # With a 60 s interval no boundary could have produced these: they are real-time values.
    assert latency < 5.0


def test_late_and_held_ticks_reach_the_realtime_values_when_the_book_takes_them():
    """Event time: a tick held for the next boundary moves the real-time value at the cut that
    applies it; a late tick (after its boundary's cut) moves it at once, like an accepted one."""
    document = make_basket(seed=9)
    engine, publisher, sink = engine_for(document)
    other = next(h["symbol"] for h in document[0]["holdings"] if h["symbol"] != "S007")
    b0 = (time.time_ns() // 1_000_000_000 + 1) * 1_000_000_000
    engine.open(b0)
    engine.intake.decode(orjson.dumps({"symbol": "S007", "price": 50.0, "ts": b0 + 1}), "ticks/S007", b0)
    engine.intake.flush()
    assert sink.publications == [] and engine.intake.held == 1  # held: the book has not taken it
    engine.cycle(b0)  # the cut applies it
    assert len(sink.publications) == 1
    engine.intake.decode(orjson.dumps({"symbol": other, "price": 60.0, "ts": b0 - 2}), f"ticks/{other}", b0 + 3)
    engine.intake.flush()
    assert engine.intake.late == 1 and len(sink.publications) == 2
    engine_value = engine.valuer.frame(engine.book, 0, 0).values
    for fund, record in zip(sink.publications[-1].funds, sink.publications[-1].records):
        assert record["iopv"] == engine_value[engine.universe.funds.index(fund)]
