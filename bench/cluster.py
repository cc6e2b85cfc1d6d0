"""Beyond one machine (issue 10): the Redis Cluster sink at US scale, a Redis master failover, and
one US-scale cycle of values through NATS's MQTT listener.

- ``redis_cluster_boundary_to_last_write_ms_{p50,p99}``: the real ``Engine`` at US scale (3,500
  funds) with ``ClusterRedisSink`` alone on a throwaway 3 masters + 3 replicas cluster; as
  bench/cycle.py measures the single node: each cycle isolated, boundary stamped at its start,
  figure = the sink's ``last_publish_ns`` minus that stamp (7,000 one-key script calls grouped by
  node, plus one ``WAIT 1`` per node). The same run measures a second replica writing the same
  boundaries (every history entry refused: ``replica_boundary_to_last_write_ms_p50``).
- ``failover_*``: two replica sinks write a 200-fund publication every 100 ms; the master of one
  fund's history is SIGKILLed; ``failover_first_write_s`` is the time from the kill to the first
  publication written whole after it (every node, the promoted replica included), and
  ``failover_longest_history_gap_boundaries`` the longest run of missing boundaries in any fund's
  history afterwards (must be 0).
- ``nats_cycle_ms_qos{0,1}``: one US-scale publication through ``MqttSink`` to a node of a 3-node
  NATS cluster (retained; QoS 1 acknowledged by JetStream's store, QoS 0 every byte written),
  median of a few, with Mosquitto's QoS 1 on the same publication for comparison.

- ``shards``: aggregate sustained single-tick intake of 2 shards against 1, same run: ``iopv run``
  processes (``--shard 0/1``, then ``0/2`` and ``1/2`` side by side) fed over Mosquitto by
  ``bench.loadgen`` (open loop, single-tick messages over the demo universe's symbols); each
  shard subscribes only to its symbols' topics. Per configuration: the offered rate, each
  shard's absorbed rate (slope of its logged tick counts over the window) and delivered ratio
  (received after draining / published on its topics), and their sum. On a 2-core box the load
  generator and the broker share the cores with the engines: the figure is a floor.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from bench.common import Context, engine_settings, summarize_ns
from bench.cycle import new_loop_runner
from iopv.adapters.mqtt.sink import MqttSink
from iopv.adapters.redis.cluster import ClusterRedisSink
from iopv.engine import gcpolicy
from iopv.engine.codec import encode_record
from iopv.engine.cycle import Engine
from iopv.engine.publication import Publication
from iopv.localservers.clusters import nats_cluster, redis_cluster
from iopv.localservers.servers import local_servers

SECOND = 1_000_000_000


async def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {what}")
        await asyncio.sleep(0.002)


async def cluster_cycles(universe, url: str, cycles: int) -> dict:
    settings = engine_settings(engine={"interval_s": 1.0, "instance": "bench-cluster"},
                               redis={"url": url, "cluster": True, "key_prefix": "bench-cl"})
    first, second = (ClusterRedisSink(settings.redis, max_queued=64) for _ in range(2))
    engine = Engine(universe, settings, [first])
    engine.warm_up()
    gcpolicy.freeze_long_lived()
    tasks = [asyncio.create_task(s.run()) for s in (first, second)]
    try:
        await _wait(lambda: first.connected and second.connected, 20, "cluster sinks connected")
        own, peer = [], []
        for c in range(cycles + 1):
            await asyncio.sleep(0.05)
            boundary = (time.time_ns() // 1_000_000) * 1_000_000  # one ms-exact boundary per cycle
            engine.cycle(boundary)
            await _wait(lambda: first.last_ts_ns == boundary, 60, "cluster cycle written")
            written = first.last_publish_ns
            second.offer(engine.last_publication)  # a replica late for the same boundary
            await _wait(lambda: second.last_ts_ns == boundary, 60, "replica cycle written")
            if c:
                own.append(written - boundary)
                peer.append(second.last_publish_ns - boundary)  # offered right after the first wrote
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    s, p = summarize_ns(own), summarize_ns(peer)
    return {"redis_cluster_boundary_to_last_write_ms_p50": s["ms_p50"],
            "redis_cluster_boundary_to_last_write_ms_p99": s["ms_p99"],
            "replica_boundary_to_last_write_ms_p50": p["ms_p50"],
            "replica_peer_writes": second.peer_writes, "replica_divergences": second.divergences,
            "cycles": cycles}


def publication(ts_ns: int, funds: int) -> Publication:
    names = tuple(f"B{i:04d}" for i in range(funds))
    records = [{"fund": f, "ts": ts_ns, "iopv": round(10 + i / 1e4, 4)} for i, f in enumerate(names)]
    return Publication(ts_ns, names, records, [encode_record(r) for r in records])


async def failover(rc, funds: int = 200, boundaries: int = 60) -> dict:
    settings = engine_settings(redis={"url": rc.url, "cluster": True, "key_prefix": "bench-fo",
                                      "reconnect_min_s": 0.05, "reconnect_max_s": 0.5})
    sinks = [ClusterRedisSink(settings.redis, max_queued=1000) for _ in range(2)]
    tasks = [asyncio.create_task(s.run()) for s in sinks]
    victim = rc.master_of("bench-fo:B0000:history")
    killed_at = first_write = None
    base = (time.time_ns() // SECOND) * SECOND
    try:
        for k in range(1, boundaries + 1):
            for sink in sinks:
                sink.offer(publication(base + k * SECOND, funds))
            if k == 10:
                await asyncio.to_thread(victim.kill)
                killed_at, kill_k = time.monotonic(), k
            if killed_at and first_write is None and any(s.last_ts_ns >= base + (kill_k + 1) * SECOND for s in sinks):
                first_write = time.monotonic() - killed_at
            await asyncio.sleep(0.1)
        await _wait(lambda: all(s.last_ts_ns == base + boundaries * SECOND for s in sinks), 60, "failover flushed")
        if first_write is None:
            first_write = time.monotonic() - killed_at
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    import redis
    r = redis.RedisCluster(host="127.0.0.1", port=rc.alive()[0].port)
    longest = 0
    for i in range(funds):
        ids = [int(e[0].split(b"-")[0]) for e in r.xrange(f"bench-fo:B{i:04d}:history")]
        expected = [(base + k * SECOND) // 1_000_000 for k in range(1, boundaries + 1)]
        missing = sorted(set(expected) - set(ids))
        run = best = 0
        for ms in expected:
            run = run + 1 if ms in missing else 0
            best = max(best, run)
        longest = max(longest, best)
    victim.start()
    return {"failover_first_write_s": first_write, "failover_longest_history_gap_boundaries": longest,
            "failover_node_failures": sum(s.node_failures + s.reconnects for s in sinks)}


async def mqtt_cycle(url: str, funds: int, qos: int, runs: int) -> float:
    settings = engine_settings(mqtt={"url": url, "value_qos": qos, "value_topic_prefix": f"bench-n{qos}"})
    sink = MqttSink(settings.mqtt, instance=f"bench-nats-{qos}", max_queued=4)
    task = asyncio.create_task(sink.run())
    times = []
    try:
        await _wait(lambda: sink.connected, 30, "mqtt connected")
        for k in range(runs + 1):
            pub = publication(time.time_ns(), funds)
            started = time.perf_counter_ns()
            sink.offer(pub)
            await _wait(lambda: sink.last_ts_ns == pub.ts_ns, 60, "mqtt cycle published")
            if k:
                times.append(time.perf_counter_ns() - started)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return float(np.median(times)) / 1e6


def shard_intake(ctx: Context, rate: float, duration_s: float) -> dict:
    """Aggregate single-tick intake of 1 shard, then of 2 shards side by side (same load)."""
    from bench.end_to_end import EngineProcess, run_loadgen, write_inputs
    from iopv.core.shard import Shard, load_shard, tick_symbols

    pcf, symbols_file, symbols = write_inputs(ctx)
    out: dict = {"offered_msgs_per_s": rate, "window_s": duration_s}
    with local_servers() as (mosquitto, redis_server):
        for label, shards in (("one_shard", ["0/1"]), ("two_shards", ["0/2", "1/2"])):
            engines = []
            for shard in shards:
                engine = EngineProcess(pcf, mosquitto.url, redis_server.url, 0.25)
                engine.command += ["--shard", shard, "--instance", f"bench-shard-{shard.replace('/', 'of')}"]
                engines.append(engine)
                engine.start()
            try:
                for engine in engines:
                    engine.wait_ready()
                time.sleep(0.5)
                before = [engine.total() for engine in engines]
                sent = run_loadgen(mosquitto.port, symbols_file, rate, duration_s, 1, seed=ctx.seed)
                time.sleep(2.0)  # drain
                rows = []
                for engine, shard, start in zip(engines, shards, before):
                    index, count = (int(x) for x in shard.split("/"))
                    mine = set(tick_symbols(load_shard(pcf, Shard(index, count))))
                    share = sum(1 for s in symbols if s in mine) / len(symbols)
                    window = [(b, total) for b, _, _, total in engine.cycles
                              if sent["t0_ns"] + 500_000_000 <= b <= sent["end_ns"]]
                    absorbed = ((window[-1][1] - window[0][1]) / ((window[-1][0] - window[0][0]) / 1e9)
                                if len(window) >= 2 else 0.0)
                    # Symbols are drawn uniformly: the shard's expected count, within about 1%.
                    expected = sent["sent"] * share
                    rows.append({"shard": shard, "topic_share": share, "absorbed_msgs_per_s": absorbed,
                                 "delivered_ratio": (engine.total() - start) / max(1.0, expected)})
                out[label] = {"achieved_offered_msgs_per_s": sent["achieved_msgs_per_s"], "shards": rows,
                              "absorbed_msgs_per_s": sum(r["absorbed_msgs_per_s"] for r in rows)}
            finally:
                for engine in engines:
                    engine.stop()
    return out


async def _run(ctx: Context) -> dict:
    us = ctx.universe("us")
    out: dict = {"funds": len(us.funds)}
    with redis_cluster() as rc:
        out.update(await cluster_cycles(us, rc.url, cycles=3 if ctx.quick else 10))
        out.update(await failover(rc, boundaries=30 if ctx.quick else 60))
    funds = len(us.funds)
    runs = 2 if ctx.quick else 5
    with nats_cluster() as nc:
        url = nc.nodes[0].url
        out["nats_cycle_ms_qos1"] = await mqtt_cycle(url, funds, 1, runs)
        out["nats_cycle_ms_qos0"] = await mqtt_cycle(url, funds, 0, runs)
    with local_servers(redis=False) as (mosquitto, _):
        out["mosquitto_cycle_ms_qos1"] = await mqtt_cycle(mosquitto.url, funds, 1, runs)
    out["shards"] = await asyncio.to_thread(shard_intake, ctx, 60_000 if ctx.quick else 100_000,
                                            2.0 if ctx.quick else 5.0)
    return {"cluster": out}


def run(ctx: Context) -> dict:
    with new_loop_runner() as runner:
        return runner.run(_run(ctx))
