"""SSGA (SPDR) daily holdings XLSX, sheet ``holdings``: ``Fund Name:``, ``Ticker Symbol:``,
``Holdings: As of 14-Feb-2024``, then ``Name,Ticker,Identifier,SEDOL,Weight,Sector,Shares
Held,Local Currency``; a blank row and the disclaimer. No prices and no market values: closes
come from ``--prices``. Cash and money-market lines have no ticker and their amount in
``Shares Held`` (in ``Local Currency``); a futures line (``XAE ENERGY SEP24``, ``XAEU24``) holds
its exposure in index units (contracts x multiplier) in ``Shares Held``."""

from __future__ import annotations

import re

from iopv.tools.layouts.common import Columns, find_header, require_header, table_rows
from iopv.tools.model import Holdings, Instrument, Row, empty, iso_date, number, weight
from iopv.tools.sheets import read_workbook

CONTAINERS = ("xlsx",)
COLUMNS = {
    "name": ("Name",), "ticker": ("Ticker",), "identifier": ("Identifier",), "sedol": ("SEDOL",),
    "weight": ("Weight",), "sector": ("Sector",), "quantity": ("Shares Held",), "currency": ("Local Currency",),
}
REQUIRED = ("name", "ticker", "weight", "quantity", "currency")
HEADER_MARKERS = ("Name", "Ticker", "Shares Held")
PREAMBLE = {"fund name": "name", "ticker symbol": "fund", "holdings": "as_of"}
_CASH_NAME = re.compile(r"\b(dollar|cash)\b", re.IGNORECASE)
#: A futures line: the name ends with a contract month (``SEP24``) and the ticker is root+month+year.
_FUTURE_NAME = re.compile(r"\b(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\d{2}$")
_FUTURE_TICKER = re.compile(r"[A-Z0-9]{1,4}[FGHJKMNQUVXZ]\d{1,2}")


def read(path) -> Holdings:
    book = read_workbook(path, CONTAINERS)
    records = book.sheet("holdings")
    out = Holdings(str(path), "ssga", container=book.container)
    at = require_header(records, HEADER_MARKERS, f"{path}: sheet holdings", "is this an SSGA file?")
    for record in records[:at]:
        cells = [f.strip() for f in record.fields]
        key = cells[0].rstrip(":").lower() if cells else ""
        if key in PREAMBLE and len(cells) > 1 and cells[1]:
            if PREAMBLE[key] == "as_of":
                out.as_of = iso_date(cells[1].removeprefix("As of").strip(), record.where)
            else:
                setattr(out, PREAMBLE[key], cells[1])
    columns = Columns(records[at], COLUMNS)
    columns.require(COLUMNS, REQUIRED, "SSGA")
    for record, fields in table_rows(records[at + 1:], columns, out, strict=False, end="end of sheet",
                                     blank_row="blank row"):
        get = lambda name: columns.get(fields, name)
        ticker, name = get("ticker"), get("name")
        quantity = number(get("quantity"), record.where, "Shares Held")
        currency = get("currency")
        w, below = weight(get("weight"), record.where, "Weight")
        common = dict(where=record.where, line=record.line, name=name, quantity=quantity, currency=currency,
                      weight=w, weight_below=below, sedol="" if empty(get("sedol")) else get("sedol"),
                      cusip="" if empty(get("identifier")) else get("identifier"), asset_class=get("sector"))
        if empty(ticker) or ticker.upper().startswith("CASH"):
            kind = Instrument.CASH if _CASH_NAME.search(name) else Instrument.MONEY_MARKET
            out.rows.append(Row(kind=kind, ticker="", market_value=None, **common))
        elif _FUTURE_NAME.search(" ".join(name.split()).upper()) and _FUTURE_TICKER.fullmatch(ticker):
            out.rows.append(Row(kind=Instrument.FUTURE, ticker=ticker, market_value=None, units_are_notional=True,
                                **common))
        else:
            out.rows.append(Row(kind=Instrument.EQUITY, ticker=ticker, market_value=None, **common))
    return out


def looks_like(records) -> bool:
    return find_header(records, HEADER_MARKERS) is not None
