"""In-process ceilings of the MQTT path, without the engine process: aiomqtt's receive loop
alone, the real ``MqttTickFeed`` + ``TickIntake`` (what the engine does per message), and an
aiomqtt publisher. Part of the end_to_end section (``end_to_end.ceilings.*``)."""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from bench.common import REPO, python_env


async def _ceilings(mosquitto, symbols_file: str, universe, duration_s: float, blast_rate: float,
                    publish_n: int) -> dict:
    """aiomqtt receive loop alone, the real feed + intake, and an aiomqtt publisher, in-process."""
    from bench.common import engine_settings
    from iopv.adapters.mqtt.client import make_client
    from iopv.adapters.mqtt.feed import MqttTickFeed
    from iopv.engine.book import PriceBook
    from iopv.engine.intake import TickIntake

    settings = engine_settings(mqtt={"url": mosquitto.url}).mqtt
    out = {}

    async def blast(rate: float) -> dict:
        command = [sys.executable, "-m", "bench.loadgen", "--port", str(mosquitto.port), "--rate", str(rate),
                   "--duration", str(duration_s), "--symbols", symbols_file, "--probe-every", "1000000000"]
        proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=python_env(), cwd=REPO)
        stdout, stderr = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {stderr.decode(errors='replace')[-2000:]}")
        return orjson.loads(stdout)

    async def sample(count, done: asyncio.Event) -> float:
        """Slope of ``count()`` while it moves (msgs/s)."""
        samples = []
        while not done.is_set():
            samples.append((time.perf_counter(), count()))
            await asyncio.sleep(0.05)
        moving = [i for i in range(1, len(samples)) if samples[i][1] > samples[i - 1][1]]
        if len(moving) < 2:
            return 0.0
        first, last = samples[moving[0] - 1], samples[moving[-1]]
        return (last[1] - first[1]) / (last[0] - first[0])

    async def idle_after(count, quiet_s: float = 0.6, limit_s: float = 15.0) -> None:
        previous, since, deadline = count(), time.monotonic(), time.monotonic() + limit_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now = count()
            if now != previous:
                previous, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return

    # 1. aiomqtt receive loop, nothing else.
    received = 0
    client = make_client(settings, "bench-ceiling-raw")
    async with client:
        await client.subscribe("ticks/#", qos=0)

        async def consume():
            nonlocal received
            async for _ in client.messages:
                received += 1

        consumer = asyncio.create_task(consume(), name="bench.ceiling.consume")
        done = asyncio.Event()
        sampler = asyncio.create_task(sample(lambda: received, done), name="bench.ceiling.sample")
        sent = await blast(blast_rate)
        await idle_after(lambda: received)
        done.set()
        out["aiomqtt_receive_msgs_per_s"] = await sampler
        out["aiomqtt_receive_generator_msgs_per_s"] = sent["achieved_msgs_per_s"]
        out["aiomqtt_receive_delivered_ratio"] = received / sent["sent"]
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    # 2. The engine's feed: MqttTickFeed decoding into a TickIntake (flush when the queue is dry).
    intake = TickIntake(PriceBook(universe))
    feed = MqttTickFeed(settings, intake, instance="bench-ceiling")
    feed_task = asyncio.create_task(feed.run(), name="bench.ceiling.feed")
    await asyncio.wait_for(feed.subscribed.wait(), 10)
    done = asyncio.Event()
    sampler = asyncio.create_task(sample(lambda: intake.messages, done), name="bench.ceiling.feed.sample")
    sent = await blast(blast_rate)
    await idle_after(lambda: intake.messages)
    done.set()
    out["feed_intake_msgs_per_s"] = await sampler
    out["feed_intake_delivered_ratio"] = intake.messages / sent["sent"]
    feed_task.cancel()
    await asyncio.gather(feed_task, return_exceptions=True)

    # 3. aiomqtt publisher, QoS 0, as fast as it goes.
    n = publish_n
    payload = b'{"symbol":"ABCD","price":12.34,"ts":1711978200000000000}'
    async with make_client(settings, "bench-ceiling-pub") as publisher:
        started = time.perf_counter()
        for _ in range(n):
            await publisher.publish("ticks/ABCD", payload, qos=0)
        out["aiomqtt_publish_msgs_per_s"] = n / (time.perf_counter() - started)
    return out


def ceilings(mosquitto, symbols_file: str, universe, *, quick: bool) -> dict:
    args = (mosquitto, symbols_file, universe, 1.0 if quick else 1.5, 20_000 if quick else 50_000,
            5_000 if quick else 30_000)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_ceilings(*args))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_ceilings(*args))
