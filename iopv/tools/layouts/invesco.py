"""Invesco holdings CSV, both layouts: the current ``Fund Ticker,Security Identifier,Holding
Ticker,Shares/Par Value,MarketValue,Weight,Name,Class of Shares,Sector,Date`` and the older
``FundTicker,SecurityNum,HoldingsTicker,Shares,MarketValue,Weight,Name,Sector,Date``. Tickers
are padded with spaces, dates ``MM/DD/YYYY``; no price column (close = market value / shares),
no shares outstanding (``--shares-outstanding``). US listings only: tickers stay bare."""

from __future__ import annotations

import re

from iopv.tools.layouts.common import Columns, fields_of, find_header
from iopv.tools.model import Holdings, HoldingsError, Instrument, Row, blank, empty, iso_date, number, weight
from iopv.tools.sheets import read_workbook

CONTAINERS = ("csv",)
COLUMNS = {
    "fund": ("Fund Ticker", "FundTicker"), "ticker": ("Holding Ticker", "HoldingsTicker"),
    "identifier": ("Security Identifier", "SecurityNum"), "quantity": ("Shares/Par Value", "Shares"),
    "market_value": ("MarketValue",), "weight": ("Weight",), "name": ("Name",), "sector": ("Sector",),
    "date": ("Date",),
}
REQUIRED = ("fund", "ticker", "quantity", "market_value", "weight", "name")
HEADER_MARKERS = ("MarketValue", "Weight", "Name")
_CASH_NAME = re.compile(r"\b(cash|u\.?s\.? dollar|dollar)\b", re.IGNORECASE)


def read(path) -> Holdings:
    book = read_workbook(path, CONTAINERS)
    records = book.sheet()
    out = Holdings(str(path), "invesco", container=book.container)
    at = find_header(records, HEADER_MARKERS, limit=5)
    if at is None:
        raise HoldingsError(f"{path}: no Invesco header (expected {','.join(c[0] for c in COLUMNS.values())} "
                            f"or the older layout) (is this an Invesco holdings file?)")
    columns = Columns(records[at], COLUMNS)
    columns.require(COLUMNS, REQUIRED, "Invesco")
    out.ended = "end of file"
    for record in records[at + 1:]:
        if blank(record.fields):
            continue
        fields = fields_of(record, columns, strict=True)
        get = lambda name: columns.get(fields, name)
        where = record.where
        fund = get("fund")
        if out.fund and fund != out.fund:
            raise HoldingsError(f"{where}: {columns.names['fund']}: {fund!r}, but earlier rows are of "
                                f"{out.fund!r} (one fund per file)")
        out.fund = fund
        if get("date"):
            as_of = iso_date(get("date"), where)
            if out.as_of and as_of != out.as_of:
                raise HoldingsError(f"{where}: Date: {as_of}, but earlier rows are of {out.as_of}")
            out.as_of = as_of
        ticker, name = get("ticker"), get("name")
        is_cash = (empty(ticker) or ticker.upper() in ("CASH", "USD")) and bool(_CASH_NAME.search(name))
        w, below = weight(get("weight"), where, "Weight")
        identifier = get("identifier")
        out.rows.append(Row(
            where=where, line=record.line, kind=Instrument.CASH if is_cash else Instrument.EQUITY,
            ticker="" if is_cash or empty(ticker) else ticker, name=name,
            quantity=number(get("quantity"), where, columns.names["quantity"]),
            market_value=number(get("market_value"), where, "MarketValue"),
            cusip="" if empty(identifier) else identifier, weight=w, weight_below=below,
            asset_class=get("sector")))
    return out


def looks_like(records) -> bool:
    return find_header(records, HEADER_MARKERS, limit=5) is not None and \
        find_header(records, ("Date",), limit=5) is not None
