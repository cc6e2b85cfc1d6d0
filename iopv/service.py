"""The live service: tick feed, engine clock and sinks as named tasks, with a clean stop.

Every task is named and kept; an unexpected exception in one is logged and stops the service
with a non-zero exit, instead of leaving it running half-blind. SIGTERM and SIGINT stop it
cleanly: the clock stops, sinks get a short grace period to flush, connections close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Iterable

from iopv.clock import BoundaryClock
from iopv.config import Settings, redact_url
from iopv.engine import Engine, Sink
from iopv.feeds.mqtt import MqttTickFeed
from iopv.pcf import Universe, load_pcf
from iopv.sinks.mqtt import MqttSink
from iopv.sinks.redis import RedisSink

log = logging.getLogger(__name__)

#: Time the sinks get to flush at shutdown; the whole stop stays well under 5 s.
DRAIN_TIMEOUT_S = 2.0


class Service:
    """One engine instance with its MQTT feed and its MQTT and Redis sinks."""

    def __init__(self, settings: Settings, *, universe: Universe | None = None,
                 extra_sinks: Iterable[Sink] = ()):
        self.settings = settings
        self.universe = universe or load_pcf(settings.engine.pcf_path)
        instance = settings.engine.instance
        queue = settings.intake.sink_queue_cycles
        self.redis_sink = RedisSink(settings.redis, max_queued=queue)
        self.mqtt_sink = MqttSink(settings.mqtt, instance=instance, max_queued=queue)
        self.engine = Engine(self.universe, settings, [self.redis_sink, self.mqtt_sink, *extra_sinks])
        self.feed = MqttTickFeed(settings.mqtt, self.engine.intake, instance=instance)
        self.clock = BoundaryClock(settings.engine.interval_ns)
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def request_stop(self) -> None:
        self.stop_event.set()

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
        self.tasks = [
            asyncio.create_task(self.feed.run(), name="feed.mqtt"),
            asyncio.create_task(self.redis_sink.run(), name="sink.redis"),
            asyncio.create_task(self.mqtt_sink.run(), name="sink.mqtt"),
            asyncio.create_task(self.engine.run(self.clock, self.stop_event), name="engine.clock"),
        ]
        stopper = asyncio.create_task(self.stop_event.wait(), name="stop")
        exit_code = 0
        try:
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
        for sink in (self.redis_sink, self.mqtt_sink):
            if sink.connected and not await sink.drain(DRAIN_TIMEOUT_S / 2):
                log.warning("%s: %d publications not flushed at shutdown", sink.name, sink.queued)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
