"""MQTT publisher of the feed's reference data: directory, session events, daily summaries and
heartbeats (``iopv.engine.day``), every message retained, on a connection of its own
(``<instance>-events``) so a burst of directory records never queues a boundary's values.

The sink keeps what the broker should hold -- topic -> payload, an empty payload being a cleared
topic -- and sends all of it again after every (re)connect, before anything queued (a broker
restarted without persistence lost its retained messages; and what was queued while away is in
that snapshot already, so the queue is emptied). Messages go through aiomqtt at ``events.qos``,
``WINDOW`` in flight: these are a few per boundary, and one per fund only at start, on a basket
swap, at the start of day and at the close.
"""

from __future__ import annotations

import asyncio
import math
from typing import NamedTuple

import aiomqtt
import orjson

from iopv.adapters.backoff import Backoff
from iopv.adapters.mqtt.client import NodeRotation, make_client
from iopv.adapters.queued import QueuedSink
from iopv.config import MqttSettings
from iopv.core import names
from iopv.engine.day import Batch, Message

#: Publishes in flight at once.
WINDOW = 64
#: Most time one batch may take before the connection is treated as broken.
SEND_TIMEOUT_S = 30.0


def topic_of(prefix: str, instance: str, message: Message) -> str:
    """The topic of a message of ``instance`` (``iopv.core.names``)."""
    kind, key = message.kind, message.key
    if kind == "session":
        return names.session_topic(prefix, instance, key)
    return {"directory": names.directory_topic, "summary": names.summary_topic,
            "heartbeat": names.heartbeat_topic, "value": names.value_topic}[kind](prefix, key)


class _Encoded(NamedTuple):
    ts_ns: int
    messages: tuple[tuple[str, bytes], ...]


class MqttEventSink(QueuedSink):
    """Retained reference-data messages on their own connection (module docstring)."""

    def __init__(self, settings: MqttSettings, *, instance: str, qos: int, max_queued: int,
                 name: str = "mqtt-events"):
        super().__init__(max_queued=max_queued, backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s))
        self.name = name
        self.settings = settings
        self.qos = qos
        self.instance = instance
        self.identifier = f"{instance}-events"
        #: topic -> payload the broker should hold (b"": cleared), in order of last change.
        self.retained: dict[str, bytes] = {}
        self._rotation = NodeRotation(len(settings.urls))
        self.messages_sent = 0

    def encode(self, batch: Batch) -> list[tuple[str, bytes]]:
        """``(topic, payload)`` of each message; an empty payload clears the topic."""
        prefix = self.settings.value_topic_prefix
        out = []
        for message in batch.messages:
            topic = topic_of(prefix, self.instance, message)
            out.append((topic, b"" if message.record is None else orjson.dumps(message.record)))
            if message.kind == "directory" and message.record is not None and message.record["status"] == "active":
                # a fund (back) in the baskets: its value topic is the value publisher's again
                self.retained.pop(names.value_topic(prefix, message.key), None)
        return out

    def offer(self, batch: Batch) -> None:
        encoded = self.encode(batch)
        for topic, payload in encoded:
            self.retained.pop(topic, None)
            self.retained[topic] = payload
        super().offer(_Encoded(batch.ts_ns, tuple(encoded)))

    def clear_again(self, kind: str = "value") -> int:
        """Send the cleared topics of ``kind`` again (after the value publisher re-sent an older
        publication on reconnect, a removed fund's value may be back); returns how many."""
        prefix = self.settings.value_topic_prefix
        topics = [(topic, payload) for topic, payload in self.retained.items()
                  if not payload and names.topic_kind(prefix, topic) is not None
                  and names.topic_kind(prefix, topic)[0] == kind]
        if topics:
            super().offer(_Encoded(0, tuple(topics)))
        return len(topics)

    @property
    def node(self) -> int:
        """The broker (``node % len(mqtt.url's list)``) of the current or next connection; a
        connection that fails or drops moves to the next node."""
        return self._rotation.node

    def connect(self) -> aiomqtt.Client:
        return self._rotation.next_client(lambda node: make_client(self.settings.node(node), self.identifier))

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, aiomqtt.MqttError) or super().is_connection_error(exc)

    async def on_connect(self, client: aiomqtt.Client) -> None:
        self._queue.clear()  # all in the snapshot below
        await self._publish(client, list(self.retained.items()))

    async def send(self, client: aiomqtt.Client, batch: list[_Encoded]) -> None:
        merged: dict[str, bytes] = {}
        for item in batch:
            for topic, payload in item.messages:
                merged.pop(topic, None)
                merged[topic] = payload
        await self._publish(client, list(merged.items()))

    async def _publish(self, client: aiomqtt.Client, messages: list[tuple[str, bytes]]) -> None:
        if not messages:
            return
        pending = iter(messages)

        async def worker() -> None:
            for topic, payload in pending:  # the shared iterator hands each message out once
                await client.publish(topic, payload, qos=self.qos, retain=True, timeout=math.inf)
                self.messages_sent += 1

        workers = [asyncio.ensure_future(worker()) for _ in range(min(WINDOW, len(messages)))]
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
