"""Rows -> the linear basket the engine values (shares x close x FX on each line, plus cash), one
mapping per instrument kind, each as a calculation agent values it (docs/importer.md,
"Instruments"; worked examples in docs/methodology.md). The kernels stay as they are.

Every line is built so that at the file's own prices it is worth exactly the row's market value
(to 15 significant digits): the close is derived from the value unless the file or ``--prices``
gives one, and whatever the line does not carry (accrued interest, a future's notional, the
FX residual of a cash row) goes to cash. A row that cannot be a line is kept at its market value
as a static amount in cash (``static``), or left out (``excluded``) when it has none; both are
reported, never silent."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

from iopv.tools.fxrates import DIGITS
from iopv.tools.model import Instrument, Row, iso_date
from iopv.tools.symbols import SymbolMap, clean_ticker, valid_symbol

#: The symbol of a foreign cash balance: it never ticks (its close is 1), its FX rate does.
CASH_SYMBOL = "{ccy}.CASH"
#: A multiplier worked out from notional / (contracts x price) is rounded to this many digits.
MULTIPLIER_DIGITS = 6
_HOME_COUNTRIES = ("", "US", "USA", "United States")


@dataclass
class Line:
    """One basket holding being built: ``value`` in the fund currency at the file's prices;
    ``close`` in ``currency`` when given (file or --prices), else derived from the value."""

    symbol: str
    currency: str
    kind: str
    identity: tuple
    shares: Decimal = Decimal(0)
    value: Decimal = Decimal(0)
    close: Decimal | None = None
    rows: list[str] = field(default_factory=list)


class Mapper:
    """Accumulates the basket of one file, row by row (``add``)."""

    def __init__(self, fund_currency: str, rates: Mapping[str, Decimal], prices: Mapping[str, Decimal],
                 symbols: SymbolMap, *, foreign_cash: str = "fx"):
        self.fund_currency = fund_currency
        self.rates = rates
        self.prices = prices
        self.symbols = symbols
        self.foreign_cash = foreign_cash
        self.lines: dict[str, Line] = {}
        self.cash = Decimal(0)
        self.static: list[dict[str, Any]] = []
        self.excluded: list[dict[str, Any]] = []
        self.mapped: list[dict[str, Any]] = []  # every non-equity mapping, for the report
        self._mappings = {Instrument.EQUITY: self._equity, Instrument.CASH: self._cash,
                          Instrument.MONEY_MARKET: self._cash, Instrument.FUTURE: self._future,
                          Instrument.FX_FORWARD: self._fx_forward, Instrument.BOND: self._bond,
                          Instrument.OTHER: self._other}

    def add(self, row: Row) -> None:
        self._mappings[row.kind](row)

    # --- shared steps ------------------------------------------------------------------------

    def rate(self, currency: str) -> Decimal | None:
        return Decimal(1) if currency in ("", self.fund_currency) else self.rates.get(currency)

    def _entry(self, row: Row, reason: str) -> dict[str, Any]:
        return {"where": row.where, "line": row.line, "ticker": row.ticker, "name": row.name, "kind": row.kind,
                "market_value": None if row.market_value is None else str(row.market_value),
                "weight": None if row.weight is None else str(row.weight), "reason": reason}

    def _exclude(self, row: Row, reason: str) -> None:
        self.excluded.append(self._entry(row, reason))

    def _static(self, row: Row, reason: str) -> None:
        """Kept at its market value, as cash that does not move intraday."""
        if row.market_value is None:
            self._exclude(row, f"{reason}; no market value to keep it at")
            return
        self.cash += row.market_value
        self.static.append(self._entry(row, reason))

    def _note(self, row: Row, **facts: Any) -> None:
        self.mapped.append({"where": row.where, "kind": row.kind, "ticker": row.ticker, "name": row.name,
                            **{k: str(v) if isinstance(v, Decimal) else v for k, v in facts.items()}})

    def _local_price(self, row: Row) -> Decimal | None:
        """The file's price in the listing's currency: iShares prints it in the fund currency
        (USD) even for foreign listings, so local = price x FX Rate (local per USD)."""
        if row.price is None or row.price <= 0:
            return None
        foreign = row.currency not in ("", self.fund_currency)
        if foreign and row.price_currency in ("", self.fund_currency):
            rate = self.rate(row.currency)
            return None if rate is None else DIGITS.divide(row.price, rate)
        return row.price

    def _symbol(self, row: Row) -> tuple[str | None, str]:
        """(symbol, "") or (None, why not); a symbol of "-" means not listed."""
        if row.exchange:
            symbol = self.symbols.symbol(row.ticker, row.exchange)
            if symbol is None:
                return None, f"exchange {row.exchange!r} is not in the symbol map (add it: --symbol-map)"
            if self.symbols.suffix(row.exchange) == "-":
                return "-", ""
        elif row.currency in ("", self.fund_currency) and row.country in _HOME_COUNTRIES:
            symbol = clean_ticker(row.ticker)
        elif row.isin or row.sedol:
            symbol = row.isin or row.sedol
        else:
            return None, f"a listing in {row.currency or row.country} without exchange or ISIN/SEDOL: no symbol"
        if not valid_symbol(symbol):
            return None, f"ticker {row.ticker!r} makes no usable symbol ({symbol!r})"
        return symbol, ""

    def _line(self, row: Row, symbol: str, currency: str, shares: Decimal, value: Decimal,
              close: Decimal | None, alternatives: Iterable[str] = (), identity: tuple = ()) -> str | None:
        """Add to the line ``symbol`` (or the first free alternative when ``symbol`` is another
        security's) and return the symbol used; None when none is free (the caller keeps the
        row static)."""
        identity = identity or (" ".join(row.name.upper().split()), row.isin, row.sedol, row.cusip, row.kind)
        for candidate in itertools.chain((symbol,), alternatives):
            line = self.lines.get(candidate)
            if line is None:
                self.lines[candidate] = line = Line(candidate, currency, row.kind, identity)
            elif line.identity != identity or line.currency != currency or (close != line.close):
                continue
            line.shares += shares
            line.value += value
            line.close = close
            line.rows.append(row.where)
            return candidate
        return None

    def _currency_line(self, row: Row, currency: str, amount: Decimal, rate: Decimal) -> None:
        """``amount`` of a foreign currency: a line at close 1 on ``CCY.CASH`` (it moves with the
        rate ``CCYFUND``)."""
        symbol = CASH_SYMBOL.format(ccy=currency)
        line = self.lines.setdefault(symbol, Line(symbol, currency, Instrument.CASH, ("cash", currency),
                                                  close=Decimal(1)))
        line.shares += amount
        line.value += amount * rate
        line.rows.append(row.where)

    # --- one mapping per kind ----------------------------------------------------------------

    def _equity(self, row: Row) -> None:
        if not row.ticker:
            self._static(row, "no ticker: kept at its market value")
            return
        symbol, why = self._symbol(row)
        if symbol is None:  # a listing the map cannot name: fix the map, or leave it out knowingly
            self._exclude(row, why)
            return
        if symbol == "-":
            self._static(row, f"not listed ({row.exchange}): kept at its market value")
            return
        currency = self._foreign_currency(row)
        rate = self._rate_or_exclude(row, currency, f" ({self.fund_currency} per unit)")
        if rate is None:
            return
        quantity = row.quantity
        if quantity is None or quantity <= 0:
            self._static(row, f"quantity {quantity}: a basket line needs shares > 0")
            return
        close = self.prices.get(symbol, self.prices.get(row.ticker))
        if close is not None:
            value = quantity * close * rate
        elif row.market_value is None:
            self._exclude(row, "no price: give it in --prices")
            return
        elif row.market_value <= 0:
            self._static(row, f"market value {row.market_value}: no close > 0 reproduces it")
            return
        else:
            value = row.market_value
        alternatives = tuple(i for i in (row.isin, row.sedol, row.cusip) if i and valid_symbol(i))
        if not self._line(row, symbol, currency, quantity, value, close, alternatives):
            self._static(row, f"{symbol} is already another security in this file and the row has no "
                              "ISIN/SEDOL to tell them apart: kept at its market value")

    def _foreign_currency(self, row: Row) -> str:
        """The row's currency when it is not the fund's, else "" (whose rate is 1)."""
        return row.currency if row.currency not in ("", self.fund_currency) else ""

    def _rate_or_exclude(self, row: Row, currency: str, hint: str = "") -> Decimal | None:
        """The FX rate of ``currency``; None, the row excluded saying which ``--fx`` to give, without one."""
        rate = self.rate(currency)
        if rate is None:
            self._exclude(row, f"no FX rate for {currency}: give --fx {currency}=RATE{hint}")
        return rate

    def _cash(self, row: Row) -> None:
        currency = self._foreign_currency(row)
        amount = row.market_value
        if not currency or self.foreign_cash == "static":
            if amount is None:
                if currency:
                    rate = self.rate(currency)
                    if rate is None or row.quantity is None:
                        self._exclude(row, f"cash in {currency}: give --fx {currency}=RATE")
                        return
                    amount = row.quantity * rate
                else:
                    amount = row.quantity or Decimal(0)
            self.cash += amount
            self._note(row, to_cash=amount, currency=currency or self.fund_currency)
            return
        rate = self.rate(currency)
        if rate is None:
            self._exclude(row, f"cash in {currency}: give --fx {currency}=RATE")
            return
        if row.quantity is None or row.quantity <= 0:
            if row.quantity == 0 and not row.market_value:
                self._note(row, to_cash=Decimal(0), currency=currency)
                return
            self._static(row, f"{currency} {row.quantity}: a negative balance cannot be a basket line "
                              f"(shares >= 0): kept at its {self.fund_currency} value")
            return
        self._currency_line(row, currency, row.quantity, rate)
        residual = (row.market_value if row.market_value is not None else row.quantity * rate) - row.quantity * rate
        self.cash += residual
        self._note(row, line=CASH_SYMBOL.format(ccy=currency), amount=row.quantity, residual_to_cash=residual)

    def _future(self, row: Row) -> None:
        symbol, why = self._symbol(row) if row.ticker else (None, "no ticker")
        if symbol in (None, "-"):
            self._static(row, f"future: {why or 'not listed'}")
            return
        currency = self._foreign_currency(row)
        rate = self.rate(currency)
        price = self.prices.get(symbol, self._local_price(row))
        if rate is None or price is None:
            self._exclude(row, f"future: no {'price (give it in --prices)' if price is None else 'FX rate'}")
            return
        contracts = row.quantity or Decimal(0)
        if row.units_are_notional:
            multiplier, units = None, contracts
        else:
            multiplier = self.symbols.multiplier(row.ticker)
            if row.notional and row.price and contracts:
                multiplier = Context(prec=MULTIPLIER_DIGITS).plus(row.notional / (contracts * row.price)).normalize()
            if multiplier is None:
                self._exclude(row, f"future {row.ticker}: no notional value and no multiplier for its root "
                                   "(add [multipliers] to --symbol-map)")
                return
            units = contracts * multiplier
        if units <= 0:
            self._static(row, f"future: {units} units (a short or empty position cannot be a basket line)")
            return
        value = units * price * rate
        self._line(row, symbol, currency, units, value, price)
        offset = (row.market_value or Decimal(0)) - value
        self.cash += offset
        self._note(row, line=symbol, contracts=contracts, units=units, price=price,
                   multiplier=None if multiplier is None else f"{multiplier:f}",
                   cash=offset)

    def _fx_forward(self, row: Row) -> None:
        currency = self._foreign_currency(row)
        rate = self.rate(currency) if currency else None
        if not currency or rate is None or not row.quantity or row.quantity <= 0 or row.market_value is None:
            self._static(row, "FX forward without a long foreign-currency amount: kept at its market value")
            return
        self._currency_line(row, currency, row.quantity, rate)
        offset = row.market_value - row.quantity * rate
        self.cash += offset
        self._note(row, line=CASH_SYMBOL.format(ccy=currency), amount=row.quantity, cash=offset)

    def _bond(self, row: Row) -> None:
        par = row.quantity
        if par is None or par <= 0:
            self._static(row, f"bond with par {par}: kept at its market value")
            return
        currency = self._foreign_currency(row)
        rate = self._rate_or_exclude(row, currency)
        if rate is None:
            return
        identifiers = tuple(i for i in (row.isin, row.cusip, row.sedol) if i and valid_symbol(i))
        symbol = identifiers[0] if identifiers else bond_symbol(row)
        units = par / 100
        price = self.prices.get(symbol, self._local_price(row))
        if price is None and row.market_value is None:
            self._exclude(row, "bond: no price and no market value")
            return
        value = units * price * rate if price is not None else row.market_value
        numbered = (f"{symbol}-{k}" for k in range(2, 100_000)) if not identifiers else identifiers[1:]
        # without an identifier two rows are never known to be one security: one line each
        used = self._line(row, symbol, currency, units, value, price, numbered,
                          identity=() if identifiers else (row.where,))
        if used is None:
            self._static(row, "bond: no free symbol")
            return
        accrued = (row.market_value - value) if row.market_value is not None else Decimal(0)
        self.cash += accrued
        self._note(row, line=used, par=par, price=price, accrued_to_cash=accrued,
                   tba="TBA" in row.name.upper())

    def _other(self, row: Row) -> None:
        self._static(row, f"asset class {row.asset_class!r} has no mapping: kept at its market value")


def bond_symbol(row: Row) -> str:
    """A readable symbol for a bond the file gives no identifier for: name, coupon, maturity
    (``TREASURY.NOTE-0.38-20260131``), at most 26 characters (room for a ``-<n>`` of rows alike)."""
    coupon = re.sub(r"[^0-9.]", "", row.coupon)
    try:
        maturity = iso_date(row.maturity, row.where).replace("-", "") if row.maturity else ""
    except ValueError:
        maturity = ""
    tail = "-".join(p for p in (coupon, maturity) if p)
    room = 26 - len(tail) - (1 if tail else 0)
    base = re.sub(r"[^A-Z0-9]+", ".", row.name.upper()).strip(".")[:room].strip(".") or "BOND"
    return "-".join(p for p in (base, tail) if p)
