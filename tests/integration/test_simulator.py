"""Tick simulator: deterministic random walk, and publishing to a real Mosquitto broker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid

import aiomqtt
import numpy as np
import orjson
import pytest

from iopv.demo.simulator import TRADING_DAY_NS, TickSimulator, publish_ticks

T0_NS = 1_091_194_200_000_000_000  # 2004-07-30 13:30 UTC, the 9:30 ET open


def _sim(seed: int = 7, n: int = 50, **kwargs) -> TickSimulator:
    symbols = [f"S{i:03d}" for i in range(n)]
    prices = np.linspace(5.0, 150.0, n)
    return TickSimulator(symbols, prices, seed=seed, ticks_per_s=kwargs.pop("ticks_per_s", 100.0),
                         **kwargs)


def _run(sim: TickSimulator, calls: int = 200, per_call: int = 7) -> list[dict]:
    ticks = []
    for k in range(calls):
        ticks += sim.next_ticks(T0_NS + k * 10_000_000, per_call)
    return ticks


def test_same_seed_same_ticks_other_seed_other_ticks():
    assert _run(_sim(seed=7)) == _run(_sim(seed=7))
    assert _run(_sim(seed=7)) != _run(_sim(seed=8))


def test_ticks_are_known_symbols_on_a_cent_grid_and_positive():
    sim = _sim(volatility_per_day=0.5)  # a wild walk, to push low prices towards the floor
    known = set(sim.symbols)
    ticks = _run(sim, calls=2000)
    assert len(ticks) == 2000 * 7
    for tick in ticks:
        assert set(tick) == {"symbol", "price", "ts"}
        assert tick["symbol"] in known
        assert tick["price"] >= 0.01
        assert tick["price"] == round(tick["price"], 2)
        assert len(repr(tick["price"]).split(".")[1]) <= 2  # prints as a two-decimal price
        assert isinstance(tick["ts"], int)


def test_no_symbol_twice_per_call_and_n_capped_at_universe():
    sim = _sim(n=20)
    ticks = sim.next_ticks(T0_NS, 50)
    assert sorted(t["symbol"] for t in ticks) == sorted(sim.symbols)
    assert sim.next_ticks(T0_NS, 0) == []


def test_move_scales_with_elapsed_time():
    # No time elapsed since the last move: prices stay put.
    sim = _sim(n=30)
    first = {t["symbol"]: t["price"] for t in sim.next_ticks(T0_NS, 30)}
    again = {t["symbol"]: t["price"] for t in sim.next_ticks(T0_NS, 30)}
    assert again == first
    # One trading day elapsed: log returns have the configured daily volatility.
    n = 4000
    sim = TickSimulator([f"X{i}" for i in range(n)], np.full(n, 1000.0), seed=3,
                        ticks_per_s=1e9, volatility_per_day=0.02)
    start = {t["symbol"]: t["price"] for t in sim.next_ticks(T0_NS, n)}
    later = {t["symbol"]: t["price"] for t in sim.next_ticks(T0_NS + TRADING_DAY_NS, n)}
    log_returns = np.log([later[s] / start[s] for s in start])
    assert np.std(log_returns) == pytest.approx(0.02, rel=0.05)
    assert abs(np.mean(log_returns)) < 0.002


def test_quotes_one_cent_either_side():
    sim = _sim(with_quotes=True)
    for tick in sim.next_ticks(T0_NS, 20):
        assert tick["ask"] == pytest.approx(tick["price"] + 0.01)
        assert tick["bid"] == pytest.approx(max(tick["price"] - 0.01, 0.01))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError):
        TickSimulator(["A", "B"], np.array([1.0]), seed=1, ticks_per_s=1)
    with pytest.raises(ValueError):
        TickSimulator(["A"], np.array([0.0]), seed=1, ticks_per_s=1)
    with pytest.raises(ValueError):
        TickSimulator(["A"], np.array([1.0]), seed=1, ticks_per_s=0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mosquitto_port(mosquitto) -> int:
    """The session's throwaway broker (tests/conftest.py); topics here are the demo's own."""
    return mosquitto.port


def test_publish_ticks_to_mosquitto(mosquitto_port):
    sim = _sim(n=300, seed=11, ticks_per_s=200.0, batch_size=5)
    prefix = f"ticks{uuid.uuid4().hex[:8]}"
    known = set(sim.symbols)

    async def scenario():
        received: list[tuple[str, object]] = []
        async with aiomqtt.Client("127.0.0.1", mosquitto_port) as sub:
            await sub.subscribe(f"{prefix}/#")

            async def collect():
                async for message in sub.messages:
                    received.append((str(message.topic), orjson.loads(message.payload)))

            collector = asyncio.create_task(collect(), name="collector")
            stop = asyncio.Event()
            publisher = asyncio.create_task(
                publish_ticks(sim, hostname="127.0.0.1", port=mosquitto_port, stop=stop,
                              topic_prefix=prefix, batch_every=10), name="publisher")
            await asyncio.sleep(1.0)
            stop.set()
            stopped_at = time.monotonic()
            await asyncio.wait_for(publisher, timeout=2.0)
            stop_latency_s = time.monotonic() - stopped_at
            # QoS 0 on loopback: every published tick should arrive; allow time to drain.
            deadline = time.monotonic() + 2.0
            while (sum(1 if isinstance(p, dict) else len(p) for _, p in received)
                   < sim.published_ticks and time.monotonic() < deadline):
                await asyncio.sleep(0.02)
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        return received, stop_latency_s

    received, stop_latency_s = asyncio.run(scenario())
    assert stop_latency_s < 1.0
    assert 100 <= sim.published_ticks <= 300  # ~200 ticks/s for ~1 s
    singles = [(topic, p) for topic, p in received if isinstance(p, dict)]
    batches = [(topic, p) for topic, p in received if isinstance(p, list)]
    assert singles and batches
    assert all(topic == f"{prefix}/{p['symbol']}" for topic, p in singles)
    assert all(topic == f"{prefix}/_batch" and len(p) == 5 for topic, p in batches)
    ticks = [p for _, p in singles] + [t for _, p in batches for t in p]
    assert len(ticks) == sim.published_ticks
    assert len(received) == sim.published_messages
    now_ns = time.time_ns()
    for tick in ticks:
        assert tick["symbol"] in known
        assert tick["price"] > 0 and tick["price"] == round(tick["price"], 2)
        assert isinstance(tick["ts"], int) and 0 < now_ns - tick["ts"] < 30 * 10**9


def test_publish_ticks_returns_promptly_while_broker_is_down():
    sim = _sim()
    port = _free_port()  # nothing listens here: every connect is refused, so it backs off

    async def scenario():
        stop = asyncio.Event()
        publisher = asyncio.create_task(
            publish_ticks(sim, hostname="127.0.0.1", port=port, stop=stop), name="publisher")
        await asyncio.sleep(0.7)
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(publisher, timeout=2.0)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.0
    assert sim.published_ticks == 0
