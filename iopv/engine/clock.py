"""Dissemination boundaries: multiples of the interval since the epoch (UTC), in int64 ns.

With the default 15 s interval the boundaries fall at :00, :15, :30 and :45 of every minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable


def boundary_at_or_after(ts_ns: int, interval_ns: int) -> int:
    """The first boundary >= ts_ns."""
    return -(-ts_ns // interval_ns) * interval_ns


def boundary_after(ts_ns: int, interval_ns: int) -> int:
    """The first boundary > ts_ns."""
    return (ts_ns // interval_ns + 1) * interval_ns


class BoundaryClock:
    """Sleeps until each boundary's cut -- the wall-clock boundary plus ``cut_delay_ns`` (the
    watermark: ticks stamped at or before the boundary may still be on their way) -- and yields
    the boundary.

    When the process wakes after more than one cut has passed (a stalled event loop, a
    suspended machine) it yields only the latest boundary, because earlier states can no longer
    be reconstructed; the skipped boundaries are counted in ``missed``. ``lateness_ns`` holds the
    last wake-up's delay after its cut (scheduler jitter). The first boundary is the first one
    after the clock starts, or ``first_ns`` when set (the engine opens it before the clock runs)."""

    def __init__(self, interval_ns: int, now_ns: Callable[[], int] = time.time_ns, *, cut_delay_ns: int = 0):
        self.interval_ns = interval_ns
        self.now_ns = now_ns
        self.cut_delay_ns = cut_delay_ns
        self.first_ns: int | None = None
        self.missed = 0
        self.lateness_ns = 0

    def stats(self) -> dict[str, int]:
        """The clock's counters for ``/metrics``."""
        return {"boundaries_missed": self.missed}

    async def boundaries(self, stop: asyncio.Event) -> AsyncIterator[int]:
        delay = self.cut_delay_ns
        target = self.first_ns if self.first_ns is not None else boundary_after(self.now_ns(), self.interval_ns)
        while not stop.is_set():
            now = self.now_ns()
            while now < target + delay:
                try:
                    await asyncio.wait_for(stop.wait(), (target + delay - now) / 1e9)
                    return
                except TimeoutError:
                    now = self.now_ns()
            latest = (now - delay) // self.interval_ns * self.interval_ns
            if latest > target:
                self.missed += (latest - target) // self.interval_ns
                target = latest
            self.lateness_ns = now - target - delay
            yield target
            target += self.interval_ns
