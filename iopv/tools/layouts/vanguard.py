"""Vanguard holdings CSV export: title lines (``Holdings details``, ``Total Stock Market ETF
(VTI)``), then sections ``Equity,as of 09/30/2025``, ``Fixed income,as of ...``,
``Short-term reserves,as of ...``, each with its own header and rows, notes at the end. Money
is printed ``$1,234.56`` / ``-$6,643,712.76``, weights ``6.69%`` or ``<0.01%``; ``---`` is empty.
Market values and shares but no prices (close = value / shares); no shares outstanding.
The file lists the whole portfolio, which all the fund's share classes own."""

from __future__ import annotations

import re

from iopv.tools.layouts.common import Columns, fields_of
from iopv.tools.model import Holdings, HoldingsError, Instrument, Row, blank, empty, iso_date, number, weight
from iopv.tools.sheets import read_workbook

CONTAINERS = ("csv",)
COLUMNS = {
    "sedol": ("SEDOL",), "name": ("HOLDINGS",), "ticker": ("TICKER",), "weight": ("% OF FUNDS*", "% OF FUNDS"),
    "country": ("COUNTRY",), "market_value": ("MARKET VALUE*", "MARKET VALUE"), "quantity": ("SHARES", "FACEAMOUNT"),
    "coupon": ("COUPONYIELD",), "maturity": ("MATURITY DATE",), "sector": ("SUB-INDUSTRY", "SECTOR"),
}
#: Section title (lower case) -> instrument kind and the columns its rows need.
SECTIONS = {
    "equity": (Instrument.EQUITY, ("name", "ticker", "weight", "market_value", "quantity")),
    "fixed income": (Instrument.BOND, ("name", "weight", "market_value", "quantity")),
    "short-term reserves": (Instrument.MONEY_MARKET, ("name", "weight", "market_value")),
}
_SECTION = re.compile(r"^(?P<title>[A-Za-z -]+),\s*as of (?P<date>\S+)$")
_FUND = re.compile(r"\((?P<ticker>[A-Z.]{1,8})\)\s*$")


def read(path) -> Holdings:
    book = read_workbook(path, CONTAINERS)
    records = book.sheet()
    out = Holdings(str(path), "vanguard", container=book.container)
    section = None
    columns = None
    seen = []
    for record in records:
        cells = [f.strip() for f in record.fields]
        text = ",".join(c for c in cells if c)
        match = _SECTION.match(text)
        if match and match.group("title").lower() in SECTIONS:
            section, columns = match.group("title").lower(), None
            seen.append(section)
            as_of = iso_date(match.group("date"), record.where)
            if out.as_of and as_of != out.as_of:
                raise HoldingsError(f"{record.where}: section {match.group('title')!r} is as of {as_of}, "
                                    f"the file's first section of {out.as_of}")
            out.as_of = as_of
            continue
        if section is None:
            if len([c for c in cells if c]) == 1 and (found := _FUND.search(text)):
                out.name, out.fund = text, found.group("ticker")
            continue
        if columns is None:
            if blank(record.fields):
                continue
            columns = Columns(record, COLUMNS)
            columns.require(COLUMNS, SECTIONS[section][1], f"Vanguard {section!r} section")
            continue
        if blank(record.fields):
            section, columns = None, None  # the section ends; notes or the next section follow
            continue
        out.rows.append(_row(record, fields_of(record, columns, strict=True), columns, section))
    if "equity" not in seen:
        raise HoldingsError(f"{path}: no 'Equity,as of MM/DD/YYYY' section (is this a Vanguard holdings export?)")
    out.ended = f"sections {', '.join(seen)}"
    return out


def _row(record, fields, columns: Columns, section: str) -> Row:
    get = lambda name: columns.get(fields, name)
    where = record.where
    kind = SECTIONS[section][0]
    ticker, name = get("ticker"), get("name")
    if kind == Instrument.MONEY_MARKET and (ticker == "USD" or name.lower() in ("us dollar", "cash")):
        kind = Instrument.CASH
    w, below = weight(get("weight"), where, columns.names["weight"])
    return Row(
        where=where, line=record.line, kind=kind, ticker="" if empty(ticker) or kind == Instrument.CASH else ticker,
        name=name, quantity=number(get("quantity"), where, columns.names.get("quantity", "SHARES"), empty_ok=True),
        market_value=number(get("market_value"), where, columns.names["market_value"]),
        country=get("country"), sedol="" if empty(get("sedol")) else get("sedol"), weight=w, weight_below=below,
        asset_class=section, coupon=get("coupon"), maturity="" if empty(get("maturity")) else get("maturity"))


def looks_like(records) -> bool:
    return any(_SECTION.match(",".join(c.strip() for c in r.fields if c.strip())) for r in records[:20])
