"""An issuer's holdings file -> our basket document (README "Basket files") and a report, for
``iopv import-holdings`` (docs/importer.md). Not part of the service: it writes a file that
``iopv check-pcf`` and the engine load.

The steps, one module each: read the layout (``iopv.tools.layouts``), check the file is whole
(``iopv.tools.integrity``), take the FX seeds from the file (``iopv.tools.fxrates``), map every
row onto the linear basket (``iopv.tools.instruments``, symbols by ``iopv.tools.symbols``), then
divide by the fund's shares outstanding -- or scale to ``--creation-unit`` shares -- so the basket
values per share what the fund is worth per share."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from iopv.tools.fxrates import DIGITS, file_rates
from iopv.tools.instruments import Mapper
from iopv.tools.integrity import UNPRICED_LIMIT, check_complete, left_out_share
from iopv.tools.layouts import read_holdings
from iopv.tools.model import Holdings, HoldingsError, number
from iopv.tools.symbols import SYMBOL_PATTERN, SymbolMap


class UnpricedRows(HoldingsError):
    """Rows could not be put in the basket and leaving them out was not allowed (or left out
    too much); ``result`` holds what was read, for the report."""

    def __init__(self, message: str, result: ImportResult):
        super().__init__(message)
        self.result = result


@dataclass
class ImportResult:
    """The basket document (a list of one fund) and what the report says about it."""

    document: list[dict[str, Any]]
    holdings: Holdings
    facts: dict[str, Any] = field(default_factory=dict)
    mapped: list[dict[str, Any]] = field(default_factory=list)
    static: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        fund = self.document[0] if self.document else {}
        return {"source": self.holdings.path, "format": self.holdings.layout, "container": self.holdings.container,
                "fund": fund.get("fund"), "as_of": fund.get("as_of"), "creation_unit": fund.get("creation_unit"),
                "holdings": len(fund.get("holdings", ())), "cash": fund.get("cash"), **self.facts,
                "mapped": self.mapped, "static": self.static, "excluded": self.excluded}

    def summary(self) -> str:
        fund = self.document[0]
        facts = self.facts
        text = (f"{self.holdings.path}: {fund['fund']}: {len(fund['holdings'])} holdings, cash {fund['cash']}, "
                f"creation unit {fund['creation_unit']} (shares outstanding {facts['shares_outstanding']})")
        if "file_value_per_share" in facts:
            text += (f"\n  value per share at the file's prices {facts['basket_value_per_share']} "
                     f"(the file's market value / shares outstanding {facts['file_value_per_share']}: "
                     f"{facts['difference_bp']} bp)")
        if "nav_check" in facts:
            nav = facts["nav_check"]
            text += f"\n  the file's NAV on {nav['date']}: {nav['nav']} ({nav['difference_bp']} bp)"
        kinds: dict[str, int] = {}
        for entry in self.mapped:
            kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
        if kinds:
            text += "\n  mapped: " + ", ".join(f"{n} {kind} row(s)" for kind, n in sorted(kinds.items()))
        for title, entries in (("kept at market value (static, reported)", self.static),
                               ("NOT in the basket", self.excluded)):
            if entries:
                text += f"\n  {len(entries)} row(s) {title}:" + _listing(entries)
        if self.excluded:
            text += f"\n  left out: {facts['left_out_pct']}% of the fund by {facts['left_out_basis']}"
        return text


def _listing(entries: list[dict[str, Any]], limit: int = 25) -> str:
    shown = "".join(f"\n    {e['where']}: {e['ticker'] or '-'} {e['name']!r}: {e['reason']}" for e in entries[:limit])
    return shown + (f"\n    ... and {len(entries) - limit} more (see the report)" if len(entries) > limit else "")


def read_prices(path: str | Path) -> dict[str, Decimal]:
    """A CSV of ``symbol,close`` (a header line ``symbol,close`` is allowed) -> {symbol: close}."""
    path = Path(path)
    out: dict[str, Decimal] = {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            for fields in reader:
                where = f"{path}:{reader.line_num}"
                if not fields or not any(f.strip() for f in fields):
                    continue
                if reader.line_num == 1 and fields[0].strip().lower() == "symbol":
                    continue
                if len(fields) != 2:
                    raise HoldingsError(f"{where}: expected symbol,close, got {len(fields)} field(s)")
                symbol = fields[0].strip()
                close = number(fields[1], where, "close")
                if close <= 0:
                    raise HoldingsError(f"{where}: close: expected a number > 0, got {fields[1]!r}")
                if symbol in out:
                    raise HoldingsError(f"{where}: {symbol} listed twice")
                out[symbol] = close
    except OSError as exc:
        raise HoldingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return out


#: Cash is written to this many decimals (FX residuals of 1e-13 are noise, not money).
CASH_QUANTUM = Decimal("1e-8")


def plain(value: Decimal) -> int | float:
    """A basket number: 15 significant digits (what a float64 carries exactly), an int when whole."""
    value = DIGITS.plus(value)
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


def import_holdings(path: str | Path, layout: str, *, shares_outstanding: Decimal | None = None,
                    creation_unit: Decimal | None = None, prices: Mapping[str, Decimal] | None = None,
                    allow_unpriced: bool = False, fund: str | None = None, currency: str = "USD",
                    fx: Mapping[str, Decimal] | None = None, symbols: SymbolMap | None = None,
                    foreign_cash: str = "fx") -> ImportResult:
    """Read ``path`` in ``layout`` and build the basket document (docs/importer.md). Raises
    ``HoldingsError`` naming file and line for a bad row or a file cut short, and
    ``UnpricedRows`` when rows cannot be put in the basket (unless ``allow_unpriced`` and they
    are at most ``UNPRICED_LIMIT`` of the fund)."""
    holdings = read_holdings(path, layout)
    ticker = fund or holdings.fund
    if not ticker:
        raise HoldingsError(f"{path}: the file does not name the fund's ticker: give --fund")
    if not SYMBOL_PATTERN.fullmatch(ticker):
        raise HoldingsError(f"{path}: fund ticker {ticker!r}: expected letters, digits, '.', '_' or '-'")
    facts = check_complete(holdings)
    divisor = shares_outstanding if shares_outstanding is not None else holdings.shares_outstanding
    if divisor is None or divisor <= 0:
        raise HoldingsError(
            f"{path}: the file lists the whole fund and does not state its shares outstanding: give "
            "--shares-outstanding N (the fund's shares on the file's date) to value per share, and "
            "--creation-unit N besides for a basket of one creation unit")
    rates, rate_sources = file_rates(holdings.rows, currency, fx)
    mapper = Mapper(currency, rates, prices or {}, symbols or SymbolMap(), foreign_cash=foreign_cash)
    for row in holdings.rows:
        mapper.add(row)
    result = ImportResult([], holdings, facts, mapper.mapped, mapper.static, mapper.excluded)
    share, basis = left_out_share(holdings.rows, (e["where"] for e in mapper.excluded))
    facts.update({"shares_outstanding": str(divisor), "fx_sources": rate_sources,
                  "left_out_pct": f"{share * 100:.4f}", "left_out_basis": basis})
    result.document = [_document(holdings, ticker, currency, mapper, rates, divisor, creation_unit, facts)]
    if mapper.excluded and (not allow_unpriced or share > UNPRICED_LIMIT):
        why = ("give prices with --prices, rates with --fx, or --allow-unpriced to leave them out"
               if not allow_unpriced else
               f"above the {UNPRICED_LIMIT:.0%} --allow-unpriced may leave out (docs/importer.md)")
        raise UnpricedRows(f"{path}: {len(mapper.excluded)} row(s) cannot be put in the basket, "
                           f"{share:.2%} of the fund by {basis} ({why}):" + _listing(mapper.excluded), result)
    return result


def _document(holdings: Holdings, ticker: str, currency: str, mapper: Mapper, rates: Mapping[str, Decimal],
              divisor: Decimal, creation_unit: Decimal | None, facts: dict[str, Any]) -> dict[str, Any]:
    unit = creation_unit if creation_unit is not None else divisor
    factor = unit / divisor
    lines = []
    used: dict[str, Decimal] = {}
    total = (mapper.cash * factor).quantize(CASH_QUANTUM)
    for line in mapper.lines.values():
        rate = Decimal(1) if not line.currency else rates[line.currency]
        shares = DIGITS.plus(line.shares * factor)
        close = line.close if line.close is not None else DIGITS.divide(line.value, line.shares * rate)
        close = DIGITS.plus(close)
        if close <= 0:
            raise HoldingsError(f"{holdings.path}: {line.symbol} ({', '.join(line.rows)}): its rows are worth "
                                f"{line.value}, no close > 0 reproduces that")
        entry: dict[str, Any] = {"symbol": line.symbol, "shares": plain(shares), "price": plain(close)}
        if line.currency:
            entry["currency"] = line.currency
            used[line.currency] = rate
        if line.identity[:1] == ("cash",):  # cash in a currency (CCY.CASH): never ticks, moves with its rate
            entry["fixed"] = True
        lines.append(entry)
        total += shares * close * rate
    document: dict[str, Any] = {"fund": ticker}
    if holdings.name:
        document["name"] = holdings.name
    if holdings.as_of:
        document["as_of"] = holdings.as_of
    cash = (mapper.cash * factor).quantize(CASH_QUANTUM)
    document.update({"creation_unit": plain(unit), "currency": currency, "cash": plain(cash)})
    if used:
        document["fx"] = {ccy: plain(rate) for ccy, rate in sorted(used.items())}
    document["holdings"] = lines
    document["shares_outstanding"] = plain(divisor)
    per_share = total / unit
    facts["basket_value_per_share"] = f"{per_share:.6f}"
    if all(r.market_value is not None for r in holdings.rows):
        file_value = sum((r.market_value for r in holdings.rows), Decimal(0)) / divisor
        facts["file_value_per_share"] = f"{file_value:.6f}"
        facts["difference_bp"] = f"{(per_share - file_value) / file_value * 10_000:.4f}" if file_value else "n/a"
    if holdings.as_of in holdings.nav_history:
        nav, _ = holdings.nav_history[holdings.as_of]
        facts["nav_check"] = {"date": holdings.as_of, "nav": str(nav),
                              "difference_bp": f"{(per_share - nav) / nav * 10_000:.4f}"}
    return document
