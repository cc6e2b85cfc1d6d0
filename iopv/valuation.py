"""One valuation of every fund, rounded for publication exactly as the decimal formula would be.

The kernel values all funds in float64 and bounds each value's rounding error. Publication
rounds half away from zero (``ROUND_HALF_UP`` in ``decimal`` terms). A float can only round the
wrong way when the exact value lies within its error bound of a tie (…5 at the first dropped
digit); those few funds -- flagged by ``round_half_up_nb`` -- are recomputed exactly with
``Decimal`` from the shortest decimal text of each input (which is the text the PCF and the
ticks carried, for inputs of up to 15 significant digits). Every other fund never leaves the
kernel's arrays.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

import numpy as np

from iopv.book import PriceBook
from iopv.kernels import round_half_up_nb, value_funds_nb
from iopv.pcf import Universe

_EXACT = Context(prec=80)


def exact_value(universe: Universe, prices: np.ndarray, fund: int) -> Decimal:
    """The fund's per-share value in exact decimal arithmetic (80 significant digits)."""
    start, stop = universe.fund_offsets[fund], universe.fund_offsets[fund + 1]
    total = Decimal(repr(float(universe.fund_cash[fund])))
    for h in range(start, stop):
        term = _EXACT.multiply(Decimal(repr(float(universe.holding_shares[h]))),
                               Decimal(repr(float(prices[universe.holding_security[h]]))))
        term = _EXACT.multiply(term, Decimal(repr(float(prices[universe.holding_fx[h]]))))
        total = _EXACT.add(total, term)
    return _EXACT.divide(total, Decimal(repr(float(universe.fund_creation_unit[fund]))))


class Valuer:
    """Values every fund of a universe from a book, reusing its output arrays."""

    def __init__(self, universe: Universe, decimals: int):
        self.universe = universe
        self.decimals = decimals
        n = len(universe.funds)
        self.raw = np.empty(n, dtype=np.float64)
        self.error = np.empty(n, dtype=np.float64)
        self.near_tie = np.empty(n, dtype=np.bool_)
        self.exact_resolved = 0  # funds resolved exactly since start (a health figure)

    def value(self, book: PriceBook) -> np.ndarray:
        """Rounded per-share values, one per fund (a new array the caller may keep)."""
        u = self.universe
        value_funds_nb(u.fund_offsets, u.holding_security, u.holding_shares, u.holding_fx,
                       u.fund_cash, u.fund_creation_unit, book.prices, self.raw, self.error)
        rounded = np.empty_like(self.raw)
        if round_half_up_nb(self.raw, self.error, self.decimals, rounded, self.near_tie):
            self.resolve_near_ties(rounded, self.near_tie, book.prices)
        return rounded

    def resolve_near_ties(self, rounded: np.ndarray, near_tie: np.ndarray, prices: np.ndarray) -> None:
        """Replace the flagged entries of ``rounded`` by the exactly rounded decimal value,
        computed from ``prices`` (the book as it was at the boundary being published)."""
        quantum = Decimal(1).scaleb(-self.decimals)
        for fund in np.flatnonzero(near_tie):
            exact = exact_value(self.universe, prices, int(fund))
            rounded[fund] = float(exact.quantize(quantum, rounding=ROUND_HALF_UP))
            self.exact_resolved += 1
