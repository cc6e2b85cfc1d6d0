"""Offline replay: the engine driven by a tape's own timestamps (the deterministic core).

Semantics, event time (docs/methodology.md "Event time"): the value at boundary T is the book of
every tick stamped at or before T, whatever their order in the file -- what the live engine
publishes when every tick arrived within the watermark. The ticks are applied boundary by
boundary: each well-formed tick belongs to the first boundary at or after its ts, and the tape is
put in that order by a stable sort (a tape already in it, as most are, is not copied), so the
ticks of one boundary keep their file order (the live engine's arrival order). Every well-formed
tick (accepted, unknown symbol, out of order, spike held, halted, status) moves the replay clock,
rejected ticks do not. Before a tick with ts > the next boundary T is applied, every boundary up
to it is valued with the book as it stands. The first boundary is the first multiple of the
interval >= the earliest well-formed tick's ts; after the last tick, the next boundary (>= the
last ts) is valued too. Boundaries outside the calendar's sessions are not published. The book
rules (quotes, halts, spike filter) and the valuation are the live engine's kernels, run in one compiled loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from iopv.core.calendar import ALWAYS, SessionCalendar
from iopv.core.constants import N_COUNTS, N_RATIOS, N_SIDES, Side, TickOutcome
from iopv.core.universe import Universe
from iopv.engine.book import PriceBook
from iopv.engine.clock import boundary_at_or_after
from iopv.engine.tape import Tape
from iopv.engine.valuer import Frame, Valuer
from iopv.kernels.ticks import bucket_order_key_nb, price_verdicts_nb
from iopv.kernels.valuation import replay_nb

#: Output values per kernel call; bounds replay memory whatever the tape's time span.
CHUNK_VALUES = 1 << 20


def replay_frames(universe: Universe, tape: Tape, *, interval_ns: int, decimals: int = 4,
                  book: PriceBook | None = None, calendar: str = ALWAYS, stale_after_ns: int = 0,
                  min_coverage: float = 0.0, halted_weight: float = 0.5, spike_pct: float = 0.0,
                  spike_confirm_ticks: int = 3) -> Iterator[tuple[int, Frame]]:
    """Yield ``(boundary_ns, Frame)`` for every published boundary of the tape.

    ``tape.code`` is updated in place with every tick's final outcome."""
    book = book or PriceBook(universe)
    valuer = Valuer(universe, decimals, stale_after_ns=stale_after_ns, min_coverage=min_coverage,
                    halted_weight=halted_weight)
    verdicts = tape.code.copy()
    if not price_verdicts_nb(tape.price, tape.status, verdicts):
        # Nothing moves the clock, so the kernel never runs: give the ticks whose only fault is
        # their price value the verdict the kernel would have (never leave them "accepted").
        tape.code[:] = verdicts
        return
    well_formed = verdicts == TickOutcome.ACCEPTED
    first_ts = int(tape.ts[well_formed].min())  # the first in event time
    next_boundary = boundary_at_or_after(first_ts, interval_ns)
    sessions = SessionCalendar(calendar)
    opens, closes = sessions.sessions(first_ts, int(tape.ts[well_formed].max()) + 2 * interval_ns)
    n_funds = len(universe.funds)
    rows = max(1, min(4096, CHUNK_VALUES // max(1, N_SIDES * n_funds)))
    out_boundary = np.empty(rows, dtype=np.int64)
    out_value = np.empty((rows, N_SIDES, n_funds), dtype=np.float64)
    out_error = np.empty((rows, N_SIDES, n_funds), dtype=np.float64)
    out_rounded = np.empty((rows, N_SIDES, n_funds), dtype=np.float64)
    out_near = np.empty((rows, N_SIDES, n_funds), dtype=np.bool_)
    out_ratio = np.empty((rows, N_RATIOS, n_funds), dtype=np.float64)
    out_count = np.empty((rows, N_COUNTS, n_funds), dtype=np.int64)
    out_market = np.empty((rows, n_funds), dtype=np.float64)
    ticks = (tape.security, tape.price, tape.bid, tape.ask, tape.status, tape.ts, tape.code)
    keys = np.empty(len(tape), dtype=np.int64)
    order = None
    if not bucket_order_key_nb(tape.ts, verdicts, interval_ns, keys):  # not in event-time order
        order = np.argsort(keys, kind="stable")
        ticks = tuple(column[order] for column in ticks)
    del keys
    rules = (spike_pct / 100.0, spike_confirm_ticks, stale_after_ns, min_coverage, halted_weight, decimals)
    scratch = (valuer.slot_rows, valuer.slot_mid, valuer.slot_bits, valuer.all_funds)
    out = (out_boundary, out_value, out_error, out_rounded, out_near, out_ratio, out_count, out_market)
    position = 0
    while position < len(tape):
        position, written, next_boundary = replay_nb(ticks, position, next_boundary, interval_ns, book.arrays(),
                                                     valuer.basket, (opens, closes), rules, scratch, out)
        if written and out_near[written - 1].any():
            # The kernel stops right after a row with a near tie, so the book is still as it
            # was at that boundary.
            valuer.resolve_near_ties(out_rounded[written - 1], out_near[written - 1],
                                     (book.prices, book.bid, book.ask))
        for row in range(written):
            yield int(out_boundary[row]), Frame(out_rounded[row].copy(), out_ratio[row].copy(),
                                                out_count[row].copy(), out_market[row].copy())
    if order is not None:  # every tick's outcome back at its place in the file
        tape.code[order] = ticks[-1]
    session = sessions.session_at(next_boundary)
    if session is not None:
        yield next_boundary, valuer.frame(book, next_boundary, session[0])


def replay(universe: Universe, tape: Tape, *, interval_ns: int, decimals: int = 4,
           book: PriceBook | None = None, **rules) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(boundary_ns, rounded values per fund)`` for every boundary of the tape (the
    contract's ``iopv`` only; ``replay_frames`` gives every published field)."""
    for boundary, frame in replay_frames(universe, tape, interval_ns=interval_ns,
                                         decimals=decimals, book=book, **rules):
        yield boundary, frame.rounded[Side.VALUE].copy()
