"""MQTT publisher: one retained message per fund on ``<value_topic_prefix>/<FUND>``."""

from __future__ import annotations

import asyncio

import aiomqtt

from iopv.backoff import Backoff
from iopv.config import MqttSettings
from iopv.mqtt_client import make_client
from iopv.publication import Publication
from iopv.sinks.base import QueuedSink


class MqttSink(QueuedSink):
    """Publishes every fund's payload, retained, so a new subscriber gets the latest at once."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, *, instance: str, max_queued: int):
        super().__init__(max_queued=max_queued,
                         backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s))
        self.settings = settings
        self.identifier = f"{instance}-values"
        self._client: aiomqtt.Client | None = None

    def connect(self) -> aiomqtt.Client:
        if self._client is None:
            self._client = make_client(self.settings, self.identifier)
        return self._client

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, aiomqtt.MqttError) or super().is_connection_error(exc)

    async def send(self, client: aiomqtt.Client, batch: list[Publication]) -> None:
        prefix, qos = self.settings.value_topic_prefix, self.settings.value_qos
        for publication in batch:
            await asyncio.gather(*(
                client.publish(f"{prefix}/{fund}", payload, qos=qos, retain=True)
                for fund, payload in zip(publication.funds, publication.payloads)))
