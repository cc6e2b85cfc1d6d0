"""The factory of one engine instance: every part built here and given what it needs at
construction, so reading ``build`` shows the whole data flow (nautilus_trader's ``factories.py``
plus constructor injection). No adapter calls into the service; the hooks the parts offer
(``on_*`` lists, ``after_*`` lists) are connected here and only here.

Data flow of one instance:

    MQTT ticks --feed--> [journal records the read] --> intake.stage --> book (kernels)
    clock (boundary + watermark) --> engine.cycle --> publication --> route.publish:
        restart state taken --> [journal marker written] --> Redis sink (values + state)
                                                          --> MQTT sink (values)
                                                          --> followers: board hub, feed events
    intake (applied ticks) --> real-time publisher --> real-time MQTT sink --> board hub
    feed (subscribed / disconnected) --> recovery (whole or not; state transfer) --> status
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Iterable

from iopv.adapters.journal.writer import JournalWriter
from iopv.adapters.mqtt.feed import MqttTickFeed
from iopv.adapters.mqtt.sink import MqttSink
from iopv.adapters.redis import state as redis_state
from iopv.adapters.redis.cluster import ClusterRedisSink
from iopv.adapters.redis.sink import RedisSink
from iopv.config import Settings
from iopv.core import names
from iopv.core.shard import Shard, load_shard, parse_shard, tick_symbols
from iopv.core.universe import Universe
from iopv.engine import restart
from iopv.engine.clock import BoundaryClock
from iopv.engine.cycle import Engine, Sink
from iopv.engine.realtime import RealtimePublisher
from iopv.service.api import ValuesHub
from iopv.service.components import Components
from iopv.service.feed_events import FeedEvents
from iopv.service.metrics import Metrics
from iopv.service.recovery import Recovery
from iopv.service.route import PublicationRoute
from iopv.service.sdnotify import Notifier
from iopv.service.web import WebServer

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Parts:
    """Everything one instance runs, wired (``build``)."""

    settings: Settings
    shard: Shard
    engine: Engine
    route: PublicationRoute
    redis_sink: RedisSink
    mqtt_sink: MqttSink
    realtime_sink: MqttSink | None
    realtime: RealtimePublisher | None
    journal: JournalWriter | None
    feed: MqttTickFeed
    recovery: Recovery
    events: FeedEvents | None
    clock: BoundaryClock
    components: Components
    metrics: Metrics
    hub: ValuesHub
    http: WebServer | None
    notifier: Notifier


def restart_state(engine: Engine, instance: str, boundary_ns: int, *, held: bool = False) -> bytes:
    """The restart state of a boundary: the book as of it, whether it is whole, who took it (and
    the ticks held for the next boundary, for a journal checkpoint)."""
    return restart.snapshot(engine.book, boundary_ns, health=engine.health.state(), instance=instance,
                            held=engine.intake.held_ticks() if held else None)


def shard_topics(settings: Settings, engine: Engine) -> list[str]:
    """A shard subscribes to its own symbols' topics and to ``<prefix>/_batch`` (arrays)."""
    prefix = settings.mqtt.tick_topic_prefix
    return [names.tick_batch_topic(prefix), *(names.tick_topic(prefix, s) for s in tick_symbols(engine.universe))]


def replica_status(shard: Shard, redis_sink: RedisSink, engine: Engine) -> dict:
    """The replica fields of the retained status (docs/scaling.md)."""
    health = engine.health
    status = {"shard": str(shard), "peer_writes": redis_sink.peer_writes, "divergences": redis_sink.divergences,
              "superseded": redis_sink.superseded, "whole": health.whole}
    if not health.whole:
        status["recovering"] = health.reason
    return status


def build(settings: Settings, *, universe: Universe | None = None, extra_sinks: Iterable[Sink] = ()) -> Parts:
    """Build and wire one instance from ``settings`` (``universe``: its baskets, default the
    shard's funds of ``engine.pcf_path``; ``extra_sinks``: more sinks of every publication)."""
    shard = parse_shard(settings.engine.shard)
    universe = universe or load_shard(settings.engine.pcf_path, shard)
    instance = settings.engine.instance

    # Sinks of the boundary values; the Redis one also keeps the restart state.
    redis_class = ClusterRedisSink if settings.redis.cluster else RedisSink
    redis_sink = redis_class(settings.redis, max_queued=settings.redis.history_queue_cycles,
                             state_key=redis_state.state_key(settings), instance=instance)
    mqtt_sink = MqttSink(settings.mqtt, instance=instance, max_queued=settings.intake.sink_queue_cycles)
    journal = JournalWriter(settings) if settings.ops.journal_dir else None

    # The engine hands each publication to the route: state, journal gate, sinks, followers.
    route = PublicationRoute([mqtt_sink, *extra_sinks], state_sink=redis_sink, journal=journal)
    engine = Engine(universe, settings, publish=route.publish)
    route.snapshot = functools.partial(restart_state, engine, instance)
    route.messages = lambda: engine.intake.messages
    if journal is not None:
        engine.after_swap.append(journal.basket)

    # Ticks in: the feed records each read in the journal (if on), then stages it in the intake.
    feed = MqttTickFeed(settings.mqtt, engine.intake, instance=instance, silence_s=settings.ops.feed_silence_s,
                        topics=None if shard.whole else functools.partial(shard_topics, settings, engine),
                        recorder=journal)
    if not shard.whole:  # a basket swap may add symbols: subscribe to their topics
        engine.after_cycle.append(_Resubscriber(engine, feed))

    # Real-time values (off by default): their own sink and connection.
    realtime_sink = realtime = None
    if settings.realtime.enabled:
        rt = settings.realtime
        rt_mqtt = dataclasses.replace(settings.mqtt, value_topic_prefix=rt.topic_prefix, value_qos=rt.qos)
        realtime_sink = MqttSink(rt_mqtt, instance=f"{instance}-rt", max_queued=settings.intake.sink_queue_cycles,
                                 name="mqtt-realtime")
        realtime = RealtimePublisher(engine, realtime_sink, throttle_ms=rt.throttle_ms, revalue_s=rt.revalue_s)
        engine.intake.on_applied.append(realtime.on_applied)
        realtime_sink.on_connected.append(realtime.resend_all)

    # Whole or recovering: the restart state, the feed's gaps, state transfer from a peer.
    recovery = Recovery(settings, engine, journal=journal,
                        after_merge=realtime.revalue if realtime is not None else None,
                        first_message_ns=lambda: feed.first_message_ns)
    feed.on_subscribed.append(recovery.resumed)
    feed.on_disconnected.append(recovery.disconnected)
    engine.health.on_change.append(lambda _event, _detail: mqtt_sink.status_changed())
    mqtt_sink.status_fields = functools.partial(replica_status, shard, redis_sink, engine)
    redis_sink.on_divergence.append(mqtt_sink.status_changed)

    # Reference data for subscribers: directory, session events, summaries, heartbeat.
    events = FeedEvents(settings, engine, shard, mqtt_sink) if settings.events.enabled else None
    if events is not None:
        route.followers.append(events.on_publication)

    # Operators: what /readyz and /metrics read, the board, systemd.
    clock = BoundaryClock(settings.engine.interval_ns, cut_delay_ns=settings.engine.watermark_ns)
    sinks = [redis_sink, mqtt_sink, *([realtime_sink] if realtime_sink else []), *(events.sinks if events else [])]
    components = Components(engine, clock, feed, sinks, restored_symbols=lambda: recovery.restored_symbols,
                            journal=journal)
    metrics = Metrics(components)
    engine.after_cycle.append(lambda _publication: metrics.cycle_duration.observe(engine.last_cycle_ms / 1e3))
    hub = ValuesHub(settings, lambda: engine.universe)
    http = None
    if settings.ops.http_port:
        http = WebServer(settings, components, metrics, hub, settings.ops.http_host, settings.ops.http_port)
        route.followers.append(hub.on_publication)
        if realtime is not None:
            realtime.after_publish.append(hub.on_realtime)
    return Parts(settings=settings, shard=shard, engine=engine, route=route, redis_sink=redis_sink,
                 mqtt_sink=mqtt_sink, realtime_sink=realtime_sink, realtime=realtime, journal=journal, feed=feed,
                 recovery=recovery, events=events, clock=clock, components=components, metrics=metrics, hub=hub,
                 http=http, notifier=Notifier())


class _Resubscriber:
    """After a cycle that swapped in a new basket: subscribe to the topics it added."""

    def __init__(self, engine: Engine, feed: MqttTickFeed):
        self.engine, self.feed = engine, feed
        self.universe = engine.universe

    def __call__(self, _publication) -> None:
        if self.engine.universe is self.universe:
            return
        self.universe = self.engine.universe
        task = asyncio.ensure_future(self.feed.resubscribe())

        def failed(done: asyncio.Task) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.warning(
                    "ticks: subscribing to a new basket's topics failed (%s); the next reconnect subscribes to "
                    "them", done.exception())

        task.add_done_callback(failed)
