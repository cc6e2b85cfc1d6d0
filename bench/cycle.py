"""The cycle at US scale (3,500 funds): boundary -> last value published, per sink, and the
boundary clock's jitter.

Cycle latency: the real ``Engine`` with the real ``MqttSink`` and ``RedisSink`` against throwaway
servers, on uvloop as the service runs. Each measured cycle is isolated (the previous one is
fully published first, so a slow sink's backlog does not inflate the next figure): a few
thousand ticks are decoded into the intake, then ``Engine.cycle(boundary)`` runs with the
boundary stamped at its start (flush, valuation, rounding with exact near-tie resolution,
publication records and JSON, offer to sinks), and the figure is each sink's own
``last_publish_ns`` minus that stamp (MQTT: 3,500 retained QoS 1 publishes acknowledged; Redis:
3,500 HSET + 3,500 XADD, in 7 script calls with the default ``redis.write_mode``). Both sinks
share the event loop, as in the service. Redis is also measured alone in both write modes
(script, and pipeline: the alternative) in every run, MQTT alone in full mode. A 1 ms heartbeat
task records how long the loop is blocked meanwhile -- the lateness any boundary falling in
that window would suffer.

Jitter: ``BoundaryClock.lateness_ns`` (wake-up delay after each boundary) over many boundaries at
a short interval (20 ms), driven by ``Engine.run`` on the demo universe with both sinks running.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import orjson

from bench.common import Context, engine_settings, interleaved, summarize_ns
from bench.ingest import make_ticks
from iopv.adapters.mqtt.sink import MqttSink
from iopv.adapters.redis.sink import RedisSink
from iopv.engine import gcpolicy
from iopv.engine.clock import BoundaryClock
from iopv.engine.cycle import Engine
from iopv.engine.publication import build_publication
from iopv.localservers.servers import local_servers

TICKS_PER_CYCLE = 5_000
JITTER_INTERVAL_S = 0.02


def new_loop_runner():
    try:
        import uvloop
        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        return asyncio.Runner()


def make_engine(universe, mosquitto_url: str, redis_url: str, *, interval_s: float, instance: str,
                sinks: tuple[str, ...] = ("redis", "mqtt"), redis_write_mode: str | None = None,
                ) -> tuple[Engine, dict]:
    redis = {"url": redis_url, "key_prefix": f"bench-{instance}"}
    if redis_write_mode is not None:
        redis["write_mode"] = redis_write_mode
    # The watermark only delays the cut; the cycle's own figures are from the cut (20% of the
    # interval caps it for the clock-jitter run's 20 ms interval).
    settings = engine_settings(engine={"interval_s": interval_s, "instance": instance,
                                       "watermark_ms": min(50.0, interval_s * 200)},
                               mqtt={"url": mosquitto_url, "value_topic_prefix": f"bench-{instance}"},
                               redis=redis)
    made = {"redis": lambda: RedisSink(settings.redis, max_queued=64),
            "mqtt": lambda: MqttSink(settings.mqtt, instance=instance, max_queued=64)}
    chosen = {name: made[name]() for name in sinks}
    engine = Engine(universe, settings, list(chosen.values()))
    engine.warm_up()
    gcpolicy.freeze_long_lived()  # as the service does once started
    return engine, chosen


async def start_sinks(sinks: dict) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(s.run(), name=f"bench.sink.{n}") for n, s in sinks.items()]
    deadline = time.monotonic() + 10
    while not all(s.connected for s in sinks.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("sinks did not connect")
        await asyncio.sleep(0.01)
    return tasks


#: Sink tasks that did not finish within STOP_TIMEOUT_S of being cancelled (a finding, not a crash).
STUCK_ON_CANCEL: list[str] = []
STOP_TIMEOUT_S = 5.0


async def stop_tasks(tasks: list[asyncio.Task], sinks: dict | None = None) -> None:
    """Let the sinks drain (as the service does at shutdown), cancel, and wait a bounded time:
    a task that ignores its cancellation is recorded and left behind rather than hanging the run."""
    for sink in (sinks or {}).values():
        await sink.drain(2.0)
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
    STUCK_ON_CANCEL.extend(task.get_name() for task in pending)


async def isolated_cycles(universe, mosquitto_url: str, redis_url: str, *, cycles: int, instance: str,
                          sinks: tuple[str, ...], rng, redis_write_mode: str | None = None) -> dict:
    """``cycles`` cycles, each published completely before the next one starts."""
    engine, chosen = make_engine(universe, mosquitto_url, redis_url, interval_s=1.0, instance=instance, sinks=sinks,
                                 redis_write_mode=redis_write_mode)
    tasks = await start_sinks(chosen)
    symbols, prices, ts = make_ticks(universe, rng, TICKS_PER_CYCLE * (cycles + 1))
    messages = [(orjson.dumps({"symbol": s, "price": p, "ts": t}), "ticks/" + s)
                for s, p, t in zip(symbols, prices, ts)]
    stalls: list[int] = []
    measuring = False

    async def heartbeat():
        clock = time.perf_counter_ns
        while True:
            before = clock()
            await asyncio.sleep(0.001)
            if measuring:
                stalls.append(clock() - before - 1_000_000)

    beat = asyncio.create_task(heartbeat(), name="bench.cycle.heartbeat")
    per_sink: dict[str, list[int]] = {n: [] for n in chosen}
    cycle_ms: list[float] = []
    for c in range(cycles + 1):  # the first cycle is a warm-up (connections, first publish)
        for payload, topic in messages[c * TICKS_PER_CYCLE:(c + 1) * TICKS_PER_CYCLE]:
            engine.intake.decode(payload, topic)
        await asyncio.sleep(0.05)
        measuring = c > 0
        boundary = time.time_ns()
        engine.cycle(boundary)
        deadline = time.monotonic() + 60
        while any(s.last_ts_ns < boundary for s in chosen.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"cycle {c}: sinks did not publish within 60 s")
            await asyncio.sleep(0.002)
        measuring = False
        if c > 0:
            cycle_ms.append(engine.last_cycle_ms)
            for n, s in chosen.items():
                per_sink[n].append(s.last_publish_ns - boundary)
    beat.cancel()
    await stop_tasks([beat, *tasks], chosen)
    # Publication building alone (records + JSON for every fund), for the split.
    values = np.array([r["iopv"] for r in engine.last_publication.records])
    build = interleaved({"build": lambda i: build_publication(universe, 0, values)}, runs=5, warmup=1)["build"]
    return {"per_sink_ns": per_sink, "cycle_ms": cycle_ms, "stall_ns": stalls,
            "dropped": {n: s.dropped for n, s in chosen.items()},
            "publication_build_ms_p50": float(np.median(build)) / 1e6}


async def clock_jitter(universe, mosquitto_url: str, redis_url: str, *, boundaries: int) -> dict:
    """Lateness of ``boundaries`` boundaries of ``Engine.run`` at a short interval."""
    engine, chosen = make_engine(universe, mosquitto_url, redis_url, interval_s=JITTER_INTERVAL_S,
                                 instance="jitter")
    tasks = await start_sinks(chosen)
    clock = BoundaryClock(int(JITTER_INTERVAL_S * 1e9))
    lateness: list[int] = []
    stop = asyncio.Event()
    original = engine.cycle

    def cycle(boundary_ns: int):
        lateness.append(clock.lateness_ns)
        if len(lateness) >= boundaries:
            stop.set()
        return original(boundary_ns)

    engine.cycle = cycle  # instance attribute: Engine.run calls self.cycle
    await engine.run(clock, stop)
    await stop_tasks(tasks, chosen)
    return {"lateness_ns": lateness[1:], "missed": clock.missed}  # the first follows set-up


async def clock_only_jitter(boundaries: int) -> list[int]:
    """Lateness of a bare ``BoundaryClock`` on an otherwise idle loop: the OS/VM share of jitter."""
    clock = BoundaryClock(int(JITTER_INTERVAL_S * 1e9))
    stop = asyncio.Event()
    lateness: list[int] = []
    async for _ in clock.boundaries(stop):
        lateness.append(clock.lateness_ns)
        if len(lateness) > boundaries:
            stop.set()
    return lateness[1:]


async def _run(ctx: Context) -> dict:
    STUCK_ON_CANCEL.clear()
    us = ctx.universe("us")
    demo = ctx.universe("demo")
    cycles = 2 if ctx.quick else 8
    with local_servers() as (mosquitto, redis_server):
        both = await isolated_cycles(us, mosquitto.url, redis_server.url, cycles=cycles, instance="cycle-us",
                                     sinks=("redis", "mqtt"), rng=ctx.rng(31))
        alone = {}
        # (name, sink, redis.write_mode): Redis alone in both modes every run (a few seconds).
        runs = [("redis", "redis", None), ("redis_pipeline", "redis", "pipeline")]
        if not ctx.quick:
            runs.insert(0, ("mqtt", "mqtt", None))
        for name, sink, mode in runs:
            alone[name] = await isolated_cycles(us, mosquitto.url, redis_server.url, cycles=3,
                                                instance=f"cycle-us-{name}", sinks=(sink,), rng=ctx.rng(32),
                                                redis_write_mode=mode)
        jitter = await clock_jitter(demo, mosquitto.url, redis_server.url,
                                    boundaries=100 if ctx.quick else 400)
        bare = await clock_only_jitter(50 if ctx.quick else 200)
    out: dict = {"funds": len(us.funds), "holdings": us.holdings, "cycles": cycles,
                 "ticks_per_cycle": TICKS_PER_CYCLE}
    last = [max(a, b) for a, b in zip(both["per_sink_ns"]["mqtt"], both["per_sink_ns"]["redis"])]
    s = summarize_ns(last)
    out["boundary_to_last_publish_ms_p50"] = s["ms_p50"]
    out["boundary_to_last_publish_ms_p99"] = s["ms_p99"]
    out["boundary_to_last_publish_ms_max"] = s["ms_max"]
    for sink in ("mqtt", "redis"):
        s = summarize_ns(both["per_sink_ns"][sink])
        out[f"{sink}_boundary_to_last_publish_ms_p50"] = s["ms_p50"]
        out[f"{sink}_boundary_to_last_publish_ms_p99"] = s["ms_p99"]
    for name, sink in (("mqtt", "mqtt"), ("redis", "redis"), ("redis_pipeline", "redis")):
        if name in alone:
            s = summarize_ns(alone[name]["per_sink_ns"][sink])
            out[f"{name}_alone_boundary_to_last_publish_ms_p50"] = s["ms_p50"]
            out[f"{name}_alone_boundary_to_last_publish_ms_p99"] = s["ms_p99"]
    cyc = np.asarray(both["cycle_ms"])
    out["engine_cycle_ms_p50"] = float(np.percentile(cyc, 50))
    out["engine_cycle_ms_p99"] = float(np.percentile(cyc, 99))
    out["publication_build_ms_p50"] = both["publication_build_ms_p50"]
    out["sink_dropped"] = both["dropped"]
    stall = summarize_ns(both["stall_ns"])
    out["loop_stall_while_publishing_ms_p99"] = stall.get("ms_p99")
    out["loop_stall_while_publishing_ms_max"] = stall.get("ms_max")
    late = summarize_ns(jitter["lateness_ns"])
    out["jitter_interval_s"] = JITTER_INTERVAL_S
    out["jitter_boundaries"] = len(jitter["lateness_ns"])
    out["jitter_ms_p50"] = late["ms_p50"]
    out["jitter_ms_p99"] = late["ms_p99"]
    out["jitter_ms_max"] = late["ms_max"]
    out["jitter_missed_boundaries"] = jitter["missed"]
    bare_late = summarize_ns(bare)
    out["jitter_clock_only_ms_p50"] = bare_late["ms_p50"]
    out["jitter_clock_only_ms_p99"] = bare_late["ms_p99"]
    out["sink_tasks_stuck_on_cancel"] = list(STUCK_ON_CANCEL)
    return {"cycle": out}


def run(ctx: Context) -> dict:
    with new_loop_runner() as runner:
        return runner.run(_run(ctx))
