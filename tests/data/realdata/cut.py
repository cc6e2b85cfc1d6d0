"""Cuts the compact real-data fixtures of this folder from the shared data set (``shared/realdata``,
see its README); the tests use only what this writes, never the shared copy.

    python tests/data/realdata/cut.py [SHARED_REALDATA_DIR]    # default: ../shared/realdata beside the repo

Writes:
- ``lean_trades_20131007.csv.gz``: the trades of AIG, BAC, IBM and SPY on 2013-10-07 in two
  windows, 09:30-10:00 and 15:30-16:01 ET (the open, and the close with its auction prints;
  ~129,000 trades of the day's 388,000), merged in time order (by symbol within one
  millisecond). Per line ``ms_delta,symbol_index,price_e4``: milliseconds since the previous
  line (the first: since midnight ET), the symbol's index in the header, price x 10,000. Size,
  exchange and sale condition are dropped (the engine does not use them; no trade in these
  files is flagged suspicious). Header: ``# symbols AIG BAC IBM SPY``.
- ``lean_daily_closes.csv``: ``symbol,close_20131004,close_20131007`` from the daily bars
  (the previous close for the basket file, and the official close of the day).
- ``djia_closes.csv``: every day of ``djia_member_closes.csv``, one line each:
  ``date,divisor,djia_official_close,vendor_closes_reproduce_official,members`` where members
  is ``SYMBOL:close`` x 30 separated by spaces (the same numbers, a third of the size).
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYMBOLS = ("AIG", "BAC", "IBM", "SPY")
HOUR_MS = 3_600_000
WINDOWS_MS = ((9 * HOUR_MS + 30 * 60_000, 10 * HOUR_MS), (15 * HOUR_MS + 30 * 60_000, 16 * HOUR_MS + 60_000))


def _zip_rows(path: Path) -> list[list[str]]:
    with zipfile.ZipFile(path) as archive:
        (name,) = archive.namelist()
        return list(csv.reader(io.TextIOWrapper(archive.open(name), encoding="ascii")))


def cut_trades(source: Path, out: Path = HERE) -> None:
    trades = []
    for index, symbol in enumerate(SYMBOLS):
        for row in _zip_rows(source / "lean" / f"lean_{symbol.lower()}_20131007_trade.zip"):
            ms, price, suspicious = int(row[0]), int(row[1]), row[5]
            assert suspicious == "0", row
            if any(lo <= ms < hi for lo, hi in WINDOWS_MS):
                trades.append((ms, index, price))
    trades.sort(key=lambda t: (t[0], t[1]))  # stable: each symbol's own order is kept
    lines = [f"# symbols {' '.join(SYMBOLS)}"]
    previous = 0
    for ms, index, price in trades:
        lines.append(f"{ms - previous},{index},{price}")
        previous = ms
    data = ("\n".join(lines) + "\n").encode()
    (out / "lean_trades_20131007.csv.gz").write_bytes(gzip.compress(data, 9, mtime=0))
    with (out / "lean_daily_closes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["symbol", "close_20131004", "close_20131007"])
        for symbol in SYMBOLS:
            closes = {row[0][:8]: row[4] for row in _zip_rows(source / "lean" / f"lean_{symbol.lower()}_daily.zip")}
            writer.writerow([symbol] + [f"{int(closes[day]) / 10_000:.2f}" for day in ("20131004", "20131007")])
    print(f"{len(trades)} trades -> lean_trades_20131007.csv.gz")


def cut_djia(source: Path, out: Path = HERE) -> None:
    days: dict[str, list[dict]] = {}
    with (source / "djia" / "djia_member_closes.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            days.setdefault(row["date"], []).append(row)
    with (out / "djia_closes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["date", "divisor", "djia_official_close", "vendor_closes_reproduce_official", "members"])
        for date, rows in days.items():
            first = rows[0]
            assert all((r["divisor"], r["djia_official_close"]) == (first["divisor"], first["djia_official_close"])
                       for r in rows)
            writer.writerow([date, first["divisor"], first["djia_official_close"],
                             first["vendor_closes_reproduce_official"],
                             " ".join(f"{r['symbol']}:{r['close']}" for r in rows)])
    print(f"{len(days)} days -> djia_closes.csv")


if __name__ == "__main__":
    repo = HERE.parents[2]
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else repo.parent / "shared" / "realdata"
    cut_trades(source)
    cut_djia(source)
