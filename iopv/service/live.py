"""The live service: tick feed, engine clock and sinks as named tasks, with a clean stop.

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
import dataclasses
import logging
import signal
import time
from collections.abc import Iterable

from iopv.adapters.journal.writer import JournalWriter
from iopv.adapters.mqtt.feed import MqttTickFeed
from iopv.adapters.mqtt.sink import MqttSink
from iopv.adapters.redis import state as redis_state
from iopv.adapters.redis.cluster import ClusterRedisSink
from iopv.adapters.redis.sink import RedisSink
from iopv.config import Settings, redact_url
from iopv.core import names
from iopv.core.shard import load_shard, parse_shard, tick_symbols
from iopv.core.universe import Universe
from iopv.engine import gcpolicy, restart
from iopv.engine.clock import BoundaryClock
from iopv.engine.cycle import Engine, Sink
from iopv.engine.realtime import RealtimePublisher
from iopv.service.api import ValuesHub
from iopv.service.components import Components
from iopv.service.feed_events import FeedEvents
from iopv.service.metrics import Metrics
from iopv.service.recovery import Recovery
from iopv.service.sdnotify import Notifier
from iopv.service.web import WebServer

log = logging.getLogger(__name__)

#: Time the sinks get to flush at shutdown; the whole stop stays well under 5 s.
DRAIN_TIMEOUT_S = 2.0
#: Time the offline status gets to reach the broker at shutdown.
STATUS_TIMEOUT_S = 0.5


def _log_resubscribe_failure(task: asyncio.Task) -> None:
    """A failed subscribe after a basket swap is logged; the next reconnect subscribes anyway."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("ticks: subscribing to a new basket's topics failed (%s); the next reconnect "
                    "subscribes to them", task.exception())


class Service:
    """One engine instance with its MQTT feed, its MQTT and Redis sinks, and its web server."""

    def __init__(self, settings: Settings, *, universe: Universe | None = None,
                 extra_sinks: Iterable[Sink] = ()):
        self.settings = settings
        self.shard = parse_shard(settings.engine.shard)
        universe = universe or load_shard(settings.engine.pcf_path, self.shard)
        instance = settings.engine.instance
        self.engine = Engine(universe, settings, [])
        # The Redis sink writes the restart state with every boundary's values (engine.restart).
        sink_class = ClusterRedisSink if settings.redis.cluster else RedisSink
        self.redis_sink = sink_class(settings.redis, max_queued=settings.redis.history_queue_cycles,
                                     state_key=redis_state.state_key(settings),
                                     snapshot=self._restart_state, instance=instance)
        self.mqtt_sink = MqttSink(settings.mqtt, instance=instance,
                                  max_queued=settings.intake.sink_queue_cycles)
        self.engine.sinks = [self.redis_sink, self.mqtt_sink, *extra_sinks]
        self.realtime_sink: MqttSink | None = None
        self.realtime: RealtimePublisher | None = None
        if settings.realtime.enabled:
            rt = settings.realtime
            # A sink (and connection) of its own: real-time traffic never queues boundary values.
            self.realtime_sink = MqttSink(
                dataclasses.replace(settings.mqtt, value_topic_prefix=rt.topic_prefix, value_qos=rt.qos),
                instance=f"{instance}-rt", max_queued=settings.intake.sink_queue_cycles, name="mqtt-realtime")
            self.realtime = RealtimePublisher(self.engine, self.realtime_sink, throttle_ms=rt.throttle_ms,
                                              revalue_s=rt.revalue_s)
            self.engine.intake.on_applied.append(self.realtime.on_applied)
            self.realtime_sink.on_connected.append(self.realtime.resend_all)
        self.journal: JournalWriter | None = None
        self._released: tuple[int, bytes] | None = None  # a journaled boundary's state, during its offer
        self._on_release: list = []  # called with a journaled boundary's publication after the sinks
        if settings.ops.journal_dir:
            self.journal = JournalWriter(settings, max_payload_bytes=self.engine.intake.max_payload_bytes)
            self.engine.intake.recorder = self.journal.tick
            self.engine.gate = self._journal_gate
            self.engine.after_swap.append(self.journal.basket)
        self.feed = MqttTickFeed(settings.mqtt, self.engine.intake, instance=instance,
                                 silence_s=settings.ops.feed_silence_s,
                                 topics=None if self.shard.whole else self._shard_topics)
        # Whole or recovering: the feed's gaps, the start decision, state transfer from a peer.
        self.recovery = Recovery(settings, self.engine, journal=self.journal,
                                 after_merge=self.realtime.revalue if self.realtime is not None else None)
        self.feed.on_subscribed.append(self.recovery.resumed)
        self.recovery.first_message_ns = lambda: self.feed.first_message_ns
        self.feed.on_disconnected.append(self.recovery.disconnected)
        self.engine.health.on_change.append(lambda _event, _detail: self.mqtt_sink.status_changed())
        if self.journal is not None:  # a socket read's messages are recorded in one call
            self.feed.recorder = self.journal.publishes
        # Replicas: the status carries the peer-write and divergence counts, republished on a divergence.
        self.mqtt_sink.status_fields = self._replica_status
        self.redis_sink.on_divergence.append(self.mqtt_sink.status_changed)
        self._subscribed_universe = universe
        if not self.shard.whole:
            self.engine.after_cycle.append(self._after_swap)
        self.clock = BoundaryClock(settings.engine.interval_ns, cut_delay_ns=settings.engine.watermark_ns)
        self.restored_symbols = 0
        # The fund directory, session events, daily summaries and heartbeat (events.enabled): they
        # count the publications that reached the sinks, so with the journal on, those it released.
        self.events: FeedEvents | None = None
        if settings.events.enabled:
            self.events = FeedEvents(settings, self.engine, self.shard, self.mqtt_sink)
            (self._on_release if self.journal else self.engine.after_cycle).append(self.events.on_publication)
        # What /readyz and /metrics read, passed in explicitly (every sink, the real-time one too).
        sinks = [self.redis_sink, self.mqtt_sink, *([self.realtime_sink] if self.realtime_sink else []),
                 *(self.events.sinks if self.events else [])]
        self.components = Components(self.engine, self.clock, self.feed, sinks,
                                     restored_symbols=lambda: self.restored_symbols, journal=self.journal)
        self.metrics = Metrics(self.components)
        self.engine.after_cycle.append(
            lambda _publication: self.metrics.cycle_duration.observe(self.engine.last_cycle_ms / 1e3))
        self.hub = ValuesHub(settings, lambda: self.engine.universe)
        self.http: WebServer | None = None
        if settings.ops.http_port:  # the web server, fed after every cycle (and real-time publication)
            self.http = WebServer(settings, self.components, self.metrics, self.hub, settings.ops.http_host,
                                  settings.ops.http_port)
            # With the journal on, the board too gets a boundary's values once it is journaled.
            (self._on_release if self.journal else self.engine.after_cycle).append(self.hub.on_publication)
            if self.realtime is not None:
                self.realtime.after_publish.append(self.hub.on_realtime)
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.notifier = Notifier()  # systemd readiness and watchdog, when run by systemd (deploy/)

    def _shard_topics(self) -> list[str]:
        """A shard subscribes to its own symbols' topics and to ``<prefix>/_batch`` (arrays)."""
        prefix = self.settings.mqtt.tick_topic_prefix
        return [names.tick_batch_topic(prefix),
                *(names.tick_topic(prefix, symbol) for symbol in tick_symbols(self.engine.universe))]

    def _after_swap(self, _publication) -> None:
        if self.engine.universe is not self._subscribed_universe:
            self._subscribed_universe = self.engine.universe
            task = asyncio.ensure_future(self.feed.resubscribe())
            task.add_done_callback(_log_resubscribe_failure)

    def _replica_status(self) -> dict:
        sink = self.redis_sink
        health = self.engine.health
        status = {"shard": str(self.shard), "peer_writes": sink.peer_writes, "divergences": sink.divergences,
                  "superseded": sink.superseded, "whole": health.whole}
        if not health.whole:
            status["recovering"] = health.reason
        return status

    def _snapshot(self, boundary_ns: int, *, held: bool = False) -> bytes:
        """The book as of a boundary, with whether it is whole and who took it (and the held
        ticks, for a journal checkpoint)."""
        engine = self.engine
        return restart.snapshot(engine.book, boundary_ns, health=engine.health.state(),
                                instance=self.settings.engine.instance,
                                held=engine.intake.held_ticks() if held else None)

    @property
    def universe(self) -> Universe:
        """The baskets in use now (a reload swaps the engine's)."""
        return self.engine.universe

    def _restart_state(self, boundary_ns: int) -> bytes:
        """The restart state written with a boundary's values: taken at the boundary itself,
        also when the journal held the values back while later ticks were applied."""
        if self._released is not None and self._released[0] == boundary_ns:
            return self._released[1]
        return self._snapshot(boundary_ns)

    def _journal_gate(self, boundary_ns: int, publication) -> None:
        state = self._snapshot(boundary_ns)

        def release() -> None:
            self._released = (boundary_ns, state)
            try:
                self.engine.offer(publication)
            finally:
                self._released = None
            for hook in self._on_release:
                hook(publication)

        self.journal.boundary(boundary_ns, publication, release,
                              lambda: self._snapshot(boundary_ns, held=True), self.engine.intake.messages)

    def request_stop(self) -> None:
        self.stop_event.set()

    async def restore_state(self) -> bool:
        """Restore the session's last prices from Redis (unless ``ops.restore_state`` is off);
        True when a state of this session was restored."""
        if not self.settings.ops.restore_state:
            log.info("state: clean start (previous closes)")
            return False
        data = await redis_state.load(self.settings)
        if data is None:
            return False
        clock_ns = time.time_ns()
        try:
            self.restored_symbols, skipped = restart.restore(self.engine.book, data, clock_ns)
        except ValueError as exc:
            log.info("state: not restored: %s", exc)
            return False
        if self.journal is not None:
            self.journal.restored(data, clock_ns)
        log.info("state: restored %d symbols (%d entries skipped)", self.restored_symbols, skipped)
        if self.realtime is not None:  # its running sums follow the book: rebuild them
            self.realtime.revalue()
        return True

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
            restored = await self.restore_state()
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
        if self.http:
            await self.http.close()
