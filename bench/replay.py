"""Offline replay of a tick tape at US scale: the engine against pandas, outputs cross-checked.

Tape: 1,000,000 ticks (quick: 100,000) as JSON lines over the US-scale book (securities and FX
pairs), in time order over 30 minutes (quick: 5), seeded; 0.1% name unknown symbols and 0.05%
carry a zero or negative price (both are counted, neither moves a value). Interval 15 s, 4
decimals.

- Engine: ``iopv.engine.tape.decode_tape`` (one compiled pass over the bytes into arrays,
  ``iopv.kernels.scanner.scan_tape_nb``) then ``iopv.engine.replay.replay`` (the ``replay_nb`` event loop,
  values rounded exactly, near ties resolved in ``Decimal``), timed as decode + kernel. The
  Python line-by-line decoder (``decode_tape_python``, the route the scanner's fallback lines
  take) is timed once on the same bytes and its tape checked identical.
- pandas: the obvious dataframe route. ``pd.read_json(lines=True)`` parses the same bytes; ticks
  with a bad price or unknown symbol are dropped; each tick goes to the first boundary >= its
  ts; the last price per (boundary, symbol) is pivoted to a boundaries x symbols grid,
  forward-filled and seeded with previous closes; then the basket multiply, incl. FX and cash, is
  one ``scipy.sparse`` product per (fund, FX) row -- the strongest cheap formulation (see
  ``bench.valuation``) -- ``(B @ P.T) * fx``, summed per fund, plus cash, over creation units.

The two outputs must agree on every boundary and, per fund, within half a unit of the 4th
decimal (the engine's values are rounded, pandas' are not).
"""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd

from bench.common import Context
from bench.ingest import SESSION_START_NS
from bench.valuation import Contenders
from iopv.core.constants import REASONS
from iopv.engine.clock import boundary_at_or_after
from iopv.engine.replay import replay
from iopv.engine.tape import decode_tape, decode_tape_python

INTERVAL_NS = 15_000_000_000
DECIMALS = 4
REPS = 3


def make_tape(universe, rng: np.random.Generator, n: int, span_s: float) -> bytes:
    """JSON-lines tape bytes (seeded)."""
    n_slots = len(universe.symbols)
    slots = rng.integers(0, n_slots, n)
    base = universe.initial_prices[slots]
    is_pair = np.zeros(n_slots, dtype=bool)
    is_pair[np.unique(universe.holding_fx[universe.holding_fx != universe.one_index])] = True
    drift = rng.normal(0, 0.003, n)
    prices = np.where(is_pair[slots], np.round(base * (1 + drift / 5), 6),
                      np.maximum(np.round(base * (1 + drift), 2), 0.01))
    bad = rng.random(n) < 0.0005
    prices[bad] = -np.round(rng.random(int(bad.sum())) * 10, 2)
    ts = SESSION_START_NS + 1 + np.sort(rng.integers(0, int(span_s * 1e9), n))
    unknown = rng.random(n) < 0.001
    symbols = [universe.symbols[i] for i in slots.tolist()]
    for i in np.flatnonzero(unknown).tolist():
        symbols[i] = f"UNKNOWN{i}"
    lines = [f'{{"symbol":"{s}","price":{p!r},"ts":{t}}}' for s, p, t in zip(symbols, prices.tolist(), ts.tolist())]
    return ("\n".join(lines) + "\n").encode()


def engine_replay(universe, data: bytes) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    started = time.perf_counter()
    tape = decode_tape(data, universe.book_index())
    decoded = time.perf_counter()
    rows = list(replay(universe, tape, interval_ns=INTERVAL_NS, decimals=DECIMALS))
    finished = time.perf_counter()
    boundaries = np.array([b for b, _ in rows], dtype=np.int64)
    values = np.vstack([v for _, v in rows])
    counts = np.bincount(tape.code, minlength=len(REASONS))
    outcome = {REASONS[c]: int(n) for c, n in enumerate(counts) if n}
    return ({"decode_s": decoded - started, "kernel_s": finished - decoded, "total_s": finished - started},
            boundaries, values, outcome)


def pandas_replay(universe, data: bytes, contenders: Contenders) -> tuple[dict, np.ndarray, np.ndarray]:
    started = time.perf_counter()
    frame = pd.read_json(io.BytesIO(data), lines=True, dtype={"symbol": str, "price": "float64", "ts": "int64"},
                         convert_dates=False, precise_float=True)
    parsed = time.perf_counter()
    slot = pd.Index(universe.symbols).get_indexer(frame["symbol"])
    price = frame["price"].to_numpy()
    ts = frame["ts"].to_numpy()
    valid = np.isfinite(price) & (price > 0)
    good = valid & (slot >= 0)
    # Ticks with a valid price move the replay clock even when their symbol is unknown.
    first = boundary_at_or_after(int(ts[valid].min()), INTERVAL_NS)
    last = boundary_at_or_after(int(ts[valid].max()), INTERVAL_NS)
    grid_index = np.arange(first, last + INTERVAL_NS, INTERVAL_NS, dtype=np.int64)
    ticks = pd.DataFrame({"b": -(-ts[good] // INTERVAL_NS) * INTERVAL_NS, "slot": slot[good], "price": price[good]})
    last_price = ticks.groupby(["b", "slot"], sort=False)["price"].last().unstack("slot")
    grid = last_price.reindex(index=grid_index, columns=np.arange(universe.book_size)).ffill()
    initial = np.empty(universe.book_size)  # previous closes, PCF rates, 1.0 in the 1.0 slot
    initial[:] = np.nan
    initial[:len(universe.symbols)] = universe.initial_prices
    initial[universe.one_index] = 1.0
    prices = grid.to_numpy()
    prices = np.where(np.isnan(prices), initial[None, :], prices)
    pivoted = time.perf_counter()
    c = contenders
    subtotal = (c.split @ prices.T) * prices[:, c.row_fx].T  # rows x boundaries
    per_fund = np.zeros((c.n_funds, prices.shape[0]))
    np.add.at(per_fund, c.row_fund, subtotal)
    values = ((per_fund + universe.fund_cash[:, None]) / universe.fund_creation_unit[:, None]).T
    finished = time.perf_counter()
    return ({"parse_s": parsed - started, "pivot_s": pivoted - parsed, "multiply_s": finished - pivoted,
             "total_s": finished - started}, grid_index, values)


def run(ctx: Context) -> dict:
    universe = ctx.universe("us")
    n = 100_000 if ctx.quick else 1_000_000
    span_s = 300.0 if ctx.quick else 1_800.0
    data = make_tape(universe, ctx.rng(41), n, span_s)
    contenders = Contenders(universe)
    # Warm-up on a small prefix (kernel load, pandas import paths).
    prefix = data[:data.index(b"\n", 200_000) + 1] if len(data) > 200_000 else data
    engine_replay(universe, prefix)
    pandas_replay(universe, prefix, contenders)
    reps = REPS
    engine_times, pandas_times = [], []
    for _ in range(reps):
        e_time, e_boundaries, e_values, outcome = engine_replay(universe, data)
        p_time, p_boundaries, p_values = pandas_replay(universe, data, contenders)
        engine_times.append(e_time)
        pandas_times.append(p_time)
    if not np.array_equal(e_boundaries, p_boundaries):
        raise AssertionError(f"replay: boundaries differ ({e_boundaries.size} engine, {p_boundaries.size} pandas)")
    max_diff = float(np.max(np.abs(e_values - p_values)))
    if max_diff > 0.5 * 10.0**-DECIMALS + 1e-9:
        raise AssertionError(f"replay: engine and pandas disagree by {max_diff:.3g}")
    index = universe.book_index()
    started = time.perf_counter()
    python_tape = decode_tape_python(data, index)
    decode_python_s = time.perf_counter() - started
    compiled_tape = decode_tape(data, index)
    for field in ("security", "price", "ts", "code", "line", "bid", "ask", "status"):
        if not np.array_equal(getattr(compiled_tape, field), getattr(python_tape, field), equal_nan=True):
            raise AssertionError(f"replay: decode_tape and decode_tape_python disagree on {field}")
    e = sorted(engine_times, key=lambda t: t["total_s"])[len(engine_times) // 2]  # the median run
    p = sorted(pandas_times, key=lambda t: t["total_s"])[len(pandas_times) // 2]
    return {"replay": {
        "ticks": n, "repetitions": reps, "tape_mb": round(len(data) / 1e6, 1), "span_s": span_s,
        "interval_s": INTERVAL_NS / 1e9,
        "funds": len(universe.funds), "holdings": universe.holdings, "boundaries": int(e_boundaries.size),
        "engine_s": e["total_s"], "engine_s_all": [t["total_s"] for t in engine_times],
        "pandas_s_all": [t["total_s"] for t in pandas_times], "engine_decode_s": e["decode_s"],
        "engine_decode_python_s": decode_python_s, "engine_kernel_s": e["kernel_s"],
        "pandas_s": p["total_s"], "pandas_parse_s": p["parse_s"], "pandas_pivot_s": p["pivot_s"],
        "pandas_multiply_s": p["multiply_s"],
        "speedup_vs_pandas": p["total_s"] / e["total_s"],
        "engine_ticks_per_s": n / e["total_s"],
        "max_abs_diff": max_diff,
        "outcomes": outcome,
    }}
