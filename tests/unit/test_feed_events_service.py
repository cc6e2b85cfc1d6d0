"""The reference data's wiring (iopv.service.feed_events) without servers: a removed fund's
retained value is cleared, cleared again once the value publisher has re-sent an older
publication after a reconnect, and no longer cleared when the fund comes back."""

from __future__ import annotations

import asyncio

import orjson

from iopv.adapters.mqtt.sink import MqttSink
from iopv.config import load_settings
from iopv.core import names
from iopv.core.shard import Shard
from iopv.core.universe import build_universe
from iopv.engine.cycle import Engine
from iopv.service.feed_events import FeedEvents

NOW = 1_733_493_600_000_000_000  # 2024-12-06T14:00Z


def universe(funds):
    return build_universe([{"fund": f, "creation_unit": 10, "currency": "USD", "cash": 1.0,
                            "holdings": [{"symbol": "X", "shares": 1, "price": 5.0}]} for f in funds], source="t")


def test_removed_fund_value_cleared_again_after_the_value_publisher_reconnects(tmp_path):
    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps([]))
    settings = load_settings(environ={}, overrides={"engine": {"pcf_path": str(pcf), "calendar": "always",
                                                               "interval_s": 1.0, "instance": "u1"}})
    prefix = settings.mqtt.value_topic_prefix
    cleared = names.value_topic(prefix, "BBB")

    async def scenario():
        first = universe(["AAA", "BBB"])
        engine = Engine(first, settings)
        values = MqttSink(settings.mqtt, instance="u1", max_queued=4)
        events = FeedEvents(settings, engine, Shard(0, 1), values, now_ns=lambda: NOW)
        events.emit(events.day.start(first, NOW))
        assert events.mqtt.retained[names.directory_topic(prefix, "BBB")]
        engine.universe = universe(["AAA"])
        for hook in engine.after_swap:  # as Engine.swap_basket calls them
            hook(engine.universe)
        assert events.mqtt.retained[cleared] == b""
        assert orjson.loads(events.mqtt.retained[names.directory_topic(prefix, "BBB")])["status"] == "removed"
        queued = events.mqtt.queued
        for callback in values.on_connected:  # the value publisher reconnected ...
            callback()
        events.tick()
        assert events.mqtt.queued == queued, "... but has not re-sent its last publication yet"
        values.published += 1  # ... and now has
        events.tick()
        assert events.mqtt.queued == queued + 1
        assert list(events.mqtt._queue[-1].messages) == [(cleared, b"")]
        events.tick()
        assert events.mqtt.queued == queued + 1, "once"
        engine.universe = universe(["AAA", "BBB"])  # the fund comes back
        for hook in engine.after_swap:
            hook(engine.universe)
        assert cleared not in events.mqtt.retained, "its value topic is the value publisher's again"
        return events

    events = asyncio.run(scenario())
    assert events.redis.queued >= 3
