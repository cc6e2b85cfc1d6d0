"""Command line: ``iopv run | replay | demo | check-pcf | shards``.

Errors in configuration or basket files end the command with exit code 2 and a message that
names the file, field or key -- never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any

import numpy as np

from iopv.config import ConfigError, Settings, load_settings
from iopv.core.constants import REASONS, REJECTIONS, counts_by_reason
from iopv.core.universe import PcfError, load_pcf

log = logging.getLogger("iopv")


def run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (it is a dependency everywhere but Windows)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def _settings(args: argparse.Namespace, **engine: Any) -> Settings:
    return load_settings(
        args.config,
        overrides={
            "engine": {"pcf_path": getattr(args, "pcf", None), "interval_s": getattr(args, "interval", None),
                       "shard": getattr(args, "shard", None), "instance": getattr(args, "instance", None),
                       **engine},
            "mqtt": {"url": getattr(args, "mqtt_url", None)},
            "redis": {"url": getattr(args, "redis_url", None),
                      "cluster": True if getattr(args, "redis_cluster", False) else None},
            "ops": {"http_port": getattr(args, "http_port", None),
                    "restore_state": False if getattr(args, "clean_start", False) else None},
        },
    )


def cmd_run(args: argparse.Namespace) -> int:
    from iopv.service.live import Service

    settings = _settings(args)
    return run_async(Service(settings).run())


def cmd_demo(args: argparse.Namespace) -> int:
    from iopv.demo.run import demo

    settings = _settings(args, calendar="always")  # the simulator ticks around the clock
    return demo(settings,
                own_mqtt=not (args.mqtt_url or os.environ.get("IOPV_MQTT_URL")),
                own_redis=not (args.redis_url or os.environ.get("IOPV_REDIS_URL")),
                ticks_per_s=args.ticks_per_s, seed=args.seed, duration_s=args.duration,
                runner=run_async)


def cmd_replay(args: argparse.Namespace) -> int:
    from iopv.engine.publication import build_publication, static_fields
    from iopv.engine.replay import replay_frames
    from iopv.engine.tape import read_tape

    settings = _settings(args, decimals=args.decimals, calendar=args.calendar)
    universe = load_pcf(settings.engine.pcf_path)
    e = settings.engine
    static = static_fields(universe)
    try:
        tape = read_tape(args.tape, universe.book_index())
    except OSError as exc:
        raise ConfigError(f"{args.tape}: cannot read tape: {exc.strerror or exc}") from None
    out = sys.stdout.buffer
    boundaries = 0
    for boundary, frame in replay_frames(
            universe, tape, interval_ns=e.interval_ns, decimals=e.decimals, calendar=e.calendar,
            stale_after_ns=round(e.stale_after_s * 1e9), min_coverage=e.min_coverage,
            halted_weight=e.halted_weight, spike_pct=e.spike_pct,
            spike_confirm_ticks=e.spike_confirm_ticks):
        out.write(b"\n".join(build_publication(universe, boundary, frame, static=static).payloads) + b"\n")
        boundaries += 1
    out.flush()
    counts = np.bincount(tape.code, minlength=len(REASONS))
    print(f"replay: {len(tape)} ticks, {boundaries} boundaries x {len(universe.funds)} funds; "
          f"outcomes {counts_by_reason(counts)}", file=sys.stderr)
    if args.rejects:
        reasons = Counter()
        for line, code in zip(tape.line.tolist(), tape.code.tolist()):
            if code in REJECTIONS:
                reasons[code] += 1
                if reasons[code] <= 20:
                    print(f"{args.tape}:{line}: rejected: {REASONS[code]}", file=sys.stderr)
    return 0


def cmd_check_pcf(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            universe = load_pcf(path)
        except PcfError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        print(f"{path}: ok: {len(universe.funds)} funds, {universe.holdings} holdings, "
              f"{len(universe.symbols)} symbols")
    return status


def cmd_shards(args: argparse.Namespace) -> int:
    from iopv.core.shard import Shard, load_shard, tick_symbols

    if args.count < 1:
        raise ConfigError(f"--count: expected >= 1, got {args.count}")
    whole = load_pcf(args.file)
    print(f"{args.file}: {len(whole.funds)} funds, {whole.holdings} holdings, {len(whole.symbols)} symbols; "
          f"shard = crc32(ticker) mod {args.count}")
    for k in range(args.count):
        universe = load_shard(args.file, Shard(k, args.count))
        print(f"shard {k}/{args.count}: {len(universe.funds)} funds, {universe.holdings} holdings, "
              f"{len(tick_symbols(universe))} tick symbols")
        if args.funds:
            print("  " + " ".join(universe.funds))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iopv", description="Streaming IOPV (iNAV) engine for ETFs.")
    parser.add_argument("--log-level", default=None,
                        help="logging level (default INFO; WARNING for demo, which draws a table)")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, *, urls: bool) -> None:
        p.add_argument("--config", help="TOML settings file (default config/default.toml or $IOPV_CONFIG)")
        p.add_argument("--pcf", help="basket file (engine.pcf_path)")
        p.add_argument("--interval", type=float, help="seconds between boundaries (engine.interval_s)")
        if urls:
            p.add_argument("--mqtt-url", help="mqtt://[user:pass@]host[:port][,URL...] (mqtt.url; a list: "
                           "a cluster's nodes, tried in turn)")
            p.add_argument("--redis-url", help="redis://[user:pass@]host[:port][/db] (redis.url); with "
                           "--redis-cluster the seed nodes redis://host:port[,host:port...]")
            p.add_argument("--redis-cluster", action="store_true", help="Redis Cluster mode (redis.cluster)")
            p.add_argument("--shard", help="K/N: value the funds with crc32(ticker) mod N == K (engine.shard)")
            p.add_argument("--instance", help="this instance's name, distinct per replica (engine.instance)")
            p.add_argument("--http-port", type=int, help="serve /healthz /readyz /metrics on this port "
                           "(ops.http_port; 0 = off)")
            p.add_argument("--clean-start", action="store_true",
                           help="start from previous closes, not the saved session state (ops.restore_state)")

    run = commands.add_parser("run", help="the service: ticks over MQTT in, values to Redis and MQTT out")
    common(run, urls=True)
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="the engine on the demo universe with simulated live ticks")
    common(demo, urls=True)
    demo.add_argument("--ticks-per-s", type=float, default=500.0, help="simulated tick rate (default 500)")
    demo.add_argument("--seed", type=int, default=2004, help="simulator seed (default 2004)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.set_defaults(handler=cmd_demo)

    replay = commands.add_parser("replay", help="value a recorded tape offline; JSON lines to stdout")
    common(replay, urls=False)
    replay.add_argument("--tape", required=True, help="JSON-lines tick tape")
    replay.add_argument("--decimals", type=int, default=None, help="published decimals (engine.decimals)")
    replay.add_argument("--rejects", action="store_true", help="list rejected tape lines on stderr")
    replay.add_argument("--calendar", default=None,
                        help="sessions: 'always' or an exchange code such as XNYS (engine.calendar)")
    replay.set_defaults(handler=cmd_replay)

    shards = commands.add_parser("shards", help="which funds each of N shards owns, with holdings and symbols")
    shards.add_argument("file", help="basket file")
    shards.add_argument("--count", type=int, required=True, help="number of shards N")
    shards.add_argument("--funds", action="store_true", help="also list each shard's funds")
    shards.set_defaults(handler=cmd_shards)

    check = commands.add_parser("check-pcf", help="validate basket files and report every problem")
    check.add_argument("files", nargs="+")
    check.set_defaults(handler=cmd_check_pcf)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level or ("WARNING" if args.command == "demo" else "INFO")
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except (ConfigError, PcfError) as exc:
        print(f"iopv {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
