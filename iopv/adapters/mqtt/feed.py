"""Live ticks over MQTT: subscribe to ``<tick_topic_prefix>/#`` and feed the intake.

One client, one reconnect loop (aiomqtt's documented v2 pattern: create the client once,
re-enter ``async with client`` after every ``MqttError``), capped jittered backoff; the
subscription is renewed on every reconnect.

Messages do not go through aiomqtt's message queue. Its ``MessagesIterator`` costs a task, an
``asyncio.wait`` and a queue put/get per message, which capped the feed far below the engine
(bench ``end_to_end.ceilings``). aiomqtt still owns the connection (connect, subscribe,
reconnect, will, TLS); a ``TickSocket`` wrapped around paho's socket hands every QoS 0 PUBLISH
straight to a callback that decodes it into the TickIntake and schedules one flush per
event-loop iteration, and paho's own ``on_message`` -- for anything the wrapper leaves to paho --
is replaced the same way. The private aiomqtt/paho attributes that takes are reached through
``iopv.adapters.mqtt.client`` only, whose ``paho_client`` fails loudly at start-up if an
upgrade moved them. Nothing reaches aiomqtt's queue: the feed awaits only the end of each
connection (``until_disconnected``).

A message whose header announces a payload over ``intake.max_payload_bytes`` is skipped as its
bytes arrive and counted ``oversize_payload`` (``TickSocket``): it costs neither memory nor the
ticks behind it. Cap it at the broker too (Mosquitto's ``message_size_limit``,
docs/operations.md), so the broker never forwards it at all.

Memory stays bounded without the queue: a message is decoded as soon as paho has read it, the
staging batch flushes when it holds ``intake.batch_capacity`` ticks, and the book keeps only the
latest price per symbol. A feed faster than the engine backs up in the socket and at the broker
(TCP flow control), not in this process.

``watchdog`` reports a silent feed: connected, yet no message for ``ops.feed_silence_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import aiomqtt
import numpy as np
import paho.mqtt.client as paho

from iopv.adapters.backoff import Backoff
from iopv.adapters.mqtt.client import make_client, paho_client, until_disconnected, wrap_sockets
from iopv.adapters.mqtt.stream import PacketSocket
from iopv.adapters.mqtt.wire import MAX_REMAINING_LENGTH, read_remaining_length
from iopv.config import MqttSettings
from iopv.core import names
from iopv.engine.codec import TOPIC_ERRORS
from iopv.engine.intake import TickIntake
from iopv.kernels.mqtt import split_packets_nb

log = logging.getLogger(__name__)

#: Topic filters per SUBSCRIBE packet (a shard subscribes to each of its symbols' topics).
SUBSCRIBE_BATCH = 500
#: Rows of the packet tables one ``split_packets_nb`` call fills (a fuller read takes more calls).
TICK_ROWS, OTHER_ROWS = 8_192, 256


class TickSocket(PacketSocket):
    """paho's socket with QoS 0 PUBLISH packets taken out and handed to ``on_publish`` directly.

    paho costs ~15-20 us of Python per message (several one-byte ``recv`` calls, packet
    dispatch, topic matching, logging), and aiomqtt drives one packet per readable event: that,
    not the engine, capped the feed near 20k msgs/s. This wrapper reads the socket in 32 KiB
    chunks, parses whole MQTT 3.1.1 packets, passes every QoS 0 PUBLISH's topic and payload to
    ``on_publish``, and leaves every other packet (CONNACK, SUBACK, PINGRESP, QoS > 0 PUBLISH,
    anything unparsable) to paho, unchanged, through ``recv`` (buffering: ``PacketSocket``).

    A QoS 0 PUBLISH whose header announces a payload over ``max_payload_bytes`` is skipped as
    its bytes arrive, never buffered, and reported once to ``on_oversize`` (the intake counts
    it ``oversize_payload``): a 64 MiB message costs a few ms of reads, and the ticks after it
    flow as before. Every message of one read gets the same receive time, taken once per read.
    The packets are found by one compiled call per read (``iopv.kernels.mqtt.split_packets_nb``).
    ``on_read``, when given, is then called with that time, the read's bytes and the table of
    the PUBLISH packets just handed to ``on_publish``, one row each: packet start, topic start,
    topic end, packet end (an int64 array valid during the call only): the audit journal records
    them in one call. At most one chunk is read per readable event (then ``BlockingIOError``,
    which paho takes as "later"), so a firehose cannot starve the event loop -- the clock, the
    sinks; while skipping, a chunk is up to 1 MiB."""

    def __init__(self, sock, on_publish, *, max_payload_bytes: int = MAX_REMAINING_LENGTH,
                 on_oversize=None, on_read=None):
        super().__init__(sock)
        self._on_publish = on_publish
        self._max_payload = max_payload_bytes
        self._on_oversize = on_oversize
        self._on_read = on_read
        self._ticks = np.empty((TICK_ROWS, 4), dtype=np.int64)  # split_packets_nb's tables
        self._others = np.empty((OTHER_ROWS, 2), dtype=np.int64)
        split_packets_nb(np.zeros(0, dtype=np.uint8), 0, 0, self._ticks, self._others)  # loaded now, not on a tick
        self._read_this_event = False

    def _read(self) -> bytes:
        if self._read_this_event and not (self._inner_pending and self._inner_pending()):
            raise BlockingIOError  # yield to the event loop; it calls back while data waits
        data = super()._read()
        self._read_this_event = True
        return data

    def _split(self, buffer: bytes) -> tuple[bytes, int]:
        on_publish = self._on_publish
        now = time.time_ns()  # the receive time of every message in this read
        data = np.frombuffer(buffer, dtype=np.uint8)
        ticks, others = self._ticks, self._others
        for_paho = []
        position = 0
        while True:
            n_ticks, n_others, oversize, stop, skip = split_packets_nb(data, position, self._max_payload,
                                                                       ticks, others)
            if n_ticks:
                rows = ticks[:n_ticks]
                _, topic_starts, topic_ends, ends = rows.T.tolist()
                for topic_start, topic_end, end in zip(topic_starts, topic_ends, ends):
                    on_publish(buffer[topic_start:topic_end], buffer[topic_end:end], now)
                if self._on_read is not None:
                    self._on_read(now, buffer, rows)
            if n_others:
                for start, end in others[:n_others].tolist():
                    for_paho.append(buffer[start:end])
            if oversize and self._on_oversize is not None:
                for _ in range(oversize):
                    self._on_oversize()
            if skip:
                self.skip(skip)  # the rest of an oversize PUBLISH, as it arrives
            position = stop
            if n_ticks < len(ticks) and n_others < len(others):
                return b"".join(for_paho), position
            # a table filled up: split on from where it stopped

    def _needed(self, partial: bytearray) -> int:
        length, index = read_remaining_length(partial, 1, len(partial))
        if length >= 2 and partial[0] & 0xF6 == 0x30 and index + 2 > len(partial):
            return index + 2  # a QoS 0 PUBLISH: the topic's length first, to tell an oversize one
        return super()._needed(partial)

    def pending(self) -> int:
        waiting = super().pending()
        if not waiting:
            self._read_this_event = False  # aiomqtt's reader stops here until the next event
        return waiting


class TickRecorder(Protocol):
    """Where the feed records what it receives (the audit journal's writer)."""

    def publishes(self, recv_ts_ns: int, buffer: bytes, rows) -> None: ...

    def tick(self, payload, topic: str | None, recv_ts_ns: int) -> None: ...


class MqttTickFeed:
    """Subscribes to tick topics and decodes every message into a TickIntake."""

    def __init__(self, settings: MqttSettings, intake: TickIntake, *, instance: str,
                 silence_s: float = 0.0, topics: Callable[[], list[str]] | None = None,
                 recorder: TickRecorder | None = None):
        """``recorder``: every message received is recorded there before it is staged (the audit
        journal): a socket read's QoS 0 PUBLISH packets at once (``publishes``), a message paho
        delivers one by one (``tick``). The feed alone decides this; the intake only stages."""
        self.settings = settings
        #: The topic filters to subscribe to (a shard's: its symbols' topics and ``_batch``);
        #: None: ``<tick_topic_prefix>/#``. Read at every (re)subscribe.
        self.topics = topics
        #: Index of the broker (in ``mqtt.url``'s list) of the current or next connection.
        self.node = 0
        self._subscribed_topics: set[str] = set()
        self._client: aiomqtt.Client | None = None
        self.intake = intake
        self.identifier = f"{instance}-ticks"
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self.silence_s = silence_s
        self.connected = False
        self.reconnects = 0
        self.subscribed = asyncio.Event()
        #: Called with the time (ns) right after every subscription (ticks stamped from then on
        #: reach the intake), and with the time of every lost or failed connection.
        self.on_subscribed: list = []
        self.on_disconnected: list = []
        self.last_message_ns = 0  # receive time of the last message
        self.first_message_ns = 0  # receive time of the first message (of the event-loop turn it came in)
        self.connected_since_ns = 0
        self.silent = False  # set by the watchdog
        self.silences = 0  # times the feed went silent
        self.callback_errors = 0  # exceptions caught in on_message (a bug: logged, counted)
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.recorder = recorder
        self._stage = intake.stage

    def _on_message(self, _client, _userdata, message: paho.MQTTMessage) -> None:
        """paho's on_message, on the event loop's thread: decode now, flush once per iteration.
        It must never raise: an exception would reach aiomqtt's reader and drop the connection."""
        try:
            self.last_message_ns = now = time.time_ns()
            if self.recorder is not None:
                self.recorder.tick(message.payload, message.topic, now)
            self._stage(message.payload, message.topic, now)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
        except Exception:  # noqa: BLE001
            self.callback_errors += 1
            log.exception("ticks: on_message failed")

    def _on_publish(self, topic: bytes, payload: bytes, now: int) -> None:
        """A QoS 0 PUBLISH straight from the socket (TickSocket), received at ``now``: as
        ``_on_message``; recorded with its whole socket read (``_on_read``)."""
        try:
            self.last_message_ns = now
            self._stage(payload, topic.decode("utf-8", TOPIC_ERRORS), now)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
        except Exception:  # noqa: BLE001
            self.callback_errors += 1
            log.exception("ticks: on_publish failed")

    def _on_read(self, now: int, buffer: bytes, marks: list[int]) -> None:
        """One socket read's QoS 0 PUBLISH packets, already staged: to ``recorder``."""
        try:
            self.recorder.publishes(now, buffer, marks)
        except Exception:  # noqa: BLE001
            self.callback_errors += 1
            log.exception("ticks: recording a read failed")

    def _on_oversize(self) -> None:
        """A PUBLISH too large to read (TickSocket skips it): counted once, as ``decode`` would."""
        try:
            self.last_message_ns = time.time_ns()
            self.intake.reject_oversize()
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
        except Exception:  # noqa: BLE001
            self.callback_errors += 1
            log.exception("ticks: on_oversize failed")

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.intake.flush()
        if not self.first_message_ns:  # once per event-loop turn: within one turn of the first message
            self.first_message_ns = self.last_message_ns

    @property
    def subscribed_topics(self) -> frozenset[str]:
        """The topic filters subscribed on the current connection."""
        return frozenset(self._subscribed_topics)

    def _make_client(self, node: int) -> aiomqtt.Client:
        client = make_client(self.settings.node(node), self.identifier)
        inner = paho_client(client)  # fails loudly if the internals used here are gone
        inner.on_message = self._on_message
        max_payload = self.intake.max_payload_bytes
        on_read = None if self.recorder is None else self._on_read
        wrap_sockets(inner, lambda sock: TickSocket(sock, self._on_publish, max_payload_bytes=max_payload,
                                                    on_oversize=self._on_oversize, on_read=on_read))
        return client

    def _topic_filters(self) -> list[str]:
        return self.topics() if self.topics is not None else [names.tick_filter(self.settings.tick_topic_prefix)]

    async def _subscribe(self, client: aiomqtt.Client, topics: list[str]) -> None:
        """Subscribe to ``topics``, many filters per SUBSCRIBE packet."""
        for i in range(0, len(topics), SUBSCRIBE_BATCH):
            await client.subscribe([(topic, 0) for topic in topics[i:i + SUBSCRIBE_BATCH]])
        self._subscribed_topics.update(topics)

    async def resubscribe(self) -> None:
        """After a basket swap: subscribe to the topics the new basket added (those it dropped
        stay subscribed until the next reconnect; their ticks count as unknown symbols)."""
        if not (self.connected and self._client is not None):
            return  # the next connect subscribes to the current list
        added = [topic for topic in self._topic_filters() if topic not in self._subscribed_topics]
        if added:
            await self._subscribe(self._client, added)
            log.info("ticks: subscribed to %d more topics after a basket change", len(added))

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        intake = self.intake
        nodes = len(self.settings.urls)
        clients: dict[int, aiomqtt.Client] = {}
        while True:
            delay = self.backoff.next_delay_s()
            node = self.node % nodes
            client = clients.get(node) or clients.setdefault(node, self._make_client(node))
            self._client = client
            try:
                async with client:
                    topics = self._topic_filters()
                    self._subscribed_topics = set()
                    await self._subscribe(client, topics)
                    self.connected_since_ns = time.time_ns()
                    self.connected = True
                    self.backoff.reset()
                    self.subscribed.set()
                    for hook in self.on_subscribed:
                        hook(self.connected_since_ns)
                    log.info("ticks: connected to %s:%s, subscribed to %s", self.settings.node(node).hostname,
                             self.settings.node(node).port,
                             topics[0] if len(topics) == 1 else f"{len(topics)} topics")
                    await until_disconnected(client)  # raises MqttError
            except aiomqtt.MqttError as exc:
                if nodes > 1:
                    self.node += 1  # a cluster: try the next node
                log.warning("ticks: %s; reconnecting in %.2f s", exc, delay)
            finally:
                self.connected = False
                self.subscribed.clear()
                intake.flush()
                lost_ns = time.time_ns()
                for hook in self.on_disconnected:
                    hook(lost_ns)
            self.reconnects += 1
            await asyncio.sleep(delay)

    def stats(self) -> dict[str, float]:
        """The feed's counters for ``/metrics``."""
        return {"connected": float(self.connected), "reconnects": self.reconnects,
                "silent": float(self.silent), "silences": self.silences}

    def ready(self, now_ns: int) -> dict[str, bool]:
        """The feed's readiness checks for ``/readyz``."""
        return {"ticks_connected": self.connected, "feed_not_silent": not self.is_silent(now_ns)}

    def is_silent(self, now_ns: int) -> bool:
        """Connected for ``silence_s`` without any message (a disconnect is reported apart)."""
        if not (self.silence_s > 0 and self.connected):
            return False
        since = max(self.last_message_ns, self.connected_since_ns)
        return now_ns - since > self.silence_s * 1e9

    async def watchdog(self) -> None:
        """Check for silence a few times per ``silence_s``; log each change, count silences."""
        if self.silence_s <= 0:
            return
        period_s = min(1.0, self.silence_s / 4)
        while True:
            await asyncio.sleep(period_s)
            silent = self.is_silent(time.time_ns())
            if silent and not self.silent:
                self.silences += 1
                log.warning("ticks: no message for %.1f s: feed silent", self.silence_s)
            elif self.silent and not silent:
                log.info("ticks: feed active again")
            self.silent = silent
