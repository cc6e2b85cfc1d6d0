"""Real-time mode: publish a fund's value as soon as a constituent moves it (opt-in).

A step beyond the 15-second feed, for subscribers who want every move. After each batch of
ticks is applied, ``mark_moved_nb`` marks -- through a security -> funds index -- every fund the
batch moved; ``take_due_nb`` picks the marked funds whose per-fund throttle window has passed,
and those funds (only those) are valued by the same kernel, rounding and tie resolution as the
boundary cycle and published to ``<realtime.topic_prefix>/<FUND>`` (retained) through a sink of
their own, so they never delay the boundary values. A fund still inside its window stays marked
and is published when the window ends (a timer), so the last move is never lost.

Each real-time value is a full valuation of the fund from the book, not an accumulated delta,
so there is no drift to remove: a real-time value always equals what a boundary at that
instant would publish. The boundary cycle runs unchanged beside it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from iopv.publication import build_publication
from iopv.realtime_kernels import mark_moved_nb, slot_fund_index, take_due_nb

log = logging.getLogger(__name__)


class RealtimePublisher:
    """Marks the funds each tick batch moves and publishes them, throttled per fund."""

    def __init__(self, engine, sink, *, throttle_ms: float):
        self.engine = engine
        self.sink = sink
        self.throttle_ns = round(throttle_ms * 1e6)
        self.published = 0  # records published
        self.publications = 0
        self.last_step_ms = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._index_for(engine.universe)

    def _index_for(self, universe) -> None:
        self.universe = universe
        n = len(universe.funds)
        self.slot_offsets, self.slot_funds = slot_fund_index(
            universe.fund_offsets, universe.holding_security, universe.holding_fx,
            universe.fund_market, universe.book_size, universe.one_index)
        self.dirty = np.zeros(n, dtype=np.uint8)
        self.last_publish_ns = np.full(n, np.iinfo(np.int64).min // 2, dtype=np.int64)
        self._due = np.empty(n, dtype=np.int64)

    def on_applied(self, security: np.ndarray, code: np.ndarray, count: int) -> None:
        """Intake hook: called after every applied batch with its slots and outcomes."""
        if self.engine.universe is not self.universe:  # a basket swap re-laid the book
            self._index_for(self.engine.universe)
        mark_moved_nb(security, code, count, self.slot_offsets, self.slot_funds, self.dirty)
        # Also funds marked earlier whose window has passed: the timer may not have fired yet.
        if self.dirty.any():
            self.step()

    def step(self, now_ns: int | None = None) -> int:
        """Value and publish every marked fund whose window has passed; returns how many."""
        self._timer = None
        started = time.perf_counter_ns()
        now_ns = time.time_ns() if now_ns is None else now_ns
        n = take_due_nb(self.dirty, self.last_publish_ns, now_ns, self.throttle_ns, self._due)
        if self.dirty.any():
            self._schedule()
        if not n:
            return 0
        engine = self.engine
        session = engine.calendar.session_at(now_ns)
        if session is None:
            return 0  # outside the session nothing is disseminated, real-time or not
        funds = self._due[:n].copy()
        frame = engine.valuer.frame(engine.book, now_ns, session[0], funds=funds)
        publication = build_publication(engine.universe, now_ns, frame, static=engine.static,
                                        columns=funds, extra={"realtime": True})
        self.sink.offer(publication)
        self.published += n
        self.publications += 1
        self.last_step_ms = (time.perf_counter_ns() - started) / 1e6
        return n

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (offline use): the next batch publishes them
            return
        self._timer = loop.call_later(max(self.throttle_ns / 1e9, 0.001), self.step)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
