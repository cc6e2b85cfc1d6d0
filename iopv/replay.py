"""Offline replay: the engine driven by a tape's own timestamps (the deterministic core).

Semantics: ticks are processed in file order; every well-formed tick (accepted, unknown symbol
or out of order) moves the replay clock, rejected ticks do not. Before a tick with ts > the next
boundary T is applied, every boundary up to it is valued with the book as it stands, so the value
at T reflects exactly the accepted ticks with ts <= T that came before it in the file. The first
boundary is the first multiple of the interval >= the first well-formed tick's ts; after the last
tick, the next boundary (>= the last ts) is valued too.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from iopv.book import PriceBook
from iopv.clock import boundary_at_or_after
from iopv.codes import ACCEPTED
from iopv.feeds.tape import Tape
from iopv.kernels import replay_nb
from iopv.pcf import Universe
from iopv.valuation import Valuer

#: Output rows per kernel call; bounds replay memory whatever the tape's time span.
CHUNK_VALUES = 1 << 20


def replay(universe: Universe, tape: Tape, *, interval_ns: int, decimals: int = 4,
           book: PriceBook | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(boundary_ns, rounded values per fund)`` for every boundary of the tape.

    ``tape.code`` is updated in place with every tick's final outcome."""
    book = book or PriceBook(universe)
    valuer = Valuer(universe, decimals)
    well_formed = (tape.code == ACCEPTED) & np.isfinite(tape.price) & (tape.price > 0)
    if not well_formed.any():
        return
    next_boundary = boundary_at_or_after(int(tape.ts[np.argmax(well_formed)]), interval_ns)
    n_funds = len(universe.funds)
    rows = max(1, min(4096, CHUNK_VALUES // max(1, n_funds)))
    out_boundary = np.empty(rows, dtype=np.int64)
    out_value = np.empty((rows, n_funds), dtype=np.float64)
    out_error = np.empty((rows, n_funds), dtype=np.float64)
    out_rounded = np.empty((rows, n_funds), dtype=np.float64)
    out_near_tie = np.empty((rows, n_funds), dtype=np.bool_)
    u = universe
    position = 0
    while position < len(tape):
        position, written, next_boundary = replay_nb(
            tape.security, tape.price, tape.ts, tape.code, position, next_boundary, interval_ns,
            book.prices, book.last_ts, u.fund_offsets, u.holding_security, u.holding_shares,
            u.holding_fx, u.fund_cash, u.fund_creation_unit, decimals,
            out_boundary, out_value, out_error, out_rounded, out_near_tie)
        if written and out_near_tie[written - 1].any():
            # The kernel stops right after a row with a near tie, so the book is still as it
            # was at that boundary.
            valuer.resolve_near_ties(out_rounded[written - 1], out_near_tie[written - 1], book.prices)
        for row in range(written):
            yield int(out_boundary[row]), out_rounded[row].copy()
    yield next_boundary, valuer.value(book)
