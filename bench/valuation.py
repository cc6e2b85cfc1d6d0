"""Full valuation of every fund: the numba kernel against scipy.sparse on the same arrays.

Contenders, timed call by call in alternation on the same price books:

- ``engine``: ``bench.packed_kernel.value_packed_nb`` (one pass over the packed holdings,
  ``Universe.packed``: 8 bytes per holding, a uint32 of book slot and FX code plus a float32
  share count; each term is shares x price[security] x fx, two funds summed side by side; it
  also writes the error bound).
- ``engine_plain``: ``iopv.kernels.valuation.value_funds_nb``, the same pass over the plain CSR arrays
  (16 bytes per holding: int32 slot, float64 shares, int32 FX slot), one fund after the other.
  Its values must equal the engine's bit for bit.
- ``scipy``: the obvious sparse formulation. ``A`` is a CSR matrix (funds x book slots) with
  ``data = shares``; FX differs per holding, so every call first gathers the FX factor of every
  holding and writes ``shares * fx`` into ``A.data`` in place (no allocation of a new matrix),
  then ``(A @ prices + cash) / creation_unit``.
- ``scipy_split``: a stronger, less obvious variant. Holdings are grouped into one row per
  (fund, FX slot), so the FX factor applies per row instead of per holding:
  ``bincount(row_fund, (B @ prices) * prices[row_fx])``. No per-holding gather besides the
  matrix product itself. Reported so the engine is also compared with the best cheap trick.

Results are cross-checked before any timing: the two engine kernels bit for bit, scipy with
``np.allclose``. The engine's live path,
``Valuer.frame`` -- ``value_all_nb`` (value, bid and ask sides, coverage and staleness figures in
one pass), publication rounding, and exact ``Decimal`` resolution of values that sit on a
rounding tie -- is timed separately (``Valuer.value`` is ``frame(...).values``), with and without
the exact resolution, and the number of ties resolved per call is reported.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.common import Context, interleaved, summarize_ns
from bench.packed_kernel import value_packed_nb
from bench.universes import describe
from iopv.engine.book import PriceBook
from iopv.engine.valuer import Valuer
from iopv.kernels.valuation import round_half_up_nb, value_funds_nb

N_BOOKS = 8  # distinct price books cycled through, so caches and near ties vary like live


def price_books(universe, rng: np.random.Generator, count: int = N_BOOKS) -> list[np.ndarray]:
    """``count`` books: previous closes moved up to +-2% on the cent grid (FX rates +-0.5% on a
    6-decimal grid); the book's other slots (market slots, the 1.0 slot) as ``PriceBook`` sets them."""
    base = PriceBook(universe).prices.copy()
    n_symbols = len(universe.symbols)
    is_pair = np.zeros(n_symbols, dtype=bool)
    pairs = np.unique(universe.holding_fx[universe.holding_fx != universe.one_index])
    is_pair[pairs[pairs < n_symbols]] = True
    books = []
    for _ in range(count):
        p = base.copy()
        move = rng.uniform(-0.02, 0.02, n_symbols)
        head = base[:n_symbols]
        p[:n_symbols] = np.where(is_pair, np.round(head * (1 + move / 4), 6),
                                 np.maximum(np.round(head * (1 + move), 2), 0.01))
        books.append(p)
    return books


class Contenders:
    """The formulations over one universe, with their preallocated outputs."""

    def __init__(self, universe):
        u = self.u = universe
        n_funds, n_slots = len(u.funds), u.book_size
        self.out_value = np.empty(n_funds)
        self.out_error = np.empty(n_funds)
        index_type = np.int32 if n_slots < 2**31 and u.holdings < 2**31 else np.int64
        self.matrix = sp.csr_matrix((u.holding_shares.copy(), u.holding_security.astype(index_type),
                                     u.fund_offsets.astype(index_type)), shape=(n_funds, n_slots))
        self.matrix.has_sorted_indices = False  # as given: PCF order, not column order
        # (fund, fx slot) rows; holdings keep their order inside each fund.
        fund_of = np.repeat(np.arange(n_funds), np.diff(u.fund_offsets))
        key = fund_of * np.int64(n_slots) + u.holding_fx
        order = np.argsort(key, kind="stable")
        keys, row_of_sorted = np.unique(key[order], return_inverse=True)
        self.row_fund = (keys // n_slots).astype(np.int64)
        self.row_fx = (keys % n_slots).astype(np.int64)
        row_offsets = np.zeros(keys.size + 1, dtype=index_type)
        np.cumsum(np.bincount(row_of_sorted, minlength=keys.size), out=row_offsets[1:])
        self.split = sp.csr_matrix((u.holding_shares[order], u.holding_security[order].astype(index_type),
                                    row_offsets), shape=(keys.size, n_slots))
        self.n_funds = n_funds

    def engine(self, prices: np.ndarray) -> np.ndarray:
        u, p = self.u, self.u.packed
        self.not_positive = value_packed_nb(u.fund_offsets, p.holding, p.shares, p.shift, p.fx_slots,
                                            u.fund_cash, u.fund_creation_unit, prices, self.out_value,
                                            self.out_error)
        return self.out_value

    def engine_plain(self, prices: np.ndarray) -> np.ndarray:
        u = self.u
        value_funds_nb(u.fund_offsets, u.holding_security, u.holding_shares, u.holding_fx,
                       u.fund_cash, u.fund_creation_unit, prices, self.out_value, self.out_error)
        return self.out_value

    def scipy(self, prices: np.ndarray) -> np.ndarray:
        u = self.u
        np.multiply(u.holding_shares, prices[u.holding_fx], out=self.matrix.data)
        return (self.matrix @ prices + u.fund_cash) / u.fund_creation_unit

    def scipy_split(self, prices: np.ndarray) -> np.ndarray:
        u = self.u
        subtotal = (self.split @ prices) * prices[self.row_fx]
        totals = np.bincount(self.row_fund, weights=subtotal, minlength=self.n_funds)
        return (totals + u.fund_cash) / u.fund_creation_unit


def bench_scale(ctx: Context, scale: str, runs: int, warmup: int) -> dict:
    universe = ctx.universe(scale)
    books = price_books(universe, ctx.rng(11))
    c = Contenders(universe)
    for prices in books:  # cross-check before timing
        want = c.engine(prices).copy()
        if c.not_positive:
            raise AssertionError(f"valuation at {scale}: {c.not_positive} book prices are not > 0")
        plain = c.engine_plain(prices)
        if not np.array_equal(plain, want):
            raise AssertionError(f"valuation at {scale}: value_packed_nb and value_funds_nb differ "
                                 f"(max abs diff {np.max(np.abs(plain - want)):.3g}); they must agree bit for bit")
        for name in ("scipy", "scipy_split"):
            got = getattr(c, name)(prices)
            if not np.allclose(got, want, rtol=1e-11, atol=1e-9):
                raise AssertionError(f"valuation at {scale}: {name} disagrees with the engine "
                                     f"(max abs diff {np.max(np.abs(got - want)):.3g})")
    samples = interleaved({
        "engine": lambda i: c.engine(books[i % N_BOOKS]),
        "engine_plain": lambda i: c.engine_plain(books[i % N_BOOKS]),
        "scipy": lambda i: c.scipy(books[i % N_BOOKS]),
        "scipy_split": lambda i: c.scipy_split(books[i % N_BOOKS]),
    }, runs=runs, warmup=warmup)

    # The live path: Valuer.frame (value_all_nb: value, bid and ask sides and quality figures,
    # then rounding, then exact Decimal resolution of values on a rounding tie), and the same
    # with the exact resolution switched off, to split the two.
    valuer = Valuer(universe, decimals=4)
    book = PriceBook(universe)

    def frame(i: int) -> None:
        book.prices[:] = books[i % N_BOOKS]
        valuer.frame(book)

    live_runs = max(10, runs // 3)
    resolved_before = valuer.exact_resolved
    live = interleaved({"frame": frame}, runs=live_runs, warmup=2)["frame"]
    near_ties_per_call = (valuer.exact_resolved - resolved_before) / (live_runs + 2)
    valuer.resolve_near_ties = lambda *args: None  # instance attribute: this valuer only
    no_ties = interleaved({"frame": frame}, runs=live_runs, warmup=1)["frame"]
    # Rounding alone (kernel).
    flags = np.empty(c.n_funds, dtype=np.bool_)
    rounded = np.empty(c.n_funds)
    c.engine(books[0])
    only_round = interleaved({"round": lambda i: round_half_up_nb(c.out_value, c.out_error, 4, rounded, flags)},
                             runs=live_runs, warmup=2)["round"]

    e, e0, s, s2 = (summarize_ns(samples[k]) for k in ("engine", "engine_plain", "scipy", "scipy_split"))
    v, v0, r = summarize_ns(live), summarize_ns(no_ties), summarize_ns(only_round)
    return {
        "scale": scale,
        "funds": c.n_funds,
        "holdings": universe.holdings,
        "securities": describe(universe)["securities"],
        "book_slots": universe.book_size,
        "runs": runs,
        "engine_ms_p50": e["ms_p50"], "engine_ms_p99": e["ms_p99"], "engine_ms_max": e["ms_max"],
        "engine_plain_ms_p50": e0["ms_p50"], "engine_plain_ms_p99": e0["ms_p99"],
        "speedup_vs_plain": e0["ms_p50"] / e["ms_p50"],
        "engine_bytes_per_holding": universe.packed.bytes_per_holding,
        "scipy_ms_p50": s["ms_p50"], "scipy_ms_p99": s["ms_p99"],
        "scipy_split_ms_p50": s2["ms_p50"], "scipy_split_ms_p99": s2["ms_p99"],
        "speedup_vs_scipy": s["ms_p50"] / e["ms_p50"],
        "speedup_vs_scipy_split": s2["ms_p50"] / e["ms_p50"],
        "engine_ns_per_holding_p50": e["ms_p50"] * 1e6 / max(1, universe.holdings),
        "valuer_ms_p50": v["ms_p50"], "valuer_ms_p99": v["ms_p99"],
        "valuer_without_exact_ties_ms_p50": v0["ms_p50"], "valuer_without_exact_ties_ms_p99": v0["ms_p99"],
        "round_kernel_ms_p50": r["ms_p50"],
        "near_ties_per_call": near_ties_per_call,
    }


def run(ctx: Context) -> dict:
    plan = [("demo", 2_000, 50), ("us", 60 if ctx.quick else 300, 5)]
    if not ctx.quick:
        plan.append(("global", 40, 3))
    rows = []
    for scale, runs, warmup in plan:
        rows.append(bench_scale(ctx, scale, runs, warmup))
        if scale == "global":
            ctx.drop("global")  # 10M holdings: free it for the rest of the run
    return {"valuation": rows}
