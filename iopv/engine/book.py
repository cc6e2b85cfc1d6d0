"""The price book: the latest accepted price, quote and tick time of every symbol, as numba arrays.

Slots follow ``Universe.symbols`` (securities, then FX pairs), then one slot per fund ticker
that is not a holding (``Universe.market_symbols``: the fund's own market price), then one slot
fixed at 1.0 (``Universe.one_index``, the FX factor of holdings in their fund's currency).
A slot that has never ticked holds the PCF's previous close (or PCF rate; for a fund ticker, the
fund's value at previous closes) and ``NEVER`` as its tick time. ``bid``/``ask`` are NaN until a tick carries that side.
``flags`` holds ``iopv.core.constants.BookBit`` bits (halted). ``pending_price``/``pending_count`` are
the spike filter's state: a held-back level and how many consecutive ticks confirmed it.
"""

from __future__ import annotations

import numpy as np

from iopv.core.constants import FIXED_TS, NEVER_TS
from iopv.core.universe import Universe
from iopv.kernels.valuation import value_funds_nb

#: Tick time of a slot that has not ticked this session (any real tick is newer).
NEVER = NEVER_TS

#: Per-slot arrays, in the order kernels take them (see ``PriceBook.arrays``).
ARRAYS = ("prices", "bid", "ask", "last_ts", "flags", "pending_price", "pending_count")


class PriceBook:
    """Latest price, quote, tick time, status and spike state per book slot."""

    def __init__(self, universe: Universe):
        self.universe = universe
        self.symbols = universe.symbols
        self.index = universe.book_index()
        n = universe.book_size
        self.prices = np.empty(n, dtype=np.float64)
        self.bid = np.empty(n, dtype=np.float64)
        self.ask = np.empty(n, dtype=np.float64)
        self.last_ts = np.empty(n, dtype=np.int64)
        self.flags = np.empty(n, dtype=np.int64)
        self.pending_price = np.empty(n, dtype=np.float64)
        self.pending_count = np.empty(n, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Back to previous closes, as at the start of a session."""
        n = len(self.symbols)
        one = self.universe.one_index
        self.prices[:n] = self.universe.initial_prices
        self.prices[one] = 1.0
        if one > n:  # fund tickers start at their fund's value at previous closes
            u = self.universe
            value = np.empty(len(u.funds))
            value_funds_nb(u.fund_offsets, u.holding_security, u.holding_shares, u.holding_fx,
                           u.fund_cash, u.fund_creation_unit, self.prices, value, np.empty_like(value))
            own = u.fund_market >= n
            self.prices[u.fund_market[own]] = np.where(value[own] > 0, value[own], 1.0)
        self.bid[:] = np.nan
        self.ask[:] = np.nan
        self.bid[one] = self.ask[one] = 1.0
        self.last_ts[:] = NEVER
        # A fixed price (cash in a currency) is as good as a tick now and always: never stale,
        # priced, and any tick of it is older than FIXED_TS, so out of order (ignored).
        self.last_ts[self.universe.fixed_slots] = FIXED_TS
        self.flags[:] = 0
        self.pending_price[:] = np.nan
        self.pending_count[:] = 0

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The per-slot arrays in kernel argument order (``ARRAYS``)."""
        return tuple(getattr(self, name) for name in ARRAYS)

    def snapshot(self) -> tuple[np.ndarray, ...]:
        """Copies of the per-slot arrays (the book as it is now)."""
        return tuple(a.copy() for a in self.arrays())

    def price_of(self, symbol: str) -> float:
        return float(self.prices[self.index[symbol]])

    @staticmethod
    def carry_over(old: Universe, new: Universe) -> tuple[np.ndarray, np.ndarray]:
        """(new slots, old slots) of the symbols whose live state survives a basket change:
        every symbol the two share, unless the new file gives it a different previous close
        (a new day's file: the new close starts a new session for that symbol)."""
        old_index, new_index = old.book_index(), new.book_index()
        old_initial = dict(zip(old.symbols, old.initial_prices.tolist()))
        new_initial = dict(zip(new.symbols, new.initial_prices.tolist()))
        keep_new, keep_old = [], []
        for symbol, slot in new_index.items():
            previous = old_index.get(symbol)
            if previous is not None and old_initial.get(symbol) == new_initial.get(symbol):
                keep_new.append(slot)
                keep_old.append(previous)
        return np.array(keep_new, dtype=np.int64), np.array(keep_old, dtype=np.int64)

    def remap(self, universe: Universe, carry: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Re-lay this book in place (every holder of it sees the change) for ``universe``,
        keeping the state of the symbols ``carry_over`` names."""
        new_slots, old_slots = carry if carry is not None else self.carry_over(self.universe, universe)
        fresh = PriceBook(universe)
        for name in ARRAYS:
            getattr(fresh, name)[new_slots] = getattr(self, name)[old_slots]
        self.universe = universe
        self.symbols = universe.symbols
        self.index = fresh.index
        for name in ARRAYS:
            setattr(self, name, getattr(fresh, name))

    @property
    def ticked(self) -> int:
        """Number of symbols that have ticked this session."""
        return int(np.count_nonzero(self.last_ts[:len(self.symbols)] != NEVER))
