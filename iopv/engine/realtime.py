"""Real-time mode: every tick updates the values of the funds it moves at once; each fund's value
is published at most once per throttle window (opt-in).

A step beyond the 15-second feed, for subscribers who want every move.

- **Update, per batch of ticks** (``update_terms_nb``): a slot -> holdings index gives, for every
  slot the batch moved, the holdings whose term changed (as the security or as its FX rate).
  Their three terms (value, bid, ask) are recomputed from the book and the differences added to
  their funds' running sums. So each fund's value is current within microseconds of the batch,
  whatever the throttle, at a cost proportional to the holdings moved, not to the funds.
- **Exact, without drift:** each running sum carries a bound on its accumulated float error,
  grown by every addition. Publication rounds exactly as a boundary does: a value whose bound
  could cross a rounding tie is recomputed exactly from the book (as at a boundary), so
  a published real-time value always equals what a boundary at that instant would publish.
  A rolling revaluation rebuilds every fund's sums from the book once per ``realtime.revalue_s``
  (in slices of ~0.1 ms, so it never stalls the loop; whole at start, on a basket swap and
  after a state restore) and resets their bounds, so they stay tiny and exact recomputation
  stays rare.
- **Publish on change, throttled per fund** (``take_due_nb``): the moved funds whose window has
  passed are valued and rounded at once, and those whose rounded value, bid or ask differs from
  what was last published are published; an unchanged fund publishes nothing and keeps its
  window open for its next move. At most ``MAX_FUNDS_PER_STEP`` funds are valued per step, so
  one step never blocks the event loop for long; the rest follow on the next loop iteration,
  round-robin so none starves. A fund still inside its window stays marked and is published
  when the window ends (a timer), so the last move is never lost.

Real-time records are lean: ``fund``, ``ts`` (time of calculation, int ns), ``iopv``,
``iopv_bid``, ``iopv_ask``, ``basket`` and ``"realtime": true``. The quality figures (coverage,
stale, halted, flags, status) and the vendor fields stay on the boundary values, whose
methodology they follow. They go to ``<realtime.topic_prefix>/<FUND>`` through a sink of their
own, so they never delay the boundary values.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import orjson

from iopv.core.constants import N_SIDES, Side
from iopv.engine.publication import Publication
from iopv.kernels.realtime import (
    revalue_terms_nb,
    slot_holding_index,
    take_due_nb,
    update_terms_nb,
    values_of_nb,
)
from iopv.kernels.valuation import round_sides_nb

log = logging.getLogger(__name__)

#: Most funds valued and encoded in one publishing step (~1 µs each): bounds how long a step
#: holds the event loop when many windows end at once; the rest go on the next iteration.
MAX_FUNDS_PER_STEP = 512
#: Default period in which the rolling revaluation rebuilds every fund once.
REVALUE_S = 15.0
#: Most holdings one rolling-revaluation slice rebuilds (~0.1 ms).
ROLL_HOLDINGS = 32_768


class RealtimePublisher:
    """Keeps every fund's value current tick by tick and publishes moved funds, throttled."""

    def __init__(self, engine, sink, *, throttle_ms: float, revalue_s: float = REVALUE_S,
                 max_funds_per_step: int = MAX_FUNDS_PER_STEP):
        self.engine = engine
        self.sink = sink
        self.throttle_ns = round(throttle_ms * 1e6)
        self.revalue_ns = round(revalue_s * 1e9)
        self.max_funds_per_step = max_funds_per_step
        self.published = 0  # records published
        self.unchanged = 0  # funds valued but not published: their rounded values had not changed
        #: Called as hook(funds, now_ns) with every fund a step valued, published or unchanged
        #: (the benchmark's delivery clock).
        self.on_evaluated: list = []
        #: Called with every publication after it is offered to the sink (the web server's stream).
        self.after_publish: list = []
        self.publications = 0
        self.revaluations = 0  # rounds begun, whole (revalue) or rolling
        self.exact_resolved = 0  # values whose rounding was settled exactly
        self.last_step_ms = 0.0
        self.last_publish_ns = np.empty(0, dtype=np.int64)
        self._timer: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None
        self._index_for(engine.universe)

    # -- state ---------------------------------------------------------------------------------

    def _index_for(self, universe) -> None:
        """(Re)build the index and the running sums for ``universe`` (start and basket swaps)."""
        self.universe = universe
        n = len(universe.funds)
        self.slot_offsets, self.slot_holdings = slot_holding_index(
            universe.holding_security, universe.holding_fx, universe.book_size, universe.one_index)
        self.holding_fund = np.repeat(np.arange(n, dtype=np.int32), np.diff(universe.fund_offsets))
        self.terms = np.empty((N_SIDES, universe.holdings), dtype=np.float64)
        self.totals = np.empty((N_SIDES, n), dtype=np.float64)
        self.gross = np.empty((N_SIDES, n), dtype=np.float64)
        self.drift = np.empty((N_SIDES, n), dtype=np.float64)
        self.slot_stamp = np.zeros(universe.book_size, dtype=np.int64)
        self._stamp = 0
        self.dirty = np.zeros(n, dtype=np.uint8)
        self.last_publish_ns = np.full(n, np.iinfo(np.int64).min // 2, dtype=np.int64)
        self._due = np.empty(n, dtype=np.int64)
        self._cursor = 0  # where the next step's round-robin scan for due funds starts
        self._funds = universe.funds
        #: Rounded sides last published per fund (NaN: never, so the first value always goes).
        self.last_sides = np.full((N_SIDES, n), np.nan)
        self.revalue()
        # Compile (or load from cache) the per-batch kernels now, not on the first tick.
        empty = np.zeros(0, dtype=np.int64)
        update_terms_nb(empty, empty, 0, self.slot_offsets, self.slot_holdings, self.holding_fund,
                        universe.holding_security, universe.holding_shares, universe.holding_fx,
                        universe.fund_basis, self.engine.book.prices, self.engine.book.bid,
                        self.engine.book.ask, self.terms, self.totals, self.gross, self.drift,
                        self.slot_stamp, 0, self.dirty)
        self._publication(empty, self._rounded(empty), 0)

    def revalue(self, now_ns: int | None = None) -> None:
        """Rebuild every fund's running sums from the book and reset their error bounds (at
        start, on a basket swap and after a state restore); restarts the rolling round."""
        u, book = self.universe, self.engine.book
        revalue_terms_nb(u.fund_offsets, u.holding_security, u.holding_shares, u.holding_fx,
                         u.fund_basis, book.prices, book.bid, book.ask, self.terms, self.totals,
                         self.gross, self.drift, 0, len(u.funds))
        self._round_start_ns = time.time_ns() if now_ns is None else now_ns
        self._round_fund = len(u.funds)  # this round is complete; the next starts a period on
        self.revaluations += 1

    def _roll(self, now_ns: int) -> None:
        """Rolling revaluation: funds are rebuilt in fund order at the pace that covers every
        holding once per ``revalue_ns``, at most ``ROLL_HOLDINGS`` holdings per call, so the
        drift never grows for long and no single call stalls the loop (a whole US-scale
        revaluation takes ~10 ms; a slice ~0.1 ms)."""
        u = self.universe
        offsets = u.fund_offsets
        n_funds = len(u.funds)
        if self._round_fund >= n_funds:
            if now_ns - self._round_start_ns < self.revalue_ns:
                return
            self._round_start_ns, self._round_fund = now_ns, 0
            self.revaluations += 1
        holdings = int(offsets[-1])
        elapsed = now_ns - self._round_start_ns
        due = holdings if self.revalue_ns <= 0 else holdings * elapsed // self.revalue_ns
        done = int(offsets[self._round_fund])
        if due <= done and due < holdings:
            return
        target = min(due, done + ROLL_HOLDINGS, holdings)
        # Whole funds only: those ending by ``target``, and at least the next one.
        stop = int(np.searchsorted(offsets, target, side="right")) - 1
        stop = min(max(stop, self._round_fund + 1), n_funds)
        book = self.engine.book
        revalue_terms_nb(offsets, u.holding_security, u.holding_shares, u.holding_fx,
                         u.fund_basis, book.prices, book.bid, book.ask, self.terms, self.totals,
                         self.gross, self.drift, self._round_fund, stop)
        self._round_fund = stop

    def resend_all(self) -> None:
        """Publish again, at their current values, every fund published so far, as soon as the
        throttle allows (after the sink reconnects: a restarted broker without persistence lost
        the retained values)."""
        sent = ~np.isnan(self.last_sides[Side.VALUE])
        if not sent.any():
            return
        self.last_sides[:, sent] = np.nan
        self.dirty[sent] = 1
        self.step()

    # -- intake hook ---------------------------------------------------------------------------

    def on_applied(self, security: np.ndarray, code: np.ndarray, count: int) -> None:
        """Intake hook: called after every applied batch with its slots and outcomes."""
        if self.engine.universe is not self.universe:  # a basket swap re-laid the book
            self._index_for(self.engine.universe)
        u, book = self.universe, self.engine.book
        self._stamp += 1
        update_terms_nb(security, code, count, self.slot_offsets, self.slot_holdings,
                        self.holding_fund, u.holding_security, u.holding_shares, u.holding_fx,
                        u.fund_basis, book.prices, book.bid, book.ask, self.terms, self.totals,
                        self.gross, self.drift, self.slot_stamp, self._stamp, self.dirty)
        # Also funds marked earlier whose window has passed: the timer may not have fired yet.
        if self.dirty.any():
            self.step()

    # -- publishing ----------------------------------------------------------------------------

    def step(self, now_ns: int | None = None) -> int:
        """Value up to ``max_funds_per_step`` marked funds whose window has passed and publish
        those whose rounded value, bid or ask changed; returns how many were published. Funds
        left marked are picked up by the next step (scheduled here)."""
        for handle in (self._timer, self._soon):  # the one firing, or a duplicate
            if handle is not None:
                handle.cancel()
        self._timer = self._soon = None
        if self.engine.universe is not self.universe:  # a basket swap re-laid the book
            self._index_for(self.engine.universe)
        started = time.perf_counter_ns()
        now_ns = time.time_ns() if now_ns is None else now_ns
        self._roll(now_ns)
        n = take_due_nb(self.dirty, self.last_publish_ns, now_ns, self.throttle_ns, self._cursor,
                        self._due[:self.max_funds_per_step])
        if n:
            self._cursor = (int(self._due[n - 1]) + 1) % self.dirty.size
        if self.dirty.any():
            self._schedule(more_due=n == self.max_funds_per_step)
        if not n:
            return 0
        if self.engine.calendar.session_at(now_ns) is None:
            return 0  # outside the session nothing is disseminated, real-time or not
        funds = self._due[:n].copy()
        rounded = self._rounded(funds)
        # A subscriber already holds a value that did not change: publish only the changes, and
        # leave an unchanged fund's window open for its next move.
        changed = (rounded != self.last_sides[:, funds]).any(axis=0)
        for hook in self.on_evaluated:
            hook(funds, now_ns)
        published = int(np.count_nonzero(changed))
        self.unchanged += n - published
        if published:
            if published < n:
                funds, rounded = funds[changed], rounded[:, changed]
            self.last_sides[:, funds] = rounded
            self.last_publish_ns[funds] = now_ns
            publication = self._publication(funds, rounded, now_ns)
            self.sink.offer(publication)
            for hook in self.after_publish:
                hook(publication)
            self.published += published
            self.publications += 1
        self.last_step_ms = (time.perf_counter_ns() - started) / 1e6
        return published

    def _rounded(self, funds: np.ndarray) -> np.ndarray:
        """Rounded (iopv, iopv_bid, iopv_ask) of ``funds`` from the running sums, exactly as a
        boundary would round them (3 x n)."""
        u, book, valuer = self.universe, self.engine.book, self.engine.valuer
        n = funds.size
        values = np.empty((N_SIDES, n))
        errors = np.empty((N_SIDES, n))
        values_of_nb(funds, n, self.totals, self.gross, self.drift, u.fund_cash,
                     u.fund_creation_unit, values, errors)
        rounded = np.empty_like(values)
        near = np.empty(values.shape, dtype=np.bool_)
        if round_sides_nb(values, errors, valuer.decimals, rounded, near):
            self.exact_resolved += int(near.sum())
            valuer.resolve_near_ties(rounded, near, (book.prices, book.bid, book.ask), funds)
        return rounded

    def _publication(self, funds: np.ndarray, rounded: np.ndarray, now_ns: int) -> Publication:
        names = self._funds
        version = self.universe.version
        selected = tuple(names[f] for f in funds.tolist())
        records = [{"fund": fund, "ts": now_ns, "iopv": value, "iopv_bid": bid, "iopv_ask": ask,
                    "basket": version, "realtime": True}
                   for fund, value, bid, ask in zip(selected, rounded[Side.VALUE].tolist(),
                                                    rounded[Side.BID].tolist(), rounded[Side.ASK].tolist())]
        return Publication(now_ns, selected, records, list(map(orjson.dumps, records)))

    def _schedule(self, *, more_due: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (offline use): the next batch publishes them
            return
        if more_due:
            if self._soon is None:
                self._soon = loop.call_soon(self.step)
            return
        if self._timer is None:
            self._timer = loop.call_later(max(self.throttle_ns / 1e9, 0.001), self.step)

    def close(self) -> None:
        for handle in (self._timer, self._soon):
            if handle is not None:
                handle.cancel()
        self._timer = self._soon = None
