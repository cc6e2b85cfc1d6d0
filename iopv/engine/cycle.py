"""The cycle: at each boundary, swap in a staged basket if any, apply pending ticks, value and
grade every fund in one kernel call, encode once, and hand the publication to every sink (which
never blocks the clock). Boundaries outside the calendar's sessions publish nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from iopv.config import Settings
from iopv.core.calendar import SessionCalendar
from iopv.core.constants import (
    BookBit,
    CountRow,
    FundFlag,
    FundStatus,
    TickOutcome,
    counts_by_reason,
)
from iopv.core.shard import parse_shard
from iopv.core.universe import Universe
from iopv.engine import gcpolicy
from iopv.engine.book import NEVER, PriceBook
from iopv.engine.clock import BoundaryClock, boundary_after
from iopv.engine.health import BookHealth
from iopv.engine.intake import TickIntake
from iopv.engine.publication import Publication, build_publication, static_fields
from iopv.engine.reload import BasketReloader, PreparedBasket
from iopv.engine.valuer import Valuer

log = logging.getLogger(__name__)

#: Late ticks are logged at most this often (every one is counted).
LATE_LOG_EVERY_S = 10.0


class Sink(Protocol):
    name: str

    def offer(self, publication: Publication) -> None: ...


class Engine:
    """Owns the book, the intake and the valuer of one universe."""

    def __init__(self, universe: Universe, settings: Settings, sinks: list[Sink] | tuple = (), *,
                 publish: Callable[[Publication], None] | None = None):
        """``publish(publication)`` takes every cycle's publication (the live service's route:
        ``iopv.service.route``); without it, the publication is offered to ``sinks``."""
        e = settings.engine
        self.universe = universe
        self.settings = settings
        self.book = PriceBook(universe)
        self.intake = TickIntake(self.book, capacity=settings.intake.batch_capacity,
                                 topic_prefix=settings.mqtt.tick_topic_prefix,
                                 spike_pct=e.spike_pct, spike_confirm_ticks=e.spike_confirm_ticks,
                                 max_lead_ns=e.max_lead_ns)
        #: Whole or recovering (``iopv.engine.health``); a book that is not whole flags its values.
        self.health = BookHealth()
        self._overflows = 0  # held_overflow outcomes seen by the last cycle
        self._late_logged = 0  # late ticks logged so far, and when
        self._late_logged_at = -LATE_LOG_EVERY_S
        self.calendar = SessionCalendar(e.calendar)
        self.valuer = self._valuer(universe)
        self.static = static_fields(universe)
        self.reloader = BasketReloader(e.pcf_path, e.pcf_watch_s, parse_shard(e.shard))
        self._staged: PreparedBasket | None = None
        self.sinks = list(sinks)
        self.cycles = 0
        self.outside_session = 0  # boundaries skipped because the market was closed
        self.last_cycle_ms = 0.0
        self.last_publication: Publication | None = None
        #: Called after every cycle with its publication (service metrics hook).
        self.after_cycle: list = []
        #: Called after every basket swap with the new universe (the audit journal records it).
        self.after_swap: list = []
        self.publish = publish if publish is not None else self.offer

    def stats(self, now_ns: int) -> dict:
        """The engine's counters for ``/metrics``: cycles, ticks by outcome (``REASONS`` order),
        tick messages, staged and held ticks, basket symbols by status (``holding_status``), and
        whether the book is whole (``iopv.engine.health``)."""
        intake = self.intake
        health = self.health
        return {"cycles": self.cycles, "ticks": intake.counts.tolist(), "tick_messages": intake.messages,
                "tick_staged": intake.pending, "tick_held": intake.held, "symbols": self.holding_status(now_ns),
                "book_whole": health.whole, "book_recovering": health.reason, "book_lost": dict(health.lost_count),
                "book_regained": dict(health.regained)}

    def holding_status(self, now_ns: int) -> dict[str, int]:
        """Symbols never ticked this session, ticked but stale (older than ``engine.stale_after_s``;
        0 = never), and halted (``book.flags & BookBit.HALTED``)."""
        book = self.book
        n = len(book.symbols)
        last_ts = book.last_ts[:n]
        never = last_ts == NEVER
        stale_after_s = self.settings.engine.stale_after_s
        cutoff = now_ns - int(stale_after_s * 1e9) if stale_after_s > 0 else NEVER
        return {
            "never_ticked": int(np.count_nonzero(never)),
            "stale": int(np.count_nonzero(~never & (last_ts < cutoff))),
            "halted": int(np.count_nonzero(book.flags[:n] & BookBit.HALTED)),
        }

    def ready(self) -> dict[str, bool]:
        """The engine's readiness checks for ``/readyz``."""
        return {"baskets_loaded": len(self.universe.funds) > 0}

    def _valuer(self, universe: Universe) -> Valuer:
        e = self.settings.engine
        return Valuer(universe, e.decimals, stale_after_ns=round(e.stale_after_s * 1e9),
                      min_coverage=e.min_coverage, halted_weight=e.halted_weight)

    @property
    def event_time(self) -> bool:
        """Boundaries are cut in event time (``open`` was called): docs/methodology.md."""
        return self.intake.event_time

    def open(self, first_boundary_ns: int) -> None:
        """Cut boundaries in event time from ``first_boundary_ns`` on: its book holds the ticks
        stamped at or before it, later ones wait for their own boundary (the live service and a
        journal replay open; an engine never opened applies ticks in arrival order)."""
        self.intake.open(first_boundary_ns)

    def first_boundary(self, now_ns: int) -> int:
        """The first boundary after ``now_ns``: what the live service opens and its clock cuts first."""
        return boundary_after(now_ns, self.settings.engine.interval_ns)

    def warm_up(self) -> None:
        """Compile (or load from cache) every live kernel now, not on the first tick."""
        self.intake.flush()
        self.valuer.frame(self.book, 0, 0)

    def request_reload(self) -> None:
        """Reload the basket file (validated off the clock, swapped in at a boundary)."""
        self.reloader.request()

    def stage_basket(self, prepared: PreparedBasket) -> None:
        """Hand over a validated basket; the next cycle swaps it in before valuing."""
        self._staged = prepared

    def swap_basket(self, prepared: PreparedBasket) -> None:
        """Swap in a validated basket now: flush ticks decoded against the old layout, remap
        the book in place keeping the live state of the symbols that remain."""
        self.intake.flush()
        old = self.universe
        gcpolicy.thaw_and_refreeze_soon()  # the old basket's objects must be collectable
        if self.intake.held:  # held ticks keep their symbols: old slot -> new slot
            new_index = prepared.universe.book_index()
            slot_map = np.full(old.book_size, -1, dtype=np.int64)
            for symbol, slot in self.book.index.items():
                slot_map[slot] = new_index.get(symbol, -1)
            self.intake.remap_held(slot_map)
        self.book.remap(prepared.universe, prepared.carry)
        self.universe = prepared.universe
        self.valuer = self._valuer(prepared.universe)
        self.static = static_fields(prepared.universe)
        self.reloader.loaded += 1
        log.info("basket swapped: %s version %s -> %s: %d funds, %d holdings, %d symbols kept",
                 prepared.universe.source, old.version, prepared.universe.version,
                 len(prepared.universe.funds), prepared.universe.holdings, prepared.carry[0].size)
        for hook in self.after_swap:
            hook(prepared.universe)

    def offer(self, publication: Publication) -> None:
        """Hand a publication to every sink (never blocks)."""
        for sink in self.sinks:
            sink.offer(publication)

    def cycle(self, boundary_ns: int, *, cut: bool = True) -> Publication | None:
        """Cut ``boundary_ns``: value every fund from the book of the ticks stamped at or before it
        (event time, once ``open``; else every tick applied so far) and offer the publication to
        every sink; then open the next boundary (``cut``; a journal replay that explains the
        boundary's book first calls ``cut`` itself). None (nothing published) when the boundary
        is outside the calendar's sessions."""
        started = time.perf_counter_ns()
        if self._staged is not None:
            prepared, self._staged = self._staged, None
            self.swap_basket(prepared)
        intake = self.intake
        if intake.event_time:
            intake.advance(boundary_ns)  # the clock skipped boundaries: their held ticks first
        intake.flush()
        try:
            return self._value(boundary_ns, started)
        finally:
            if cut:
                self.cut(boundary_ns)

    def cut(self, boundary_ns: int) -> None:
        """After ``boundary_ns`` was valued: open the next boundary (its held ticks are applied)."""
        if self.intake.event_time:
            self.intake.cut(boundary_ns, boundary_ns + self.settings.engine.interval_ns)

    def _check_health(self, boundary_ns: int) -> bool:
        """Whether the book is whole at this boundary: ticks dropped since the last cycle make it
        not whole; every symbol ticked since the gap makes it whole (``iopv.engine.health``)."""
        health = self.health
        overflows = int(self.intake.counts[TickOutcome.HELD_OVERFLOW])
        if overflows != self._overflows:
            self._overflows = overflows
            health.lost("overflow", boundary_ns)
            health.resumed(boundary_ns)  # ticks after the drop reach the book
        if health.whole:
            return True
        return health.check_fresh(self.book.last_ts[:len(self.book.symbols)], boundary_ns)

    def _value(self, boundary_ns: int, started: int) -> Publication | None:
        whole = self._check_health(boundary_ns)
        session = self.calendar.session_at(boundary_ns)
        if session is None:
            self.outside_session += 1
            return None
        frame = self.valuer.frame(self.book, boundary_ns, session[0])
        if not whole:  # every fund: flagged recovering, at least degraded
            count = frame.count
            count[CountRow.FUND_FLAGS] |= FundFlag.RECOVERING
            np.maximum(count[CountRow.FUND_STATUS], FundStatus.DEGRADED, out=count[CountRow.FUND_STATUS])
        publication = build_publication(self.universe, boundary_ns, frame, static=self.static, whole=whole)
        self.last_publication = publication
        self.publish(publication)
        self.cycles += 1
        self.last_cycle_ms = (time.perf_counter_ns() - started) / 1e6
        for hook in self.after_cycle:
            hook(publication)
        return publication

    def _log_late(self) -> None:
        """Late ticks, logged at most once per ``LATE_LOG_EVERY_S`` (they are all counted)."""
        late = int(self.intake.counts[TickOutcome.LATE])
        now = time.monotonic()
        if late > self._late_logged and now - self._late_logged_at >= LATE_LOG_EVERY_S:
            log.warning("%d tick(s) arrived after their boundary's cut (late, engine.watermark_ms = %g): "
                        "each counts from the next boundary (%d since start)", late - self._late_logged,
                        self.settings.engine.watermark_ms, late)
            self._late_logged, self._late_logged_at = late, now

    async def run(self, clock: BoundaryClock, stop: asyncio.Event) -> None:
        """Run a cycle at every boundary's cut until ``stop`` is set; SIGHUP reloads the baskets."""
        loop = asyncio.get_running_loop()
        hup = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            hup = True
        reloader = asyncio.create_task(self.reloader.run(self, stop), name="engine.reload")
        try:
            async for boundary in clock.boundaries(stop):
                if reloader.done() and not reloader.cancelled() and reloader.exception():
                    raise reloader.exception()
                if self.cycle(boundary) is None:
                    continue
                log.info("cycle ts=%d funds=%d took=%.2fms after-cut=%.2fms ticks=%s",
                         boundary, len(self.universe.funds), self.last_cycle_ms,
                         clock.lateness_ns / 1e6, counts_by_reason(self.intake.counts))
                self._log_late()
        finally:
            reloader.cancel()
            await asyncio.gather(reloader, return_exceptions=True)
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
