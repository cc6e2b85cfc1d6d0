"""Active-active replicas on a real Redis Cluster (3 masters + 3 replicas, 2 s node timeout):
idempotent history, the latest-value hash, divergence counting, a master SIGKILLed mid-run,
NOSCRIPT on a promoted replica and a timed-out connection. The smoke subset of the cluster
tests (tests/cluster holds the multi-process fault test, ``make test-cluster``)."""

from __future__ import annotations

import asyncio
import signal
import time

import orjson
import pytest
import redis

from iopv.adapters.redis.cluster import ClusterRedisSink
from iopv.config import RedisSettings
from iopv.engine.codec import encode_record
from iopv.engine.publication import Publication
from iopv.localservers.clusters import redis_cluster

FUNDS = 60
SECOND = 1_000_000_000


def publication(ts_ns: int, funds: int = FUNDS, bump: dict[int, float] | None = None) -> Publication:
    names = tuple(f"F{i:03d}" for i in range(funds))
    records = [{"fund": f, "ts": ts_ns, "iopv": round(10 + i / 1e3 + ts_ns / 1e12 + (bump or {}).get(i, 0), 4)}
               for i, f in enumerate(names)]
    return Publication(ts_ns, names, records, [encode_record(r) for r in records])


@pytest.fixture(scope="module")
def cluster():
    with redis_cluster() as fixture:
        yield fixture


def reader(cluster) -> redis.RedisCluster:
    node = cluster.alive()[0]
    return redis.RedisCluster(host="127.0.0.1", port=node.port, socket_timeout=5)


async def run_sinks(sinks, until, timeout_s=30.0):
    tasks = [asyncio.create_task(s.run()) for s in sinks]
    deadline = time.monotonic() + timeout_s
    try:
        while not until() and time.monotonic() < deadline:
            for t in tasks:
                if t.done():
                    t.result()
            await asyncio.sleep(0.02)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_two_replicas_write_each_boundary_once_and_count_the_peer_and_a_divergence(cluster):
    settings = RedisSettings(url=cluster.url, cluster=True, key_prefix="dup")
    a, b = (ClusterRedisSink(settings, max_queued=50) for _ in range(2))
    boundaries = [k * SECOND for k in range(1, 6)]

    async def main():
        for ts in boundaries:
            a.offer(publication(ts))
        await run_sinks([a], lambda: a.last_ts_ns == boundaries[-1])
        for ts in boundaries:  # b is late for every boundary; at the third it disagrees on F007
            b.offer(publication(ts, bump={7: 0.0001} if ts == 3 * SECOND else None))
        await run_sinks([b], lambda: b.last_ts_ns == boundaries[-1])
        # An older boundary never replaces the hash's newer one.
        c = ClusterRedisSink(settings, max_queued=5)
        c.offer(publication(2 * SECOND))
        await run_sinks([c], lambda: c.last_ts_ns == 2 * SECOND)
        return c

    c = asyncio.run(main())
    assert (a.peer_writes, a.divergences) == (0, 0)
    assert b.peer_writes == FUNDS * len(boundaries)
    assert b.divergences == 1 and b.last_divergence[:2] == ("F007", 3 * SECOND)
    assert c.peer_writes == FUNDS and c.divergences == 0
    r = reader(cluster)
    for i in range(FUNDS):
        entries = r.xrange(f"dup:F{i:03d}:history")
        assert [e[0] for e in entries] == [f"{ts // 1_000_000}-0".encode() for ts in boundaries]
        assert r.hget(f"dup:F{i:03d}", "ts") == str(boundaries[-1]).encode()
    # The history keeps the first writer's value.
    assert r.xrange("dup:F007:history")[2][1][b"iopv"] == str(publication(3 * SECOND).records[7]["iopv"]).encode()


def test_a_sigkilled_master_leaves_no_gap_and_no_duplicate_in_any_history(cluster):
    settings = RedisSettings(url=cluster.url, cluster=True, key_prefix="kill", reconnect_min_s=0.1,
                             reconnect_max_s=0.5)
    a, b = (ClusterRedisSink(settings, max_queued=100) for _ in range(2))
    n = 30
    victim = cluster.master_of("kill:F000:history")

    async def main():
        for k in range(1, n + 1):
            if k == 8:
                victim.kill()
                killed_at = time.monotonic()
            for sink in (a, b):
                sink.offer(publication(k * SECOND))
            await asyncio.sleep(0.1)
            if k == 7:
                await run_sinks([a, b], lambda: a.last_ts_ns == b.last_ts_ns == 7 * SECOND)
        first_write = time.monotonic()
        await run_sinks([a, b], lambda: a.last_ts_ns == b.last_ts_ns == n * SECOND, timeout_s=40)
        return killed_at, first_write

    asyncio.run(main())
    assert a.last_ts_ns == b.last_ts_ns == n * SECOND
    # The failover was ridden through by the reconnect loop, not avoided.
    assert a.node_failures + b.node_failures + a.reconnects + b.reconnects >= 1
    cluster.wait_ok()
    r = reader(cluster)
    for i in range(FUNDS):
        ids = [e[0] for e in r.xrange(f"kill:F{i:03d}:history")]
        assert ids == [f"{k * 1000}-0".encode() for k in range(1, n + 1)], f"F{i:03d}"
        assert r.hget(f"kill:F{i:03d}", "ts") == str(n * SECOND).encode()
    assert a.divergences == b.divergences == 0
    # Every boundary was written by one replica and refused for the other (a reply lost with the
    # killed master can make a replica meet its own entry: still one entry, still no divergence).
    assert a.peer_writes + b.peer_writes >= FUNDS * n
    victim.start()  # back as a replica of the promoted one, for the next test
    cluster.wait_ok()


def test_noscript_on_a_node_is_answered_with_eval(cluster):
    settings = RedisSettings(url=cluster.url, cluster=True, key_prefix="ns")
    sink = ClusterRedisSink(settings, max_queued=10)

    async def main():
        async with sink.connect() as client:
            await sink.send(client, [publication(SECOND)])
            for node in cluster.masters():  # as a promoted replica or a restarted node has no script
                redis.Redis(port=node.port).script_flush()
            await sink.send(client, [publication(2 * SECOND)])

    asyncio.run(main())
    r = reader(cluster)
    assert [e[0] for e in r.xrange("ns:F010:history")] == [b"1000-0", b"2000-0"]
    assert sink.peer_writes == 0 and sink.node_failures == 0


def test_a_node_that_times_out_is_retried_on_a_fresh_connection(cluster, monkeypatch):
    """A master stopped (SIGSTOP) past the socket timeout, less than the cluster's node timeout:
    the attempt times out, its connection (with replies still due) is dropped, and the retry
    writes the rest; replies are never read against the wrong commands (the counts stay exact)."""
    from iopv.adapters.redis import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "SOCKET_TIMEOUT_S", 0.5)
    settings = RedisSettings(url=cluster.url, cluster=True, key_prefix="to", reconnect_min_s=0.1,
                             reconnect_max_s=0.3)
    sink = ClusterRedisSink(settings, max_queued=10)
    stopped = cluster.master_of("to:F000:history")

    async def main():
        task = asyncio.create_task(sink.run())
        try:
            sink.offer(publication(SECOND))
            await asyncio.wait_for(_until(lambda: sink.last_ts_ns == SECOND), 20)
            stopped.process.send_signal(signal.SIGSTOP)
            try:
                sink.offer(publication(2 * SECOND))
                await asyncio.sleep(1.2)
            finally:
                stopped.process.send_signal(signal.SIGCONT)
            await asyncio.wait_for(_until(lambda: sink.last_ts_ns == 2 * SECOND), 20)
            sink.offer(publication(3 * SECOND))
            await asyncio.wait_for(_until(lambda: sink.last_ts_ns == 3 * SECOND), 20)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert sink.node_failures >= 1  # the stopped node timed out at least once
    r = reader(cluster)
    for i in range(FUNDS):
        assert [e[0] for e in r.xrange(f"to:F{i:03d}:history")] == [b"1000-0", b"2000-0", b"3000-0"]
    # Writes the stopped node ran before the timeout were re-sent and met their own entries;
    # nothing else was refused, and no reply was taken for another command's (no divergence).
    assert sink.divergences == 0 and sink.late_writes == 0
    assert sink.peer_writes <= FUNDS


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.02)


def test_iopv_history_and_other_readers_use_the_cluster_seed_nodes(cluster, capsys, monkeypatch):
    """Readers use the seed-node list too: ``iopv history --redis-url <seeds>`` in cluster mode."""
    from iopv.adapters.redis.cluster import reader_client
    from iopv.cli import main

    settings = RedisSettings(url=cluster.url, cluster=True, key_prefix="rd")
    sink = ClusterRedisSink(settings, max_queued=10)
    boundaries = [k * SECOND for k in range(1, 4)]

    async def write_and_read_one_key():
        for ts in boundaries:
            sink.offer(publication(ts, funds=3))
        await run_sinks([sink], lambda: sink.last_ts_ns == boundaries[-1])
        client = reader_client(settings)
        try:
            return await client.hget("rd:F002", "ts")
        finally:
            await client.aclose()

    assert asyncio.run(write_and_read_one_key()) == str(boundaries[-1]).encode()
    monkeypatch.setenv("IOPV_REDIS_KEY_PREFIX", "rd")
    code = main(["history", "F002", "--redis-url", cluster.url, "--redis-cluster", "--format", "json",
                 "--from", str(2 * SECOND // 1_000_000)])
    out, err = capsys.readouterr()
    assert code == 0, err
    records = [orjson.loads(line) for line in out.splitlines()]
    assert [(r["ts"], r["iopv"]) for r in records] == [
        (ts, publication(ts, funds=3).records[2]["iopv"]) for ts in boundaries[1:]]
