"""``iopv tail`` against real Mosquitto: ``--json`` prints the retained records byte for byte, and
the table shows every fund's published value with the board's columns."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time

import orjson

from iopv.cli.tail import Tail
from iopv.config import load_settings
from iopv.core.universe import load_pcf
from iopv.service.live import Service
from tests.support.live import make_basket, publish_all, settings_for, tick, wait_for


def test_tail_json_and_table_show_the_published_values(tmp_path, mosquitto, redis_server):
    document = make_basket(seed=31)
    settings = settings_for(tmp_path, document, mosquitto, redis_server, calendar="always", interval_s=3600.0)
    symbol = document[2]["holdings"][0]["symbol"]
    env = {**os.environ, "IOPV_MQTT_VALUE_TOPIC_PREFIX": settings.mqtt.value_topic_prefix}

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        await wait_for(lambda: service.mqtt_sink.connected, what="mqtt sink up")
        await publish_all("127.0.0.1", mosquitto.port, [
            (f"{settings.mqtt.tick_topic_prefix}/{symbol}", orjson.dumps(tick(symbol, 77.125, time.time_ns())))])
        await wait_for(lambda: service.engine.intake.messages >= 1, what="tick")
        publication = service.engine.cycle(time.time_ns() // 1_000_000_000 * 1_000_000_000)
        await wait_for(lambda: service.mqtt_sink.published >= 1, what="published")
        service.request_stop()
        assert await asyncio.wait_for(task, 5) == 0
        # The retained values stay with the broker: any subscriber gets them at once.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "iopv", "tail", "--json", "--mqtt-url", mosquitto.url,
            "--count", str(len(document)), "--duration", "20", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        # The table, in-process: two funds named on the command line, names from the basket file.
        tail_settings = load_settings(environ={}, overrides={
            "mqtt": {"url": mosquitto.url, "value_topic_prefix": settings.mqtt.value_topic_prefix},
            "engine": {"interval_s": 3600.0}})
        stream = io.StringIO()
        tail = Tail(tail_settings, ["F0", "F2"], universe=load_pcf(settings.engine.pcf_path), stream=stream,
                    force_terminal=False)
        code = await tail.run(count=2, duration_s=20)
        return publication, process.returncode, out, err, code, stream.getvalue()

    publication, returncode, out, err, code, table = asyncio.run(scenario())
    assert returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert sorted(lines) == sorted(p.decode() for p in publication.payloads)
    assert code == 0
    last_table = table[table.rindex("IOPV tail"):]
    by_fund = {r["fund"]: r for r in publication.records}
    for fund in ("F0", "F2"):
        line = next(line for line in last_table.splitlines() if f"│{fund} " in line)
        assert f"{by_fund[fund]['iopv']:.4f}" in line and by_fund[fund]["status"] in line
    assert "│F1 " not in last_table and "2 records" in last_table, last_table
