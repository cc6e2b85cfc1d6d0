"""MQTT publisher: one retained message per fund on ``<value_topic_prefix>/<FUND>``, and the
instance's retained status on ``<value_topic_prefix>/_status/<instance>``.

The status is ``online`` after every connect; the broker publishes the client's last will
(``offline``, reason ``connection lost``) if the engine dies or its connection drops, and a
clean stop publishes ``offline`` (reason ``shutdown``) itself. Fund tickers cannot start with
``_`` (``pcf.NAME_PATTERN``), so the status topic never collides with a fund's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import aiomqtt
import orjson

from iopv.backoff import Backoff
from iopv.config import MqttSettings
from iopv.mqtt_client import make_client
from iopv.publication import Publication
from iopv.sinks.base import QueuedSink

log = logging.getLogger(__name__)

#: Publishes in flight at once (see ``MqttSink.send``); well under paho's in-flight limit (1,000).
PUBLISH_WINDOW = 64
#: Default ``MqttSink.send_timeout_s``.
SEND_TIMEOUT_S = 10.0


def status_topic(settings: MqttSettings, instance: str) -> str:
    return f"{settings.value_topic_prefix}/_status/{instance}"


def status_payload(instance: str, status: str, reason: str = "") -> bytes:
    record = {"instance": instance, "status": status, "ts": time.time_ns()}
    if reason:
        record["reason"] = reason
    return orjson.dumps(record)


class MqttSink(QueuedSink):
    """Publishes every fund's payload, retained, so a new subscriber gets the latest at once."""

    name = "mqtt"
    republish_on_connect = True  # a restarted broker without persistence lost the retained values

    def __init__(self, settings: MqttSettings, *, instance: str, max_queued: int):
        super().__init__(max_queued=max_queued,
                         backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s))
        self.settings = settings
        self.instance = instance
        self.identifier = f"{instance}-values"
        self.status_topic = status_topic(settings, instance)
        self._client: aiomqtt.Client | None = None
        #: Most time one publication may take to be acknowledged before the connection is
        #: treated as broken (the client's per-call timeout, applied to the whole batch).
        self.send_timeout_s = SEND_TIMEOUT_S

    def connect(self) -> aiomqtt.Client:
        if self._client is None:
            will = aiomqtt.Will(self.status_topic, status_payload(self.instance, "offline", "connection lost"),
                                qos=1, retain=True)
            self._client = make_client(self.settings, self.identifier, will=will)
        return self._client

    async def on_connect(self, client: aiomqtt.Client) -> None:
        await client.publish(self.status_topic, status_payload(self.instance, "online"), qos=1, retain=True)

    async def publish_offline(self, timeout_s: float) -> bool:
        """Publish the retained ``offline`` status before a clean disconnect (which sends no will)."""
        if not (self.connected and self._client is not None):
            return False
        try:
            await asyncio.wait_for(self._client.publish(
                self.status_topic, status_payload(self.instance, "offline", "shutdown"), qos=1, retain=True),
                timeout_s)
            return True
        except (aiomqtt.MqttError, asyncio.TimeoutError) as exc:
            log.warning("mqtt: offline status not published: %s", exc)
            return False

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, aiomqtt.MqttError) or super().is_connection_error(exc)

    async def send(self, client: aiomqtt.Client, batch: list[Publication]) -> None:
        prefix, qos = self.settings.value_topic_prefix, self.settings.value_qos
        # Retained: only the newest value per fund matters, so a backlog sends just the latest.
        publication = batch[-1]
        messages = iter(zip(publication.funds, publication.payloads))

        # A bounded window of publishes in flight, not all 3,500 at once: aiomqtt scans every
        # pending publish on each call and paho rescans its in-flight messages on each PUBACK,
        # so the cost grows with the square of what is in flight (~1.5 s per cycle at US scale
        # with everything gathered at once). ``PUBLISH_WINDOW`` workers each publish and await
        # their acknowledgement in turn, so the pipe stays full without round-trip pauses.
        # No per-publish timeout (aiomqtt would wrap each in ``asyncio.wait_for``, a task per
        # message): one deadline bounds the publication, and missing it is a connection error.
        async def worker() -> None:
            for fund, payload in messages:  # the shared iterator hands each fund out once
                await client.publish(f"{prefix}/{fund}", payload, qos=qos, retain=True, timeout=math.inf)

        workers = [asyncio.ensure_future(worker())
                   for _ in range(min(PUBLISH_WINDOW, len(publication.funds)))]
        try:
            async with asyncio.timeout(self.send_timeout_s):
                await asyncio.gather(*workers)
        finally:
            for task in workers:  # on failure or cancellation, stop the others too
                task.cancel()
