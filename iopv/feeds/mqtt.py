"""Live ticks over MQTT: subscribe to ``<tick_topic_prefix>/#`` and feed the intake.

One client, one reconnect loop (aiomqtt's documented v2 pattern: create the client once,
re-enter ``async with client`` after every ``MqttError``), capped jittered backoff. The incoming
queue is bounded and its overflow counted. Messages are decoded as they arrive and applied to the
book in one kernel call whenever the queue runs dry or the staging batch fills.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiomqtt

from iopv.backoff import Backoff
from iopv.config import MqttSettings
from iopv.intake import TickIntake
from iopv.mqtt_client import CountingQueue, make_client

log = logging.getLogger(__name__)


class MqttTickFeed:
    """Subscribes to tick topics and decodes every message into a TickIntake."""

    def __init__(self, settings: MqttSettings, intake: TickIntake, *, instance: str):
        self.settings = settings
        self.intake = intake
        self.identifier = f"{instance}-ticks"
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self.connected = False
        self.reconnects = 0
        self.subscribed = asyncio.Event()
        self._queue_type = type("FeedQueue", (CountingQueue,), {"dropped": 0})

    @property
    def dropped(self) -> int:
        """Messages the bounded incoming queue had to drop."""
        return self._queue_type.dropped

    async def run(self) -> None:
        client = make_client(self.settings, self.identifier, queue_type=self._queue_type)
        topic = f"{self.settings.tick_topic_prefix}/#"
        intake = self.intake
        while True:
            delay = self.backoff.next_delay_s()
            try:
                async with client:
                    await client.subscribe(topic, qos=0)
                    self.connected = True
                    self.backoff.reset()
                    self.subscribed.set()
                    log.info("ticks: subscribed to %s", topic)
                    messages = client.messages
                    async for message in messages:
                        intake.decode(message.payload, message.topic.value, time.time_ns())
                        if len(messages) == 0:
                            intake.flush()
            except aiomqtt.MqttError as exc:
                log.warning("ticks: %s; reconnecting in %.2f s", exc, delay)
            finally:
                self.connected = False
                self.subscribed.clear()
                intake.flush()
            self.reconnects += 1
            await asyncio.sleep(delay)
