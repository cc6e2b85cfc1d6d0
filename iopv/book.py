"""The price book: the latest accepted price and tick time of every symbol, as numba arrays.

Slots follow ``Universe.symbols`` (securities, then FX pairs) plus one final slot fixed at 1.0
(``Universe.one_index``), the FX factor of holdings in their fund's currency. A slot that has
never ticked holds the PCF's previous close (or PCF rate) and ``NEVER`` as its tick time.
"""

from __future__ import annotations

import numpy as np

from iopv.pcf import Universe

#: Tick time of a slot that has not ticked this session (any real tick is newer).
NEVER = np.iinfo(np.int64).min


class PriceBook:
    """Latest price and tick time per book slot."""

    def __init__(self, universe: Universe):
        self.universe = universe
        self.symbols = universe.symbols
        self.index = universe.symbol_index()
        self.prices = np.empty(len(self.symbols) + 1, dtype=np.float64)
        self.last_ts = np.empty(len(self.symbols) + 1, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Back to previous closes, as at the start of a session."""
        n = len(self.symbols)
        self.prices[:n] = self.universe.initial_prices
        self.prices[n] = 1.0
        self.last_ts[:] = NEVER

    def price_of(self, symbol: str) -> float:
        return float(self.prices[self.index[symbol]])

    @property
    def ticked(self) -> int:
        """Number of symbols that have ticked this session."""
        return int(np.count_nonzero(self.last_ts[:-1] != NEVER))
