"""docs/examples/backfill.py really back-fills: a subscriber that was away (its state file holds
older boundaries) gets every value it missed, from the Redis history or from /api/history, then
the live ones, with no gap and no duplicate in the boundary sequence."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import sys
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from iopv.adapters.redis.history import read_history
from iopv.core import names
from iopv.localservers.servers import free_port
from iopv.service.live import Service
from tests.support.live import make_basket, settings_for, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "examples" / "backfill.py"


def test_the_example_uses_the_engines_topic_and_key_shapes():
    spec = importlib.util.spec_from_file_location("backfill_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    filters = names.topic_filters("p")
    assert module.VALUE_FILTER.format(prefix="p") == filters["value"]
    assert module.HEARTBEAT_FILTER.format(prefix="p") == filters["heartbeat"]
    assert module.DIRECTORY_FILTER.format(prefix="p") == filters["directory"]
    from iopv.core.names import history_key
    assert module.HISTORY_KEY.format(key_prefix="k", fund="F") == history_key("k", "F")


@pytest.mark.parametrize("source", ["redis", "api"])
def test_backfill_example_fills_the_gap(tmp_path, mosquitto, redis_server, source):
    document = make_basket(12)
    settings = settings_for(tmp_path, document, mosquitto, redis_server, interval_s=0.5, calendar="always")
    settings = dataclasses.replace(settings, ops=dataclasses.replace(settings.ops, http_port=free_port()),
                                   events=dataclasses.replace(settings.events, heartbeat_s=0.5))
    prefix, keys = settings.mqtt.value_topic_prefix, settings.redis.key_prefix
    funds = [f["fund"] for f in document]
    state = tmp_path / "last.json"

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            await wait_for(lambda: service.redis_sink.published >= 6, 20, "six boundaries in Redis")
            held = {f: (await read_history(client, keys, f))[1]["ts"] for f in funds}  # away since the 2nd
            state.write_bytes(orjson.dumps(held))
            source_args = (["--redis-url", redis_server.url, "--key-prefix", keys] if source == "redis"
                           else ["--api-url", f"http://127.0.0.1:{settings.ops.http_port}"])
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(SCRIPT), "--mqtt-url", mosquitto.url, "--prefix", prefix, *source_args,
                "--state", str(state), "--duration", "2.5",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, err.decode()
            stored = {f: await read_history(client, keys, f) for f in funds}
        finally:
            await client.aclose()
            service.request_stop()
            assert await asyncio.wait_for(task, 10) == 0
        return held, out, stored

    held, out, stored = asyncio.run(scenario())
    printed = [orjson.loads(line) for line in out.splitlines()]
    interval_ns = settings.engine.interval_ns
    for fund in funds:
        mine = [r for r in printed if r["fund"] == fund]
        filled = [r for r in mine if r["via"] == source]
        assert len(filled) >= 3, f"{fund}: the boundaries missed while away were back-filled"
        sequence = [held[fund]] + [r["ts"] for r in mine]
        assert all(b - a == interval_ns for a, b in zip(sequence, sequence[1:])), f"{fund}: a gap or a duplicate"
        history = {r["ts"]: r for r in stored[fund]}
        for record in filled:
            assert {k: v for k, v in record.items() if k != "via"} == history[record["ts"]]
        assert any(r["via"] == "mqtt" for r in mine), "then the live values"
    assert orjson.loads(state.read_bytes()) == {f: [r for r in printed if r["fund"] == f][-1]["ts"] for f in funds}
