"""Active-active replicas on one Redis (script and pipeline mode): each boundary's history entry
is written once (ID ``<boundary_ms>-0``), the second replica's refusal is counted as a peer
write, a different value at the published digit is a divergence, and the latest-value hash only
moves to a newer boundary."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from iopv.adapters.redis.sink import RedisSink
from iopv.config import RedisSettings
from iopv.engine.codec import encode_record
from iopv.engine.publication import Publication

SECOND = 1_000_000_000


def publication(ts_ns: int, funds: int = 12, bump: dict[int, float] | None = None) -> Publication:
    names = tuple(f"R{i:02d}" for i in range(funds))
    records = [{"fund": f, "ts": ts_ns, "iopv": round(20 + i / 100 + (bump or {}).get(i, 0), 4)}
               for i, f in enumerate(names)]
    return Publication(ts_ns, names, records, [encode_record(r) for r in records])


async def write(sink: RedisSink, *publications: Publication) -> None:
    async with sink.connect() as client:
        await sink.on_connect(client)
        await sink.send(client, list(publications))


@pytest.mark.parametrize("mode", ["script", "pipeline"])
def test_second_replica_is_refused_counted_and_compared(redis_server, mode):
    prefix = f"rep{uuid.uuid4().hex[:6]}"
    settings = RedisSettings(url=redis_server.url, key_prefix=prefix, write_mode=mode)
    a = RedisSink(settings, max_queued=8, instance="a")
    b = RedisSink(settings, max_queued=8, instance="b")
    asyncio.run(write(a, publication(SECOND), publication(2 * SECOND)))
    asyncio.run(write(b, publication(SECOND), publication(2 * SECOND, bump={3: 0.0001})))
    assert (a.peer_writes, a.divergences) == (0, 0)
    assert b.peer_writes == 24 and b.divergences == 1
    assert b.last_divergence == ("R03", 2 * SECOND, "20.0301", "20.03")
    r = redis.Redis.from_url(redis_server.url)
    entries = r.xrange(f"{prefix}:R03:history")
    assert [e[0] for e in entries] == [b"1000-0", b"2000-0"]
    assert entries[1][1][b"iopv"] == b"20.03" and entries[1][1][b"instance"] == b"a"
    assert r.hget(f"{prefix}:R03", "instance") == (b"a" if mode == "script" else b"b")


def test_an_older_boundary_never_replaces_the_latest_value(redis_server):
    prefix = f"rep{uuid.uuid4().hex[:6]}"
    settings = RedisSettings(url=redis_server.url, key_prefix=prefix)
    ahead = RedisSink(settings, max_queued=8, instance="ahead")
    behind = RedisSink(settings, max_queued=8, instance="behind")
    asyncio.run(write(ahead, publication(10 * SECOND)))
    asyncio.run(write(behind, publication(9 * SECOND)))
    r = redis.Redis.from_url(redis_server.url)
    assert r.hget(f"{prefix}:R00", "ts") == str(10 * SECOND).encode()
    assert r.hget(f"{prefix}:R00", "instance") == b"ahead"
    # The stream already holds a later boundary: 9 s cannot be inserted; counted, not a peer write.
    assert behind.late_writes == 12 and behind.peer_writes == 0
    assert [e[0] for e in r.xrange(f"{prefix}:R00:history")] == [b"10000-0"]


def flagged_publication(ts_ns: int, *, recovering: bool, bump: float = 0.0, funds: int = 4) -> Publication:
    """Records with ``flags``: ``["recovering"]`` from a book that is not whole."""
    names = tuple(f"R{i:02d}" for i in range(funds))
    records = [{"fund": f, "ts": ts_ns, "iopv": round(20 + i / 100 + bump, 4),
                "flags": ["recovering"] if recovering else []} for i, f in enumerate(names)]
    return Publication(ts_ns, names, records, [encode_record(r) for r in records], not recovering)


def history(r, prefix: str, fund: str = "R01") -> list[tuple[bytes, bytes, bytes]]:
    return [(entry_id, fields[b"iopv"], fields[b"instance"])
            for entry_id, fields in r.xrange(f"{prefix}:{fund}:history")]


def test_a_whole_value_supersedes_a_flagged_one_and_the_stream_keeps_its_order(redis_server):
    prefix = f"rep{uuid.uuid4().hex[:6]}"
    settings = RedisSettings(url=redis_server.url, key_prefix=prefix)
    recovering = RedisSink(settings, max_queued=8, instance="rec")
    whole = RedisSink(settings, max_queued=8, instance="whole")
    # The recovering replica wrote boundaries 1-3 first (its whole peer was held up, say).
    asyncio.run(write(recovering, *(flagged_publication(k * SECOND, recovering=True, bump=0.5) for k in (1, 2, 3))))
    asyncio.run(write(whole, *(flagged_publication(k * SECOND, recovering=False) for k in (1, 2))))
    r = redis.Redis.from_url(redis_server.url)
    assert history(r, prefix) == [(b"1000-0", b"20.01", b"whole"), (b"2000-0", b"20.01", b"whole"),
                                  (b"3000-0", b"20.51", b"rec")]
    assert (whole.superseded, whole.peer_writes, whole.divergences) == (8, 0, 0)
    # The hash holds boundary 3 (newer, flagged) until the whole value of boundary 3 replaces it.
    assert r.hget(f"{prefix}:R01", "instance") == b"rec"
    asyncio.run(write(whole, flagged_publication(3 * SECOND, recovering=False)))
    assert history(r, prefix)[-1] == (b"3000-0", b"20.01", b"whole")
    assert r.hmget(f"{prefix}:R01", "instance", "ts", "flags") == [b"whole", b"3000000000", b"[]"]
    # New entries still append after the rewritten ones (the stream's last ID is right).
    asyncio.run(write(recovering, flagged_publication(4 * SECOND, recovering=True)))
    assert [e[0] for e in history(r, prefix)] == [b"1000-0", b"2000-0", b"3000-0", b"4000-0"]


def test_a_flagged_value_never_replaces_a_whole_one_and_raises_no_divergence(redis_server):
    prefix = f"rep{uuid.uuid4().hex[:6]}"
    settings = RedisSettings(url=redis_server.url, key_prefix=prefix)
    whole = RedisSink(settings, max_queued=8, instance="whole")
    recovering = RedisSink(settings, max_queued=8, instance="rec")
    other = RedisSink(settings, max_queued=8, instance="other")
    asyncio.run(write(whole, flagged_publication(SECOND, recovering=False)))
    asyncio.run(write(recovering, flagged_publication(SECOND, recovering=True, bump=0.5),
                      flagged_publication(2 * SECOND, recovering=True, bump=0.5)))
    asyncio.run(write(other, flagged_publication(2 * SECOND, recovering=True, bump=0.7)))
    r = redis.Redis.from_url(redis_server.url)
    assert history(r, prefix) == [(b"1000-0", b"20.01", b"whole"), (b"2000-0", b"20.51", b"rec")]
    assert (recovering.peer_writes, recovering.divergences, recovering.superseded) == (4, 0, 0)
    assert (other.peer_writes, other.divergences, other.superseded) == (4, 0, 0)  # both flagged: first stays
    assert r.hget(f"{prefix}:R01", "instance") == b"rec"  # a newer boundary, flagged: the latest value
