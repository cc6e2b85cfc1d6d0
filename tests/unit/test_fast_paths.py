"""Fast paths against their plain references, bit for bit.

- The packed holdings layout (``iopv.core.packed.PackedHoldings``) and the kernels that read it:
  ``value_all_plain_nb`` below is the live kernel as it was over the plain arrays (kept as the
  reference: one holding after the other, every term and every gross magnitude summed in holding
  order; the fund's grading is the live kernel's own ``grade_fund_nb``, so a change to that rule
  shows in the methodology tests, not hidden behind a copy); the packed kernels must reproduce
  its values, error bounds and quality figures bit for bit on seeded random universes --
  multi-currency funds, mid-priced funds, share counts that float32 cannot hold, quotes, halts,
  stale prices, fund subsets -- and on a synthetic universe of realistic shape.
- Exact resolution of near ties in integer arithmetic (``iopv.engine.valuer``): the decimals it
  reads from floats are those of their shortest text (``Decimal(repr(x))``), and its rounding is
  ``Decimal.quantize(ROUND_HALF_UP)``'s.
"""

from __future__ import annotations

import json
import math
import random
from decimal import ROUND_HALF_UP, Context, Decimal
from fractions import Fraction

import numpy as np
import pytest
from numba import njit

from bench import universes as U
from bench.packed_kernel import value_packed_nb
from iopv.core.constants import (
    N_COUNTS,
    N_RATIOS,
    N_SIDES,
    UNIT_ROUNDOFF,
    BookBit,
    CountRow,
    FundFlag,
    RatioRow,
    Side,
    SlotBit,
    TermCol,
)
from iopv.core.packed import PackedHoldings, pack_holdings, packed_kind
from iopv.core.universe import Universe, build_universe
from iopv.engine.book import PriceBook
from iopv.engine.valuer import Valuer, _decimal_parts, round_half_up
from iopv.kernels.valuation import (
    grade_fund_nb,
    slot_terms_nb,
    value_all_nb,
    value_funds_nb,
)
from tests.support.generators import random_universe


@njit
def value_all_plain_nb(fund_offsets, holding_security, holding_shares, holding_fx, fund_cash,
                 fund_creation_unit, fund_basis, fund_market, slot_rows, slot_mid, slot_bits,
                 min_coverage, halted_weight, fund_list, out_value, out_error, out_ratio, out_count):
    """One pass over the holdings of the funds in ``fund_list`` (after ``slot_terms_nb``): the
    value at last (or mid) prices, at bids and at asks, each with a float error bound (rows
    ``Side`` of ``out_value``/``out_error``), and the quality figures (``out_ratio`` rows
    ``RatioRow``, ``out_count`` rows ``CountRow``); column k describes fund ``fund_list[k]``."""
    for k in range(fund_list.size):
        f = fund_list[k]
        mid = fund_basis[f] == 1
        cash = fund_cash[f]
        total = 0.0
        total_bid = 0.0
        total_ask = 0.0
        gross = 0.0
        gross_bid = 0.0
        gross_ask = 0.0
        covered = 0.0
        halted_gross = 0.0
        stale = 0
        halted = 0
        seen = 0
        start = fund_offsets[f]
        stop = fund_offsets[f + 1]
        for h in range(start, stop):
            s = holding_security[h]
            x = holding_fx[h]
            shares = holding_shares[h]
            if mid:
                term = shares * slot_mid[s] * slot_mid[x]
            else:
                term = shares * slot_rows[s, TermCol.LAST] * slot_rows[x, TermCol.LAST]
            term_bid = shares * slot_rows[s, TermCol.BID] * slot_rows[x, TermCol.BID]
            term_ask = shares * slot_rows[s, TermCol.ASK] * slot_rows[x, TermCol.ASK]
            total += term
            total_bid += term_bid
            total_ask += term_ask
            gross += abs(term)
            gross_bid += abs(term_bid)
            gross_ask += abs(term_ask)
            # Branch-free bit arithmetic: these bits are data-dependent, mispredicted branches
            # would cost more than the multiplications.
            bits = slot_bits[s]
            seen |= bits | slot_bits[x]
            magnitude = abs(term)
            covered += magnitude * (bits & SlotBit.TICKED)
            stale += (bits & SlotBit.STALE) >> 1
            is_halted = (bits & SlotBit.HALTED) >> 2
            halted += is_halted
            halted_gross += magnitude * is_halted
        unit = fund_creation_unit[f]
        n = stop - start
        # Each term carries <= 5 roundings (two mids included), the running sum <= n more, the
        # division one: the bound below covers them with room to spare.
        value = (total + cash) / unit
        out_value[Side.VALUE, k] = value
        out_error[Side.VALUE, k] = ((n + 8) * 2.0 * UNIT_ROUNDOFF * (gross + abs(cash)) / unit
                                 + 2.0 * UNIT_ROUNDOFF * abs(value))
        value = (total_bid + cash) / unit
        out_value[Side.BID, k] = value
        out_error[Side.BID, k] = ((n + 8) * 2.0 * UNIT_ROUNDOFF * (gross_bid + abs(cash)) / unit
                                 + 2.0 * UNIT_ROUNDOFF * abs(value))
        value = (total_ask + cash) / unit
        out_value[Side.ASK, k] = value
        out_error[Side.ASK, k] = ((n + 8) * 2.0 * UNIT_ROUNDOFF * (gross_ask + abs(cash)) / unit
                                 + 2.0 * UNIT_ROUNDOFF * abs(value))
        coverage = covered / gross if gross > 0.0 else 1.0
        halted_share = halted_gross / gross if gross > 0.0 else 0.0
        out_ratio[RatioRow.COVERAGE, k] = coverage
        out_ratio[RatioRow.HALTED_WEIGHT, k] = halted_share
        market = fund_market[f]
        fund_flags, fund_status = grade_fund_nb(seen, stale, halted, coverage, halted_share,
                                                market >= 0 and slot_bits[market] & SlotBit.HALTED != 0,
                                                min_coverage, halted_weight)
        out_count[CountRow.STALE_HOLDINGS, k] = stale
        out_count[CountRow.HALTED_HOLDINGS, k] = halted
        out_count[CountRow.FUND_FLAGS, k] = fund_flags
        out_count[CountRow.FUND_STATUS, k] = fund_status



def plain_frame(universe: Universe, slot_rows, slot_mid, slot_bits, fund_list, min_coverage=0.5,
                halted_weight=0.5):
    """(values, errors, ratios, counts) of ``value_all_plain_nb`` over the plain arrays."""
    u = universe
    n = fund_list.size
    out = (np.empty((N_SIDES, n)), np.empty((N_SIDES, n)), np.empty((N_RATIOS, n)),
           np.empty((N_COUNTS, n), dtype=np.int64))
    value_all_plain_nb(u.fund_offsets, u.holding_security, u.holding_shares, u.holding_fx, u.fund_cash,
                       u.fund_creation_unit, u.fund_basis, u.fund_market, slot_rows, slot_mid, slot_bits,
                       min_coverage, halted_weight, fund_list, *out)
    return out


def packed_frame(universe: Universe, slot_rows, slot_mid, slot_bits, fund_list, min_coverage=0.5,
                 halted_weight=0.5):
    """The same from ``value_all_nb`` over ``universe.packed``."""
    u, p = universe, universe.packed
    n = fund_list.size
    out = (np.empty((N_SIDES, n)), np.empty((N_SIDES, n)), np.empty((N_RATIOS, n)),
           np.empty((N_COUNTS, n), dtype=np.int64))
    value_all_nb(u.fund_offsets, p.holding, p.shares, p.shift, p.fx_slots, p.fund_fx_offsets,
                 p.fund_fx_codes, u.fund_cash, u.fund_creation_unit, u.fund_basis, u.fund_market,
                 slot_rows, slot_mid, slot_bits, min_coverage, halted_weight, fund_list, *out)
    return out


def assert_same(got, want) -> None:
    for name, a, b in zip(("value", "error", "ratio", "count"), got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), (name, np.argwhere(a != b)[:5].tolist())


def random_book(universe: Universe, rng: np.random.Generator) -> tuple[PriceBook, int, int]:
    """A book in a random live state: moved prices, some quotes (one side or both), some slots
    ticked this session, some stale, some halted (fund tickers included). Returns (book,
    boundary_ns, session_open_ns)."""
    book = PriceBook(universe)
    n = len(universe.symbols) + len(universe.market_symbols)  # every slot but the 1.0 slot
    book.prices[:n] *= rng.uniform(0.97, 1.03, n)
    book.bid[:n] = np.where(rng.random(n) < 0.5, book.prices[:n] * 0.999, np.nan)
    book.ask[:n] = np.where(rng.random(n) < 0.5, book.prices[:n] * 1.001, np.nan)
    # Session open at 950, boundary at 1000: ticks before 950 are yesterday's, before 970 stale.
    book.last_ts[:n] = np.where(rng.random(n) < 0.6, rng.integers(900, 1_000, n), book.last_ts[:n])
    halted = (rng.random(n) < 0.05)
    halted[universe.holding_security[:2]] = True  # at least one halted holding
    book.flags[:n][halted] |= BookBit.HALTED
    return book, 1_000, 950


def slot_terms(universe: Universe, book: PriceBook, boundary_ns: int, open_ns: int, stale_ns: int):
    v = Valuer(universe, 4)
    slot_terms_nb(book.prices, book.bid, book.ask, book.last_ts, book.flags, boundary_ns, open_ns,
                  stale_ns, v.slot_rows, v.slot_mid, v.slot_bits)
    return v.slot_rows, v.slot_mid, v.slot_bits


def integer_shares(doc: list[dict]) -> list[dict]:
    """The document with every share count rounded to a whole number (float32-exact)."""
    for fund in doc:
        for holding in fund["holdings"]:
            holding["shares"] = round(holding["shares"])
    return doc


@pytest.mark.parametrize("seed", range(10))
def test_value_all_packed_is_bit_identical_to_the_plain_kernel(seed):
    rng = random.Random(seed)
    doc = random_universe(rng, (3, 12, 30)[seed % 3], max_holdings=(5, 40, 120)[seed % 3], mid=0.3)
    if seed % 2:
        doc = integer_shares(doc)
    universe = build_universe(json.loads(json.dumps(doc)))
    # Odd seeds: whole shares, packed as float32; even: some counts are not float32-exact
    # (decimal fractions), and the packed layout keeps the float64 counts.
    assert universe.packed.shares.dtype == (np.float32 if seed % 2 else np.float64)
    assert universe.packed.shift >= 1  # EUR holdings in USD funds and the EUR fund's USD ones
    np_rng = np.random.default_rng(seed)
    book, boundary, opened = random_book(universe, np_rng)
    for stale_ns in (0, 30):
        terms = slot_terms(universe, book, boundary, opened, stale_ns)
        every = np.arange(len(universe.funds), dtype=np.int64)
        subset = np_rng.permutation(every)[: max(1, every.size // 2)]
        for funds in (every, subset, every[:0]):
            assert_same(packed_frame(universe, *terms, funds), plain_frame(universe, *terms, funds))
    figures = packed_frame(universe, *terms, every)
    # The book state reached the figures being compared (not only trivial outputs).
    assert (figures[3][CountRow.FUND_FLAGS] & FundFlag.SIDE_FALLBACK).any()
    assert (figures[3][CountRow.HALTED_HOLDINGS] > 0).any() and (figures[3][CountRow.STALE_HOLDINGS] > 0).any()
    assert (figures[0][Side.BID] != figures[0][Side.ASK]).any()
    assert ((figures[2][RatioRow.COVERAGE] > 0) & (figures[2][RatioRow.COVERAGE] < 1)).any()


def test_valuer_frame_on_a_synthetic_universe_matches_the_plain_kernel():
    """Realistic shape: power-law popularity, foreign listings in a fifth of the funds, EUR
    funds; the frame's figures equal the plain kernel's, and the packed layout is 8 B/holding."""
    universe = U.to_universe(U.generate(U.Spec("packed", funds=120, target_holdings=30_000,
                                               securities=4_000, seed=7)))
    assert universe.packed.bytes_per_holding == 8 and universe.packed.shift >= 3
    rng = np.random.default_rng(3)
    book, boundary, opened = random_book(universe, rng)
    terms = slot_terms(universe, book, boundary, opened, 30)
    every = np.arange(len(universe.funds), dtype=np.int64)
    assert_same(packed_frame(universe, *terms, every), plain_frame(universe, *terms, every))
    valuer = Valuer(universe, 4, stale_after_ns=30, min_coverage=0.5)
    frame = valuer.frame(book, boundary, opened)
    _, _, ratio, count = plain_frame(universe, *terms, every)
    assert np.array_equal(frame.ratio, ratio) and np.array_equal(frame.count, count)


def test_value_packed_nb_is_bit_identical_to_value_funds_nb():
    universe = U.to_universe(U.generate(U.Spec("packed", funds=200, target_holdings=40_000,
                                               securities=5_000, seed=11)))
    u, p = universe, universe.packed
    rng = np.random.default_rng(1)
    n = len(u.funds)
    for _ in range(4):
        prices = PriceBook(u).prices * np.append(rng.uniform(0.98, 1.02, u.book_size - 1), 1.0)
        want, want_error = np.empty(n), np.empty(n)
        got, got_error = np.empty(n), np.empty(n)
        value_funds_nb(u.fund_offsets, u.holding_security, u.holding_shares, u.holding_fx,
                       u.fund_cash, u.fund_creation_unit, prices, want, want_error)
        assert value_packed_nb(u.fund_offsets, p.holding, p.shares, p.shift, p.fx_slots, u.fund_cash,
                               u.fund_creation_unit, prices, got, got_error) == 0
        assert np.array_equal(got, want)
        # The bound adds |cash| after the terms instead of before: the same bound up to a few ulps.
        assert np.allclose(got_error, want_error, rtol=1e-12, atol=0)
    prices[[0, 5, 9]] = (0.0, -1.0, np.nan)  # the count of prices the error bound cannot take
    assert value_packed_nb(u.fund_offsets, p.holding, p.shares, p.shift, p.fx_slots, u.fund_cash,
                           u.fund_creation_unit, prices, got, got_error) == 3


def test_pack_holdings_layout():
    # Book: securities 0..4, FX slots 5 and 6, market slot 7, 1.0 slot 8.
    offsets = np.array([0, 3, 3, 7], dtype=np.int64)
    security = np.array([0, 1, 2, 4, 3, 2, 0], dtype=np.int32)
    fx = np.array([8, 6, 8, 5, 8, 6, 5], dtype=np.int32)
    shares = np.array([1.0, 2.5, 3.0, 2.0**24, 0.0, 7.0, 1e6])
    packed = pack_holdings(offsets, security, shares, fx, one_index=8)
    assert packed.fx_slots.tolist() == [8, 5, 6]  # the 1.0 slot is code 0, then slot order
    assert packed.shift == 2 and packed.holding.dtype == np.uint32
    assert (packed.holding >> 2).tolist() == security.tolist()
    assert packed.fx_slots[packed.holding & 3].tolist() == fx.tolist()
    assert packed.shares.dtype == np.float32 and packed.shares.tolist() == shares.tolist()
    assert packed.bytes_per_holding == 8
    # Per fund, its distinct FX codes (the empty fund has none).
    codes = [packed.fund_fx_codes[packed.fund_fx_offsets[f]:packed.fund_fx_offsets[f + 1]].tolist()
             for f in range(3)]
    assert codes == [[0, 2], [], [0, 1, 2]]
    # One count float32 cannot hold: the float64 counts themselves, no copy.
    wide = shares.copy()
    wide[3] = 2.0**24 + 1
    assert pack_holdings(offsets, security, wide, fx, one_index=8).shares is wide
    wide[3] = 0.1
    assert pack_holdings(offsets, security, wide, fx, one_index=8).shares is wide
    wide[3] = 1e300
    assert pack_holdings(offsets, security, wide, fx, one_index=8).shares is wide
    # Every holding in its fund's currency: no FX bits at all.
    domestic = pack_holdings(offsets, security, shares, np.full(7, 8, dtype=np.int32), one_index=8)
    assert domestic.shift == 0 and domestic.holding.tolist() == security.tolist()
    assert domestic.fund_fx_codes.tolist() == [0, 0]
    empty = pack_holdings(np.zeros(3, dtype=np.int64), security[:0], shares[:0], fx[:0], one_index=3)
    assert empty.holding.size == 0 and empty.fx_slots.tolist() == [3]
    assert empty.fund_fx_offsets.tolist() == [0, 0, 0]


def test_packed_kind_widens_to_64_bits_only_when_needed():
    assert packed_kind(2**28, 4) is np.uint32
    assert packed_kind(2**28 + 1, 4) is np.uint64
    assert packed_kind(60_000, 14) is np.uint32
    assert packed_kind(60_000, 17) is np.uint64


def test_kernels_read_a_64_bit_packed_layout():
    universe = U.to_universe(U.generate(U.Spec("wide", funds=30, target_holdings=3_000,
                                               securities=600, seed=5)))
    u, p = universe, universe.packed
    shift = 40  # as if the book needed more than 32 bits
    code = p.holding & np.uint32((1 << p.shift) - 1)
    wide = PackedHoldings(holding=(u.holding_security.astype(np.uint64) << np.uint64(shift)) | code,
                          shares=p.shares, shift=shift, fx_slots=p.fx_slots,
                          fund_fx_offsets=p.fund_fx_offsets, fund_fx_codes=p.fund_fx_codes)
    object.__setattr__(u, "packed", wide)
    n = len(u.funds)
    prices = PriceBook(u).prices
    want, got, error = np.empty(n), np.empty(n), np.empty(n)
    value_funds_nb(u.fund_offsets, u.holding_security, u.holding_shares, u.holding_fx, u.fund_cash,
                   u.fund_creation_unit, prices, want, error)
    value_packed_nb(u.fund_offsets, wide.holding, wide.shares, shift, wide.fx_slots, u.fund_cash,
                    u.fund_creation_unit, prices, got, error)
    assert np.array_equal(got, want)
    book, boundary, opened = random_book(u, np.random.default_rng(2))
    terms = slot_terms(u, book, boundary, opened, 30)
    every = np.arange(n, dtype=np.int64)
    assert_same(packed_frame(u, *terms, every), plain_frame(u, *terms, every))


@pytest.mark.parametrize("shares", [-1.0, np.nan, np.inf])
def test_universe_rejects_shares_the_kernels_cannot_bound(shares):
    with pytest.raises(ValueError, match="holding_shares"):
        Universe(source="<test>", funds=("F",), fund_currency=("USD",),
                 fund_offsets=np.array([0, 1], dtype=np.int64),
                 holding_security=np.array([0], dtype=np.int32), holding_shares=np.array([shares]),
                 holding_fx=np.array([1], dtype=np.int32), fund_cash=np.zeros(1),
                 fund_creation_unit=np.ones(1), symbols=("A",), initial_prices=np.ones(1))


def test_decimal_parts_are_the_shortest_text_of_every_float():
    rng = np.random.default_rng(9)
    values = [0.0, -0.0, 1.0, 0.1, 0.2, 0.3, 1e-7, 5e-324, 2.0**-1074, 1e15, 2.0**50, 2.0**53 + 2,
              1e16, 1e17, 1.7976931348623157e308, 123456789.12345678, 0.000123, 9.999999999999999,
              99.99, 1234.5, 0.15, 2.675, 1.005, -42.4242425, 4.35, 0.07, 1e22, 1e23, 3e-5]
    # Cent and 6-decimal grids (prices, rates), whole and fractional counts, and full-precision
    # doubles at every magnitude.
    values += (np.round(rng.uniform(0.01, 5000, 4000), 2)).tolist()
    values += (np.round(rng.uniform(0.001, 200, 4000), 6)).tolist()
    values += np.floor(rng.uniform(0, 2e7, 2000)).tolist()
    values += [round(float(x), int(k))
               for x, k in zip(rng.uniform(-1e5, 1e5, 2000), rng.integers(0, 10, 2000))]
    values += (rng.standard_normal(4000) * 10.0 ** rng.integers(-30, 30, 4000)).tolist()
    mantissas, places = _decimal_parts(np.array(values))
    for x, m, k in zip(values, mantissas, places):
        assert Decimal(m).scaleb(-k) == Decimal(repr(x)), (x, m, k)


@pytest.mark.parametrize("decimals", [0, 2, 4, 6])
def test_round_half_up_matches_decimal_quantize(decimals):
    rng = random.Random(decimals)
    quantum = Decimal(1).scaleb(-decimals)
    cases = [Fraction(n, d) for n in range(-40, 41) for d in (1, 2, 3, 7, 8, 20000, 50000)]
    cases += [Fraction(rng.randint(-10**12, 10**12), rng.choice((1, 3, 50000, 10**9))) for _ in range(2000)]
    cases += [Fraction(2 * k + 1, 2 * 10**decimals) for k in range(-30, 30)]  # exact ties
    for value in cases:
        # 80 digits hold every case's quotient exactly or far beyond its rounding digit.
        exact = Context(prec=80).divide(Decimal(value.numerator), Decimal(value.denominator))
        want = float(exact.quantize(quantum, rounding=ROUND_HALF_UP))
        got = round_half_up(value, decimals)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), (value, got, want)
