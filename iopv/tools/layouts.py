"""Issuers' daily holdings downloads read into plain rows: iShares CSV, Invesco CSV (two
layouts), SSGA XLSX. Only reading and classifying happens here; ``iopv.tools.holdings`` turns
rows into a basket. Every problem raises ``HoldingsError`` naming the file and line.

Layouts (issue 11; the files themselves may not be redistributed, tests/data/holdings has
synthetic files in each):

- iShares: UTF-8 with BOM; a preamble (fund name; ``Fund Holdings as of,"Dec 06, 2024"``;
  ``Shares Outstanding,"957,950,000.00"``; ...; a blank line), then the header ``Ticker,Name,
  Sector,Asset Class,Market Value,Weight (%),Notional Value,Quantity,Price,...`` (older files:
  ``Shares`` for ``Quantity``), every field quoted, thousands separators, ``-`` for empty; cash,
  money-market and futures rows; a legal disclaimer after a blank line.
- Invesco: ``Fund Ticker,Security Identifier,Holding Ticker,Shares/Par Value,MarketValue,Weight,
  Name,Class of Shares,Sector,Date`` or the older ``FundTicker,SecurityNum,HoldingsTicker,Shares,
  MarketValue,Weight,Name,Sector,Date``; tickers padded with spaces, ``MM/DD/YYYY`` dates; no
  price column (price = market value / shares, to 6 decimals).
- SSGA: sheet ``holdings``: ``Fund Name:``, ``Ticker Symbol:``, ``Holdings:`` / ``As of
  14-Feb-2024``, a blank row, then ``Name,Ticker,Identifier,SEDOL,Weight,Sector,Shares Held,
  Local Currency``; a cash line; a disclaimer. No prices at all.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

#: Row kinds: a security to value (``equity``), cash in the fund currency (``cash``, including
#: money-market sweep funds, valued at their market value), a derivative the engine has no price
#: for (``future``: its market value, the day's variation margin, goes to cash and the row is reported).
EQUITY, CASH, FUTURE = "equity", "cash", "future"


class HoldingsError(ValueError):
    """A holdings file that cannot be read; the message names the file and line."""


@dataclass(slots=True)
class Row:
    """One holding line. ``shares``: quantity held; ``price``: the issuer's price or None, in
    ``currency`` (empty: the fund currency); ``market_value``: in ``value_currency`` (empty: the
    fund currency), or None; ``fx_rate``: the file's exchange rate for ``currency`` as printed
    (either convention), or None."""

    line: int
    kind: str
    symbol: str
    name: str
    shares: Decimal
    price: Decimal | None
    market_value: Decimal | None
    currency: str = ""
    asset_class: str = ""
    value_currency: str = ""
    fx_rate: Decimal | None = None


@dataclass(slots=True)
class Holdings:
    """A holdings file: fund facts from the preamble (what the layout has) and its rows."""

    path: str
    layout: str
    rows: list[Row] = field(default_factory=list)
    fund: str = ""
    name: str = ""
    as_of: str = ""
    shares_outstanding: Decimal | None = None


def number(text: str, where: str, column: str, *, empty_ok: bool = False) -> Decimal | None:
    """``"1,234.50"`` -> Decimal; ``-``, ``--`` or empty -> None when ``empty_ok``."""
    cleaned = text.strip().replace(",", "").replace("$", "")
    if cleaned in ("", "-", "--", "N/A"):
        if empty_ok:
            return None
        raise HoldingsError(f"{where}: {column}: expected a number, got {text!r}")
    if cleaned.startswith("(") and cleaned.endswith(")"):  # accounting negative
        cleaned = "-" + cleaned[1:-1]
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise HoldingsError(f"{where}: {column}: expected a number, got {text!r}") from None
    if not value.is_finite():
        raise HoldingsError(f"{where}: {column}: expected a finite number, got {text!r}")
    return value


def _date(text: str, formats: tuple[str, ...], where: str) -> str:
    for fmt in formats:
        try:
            return datetime.strptime(text.strip(), fmt).date().isoformat()
        except ValueError:
            continue
    raise HoldingsError(f"{where}: expected a date like {date(2024, 12, 6).strftime(formats[0])!r}, got {text!r}")


def _read_csv(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every record; a BOM is dropped."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            out = []
            start = 1
            for fields in reader:
                out.append((start, fields))
                start = reader.line_num + 1
            return out
    except UnicodeDecodeError as exc:
        raise HoldingsError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    except csv.Error as exc:
        raise HoldingsError(f"{path}: {exc}") from None
    except OSError as exc:
        raise HoldingsError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _blank(fields: list[str]) -> bool:
    return not any(f.strip() for f in fields)


# --- iShares -------------------------------------------------------------------------------

def read_ishares(path: Path) -> Holdings:
    records = _read_csv(path)
    out = Holdings(str(path), "ishares")
    header_at = None
    for index, (line, fields) in enumerate(records):
        if fields and fields[0].strip() == "Ticker" and "Name" in fields:
            header_at = index
            break
        where = f"{path}:{line}"
        key = fields[0].strip().rstrip(":") if fields else ""
        if index == 0 and len(fields) >= 1 and key and len([f for f in fields if f.strip()]) == 1:
            out.name = key
        elif key == "Fund Holdings as of" and len(fields) > 1:
            out.as_of = _date(fields[1], ("%b %d, %Y", "%d-%b-%Y", "%m/%d/%Y"), where)
        elif key == "Shares Outstanding" and len(fields) > 1:
            out.shares_outstanding = number(fields[1], where, "Shares Outstanding", empty_ok=True)
    if header_at is None:
        raise HoldingsError(f"{path}: no header line starting 'Ticker,Name,...' (is this an iShares holdings file?)")
    header = [h.strip() for h in records[header_at][1]]
    quantity = "Quantity" if "Quantity" in header else "Shares" if "Shares" in header else None
    missing = [c for c in ("Ticker", "Name", "Asset Class", "Market Value", "Price") if c not in header]
    if quantity is None:
        missing.append("Quantity (or Shares)")
    if missing:
        raise HoldingsError(f"{path}:{records[header_at][0]}: header lacks {', '.join(missing)}")
    col = {name: i for i, name in enumerate(header)}
    for line, fields in records[header_at + 1:]:
        if _blank(fields):
            break  # the disclaimer follows a blank line
        where = f"{path}:{line}"
        if len(fields) < len(header):
            raise HoldingsError(f"{where}: expected {len(header)} fields, got {len(fields)}")
        get = lambda name: fields[col[name]].strip()
        asset_class = get("Asset Class")
        lowered = asset_class.lower()
        kind = FUTURE if "future" in lowered else CASH if ("cash" in lowered or "money market" in lowered) else EQUITY
        ticker = get("Ticker")
        out.rows.append(Row(
            line=line, kind=kind, symbol="" if ticker in ("-", "--") else ticker, name=get("Name"),
            shares=number(get(quantity), where, quantity, empty_ok=kind != EQUITY) or Decimal(0),
            price=number(get("Price"), where, "Price", empty_ok=True),
            market_value=number(get("Market Value"), where, "Market Value", empty_ok=kind == EQUITY),
            currency=get("Market Currency") if "Market Currency" in col else "", asset_class=asset_class,
            fx_rate=number(get("FX Rate"), where, "FX Rate", empty_ok=True) if "FX Rate" in col else None))
    return out


# --- Invesco -------------------------------------------------------------------------------

_INVESCO = {  # layout -> column names: fund, ticker, shares, market value, name, date
    "current": ("Fund Ticker", "Holding Ticker", "Shares/Par Value", "MarketValue", "Name", "Date"),
    "older": ("FundTicker", "HoldingsTicker", "Shares", "MarketValue", "Name", "Date"),
}
_CASH_NAME = re.compile(r"\b(cash|u\.?s\.? dollar|dollar)\b", re.IGNORECASE)


def read_invesco(path: Path) -> Holdings:
    records = _read_csv(path)
    out = Holdings(str(path), "invesco")
    if not records:
        raise HoldingsError(f"{path}: empty file")
    header_line, header = records[0]
    header = [h.strip() for h in header]
    layout = next((columns for columns in _INVESCO.values() if all(c in header for c in columns)), None)
    if layout is None:
        raise HoldingsError(f"{path}:{header_line}: not an Invesco holdings header (expected "
                            f"{','.join(_INVESCO['current'])} or the older {','.join(_INVESCO['older'])})")
    col = {name: i for i, name in enumerate(header)}
    fund_col, ticker_col, shares_col, value_col, name_col, date_col = layout
    for line, fields in records[1:]:
        if _blank(fields):
            continue
        where = f"{path}:{line}"
        if len(fields) < len(header):
            raise HoldingsError(f"{where}: expected {len(header)} fields, got {len(fields)}")
        get = lambda name: fields[col[name]].strip()
        fund = get(fund_col)
        if out.fund and fund != out.fund:
            raise HoldingsError(f"{where}: {fund_col}: {fund!r}, but earlier rows are of {out.fund!r} "
                                "(one fund per file)")
        out.fund = fund
        if get(date_col):
            as_of = _date(get(date_col), ("%m/%d/%Y", "%Y-%m-%d"), where)
            if out.as_of and as_of != out.as_of:
                raise HoldingsError(f"{where}: {date_col}: {as_of}, but earlier rows are of {out.as_of}")
            out.as_of = as_of
        ticker, name = get(ticker_col), get(name_col)
        is_cash = (not ticker or ticker.upper() in ("CASH", "USD")) and bool(_CASH_NAME.search(name))
        shares = number(get(shares_col), where, shares_col)
        value = number(get(value_col), where, value_col)
        # market value / shares, to 6 decimals: the market value is rounded to the cent
        price = None if is_cash or shares == 0 else (value / shares).quantize(Decimal("0.000001"))
        out.rows.append(Row(line=line, kind=CASH if is_cash else EQUITY, symbol=ticker, name=name,
                            shares=shares, price=price, market_value=value,
                            asset_class=get("Sector") if "Sector" in col else ""))
    return out


# --- SSGA ----------------------------------------------------------------------------------

_SSGA_HEADER = ("Name", "Ticker", "Identifier", "SEDOL", "Weight", "Sector", "Shares Held", "Local Currency")


def read_ssga(path: Path) -> Holdings:
    try:
        import openpyxl
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except OSError as exc:
        raise HoldingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # openpyxl raises zipfile/KeyError/InvalidFileException on a non-XLSX
        raise HoldingsError(f"{path}: not an XLSX workbook ({type(exc).__name__}: {exc})") from None
    try:
        if "holdings" not in book.sheetnames:
            raise HoldingsError(f"{path}: no sheet 'holdings' (sheets: {', '.join(book.sheetnames)})")
        rows = [["" if v is None else str(v) for v in row] for row in book["holdings"].iter_rows(values_only=True)]
    finally:
        book.close()
    out = Holdings(str(path), "ssga")
    header_at = None
    for index, fields in enumerate(rows):
        key = fields[0].strip() if fields else ""
        value = fields[1].strip() if len(fields) > 1 else ""
        where = f"{path}: sheet holdings, row {index + 1}"
        if tuple(f.strip() for f in fields[:len(_SSGA_HEADER)]) == _SSGA_HEADER:
            header_at = index
            break
        if key == "Fund Name:":
            out.name = value
        elif key == "Ticker Symbol:":
            out.fund = value
        elif key == "Holdings:":
            out.as_of = _date(value.removeprefix("As of").strip(), ("%d-%b-%Y", "%b %d, %Y", "%m/%d/%Y"), where)
    if header_at is None:
        raise HoldingsError(f"{path}: sheet holdings: no header row {','.join(_SSGA_HEADER)} (is this an SSGA file?)")
    for index in range(header_at + 1, len(rows)):
        fields = rows[index] + [""] * len(_SSGA_HEADER)
        if _blank(fields):
            break  # the disclaimer follows
        where = f"{path}: sheet holdings, row {index + 1}"
        name, ticker = fields[0].strip(), fields[1].strip()
        currency = fields[7].strip()
        shares = number(fields[6], where, "Shares Held")
        is_cash = ticker in ("", "-", "--") or ticker.upper().startswith("CASH")
        out.rows.append(Row(line=index + 1, kind=CASH if is_cash else EQUITY,
                            symbol="" if is_cash else ticker, name=name, shares=shares, price=None,
                            market_value=shares if is_cash else None, currency=currency,
                            value_currency=currency if is_cash else "",
                            asset_class=fields[5].strip()))
    return out


READERS = {"ishares": read_ishares, "invesco": read_invesco, "ssga": read_ssga}
