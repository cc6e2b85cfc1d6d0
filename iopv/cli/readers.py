"""The commands of the people who read the values or prepare baskets: ``tail``, ``history`` and
``import-holdings``."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

from iopv.cli.common import run_async, settings_from
from iopv.config import ConfigError, load_settings
from iopv.core.universe import load_pcf


def cmd_tail(args: argparse.Namespace) -> int:
    from iopv.cli.tail import Tail

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

    settings = settings_from(args)
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
            if args.summary:
                return await _summaries(client, settings.redis.key_prefix, args.fund, from_ns, to_ns, args.limit)
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
    print(f"history: {len(records)} {'daily summarie(s)' if args.summary else 'value(s)'} of {args.fund}",
          file=sys.stderr)
    return 0


def cmd_import_holdings(args: argparse.Namespace) -> int:
    from decimal import Decimal, InvalidOperation
    from pathlib import Path

    import orjson

    from iopv.core.universe import build_universe
    from iopv.tools.holdings import UnpricedRows, import_holdings, read_prices
    from iopv.tools.model import HoldingsError
    from iopv.tools.symbols import load_symbol_map

    def count(flag: str, text: str | None) -> Decimal | None:
        if text is None:
            return None
        try:
            value = Decimal(text.replace(",", ""))
        except InvalidOperation:
            value = None
        if value is None or not (value.is_finite() and value > 0):
            raise ConfigError(f"{flag}: expected a number > 0, got {text!r}")
        return value

    unit = count("--creation-unit", args.creation_unit)
    shares_outstanding = count("--shares-outstanding", args.shares_outstanding)
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
        symbols = load_symbol_map(args.symbol_map)
        result = import_holdings(args.file, args.format, shares_outstanding=shares_outstanding, creation_unit=unit,
                                 prices=prices, allow_unpriced=args.allow_unpriced, fund=args.fund,
                                 currency=args.currency, fx=fx, symbols=symbols, foreign_cash=args.foreign_cash)
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


async def _summaries(client, prefix: str, fund: str, from_ns, to_ns, limit) -> list[dict[str, Any]]:
    """A fund's daily summaries (``iopv.adapters.redis.events``); UnknownFund when it has none."""
    from iopv.adapters.redis.events import read_summaries
    from iopv.adapters.redis.history import FUND_NAME, UnknownFund
    from iopv.core.names import summary_key

    if not FUND_NAME.fullmatch(fund):
        raise ValueError(f"fund {fund!r}: expected letters, digits, '.', '_' or '-'")
    if not await client.exists(summary_key(prefix, fund)):
        raise UnknownFund(f"fund {fund}: no daily summary in Redis (no key {summary_key(prefix, fund)})")
    records = await read_summaries(client, prefix, fund, from_ns=from_ns, to_ns=to_ns)
    return records[:limit] if limit is not None else records


def _iso_utc(ts_ns: int) -> str:
    """``ts`` (ns) as ISO-8601 UTC to the millisecond."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1_000_000:03d}Z"
