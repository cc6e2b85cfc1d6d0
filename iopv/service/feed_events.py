"""The feed's reference data in the running service: fund directory, session events, daily
summaries and heartbeats (``iopv.engine.day`` makes them; ``iopv.adapters.mqtt.events`` and
``iopv.adapters.redis.events`` send them, each on a connection of its own).

Hooks: ``Engine.after_swap`` (a basket swapped in: the directory again, removed funds marked and
their retained values cleared) and the publication hook the board uses -- ``Engine.after_cycle``,
or with the audit journal on the journal's release (``iopv.service.route``) -- so the first
value, the summaries and the close count what really reached the sinks. A clock task moves the
day on (start of day, a close whose boundary never came, end of day) and publishes the heartbeat
every ``events.heartbeat_s``. At start the stored directory and this instance's session events
are read from Redis (2 s at most): a restart within the day sends no event twice, and a fund a
new basket file dropped is marked removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis.exceptions

from iopv.adapters.mqtt.events import MqttEventSink
from iopv.adapters.mqtt.sink import MqttSink
from iopv.adapters.redis.client import close_client
from iopv.adapters.redis.cluster import reader_client
from iopv.adapters.redis.events import RedisEventSink, read_directory_index, read_session
from iopv.config import Settings
from iopv.core.shard import Shard
from iopv.engine.cycle import Engine
from iopv.engine.day import Batch, FeedDay, Message
from iopv.engine.publication import Publication

log = logging.getLogger(__name__)

#: Batches each event sink holds while its server is away (the MQTT one re-sends its whole state
#: on reconnect anyway; at a 5 s heartbeat this is over 5 hours of them).
MAX_QUEUED = 4096
#: How often the clock task looks at the calendar when the heartbeat is slower or off.
TICK_S = 1.0
#: Time the reads at start may take before the day starts from scratch (logged).
READ_TIMEOUT_S = 2.0


class FeedEvents:
    """One instance's directory, session events, summaries and heartbeat (module docstring)."""

    def __init__(self, settings: Settings, engine: Engine, shard: Shard, values_sink: MqttSink, *,
                 now_ns: Callable[[], int] = time.time_ns):
        events = settings.events
        self.settings = settings
        self.engine = engine
        self.values_sink = values_sink
        self.now_ns = now_ns
        interval_ns = settings.engine.interval_ns
        # a close boundary's values may wait for the journal, then take a cycle to come out
        grace_ns = interval_ns + round(settings.ops.journal_max_wait_ms * 1e6) + 2_000_000_000
        self.day = FeedDay(engine.calendar, instance=settings.engine.instance, shard=str(shard),
                           interval_ns=interval_ns,
                           start_of_day_lead_ns=round(events.start_of_day_lead_s * 1e9),
                           end_of_day_delay_ns=round(events.end_of_day_delay_s * 1e9),
                           close_grace_ns=grace_ns, owns=shard.owns)
        self.mqtt = MqttEventSink(settings.mqtt, instance=settings.engine.instance, qos=events.qos,
                                  max_queued=MAX_QUEUED)
        self.redis = RedisEventSink(settings.redis, instance=settings.engine.instance, max_queued=MAX_QUEUED)
        self.heartbeat_s = events.heartbeat_s
        self.heartbeats = 0
        self._values_republished: int | None = None  # the value publisher's count at its reconnect
        engine.after_swap.append(self.on_swap)
        values_sink.on_connected.append(self._values_reconnected)

    @property
    def sinks(self) -> list:
        return [self.mqtt, self.redis]

    def emit(self, messages: list[Message]) -> None:
        """Hand messages made now to both sinks (never blocks)."""
        for message in messages:
            if message.kind == "session" and message.record is not None:
                log.info("events: %s of session %s at ts=%d", message.key, message.record["session"],
                         message.record["ts"])
        if messages:
            batch = Batch(self.now_ns(), tuple(messages))
            self.mqtt.offer(batch)
            self.redis.offer(batch)

    def on_swap(self, universe) -> None:
        interval_ns = self.settings.engine.interval_ns
        self.emit(self.day.on_swap(universe, self.now_ns() // interval_ns * interval_ns))

    def on_publication(self, publication: Publication) -> None:
        self.emit(self.day.on_publication(publication))

    def _values_reconnected(self) -> None:
        # The value publisher re-sends its last publication on reconnect: once that is out, the
        # removed funds' values (if that publication was older than the swap) are cleared again.
        self._values_republished = self.values_sink.published

    async def start(self) -> None:
        """Read the stored directory and session events, then publish the directory (and the
        start of day when it is due)."""
        prefix, instance = self.settings.redis.key_prefix, self.settings.engine.instance
        index: dict = {}
        saved: dict = {}
        client = reader_client(self.settings.redis, socket_timeout=READ_TIMEOUT_S,
                               socket_connect_timeout=READ_TIMEOUT_S)
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                index = await read_directory_index(client, prefix)
                saved = await read_session(client, prefix, instance)
        except (TimeoutError, redis.exceptions.RedisError, OSError, ValueError) as exc:
            log.warning("events: cannot read the stored directory and session events (%s): starting the day "
                        "from scratch", exc)
        finally:
            await close_client(client)
        messages = self.day.start(self.engine.universe, self.now_ns(), index=index, saved=saved)
        log.info("events: directory of %d funds, session %s (%s)", len(self.engine.universe.funds),
                 self.day.label_now(self.now_ns()), self.day.day.phase if self.day.day else "idle")
        self.emit(messages)

    def tick(self) -> None:
        """The clock moved: events due, removed funds' values cleared again if needed."""
        now = self.now_ns()
        self.emit(self.day.advance(now))
        mark = self._values_republished
        if mark is not None and self.values_sink.published > mark:
            self._values_republished = None
            self.mqtt.clear_again("value")

    def heartbeat(self) -> None:
        self.heartbeats += 1
        self.emit([self.day.heartbeat(self.now_ns(), self.values_sink.last_ts_ns, self.heartbeat_s)])

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: the day moved on every ``TICK_S`` (or heartbeat period, if shorter), a
        heartbeat every ``events.heartbeat_s``."""
        step_s = min(TICK_S, self.heartbeat_s) if self.heartbeat_s > 0 else TICK_S
        next_beat = time.monotonic()
        while not stop.is_set():
            self.tick()
            if self.heartbeat_s > 0 and time.monotonic() >= next_beat:
                self.heartbeat()
                next_beat += self.heartbeat_s
                if next_beat < time.monotonic():  # a stalled loop: no burst of heartbeats
                    next_beat = time.monotonic() + self.heartbeat_s
            try:
                await asyncio.wait_for(stop.wait(), step_s)
            except TimeoutError:
                pass
