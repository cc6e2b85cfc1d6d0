"""Real-time mode: tick -> value and tick -> publish latency at a fixed offered rate (in
process, no broker; the broker hop is the end_to_end section's).

Single-tick JSON messages are scheduled at a fixed rate (20,000 ticks/s). The loop mirrors the
live feed: every message due by now is decoded, then the batch is applied in one kernel call,
after which ``iopv.engine.realtime.RealtimePublisher`` updates the running sums of every fund the batch
moved and publishes the due ones to a counting sink. Latencies run from a tick's *scheduled*
arrival -- not from when the loop got round to it, so a stall delays every tick queued behind
it (no coordinated omission):

- ``tick_to_value_us``: to the end of the flush that applied it (its funds' values are current);
- ``tick_to_publish_us`` (sampled): until every fund it moved was valued with it and offered for
  publication -- or found unchanged at the published rounding, so subscribers already hold it.

Rows: demo and US scale with the default 250 ms throttle (the value latency is the target) and
with no throttle (every move published at once: the publication latency is the target, and
``records_per_s`` the capacity). A row whose loop falls behind its schedule shows it in
``achieved_ticks_per_s``.
"""

from __future__ import annotations

import time

import numpy as np
import orjson

from bench.common import Context
from iopv.config import load_settings
from iopv.engine import gcpolicy
from iopv.engine.cycle import Engine
from iopv.engine.realtime import RealtimePublisher

OFFERED_TICKS_PER_S = 20_000


class CountingSink:
    """Counts what it is offered and when, so tick -> publish latency can be worked out."""

    name = "counting"

    def __init__(self, universe):
        self.publications = 0
        self.records = 0
        self.position = {fund: f for f, fund in enumerate(universe.funds)}
        self.times: list[int] = []
        self.funds: list[list[int]] = []

    def offer(self, publication) -> None:
        self.publications += 1
        self.records += len(publication.records)

    def evaluated(self, funds: np.ndarray, now_ns: int) -> None:
        """``RealtimePublisher.on_evaluated``: these funds' subscribers now hold a value that
        includes every tick applied so far -- just published, or unchanged since the last one
        (the publisher offers the changed ones right after this call)."""
        self.times.append(time.perf_counter_ns())
        # A copy as an array, not a list: thousands of lists would slow every full collection.
        self.funds.append(funds.astype(np.int32))


def _payloads(universe, n: int, rng: np.random.Generator) -> tuple[list[bytes], np.ndarray]:
    """``n`` single-tick JSON messages on random holdings, and their book slots."""
    n_securities = len(universe.symbols)
    slots = rng.integers(0, n_securities, size=n)
    moves = np.exp(rng.normal(0.0, 2e-4, size=n))
    prices = np.round(universe.initial_prices[slots] * moves, 4)
    ts = time.time_ns() + np.arange(n, dtype=np.int64) * 1000
    symbols = universe.symbols
    return ([orjson.dumps({"symbol": symbols[s], "price": p, "ts": t})
             for s, p, t in zip(slots.tolist(), prices.tolist(), ts.tolist())], slots)


def tick_to_publish_ns(publisher, sink: CountingSink, slots: np.ndarray, scheduled: np.ndarray,
                       applied: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, int]:
    """For each sampled tick: from its scheduled arrival until every fund it moved has been
    valued after the batch that applied the tick, and published if its rounded value changed
    (an unchanged value is already what subscribers hold). Ticks with a fund never valued
    afterwards are counted."""
    times = np.asarray(sink.times, dtype=np.int64)
    per_fund: dict[int, list[int]] = {}
    for t, funds in zip(sink.times, sink.funds):
        for f in funds.tolist():
            per_fund.setdefault(f, []).append(t)
    per_fund_arr = {f: np.asarray(v, dtype=np.int64) for f, v in per_fund.items()}
    offsets, holdings = publisher.slot_offsets, publisher.slot_holdings
    out = []
    unpublished = 0
    for i in sample.tolist():
        s = slots[i]
        funds = np.unique(publisher.holding_fund[holdings[offsets[s]:offsets[s + 1]]])
        worst = 0
        for f in funds.tolist():
            t = per_fund_arr.get(f)
            k = -1 if t is None else int(np.searchsorted(t, applied[i], side="left"))
            if t is None or k == t.size:
                worst = -1
                break
            worst = max(worst, int(t[k]) - int(scheduled[i]))
        if worst < 0:
            unpublished += 1
        elif funds.size:
            out.append(worst)
    del times
    return np.asarray(out, dtype=np.int64), unpublished


def _pcts(values_ns: np.ndarray) -> dict:
    us = values_ns / 1e3
    if us.size == 0:
        return {}
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)),
            "p999": float(np.percentile(us, 99.9)), "max": float(us.max())}


def measure(universe, *, throttle_ms: float, duration_s: float, rng: np.random.Generator) -> dict:
    settings = load_settings(environ={}, overrides={"engine": {"calendar": "always"}})
    engine = Engine(universe, settings)
    sink = CountingSink(universe)
    publisher = RealtimePublisher(engine, sink, throttle_ms=throttle_ms)
    engine.intake.on_applied.append(publisher.on_applied)
    publisher.on_evaluated.append(sink.evaluated)
    engine.warm_up()
    n = int(OFFERED_TICKS_PER_S * duration_s)
    payloads, slots = _payloads(universe, n + 50, rng)
    # Warm the real-time path (kernels compile on first use) outside the timed run.
    for payload in payloads[n:]:
        engine.intake.decode(payload)
    engine.intake.flush()
    gcpolicy.freeze_long_lived()  # as the service does once started
    sink.__init__(universe)
    publisher.unchanged = 0
    clock = time.perf_counter_ns
    start = clock() + 10_000_000
    scheduled = start + (np.arange(n, dtype=np.int64) * 1_000_000_000) // OFFERED_TICKS_PER_S
    latency = np.empty(n, dtype=np.int64)
    applied = np.empty(n, dtype=np.int64)  # when the batch holding the tick started applying
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
        applied[i:j] = clock()
        engine.intake.flush()
        latency[i:j] = clock() - scheduled[i:j]
        batches += 1
        i = j
    elapsed_s = (clock() - start) / 1e9
    # Drain: publish what is still held so every tick's funds get their value out.
    deadline = clock() + 2 * round(throttle_ms * 1e6) + 10_000_000
    while publisher.dirty.any() and clock() < deadline:
        publisher.step()
    sample = np.unique(np.random.default_rng(5).integers(0, n, size=min(n, 4000)))
    to_publish, unpublished = tick_to_publish_ns(publisher, sink, slots, scheduled, applied, sample)
    return {"throttle_ms": throttle_ms, "ticks": n, "offered_ticks_per_s": OFFERED_TICKS_PER_S,
            "achieved_ticks_per_s": n / elapsed_s, "batches": batches,
            "mean_batch_ticks": n / max(1, batches),
            "tick_to_value_us": _pcts(latency),
            "tick_to_publish_us": _pcts(to_publish),
            "tick_to_publish_sampled": int(sample.size), "tick_to_publish_unpublished": unpublished,
            "unchanged_per_s": publisher.unchanged / elapsed_s,
            "publications_per_s": sink.publications / elapsed_s,
            "records_per_s": sink.records / elapsed_s,
            "max_funds_per_step": publisher.max_funds_per_step,
            "exact_resolved": publisher.exact_resolved}


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
