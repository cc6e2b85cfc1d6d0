"""Real-time mode: tick -> value latency at a fixed offered rate (in process, no broker).

Single-tick JSON messages are scheduled at a fixed rate (20,000 ticks/s). The loop mirrors the
live feed: every message due by now is decoded (the feed's queue), then the batch is applied in
one kernel call, which marks the funds it moved and publishes them through
``iopv.realtime.RealtimePublisher`` to a counting sink. A tick's latency runs from its
*scheduled* arrival -- not from when the loop got round to it, so a stall delays every tick
queued behind it (no coordinated omission) -- to the moment the publication reflecting it is
offered to the sink. The broker hop is measured by the end_to_end section, not here.

Rows: demo and US scale with no throttle (every batch publishes at once: the latency figure),
and with the default 250 ms throttle (the CPU cost of real-time mode at a sustainable publish
rate). A row whose loop falls behind its schedule shows it in ``achieved_ticks_per_s``.
"""

from __future__ import annotations

import time

import numpy as np
import orjson

from bench.common import Context
from iopv.config import load_settings
from iopv.engine import Engine
from iopv.realtime import RealtimePublisher

OFFERED_TICKS_PER_S = 20_000


class CountingSink:
    name = "counting"

    def __init__(self):
        self.publications = 0
        self.records = 0

    def offer(self, publication) -> None:
        self.publications += 1
        self.records += len(publication.records)


def _payloads(universe, n: int, rng: np.random.Generator) -> list[bytes]:
    n_securities = len(universe.symbols)
    slots = rng.integers(0, n_securities, size=n)
    moves = np.exp(rng.normal(0.0, 2e-4, size=n))
    prices = np.round(universe.initial_prices[slots] * moves, 4)
    ts = time.time_ns() + np.arange(n, dtype=np.int64) * 1000
    symbols = universe.symbols
    return [orjson.dumps({"symbol": symbols[s], "price": p, "ts": t})
            for s, p, t in zip(slots.tolist(), prices.tolist(), ts.tolist())]


def measure(universe, *, throttle_ms: float, duration_s: float, rng: np.random.Generator) -> dict:
    settings = load_settings(environ={}, overrides={"engine": {"calendar": "always"}})
    engine = Engine(universe, settings)
    sink = CountingSink()
    publisher = RealtimePublisher(engine, sink, throttle_ms=throttle_ms)
    engine.intake.on_applied.append(publisher.on_applied)
    engine.warm_up()
    n = int(OFFERED_TICKS_PER_S * duration_s)
    payloads = _payloads(universe, n, rng)
    # Warm the real-time path (kernels compile on first use) outside the timed run.
    for payload in payloads[:50]:
        engine.intake.decode(payload)
    engine.intake.flush()
    sink.publications = sink.records = 0
    clock = time.perf_counter_ns
    start = clock() + 10_000_000
    scheduled = start + (np.arange(n, dtype=np.int64) * 1_000_000_000) // OFFERED_TICKS_PER_S
    latency = np.empty(n, dtype=np.int64)
    batches = 0
    decode = engine.intake.decode
    i = 0
    while i < n:
        now = clock()
        if now < scheduled[i]:
            continue  # busy-wait: sleep granularity is coarser than the tick spacing
        j = int(np.searchsorted(scheduled, now, side="right"))
        for k in range(i, j):
            decode(payloads[k])
        engine.intake.flush()
        latency[i:j] = clock() - scheduled[i:j]
        batches += 1
        i = j
    elapsed_s = (clock() - start) / 1e9
    us = latency / 1e3
    return {"throttle_ms": throttle_ms, "ticks": n, "offered_ticks_per_s": OFFERED_TICKS_PER_S,
            "achieved_ticks_per_s": n / elapsed_s, "batches": batches,
            "mean_batch_ticks": n / max(1, batches),
            "tick_to_value_us": {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)),
                                 "p999": float(np.percentile(us, 99.9)), "max": float(us.max())},
            "publications_per_s": sink.publications / elapsed_s,
            "records_per_s": sink.records / elapsed_s}


def run(ctx: Context) -> dict:
    duration_s = 1.0 if ctx.quick else 5.0
    rows = []
    for scale in ("demo", "us"):
        universe = ctx.universe(scale)
        for throttle_ms in (0.0, 250.0):
            row = measure(universe, throttle_ms=throttle_ms, duration_s=duration_s, rng=ctx.rng(77))
            row.update(scale=scale, funds=len(universe.funds), holdings=universe.holdings)
            rows.append(row)
    return {"realtime": rows}
