"""The live service: the parts of one instance (built and wired by ``iopv.service.factory``)
run as named tasks, with a clean stop.

Every task is named and kept; an unexpected exception in one is logged and stops the service
with a non-zero exit, instead of leaving it running half-blind. SIGTERM and SIGINT stop it
cleanly within 5 s: the clock stops (a cycle in progress is synchronous, so it completes), the
sinks get a grace period to flush (in parallel), the retained status turns ``offline``, the
connections close. At start the session's saved prices are restored (``iopv.engine.restart``).
Boundaries are cut in event time (``engine.watermark_ms`` after each boundary; docs/methodology.md),
and ``iopv.service.recovery`` keeps track of whether the book is whole, making it whole again by
state transfer from a peer (docs/scaling.md).
With ``ops.journal_dir`` set, the session is recorded in the audit journal (docs/audit.md) and
every boundary's values reach the sinks only once its journal marker is written.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterable

from iopv.config import Settings, redact_url
from iopv.core.universe import Universe
from iopv.engine import gcpolicy
from iopv.engine.cycle import Sink
from iopv.service.factory import build

log = logging.getLogger(__name__)

#: Time the sinks get to flush at shutdown; the whole stop stays well under 5 s.
DRAIN_TIMEOUT_S = 2.0
#: Time the offline status gets to reach the broker at shutdown.
STATUS_TIMEOUT_S = 0.5


class Service:
    """One engine instance: the parts ``iopv.service.factory.build`` wires, run as named tasks."""

    def __init__(self, settings: Settings, *, universe: Universe | None = None,
                 extra_sinks: Iterable[Sink] = ()):
        parts = build(settings, universe=universe, extra_sinks=extra_sinks)
        self.parts = parts
        self.settings = settings
        self.shard = parts.shard
        self.engine = parts.engine
        self.route = parts.route
        self.redis_sink = parts.redis_sink
        self.mqtt_sink = parts.mqtt_sink
        self.realtime_sink = parts.realtime_sink
        self.realtime = parts.realtime
        self.journal = parts.journal
        self.feed = parts.feed
        self.recovery = parts.recovery
        self.events = parts.events
        self.clock = parts.clock
        self.components = parts.components
        self.metrics = parts.metrics
        self.hub = parts.hub
        self.http = parts.http
        self.notifier = parts.notifier  # systemd readiness and watchdog, when run by systemd (deploy/)
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    @property
    def universe(self) -> Universe:
        """The baskets in use now (a reload swaps the engine's)."""
        return self.engine.universe

    @property
    def restored_symbols(self) -> int:
        """Symbols restored from this instance's saved state at start."""
        return self.recovery.restored_symbols

    def request_stop(self) -> None:
        self.stop_event.set()

    async def restore_state(self) -> bool:
        """Restore the session's last prices from Redis (``Recovery.restore``)."""
        return await self.recovery.restore()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; returns the process exit code (0 on a requested stop)."""
        s = self.settings
        log.info("engine %s: %d funds, %d holdings, %d symbols from %s; interval %.3f s",
                 s.engine.instance, len(self.universe.funds), self.universe.holdings,
                 len(self.universe.symbols), self.universe.source, s.engine.interval_s)
        log.info("mqtt %s, redis %s", redact_url(s.mqtt.url), redact_url(s.redis.url))
        self.engine.warm_up()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_stop)
        exit_code = 0
        stopper = asyncio.create_task(self.stop_event.wait(), name="stop")
        try:
            # Event time: the first boundary is opened now; the clock cuts it first.
            first = self.engine.first_boundary(time.time_ns())
            self.engine.open(first)
            self.clock.first_ns = first
            if self.journal is not None:
                self.journal.start(self.engine.universe, horizon_ns=first)
            restored = await self.recovery.restore()
            await self.recovery.start(restored=restored)
            if self.events is not None:
                await self.events.start()
            gcpolicy.freeze_long_lived()  # the universe and warm kernels: off the collector's walk
            if self.http:
                await self.http.start()
            self.tasks = [
                asyncio.create_task(self.feed.run(), name="feed.mqtt"),
                asyncio.create_task(self.redis_sink.run(), name="sink.redis"),
                asyncio.create_task(self.mqtt_sink.run(), name="sink.mqtt"),
                asyncio.create_task(self.engine.run(self.clock, self.stop_event), name="engine.clock"),
                asyncio.create_task(self.recovery.run(), name="recovery"),
            ]
            if s.ops.feed_silence_s > 0:  # the watchdog returns at once when off: not a task that ends the run
                self.tasks.append(asyncio.create_task(self.feed.watchdog(), name="feed.watchdog"))
            if self.realtime_sink:
                self.tasks.append(asyncio.create_task(self.realtime_sink.run(), name="sink.mqtt.realtime"))
            if self.notifier.enabled:
                self.tasks.append(asyncio.create_task(self.notifier.run(self.components.readiness, self.stop_event),
                                                      name="sd_notify"))
            if self.events is not None:
                self.tasks += [asyncio.create_task(self.events.mqtt.run(), name="sink.mqtt.events"),
                               asyncio.create_task(self.events.redis.run(), name="sink.redis.events"),
                               asyncio.create_task(self.events.run(self.stop_event), name="events.clock")]
            done, _ = await asyncio.wait([*self.tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    log.error("task %s failed; stopping", task.get_name(), exc_info=task.exception())
                    exit_code = 1
        finally:
            self.stop_event.set()
            await self._shutdown()
            stopper.cancel()
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        log.info("engine %s stopped (exit %d)", s.engine.instance, exit_code)
        return exit_code

    async def _shutdown(self) -> None:
        self.feed.on_disconnected.clear()  # a stop is not a gap to record
        async def drain(sink) -> None:
            if sink.connected and not await sink.drain(DRAIN_TIMEOUT_S):
                log.warning("%s: %d publications not flushed at shutdown", sink.name, sink.queued)
            elif sink.queued:
                log.warning("%s: disconnected, %d publications not flushed at shutdown", sink.name, sink.queued)

        if self.realtime:
            self.realtime.close()
        if self.journal is not None:  # the held boundaries go to the sinks before they drain
            await self.journal.aclose()
        mqtt_sinks = [s for s in (self.mqtt_sink, self.realtime_sink) if s is not None]
        event_sinks = self.events.sinks if self.events is not None else []
        await asyncio.gather(*(drain(sink) for sink in (self.redis_sink, *mqtt_sinks, *event_sinks)))
        # The retained "offline" status is an MQTT message: Redis has no such thing.
        await asyncio.gather(*(sink.publish_offline(STATUS_TIMEOUT_S) for sink in mqtt_sinks))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.recovery.aclose()
        if self.http:
            await self.http.close()
