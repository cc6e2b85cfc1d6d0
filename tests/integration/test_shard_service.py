"""A shard (``engine.shard = "1/2"``) as a running service on Mosquitto: it values only its funds,
subscribes only to its symbols' topics (another shard's symbol on its own topic never arrives),
takes ``<prefix>/_batch`` arrays (other shards' symbols counted unknown), and after a basket
reload subscribes to the topics the new basket adds."""

from __future__ import annotations

import asyncio
import os

import orjson

from iopv.core.shard import shard_of
from iopv.service.live import Service
from tests.support.live import publish_all, settings_for, tick, wait_for


def funds_for(shard: int, count: int, n: int, start: int = 0) -> list[str]:
    out, k = [], start
    while len(out) < n:
        name = f"G{k:03d}"
        if shard_of(name, count) == shard:
            out.append(name)
        k += 1
    return out


def fund(name: str, symbol: str) -> dict:
    return {"fund": name, "creation_unit": 1, "currency": "USD", "cash": 0,
            "holdings": [{"symbol": symbol, "shares": 1, "price": 10.0}]}


def test_a_shard_values_its_funds_and_subscribes_to_their_symbols(tmp_path, mosquitto, redis_server):
    mine = funds_for(1, 2, 2)
    theirs = funds_for(0, 2, 2)
    document = [fund(mine[0], "MINE1"), fund(theirs[0], "THEIRS1"), fund(mine[1], "MINE2"),
                fund(theirs[1], "THEIRS2")]
    settings = settings_for(tmp_path, document, mosquitto, redis_server, shard="1/2")
    prefix = settings.mqtt.tick_topic_prefix
    pcf = settings.engine.pcf_path

    async def scenario():
        service = Service(settings)
        assert service.universe.funds == tuple(mine)
        task = asyncio.create_task(service.run(handle_signals=False))
        intake = service.engine.intake
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        await publish_all("127.0.0.1", mosquitto.port, [
            (f"{prefix}/THEIRS1", orjson.dumps(tick("THEIRS1", 11.0, 1))),  # not subscribed: never arrives
            (f"{prefix}/MINE1", orjson.dumps(tick("MINE1", 12.5, 2))),
            (f"{prefix}/_batch", orjson.dumps([tick("MINE2", 13.0, 3), tick("THEIRS2", 14.0, 3)])),
            (f"{prefix}/NEW1", orjson.dumps(tick("NEW1", 15.0, 4))),  # not yet in the basket
        ])
        await wait_for(lambda: intake.received >= 3, what="the shard's ticks")
        await asyncio.sleep(0.3)
        first = (intake.received, int(intake.counts[0]), int(intake.counts[1]))
        # A reload adds a fund of this shard holding NEW1: its topic is subscribed at the swap.
        added = funds_for(1, 2, 1, start=500)[0]
        with open(pcf, "wb") as out:
            out.write(orjson.dumps([*document, fund(added, "NEW1")]))
        os.utime(pcf, (1, 1))
        service.engine.request_reload()
        await wait_for(lambda: added in service.universe.funds, what="the reloaded basket")
        await wait_for(lambda: f"{prefix}/NEW1" in service.feed.subscribed_topics,
                       what="the new topic subscribed")
        await publish_all("127.0.0.1", mosquitto.port, [(f"{prefix}/NEW1", orjson.dumps(tick("NEW1", 16.0, 5)))])
        await wait_for(lambda: intake.received >= first[0] + 1, what="the new symbol's tick")
        slot = service.universe.book_index()["NEW1"]
        await wait_for(lambda: service.engine.book.prices[slot] == 16.0, what="the new symbol's price")
        service.request_stop()
        assert await asyncio.wait_for(task, 5) == 0
        return first

    received, accepted, unknown = asyncio.run(scenario())
    assert (received, accepted, unknown) == (3, 2, 1)  # MINE1, MINE2 accepted; THEIRS2 unknown
