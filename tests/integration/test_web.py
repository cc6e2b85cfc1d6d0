"""The web server against real Mosquitto and Redis: the JSON API serves exactly the records
published to MQTT and Redis (and equal to the exact reference), the history by time, clear errors,
the push stream, and /readyz and /metrics covering every sink, the real-time one included."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from decimal import Decimal

import aiohttp
import orjson

from iopv.localservers.servers import free_port
from iopv.service.live import Service
from tests.support.live import exact, make_basket, publish_all, read_retained, settings_for, tick, wait_for


def web_settings(tmp_path, document, mosquitto, redis_server, **engine):
    settings = settings_for(tmp_path, document, mosquitto, redis_server, calendar="always", **engine)
    return dataclasses.replace(settings, ops=dataclasses.replace(settings.ops, http_port=free_port()))


async def read_events(response: aiohttp.ClientResponse, events: list[tuple[str, str, object]]) -> None:
    """Parse Server-Sent Events into (event, id, data) until the stream ends."""
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "data" in fields:
                events.append((fields.get("event", "message"), fields.get("id", ""), orjson.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


def test_api_values_history_stream_and_ops_endpoints(tmp_path, mosquitto, redis_server):
    document = make_basket(seed=21)
    settings = web_settings(tmp_path, document, mosquitto, redis_server, interval_s=3600.0)
    settings = dataclasses.replace(settings, realtime=dataclasses.replace(settings.realtime, enabled=True,
                                                                          topic_prefix=f"rt{settings.engine.instance}"))
    symbols = [h["symbol"] for h in document[0]["holdings"][:3]]
    times = []
    prices1 = {symbols[0]: "11.25", symbols[1]: "7.5"}
    prices2 = {**prices1, symbols[2]: "101.125"}

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        base = f"http://127.0.0.1:{settings.ops.http_port}"
        out = {}
        async with aiohttp.ClientSession() as http:
            async def get(path):
                async with http.get(base + path) as response:
                    return response.status, await response.json(content_type=None)

            await asyncio.wait_for(service.feed.subscribed.wait(), 10)
            await wait_for(lambda: service.mqtt_sink.connected and service.redis_sink.connected
                           and service.realtime_sink.connected, what="sinks up")
            # Boundaries around now (the history's entry IDs may be the write time or the boundary).
            times.extend([time.time_ns() // 1_000_000_000 * 1_000_000_000, 0])
            times[1] = times[0] + 10_000_000_000
            t1, t2 = times
            out["empty"] = await get("/api/values")
            out["not_yet"] = await get("/api/values/F0")
            out["unknown"] = await get("/api/values/NOPE")
            stream = await http.get(base + "/api/stream?board=1")
            events: list = []
            reader = asyncio.create_task(read_events(stream, events))
            rt_stream = await http.get(base + "/api/stream?realtime=1")
            rt_events: list = []
            rt_reader = asyncio.create_task(read_events(rt_stream, rt_events))
            await wait_for(lambda: len(service.hub.subscribers) == 2, what="streams subscribed")

            async def cycle_at(ts, prices):
                before = service.engine.intake.messages
                await publish_all("127.0.0.1", mosquitto.port, [
                    (f"{settings.mqtt.tick_topic_prefix}/{s}", orjson.dumps(tick(s, float(p), ts - 1000)))
                    for s, p in prices.items()])
                await wait_for(lambda: service.engine.intake.messages >= before + len(prices), what="ticks")
                return service.engine.cycle(ts)

            pub1 = await cycle_at(t1, prices1)
            pub2 = await cycle_at(t2, {symbols[2]: prices2[symbols[2]]})
            await wait_for(lambda: service.redis_sink.published >= 2 and service.mqtt_sink.published >= 2,
                           what="both publications written")
            await wait_for(lambda: sum(e[0] == "values" for e in events) >= 2, what="stream events")
            f0_rt = exact(document, {s: Decimal(p) for s, p in prices2.items()})["F0"]

            def last_f0_realtime():
                records = [r for e in rt_events if e[0] == "realtime" for r in e[2] if r["fund"] == "F0"]
                return records and f"{records[-1]['iopv']:.4f}" == f0_rt

            await wait_for(last_f0_realtime, what=f"F0's real-time value {f0_rt} on the stream")
            out["values"] = await get("/api/values")
            out["one"] = await get("/api/values/F1")
            out["mqtt"] = await read_retained("127.0.0.1", mosquitto.port, settings.mqtt.value_topic_prefix,
                                              len(document))
            iso1 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t1 / 1e9))
            out["history"] = await get(f"/api/history/F0?from={iso1}&to={t2 // 1_000_000}")
            out["history_all"] = await get("/api/history/F0")
            out["history_after"] = await get(f"/api/history/F0?from={t2 // 1_000_000 + 1}")
            out["bad_to"] = await get("/api/history/F0?to=noon")
            out["reversed"] = await get(f"/api/history/F0?from={t2 // 1_000_000}&to={t1 // 1_000_000}")
            out["history_unknown"] = await get("/api/history/NOPE")
            out["board"] = await get("/api/board")
            async with http.get(base + "/readyz") as response:
                out["ready"] = response.status, await response.json()
            async with http.get(base + "/metrics") as response:
                out["metrics"] = await response.text()
            async with http.get(base + "/") as response:
                out["page"] = response.status, await response.text()
            async with http.get(base + "/static/vendor/uplot/uPlot.iife.min.js") as response:
                out["uplot"] = response.status, len(await response.read())
            service.request_stop()
            out["code"] = await asyncio.wait_for(task, 5)
            await asyncio.wait_for(asyncio.gather(reader, rt_reader), 5)  # the streams end at shutdown
            stream.close()
            rt_stream.close()
        out["rt_events"] = rt_events
        out["events"] = events
        return pub1, pub2, out

    pub1, pub2, out = asyncio.run(scenario())
    t1, t2 = times
    assert out["empty"] == (200, [])
    assert out["not_yet"][0] == 404 and out["not_yet"][1]["fund"] == "F0"
    assert out["unknown"] == (404, {"error": "unknown fund 'NOPE'", "fund": "NOPE"})
    # Latest values: exactly the records published, equal to MQTT's retained ones and the reference.
    status, values = out["values"]
    assert status == 200 and values == pub2.records
    assert {r["fund"]: r for r in values} == out["mqtt"]
    reference = exact(document, {s: Decimal(p) for s, p in prices2.items()})
    assert {r["fund"]: f"{r['iopv']:.4f}" for r in values} == reference
    assert out["one"] == (200, pub2.records[1])
    # History: the Redis stream's entries, by time, as the published records.
    status, history = out["history"]
    assert status == 200 and all(record.pop("instance") for record in history)  # Redis names the writer
    assert history == [pub1.records[0], pub2.records[0]]
    status_all, history_all = out["history_all"]
    assert status_all == 200 and all(record.pop("instance") for record in history_all)
    assert history_all == history
    assert out["history_after"] == (200, [])
    assert out["bad_to"][0] == 400 and out["bad_to"][1]["parameter"] == "to"
    assert out["reversed"][0] == 400 and out["reversed"][1]["parameter"] == "from"
    assert out["history_unknown"][0] == 404
    # The stream: one values event per boundary with its records, and the board's rows.
    values_events = [e for e in out["events"] if e[0] == "values"]
    assert [(e[1], e[2]) for e in values_events] == [(str(t1 // 1_000_000), pub1.records),
                                                     (str(t2 // 1_000_000), pub2.records)]
    board_events = [e for e in out["events"] if e[0] == "board"]
    assert [[r["iopv"] for r in e[2]["rows"]] for e in board_events] == [
        [r["iopv"] for r in pub1.records], [r["iopv"] for r in pub2.records]]
    # Real-time records only to the stream that asked for them, with the boundary values too.
    assert "realtime" not in {e[0] for e in out["events"]}
    assert {e[0] for e in out["rt_events"]} == {"values", "realtime"}
    assert all(r["realtime"] is True for e in out["rt_events"] if e[0] == "realtime" for r in e[2])
    board = out["board"][1]
    assert [r["fund"] for r in board["rows"]] == [r["fund"] for r in pub2.records]
    assert board["rows"][0]["reference"] is not None and board["interval_s"] == 3600.0
    # Ops endpoints: every sink, the real-time one included, from the components' own reports.
    ready_status, ready = out["ready"]
    assert ready_status == 200 and ready["checks"]["mqtt_realtime_connected"] is True
    assert set(ready["checks"]) == {"baskets_loaded", "ticks_connected", "feed_not_silent", "redis_connected",
                                    "mqtt_connected", "mqtt_realtime_connected", "mqtt_events_connected",
                                    "redis_events_connected"}
    for needle in ('iopv_connected{connection="mqtt-realtime"} 1.0', 'iopv_sink_published_total{sink="redis"} 2.0',
                   'iopv_sink_queue_depth{sink="mqtt-realtime"}', 'iopv_reconnects_total{connection="redis"} 0.0',
                   "iopv_cycles_total 2.0"):
        assert needle in out["metrics"], needle
    assert out["page"][0] == 200 and "uPlot.iife.min.js" in out["page"][1]
    assert out["uplot"] == (200, 51081)
    assert out["code"] == 0
