"""The real-data fixtures of tests/data/realdata (cut from shared/realdata by its cut.py) as
baskets and tick tapes."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

DATA = Path(__file__).resolve().parents[1] / "data" / "realdata"
NEW_YORK = ZoneInfo("America/New_York")


def lean_trade_tape() -> list[str]:
    """The cut trades of 2013-10-07 as JSON tape lines ``{"symbol", "price", "ts"}``, ``ts`` in
    ns UTC, the price as its exact decimal text (4 decimals at most)."""
    midnight_ns = int(datetime(2013, 10, 7, tzinfo=NEW_YORK).timestamp()) * 1_000_000_000
    with gzip.open(DATA / "lean_trades_20131007.csv.gz", "rt", encoding="ascii") as handle:
        header = handle.readline().split()
        assert header[:2] == ["#", "symbols"], header
        symbols = header[2:]
        lines = []
        ms = 0
        for row in handle:
            delta, index, price = row.rstrip("\n").split(",")
            ms += int(delta)
            whole, frac = divmod(int(price), 10_000)
            lines.append(f'{{"symbol": "{symbols[int(index)]}", "price": {whole}.{frac:04d}, '
                         f'"ts": {midnight_ns + ms * 1_000_000}}}')
    return lines


def lean_closes() -> dict[str, tuple[str, str]]:
    """{symbol: (close of 2013-10-04, official close of 2013-10-07)} as decimal text."""
    with (DATA / "lean_daily_closes.csv").open(newline="") as handle:
        return {row["symbol"]: (row["close_20131004"], row["close_20131007"]) for row in csv.DictReader(handle)}


def djia_days() -> list[dict]:
    """Per day: date, divisor (text), official close (text), reproduces (bool), closes
    ({symbol: decimal text}), in file order."""
    with (DATA / "djia_closes.csv").open(newline="") as handle:
        return [{"date": row["date"], "divisor": row["divisor"], "official": row["djia_official_close"],
                 "reproduces": row["vendor_closes_reproduce_official"] == "yes",
                 "closes": dict(member.split(":") for member in row["members"].split())}
                for row in csv.DictReader(handle)]


def djia_basket(divisor: str, closes: dict[str, str]) -> str:
    """The DJIA as a fund: one share of each member, no cash, creation unit = the divisor."""
    return json.dumps([{"fund": "DJIA", "creation_unit": float(divisor), "currency": "USD", "cash": 0,
                        "holdings": [{"symbol": s, "shares": 1, "price": float(c)} for s, c in closes.items()]}])
