"""Tick intake: ``TickIntake.decode`` + ``flush`` in ticks per second, against a plain baseline.

Workloads (US-scale book, ~48k symbols, every tick well formed and in order):

- ``single``: one JSON object per message, one ``decode(payload, topic, recv_ts)`` call per tick
  (what ``MqttTickFeed`` does per MQTT message), ``flush`` every 1,000 messages (a burst drained
  from the MQTT queue).
- ``batched_100`` / ``batched_1000``: JSON arrays of 100 / 1,000 ticks on ``ticks/_batch``, one
  ``decode`` and one ``flush`` per payload (the feed flushes whenever its queue runs dry).

The engine's route: every bytes payload goes to the compiled scanner (``iopv.kernels.scanner``, one
kernel call per message into the staging columns), ``flush`` applies the batch in one more.

Baseline (the obvious alternative): ``orjson.loads`` and a Python loop applying the same
validation rules (object, symbol string, int/float price, finite and > 0, int ts in range, known
symbol, not older than the last accepted tick) into a Python dict of prices. Its final prices are
checked equal to the engine's book. Also measured in the same run: ``python_route``, the same
``TickIntake`` with the scanner off (``scan=False``: orjson, the dict fast path and
``decode_tick_full``, the route a payload the scanner does not read takes -- and the engine's
only route before the scanner).

A component split of ``batched_1000`` (the scan kernel alone, ``flush``, the rest) shows where
the per-tick time goes, next to what the Python route spends on JSON parsing and
``decode_tick_full``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import orjson

from bench.common import Context
from iopv.core.constants import MAX_TS, N_FLOAT_ROWS, N_INT_ROWS
from iopv.engine import codec
from iopv.engine.book import PriceBook
from iopv.engine.intake import TickIntake
from iopv.kernels.scanner import TopicSlot, scan_payload_nb
from iopv.kernels.symbols import symbol_table

SESSION_START_NS = 1_711_978_200_000_000_000  # 2024-04-01 13:30:00 UTC
FLUSH_EVERY_SINGLE = 1_000


def make_ticks(universe, rng: np.random.Generator, n: int):
    """(symbols, prices, ts) of ``n`` in-order ticks over the securities of ``universe``."""
    n_sec = len(universe.symbols)
    slots = rng.integers(0, n_sec, n)
    base = universe.initial_prices[slots]
    prices = np.maximum(np.round(base * (1 + rng.normal(0, 0.002, n)), 2), 0.01)
    ts = SESSION_START_NS + np.cumsum(rng.integers(1_000, 50_000, n))
    symbols = [universe.symbols[i] for i in slots.tolist()]
    return symbols, prices.tolist(), ts.tolist()


def encode_single(symbols, prices, ts) -> list[tuple[bytes, str]]:
    return [(orjson.dumps({"symbol": s, "price": p, "ts": t}), f"ticks/{s}")
            for s, p, t in zip(symbols, prices, ts)]


def encode_batched(symbols, prices, ts, size: int) -> list[tuple[bytes, str]]:
    out = []
    for start in range(0, len(symbols), size):
        chunk = [{"symbol": s, "price": p, "ts": t} for s, p, t in
                 zip(symbols[start:start + size], prices[start:start + size], ts[start:start + size])]
        out.append((orjson.dumps(chunk), "ticks/_batch"))
    return out


def run_intake(book: PriceBook, messages: list[tuple[bytes, str]], flush_every: int,
               scan: bool = True) -> tuple[float, float, TickIntake]:
    """(seconds total, seconds in flush) to decode and apply every message."""
    book.reset()
    intake = TickIntake(book, scan=scan)
    decode, flush, clock = intake.decode, intake.flush, time.perf_counter
    flush_s = 0.0
    started = clock()
    for i, (payload, topic) in enumerate(messages, start=1):
        decode(payload, topic, time.time_ns())
        if i % flush_every == 0:
            t = clock()
            flush()
            flush_s += clock() - t
    t = clock()
    flush()
    end = clock()
    return end - started, flush_s + end - t, intake


def run_baseline(index: dict[str, int], messages: list[tuple[bytes, str]]) -> tuple[float, dict, int]:
    """(seconds, prices by symbol, accepted) for the plain orjson + dict loop."""
    loads = orjson.loads
    prices: dict[str, float] = {}
    last_ts: dict[str, int] = {}
    accepted = rejected = 0
    inf = math.inf
    started = time.perf_counter()
    for payload, _topic in messages:
        try:
            document = loads(payload)
        except orjson.JSONDecodeError:
            rejected += 1
            continue
        for obj in (document if type(document) is list else (document,)):
            if type(obj) is not dict:
                rejected += 1
                continue
            symbol, price, ts = obj.get("symbol"), obj.get("price"), obj.get("ts")
            if type(symbol) is not str or not symbol:
                rejected += 1
                continue
            if type(price) is not float:
                if type(price) is not int:
                    rejected += 1
                    continue
                price = float(price)
            if type(ts) is not int or not 0 <= ts <= MAX_TS:
                rejected += 1
                continue
            if not 0.0 < price < inf:  # also false for NaN
                rejected += 1
                continue
            if symbol not in index:
                continue
            if ts < last_ts.get(symbol, -1):
                continue
            prices[symbol] = price
            last_ts[symbol] = ts
            accepted += 1
    return time.perf_counter() - started, prices, accepted


def components(book: PriceBook, messages: list[tuple[bytes, str]]) -> dict:
    """ns per tick of the scan kernel alone on batched payloads, and of the Python route's two
    main steps (JSON parse, ``decode_tick_full``), each measured in isolation."""
    table = symbol_table(book.index).table
    size = max(len(orjson.loads(p)) for p, _ in messages)
    ints = np.empty((N_INT_ROWS, size), dtype=np.int64)
    floats = np.empty((N_FLOAT_ROWS, size), dtype=np.float64)
    now = time.time_ns()
    n = 0
    started = time.perf_counter_ns()
    for payload, _ in messages:
        n += scan_payload_nb(payload, 0, table, ints, floats, 0, size, TopicSlot.UNRESOLVED, now)
    scan_ns = time.perf_counter_ns() - started
    started = time.perf_counter_ns()
    parsed = [orjson.loads(p) for p, _ in messages]
    parse_ns = time.perf_counter_ns() - started
    items = [item for doc in parsed for item in doc]
    if len(items) != n:
        raise AssertionError(f"ingest: the scanner read {n} ticks of {len(items)}")
    index = book.index
    started = time.perf_counter_ns()
    for item in items:
        codec.decode_tick_full(item, None, now, index)
    decode_ns = time.perf_counter_ns() - started
    return {"scan_ns_per_tick": scan_ns / n, "python_route_json_parse_ns_per_tick": parse_ns / n,
            "python_route_decode_tick_ns_per_tick": decode_ns / n}


def median_rate(values: list[float]) -> float:
    return float(np.median(values))


def run(ctx: Context) -> dict:
    universe = ctx.universe("us")
    book = PriceBook(universe)
    rng = ctx.rng(21)
    n_single = 30_000 if ctx.quick else 100_000
    n_batched = 100_000 if ctx.quick else 500_000
    reps = 3 if ctx.quick else 5
    single = encode_single(*make_ticks(universe, rng, n_single))
    batched_ticks = make_ticks(universe, rng, n_batched)
    batched = {100: encode_batched(*batched_ticks, 100), 1000: encode_batched(*batched_ticks, 1000)}

    # Warm-up: compile/load the kernels, build the symbol table, fill caches.
    run_intake(book, single[:2_000], FLUSH_EVERY_SINGLE)
    run_intake(book, batched[100][:20], 1)
    run_intake(book, single[:2_000], FLUSH_EVERY_SINGLE, scan=False)
    run_baseline(book.index, single[:2_000])

    workloads = {"single": (single, FLUSH_EVERY_SINGLE, n_single),
                 "batched_100": (batched[100], 1, n_batched),
                 "batched_1000": (batched[1000], 1, n_batched)}
    rates: dict[str, list[float]] = {f"{k}_{who}": [] for k in workloads
                                     for who in ("engine", "python_route", "baseline")}
    flush_share: dict[str, list[float]] = {k: [] for k in workloads}
    for _ in range(reps):
        for name, (messages, flush_every, n_ticks) in workloads.items():
            seconds, flush_s, intake = run_intake(book, messages, flush_every)
            if intake.accepted != n_ticks:
                raise AssertionError(f"ingest {name}: {intake.accepted} of {n_ticks} ticks accepted")
            rates[f"{name}_engine"].append(n_ticks / seconds)
            flush_share[name].append(flush_s / seconds)
            engine_prices = book.prices.copy()
            p_seconds, _, p_intake = run_intake(book, messages, flush_every, scan=False)
            if p_intake.accepted != n_ticks or not np.array_equal(book.prices, engine_prices):
                raise AssertionError(f"ingest {name}: the Python route disagrees with the scanner")
            rates[f"{name}_python_route"].append(n_ticks / p_seconds)
            b_seconds, b_prices, b_accepted = run_baseline(book.index, messages)
            if b_accepted != n_ticks:
                raise AssertionError(f"ingest {name}: baseline accepted {b_accepted} of {n_ticks}")
            rates[f"{name}_baseline"].append(n_ticks / b_seconds)
            for symbol, price in b_prices.items():
                if book.prices[book.index[symbol]] != price:
                    raise AssertionError(f"ingest {name}: book disagrees with baseline on {symbol}")
    measured = components(book, batched[1000])
    best_batched = max(("batched_100", "batched_1000"), key=lambda k: median_rate(rates[f"{k}_engine"]))
    engine_ns = 1e9 / median_rate(rates["batched_1000_engine"])
    split = {"scan_ns_per_tick": measured["scan_ns_per_tick"],
             "flush_ns_per_tick": engine_ns * float(np.median(flush_share["batched_1000"]))}
    split["overhead_ns_per_tick"] = max(0.0, engine_ns - split["scan_ns_per_tick"] - split["flush_ns_per_tick"])
    split["total_ns_per_tick"] = engine_ns
    split["python_route_json_parse_ns_per_tick"] = measured["python_route_json_parse_ns_per_tick"]
    split["python_route_decode_tick_ns_per_tick"] = measured["python_route_decode_tick_ns_per_tick"]
    split["python_route_total_ns_per_tick"] = 1e9 / median_rate(rates["batched_1000_python_route"])
    out = {
        "book_symbols": len(universe.symbols),
        "repetitions": reps,
        "single_messages": n_single,
        "batched_ticks": n_batched,
        "batched_ticks_per_s": median_rate(rates[f"{best_batched}_engine"]),
        "batched_best_size": int(best_batched.split("_")[1]),
        "single_msgs_per_s": median_rate(rates["single_engine"]),
        "baseline_ticks_per_s": median_rate(rates[f"{best_batched}_baseline"]),
        "baseline_single_msgs_per_s": median_rate(rates["single_baseline"]),
        "python_route_batched_ticks_per_s": median_rate(rates[f"{best_batched}_python_route"]),
        "python_route_single_msgs_per_s": median_rate(rates["single_python_route"]),
        "per_workload": {
            name: {"engine_ticks_per_s_p50": median_rate(rates[f"{name}_engine"]),
                   "engine_ticks_per_s_min": float(min(rates[f"{name}_engine"])),
                   "engine_ticks_per_s_max": float(max(rates[f"{name}_engine"])),
                   "baseline_ticks_per_s_p50": median_rate(rates[f"{name}_baseline"]),
                   "python_route_ticks_per_s_p50": median_rate(rates[f"{name}_python_route"]),
                   "flush_share_of_time": float(np.median(flush_share[name]))}
            for name in workloads},
        "profile_batched_1000": split,
    }
    out["batched_vs_baseline"] = out["batched_ticks_per_s"] / out["baseline_ticks_per_s"]
    out["batched_vs_python_route"] = out["batched_ticks_per_s"] / out["python_route_batched_ticks_per_s"]
    out["single_vs_python_route"] = out["single_msgs_per_s"] / out["python_route_single_msgs_per_s"]
    return {"ingest": out}
