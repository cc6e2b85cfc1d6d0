"""iShares holdings downloads: CSV (US, international and bond funds; with or without the
preamble; re-saved by Excel), ``fund.xls`` (SpreadsheetML, sheet ``Holdings`` plus the NAV
history in ``Historical``) and XLSX re-saves. One table of columns and one of asset classes.

Verified facts (shared/realdata/README.md, "holdings/"): ``Price`` and ``Market Value`` are in
the fund currency (USD) even for foreign listings; ``FX Rate`` is local currency per USD;
``Market Currency`` is the listing's currency (older files: ``Currency`` only). Bonds: ``Par
Value`` is the quantity, the price is per 100 of par and ``Market Value`` includes accrued
interest; some bond exports have no ``Price``. Futures: ``Market Value`` 0, ``Notional Value`` =
contracts x price x multiplier. Cash rows: the quantity is in the cash's own currency."""

from __future__ import annotations

from iopv.tools.layouts.common import Columns, find_header, require_header, table_rows
from iopv.tools.model import Holdings, HoldingsError, Instrument, Row, blank, empty, iso_date, number, weight
from iopv.tools.sheets import read_workbook

CONTAINERS = ("csv", "spreadsheetml", "xlsx")

COLUMNS = {
    "ticker": ("Ticker",), "name": ("Name",), "asset_class": ("Asset Class",),
    "market_value": ("Market Value",), "weight": ("Weight (%)",), "notional": ("Notional Value",),
    "quantity": ("Quantity", "Shares", "Par Value"), "price": ("Price",), "location": ("Location",),
    "exchange": ("Exchange",), "currency": ("Currency",), "fx_rate": ("FX Rate",),
    "market_currency": ("Market Currency",), "isin": ("ISIN",), "sedol": ("SEDOL",), "cusip": ("CUSIP",),
    "coupon": ("Coupon (%)",), "maturity": ("Maturity",),
}
REQUIRED = ("name", "asset_class", "market_value", "weight", "quantity")
#: The header row: these cells, in any order (bond files have no ``Ticker``).
HEADER_MARKERS = ("Name", "Asset Class")

#: ``Asset Class`` (lower case) -> instrument kind; anything else is Instrument.OTHER (kept at its market
#: value and reported, never guessed).
ASSET_CLASSES = {
    "equity": Instrument.EQUITY, "fixed income": Instrument.BOND, "cash": Instrument.CASH,
    "cash collateral and margins": Instrument.CASH, "money market": Instrument.MONEY_MARKET,
    "futures": Instrument.FUTURE, "fx": Instrument.FX_FORWARD,
}

#: Preamble lines (first cell, lower case, colon stripped) -> Holdings field.
PREAMBLE = {"fund holdings as of": "as_of", "shares outstanding": "shares_outstanding"}
STATED_COUNT = "number of securities"  # fund.xls: "Number of Securities (excluding cash and derivatives)"


def read(path) -> Holdings:
    book = read_workbook(path, CONTAINERS)
    records = book.sheet("Holdings")
    out = Holdings(str(path), "ishares", container=book.container)
    at = require_header(records, HEADER_MARKERS, str(path), "is this an iShares holdings file?")
    _preamble(records[:at], out)
    columns = Columns(records[at], COLUMNS)
    columns.require(COLUMNS, REQUIRED, "iShares")
    for record, fields in table_rows(records[at + 1:], columns, out, strict=book.container == "csv", end="end of file",
                                     blank_row="blank line"):
        if len([f for f in fields if f.strip()]) == 1 and len(fields[0]) > 200:
            out.ended = f"disclaimer at {record.where}"  # a re-save that dropped the blank line
            break
        out.rows.append(_row(record, fields, columns))
    if "Historical" in book.sheets:
        _history(book.sheets["Historical"], out)
    return out


def _preamble(records, out: Holdings) -> None:
    for record in records:
        cells = [f.strip() for f in record.fields if f.strip().strip("\xa0")]
        if not cells:
            continue
        key = cells[0].rstrip(":").lower()
        if len(cells) == 1 and not out.name:
            try:
                iso_date(cells[0], record.where)  # fund.xls starts with the date alone
            except HoldingsError:
                out.name = cells[0]
        elif key in PREAMBLE and len(cells) > 1:
            if PREAMBLE[key] == "as_of":
                out.as_of = iso_date(cells[1], record.where)
            else:
                out.shares_outstanding = number(cells[1], record.where, cells[0], empty_ok=True)
        elif key.startswith(STATED_COUNT) and len(cells) > 1:
            count = number(cells[1], record.where, cells[0], empty_ok=True)
            out.stated_count = None if count is None else int(count)
            out.stated_count_kinds = (Instrument.EQUITY, Instrument.BOND) if "excluding cash" in key else tuple()


def _row(record, fields: list[str], columns: Columns) -> Row:
    get = lambda name: columns.get(fields, name)
    where = record.where
    asset_class = get("asset_class")
    kind = ASSET_CLASSES.get(" ".join(asset_class.split()).lower(), Instrument.OTHER)
    name_of = columns.names
    market_currency = get("market_currency") or get("currency")
    w, below = weight(get("weight"), where, name_of["weight"])
    ticker = get("ticker")
    return Row(
        where=where, line=record.line, kind=kind, ticker="" if empty(ticker) else ticker, name=get("name"),
        quantity=number(get("quantity"), where, name_of["quantity"],
                        empty_ok=kind not in (Instrument.EQUITY, Instrument.BOND)),
        market_value=number(get("market_value"), where, name_of["market_value"]),
        price=number(get("price"), where, "Price", empty_ok=True) if columns.has("price") else None,
        price_currency=get("currency"), currency=market_currency,
        exchange="" if empty(get("exchange")) else get("exchange"), country=get("location"),
        isin="" if empty(get("isin")) else get("isin"), sedol="" if empty(get("sedol")) else get("sedol"),
        cusip="" if empty(get("cusip")) else get("cusip"),
        notional=number(get("notional"), where, "Notional Value", empty_ok=True) if columns.has("notional") else None,
        weight=w, weight_below=below,
        fx_rate=number(get("fx_rate"), where, "FX Rate", empty_ok=True) if columns.has("fx_rate") else None,
        asset_class=asset_class, coupon=get("coupon"), maturity="" if empty(get("maturity")) else get("maturity"))


def _history(records, out: Holdings) -> None:
    """fund.xls's ``Historical`` sheet: As Of, NAV per Share, Ex-Dividends, Shares Outstanding."""
    at = find_header(records, ("As Of", "NAV per Share"))
    if at is None:
        return
    columns = Columns(records[at], {"date": ("As Of",), "nav": ("NAV per Share",),
                                    "shares": ("Shares Outstanding",)})
    for record in records[at + 1:]:
        if blank(record.fields):
            break
        nav = number(columns.get(record.fields, "nav"), record.where, "NAV per Share", empty_ok=True)
        if nav is not None:
            shares = number(columns.get(record.fields, "shares"), record.where, "Shares Outstanding", empty_ok=True)
            out.nav_history[iso_date(columns.get(record.fields, "date"), record.where)] = (nav, shares)


def looks_like(records) -> bool:
    return find_header(records, HEADER_MARKERS) is not None
