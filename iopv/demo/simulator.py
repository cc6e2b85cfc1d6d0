"""Random-walk tick simulator for the demo: deterministic prices, published over MQTT.

`TickSimulator` moves a random subset of symbols per call with a geometric random walk whose
variance grows with the time since each symbol last moved, so a symbol that ticks rarely jumps
further, as real quotes do. It never touches the network and is deterministic for a given seed
and sequence of calls. `publish_ticks` paces it with the event-loop clock and publishes the ticks
in the interface-contract format (``<prefix>/<SYMBOL>`` objects, ``<prefix>/_batch`` arrays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time

import aiomqtt
import numpy as np
import orjson

from iopv.core import names

log = logging.getLogger(__name__)

TRADING_DAY_NS = int(6.5 * 3600 * 1e9)  # 9:30 a.m. to 4:00 p.m. ET
_MIN_WAKE_S = 0.005  # above ~200 ticks/s, send several ticks per wakeup instead of sleeping less
_MAX_BACKLOG_S = 1.0  # after a stall, drop ticks older than this instead of bursting them out
_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.2, 5.0
_STOP_GRACE_S = 0.3  # per phase: clean disconnect, then cancellation (0.6 s at worst)


class TickSimulator:
    """Geometric random walk over a universe of symbols, on a one-cent price grid.

    `prices` are the starting prices (e.g. previous closes). `ticks_per_s` is the publish rate
    `publish_ticks` aims for; `batch_size` is the number of ticks in each `_batch` message.
    `published_ticks` and `published_messages` are counted by `publish_ticks`.
    """

    def __init__(self, symbols: list[str], prices: np.ndarray, *, seed: int, ticks_per_s: float,
                 volatility_per_day: float = 0.02, batch_size: int = 1,
                 with_quotes: bool = False) -> None:
        fair = np.array(prices, dtype=np.float64)  # a copy: the caller's array stays untouched
        if fair.ndim != 1 or len(fair) != len(symbols) or not len(fair):
            raise ValueError(f"need one price per symbol, got {len(symbols)} symbols and "
                             f"prices of shape {fair.shape}")
        if not np.isfinite(fair).all() or (fair <= 0).any():
            raise ValueError("prices must be finite and > 0")
        if ticks_per_s <= 0 or volatility_per_day < 0 or batch_size < 1:
            raise ValueError("need ticks_per_s > 0, volatility_per_day >= 0, batch_size >= 1")
        self.symbols = list(symbols)
        self.ticks_per_s = float(ticks_per_s)
        self.batch_size = int(batch_size)
        self.with_quotes = with_quotes
        self.published_ticks = 0
        self.published_messages = 0
        self._rng = np.random.default_rng(seed)
        # The walk runs on unrounded prices so moves smaller than a cent still accumulate.
        self._fair = fair
        self._variance_per_ns = volatility_per_day**2 / TRADING_DAY_NS
        self._last_ns = np.zeros(len(fair), dtype=np.int64)
        self._started = False

    def next_ticks(self, now_ns: int, n: int) -> list[dict]:
        """Move `n` distinct random symbols to time `now_ns` and return their ticks.

        At most one tick per symbol per call (a price cannot move twice at one instant), so
        `n` is capped at the universe size. Prices are rounded to 0.01 and never below 0.01.
        """
        n = min(int(n), len(self.symbols))
        if n <= 0:
            return []
        if not self._started:
            # Before its first move a symbol is treated as having last ticked one average
            # inter-tick gap ago, so the first ticks are not frozen at the starting price.
            gap_ns = int(len(self.symbols) / self.ticks_per_s * 1e9)
            self._last_ns[:] = now_ns - gap_ns
            self._started = True
        idx = self._rng.choice(len(self.symbols), size=n, replace=False)
        variance = self._variance_per_ns * np.maximum(now_ns - self._last_ns[idx], 0)
        z = self._rng.standard_normal(n)
        # The -variance/2 drift keeps the expected price constant (a martingale).
        self._fair[idx] *= np.exp(np.sqrt(variance) * z - 0.5 * variance)
        self._last_ns[idx] = now_ns
        cents = np.maximum(np.rint(self._fair[idx] * 100.0), 1.0)
        # k / 100 is the double nearest to the two-decimal price, so it prints cleanly.
        prices = (cents / 100.0).tolist()
        symbols = [self.symbols[i] for i in idx.tolist()]
        if not self.with_quotes:
            return [{"symbol": s, "price": p, "ts": now_ns} for s, p in zip(symbols, prices)]
        bids = (np.maximum(cents - 1.0, 1.0) / 100.0).tolist()
        asks = ((cents + 1.0) / 100.0).tolist()
        return [{"symbol": s, "price": p, "ts": now_ns, "bid": b, "ask": a}
                for s, p, b, a in zip(symbols, prices, bids, asks)]


async def publish_ticks(sim: TickSimulator, *, hostname: str, port: int,
                        topic_prefix: str = "ticks", stop: asyncio.Event, batch_every: int = 10,
                        username: str | None = None, password: str | None = None) -> None:
    """Publish `sim` ticks to an MQTT broker at `sim.ticks_per_s` until `stop` is set.

    Every `batch_every`-th message is a JSON array of `sim.batch_size` ticks on
    ``<prefix>/_batch``; the others are single-tick objects on ``<prefix>/<SYMBOL>``.
    Reconnects with capped, jittered backoff; returns within 0.6 s of `stop` being set.
    """
    if batch_every < 1:
        raise ValueError("batch_every must be >= 1")
    client = aiomqtt.Client(hostname, port, username=username, password=password)
    runner = asyncio.create_task(
        _reconnect_loop(sim, client, topic_prefix, stop, batch_every), name="tick-publisher")
    stopper = asyncio.create_task(stop.wait(), name="tick-publisher-stop")
    try:
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not runner.done():
            # The loop notices `stop` between sends and disconnects cleanly; a connect stuck
            # on an unreachable broker does not, so it is cancelled after the grace period.
            await asyncio.wait({runner}, timeout=_STOP_GRACE_S)
    finally:
        stopper.cancel()
        if not runner.done():
            runner.cancel()
            await asyncio.wait({runner}, timeout=_STOP_GRACE_S)
    if not runner.done():
        log.warning("tick publisher did not stop within %.1f s; abandoning it", 2 * _STOP_GRACE_S)
    elif not runner.cancelled():
        runner.result()  # re-raise anything that is not a connection error


async def _reconnect_loop(sim: TickSimulator, client: aiomqtt.Client, topic_prefix: str,
                          stop: asyncio.Event, batch_every: int) -> None:
    """aiomqtt's documented reconnect pattern: one client, re-entered after every failure."""
    jitter = random.Random()  # backoff jitter only; never touches the simulated prices
    backoff_s = _BACKOFF_MIN_S
    while not stop.is_set():
        try:
            async with client:
                backoff_s = _BACKOFF_MIN_S
                await _pump(sim, client, topic_prefix, stop, batch_every)
        except aiomqtt.MqttError as exc:
            delay_s = backoff_s * jitter.uniform(0.5, 1.0)
            log.warning("tick publisher: %s; reconnecting in %.2f s", exc, delay_s)
            backoff_s = min(backoff_s * 2, _BACKOFF_MAX_S)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)


async def _pump(sim: TickSimulator, client: aiomqtt.Client, topic_prefix: str,
                stop: asyncio.Event, batch_every: int) -> None:
    """Send the ticks due by the clock, then sleep to the next wakeup, until `stop` is set."""
    loop = asyncio.get_running_loop()
    wake_s = max(1.0 / sim.ticks_per_s, _MIN_WAKE_S)
    start_s, sent = loop.time(), 0
    while not stop.is_set():
        now_s = loop.time()
        due = math.floor((now_s - start_s) * sim.ticks_per_s) - sent
        if due > sim.ticks_per_s * _MAX_BACKLOG_S:
            start_s, sent, due = now_s, 0, 1
        # Lay out this wakeup's messages first so one simulator call prices all of them.
        plan: list[bool] = []  # True for a `_batch` message
        planned = 0
        while planned < due:
            is_batch = (sim.published_messages + len(plan) + 1) % batch_every == 0
            plan.append(is_batch)
            planned += sim.batch_size if is_batch else 1
        ticks = sim.next_ticks(time.time_ns(), planned)
        offset = 0
        for is_batch in plan:
            chunk = ticks[offset:offset + (sim.batch_size if is_batch else 1)]
            if not chunk:
                break  # universe smaller than one wakeup's ticks: send what exists
            offset += len(chunk)
            if is_batch:
                topic, payload = names.tick_batch_topic(topic_prefix), orjson.dumps(chunk)
            else:
                topic, payload = names.tick_topic(topic_prefix, chunk[0]["symbol"]), orjson.dumps(chunk[0])
            await client.publish(topic, payload, qos=0)
            sim.published_messages += 1
            sim.published_ticks += len(chunk)
        sent += planned
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, now_s + wake_s - loop.time()))
