"""MQTT publisher: one retained message per fund on ``<value_topic_prefix>/<FUND>``, and the
instance's retained status on ``<value_topic_prefix>/_status/<instance>``.

The status is ``online`` after every connect; the broker publishes the client's last will
(``offline``, reason ``connection lost``) if the engine dies or its connection drops, and a
clean stop publishes ``offline`` (reason ``shutdown``) itself. Fund tickers cannot start with
``_`` (``pcf.NAME_PATTERN``), so the status topic never collides with a fund's.

How values are published (QoS 0 and 1, ``mqtt.value_qos``). Through aiomqtt, each message cost
~50 us of Python (paho builds, logs and tracks each packet and handles each PUBACK; aiomqtt adds
an event and a future per call; paho alone, called directly, still ~30 us): 3,500 retained QoS 1
messages took ~350 ms and ~180 ms of the event loop. So the sink encodes a whole publication
itself (iopv/adapters/mqtt/wire.py) and hands it to paho as one outgoing buffer, which paho writes in
order with its own packets, resuming partial writes and over TLS; a wrapper on paho's socket
(``PubackSocket``, the sending twin of the tick feed's ``TickSocket``) takes the PUBACKs of those
packets out of the byte stream and leaves every other packet to paho. A message now costs
~5 us of Python (~1.5 us to encode and match its PUBACK, the rest reading the PUBACKs as they
come, see ``PubackSocket._ack_now``); 3,500 QoS 1 messages are acknowledged in ~50-70 ms, the
broker's own pace on the bench machine, and 3,500 QoS 0 messages written in a few ms. aiomqtt
still owns the connection: connect, TLS, credentials, the will, keepalive, the status messages,
disconnect; the reconnect loop is ``QueuedSink.run``.

- Packet ids (QoS 1) come from paho's own counter, the one its publish and subscribe use, so no
  id is in use twice on the connection: paho's own unacknowledged messages are skipped, and at
  most ``PUBLISH_WINDOW`` ids are out at once, far fewer than the 65,535 before the counter
  comes back to an id.
- A publication is written in windows of at most ``PUBLISH_WINDOW`` messages; each window's
  PUBACKs are all awaited before the next is written (one window at US scale).
- A publication counts as sent (``last_ts_ns``, ``last_publish_ns``) only once every QoS 1
  message is acknowledged, or every QoS 0 byte is written. A connection lost mid-publication
  fails the send at once (aiomqtt's disconnect future), and ``send_timeout_s`` bounds a stuck
  one as a connection error: the publication is re-sent whole after the reconnect, with fresh
  packet ids (retained values: a repeat is harmless).
- QoS 2 (four packets per message, state kept by paho) stays on the plain aiomqtt path,
  ``QOS2_WINDOW`` publishes in flight: ~80 us of Python per message, ~0.6 s per cycle at 3,500
  funds. Use it only for small publications (real-time values of a few funds).
- MQTT 3.1.1 only (the protocol ``make_client`` speaks): MQTT 5 packets carry properties.

Figures: ``python -m bench.mqtt_publish`` (this path against aiomqtt, paho called directly, and a
raw socket, in one run) and ``python -m bench --only cycle`` ("boundary -> last MQTT publish").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import time
from collections.abc import Callable, Sequence

import aiomqtt
import orjson
import paho.mqtt.client as paho

from iopv.adapters.backoff import Backoff
from iopv.adapters.mqtt.client import (
    NodeRotation,
    connection_lost,
    current_socket,
    make_client,
    paho_client,
    reserve_packet_ids,
    wrap_sockets,
    write_packets,
)
from iopv.adapters.mqtt.stream import PacketSocket
from iopv.adapters.mqtt.wire import encode_publishes, split_pubacks, topic_field
from iopv.adapters.queued import QueuedSink
from iopv.config import MqttSettings
from iopv.core import names
from iopv.engine.publication import Publication

log = logging.getLogger(__name__)

#: Most messages written at once (and so packet ids awaiting a PUBACK) on the QoS 0/1 path.
PUBLISH_WINDOW = 16_384
#: aiomqtt publishes in flight at once on the QoS 2 path (see ``MqttSink._send_qos2``).
QOS2_WINDOW = 64
#: Linux's TCP_QUICKACK (None elsewhere): ACK at once while PUBACKs are awaited (``PubackSocket._ack_now``).
QUICKACK = getattr(socket, "TCP_QUICKACK", None)
#: Default ``MqttSink.send_timeout_s``.
SEND_TIMEOUT_S = 10.0


def status_topic(settings: MqttSettings, instance: str) -> str:
    return names.status_topic(settings.value_topic_prefix, instance)


def status_payload(instance: str, status: str, reason: str = "") -> bytes:
    record = {"instance": instance, "status": status, "ts": time.time_ns()}
    if reason:
        record["reason"] = reason
    return orjson.dumps(record)


class PubackSocket(PacketSocket):
    """paho's socket with the PUBACKs the sink awaits taken out of what paho reads.

    Reads the socket in 64 KiB chunks; PUBACKs whose packet id is in ``awaiting`` are removed
    from the set (``on_acked`` is called when it empties), every other packet -- CONNACK,
    PINGRESP, the status message's PUBACK, anything unparsable -- is handed to paho, unchanged,
    through ``recv`` (buffering: ``PacketSocket``). Reading goes on until paho has something or
    the socket has nothing more (``BlockingIOError``, which paho takes as "later"); what arrives
    on this connection is bounded by what the sink sent."""

    read_bytes = 65_536

    def __init__(self, sock):
        super().__init__(sock)
        self._quickack = QUICKACK is not None
        self.awaiting: set[int] = set()
        self._on_acked: Callable[[], None] | None = None

    def expect(self, packet_ids: Sequence[int], on_acked: Callable[[], None]) -> None:
        """Await the PUBACKs of ``packet_ids``; ``on_acked()`` once all have come."""
        self.awaiting = set(packet_ids)
        self._on_acked = on_acked

    def forget(self) -> None:
        """Stop awaiting (a finished or abandoned window): late PUBACKs go to paho, which ignores
        ids it does not know."""
        self.awaiting = set()
        self._on_acked = None

    def _read(self) -> bytes:
        data = super()._read()
        if data and self.awaiting and self._quickack:
            self._ack_now()
        return data

    def _split(self, buffer: bytes) -> tuple[bytes, int]:
        others, partial = split_pubacks(buffer, self.awaiting)
        if not self.awaiting and self._on_acked is not None:
            on_acked, self._on_acked = self._on_acked, None
            on_acked()
        return others, len(buffer) - len(partial)

    def _ack_now(self) -> None:
        """Acknowledge the next segments at once instead of after the delayed-ACK timer. A broker
        with Nagle's algorithm on (Mosquitto's default) holds its next small write of PUBACKs
        until our ACK, so the tail of a publication waited up to a timer tick for nothing: 3,500
        acknowledged in ~48 ms instead of ~72 ms, for ~10 ms more CPU of smaller reads.
        The setting lapses by itself, hence once per read while PUBACKs are awaited."""
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        except OSError:  # not TCP after all: nothing to tune
            self._quickack = False


class MqttSink(QueuedSink):
    """Publishes every fund's payload, retained, so a new subscriber gets the latest at once."""

    name = "mqtt"
    republish_on_connect = True  # a restarted broker without persistence lost the retained values

    def __init__(self, settings: MqttSettings, *, instance: str, max_queued: int, name: str = "mqtt"):
        super().__init__(max_queued=max_queued,
                         backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s))
        self.name = name  # the label in logs, /metrics and /readyz
        self.settings = settings
        self.instance = instance
        self.identifier = f"{instance}-values"
        self.status_topic = status_topic(settings, instance)
        self._client: aiomqtt.Client | None = None
        self._rotation = NodeRotation(len(settings.urls))
        #: Extra fields of the retained ``online`` status (e.g. the replica divergence counts).
        self.status_fields: Callable[[], dict] | None = None
        #: Most time one publication may take to be acknowledged before the connection is
        #: treated as broken (the client's per-call timeout, applied to the whole batch).
        self.send_timeout_s = SEND_TIMEOUT_S
        self._topic_fields: dict[str, bytes] = {}  # fund -> encoded topic (one per fund ever seen)
        self._fields_of: tuple[tuple[str, ...], list[bytes]] = ((), [])  # the last funds tuple's

    @property
    def node(self) -> int:
        """The broker (``node % len(mqtt.url's list)``) of the current or next connection; a
        connection that fails or drops moves to the next node."""
        return self._rotation.node

    def connect(self) -> aiomqtt.Client:
        self._client = self._rotation.next_client(self._make_client)
        return self._client

    def _make_client(self, node: int) -> aiomqtt.Client:
        will = aiomqtt.Will(self.status_topic, status_payload(self.instance, "offline", "connection lost"),
                            qos=1, retain=True)
        client = make_client(self.settings.node(node), self.identifier, will=will)
        inner = paho_client(client)  # fails loudly if the internals used here are gone
        if self.settings.value_qos == 1:
            wrap_sockets(inner, PubackSocket)
        return client

    def _online(self) -> bytes:
        payload = status_payload(self.instance, "online")
        if self.status_fields is None:
            return payload
        return orjson.dumps(orjson.loads(payload) | self.status_fields())

    async def on_connect(self, client: aiomqtt.Client) -> None:
        await client.publish(self.status_topic, self._online(), qos=1, retain=True)

    def status_changed(self) -> None:
        """Publish the retained ``online`` status again with fresh ``status_fields`` (not blocking)."""
        if self.connected and self._client is not None:
            task = asyncio.ensure_future(self._client.publish(self.status_topic, self._online(), qos=1, retain=True))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def publish_offline(self, timeout_s: float) -> bool:
        """Publish the retained ``offline`` status before a clean disconnect (which sends no will)."""
        if not (self.connected and self._client is not None):
            return False
        try:
            await asyncio.wait_for(self._client.publish(
                self.status_topic, status_payload(self.instance, "offline", "shutdown"), qos=1, retain=True),
                timeout_s)
            return True
        except (TimeoutError, aiomqtt.MqttError) as exc:
            log.warning("mqtt: offline status not published: %s", exc)
            return False

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, aiomqtt.MqttError) or super().is_connection_error(exc)

    async def send(self, client: aiomqtt.Client, batch: list[Publication]) -> None:
        # Retained: only the newest value per fund matters, so a backlog sends just the latest.
        publication = batch[-1]
        # One deadline bounds the publication; missing it is a connection error.
        async with asyncio.timeout(self.send_timeout_s):
            if self.settings.value_qos == 2:
                await self._send_qos2(client, publication)
            else:
                await self._send_direct(client, publication)

    def topic_fields(self, funds: tuple[str, ...]) -> list[bytes]:
        """Each fund's encoded topic, cached: the same funds tuple comes back every cycle."""
        cached_funds, fields = self._fields_of
        if funds is cached_funds:
            return fields
        cache, prefix = self._topic_fields, self.settings.value_topic_prefix
        fields = []
        for fund in funds:
            field = cache.get(fund)
            if field is None:
                field = cache[fund] = topic_field(names.value_topic(prefix, fund))
            fields.append(field)
        self._fields_of = (funds, fields)
        return fields

    async def _send_direct(self, client: aiomqtt.Client, publication: Publication) -> None:
        """QoS 0/1: pre-encoded PUBLISH packets through paho's queue (module docstring)."""
        qos = self.settings.value_qos
        inner = paho_client(client)
        lost = connection_lost(client)
        loop = asyncio.get_running_loop()
        fields, payloads = self.topic_fields(publication.funds), publication.payloads
        for start in range(0, len(payloads), PUBLISH_WINDOW):
            stop = start + PUBLISH_WINDOW
            window_fields, window_payloads = fields[start:stop], payloads[start:stop]
            sock = current_socket(inner)
            if lost.done() or sock is None:
                _raise_lost(lost)
            done = loop.create_future()
            if qos == 1:
                if not isinstance(sock, PubackSocket):
                    raise aiomqtt.MqttError("not connected")
                packet_ids = reserve_packet_ids(inner, len(window_payloads))
                data = encode_publishes(window_fields, window_payloads, qos=1, retain=True, packet_ids=packet_ids)
                sock.expect(packet_ids, functools.partial(_complete, done))
                try:
                    write_packets(inner, data)
                    await asyncio.wait((done, lost), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sock.forget()
            else:
                data = encode_publishes(window_fields, window_payloads, qos=0, retain=True)
                write_packets(inner, data, written=done)
                await asyncio.wait((done, lost), return_when=asyncio.FIRST_COMPLETED)
            if not done.done() or done.result() != paho.MQTT_ERR_SUCCESS:
                _raise_lost(lost)

    async def _send_qos2(self, client: aiomqtt.Client, publication: Publication) -> None:
        """QoS 2 through aiomqtt. A bounded window of publishes in flight, not all at once:
        aiomqtt scans every pending publish on each call and paho rescans its in-flight messages
        on each acknowledgement, so the cost grows with the square of what is in flight.
        ``QOS2_WINDOW`` workers each publish and await their acknowledgement in turn, so the pipe
        stays full without round-trip pauses. No per-publish timeout (aiomqtt would wrap each in
        ``asyncio.wait_for``, a task per message): ``send`` bounds the whole publication."""
        prefix = self.settings.value_topic_prefix
        messages = iter(zip(publication.funds, publication.payloads))

        async def worker() -> None:
            for fund, payload in messages:  # the shared iterator hands each fund out once
                await client.publish(names.value_topic(prefix, fund), payload, qos=2, retain=True, timeout=math.inf)

        workers = [asyncio.ensure_future(worker())
                   for _ in range(min(QOS2_WINDOW, len(publication.funds)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:  # on failure or cancellation, stop the others too
                task.cancel()


def _complete(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(paho.MQTT_ERR_SUCCESS)


def _raise_lost(lost: asyncio.Future) -> None:
    """The connection ended mid-publication: raise aiomqtt's reason (retrieving it, so asyncio
    does not log it as never retrieved)."""
    reason = lost.exception() if lost.done() and not lost.cancelled() else None
    raise aiomqtt.MqttError(f"connection lost mid-publication: {reason or 'disconnected'}") from reason
