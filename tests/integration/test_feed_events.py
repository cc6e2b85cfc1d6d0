"""The feed's reference data from the real service, read back from a real Mosquitto and Redis:
a whole (short) session -- directory, start of day, first value, close with the daily summaries,
end of day, heartbeats -- every message checked against its schema and against the calendar; a
subscriber that starts mid-session learns the day from retained messages alone; ``iopv/+``
carries values only; a basket swap marks a removed fund and clears its retained value."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import time
import uuid

import aiomqtt
import numpy as np
import orjson
import redis.asyncio as aioredis

from iopv.adapters.redis.events import (
    decode_fields,
    read_directory,
    read_directory_index,
    read_heartbeat,
    read_session,
    read_summaries,
)
from iopv.cli import main
from iopv.core import names
from iopv.core.calendar import SessionCalendar
from iopv.engine.clock import boundary_at_or_after
from iopv.service.live import Service
from tests.support.live import assert_valid, make_basket, settings_for, wait_for

NS = 1_000_000_000
SCHEMA_OF = {"value": "boundary-value", "status": "status", "directory": "directory", "session": "session-event",
             "summary": "summary", "heartbeat": "heartbeat"}


class ShortSession(SessionCalendar):
    """One NYSE-named session of a few seconds (open..close, ns), so a test sees a whole day."""

    def __init__(self, open_ns: int, close_ns: int):
        super().__init__("XNYS")
        self.open_ns, self.close_ns = open_ns, close_ns

    def sessions(self, start_ns: int, end_ns: int):
        keep = self.close_ns >= start_ns and self.open_ns <= end_ns
        return (np.array([self.open_ns] if keep else [], dtype=np.int64),
                np.array([self.close_ns] if keep else [], dtype=np.int64))

    def session_at(self, ts_ns: int):
        return (self.open_ns, self.close_ns) if self.open_ns <= ts_ns <= self.close_ns else None


def with_events(settings, **events):
    return dataclasses.replace(settings, events=dataclasses.replace(settings.events, **events))


class Collector:
    """Every message under a prefix, from a subscriber connected before the service starts."""

    def __init__(self, port: int, topic_filter: str):
        self.port, self.filter = port, topic_filter
        self.messages: list[tuple[str, bytes, bool]] = []

    async def __aenter__(self):
        self.client = aiomqtt.Client("127.0.0.1", self.port, identifier=f"col-{uuid.uuid4().hex[:6]}")
        await self.client.__aenter__()
        await self.client.subscribe(self.filter, qos=1)
        self.task = asyncio.create_task(self._collect())
        return self

    async def _collect(self):
        async for message in self.client.messages:
            self.messages.append((message.topic.value, bytes(message.payload), bool(message.retain)))

    async def __aexit__(self, *exc):
        self.task.cancel()
        await self.client.__aexit__(None, None, None)

    def of(self, prefix: str, kind: str) -> list[tuple[str, dict | None]]:
        out = []
        for topic, payload, _ in self.messages:
            found = names.topic_kind(prefix, topic)
            if found is not None and found[0] == kind:
                out.append((found[1], orjson.loads(payload) if payload else None))
        return out


async def retained(port: int, topic_filter: str, settle_s: float = 1.0) -> dict[str, bytes]:
    """The retained messages under a filter: what a subscriber starting now receives at once."""
    found: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"late-{uuid.uuid4().hex[:6]}") as client:
        await client.subscribe(topic_filter, qos=1)
        try:
            async with asyncio.timeout(settle_s):
                async for message in client.messages:
                    if message.retain:  # live messages arriving meanwhile are not what it learns at once
                        found[message.topic.value] = bytes(message.payload)
        except TimeoutError:
            pass
    return found


def test_a_whole_session_from_the_broker_and_redis(tmp_path, mosquitto, redis_server, monkeypatch, capsys):
    document = make_basket(7)
    document[0].update({"name": "Fund zero", "as_of": "2024-12-06", "prior_nav": 10.0, "total_cash": 12.5,
                        "shares_outstanding": 1000000})
    settings = with_events(settings_for(tmp_path, document, mosquitto, redis_server, interval_s=0.5),
                           heartbeat_s=0.5, start_of_day_lead_s=1.0, end_of_day_delay_s=1.0)
    prefix, keys, instance = settings.mqtt.value_topic_prefix, settings.redis.key_prefix, settings.engine.instance
    funds = [f["fund"] for f in document]

    async def scenario():
        service = Service(settings)
        # a session opening ~3 s after start, 3 s long, on boundaries of the 0.5 s interval
        open_ns = boundary_at_or_after(time.time_ns() + 3 * NS, NS)
        close_ns = open_ns + 3 * NS
        calendar = ShortSession(open_ns, close_ns)
        service.engine.calendar = service.events.day.calendar = calendar
        async with Collector(mosquitto.port, f"{prefix}/#") as everything, \
                Collector(mosquitto.port, names.topic_filters(prefix)["value"]) as values_only:
            task = asyncio.create_task(service.run(handle_signals=False))
            await wait_for(lambda: ("first_value", True) in
                           [(e.split("/")[1], r is not None) for e, r in everything.of(prefix, "session")],
                           15, "the first value")
            await asyncio.sleep(0.6)
            mid_session = await retained(mosquitto.port, f"{prefix}/#")  # a subscriber starting now
            await wait_for(lambda: any(e.endswith("/end_of_day") for e, r in everything.of(prefix, "session") if r),
                           20, "the end of day")
            await asyncio.sleep(0.8)  # a heartbeat or two after the day
            service.request_stop()
            assert await asyncio.wait_for(task, 10) == 0
        after = await retained(mosquitto.port, f"{prefix}/#")
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            stored = {
                "index": await read_directory_index(client, keys),
                "directory": {f: await read_directory(client, keys, f) for f in funds},
                "session": await read_session(client, keys, instance),
                "summaries": {f: await read_summaries(client, keys, f) for f in funds},
                "heartbeat": await read_heartbeat(client, keys, instance),
                "raw_directory": await client.hgetall(names.directory_key(keys, funds[0])),
            }
        finally:
            await client.aclose()
        return calendar, everything, values_only, mid_session, after, stored

    calendar, everything, values_only, mid_session, after, stored = asyncio.run(scenario())
    # every message on the broker validates against its kind's schema
    for topic, payload, _ in everything.messages:
        kind = names.topic_kind(prefix, topic)
        assert kind is not None, topic
        if payload:
            assert_valid(SCHEMA_OF[kind[0]], orjson.loads(payload))
    # iopv/+ got values and nothing else
    assert values_only.messages and all(names.topic_kind(prefix, t)[0] == "value" for t, _, _ in values_only.messages)
    for _, payload, _ in values_only.messages:
        assert_valid("boundary-value", orjson.loads(payload))

    # the session events: once each, in order, at the calendar's times
    events = [(key.split("/")[1], record) for key, record in everything.of(prefix, "session") if record is not None]
    assert [e for e, _ in events] == list(names.SESSION_EVENTS)
    times = {e: r["ts"] for e, r in events}
    session = events[0][1]["session"]
    assert times["start_of_day"] <= calendar.open_ns - NS + 500_000_000
    assert times["first_value"] == calendar.open_ns
    assert times["close"] == calendar.close_ns
    assert times["end_of_day"] == calendar.close_ns + NS
    assert all(r["instance"] == settings.engine.instance and r["session"] == session and
               (r["open"], r["close"]) == (calendar.open_ns, calendar.close_ns) for _, r in events)

    # the summaries count exactly the values the broker carried
    published = {}
    for fund, record in everything.of(prefix, "value"):
        if calendar.open_ns <= record["ts"] <= calendar.close_ns:
            published.setdefault(fund, {})[record["ts"]] = record
    summaries = {fund: record for fund, record in everything.of(prefix, "summary")}
    assert set(summaries) == set(funds)
    for fund in funds:
        seen = [published[fund][ts] for ts in sorted(published[fund])]
        s = summaries[fund]
        assert s["published"] == len(seen) == 7  # open .. close at 0.5 s
        assert (s["first"], s["last"]) == (seen[0]["iopv"], seen[-1]["iopv"])
        assert (s["high"], s["low"]) == (max(r["iopv"] for r in seen), min(r["iopv"] for r in seen))
        assert s["flagged"] == sum(1 for r in seen if r["flags"]) and s["complete"]
        assert (s["first_ts"], s["last_ts"], s["ts"]) == (calendar.open_ns, calendar.close_ns, calendar.close_ns)
    assert [e for e, _ in events].index("close") == len(names.SESSION_EVENTS) - 2
    # heartbeats between boundaries, saying what came last and what comes next
    beats = [r for _, r in everything.of(prefix, "heartbeat")]
    assert len(beats) >= 10
    during = [b for b in beats if calendar.open_ns < b["ts"] < calendar.close_ns]
    assert during and all(b["state"] == "open" and b["next_ts"] > b["last_ts"] for b in during)
    assert beats[-1]["state"] == "ended" and beats[-1]["last_ts"] == calendar.close_ns

    # mid-session: directory, start of day and first value of today, latest values, heartbeat; no close
    kinds = {}
    for topic, payload in mid_session.items():
        kind, key = names.topic_kind(prefix, topic)
        kinds.setdefault(kind, {})[key] = orjson.loads(payload) if payload else None
    assert set(kinds["directory"]) == set(funds) and set(kinds["value"]) == set(funds)
    assert all(r["session"] == session and r["status"] == "active" for r in kinds["directory"].values())
    assert set(kinds["session"]) == {f"{instance}/start_of_day", f"{instance}/first_value"}
    assert all(r["ts"] >= calendar.open_ns for r in kinds["value"].values()), "no value from before the session"
    assert list(kinds["heartbeat"]) == [instance] and "summary" not in kinds
    # after the day: the four events and every fund's summary are retained
    after_kinds = {names.topic_kind(prefix, t)[0] for t in after}
    assert {"directory", "session", "summary", "heartbeat", "value", "status"} <= after_kinds
    assert sum(1 for t in after if names.topic_kind(prefix, t)[0] == "session") == 4

    # Redis: the same records
    assert set(stored["index"]) == set(funds) and stored["session"].keys() == set(names.SESSION_EVENTS)
    for event, record in stored["session"].items():
        assert_valid("session-event", record)
        assert record == dict(events)[event]
    for fund in funds:
        assert_valid("directory", stored["directory"][fund])
        assert stored["directory"][fund]["session"] == session
        [summary] = stored["summaries"][fund]
        assert_valid("summary", summary)
        assert summary == summaries[fund]
    assert stored["directory"][funds[0]]["name"] == "Fund zero" and stored["directory"][funds[0]]["prior_nav"] == 10.0
    assert all(isinstance(v, bytes) for v in stored["raw_directory"].values())
    assert decode_fields(stored["raw_directory"], fund=funds[0]) == stored["directory"][funds[0]]
    assert_valid("heartbeat", stored["heartbeat"])
    assert stored["heartbeat"]["state"] == "ended"

    # iopv history --summary: the same summaries, JSON and CSV
    monkeypatch.setenv("IOPV_REDIS_KEY_PREFIX", keys)
    capsys.readouterr()
    assert main(["history", funds[0], "--summary", "--format", "json", "--redis-url", redis_server.url]) == 0
    out, err = capsys.readouterr()
    assert [orjson.loads(line) for line in out.splitlines()] == [summaries[funds[0]]]
    assert err.strip() == f"history: 1 daily summarie(s) of {funds[0]}"
    assert main(["history", funds[0], "--summary", "--redis-url", redis_server.url,
                 "--to", str(calendar.close_ns // 1_000_000 - 1)]) == 0
    assert capsys.readouterr().out.splitlines() == ["fund,ts,time"], "a bound before the close: none"
    assert main(["history", funds[1], "--summary", "--redis-url", redis_server.url]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert int(row["published"]) == 7 and float(row["high"]) == summaries[funds[1]]["high"]
    assert main(["history", "NOPE", "--summary", "--redis-url", redis_server.url]) == 2
    assert "no daily summary" in capsys.readouterr().err


def test_a_basket_swap_marks_the_removed_fund_and_clears_its_value(tmp_path, mosquitto, redis_server):
    document = make_basket(8)
    settings = with_events(settings_for(tmp_path, document, mosquitto, redis_server, interval_s=0.5,
                                        calendar="always"), heartbeat_s=1.0)
    prefix, keys = settings.mqtt.value_topic_prefix, settings.redis.key_prefix
    removed = document[1]["fund"]

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await wait_for(lambda: service.mqtt_sink.published >= 2, 15, "values")
        before = await retained(mosquitto.port, names.topic_filters(prefix)["value"], 0.5)
        (tmp_path / "pcf.json").write_bytes(orjson.dumps([f for f in document if f["fund"] != removed]))
        service.engine.request_reload()
        await wait_for(lambda: service.engine.universe.version != service.events.day.day.events[
            "start_of_day"]["basket"] and removed not in service.engine.universe.funds, 10, "the swap")
        await wait_for(lambda: service.events.mqtt.queued == 0 and service.events.redis.queued == 0
                       and service.mqtt_sink.published >= 4, 10, "the directory out")
        await asyncio.sleep(1.2)
        directory = await retained(mosquitto.port, names.topic_filters(prefix)["directory"], 0.5)
        values = await retained(mosquitto.port, names.topic_filters(prefix)["value"], 0.5)
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            stored = await read_directory(client, keys, removed)
            index = await read_directory_index(client, keys)
        finally:
            await client.aclose()
        service.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
        return service, before, directory, values, stored, index

    service, before, directory, values, stored, index = asyncio.run(scenario())
    assert names.value_topic(prefix, removed) in before
    assert names.value_topic(prefix, removed) not in values, "the removed fund's retained value is cleared"
    assert set(values) == {names.value_topic(prefix, f) for f in service.engine.universe.funds}
    record = orjson.loads(directory[names.directory_topic(prefix, removed)])
    assert_valid("directory", record)
    assert record["status"] == "removed" and record["basket"] == service.engine.universe.version
    for fund in service.engine.universe.funds:
        active = orjson.loads(directory[names.directory_topic(prefix, fund)])
        assert active["status"] == "active" and active["basket"] == service.engine.universe.version
    assert stored["status"] == "removed" and "currency" not in stored and index[removed]["status"] == "removed"
    assert_valid("directory", stored)
