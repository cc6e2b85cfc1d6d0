"""The parts of a running service that ``/readyz`` and ``/metrics`` read, passed in explicitly.

Each part reports on itself: ``stats()`` (counters and gauges) and ``ready()`` (named readiness
checks). The HTTP server and the metrics collector see only this list, never the service's
internals, so a new sink (the real-time one, say) is covered by being listed here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from iopv.engine.clock import BoundaryClock
from iopv.engine.cycle import Engine


class Feed(Protocol):
    def stats(self) -> dict[str, float]: ...

    def ready(self, now_ns: int) -> dict[str, bool]: ...


class ReportingSink(Protocol):
    name: str
    on_sent: Callable[[float], None] | None

    def stats(self) -> dict[str, float]: ...

    def ready(self) -> dict[str, bool]: ...


@dataclass
class Components:
    """What one service runs: its engine and clock, its tick feed, every sink (boundary values
    to MQTT and Redis, real-time values when on), and the count of symbols restored at start."""

    engine: Engine
    clock: BoundaryClock
    feed: Feed
    sinks: Sequence[ReportingSink]
    restored_symbols: Callable[[], int] = field(default=lambda: 0)
    #: The audit journal's writer when ``ops.journal_dir`` is set (its ``stats()``; docs/audit.md).
    journal: object | None = None

    def book(self) -> dict:
        """Whether the book is whole (``/readyz`` reports it; it is not a readiness check: a
        recovering instance must go on publishing, flagged, rather than be taken out)."""
        health = self.engine.health
        return {"whole": health.whole, "recovering": health.reason or None}

    def readiness(self, now_ns: int | None = None) -> tuple[bool, dict[str, bool]]:
        """(ready, every check by name): the engine's, the feed's and every sink's."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        checks = dict(self.engine.ready())
        checks.update(self.feed.ready(now_ns))
        for sink in self.sinks:
            checks.update(sink.ready())
        return all(checks.values()), checks
