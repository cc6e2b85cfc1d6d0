"""Operability without servers: restart state, sink queue rules, watchdog, metrics, health."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from iopv.adapters.backoff import Backoff
from iopv.adapters.mqtt.feed import MqttTickFeed
from iopv.adapters.queued import QueuedSink
from iopv.config import ConfigError, load_settings, redact_url
from iopv.core.universe import load_pcf
from iopv.engine.book import NEVER, PriceBook
from iopv.engine.intake import TickIntake
from iopv.engine.publication import Publication
from iopv.engine.restart import restore, snapshot

BASKET = [{"fund": "AAA", "creation_unit": 100, "currency": "USD", "cash": 10.0,
           "holdings": [{"symbol": "X", "shares": 10, "price": 5.0},
                        {"symbol": "Y", "shares": 20, "price": 7.25}]}]


@pytest.fixture
def universe(tmp_path):
    path = tmp_path / "pcf.json"
    path.write_bytes(orjson.dumps(BASKET))
    return load_pcf(path)


def publication(ts_ns: int) -> Publication:
    return Publication(ts_ns, ("AAA",), [{"fund": "AAA", "ts": ts_ns, "iopv": 1.0}], [b"{}"])


def test_snapshot_restores_prices_and_tick_times_exactly(universe):
    book = PriceBook(universe)
    intake = TickIntake(book)
    now = time.time_ns()
    intake.decode(orjson.dumps({"symbol": "X", "price": 0.1 + 0.2, "ts": now - 5}))
    intake.flush()
    data = snapshot(book, now)
    fresh = PriceBook(universe)
    assert restore(fresh, data, now) == (1, 0)
    assert fresh.prices.tobytes() == book.prices.tobytes()
    assert fresh.last_ts.tolist() == book.last_ts.tolist()
    # Y never ticked: still the previous close and NEVER.
    assert fresh.price_of("Y") == 7.25 and fresh.last_ts[fresh.index["Y"]] == NEVER


def test_restore_refuses_another_session_and_skips_hostile_entries(universe):
    book = PriceBook(universe)
    intake = TickIntake(book)
    now = time.time_ns()
    intake.decode(orjson.dumps([{"symbol": "X", "price": 6.0, "ts": now}, {"symbol": "Y", "price": 8.5, "ts": now}]))
    intake.flush()
    state = orjson.loads(snapshot(book, now))
    with pytest.raises(ValueError, match="another session"):
        restore(PriceBook(universe), orjson.dumps({**state, "ts": now - 86_400 * 10**9}), now)
    with pytest.raises(ValueError):
        restore(PriceBook(universe), b"\xff not json", now)
    # Extra rows: an unknown (topic-like) symbol and a non-string one; X's price made invalid.
    hostile = {key: (value + value[:1] * 2 if isinstance(value, list) else value) for key, value in state.items()}
    hostile["symbols"] = state["symbols"] + ["iopv/#", 3]
    hostile["prices"] = [-1.0 if sym == "X" else p for sym, p in zip(state["symbols"], state["prices"])] + [5.0, 1.0]
    fresh = PriceBook(universe)
    assert restore(fresh, orjson.dumps(hostile), now) == (1, 3)
    assert fresh.price_of("Y") == 8.5 and fresh.price_of("X") == 5.0


class FakeSink(QueuedSink):
    name = "fake"

    def __init__(self, max_queued: int):
        super().__init__(max_queued=max_queued, backoff=Backoff(0.01, 0.02))


def test_sink_queue_bounded_overflow_counted_order_kept():
    sink = FakeSink(3)
    for ts in range(5):
        sink.offer(publication(ts))
    assert sink.queued == 3 and sink.dropped == 2
    assert [p.ts_ns for p in sink._queue] == [2, 3, 4]


def test_sink_republishes_last_publication_after_reconnect_and_observes_latency():
    sent: list[list[int]] = []
    latencies: list[float] = []
    connected: list[int] = []

    class Flaky(FakeSink):
        republish_on_connect = True
        fail_next = False

        def connect(self):
            sink = self

            class Connection:
                async def __aenter__(self):
                    return sink

                async def __aexit__(self, *exc):
                    return False
            return Connection()

        async def send(self, connection, batch):
            if self.fail_next:
                self.fail_next = False
                raise ConnectionError("server went away")
            sent.append([p.ts_ns for p in batch])

    async def scenario():
        sink = Flaky(10)
        sink.on_sent = latencies.append
        sink.on_connected.append(lambda: connected.append(1))
        task = asyncio.create_task(sink.run())
        sink.offer(publication(time.time_ns()))
        await asyncio.sleep(0.05)
        sink.fail_next = True
        sink.offer(publication(time.time_ns()))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sink

    sink = asyncio.run(scenario())
    # first batch, then the failed one retried after the reconnect (nothing lost)
    assert len(sent) == 2 and sink.dropped == 0 and sink.reconnects == 1
    assert connected == [1, 1], "on_connected runs after every (re)connect"
    assert sent[1] != sent[0]
    assert len(latencies) == 2 and all(0 <= x < 1 for x in latencies)


def test_republish_on_reconnect_when_queue_is_empty():
    sent = []

    class Once(FakeSink):
        republish_on_connect = True
        drop_connection = False

        def connect(self):
            sink = self

            class Connection:
                async def __aenter__(self):
                    if sink.drop_connection:
                        sink.drop_connection = False
                        raise ConnectionError("refused")
                    return sink

                async def __aexit__(self, *exc):
                    return False
            return Connection()

        async def send(self, connection, batch):
            sent.append(batch[-1].ts_ns)
            if len(sent) == 1:
                self.drop_connection = True
                raise ConnectionError("broker restarted")

    async def scenario():
        sink = Once(10)
        task = asyncio.create_task(sink.run())
        sink.offer(publication(7))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sink

    sink = asyncio.run(scenario())
    assert sent[:2] == [7, 7]
    # After the successful resend, a further reconnect would republish 7 again (republished counter).
    assert sink.published >= 1


def test_watchdog_reports_a_silent_feed(universe):
    settings = load_settings(environ={}, overrides={"engine": {"pcf_path": universe.source}})
    feed = MqttTickFeed(settings.mqtt, TickIntake(PriceBook(universe)), instance="t", silence_s=0.2)

    async def scenario():
        task = asyncio.create_task(feed.watchdog())
        feed.connected, feed.connected_since_ns = True, time.time_ns()
        await asyncio.sleep(0.1)
        quiet_early = feed.silent
        await asyncio.sleep(0.35)
        silent = feed.silent
        feed.last_message_ns = time.time_ns()
        await asyncio.sleep(0.1)
        task.cancel()
        return quiet_early, silent, feed.silent

    assert asyncio.run(scenario()) == (False, True, False)
    assert feed.silences == 1
    feed.connected = False
    assert not feed.is_silent(time.time_ns() + 10**12), "a disconnect is not silence"


def test_new_settings_reject_bad_values_and_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="ops.http_port"):
        load_settings(environ={"IOPV_OPS_HTTP_PORT": "70000"})
    with pytest.raises(ConfigError, match="IOPV_OPS_HTTP_PROT"):
        load_settings(environ={"IOPV_OPS_HTTP_PROT": "1"})
    with pytest.raises(ConfigError, match="mqtt.tls_ca_file"):
        load_settings(environ={"IOPV_MQTT_TLS_CA_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match="redis.history_queue_cycles"):
        load_settings(environ={"IOPV_REDIS_HISTORY_QUEUE_CYCLES": "0"})
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = load_settings(environ={"IOPV_MQTT_PASSWORD_FILE": str(secret),
                                      "IOPV_MQTT_URL": "mqtts://engine@broker"})
    assert settings.mqtt.password == "s3cret" and settings.mqtt.tls and settings.mqtt.port == 8883
    assert settings.ops.restore_state is True
    assert redact_url("redis://engine:hunter2@h:1/0") == "redis://engine:***@h:1/0"


def test_burst_is_conflated_into_the_book_with_bounded_staging(universe):
    """A burst far larger than the staging batch: memory stays at one batch, the book holds the
    latest price per symbol, every tick is counted."""
    book = PriceBook(universe)
    intake = TickIntake(book, capacity=1000)
    base = time.time_ns()
    high = 0
    for k in range(50_000):
        intake.decode(orjson.dumps({"symbol": "X" if k % 2 else "Y", "price": 1.0 + k, "ts": base + k}))
        high = max(high, intake.pending)
    intake.flush()
    assert high <= 1000
    assert intake.accepted == 50_000
    assert book.price_of("X") == 1.0 + 49_999 and book.price_of("Y") == 1.0 + 49_998


def test_gc_policy_freezes_survivors_and_a_thaw_makes_them_collectable_again():
    import gc

    from iopv.engine import gcpolicy

    class Node:
        pass

    try:
        gcpolicy.freeze_long_lived()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        cycle = Node()
        cycle.self = cycle  # garbage only a collection can free
        gcpolicy.freeze_long_lived()
        assert gc.get_freeze_count() > frozen
        import weakref
        ref = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert ref() is not None, "frozen: exempt from collection"
        gcpolicy.thaw()
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert ref() is None, "thawed: collected"
    finally:
        gc.unfreeze()


def test_readiness_and_metrics_come_from_every_component_the_realtime_sink_included():
    from iopv.service.live import Service

    settings = load_settings(environ={}, overrides={"realtime": {"enabled": True}, "engine": {"calendar": "always"}})
    service = Service(settings)  # nothing connected: no server is needed to ask
    assert [sink.name for sink in service.components.sinks] == ["redis", "mqtt", "mqtt-realtime", "mqtt-events",
                                                                "redis-events"]
    ready, checks = service.components.readiness()
    assert not ready and checks == {"baskets_loaded": True, "ticks_connected": False, "feed_not_silent": True,
                                    "redis_connected": False, "mqtt_connected": False,
                                    "mqtt_realtime_connected": False, "mqtt_events_connected": False,
                                    "redis_events_connected": False}
    service.realtime_sink.connected = True
    service.realtime_sink.published = 7
    assert service.components.readiness()[1]["mqtt_realtime_connected"] is True
    text = service.metrics.render().decode()
    assert 'iopv_connected{connection="mqtt-realtime"} 1.0' in text
    assert 'iopv_sink_published_total{sink="mqtt-realtime"} 7.0' in text
    assert 'iopv_connected{connection="redis"} 0.0' in text
    # the cycle-duration metric after each cycle; the reference data follows what the route
    # delivered (the board's hub too, but only with http)
    assert service.http is None and len(service.engine.after_cycle) == 1
    assert service.route.followers == [service.events.on_publication]
    assert service.route.state_sink is service.redis_sink and service.route.sinks == (service.mqtt_sink,)
