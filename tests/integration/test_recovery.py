"""The service's side of whole books against a real Redis (``iopv.service.recovery``): the start
decision and the shard's first-tick mark, and a state transfer's choice and merge."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson

from iopv.adapters.redis import state as redis_state
from iopv.config import load_settings
from iopv.core.constants import DAY_NS
from iopv.core.universe import build_universe
from iopv.engine import restart
from iopv.engine.cycle import Engine
from iopv.service.recovery import Recovery

S = 1_000_000_000
MS = 1_000_000


def basket() -> list[dict]:
    return [{"fund": "F", "creation_unit": 1, "currency": "USD", "cash": 0.0,
             "holdings": [{"symbol": s, "shares": 1, "price": p} for s, p in (("AA", 10.0), ("BB", 20.0))]}]


def replica(redis_server, prefix: str, instance: str) -> tuple[Engine, Recovery]:
    settings = load_settings(environ={}, overrides={
        "engine": {"calendar": "always", "interval_s": 1.0, "instance": instance},
        "redis": {"url": redis_server.url, "key_prefix": prefix}})
    engine = Engine(build_universe(basket()), settings)
    return engine, Recovery(settings, engine)


def test_a_first_start_is_whole_unless_a_peer_received_ticks_before_it_subscribed(redis_server):
    async def scenario():
        prefix = f"rec{uuid.uuid4().hex[:6]}"
        _, early = replica(redis_server, prefix, "early")
        engine, late = replica(redis_server, prefix, "late")
        early.mark_settle_s = late.mark_settle_s = 0.0
        # Both are first starts: nothing of this session in Redis.
        assert await early.start(restored=False) and await late.start(restored=False)
        assert not engine.health.whole  # not yet: until subscribed and checked
        t0 = time.time_ns() - 10 * MS
        early.resumed(t0)
        early.first_message_ns = lambda: t0 + MS  # "early" got a tick...
        await early._mark_first_tick()
        late.resumed(t0 + 5 * MS)  # ... before "late" subscribed
        await late._check_first_start()
        assert not engine.health.whole and engine.health.reason == "restart"
        # "early" itself subscribed before its first tick: whole.
        await early._check_first_start()
        assert early.health.whole and early.health.regained["first"] == 1
        # A mark of the day stays the first one a replica set.
        early.first_message_ns = lambda: time.time_ns()
        early._marked_day = None
        await early._mark_first_tick()
        day = time.time_ns() // DAY_NS
        assert await redis_state.first_tick(late.settings, day) < late.health.gap_end_ns

    asyncio.run(scenario())


def test_subscribed_before_any_tick_is_whole_and_a_restart_is_not(redis_server):
    async def scenario():
        prefix = f"rec{uuid.uuid4().hex[:6]}"
        engine, first = replica(redis_server, prefix, "a")
        first.mark_settle_s = 0.0
        assert await first.start(restored=False)
        first.resumed(time.time_ns())
        await first._check_first_start()
        assert engine.health.whole
        other, restarted = replica(redis_server, prefix, "b")
        assert not await restarted.start(restored=True)
        assert not other.health.whole and other.health.reason == "restart"

    asyncio.run(scenario())


def test_a_transfer_takes_only_a_whole_peers_state_of_a_boundary_after_the_gap(redis_server):
    async def scenario():
        prefix = f"rec{uuid.uuid4().hex[:6]}"
        peer_engine, peer = replica(redis_server, prefix, "peer")
        engine, recovering = replica(redis_server, prefix, "rec")
        await peer.start(restored=False)
        await recovering.start(restored=True)  # a restart: not whole
        now = time.time_ns()
        boundary = now // S * S
        engine.open(boundary + S)
        recovering.resumed(boundary - S // 2)  # subscribed half a second before the boundary
        # Our book: AA ticked at boundary - 2 s (before the gap), BB at boundary + 0.1 s (after it).
        engine.book.prices[engine.book.index["AA"]] = 11.0
        engine.book.last_ts[engine.book.index["AA"]] = boundary - 2 * S
        engine.book.prices[engine.book.index["BB"]] = 22.0
        engine.book.last_ts[engine.book.index["BB"]] = boundary + S // 10
        # The peer's book of the boundary: AA ticked later than ours, BB earlier.
        peer_engine.book.prices[peer_engine.book.index["AA"]] = 12.0
        peer_engine.book.last_ts[peer_engine.book.index["AA"]] = boundary - S
        peer_engine.book.prices[peer_engine.book.index["BB"]] = 21.0
        peer_engine.book.last_ts[peer_engine.book.index["BB"]] = boundary - S
        client = redis_state.reader_client(peer.settings.redis)
        try:
            state_key = redis_state.state_key(peer.settings)
            # Not whole, or before the gap: not taken.
            for whole, ts in ((False, boundary), (True, boundary - S)):
                await client.set(state_key, restart.snapshot(peer_engine.book, ts, health={"whole": whole}))
                assert not await recovering.step()
            await client.set(state_key, restart.snapshot(peer_engine.book, boundary, health={"whole": True},
                                                         instance="peer"))
            assert await recovering.step()
        finally:
            await client.aclose()
        assert engine.health.whole and engine.health.regained["transfer"] == 1
        assert engine.book.price_of("AA") == 12.0  # the peer's newer tick
        assert engine.book.price_of("BB") == 22.0  # ours, newer than the peer's

    asyncio.run(scenario())


def test_snapshot_info_and_held_ticks_round_trip():
    engine = Engine(build_universe(basket()), load_settings(environ={}, overrides={"engine": {"calendar": "always"}}))
    engine.open(10 * S)
    engine.intake.decode(orjson.dumps({"symbol": "BB", "price": 21.5, "ts": 10 * S + MS}), "ticks/BB", 10 * S)
    engine.intake.flush()
    data = restart.snapshot(engine.book, 10 * S, health=engine.health.state(), instance="x",
                            held=engine.intake.held_ticks())
    assert restart.state_info(data) == {"ts": 10 * S, "whole": True, "instance": "x", "recovering": None,
                                        "gap_end": None, "last_tick": None}  # BB's tick is held, not applied
    other = Engine(build_universe(basket()), load_settings(environ={}, overrides={"engine": {"calendar": "always"}}))
    other.open(10 * S)
    other.intake.restore_held(*restart.held_arrays(other.book, data))
    other.cycle(10 * S)
    assert other.book.price_of("BB") == 21.5 and other.intake.held == 0


def test_a_peer_that_published_only_previous_closes_does_not_make_a_first_start_recover(redis_server):
    async def scenario():
        prefix = f"rec{uuid.uuid4().hex[:6]}"
        peer_engine, peer = replica(redis_server, prefix, "peer")
        _, late = replica(redis_server, prefix, "late")
        await peer.start(restored=False)
        client = redis_state.reader_client(peer.settings.redis)
        now = time.time_ns()
        try:
            key = redis_state.state_key(peer.settings)
            await client.set(key, restart.snapshot(peer_engine.book, now // S * S, health={"whole": True}))
            assert await late.start(restored=False)  # a published boundary, but no tick yet
            peer_engine.book.last_ts[peer_engine.book.index["AA"]] = now - S
            await client.set(key, restart.snapshot(peer_engine.book, now // S * S, health={"whole": True}))
            _, later = replica(redis_server, prefix, "later")
            assert not await later.start(restored=False)  # the peer has this session's ticks
        finally:
            await client.aclose()

    asyncio.run(scenario())
