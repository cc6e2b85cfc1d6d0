"""Where the time goes: cProfile of the paths that miss their targets (a diagnostic, not part of
``python -m bench``; cProfile's own overhead inflates per-call costs, so read it for shares).

``python -m bench.hotspots [intake|feed|valuer|sinks|replay ...]`` (default: all), on the seeded
US-scale universe (the feed on the demo universe) against throwaway servers where needed.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import time

from bench.common import Context, engine_settings

TOP = 14


def _print(profile: cProfile.Profile, title: str) -> None:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(TOP)
    text = out.getvalue()
    start = text.find("   ncalls")
    print(f"\n== {title} ==")
    print(text[start:].rstrip() if start >= 0 else text)


def intake(ctx: Context) -> None:
    from bench.ingest import encode_batched, encode_single, make_ticks
    from iopv.engine.book import PriceBook
    from iopv.engine.intake import TickIntake
    universe = ctx.universe("us")
    book = PriceBook(universe)
    ticks = make_ticks(universe, ctx.rng(21), 100_000)
    for name, messages in (("batched 1000", encode_batched(*ticks, 1000)), ("single", encode_single(*ticks))):
        intake = TickIntake(book)
        profile = cProfile.Profile()
        profile.enable()
        for i, (payload, topic) in enumerate(messages, 1):
            intake.decode(payload, topic)
            if i % 1000 == 0 or len(payload) > 1000:
                intake.flush()
        intake.flush()
        profile.disable()
        _print(profile, f"TickIntake.decode + flush, 100,000 ticks, {name}")


def valuer(ctx: Context) -> None:
    from bench.valuation import price_books
    from iopv.engine.book import PriceBook
    from iopv.engine.valuer import Valuer
    universe = ctx.universe("us")
    books = price_books(universe, ctx.rng(11))
    book = PriceBook(universe)
    v = Valuer(universe, 4)
    v.frame(book)
    profile = cProfile.Profile()
    profile.enable()
    for prices in books:
        book.prices[:] = prices
        v.frame(book)
    profile.disable()
    _print(profile, f"Valuer.frame x {len(books)} at US scale ({v.exact_resolved} exact resolutions)")


def replay(ctx: Context) -> None:
    from bench.replay import INTERVAL_NS, make_tape
    from iopv.engine.replay import replay as run_replay
    from iopv.engine.tape import decode_tape
    universe = ctx.universe("us")
    data = make_tape(universe, ctx.rng(41), 100_000, 300.0)
    profile = cProfile.Profile()
    profile.enable()
    tape = decode_tape(data, universe.book_index())
    for _ in run_replay(universe, tape, interval_ns=INTERVAL_NS):
        pass
    profile.disable()
    _print(profile, "decode_tape + replay, 100,000 ticks at US scale")


def feed(ctx: Context) -> None:
    from bench.common import REPO, python_env
    from bench.end_to_end import write_inputs
    from iopv.adapters.mqtt.feed import MqttTickFeed
    from iopv.engine.book import PriceBook
    from iopv.engine.intake import TickIntake
    from iopv.localservers.servers import local_servers
    _, symbols_file, _ = write_inputs(ctx)
    with local_servers(redis=False) as (mosquitto, _):
        settings = engine_settings(mqtt={"url": mosquitto.url}).mqtt
        intake = TickIntake(PriceBook(ctx.universe("demo")))
        feed_ = MqttTickFeed(settings, intake, instance="hotspots")

        async def main() -> float:
            task = asyncio.create_task(feed_.run(), name="hotspots.feed")
            await asyncio.wait_for(feed_.subscribed.wait(), 10)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.loadgen", "--port", str(mosquitto.port), "--rate", "20000",
                "--duration", "1.5", "--symbols", symbols_file, "--probe-every", "1000000000",
                stdout=subprocess.DEVNULL, env=python_env(), cwd=REPO)
            started = time.perf_counter()
            last, since = 0, time.monotonic()
            while time.monotonic() - since < 0.8:
                await asyncio.sleep(0.05)
                if intake.messages != last:
                    last, since = intake.messages, time.monotonic()
            await proc.wait()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return time.perf_counter() - started

        profile = cProfile.Profile()
        profile.enable()
        asyncio.run(main())
        profile.disable()
        _print(profile, f"MqttTickFeed + TickIntake receiving {intake.messages:,} single-tick messages (aiomqtt/paho)")


def sinks(ctx: Context) -> None:
    from bench.cycle import isolated_cycles
    from iopv.localservers.servers import local_servers
    universe = ctx.universe("us")
    with local_servers() as (mosquitto, redis_server):
        for sink in ("mqtt", "redis"):
            profile = cProfile.Profile()

            async def main():
                profile.enable()
                await isolated_cycles(universe, mosquitto.url, redis_server.url, cycles=1,
                                      instance=f"hotspots-{sink}", sinks=(sink,), rng=ctx.rng(31))
                profile.disable()

            asyncio.run(main())
            _print(profile, f"{sink} sink: 2 cycles at US scale ({len(universe.funds):,} funds)")


PROFILES = {"intake": intake, "valuer": valuer, "replay": replay, "feed": feed, "sinks": sinks}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(PROFILES)
    ctx = Context(quick=True)
    try:
        for name in names:
            PROFILES[name](ctx)
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
