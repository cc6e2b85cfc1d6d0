"""The Redis sink's script mode (one EVALSHA per chunk of funds) against a real throwaway Redis:
it writes exactly what pipeline mode writes, in chunks that need not divide the funds; a failed
chunk is resumed at the first fund not written (no duplicate history entries); a key of the
wrong type is skipped and counted while every other fund is written; a flushed script cache is
refilled on the fly; the state snapshot rides with the last chunk; the shipped ACL allows it."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from iopv.adapters.redis import client as redis_client_module
from iopv.adapters.redis import sink as redis_sink_module
from iopv.adapters.redis.client import redis_client
from iopv.adapters.redis.sink import (
    WRITE_SCRIPT_SHA1,
    RedisSink,
    field_args,
    field_values,
)
from iopv.config import ConfigError, load_settings
from iopv.engine.codec import encode_record
from iopv.engine.publication import Publication
from tests.support.live import wait_for

ROOT = Path(__file__).resolve().parents[2]
STREAM_ID_MAX = "18446744073709551615-18446744073709551615"
ALWAYS = {"calendar": "always"}  # no exchange calendar to load: these tests are about Redis


def publication(ts_ns: int, funds: int) -> Publication:
    """Records whose field sets differ between funds, with negative, non-ASCII, list, null and
    binary-looking values, so a shifted or mis-encoded argument cannot go unnoticed."""
    names = tuple(f"F{i:04d}" for i in range(funds))
    records = []
    for i, name in enumerate(names):
        record = {"fund": name, "ts": ts_ns, "iopv": round(10 + i / 7 + ts_ns / 1e12, 4),
                  "coverage": 0.5, "stale": i % 3, "status": "ok" if i % 4 else "degraded",
                  "flags": ["stale"] if i % 3 else [], "basket": "v1", "estimated_cash": -1234.5}
        if i % 2:
            record["as_of"] = "2024-04-01"
        if i % 5 == 0:
            record |= {"market_price": None if i % 10 else 10.01, "premium_bps": -1.25,
                       "note": f"é ü \r\n\x00 {i}"}
        records.append(record)
    return Publication(ts_ns, names, records, [encode_record(r) for r in records])


def expected_fields(record: dict) -> dict[bytes, bytes]:
    """The README's rule for Redis fields: every field but the fund, in record order, strings as
    they are, anything else as its JSON text."""
    return {key.encode(): value.encode() if isinstance(value, str) else orjson.dumps(value)
            for key, value in record.items() if key != "fund"}


def redis_settings(redis_server, **overrides):
    redis_overrides = {"url": redis_server.url, "key_prefix": f"iopv{uuid.uuid4().hex[:8]}",
                       "history_maxlen": 1000, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2,
                       **overrides}
    return load_settings(environ={}, overrides={"engine": ALWAYS, "redis": redis_overrides}).redis


def read_back(redis_server, prefix: str, funds) -> tuple[dict, dict]:
    """Every fund's hash and history entries' fields (in server order), raw bytes."""
    r = redis.Redis.from_url(redis_server.url)
    try:
        hashes = {f: r.hgetall(f"{prefix}:{f}") for f in funds}
        history = {f: [list(fields.items()) for _, fields in r.xrange(f"{prefix}:{f}:history")]
                   for f in funds}
    finally:
        r.close()
    return hashes, history


def command_calls(redis_server, command: str) -> int:
    r = redis.Redis.from_url(redis_server.url)
    try:
        return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
    finally:
        r.close()


async def send(sink: RedisSink, batch: list[Publication]) -> None:
    """One ``send`` of ``batch`` on a fresh connection (``on_connect`` first, as ``run`` does)."""
    client = redis_client(sink.settings)
    try:
        await sink.on_connect(client)
        await sink.send(client, batch)
    finally:
        await client.aclose()


def test_field_values_are_the_values_of_field_args():
    """Script mode sends each fund's values (names once per chunk), pipeline mode
    ``field_args``: the same encoding, in the same order."""
    for record in publication(7, 11).records:
        args = field_args(record)
        assert field_values(record) == args[1::2]
        assert args[0::2] == [name for name in record if name != "fund"]


@pytest.fixture
def small_chunks(monkeypatch):
    """7 funds per script call, 5 per pipeline: publications span several chunks."""
    monkeypatch.setattr(redis_sink_module, "SCRIPT_CHUNK_FUNDS", 7)
    monkeypatch.setattr(redis_sink_module, "CHUNK_FUNDS", 5)


@pytest.mark.parametrize("funds", [1, 14, 23], ids=["one-fund", "multiple-of-chunk", "not-a-multiple"])
def test_script_mode_writes_exactly_what_pipeline_mode_writes(redis_server, small_chunks, funds):
    pubs = [publication(ts, funds) for ts in (1_000_000_000, 2_000_000_000, 3_000_000_000)]
    written = {}
    calls_before = command_calls(redis_server, "evalsha")
    for mode in ("pipeline", "script"):
        settings = redis_settings(redis_server, write_mode=mode)
        sink = RedisSink(settings, max_queued=8, state_key=f"{settings.key_prefix}:_state:t")
        sink.pending_state = b"state \x00 bytes"
        asyncio.run(send(sink, pubs[:2]))
        asyncio.run(send(sink, pubs[2:]))
        written[mode] = read_back(redis_server, settings.key_prefix, pubs[0].funds)
        with redis.Redis.from_url(redis_server.url) as r:
            written[mode] += (r.get(f"{settings.key_prefix}:_state:t"),)
        assert sink.pending_state is None and sink.skipped_writes == 0
    # One script call per chunk of 7 funds per publication: the chunking really happened.
    assert command_calls(redis_server, "evalsha") - calls_before == 3 * math.ceil(funds / 7)
    assert written["script"] == written["pipeline"]
    hashes, history, state = written["script"]
    assert state == b"state \x00 bytes"
    for i, fund in enumerate(pubs[0].funds):
        assert hashes[fund] == expected_fields(pubs[2].records[i])
        assert history[fund] == [list(expected_fields(p.records[i]).items()) for p in pubs]


@pytest.mark.parametrize("mode", ["script", "pipeline"])
def test_connection_lost_mid_publication_resumes_from_the_failed_chunk(redis_server, small_chunks,
                                                                      monkeypatch, mode):
    """Both publications go as one batch (queued while the sink was away). It fails twice, in
    the first publication and then in the second; each retry starts at the failed chunk, and
    the publication written before the second failure is not written again."""
    settings = redis_settings(redis_server, write_mode=mode)
    prefix, funds = settings.key_prefix, 30
    pubs = [publication(ts, funds) for ts in (1_000_000_000, 2_000_000_000)]
    original = redis_client_module.HiredisConnection.send_packed_command
    first_command, per_publication = {"script": (b"EVALSHA", 5), "pipeline": (b"HSET", 6)}[mode]
    sent = {"chunks": 0}

    async def flaky(self, command, *args, **kwargs):
        if isinstance(command, list) and first_command in command[0][:40]:
            sent["chunks"] += 1
            # The first publication's third chunk; after its retry, the second's second chunk.
            if sent["chunks"] in (3, per_publication + 3):
                raise redis.exceptions.ConnectionError("injected")
        return await original(self, command, *args, **kwargs)

    async def scenario():
        sink = RedisSink(settings, max_queued=8, state_key=f"{prefix}:_state:t")
        sink.pending_state = b"state-1"
        monkeypatch.setattr(redis_client_module.HiredisConnection, "send_packed_command", flaky)
        sink.offer(pubs[0])
        sink.offer(pubs[1])
        task = asyncio.create_task(sink.run())
        await wait_for(lambda: sink.last_ts_ns == 2_000_000_000, what="both publications written")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return sink

    sink = asyncio.run(scenario())
    assert sink.reconnects == 2 and sink.published == 2 and sink.dropped == 0
    hashes, history = read_back(redis_server, prefix, pubs[0].funds)
    for i, fund in enumerate(pubs[0].funds):
        assert hashes[fund] == expected_fields(pubs[1].records[i])
        assert history[fund] == [list(expected_fields(p.records[i]).items()) for p in pubs], fund
    with redis.Redis.from_url(redis_server.url) as r:
        assert r.get(f"{prefix}:_state:t") == b"state-1"


def test_error_inside_a_chunk_resumes_at_the_fund_it_stopped(redis_server, small_chunks):
    """A server error that is not WRONGTYPE (here: a history stream whose last ID is the largest
    possible) stops the script at that fund and surfaces, naming the key; the state waits. The
    retry starts at that fund: the funds before it in the same chunk are not written twice."""
    settings = redis_settings(redis_server)
    prefix, funds = settings.key_prefix, 20
    pubs = [publication(ts, funds) for ts in (1_000_000_000, 2_000_000_000)]
    sink = RedisSink(settings, max_queued=8, state_key=f"{prefix}:_state:t")
    sink.pending_state = b"state-1"
    bad = f"{prefix}:F0010:history"  # second chunk (funds 7-13), fourth fund
    r = redis.Redis.from_url(redis_server.url)
    try:
        r.xadd(bad, {"x": "1"}, id=STREAM_ID_MAX)
        with pytest.raises(redis.exceptions.ResponseError, match=f"{bad}: ERR The stream has exhausted"):
            asyncio.run(send(sink, pubs))
        _, history = read_back(redis_server, prefix, pubs[0].funds)
        assert [len(history[f]) for f in pubs[0].funds] == [1] * 10 + [1] + [0] * 9  # F0010: its own
        assert history["F0010"] == [[(b"x", b"1")]]
        assert r.get(f"{prefix}:_state:t") is None and sink.pending_state == b"state-1"
        assert r.hgetall(f"{prefix}:F0010") == expected_fields(pubs[0].records[10])  # its HSET ran
        r.delete(bad)
        asyncio.run(send(sink, pubs))  # as the sink does: the failed batch again, same objects
        hashes, history = read_back(redis_server, prefix, pubs[0].funds)
        for i, fund in enumerate(pubs[0].funds):
            assert hashes[fund] == expected_fields(pubs[1].records[i])
            assert history[fund] == [list(expected_fields(p.records[i]).items()) for p in pubs], fund
        assert r.get(f"{prefix}:_state:t") == b"state-1" and sink.pending_state is None
    finally:
        r.close()


@pytest.mark.parametrize("mode", ["script", "pipeline"])
def test_key_of_the_wrong_type_is_skipped_and_counted_and_the_rest_written(redis_server, small_chunks,
                                                                             caplog, mode):
    settings = redis_settings(redis_server, write_mode=mode)
    prefix, funds = settings.key_prefix, 16
    pub = publication(5_000_000_000, funds)
    r = redis.Redis.from_url(redis_server.url)
    try:
        r.set(f"{prefix}:F0003", "someone else's")  # a string where the latest-value hash goes
        r.hset(f"{prefix}:F0009:history", "x", "1")  # a hash where the history stream goes
        sink = RedisSink(settings, max_queued=8, state_key=f"{prefix}:_state:t")
        sink.pending_state = b"state-1"
        with caplog.at_level(logging.WARNING, logger="iopv.adapters.redis.sink"):
            asyncio.run(send(sink, [pub]))
        assert sink.skipped_writes == 2
        assert f"{prefix}:F0003: WRONGTYPE" in caplog.text and f"{prefix}:F0009:history: WRONGTYPE" in caplog.text
        for i, fund in enumerate(pub.funds):
            if fund != "F0003":
                assert r.hgetall(f"{prefix}:{fund}") == expected_fields(pub.records[i])
            if fund != "F0009":
                assert [list(fields.items()) for _, fields in r.xrange(f"{prefix}:{fund}:history")] == \
                    [list(expected_fields(pub.records[i]).items())]
        assert r.get(f"{prefix}:F0003") == b"someone else's"
        assert r.hgetall(f"{prefix}:F0009:history") == {b"x": b"1"}
        assert r.get(f"{prefix}:_state:t") == b"state-1" and sink.pending_state is None
    finally:
        r.close()


def test_script_cache_flushed_between_publications_is_reloaded_transparently(redis_server, small_chunks):
    settings = redis_settings(redis_server)
    prefix, funds = settings.key_prefix, 10
    pubs = [publication(ts, funds) for ts in (1_000_000_000, 2_000_000_000)]
    sink = RedisSink(settings, max_queued=8)

    async def scenario():
        client = redis_client(settings)
        try:
            await sink.on_connect(client)
            await sink.send(client, pubs[:1])
            await client.script_flush()
            assert await client.script_exists(WRITE_SCRIPT_SHA1) == [False]
            evals = command_calls(redis_server, "eval")
            await sink.send(client, pubs[1:])  # first chunk: NOSCRIPT, then EVAL; second: EVALSHA
            return command_calls(redis_server, "eval") - evals, await client.script_exists(WRITE_SCRIPT_SHA1)
        finally:
            await client.aclose()

    evals, exists = asyncio.run(scenario())
    assert evals == 1 and exists == [True]
    hashes, history = read_back(redis_server, prefix, pubs[0].funds)
    for i, fund in enumerate(pubs[0].funds):
        assert hashes[fund] == expected_fields(pubs[1].records[i])
        assert history[fund] == [list(expected_fields(p.records[i]).items()) for p in pubs]


def test_state_snapshot_goes_with_the_last_chunk_and_only_then_is_cleared(redis_server, small_chunks):
    """The snapshot pending when the batch's last chunk is built is the one written; one set
    while a batch is being sent is kept for the next batch."""
    settings = redis_settings(redis_server)
    prefix = settings.key_prefix
    sink = RedisSink(settings, max_queued=8, state_key=f"{prefix}:_state:t")
    original_args = sink._script_args
    seen = []

    def script_args(chunk):
        seen.append((chunk.start, chunk.end, chunk.state))
        if chunk.start == 7 and sink.pending_state == b"first":
            sink.pending_state = b"second"  # a cycle's snapshot arriving mid-send
        return original_args(chunk)

    sink._script_args = script_args
    sink.pending_state = b"first"
    r = redis.Redis.from_url(redis_server.url)
    try:
        asyncio.run(send(sink, [publication(1_000_000_000, 10)]))
        # Chunk 0-7 was built without the state; 7-10, the last, took "first" before it changed.
        assert seen == [(0, 7, None), (7, 10, b"first")]
        assert r.get(f"{prefix}:_state:t") == b"first" and sink.pending_state == b"second"
        asyncio.run(send(sink, [publication(2_000_000_000, 3)]))
        assert r.get(f"{prefix}:_state:t") == b"second" and sink.pending_state is None
    finally:
        r.close()


def shipped_engine_rules() -> list[str]:
    """The ``iopv-engine`` user's rules from the shipped ACL file, without its password."""
    for line in (ROOT / "config/security/redis-users.acl").read_text().splitlines():
        words = line.split()
        if words[:2] == ["user", "iopv-engine"]:
            return [w for w in words[2:] if not w.startswith("#")]
    raise AssertionError("no iopv-engine user in config/security/redis-users.acl")


def test_shipped_acl_allows_script_mode_and_without_scripting_the_sink_says_what_to_do(redis_server):
    """Under the shipped engine rules, script mode writes (keys under ``iopv:``). A user without
    EVAL/EVALSHA fails at connect with a message naming ``redis.write_mode``, and pipeline mode
    works for it."""
    tag = uuid.uuid4().hex[:8]
    admin = redis.Redis.from_url(redis_server.url)
    users = {"full": f"iopv-engine-{tag}", "no-scripts": f"iopv-engine-{tag}-ns"}
    admin.execute_command("ACL", "SETUSER", users["full"], ">pw", *shipped_engine_rules())
    admin.execute_command("ACL", "SETUSER", users["no-scripts"], ">pw", *shipped_engine_rules(), "-eval", "-evalsha")
    pub = publication(1_000_000_000, 9)
    host = redis_server.url.split("://", 1)[1]

    def settings_for(user: str, mode: str):
        return redis_settings(redis_server, url=f"redis://{user}:pw@{host}", key_prefix=f"iopv:{tag}{mode}",
                              write_mode=mode)

    async def run_until_sent(settings):
        sink = RedisSink(settings, max_queued=4, state_key=f"{settings.key_prefix}:_state:t")
        sink.pending_state = b"s"
        task = asyncio.create_task(sink.run())
        sink.offer(pub)
        try:
            await wait_for(lambda: sink.last_ts_ns == pub.ts_ns or task.done(), what="sent or failed")
        finally:
            task.cancel()
            results = await asyncio.gather(task, return_exceptions=True)
        return sink, results[0]

    try:
        for user, mode in ((users["full"], "script"), (users["no-scripts"], "pipeline")):
            settings = settings_for(user, mode)
            sink, _ = asyncio.run(run_until_sent(settings))
            assert sink.published == 1, (user, mode)
            hashes, history = read_back(redis_server, settings.key_prefix, pub.funds)
            assert hashes == {f: expected_fields(r) for f, r in zip(pub.funds, pub.records)}
            assert history == {f: [list(expected_fields(r).items())] for f, r in zip(pub.funds, pub.records)}
        sink, error = asyncio.run(run_until_sent(settings_for(users["no-scripts"], "script")))
        assert sink.published == 0 and isinstance(error, redis.exceptions.NoPermissionError)
        assert "'eval'" in str(error) and 'redis.write_mode = "pipeline"' in str(error)
    finally:
        admin.acl_deluser(*users.values())
        admin.close()


def test_write_mode_setting_is_validated_and_defaults_to_script(tmp_path):
    def load(path=None, **environ):
        return load_settings(path, environ=environ, overrides={"engine": ALWAYS})

    assert load().redis.write_mode == "script"
    assert load(IOPV_REDIS_WRITE_MODE="pipeline").redis.write_mode == "pipeline"
    with pytest.raises(ConfigError, match="redis.write_mode: expected \"script\" or \"pipeline\", got 'lua'"):
        load(IOPV_REDIS_WRITE_MODE="lua")
    config = tmp_path / "iopv.toml"
    config.write_text('[redis]\nwrite_mode = "Script"\n')
    with pytest.raises(ConfigError, match="redis.write_mode"):
        load(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        load().redis.write_mode = "pipeline"
