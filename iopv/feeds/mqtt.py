"""Live ticks over MQTT: subscribe to ``<tick_topic_prefix>/#`` and feed the intake.

One client, one reconnect loop (aiomqtt's documented v2 pattern: create the client once,
re-enter ``async with client`` after every ``MqttError``), capped jittered backoff; the
subscription is renewed on every reconnect. The incoming queue is bounded and its overflow
counted. Messages are decoded as they arrive and applied to the book in one kernel call whenever
the queue runs dry or the staging batch fills: the book keeps only the latest price per symbol,
so a burst costs at most one staging batch and one bounded queue of memory.

``watchdog`` reports a silent feed: connected, yet no message for ``ops.feed_silence_s``.
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

    def __init__(self, settings: MqttSettings, intake: TickIntake, *, instance: str,
                 silence_s: float = 0.0):
        self.settings = settings
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
                    self.connected_since_ns = time.time_ns()
                    self.connected = True
                    self.backoff.reset()
                    self.subscribed.set()
                    log.info("ticks: subscribed to %s", topic)
                    messages = client.messages
                    async for message in messages:
                        self.last_message_ns = now = time.time_ns()
                        intake.decode(message.payload, message.topic.value, now)
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
