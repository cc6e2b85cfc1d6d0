"""One valuation of every fund -- value, bid and ask values, quality figures -- rounded for
publication exactly as the decimal formula would be.

The kernel (``value_all_nb``) values all funds in one pass in float64 and bounds each value's
rounding error. Publication rounds half away from zero (``ROUND_HALF_UP`` in ``decimal`` terms).
A float can only round the wrong way when the exact value lies within its error bound of a tie
(...5 at the first dropped digit); those few values -- flagged by ``round_half_up_nb`` -- are
recomputed exactly, in integer arithmetic, from the shortest decimal text of each input (which
is the text the PCF and the ticks carried, for inputs of up to 15 significant digits). Every
other value never leaves the kernel's arrays. See docs/methodology.md, "Exact publication rounding".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import numpy as np

from iopv.core.constants import N_COUNTS, N_RATIOS, N_SIDES, N_TERM_COLS, PriceBasis, Side
from iopv.core.universe import Universe
from iopv.engine.book import NEVER, PriceBook
from iopv.kernels.valuation import (
    market_prices_nb,
    round_sides_nb,
    slot_sides_nb,
    slot_terms_nb,
    value_all_nb,
)

#: Decimal places tried by the vectorised shortest-decimal search (``_decimal_parts``).
_MAX_PLACES = 17
_POW10 = [10**k for k in range(3 * _MAX_PLACES + 8)]


def _pow10(k: int) -> int:
    return _POW10[k] if k < len(_POW10) else 10**k


def _decimal_parts(values: np.ndarray) -> tuple[list[int], list[int]]:
    """Exact decimals of float64 values as (mantissas, places): value k is
    ``mantissa[k] * 10**-places[k]``, the decimal of its shortest round-trip text (``repr``).

    Vectorised: for each value, the fewest places p (0, 1, ...) whose nearest integer m to
    value * 10**p converts back to the value (m / 10**p == value, both exact in float64 and the
    division correctly rounded) -- fewest places is fewest significant digits, i.e. the shortest
    text. Trusted only while value * 10**p < 2**50 (the product's rounding cannot move m); the
    rest (huge or tiny magnitudes) read ``repr`` itself."""
    x = np.asarray(values, dtype=np.float64)
    mantissa = np.zeros(x.size, dtype=np.int64)
    places = np.zeros(x.size, dtype=np.int64)
    todo = np.arange(x.size)
    for k in range(_MAX_PLACES):
        if not todo.size:
            break
        scale = 10.0**k
        with np.errstate(over="ignore"):  # an overflow to inf fails the test below
            scaled = x[todo] * scale
        nearest = np.rint(scaled)
        ok = (np.abs(scaled) < 2.0**50) & (nearest / scale == x[todo])
        mantissa[todo[ok]] = nearest[ok]
        places[todo[ok]] = k
        todo = todo[~ok]
    mantissas, exponents = mantissa.tolist(), places.tolist()
    for i in todo.tolist():
        sign, digits, exponent = Decimal(repr(float(x[i]))).as_tuple()
        m = int("".join(map(str, digits))) * (-1 if sign else 1)
        mantissas[i], exponents[i] = (m, -exponent) if exponent <= 0 else (m * _pow10(exponent), 0)
    return mantissas, exponents


def _sides(arrays, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bid-side prices, ask-side prices, both sides quoted) of ``slots``, by the kernels' own
    rule (``side_prices_nb``)."""
    n = slots.size
    bid_side, ask_side, quoted = np.empty(n), np.empty(n), np.empty(n, dtype=np.bool_)
    slot_sides_nb(arrays[0], arrays[1], arrays[2], slots, bid_side, ask_side, quoted)
    return bid_side, ask_side, quoted


def _side_prices(arrays, slots: np.ndarray, side: int, mid: bool) -> tuple[list[int], list[int]]:
    """Exact prices (``_decimal_parts``) the kernel uses for ``slots`` on ``side``: the bid or
    ask side's price as the kernels choose it (``side_prices_nb``: a missing side falls back to
    the last price); on the value side, the last price, or for a mid-priced fund (bid + ask) / 2
    where both sides are quoted, computed exactly."""
    if side == Side.VALUE and not mid:
        return _decimal_parts(arrays[0][slots])
    bid_side, ask_side, quoted = _sides(arrays, slots)
    if side == Side.BID:
        return _decimal_parts(bid_side)
    if side == Side.ASK:
        return _decimal_parts(ask_side)
    mantissas, places = _decimal_parts(arrays[0][slots])
    if mid:
        both = np.flatnonzero(quoted)
        bm, bp = _decimal_parts(bid_side[both])
        am, ap = _decimal_parts(ask_side[both])
        for k, b, kb, a, ka in zip(both.tolist(), bm, bp, am, ap):
            common = max(kb, ka)  # (b + a) / 2 = 5 (b + a) / 10
            mantissas[k] = 5 * (b * _pow10(common - kb) + a * _pow10(common - ka))
            places[k] = common + 1
    return mantissas, places


def exact_value(universe: Universe, arrays, fund: int, side: int = Side.VALUE) -> Fraction:
    """The fund's per-share value on ``side``, exactly: integer arithmetic on the decimals of the
    inputs' shortest texts. ``arrays`` is the book's (prices, bid, ask, ...) or just a prices
    array (last prices)."""
    if isinstance(arrays, np.ndarray):
        nan = np.full(arrays.size, np.nan)
        arrays = (arrays, nan, nan)
    mid = bool(universe.fund_basis[fund] == PriceBasis.MID)
    start, stop = universe.fund_offsets[fund], universe.fund_offsets[fund + 1]
    shares, shares_places = _decimal_parts(universe.holding_shares[start:stop])
    price, price_places = _side_prices(arrays, universe.holding_security[start:stop], side, mid)
    rate, rate_places = _side_prices(arrays, universe.holding_fx[start:stop], side, mid)
    (cash, unit), (cash_places, unit_places) = _decimal_parts(
        np.array([universe.fund_cash[fund], universe.fund_creation_unit[fund]]))
    term_places = [a + b + c for a, b, c in zip(shares_places, price_places, rate_places)]
    places = max(term_places + [cash_places])  # every term as an integer of 10**-places
    total = cash * _pow10(places - cash_places)
    pow10 = _POW10 if places < len(_POW10) else [10**k for k in range(places + 1)]
    for s, p, r, k in zip(shares, price, rate, term_places):
        total += s * p * r * pow10[places - k]
    # (total * 10**-places) / (unit * 10**-unit_places)
    return Fraction(total * _pow10(unit_places), unit * _pow10(places))


def round_half_up(value: Fraction, decimals: int) -> float:
    """``value`` rounded half away from zero to ``decimals``, as the float nearest that decimal
    (what ``float(Decimal.quantize(..., ROUND_HALF_UP))`` gives, a negative zero included)."""
    scaled = abs(value) * _pow10(decimals)
    rounded = math.floor(scaled)
    if 2 * (scaled - rounded) >= 1:
        rounded += 1
    return math.copysign(rounded / _pow10(decimals), -1.0 if value < 0 else 1.0)


@dataclass(frozen=True, eq=False)
class Frame:
    """Everything one boundary publishes, as arrays over funds (rows per ``iopv.core.constants``)."""

    rounded: np.ndarray  # float64[N_SIDES, F]: iopv, iopv_bid, iopv_ask
    ratio: np.ndarray  # float64[N_RATIOS, F]: coverage, halted weight
    count: np.ndarray  # int64[N_COUNTS, F]: stale, halted, flags, status
    market: np.ndarray  # float64[F]: the fund's own last trade this session, NaN when none

    @property
    def values(self) -> np.ndarray:
        return self.rounded[Side.VALUE]


class Valuer:
    """Values every fund of a universe from a book, reusing its output arrays."""

    def __init__(self, universe: Universe, decimals: int, *, stale_after_ns: int = 0,
                 min_coverage: float = 0.0, halted_weight: float = 0.5):
        self.universe = universe
        self.decimals = decimals
        self.stale_after_ns = stale_after_ns
        self.min_coverage = min_coverage
        self.halted_weight = halted_weight
        n = len(universe.funds)
        self.values = np.empty((N_SIDES, n), dtype=np.float64)
        self.errors = np.empty((N_SIDES, n), dtype=np.float64)
        self.near = np.empty((N_SIDES, n), dtype=np.bool_)
        self.raw = self.values[Side.VALUE]
        self.error = self.errors[Side.VALUE]
        self.near_tie = self.near[Side.VALUE]
        self.exact_resolved = 0  # iopv values resolved exactly since start (a health figure)
        self.slot_rows = np.empty((universe.book_size, N_TERM_COLS), dtype=np.float64)
        self.slot_mid = np.empty(universe.book_size, dtype=np.float64)
        self.slot_bits = np.empty(universe.book_size, dtype=np.uint8)
        self.all_funds = np.arange(n, dtype=np.int64)
        p = universe.packed
        #: The universe and its packed holdings in ``value_all_nb``'s argument order.
        self.basket = (universe.fund_offsets, p.holding, p.shares, p.shift, p.fx_slots, p.fund_fx_offsets,
                       p.fund_fx_codes, universe.fund_cash, universe.fund_creation_unit, universe.fund_basis,
                       universe.fund_market)

    def frame(self, book: PriceBook, boundary_ns: int = 0, session_open_ns: int = NEVER + 1,
              funds: np.ndarray | None = None) -> Frame:
        """Value, round and grade every fund -- or only ``funds`` (int64 indices; column k of the
        Frame is fund ``funds[k]``) -- with the book as it is (a new Frame). Ticks at or after
        ``session_open_ns`` count as this session's (default: any tick)."""
        u = self.universe
        fund_list = self.all_funds if funds is None else funds
        n = fund_list.size
        values, errors, near = (self.values, self.errors, self.near) if funds is None else (
            np.empty((N_SIDES, n)), np.empty((N_SIDES, n)), np.empty((N_SIDES, n), dtype=np.bool_))
        ratio = np.empty((N_RATIOS, n), dtype=np.float64)
        count = np.empty((N_COUNTS, n), dtype=np.int64)
        slot_terms_nb(book.prices, book.bid, book.ask, book.last_ts, book.flags, boundary_ns,
                      session_open_ns, self.stale_after_ns, self.slot_rows, self.slot_mid,
                      self.slot_bits)
        value_all_nb(*self.basket, self.slot_rows, self.slot_mid, self.slot_bits, self.min_coverage,
                     self.halted_weight, fund_list, values, errors, ratio, count)
        rounded = np.empty_like(values)
        if round_sides_nb(values, errors, self.decimals, rounded, near):
            self.resolve_near_ties(rounded, near, (book.prices, book.bid, book.ask), funds)
        market = np.empty(len(u.funds), dtype=np.float64)
        market_prices_nb(u.fund_market, book.prices, book.last_ts, market)
        return Frame(rounded, ratio, count, market if funds is None else market[funds])

    def value(self, book: PriceBook) -> np.ndarray:
        """Rounded per-share values, one per fund (a new array the caller may keep)."""
        return self.frame(book).values.copy()

    def resolve_near_ties(self, rounded: np.ndarray, near_tie: np.ndarray, arrays,
                          funds: np.ndarray | None = None) -> None:
        """Replace the flagged entries of ``rounded`` (sides x columns) by the exactly rounded
        decimal value, computed from ``arrays`` -- the book's (prices, bid, ask) as they were at
        the boundary being published. Column k is fund ``funds[k]`` (every fund in order when
        None). A bid or ask side whose every price is the value side's (no quote differs from
        the last price) takes that side's exact result."""
        done: dict[int, float] = {}
        same: dict[int, tuple[bool, bool]] = {}  # per fund: its bid side, its ask side = its value side
        for side, column in zip(*np.nonzero(near_tie)):
            fund = int(column) if funds is None else int(funds[column])
            if side != Side.VALUE and fund in done:
                if fund not in same:
                    same[fund] = self._sides_same_as_value(arrays, fund)
                if same[fund][side - Side.BID]:
                    rounded[side, column] = done[fund]
                    continue
            rounded[side, column] = round_half_up(exact_value(self.universe, arrays, fund, int(side)),
                                                  self.decimals)
            if side == Side.VALUE:
                done[fund] = rounded[side, column]
                self.exact_resolved += 1

    def _sides_same_as_value(self, arrays, fund: int) -> tuple[bool, bool]:
        """Whether the fund's bid side, and its ask side, price every holding as its value side
        does (a last-priced fund whose quotes are missing or equal to the last prices)."""
        u = self.universe
        if u.fund_basis[fund] == PriceBasis.MID:
            return False, False
        start, stop = u.fund_offsets[fund], u.fund_offsets[fund + 1]
        slots = np.concatenate((u.holding_security[start:stop], u.holding_fx[start:stop]))
        bid_side, ask_side, _ = _sides(arrays, slots)
        last = arrays[0][slots]
        return (bool(np.array_equal(bid_side, last, equal_nan=True)),
                bool(np.array_equal(ask_side, last, equal_nan=True)))
