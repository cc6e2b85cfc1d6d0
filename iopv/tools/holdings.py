"""An issuer's holdings file -> our basket document (README "Basket files"), for
``iopv import-holdings``. Not part of the service: it only writes a file ``iopv check-pcf`` and
the engine load.

- ``creation_unit``: given, or the file's shares outstanding (iShares). A whole fund's holdings
  over its shares outstanding give the same value per share as a creation-unit basket.
- Equity rows become holdings (``symbol``, ``shares``, ``price`` = previous close). A price comes
  from ``--prices`` (a CSV ``symbol,close``; it wins over the file's price) or the file (iShares
  ``Price``; Invesco market value / shares). SSGA files have no prices: give ``--prices``.
- Cash and money-market rows add their market value to ``cash``; futures rows too (their market
  value is the day's variation margin) and are listed in the report as not valued intraday.
- A row that cannot be priced or has no usable ticker is never dropped silently: it is in the
  report, and the import fails unless ``allow_unpriced`` (then it is left out of the basket).
- Holdings in another currency keep their local price and get ``currency`` and a seed rate in
  the basket's ``fx`` (fund currency per unit of it): from ``--fx CCY=RATE``, else from the
  file's ``FX Rate`` (iShares), whichever way it is quoted -- the convention is the one under
  which quantity x price x rate reproduces the row's market value (within 0.5 %); a row that
  reconciles under neither is reported. Cash in another currency: iShares gives its market
  value in the fund currency already; SSGA's cash line is converted at ``--fx``.
- Tickers with ``/`` or spaces (``BRK/B``, ``BF B``) are written with ``.`` (``BRK.B``). The same
  ticker twice: shares are added when the prices agree, else it is an error naming both lines.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

from iopv.tools.layouts import CASH, EQUITY, FUTURE, READERS, Holdings, HoldingsError, Row, number

SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class UnpricedRows(HoldingsError):
    """Rows could not be put in the basket and leaving them out was not allowed; ``result``
    holds what was read (for the report)."""

    def __init__(self, message: str, result: ImportResult):
        super().__init__(message)
        self.result = result


@dataclass
class ImportResult:
    """The basket document (a list of one fund) and what was not put in it."""

    document: list[dict[str, Any]]
    holdings: Holdings
    #: rows not in the basket: {"line", "symbol", "name", "reason", "market_value"}
    excluded: list[dict[str, Any]] = field(default_factory=list)
    #: rows whose market value went to cash: {"line", "name", "kind", "market_value"}
    to_cash: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        fund = self.document[0]
        return {"source": self.holdings.path, "format": self.holdings.layout, "fund": fund["fund"],
                "as_of": fund.get("as_of"), "creation_unit": fund["creation_unit"], "holdings": len(fund["holdings"]),
                "cash": fund["cash"], "to_cash": self.to_cash, "excluded": self.excluded}

    def summary(self) -> str:
        fund = self.document[0]
        text = (f"{self.holdings.path}: {fund['fund']}: {len(fund['holdings'])} holdings, cash {fund['cash']} "
                f"({len(self.to_cash)} cash/futures row(s)), creation unit {fund['creation_unit']}")
        futures = sum(1 for r in self.to_cash if r["kind"] == FUTURE)
        if futures:
            text += f"; {futures} futures row(s) not valued intraday (market value in cash)"
        if self.excluded:
            text += f"; {len(self.excluded)} row(s) NOT in the basket:"
            text += "".join(f"\n  line {r['line']}: {r['symbol'] or '-'} {r['name']!r}: {r['reason']}"
                            for r in self.excluded)
        return text


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


def _plain(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _symbol(ticker: str) -> str:
    return re.sub(r"[/ ]+", ".", ticker.strip())


#: Largest relative gap between quantity x price x rate and a row's market value for a file's
#: FX rate to be read in that convention (market values are rounded to the cent, rates to a few digits).
FX_TOLERANCE = Decimal("0.005")
#: Significant digits of a rate inverted from the file's (1 / 151.26 = 0.00661113314822...).
RATE_DIGITS = Context(prec=12)


def _file_rate(row: Row) -> Decimal | None:
    """Fund currency per unit of ``row.currency`` from the row's own FX rate, in whichever
    convention reproduces its market value; None when neither does."""
    if not (row.fx_rate and row.price and row.shares and row.market_value) or row.value_currency:
        return None
    local = row.shares * row.price
    best = min((abs(local * rate - row.market_value) / abs(row.market_value), rate)
               for rate in (row.fx_rate, 1 / row.fx_rate))
    return RATE_DIGITS.plus(best[1]) if best[0] <= FX_TOLERANCE else None


def import_holdings(path: str | Path, layout: str, *, creation_unit: Decimal | None = None,
                    prices: dict[str, Decimal] | None = None, allow_unpriced: bool = False,
                    fund: str | None = None, currency: str = "USD",
                    fx: dict[str, Decimal] | None = None) -> ImportResult:
    """Read ``path`` in ``layout`` (ishares, invesco, ssga) and build the basket document.
    ``fx``: {currency: rate in fund currency per unit}, winning over the file's rates. Raises
    ``HoldingsError`` naming file and line for a bad row, and listing the unpriced rows when
    there are any and ``allow_unpriced`` is false."""
    if layout not in READERS:
        raise HoldingsError(f"--format: expected one of {', '.join(READERS)}, got {layout!r}")
    holdings = READERS[layout](Path(path))
    prices = prices or {}
    ticker = fund or holdings.fund
    if not ticker:
        raise HoldingsError(f"{path}: the file does not name the fund's ticker: give --fund")
    if not SYMBOL.fullmatch(ticker):
        raise HoldingsError(f"{path}: fund ticker {ticker!r}: expected letters, digits, '.', '_' or '-'")
    unit = creation_unit if creation_unit is not None else holdings.shares_outstanding
    if unit is None or unit <= 0:
        raise HoldingsError(f"{path}: no shares outstanding in the file: give --creation-unit "
                            "(the shares the holdings are for: shares outstanding for a whole fund's holdings)")
    result = ImportResult([], holdings)
    cash = Decimal(0)
    seen: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    rates: dict[str, Decimal] = dict(fx or {})
    used_rates: dict[str, Decimal] = {}

    def rate_of(row: Row, ccy: str) -> Decimal | None:
        if ccy in rates:
            return rates[ccy]
        rate = _file_rate(row)
        if rate is not None:
            rates[ccy] = rate  # one seed rate per currency for the whole file
        return rate

    def exclude(row: Row, reason: str) -> None:
        result.excluded.append({"line": row.line, "symbol": row.symbol, "name": row.name, "reason": reason,
                                "market_value": None if row.market_value is None else float(row.market_value)})

    for row in holdings.rows:
        if row.kind in (CASH, FUTURE):
            amount = row.market_value or Decimal(0)
            if row.value_currency and row.value_currency != currency:
                if row.value_currency not in rates:
                    exclude(row, f"cash in {row.value_currency}: give --fx {row.value_currency}=RATE")
                    continue
                amount *= rates[row.value_currency]
            cash += amount
            result.to_cash.append({"line": row.line, "name": row.name, "kind": row.kind,
                                   "market_value": float(row.market_value or 0)})
            continue
        assert row.kind == EQUITY
        symbol = _symbol(row.symbol)
        if not symbol or not SYMBOL.fullmatch(symbol):
            exclude(row, f"no usable ticker ({row.symbol!r})")
            continue
        foreign = row.currency if row.currency and row.currency != currency else ""
        if foreign:
            rate = rate_of(row, foreign)
            if rate is None:
                exclude(row, f"priced in {foreign}: no FX rate that reproduces its market value; "
                        f"give --fx {foreign}=RATE ({currency} per {foreign})")
                continue
        price = prices.get(symbol, prices.get(row.symbol, row.price))
        if price is None or price <= 0:
            exclude(row, "no price: give it in --prices" if price is None else f"price {price} is not > 0")
            continue
        if row.shares < 0:
            exclude(row, f"negative quantity {row.shares} (a short position)")
            continue
        if symbol in seen:
            entry = seen[symbol]
            if Decimal(repr(entry["price"])) != price:
                raise HoldingsError(f"{path}:{row.line}: {symbol} listed again at price {price} "
                                    f"(line {first_line[symbol]}: {entry['price']})")
            entry["shares"] = _plain(Decimal(repr(entry["shares"])) + row.shares)
            continue
        entry = {"symbol": symbol, "shares": _plain(row.shares), "price": _plain(price)}
        if foreign:
            entry["currency"] = foreign
            used_rates[foreign] = rates[foreign]
        seen[symbol] = entry
        first_line[symbol] = row.line
    document: dict[str, Any] = {"fund": ticker}
    if holdings.name:
        document["name"] = holdings.name
    if holdings.as_of:
        document["as_of"] = holdings.as_of
    document.update({"creation_unit": _plain(unit), "currency": currency,
                     "cash": float(cash.quantize(Decimal("0.01")))})
    if used_rates:
        document["fx"] = {ccy: float(rate) for ccy, rate in sorted(used_rates.items())}
    document["holdings"] = list(seen.values())
    if holdings.shares_outstanding is not None:
        document["shares_outstanding"] = _plain(holdings.shares_outstanding)
    result.document = [document]
    if result.excluded and not allow_unpriced:
        raise UnpricedRows(f"{path}: {len(result.excluded)} row(s) cannot be put in the basket "
                           "(give prices with --prices, rates with --fx, or --allow-unpriced to leave them out):"
                           + "".join(f"\n  line {r['line']}: {r['symbol'] or '-'} {r['name']!r}: {r['reason']}"
                                     for r in result.excluded), result)
    return result
