"""Basket changes while running: load a new PCF off the clock, swap it in at a boundary.

A reload is requested by SIGHUP, by the file watch (``engine.pcf_watch_s``: the file's size or
modification time changed) or by code (``Engine.request_reload``). The file is read and fully
validated in a worker thread, and the book's carry-over map is computed there too, so the event
loop never stalls on a large file; the engine swaps the prepared basket in between two
boundaries (``Engine.cycle``), so every published value uses exactly one basket. A bad file
leaves the running baskets untouched and is reported with every problem (``PcfError``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

import numpy as np

from iopv.core.shard import Shard, load_shard
from iopv.core.universe import PcfError, Universe
from iopv.engine.book import PriceBook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedBasket:
    """A validated universe and the slots whose live state carries over into it."""

    universe: Universe
    carry: tuple[np.ndarray, np.ndarray]
    signature: tuple[int, int] | None


def file_signature(path: str) -> tuple[int, int] | None:
    """(size, mtime ns) of the file, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def prepare(path: str, current: Universe, shard: Shard = Shard(0, 1)) -> PreparedBasket:
    """Load and validate ``path`` (``shard``'s funds) and map the live book onto it (raises PcfError)."""
    signature = file_signature(path)
    universe = load_shard(path, shard)
    return PreparedBasket(universe, PriceBook.carry_over(current, universe), signature)


class BasketReloader:
    """Watches for reload requests and prepares new baskets for the engine."""

    def __init__(self, path: str, watch_s: float, shard: Shard = Shard(0, 1)):
        self.path = path
        self.shard = shard
        self.watch_s = watch_s
        self.requested = asyncio.Event()
        self.signature = file_signature(path)
        self.loaded = 0
        self.failed = 0
        self.last_error = ""

    def request(self) -> None:
        self.requested.set()

    async def run(self, engine, stop: asyncio.Event) -> None:
        """Until ``stop``: wait for a request (or a changed file), prepare, hand to ``engine``."""
        while not stop.is_set():
            timeout = self.watch_s if self.watch_s > 0 else None
            try:
                await asyncio.wait_for(self.requested.wait(), timeout)
            except TimeoutError:
                if file_signature(self.path) in (None, self.signature):
                    continue
                log.info("basket file %s changed; reloading", self.path)
            self.requested.clear()
            try:
                prepared = await asyncio.to_thread(prepare, self.path, engine.universe, self.shard)
            except PcfError as exc:
                self.failed += 1
                self.last_error = str(exc)
                self.signature = file_signature(self.path)  # do not retry the same bad file
                log.error("basket reload rejected; keeping %s (version %s):\n%s",
                          engine.universe.source, engine.universe.version, exc)
                continue
            self.signature = prepared.signature
            engine.stage_basket(prepared)
