"""The cycle: at each boundary, apply pending ticks, value every fund in one kernel call,
encode once, and hand the publication to every sink (which never blocks the clock)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import numpy as np

from iopv.book import PriceBook
from iopv.clock import BoundaryClock
from iopv.codes import counts_by_reason
from iopv.config import Settings
from iopv.intake import TickIntake
from iopv.kernels import apply_ticks_nb
from iopv.pcf import Universe
from iopv.publication import Publication, build_publication
from iopv.valuation import Valuer

log = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    def offer(self, publication: Publication) -> None: ...


class Engine:
    """Owns the book, the intake and the valuer of one universe."""

    def __init__(self, universe: Universe, settings: Settings, sinks: list[Sink] | tuple = ()):
        self.universe = universe
        self.settings = settings
        self.book = PriceBook(universe)
        self.intake = TickIntake(self.book, capacity=settings.intake.batch_capacity,
                                 topic_prefix=settings.mqtt.tick_topic_prefix)
        self.valuer = Valuer(universe, settings.engine.decimals)
        self.sinks = list(sinks)
        self.cycles = 0
        self.last_cycle_ms = 0.0
        self.last_publication: Publication | None = None

    def warm_up(self) -> None:
        """Compile (or load from cache) every live kernel now, not on the first tick."""
        empty_i = np.empty(0, dtype=np.int64)
        apply_ticks_nb(empty_i, np.empty(0, dtype=np.float64), empty_i, empty_i.copy(), 0,
                       self.book.prices, self.book.last_ts)
        self.valuer.value(self.book)

    def cycle(self, boundary_ns: int) -> Publication:
        """Value every fund as of now and offer the publication to every sink."""
        started = time.perf_counter_ns()
        self.intake.flush()
        values = self.valuer.value(self.book)
        publication = build_publication(self.universe, boundary_ns, values)
        self.last_publication = publication
        for sink in self.sinks:
            sink.offer(publication)
        self.cycles += 1
        self.last_cycle_ms = (time.perf_counter_ns() - started) / 1e6
        return publication

    async def run(self, clock: BoundaryClock, stop: asyncio.Event) -> None:
        """Run a cycle at every boundary until ``stop`` is set."""
        async for boundary in clock.boundaries(stop):
            self.cycle(boundary)
            log.info("cycle ts=%d funds=%d took=%.2fms late=%.2fms ticks=%s",
                     boundary, len(self.universe.funds), self.last_cycle_ms,
                     clock.lateness_ns / 1e6, counts_by_reason(self.intake.counts))
