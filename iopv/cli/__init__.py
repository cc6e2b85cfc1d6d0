"""Command line: ``iopv run | replay | demo | tail | check-pcf | shards | history |
import-holdings | explain``.

Errors in configuration or basket files end the command with exit code 2 and a message that
names the file, field or key -- never a traceback. The commands live by concept in
``iopv.cli.engine`` (run, demo, replay, explain, check-pcf, shards) and ``iopv.cli.readers``
(tail, history, import-holdings); ``tail`` is ``iopv tail``'s subscriber, ``display`` the terminal
table it and the demo draw, ``common`` the settings from flags, logging and the asyncio runner;
this module holds the parser and ``main``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from iopv.cli.common import configure_logging
from iopv.cli.engine import (
    cmd_check_pcf,
    cmd_demo,
    cmd_explain,
    cmd_replay,
    cmd_run,
    cmd_shards,
)
from iopv.cli.readers import cmd_history, cmd_import_holdings, cmd_tail
from iopv.config import ConfigError
from iopv.core.universe import PcfError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iopv", description="Streaming IOPV (iNAV) engine for ETFs.")
    parser.add_argument("--log-level", default=None,
                        help="logging level (default INFO; WARNING for demo, which draws a table)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines (default), or JSON lines with the same fields for log shippers: "
                        "time, level, logger, message, exc_info")
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
    history.add_argument("--summary", action="store_true",
                         help="the fund's daily summaries instead (first/high/low/last value, boundaries published "
                         "and flagged; one per session, --from/--to on the close)")
    history.set_defaults(handler=cmd_history)

    holdings = commands.add_parser("import-holdings", help="an issuer's holdings file -> a basket file "
                                   "(docs/importer.md)")
    holdings.add_argument("file", help="the issuer's holdings download (CSV, XLSX, or iShares fund.xls)")
    holdings.add_argument("--format", required=True, choices=("ishares", "invesco", "ssga", "vanguard"),
                          help="the file's layout")
    holdings.add_argument("--out", required=True, help="basket file to write (JSON, README 'Basket files')")
    holdings.add_argument("--shares-outstanding", metavar="N", help="the fund's shares outstanding on the file's "
                          "date (default: the file's preamble; required when the file has none)")
    holdings.add_argument("--creation-unit", metavar="N", help="scale the whole fund's holdings and cash to N "
                          "shares (holdings x N / shares outstanding): the PCF form (default: the whole fund)")
    holdings.add_argument("--prices", help="CSV of symbol,close: previous closes (needed for ssga; "
                          "wins over the file's)")
    holdings.add_argument("--allow-unpriced", action="store_true",
                          help="leave out rows that cannot be priced (reported with their share of the fund) "
                          "instead of failing; still fails above 1%% of the fund")
    holdings.add_argument("--fund", help="fund ticker (default: from the file)")
    holdings.add_argument("--currency", default="USD", help="fund currency (default USD)")
    holdings.add_argument("--fx", action="append", metavar="CCY=RATE",
                          help="fund currency per unit of CCY (repeatable); default: from the file")
    holdings.add_argument("--symbol-map", metavar="TOML", help="exchange names -> symbol suffixes and futures "
                          "multipliers over the defaults (docs/importer.md, 'Symbols')")
    holdings.add_argument("--foreign-cash", choices=("fx", "static"), default="fx",
                          help="fx: foreign cash is a CCY.CASH line that moves with its rate (default); "
                          "static: its value at the file's rate goes to cash")
    holdings.add_argument("--report", help="JSON report of the mappings, static and left-out rows and checks "
                          "(default: OUT with .report.json)")
    holdings.set_defaults(handler=cmd_import_holdings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level or ("WARNING" if args.command == "demo" else "INFO")
    configure_logging(level, args.log_format)
    try:
        return args.handler(args)
    except (ConfigError, PcfError) as exc:
        print(f"iopv {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
