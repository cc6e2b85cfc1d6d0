"""Command line: ``iopv run | replay | demo | tail | check-pcf | shards | history | import-holdings | explain``.

Errors in configuration or basket files end the command with exit code 2 and a message that
names the file, field or key -- never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
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
    if args.journal:
        return cmd_replay_journal(args)
    if not args.tape:
        raise ConfigError("replay: give --tape FILE (with --pcf) or --journal FILE")
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


def _journal_events(path: str):
    from iopv.adapters.journal import JournalReader, events

    reader = JournalReader(path)
    return reader, events(reader)


def cmd_replay_journal(args: argparse.Namespace) -> int:
    """Exit 0: every boundary reproduced; 3: the journal is damaged or incomplete (what is whole
    was replayed); 4: a boundary differs from what the live engine published."""
    from iopv.adapters.journal import JournalError
    from iopv.engine.journal_replay import JournalReplay, JournalReplayError

    reader, stream = _journal_events(args.journal)
    replay = JournalReplay(stream)
    out = sys.stdout.buffer
    problem = None
    try:
        for boundary in replay:
            if boundary.publication is not None:
                out.write(b"\n".join(boundary.publication.payloads) + b"\n")
    except (JournalError, JournalReplayError) as exc:
        problem = str(exc)
    out.flush()
    stats = replay.stats
    print(f"replay: {args.journal}: {stats.ticks} tick messages, {stats.boundaries} boundaries, "
          f"{stats.matched} identical to the published digest, {stats.mismatched} different; "
          f"{stats.sessions} session(s), {stats.reloads} basket reload(s), {stats.restores} restart restore(s); "
          f"{'clean stop' if stats.clean_end else 'no clean stop recorded'}", file=sys.stderr)
    status = 0
    flag = f"{args.journal}.incomplete"
    if os.path.exists(flag):
        with open(flag, encoding="utf-8", errors="replace") as handle:
            print(f"iopv replay: {flag}: the day is flagged incomplete:\n{handle.read().rstrip()}", file=sys.stderr)
        status = 3
    if stats.count_mismatches:
        print(f"iopv replay: {args.journal}: {stats.count_mismatches} boundary marker(s) count tick messages the "
              "journal does not hold (records missing)", file=sys.stderr)
        status = 3
    if reader.damage is not None:
        print(f"iopv replay: {reader.damage}", file=sys.stderr)
        status = 3
    if problem:
        print(f"iopv replay: {args.journal}: {problem}", file=sys.stderr)
        status = 3
    if stats.dropped or reader.dropped:
        print(f"iopv replay: {args.journal}: incomplete: {max(stats.dropped, reader.dropped)} tick message(s) "
              "were dropped by the live writer; boundaries after the first drop may differ", file=sys.stderr)
        status = 3
    if stats.mismatched:
        print(f"iopv replay: {stats.mismatched} boundary(ies) differ from the live publication, the first at "
              f"ts={stats.first_mismatch}", file=sys.stderr)
        status = 4 if status == 0 else status
    return status


def parse_time(text: str, *, tz: str | None, day: str | None) -> int:
    """ns since the epoch from an int (ns), an ISO date-time (naive: in ``tz``, default UTC) or a
    bare time of day (on ``day``, YYYY-MM-DD)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    if text.isdigit():
        return int(text)
    zone = ZoneInfo(tz) if tz else dt.UTC
    try:
        if "T" not in text and " " not in text and len(text) <= 15:
            if day is None:
                raise ValueError("a bare time needs a day: give --journal FILE or a full date-time")
            text = f"{day}T{text}"
        stamp = dt.datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError as exc:
        raise ConfigError(f"--at: expected nanoseconds, YYYY-MM-DDTHH:MM:SS[+HH:MM] or HH:MM:SS: {exc}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=zone)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (stamp - epoch) // dt.timedelta(microseconds=1) * 1000


def cmd_explain(args: argparse.Namespace) -> int:
    import re

    import orjson

    from iopv.adapters.journal import JournalError
    from iopv.engine.explain import explain, to_json, to_text
    from iopv.engine.journal_replay import JournalReplay, JournalReplayError

    path = args.journal
    day = None
    if path:
        match = re.search(r"(\d{4}-\d{2}-\d{2})\.iopvj$", path)
        day = match.group(1) if match else None
    at_ns = parse_time(args.at, tz=args.tz, day=day)
    if not path:
        from iopv.adapters.journal.writer import journal_path

        settings = _settings(args)
        if not settings.ops.journal_dir:
            raise ConfigError("explain: give --journal FILE, or set ops.journal_dir in the configuration")
        path = str(journal_path(settings.ops.journal_dir, settings.engine.instance, at_ns))
    reader, stream = _journal_events(path)
    found = None
    try:
        for boundary in JournalReplay(stream):
            if boundary.boundary_ns > at_ns:
                break
            if boundary.publication is None or args.fund not in boundary.publication.funds:
                continue
            found = explain(boundary.engine, args.fund, boundary.publication)
            found["journal_digest_matches"] = boundary.matches
    except (JournalError, JournalReplayError) as exc:
        print(f"iopv explain: {path}: {exc}", file=sys.stderr)
    if reader.damage is not None:
        print(f"iopv explain: {reader.damage}", file=sys.stderr)
    if found is None:
        print(f"iopv explain: {path}: no published boundary of {args.fund} at or before {args.at}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_json(found), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(to_text(found))
        if not found["journal_digest_matches"]:
            print("WARNING: this boundary's replay differs from the digest the live engine recorded")
    return 0 if found["equal"] and found["journal_digest_matches"] else 4


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


def cmd_tail(args: argparse.Namespace) -> int:
    from iopv.demo.tail import Tail

    settings = load_settings(args.config, overrides={"engine": {"interval_s": args.interval},
                                                     "mqtt": {"url": args.mqtt_url}})
    universe = load_pcf(args.pcf) if args.pcf else None
    tail = Tail(settings, args.funds, realtime=args.realtime, as_json=args.json, universe=universe)
    with contextlib.suppress(KeyboardInterrupt):
        return run_async(tail.run(count=args.count, duration_s=args.duration))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    import csv

    import orjson
    import redis.exceptions

    from iopv.adapters.redis.client import close_client
    from iopv.adapters.redis.cluster import reader_client
    from iopv.adapters.redis.history import UnknownFund, parse_time_ns, read_history
    from iopv.config import redact_url

    settings = _settings(args)
    try:
        from_ns = None if args.from_time is None else parse_time_ns(args.from_time)
        to_ns = None if args.to_time is None else parse_time_ns(args.to_time)
    except ValueError as exc:
        raise ConfigError(f"--from/--to: {exc}") from None
    if from_ns is not None and to_ns is not None and from_ns > to_ns:
        raise ConfigError(f"--from {args.from_time} is after --to {args.to_time}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: expected a number >= 1, got {args.limit}")

    async def fetch() -> list[dict[str, Any]]:
        client = reader_client(settings.redis, socket_timeout=10, socket_connect_timeout=5)
        try:
            return await read_history(client, settings.redis.key_prefix, args.fund, from_ns=from_ns, to_ns=to_ns,
                                      limit=args.limit)
        finally:
            await close_client(client)

    try:
        records = run_async(fetch())
    except (UnknownFund, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    except (redis.exceptions.RedisError, OSError) as exc:
        print(f"iopv history: Redis at {redact_url(settings.redis.url)}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    out = sys.stdout
    if args.format == "json":
        for record in records:
            out.write(orjson.dumps(record).decode() + "\n")
    else:
        columns = dict.fromkeys(("fund", "ts", "time"))
        for record in records:
            if not columns.keys() >= record.keys():
                columns.update(dict.fromkeys(record))
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for record in records:
            record["time"] = _iso_utc(record["ts"])
            writer.writerow(["" if (value := record.get(name)) is None
                             else orjson.dumps(value).decode() if type(value) is list or type(value) is dict else value
                             for name in columns])
    out.flush()
    print(f"history: {len(records)} value(s) of {args.fund}", file=sys.stderr)
    return 0


def cmd_import_holdings(args: argparse.Namespace) -> int:
    from decimal import Decimal, InvalidOperation
    from pathlib import Path

    import orjson

    from iopv.core.universe import build_universe
    from iopv.tools.holdings import UnpricedRows, import_holdings, read_prices
    from iopv.tools.layouts import HoldingsError

    try:
        unit = None if args.creation_unit is None else Decimal(args.creation_unit.replace(",", ""))
    except InvalidOperation:
        raise ConfigError(f"--creation-unit: expected a number, got {args.creation_unit!r}") from None
    fx = {}
    for item in args.fx or ():
        ccy, _, text = item.partition("=")
        ccy = ccy.strip().upper()
        try:
            rate = Decimal(text)
        except InvalidOperation:
            rate = None
        if len(ccy) != 3 or not ccy.isalpha() or rate is None or not (rate.is_finite() and rate > 0):
            raise ConfigError(f"--fx: expected CCY=RATE ({args.currency} per unit of CCY, > 0), got {item!r}")
        fx[ccy] = rate
    out = Path(args.out)
    report = Path(args.report) if args.report else out.with_name(out.stem + ".report.json")

    def write(path: Path, document: Any) -> None:
        try:
            path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None

    try:
        prices = read_prices(args.prices) if args.prices else None
        result = import_holdings(args.file, args.format, creation_unit=unit, prices=prices,
                                 allow_unpriced=args.allow_unpriced, fund=args.fund, currency=args.currency,
                                 fx=fx)
    except UnpricedRows as exc:
        write(report, exc.result.report())  # the rows to fix, in full; no basket is written
        raise ConfigError(f"{exc}\nreport: {report}; no basket written") from None
    except HoldingsError as exc:
        raise ConfigError(str(exc)) from None
    build_universe(result.document, source=args.out)  # what check-pcf and the engine will load
    write(out, result.document)
    write(report, result.report())
    print(f"{result.summary()}\nwrote {out} and {report}", file=sys.stderr)
    return 0


def _iso_utc(ts_ns: int) -> str:
    """``ts`` (ns) as ISO-8601 UTC to the millisecond."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1_000_000:03d}Z"


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
            p.add_argument("--http-port", type=int, help="web server (board, /api, /healthz /readyz /metrics) "
                           "on this port (ops.http_port; 0 = off; the demo then picks a free port)")
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
    replay.add_argument("--tape", help="JSON-lines tick tape (with --pcf)")
    replay.add_argument("--journal", help="an audit journal day file: reproduce what the live engine published "
                        "(docs/audit.md); needs no --pcf or --tape")
    replay.add_argument("--decimals", type=int, default=None, help="published decimals (engine.decimals)")
    replay.add_argument("--rejects", action="store_true", help="list rejected tape lines on stderr")
    replay.add_argument("--calendar", default=None,
                        help="sessions: 'always' or an exchange code such as XNYS (engine.calendar)")
    replay.set_defaults(handler=cmd_replay)

    explain = commands.add_parser("explain", help="one fund's value at a boundary, holding by holding, "
                                  "from the audit journal")
    explain.add_argument("fund")
    explain.add_argument("--at", required=True, help="time: the boundary at or before it is explained "
                         "(ns, YYYY-MM-DDTHH:MM:SS[+HH:MM], or HH:MM:SS on the journal's day)")
    explain.add_argument("--journal", help="journal day file (default: ops.journal_dir, the instance and the day)")
    explain.add_argument("--tz", help="time zone of a time without offset (default UTC), e.g. America/New_York")
    explain.add_argument("--json", action="store_true", help="JSON for machines")
    explain.add_argument("--config", help="TOML settings file (for ops.journal_dir and engine.instance)")
    explain.set_defaults(handler=cmd_explain)

    tail = commands.add_parser("tail", help="live table of the published values (any subscriber); --json: raw records")
    tail.add_argument("funds", nargs="*", metavar="FUND", help="funds to show (default: every fund)")
    tail.add_argument("--mqtt-url", help="broker, mqtt://[user:pass@]host[:port] (mqtt.url)")
    tail.add_argument("--realtime", action="store_true",
                      help="also follow the real-time values (realtime.topic_prefix)")
    tail.add_argument("--json", action="store_true", help="print the records as received, one per line")
    tail.add_argument("--config", help="TOML settings file (topic prefixes, interval, decimals)")
    tail.add_argument("--pcf", help="basket file: fund names, and the previous closes for the change column")
    tail.add_argument("--interval", type=float, help="the engine's interval, for the age rule (engine.interval_s)")
    tail.add_argument("--count", type=int, help="stop after this many records")
    tail.add_argument("--duration", type=float, help="stop after this many seconds")
    tail.set_defaults(handler=cmd_tail)

    shards = commands.add_parser("shards", help="which funds each of N shards owns, with holdings and symbols")
    shards.add_argument("file", help="basket file")
    shards.add_argument("--count", type=int, required=True, help="number of shards N")
    shards.add_argument("--funds", action="store_true", help="also list each shard's funds")
    shards.set_defaults(handler=cmd_shards)

    check = commands.add_parser("check-pcf", help="validate basket files and report every problem")
    check.add_argument("files", nargs="+")
    check.set_defaults(handler=cmd_check_pcf)

    history = commands.add_parser("history", help="a fund's published values from the Redis history, by time")
    history.add_argument("fund", help="fund ticker")
    history.add_argument("--config", help="TOML settings file (default config/default.toml or $IOPV_CONFIG)")
    history.add_argument("--redis-url", help="redis://[user:pass@]host[:port][/db] (redis.url); with "
                         "--redis-cluster the seed nodes redis://host:port[,host:port...]")
    history.add_argument("--redis-cluster", action="store_true", help="Redis Cluster mode (redis.cluster)")
    history.add_argument("--from", dest="from_time", metavar="T",
                         help="first boundary: ISO-8601 (no offset = UTC) or epoch ms (default: the oldest)")
    history.add_argument("--to", dest="to_time", metavar="T",
                         help="last boundary, inclusive, same forms (default: the newest)")
    history.add_argument("--format", choices=("csv", "json"), default="csv",
                         help="csv (a header line, a 'time' column in UTC) or json (one record per line)")
    history.add_argument("--limit", type=int, default=None, help="at most this many values (the oldest first)")
    history.set_defaults(handler=cmd_history)

    holdings = commands.add_parser("import-holdings", help="an issuer's holdings file -> a basket file")
    holdings.add_argument("file", help="the issuer's holdings download (CSV, or XLSX for ssga)")
    holdings.add_argument("--format", required=True, choices=("ishares", "invesco", "ssga"), help="the file's layout")
    holdings.add_argument("--out", required=True, help="basket file to write (JSON, README 'Basket files')")
    holdings.add_argument("--creation-unit", help="shares the holdings are for (default: the file's shares "
                          "outstanding; required for invesco and ssga)")
    holdings.add_argument("--prices", help="CSV of symbol,close: previous closes (needed for ssga; "
                          "wins over the file's)")
    holdings.add_argument("--allow-unpriced", action="store_true",
                          help="leave rows that cannot be priced out of the basket (listed in the report) "
                          "instead of failing")
    holdings.add_argument("--fund", help="fund ticker (default: from the file)")
    holdings.add_argument("--currency", default="USD", help="fund currency (default USD)")
    holdings.add_argument("--fx", action="append", metavar="CCY=RATE",
                          help="fund currency per unit of CCY (repeatable); default: the file's FX Rate (ishares)")
    holdings.add_argument("--report", help="JSON report of rows not in the basket or put in cash "
                          "(default: OUT with .report.json)")
    holdings.set_defaults(handler=cmd_import_holdings)
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
