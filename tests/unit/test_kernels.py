"""Numba kernels against an exact Decimal reference on seeded random arrays."""

from __future__ import annotations

import math
from decimal import Context, Decimal, localcontext

import numpy as np
import pytest

from bench.packed_kernel import value_packed_nb
from iopv.core.constants import N_OUTCOMES, TickOutcome
from iopv.core.packed import pack_holdings
from iopv.engine.book import NEVER
from iopv.kernels.ticks import apply_book_nb
from iopv.kernels.valuation import value_funds_nb
from tests.support.reference_intake import arrival_clock

EXACT = Context(prec=120)


def text(rng: np.random.Generator, low: float, high: float, places: int) -> str:
    return f"{rng.uniform(low, high):.{places}f}"


def random_csr(rng: np.random.Generator, n_funds: int, n_securities: int, n_rates: int,
               cancel: bool = False):
    """Random universe arrays as decimal texts and as the float64 arrays the kernel takes.
    Book: securities, then FX rates, then the slot fixed at 1.0. With ``cancel`` the cash
    nearly cancels the holdings (the worst case for relative error)."""
    price_text = [text(rng, 0.5, 2000, int(rng.integers(2, 5))) for _ in range(n_securities)]
    price_text += [text(rng, 0.005, 2, 6) for _ in range(n_rates)]
    price_text += ["1"]
    one = n_securities + n_rates
    offsets = [0]
    security, shares_text, fx = [], [], []
    for _ in range(n_funds):
        count = int(rng.integers(0, 61))
        for s in rng.choice(n_securities, size=min(count, n_securities), replace=False):
            security.append(int(s))
            shares_text.append(str(int(rng.integers(0, 10_000))) if rng.random() < 0.7
                               else text(rng, 0, 10_000, int(rng.integers(1, 5))))
            fx.append(one if rng.random() < 0.7 or n_rates == 0 else n_securities + int(rng.integers(0, n_rates)))
        offsets.append(len(security))
    cash_text = [text(rng, -1e5, 1e5, 2) for _ in range(n_funds)]
    unit_text = [str(rng.choice([50000, 50000, 1, 3, 7, 25000])) for _ in range(n_funds)]
    if cancel:
        for f in range(n_funds):
            with localcontext(EXACT):
                gross = sum((Decimal(shares_text[h]) * Decimal(price_text[security[h]]) * Decimal(price_text[fx[h]])
                             for h in range(offsets[f], offsets[f + 1])), Decimal(0))
                cash_text[f] = str(-gross.quantize(Decimal("0.01")) + Decimal(int(rng.integers(-3, 4))) / 100)
    arrays = dict(
        fund_offsets=np.array(offsets, dtype=np.int64),
        holding_security=np.array(security, dtype=np.int64),
        holding_shares=np.array([float(t) for t in shares_text], dtype=np.float64),
        holding_fx=np.array(fx, dtype=np.int64),
        fund_cash=np.array([float(t) for t in cash_text], dtype=np.float64),
        fund_creation_unit=np.array([float(t) for t in unit_text], dtype=np.float64),
        prices=np.array([float(t) for t in price_text], dtype=np.float64),
    )
    texts = dict(price=price_text, shares=shares_text, cash=cash_text, unit=unit_text)
    return arrays, texts


def exact_values(arrays, texts) -> list[Decimal]:
    with localcontext(EXACT):
        return _exact_values(arrays, texts)


def _exact_values(arrays, texts) -> list[Decimal]:
    values = []
    offsets = arrays["fund_offsets"]
    for f in range(offsets.size - 1):
        total = Decimal(texts["cash"][f])
        for h in range(offsets[f], offsets[f + 1]):
            total += (Decimal(texts["shares"][h]) * Decimal(texts["price"][arrays["holding_security"][h]])
                      * Decimal(texts["price"][arrays["holding_fx"][h]]))
        values.append(total / Decimal(texts["unit"][f]))
    return values


def run_value(arrays):
    n = arrays["fund_offsets"].size - 1
    value = np.full(n, np.nan)
    error = np.full(n, np.nan)
    value_funds_nb(arrays["fund_offsets"], arrays["holding_security"], arrays["holding_shares"],
                   arrays["holding_fx"], arrays["fund_cash"], arrays["fund_creation_unit"],
                   arrays["prices"], value, error)
    return value, error


def run_packed(arrays):
    a = arrays
    packed = pack_holdings(a["fund_offsets"], a["holding_security"], a["holding_shares"],
                           a["holding_fx"], one_index=a["prices"].size - 1)
    n = a["fund_offsets"].size - 1
    value, error = np.full(n, np.nan), np.full(n, np.nan)
    value_packed_nb(a["fund_offsets"], packed.holding, packed.shares, packed.shift, packed.fx_slots,
                    a["fund_cash"], a["fund_creation_unit"], a["prices"], value, error)
    return value, error


def gross(arrays, f: int) -> float:
    a = arrays
    h = slice(a["fund_offsets"][f], a["fund_offsets"][f + 1])
    terms = a["holding_shares"][h] * a["prices"][a["holding_security"][h]] * a["prices"][a["holding_fx"][h]]
    return (float(np.abs(terms).sum()) + abs(float(a["fund_cash"][f]))) / float(a["fund_creation_unit"][f])


@pytest.mark.parametrize("seed", range(12))
def test_value_funds_nb_matches_decimal_and_error_bound_holds(seed):
    rng = np.random.default_rng(seed)
    arrays, texts = random_csr(rng, int(rng.integers(1, 40)), 120, 3, cancel=seed % 3 == 2)
    value, error = run_value(arrays)
    exact = exact_values(arrays, texts)
    for f, (v, e, x) in enumerate(zip(value.tolist(), error.tolist(), exact)):
        deviation = abs(Decimal(v) - x)
        assert deviation <= Decimal(e), (f, v, x, e)  # the bound really bounds the float error
        g = gross(arrays, f)
        assert deviation <= Decimal(1e-13 * g)  # tiny relative to the terms' magnitude
        assert e <= 1e-12 * (g + abs(v))  # and the bound itself is tight enough to be useful
        if seed % 3 != 2 and x != 0:
            assert deviation / abs(x) < Decimal("1e-13") or deviation < Decimal("1e-9")


@pytest.mark.parametrize("seed", range(12))
def test_value_packed_nb_matches_decimal_and_the_plain_kernel_bit_for_bit(seed):
    rng = np.random.default_rng(100 + seed)
    arrays, texts = random_csr(rng, int(rng.integers(1, 40)), 120, 3 + seed % 4, cancel=seed % 3 == 2)
    if seed % 2:  # whole shares: the packed layout keeps them as float32
        arrays["holding_shares"] = np.floor(arrays["holding_shares"])
        texts["shares"] = [str(int(x)) for x in arrays["holding_shares"]]
    a = arrays
    packed = pack_holdings(a["fund_offsets"], a["holding_security"], a["holding_shares"],
                           a["holding_fx"], one_index=a["prices"].size - 1)
    assert packed.shares.dtype == (np.float32 if seed % 2 else np.float64)
    value, error = run_packed(arrays)
    plain, _ = run_value(arrays)
    assert np.array_equal(value, plain)
    for f, (v, e, x) in enumerate(zip(value.tolist(), error.tolist(), exact_values(arrays, texts))):
        assert abs(Decimal(v) - x) <= Decimal(e), (f, v, x, e)
        assert e <= 1e-12 * (gross(arrays, f) + abs(v))


@pytest.mark.parametrize("run", [run_value, run_packed])
def test_value_funds_all_cash_and_empty_universe(run):
    arrays = dict(fund_offsets=np.array([0, 0], dtype=np.int64),
                  holding_security=np.empty(0, dtype=np.int64), holding_shares=np.empty(0),
                  holding_fx=np.empty(0, dtype=np.int64), fund_cash=np.array([-1234.5]),
                  fund_creation_unit=np.array([50000.0]), prices=np.array([1.0]))
    value, error = run(arrays)
    assert value.tolist() == [-1234.5 / 50000]
    assert 0 < error[0] < 1e-15
    empty = dict(arrays, fund_offsets=np.array([0], dtype=np.int64), fund_cash=np.empty(0),
                 fund_creation_unit=np.empty(0))
    assert run(empty)[0].size == 0


def make_book(n: int):
    prices = np.arange(1, n + 1, dtype=np.float64) * 10.0
    prices[-1] = 1.0
    last_ts = np.full(n, NEVER, dtype=np.int64)
    return prices, last_ts


def apply(ticks, prices, last_ts, count=None):
    """ticks: (security, price, ts[, decoder code]). Returns (accepted, final codes)."""
    security = np.array([t[0] for t in ticks], dtype=np.int64)
    price = np.array([t[1] for t in ticks], dtype=np.float64)
    ts = np.array([t[2] for t in ticks], dtype=np.int64)
    code = np.array([t[3] if len(t) > 3 else TickOutcome.ACCEPTED for t in ticks], dtype=np.int64)
    n, slots = len(ticks), prices.size
    nan_ticks, nan_slots = np.full(n, np.nan), np.full(slots, np.nan)
    # The engine's kernel with no quotes, no trading status and the spike filter off.
    accepted = apply_book_nb(security, price, nan_ticks, nan_ticks.copy(), np.zeros(n, dtype=np.int64), ts,
                             code, n if count is None else count, prices, nan_slots, nan_slots.copy(),
                             last_ts, np.zeros(slots, dtype=np.int64), np.full(slots, np.nan),
                             np.zeros(slots, dtype=np.int64), 0.0, 3, *arrival_clock(),
                             np.zeros(N_OUTCOMES, dtype=np.int64))
    return accepted, code.tolist()


def test_apply_ticks_outcome_codes():
    prices, last_ts = make_book(4)  # 10, 20, 30, 1.0 (fixed slot, never ticked by anyone)
    ticks = [
        (-1, 5.0, 1),  # unknown symbol
        (-1, math.nan, 1),  # a bad price is rejected even for an unknown symbol
        (0, 11.0, 100),
        (0, 12.0, 99),  # older than the last accepted: dropped
        (0, 13.0, 100),  # equal ts: accepted, latest wins
        (1, math.nan, 5), (1, math.inf, 5), (1, -math.inf, 5),
        (1, 0.0, 5), (1, -0.0, 5), (1, -5.0, 5),
        (2, 31.0, 5), (2, 32.0, 5), (2, 33.0, 6),  # latest in the batch wins
        (2, 99.0, 7, TickOutcome.BAD_TS), (2, 98.0, 8, TickOutcome.MISSING_PRICE),  # decoder rejections stay rejected
        (2, 34.0, 6),
        (0, 14.0, 0),  # older again
    ]
    accepted, codes = apply(ticks, prices, last_ts)
    O = TickOutcome
    assert codes == [O.UNKNOWN_SYMBOL, O.NON_FINITE_PRICE, O.ACCEPTED, O.OUT_OF_ORDER, O.ACCEPTED,
                     O.NON_FINITE_PRICE, O.NON_FINITE_PRICE, O.NON_FINITE_PRICE,
                     O.NON_POSITIVE_PRICE, O.NON_POSITIVE_PRICE, O.NON_POSITIVE_PRICE,
                     O.ACCEPTED, O.ACCEPTED, O.ACCEPTED, O.BAD_TS, O.MISSING_PRICE, O.ACCEPTED, O.OUT_OF_ORDER]
    assert accepted == codes.count(TickOutcome.ACCEPTED) == 6
    assert prices.tolist() == [13.0, 20.0, 34.0, 1.0]
    assert last_ts.tolist() == [100, NEVER, 6, NEVER]


def test_rejected_ticks_leave_the_book_untouched():
    prices, last_ts = make_book(5)
    apply([(0, 11.0, 50), (3, 44.0, 50)], prices, last_ts)
    before = prices.copy(), last_ts.copy()
    accepted, codes = apply([(0, math.nan, 60), (0, -1.0, 60), (0, 0.0, 60), (0, 12.0, 49),
                             (3, math.inf, 70), (-1, 9.0, 80), (1, 21.0, 90, TickOutcome.BAD_TS)], prices, last_ts)
    assert accepted == 0
    assert TickOutcome.ACCEPTED not in codes
    assert prices.tolist() == before[0].tolist()
    assert last_ts.tolist() == before[1].tolist()


def test_apply_ticks_only_the_first_count():
    prices, last_ts = make_book(3)
    accepted, codes = apply([(0, 11.0, 1), (1, 21.0, 1), (1, math.nan, 1)], prices, last_ts, count=1)
    assert (accepted, codes) == (1, [TickOutcome.ACCEPTED] * 3)  # the unprocessed keep their verdict
    assert prices.tolist() == [11.0, 20.0, 1.0]


@pytest.mark.parametrize("seed", range(5))
def test_apply_ticks_random_batches_match_a_plain_model(seed):
    rng = np.random.default_rng(seed)
    n = 8
    prices, last_ts = make_book(n + 1)
    model_price = {i: float(prices[i]) for i in range(n)}
    model_ts: dict[int, int] = {}
    for _ in range(20):
        batch = []
        for _ in range(int(rng.integers(1, 50))):
            security = int(rng.integers(-1, n))
            price = float(rng.choice([rng.uniform(0.01, 100), 0.0, -1.0, math.nan, math.inf]))
            ts = int(rng.integers(0, 1000))
            code = int(rng.choice([TickOutcome.ACCEPTED] * 9 + [TickOutcome.BAD_TS]))
            batch.append((security, price, ts, code))
        accepted, codes = apply(batch, prices, last_ts)
        expected = []
        for security, price, ts, code in batch:
            if code != TickOutcome.ACCEPTED:
                expected.append(code)
            elif not math.isfinite(price):
                expected.append(TickOutcome.NON_FINITE_PRICE)
            elif price <= 0:
                expected.append(TickOutcome.NON_POSITIVE_PRICE)
            elif security < 0:
                expected.append(TickOutcome.UNKNOWN_SYMBOL)
            elif security in model_ts and ts < model_ts[security]:
                expected.append(TickOutcome.OUT_OF_ORDER)
            else:
                expected.append(TickOutcome.ACCEPTED)
                model_price[security] = price
                model_ts[security] = ts
        assert codes == expected
        assert accepted == expected.count(TickOutcome.ACCEPTED)
        assert prices[:n].tolist() == [model_price[i] for i in range(n)]
        assert last_ts[:n].tolist() == [model_ts.get(i, NEVER) for i in range(n)]
        assert prices[n] == 1.0  # the fixed slot is never written
