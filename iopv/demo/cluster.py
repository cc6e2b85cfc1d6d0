"""``make cluster-demo`` (``python -m iopv.demo.cluster``): the engine beyond one machine, on
loopback. Starts a Redis Cluster of 3 masters + 3 replicas and a 3-node NATS cluster (MQTT +
JetStream), 2 shards x 2 active-active replicas of ``iopv run`` (each replica on its own first
broker node), and the random-walk tick simulator; prints every fund's latest value from Redis at
every boundary with the replica that wrote it, and each replica's peer-write and divergence
counts. Ctrl-C (or ``--duration``) stops everything, servers and their files included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from iopv.config import DEFAULT_CONFIG_PATH, load_settings
from iopv.core.shard import shard_of
from iopv.core.universe import load_pcf
from iopv.demo.simulator import TickSimulator, publish_ticks
from iopv.localservers.clusters import nats_cluster, redis_cluster
from iopv.localservers.servers import free_port

SHARDS, REPLICAS = 2, 2


def _metric(port: int, name: str) -> str:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return "-"
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return str(int(float(line.split()[1])))
    return "-"


async def _show(redis_url: str, funds: list[str], engines: dict, interval_s: float, stop: asyncio.Event) -> None:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode

    hosts = [part.rpartition("/")[2] for part in redis_url.split(",")]
    client = aioredis.RedisCluster(startup_nodes=[ClusterNode(h.split(":")[0], int(h.split(":")[1])) for h in hosts])
    try:
        while not stop.is_set():
            await asyncio.sleep(interval_s)
            rows = []
            for fund in funds:
                try:
                    fields = await client.hgetall(f"iopv:{fund}")
                except Exception as exc:  # noqa: BLE001 - a failover in progress: show it, go on
                    rows.append(f"  {fund:<6} shard {shard_of(fund, SHARDS)}  (unavailable: {type(exc).__name__})")
                    continue
                value = fields.get(b"iopv", b"-").decode()
                ts = int(fields.get(b"ts", b"0") or 0) // 1_000_000_000
                who = fields.get(b"instance", b"-").decode()
                rows.append(f"  {fund:<6} shard {shard_of(fund, SHARDS)}  {value:>10}  "
                            f"{time.strftime('%H:%M:%S', time.gmtime(ts))}  written by {who}")
            status = "  ".join(f"{name}: {'up' if e['process'].poll() is None else 'DOWN'} "
                               f"peer {_metric(e['http'], 'iopv_redis_peer_writes')} "
                               f"div {_metric(e['http'], 'iopv_replica_divergences')}"
                               for name, e in engines.items())
            print(f"\n{time.strftime('%H:%M:%S')} UTC  {status}\n" + "\n".join(rows), flush=True)
    finally:
        await client.aclose()


async def _main(args) -> int:
    settings = load_settings(DEFAULT_CONFIG_PATH, environ={})
    pcf = args.pcf or settings.engine.pcf_path
    universe = load_pcf(pcf)
    with redis_cluster() as rc, nats_cluster() as nc:
        print(f"redis cluster {rc.url}\nnats cluster  {nc.url}", flush=True)
        logs = Path(tempfile.mkdtemp(prefix="iopv-cluster-demo-"))
        env = {**os.environ, "IOPV_ENGINE_CALENDAR": "always"}
        engines: dict = {}
        urls = [node.url for node in nc.nodes]
        for k in range(SHARDS):
            for r in range(REPLICAS):
                name = f"s{k}-{'ab'[r]}"
                order = urls[(k * REPLICAS + r) % 3:] + urls[:(k * REPLICAS + r) % 3]
                http = free_port()
                log = open(logs / f"{name}.log", "wb")
                process = subprocess.Popen(
                    [sys.executable, "-m", "iopv", "run", "--pcf", str(pcf), "--interval", str(args.interval),
                     "--shard", f"{k}/{SHARDS}", "--instance", name, "--mqtt-url", ",".join(order),
                     "--redis-cluster", "--redis-url", rc.url, "--http-port", str(http)],
                    env=env, stdout=log, stderr=log, start_new_session=True)
                log.close()
                engines[name] = {"process": process, "http": http}
        print(f"engines: {', '.join(engines)} (logs in {logs}, removed at exit)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        n = len(universe.symbols)
        simulator = TickSimulator(list(universe.symbols), universe.initial_prices[:n].copy(), seed=2004,
                                  ticks_per_s=args.ticks_per_s)
        feeder = asyncio.create_task(publish_ticks(simulator, hostname="127.0.0.1", port=nc.nodes[2].port,
                                                   topic_prefix="ticks", stop=stop))
        try:
            await _show(rc.url, list(universe.funds), engines, args.interval, stop)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(feeder, 2.0)
            for e in engines.values():
                e["process"].terminate()
            for e in engines.values():
                try:
                    e["process"].wait(8)
                except subprocess.TimeoutExpired:
                    e["process"].kill()
                    e["process"].wait()
            shutil.rmtree(logs, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iopv.demo.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between boundaries (default 2)")
    parser.add_argument("--ticks-per-s", type=float, default=500.0, help="simulated tick rate (default 500)")
    parser.add_argument("--pcf", help="basket file (default: the demo universe)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
