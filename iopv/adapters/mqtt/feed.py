"""Live ticks over MQTT: subscribe to ``<tick_topic_prefix>/#`` and feed the intake.

One client, one reconnect loop (aiomqtt's documented v2 pattern: create the client once,
re-enter ``async with client`` after every ``MqttError``), capped jittered backoff; the
subscription is renewed on every reconnect.

Messages do not go through aiomqtt's message queue. Its ``MessagesIterator`` costs a task, an
``asyncio.wait`` and a queue put/get per message, which capped the feed far below the engine
(bench ``end_to_end.ceilings``). aiomqtt still owns the connection (connect, subscribe,
reconnect, will, TLS); the feed replaces the underlying paho client's ``on_message`` -- called by
aiomqtt's socket reader on the event loop's thread -- with a callback that decodes the payload
straight into the TickIntake and schedules one flush per event-loop iteration. aiomqtt keeps the
paho client in the private attribute ``Client._client``, so this relies on the pinned range
(aiomqtt >=2.5,<3); ``paho_client`` fails loudly at start-up (and tests/test_feed_callback.py
fails) if that ever changes. The message iterator is still awaited, only to learn of a
disconnect: nothing reaches aiomqtt's queue any more.

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

import aiomqtt
import paho.mqtt.client as paho

from iopv.adapters.backoff import Backoff
from iopv.adapters.mqtt.client import make_client
from iopv.adapters.mqtt.wire import INCOMPLETE, MALFORMED, read_remaining_length
from iopv.config import MqttSettings
from iopv.engine.intake import TickIntake

log = logging.getLogger(__name__)

#: Topic filters per SUBSCRIBE packet (a shard subscribes to each of its symbols' topics).
SUBSCRIBE_BATCH = 500


def paho_client(client: aiomqtt.Client) -> paho.Client:
    """The paho client inside an aiomqtt client (private ``_client``; see the module docstring)."""
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client):
        raise RuntimeError(
            f"aiomqtt {getattr(aiomqtt, '__version__', '?')} no longer keeps its paho client in "
            "Client._client: the tick feed's direct on_message callback needs it (pinned aiomqtt "
            ">=2.5,<3); see iopv/feeds/mqtt.py")
    return inner


class TickSocket:
    """paho's socket with QoS 0 PUBLISH packets taken out and handed to ``on_publish`` directly.

    paho costs ~15-20 us of Python per message (several one-byte ``recv`` calls, packet
    dispatch, topic matching, logging), and aiomqtt drives one packet per readable event: that,
    not the engine, capped the feed near 20k msgs/s. This wrapper reads the socket in 32 KiB
    chunks, parses whole MQTT 3.1.1 packets, passes every QoS 0 PUBLISH's topic and payload to
    ``on_publish``, and leaves every other packet (CONNACK, SUBACK, PINGRESP, QoS > 0 PUBLISH,
    anything unparsable) to paho, unchanged, through ``recv``. A partial packet waits for the next
    chunk. At most one chunk is read per readable event (then ``BlockingIOError``, which paho takes
    as "later"), so a firehose cannot starve the event loop -- the clock, the sinks. aiomqtt's
    reader calls paho again while ``pending()`` is non-zero (meant for TLS), which drains what
    this wrapper holds for paho. Everything else (send, fileno, close, TLS) goes to the socket."""

    _READ_BYTES = 32_768

    def __init__(self, sock, on_publish):
        self._sock = sock
        self._on_publish = on_publish
        self._partial = b""  # the start of a packet not yet complete
        self._for_paho = b""  # whole packets paho has yet to read
        self._position = 0
        self._read_this_event = False
        self._inner_pending = getattr(sock, "pending", None)

    def recv(self, size: int) -> bytes:
        while self._position >= len(self._for_paho):
            if self._read_this_event and not (self._inner_pending and self._inner_pending()):
                raise BlockingIOError  # yield to the event loop; it calls back while data waits
            data = self._sock.recv(self._READ_BYTES)  # BlockingIOError / TLS errors pass through
            self._read_this_event = True
            if not data:
                return data  # closed: paho handles the lost connection
            self._for_paho, self._position = self._split(self._partial + data), 0
        position = self._position
        chunk = self._for_paho[position:position + size]
        self._position = position + len(chunk)
        return chunk

    def _split(self, buffer: bytes) -> bytes:
        """Hand out the QoS 0 PUBLISH packets of ``buffer``; keep a trailing partial packet;
        return every other whole packet, in order, for paho."""
        on_publish = self._on_publish
        others = []
        end_of_data = len(buffer)
        position = 0
        while position < end_of_data:
            first = buffer[position]
            length, index = read_remaining_length(buffer, position + 1, end_of_data)
            if length == INCOMPLETE:
                self._partial = buffer[position:]
                return b"".join(others)
            if length == MALFORMED:  # let paho see it (and drop the connection)
                self._partial = b""
                others.append(buffer[position:])
                return b"".join(others)
            end = index + length
            if end > end_of_data:
                self._partial = buffer[position:]
                return b"".join(others)
            if first & 0xF6 == 0x30 and length >= 2:  # PUBLISH, QoS 0 (DUP/RETAIN ignored)
                topic_end = index + 2 + ((buffer[index] << 8) | buffer[index + 1])
                if topic_end <= end:
                    on_publish(buffer[index + 2:topic_end], buffer[topic_end:end])
                    position = end
                    continue
            others.append(buffer[position:end])
            position = end
        self._partial = b""
        return b"".join(others)

    def pending(self) -> int:
        waiting = len(self._for_paho) - self._position
        if self._inner_pending is not None:
            waiting += self._inner_pending()
        if not waiting:
            self._read_this_event = False  # aiomqtt's reader stops here until the next event
        return waiting

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def install_tick_socket(inner: paho.Client, on_publish) -> None:
    """Wrap every socket paho opens in a TickSocket before aiomqtt registers its reader.
    paho calls ``on_socket_open`` right after storing the new socket in its private ``_sock``."""
    if inner._protocol != paho.MQTTv311:  # noqa: SLF001 -- MQTT 5 PUBLISH carries properties
        raise RuntimeError("the tick feed parses MQTT 3.1.1 PUBLISH packets only")
    aiomqtt_open = inner.on_socket_open

    def on_socket_open(client: paho.Client, userdata, sock) -> None:
        wrapped = TickSocket(sock, on_publish)
        client._sock = wrapped  # noqa: SLF001
        aiomqtt_open(client, userdata, wrapped)

    inner.on_socket_open = on_socket_open


class MqttTickFeed:
    """Subscribes to tick topics and decodes every message into a TickIntake."""

    def __init__(self, settings: MqttSettings, intake: TickIntake, *, instance: str,
                 silence_s: float = 0.0, topics: Callable[[], list[str]] | None = None):
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
        self.last_message_ns = 0  # receive time of the last message
        self.connected_since_ns = 0
        self.silent = False  # set by the watchdog
        self.silences = 0  # times the feed went silent
        self.callback_errors = 0  # exceptions caught in on_message (a bug: logged, counted)
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_message(self, _client, _userdata, message: paho.MQTTMessage) -> None:
        """paho's on_message, on the event loop's thread: decode now, flush once per iteration.
        It must never raise: an exception would reach aiomqtt's reader and drop the connection."""
        try:
            self.last_message_ns = now = time.time_ns()
            self.intake.decode(message.payload, message.topic, now)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
        except Exception:  # noqa: BLE001
            self.callback_errors += 1
            log.exception("ticks: on_message failed")

    def _on_publish(self, topic: bytes, payload: bytes) -> None:
        """A QoS 0 PUBLISH straight from the socket (TickSocket): as ``_on_message``."""
        try:
            self.last_message_ns = now = time.time_ns()
            self.intake.decode(payload, topic.decode("utf-8", "replace"), now)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
        except Exception:  # noqa: BLE001
            self.callback_errors += 1
            log.exception("ticks: on_publish failed")

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.intake.flush()

    @property
    def subscribed_topics(self) -> frozenset[str]:
        """The topic filters subscribed on the current connection."""
        return frozenset(self._subscribed_topics)

    def _make_client(self, node: int) -> aiomqtt.Client:
        client = make_client(self.settings.node(node), self.identifier)
        inner = paho_client(client)
        inner.on_message = self._on_message
        install_tick_socket(inner, self._on_publish)
        return client

    def _topic_filters(self) -> list[str]:
        return self.topics() if self.topics is not None else [f"{self.settings.tick_topic_prefix}/#"]

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
                    log.info("ticks: connected to %s, subscribed to %s", self.settings.node(node).hostname
                             + f":{self.settings.node(node).port}",
                             topics[0] if len(topics) == 1 else f"{len(topics)} topics")
                    # Only returns (raising MqttError) on a disconnect: messages bypass the queue.
                    async for message in client.messages:
                        self.last_message_ns = now = time.time_ns()
                        intake.decode(message.payload, message.topic.value, now)
                        intake.flush()
            except aiomqtt.MqttError as exc:
                if nodes > 1:
                    self.node += 1  # a cluster: try the next node
                log.warning("ticks: %s; reconnecting in %.2f s", exc, delay)
            finally:
                self.connected = False
                self.subscribed.clear()
                intake.flush()
            self.reconnects += 1
            await asyncio.sleep(delay)

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
