"""Portfolio composition files (PCF): load, validate, and lay out as CSR arrays.

A PCF is a JSON list of funds (see README, "Basket files"). Loading is all-or-nothing: every
problem in the file is collected and reported together, each naming the file, the fund and the
field, and no universe is built from a file with any error ("corrupt data is worse than no data").

The universe is laid out for the kernels (compressed sparse rows, one row per fund):

    fund_offsets[f] : fund_offsets[f+1]   the fund's holdings
    holding_security[h]                   index of the holding in the price book
    holding_shares[h]                     shares per creation unit
    holding_fx[h]                         index in the price book of the FX rate to the fund
                                          currency; ONE_INDEX (a slot fixed at 1.0) when the
                                          holding is in the fund currency
    fund_cash[f], fund_creation_unit[f]   estimated cash per creation unit, shares per unit
    fund_basis[f]                         PriceBasis.LAST or .MID (PCF "price_basis")
    fund_market[f]                        book slot of the fund's own ticker (its market price)

FX rates live in the same book as prices, under the symbol ``<CCY><FUNDCCY>`` (``EURUSD`` = USD
per EUR), so rate ticks travel the same path as price ticks. After the symbols come one slot
per fund ticker that is not already a holding (``market_symbols``), so the fund's own trades
tick like any price, and last the slot fixed at 1.0 (ONE_INDEX).

The valuation kernels read a packed copy of the holdings (``Universe.packed``, ``iopv.core.packed``):
8 bytes per holding instead of 16, built from the arrays above whenever a Universe is made.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from iopv.core.constants import PRICE_BASIS_WORDS, PriceBasis
from iopv.core.packed import PackedHoldings, pack_holdings
from iopv.core.pcf_checks import CURRENCY_PATTERN, Checker, describe, plain_holding
from iopv.core.pcf_checks import NAME_PATTERN as NAME_PATTERN  # noqa: F401 -- re-exported: where readers look for it

#: Fund tickers and symbols become MQTT topic levels and Redis keys: keep them to a safe set.
#: Used with ``fullmatch``: ``$`` would also match before a trailing newline ("PWB\n").

#: Optional vendor fields, passed through to every published value when given.
VENDOR_KEYS = ("total_cash", "shares_outstanding", "prior_nav")
FUND_KEYS = frozenset({"fund", "name", "creation_unit", "currency", "cash", "fx", "holdings", "as_of",
                       "price_basis", *VENDOR_KEYS})
HOLDING_KEYS = frozenset({"symbol", "shares", "price", "currency", "fixed"})

MAX_ERRORS_SHOWN = 20


class PcfError(ValueError):
    """A basket file is unreadable or invalid; ``errors`` lists every problem found."""

    def __init__(self, path: str, errors: list[str]):
        self.path = path
        self.errors = errors
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n  ... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__(f"{path}: {len(errors)} error(s) in basket file:\n  " + "\n  ".join(shown) + more)


@dataclass(frozen=True, eq=False)
class Universe:
    """Every fund's basket as flat arrays, plus the book layout the arrays index into."""

    source: str
    funds: tuple[str, ...]
    fund_currency: tuple[str, ...]
    fund_offsets: np.ndarray  # int64[F+1]
    holding_security: np.ndarray  # int32[H] (halves the memory the valuation streams)
    holding_shares: np.ndarray  # float64[H]
    holding_fx: np.ndarray  # int32[H]
    fund_cash: np.ndarray  # float64[F]
    fund_creation_unit: np.ndarray  # float64[F]
    #: Book symbols: securities first, then FX pairs. The book has one more slot, ONE_INDEX.
    symbols: tuple[str, ...]
    #: Previous close (securities) or PCF rate (FX pairs) per book symbol.
    initial_prices: np.ndarray  # float64[S]
    fund_info: tuple[dict[str, Any], ...] = field(default=())
    fund_basis: np.ndarray | None = None  # int64[F], PriceBasis (default: all last)
    #: Fund tickers that are not holdings; their book slots follow the symbols'.
    market_symbols: tuple[str, ...] = ()
    fund_market: np.ndarray | None = None  # int64[F], book slot of the fund's ticker, -1 = none
    #: Short hash of the basket document: published so a vendor sees which basket a value used.
    version: str = ""
    #: Symbols whose price is fixed (``"fixed": true``: cash in a currency at close 1, valued
    #: through its FX rate): they never tick, never go stale and count as priced.
    fixed_symbols: frozenset[str] = frozenset()
    #: The holdings as the valuation kernels read them (derived from the arrays above).
    packed: PackedHoldings = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.funds)
        if self.fund_basis is None:
            object.__setattr__(self, "fund_basis", np.full(n, PriceBasis.LAST, dtype=np.int64))
        if self.fund_market is None:
            object.__setattr__(self, "fund_market", np.full(n, -1, dtype=np.int64))
        if len(self.fund_info) != n:
            object.__setattr__(self, "fund_info", tuple({} for _ in range(n)))
        # The kernels' error bounds take every term shares x price x fx as >= 0 (prices are > 0
        # by the book's rules): a negative or non-finite count here is a layout bug, not data.
        if not np.all(self.holding_shares >= 0) or not np.all(np.isfinite(self.holding_shares)):
            raise ValueError(f"{self.source}: holding_shares must be finite and >= 0")
        object.__setattr__(self, "packed", pack_holdings(self.fund_offsets, self.holding_security,
                                                         self.holding_shares, self.holding_fx,
                                                         self.one_index))

    @property
    def fixed_slots(self) -> np.ndarray:
        """Book slots of ``fixed_symbols`` (int64)."""
        return np.array([k for k, symbol in enumerate(self.symbols) if symbol in self.fixed_symbols], dtype=np.int64)

    @property
    def one_index(self) -> int:
        """Book slot that always holds 1.0 (the FX factor of a holding in the fund currency):
        the last one, after the symbols and the market slots."""
        return len(self.symbols) + len(self.market_symbols)

    @property
    def book_size(self) -> int:
        """Slots of a price book: symbols, the market slots, the 1.0 slot."""
        return self.one_index + 1

    def book_index(self) -> dict[str, int]:
        """Book slot of every symbol that can tick: holdings, FX pairs and fund tickers."""
        index = self.symbol_index()
        for k, symbol in enumerate(self.market_symbols, start=len(self.symbols)):
            index[symbol] = k
        return index

    @property
    def holdings(self) -> int:
        return int(self.holding_security.size)

    def symbol_index(self) -> dict[str, int]:
        return {symbol: i for i, symbol in enumerate(self.symbols)}


def parse_json(path: str | Path, data: bytes | None = None) -> Any:
    """The file's JSON document; malformed JSON is a PcfError with line and column."""
    path = str(path)
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PcfError(path, [f"cannot read file: {exc.strerror or exc}"]) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PcfError(path, [f"line {exc.lineno}, column {exc.colno}: malformed JSON: {exc.msg}"]) from None


def load_pcf(path: str | Path) -> Universe:
    """Load and fully validate a PCF JSON file; raises PcfError listing every problem."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PcfError(path, [f"cannot read file: {exc.strerror or exc}"]) from None
    return build_universe(parse_json(path, data), source=path,
                          version=hashlib.sha256(data).hexdigest()[:12])


def build_universe(document: Any, *, source: str = "<pcf>", version: str | None = None) -> Universe:
    """Validate a parsed PCF document and lay it out as a Universe."""
    check = Checker(source)
    if not isinstance(document, list):
        raise PcfError(source, [f"top level: expected a JSON list of funds, got {type(document).__name__}"])

    fund_rows: list[tuple[str, str, float, float, dict, list]] = []
    seen_funds: dict[str, int] = {}
    close: dict[str, tuple[float, str]] = {}  # symbol -> (previous close, fund that set it)
    symbol_currency: dict[str, tuple[str, str]] = {}
    rates: dict[str, tuple[float, str]] = {}  # pair -> (rate, fund that set it)
    fixed_of: dict[str, tuple[bool, str]] = {}  # symbol -> (fixed, fund that said so)

    valid_names: set[str] = set()  # symbols already matched against NAME_PATTERN
    for position, fund in enumerate(document):
        named = check.named_object(f"fund #{position}", fund, "fund", "a ticker of letters, digits, '.', '_' or '-'",
                                   f"fund {{name}} (#{position})")
        if named is None:
            continue
        ticker, where = named
        if ticker is not None:
            if ticker in seen_funds:
                check.error(f"{where}.fund", f"duplicate fund, first listed as #{seen_funds[ticker]}")
            seen_funds.setdefault(ticker, position)
        for key in sorted(set(fund) - FUND_KEYS):
            check.error(f"{where}.{key}", f"unknown field (known: {', '.join(sorted(FUND_KEYS))})")
        unit = check.number(where, fund, "creation_unit", minimum=0, strict=True)
        cash = check.number(where, fund, "cash", minimum=None, strict=False)
        currency = check.name(where, fund, "currency", CURRENCY_PATTERN, "a 3-letter currency code")
        for key in ("name", "as_of"):
            if key in fund and not isinstance(fund[key], str):
                check.error(f"{where}.{key}", f"expected a string, got {describe(fund[key])}")
        basis = fund.get("price_basis", "last")
        if basis not in PRICE_BASIS_WORDS:
            check.error(f"{where}.price_basis", f"expected one of {', '.join(PRICE_BASIS_WORDS)}, got {describe(basis)}")
        vendor: dict[str, float] = {}
        for key in VENDOR_KEYS:
            if key in fund:
                minimum = None if key == "total_cash" else 0
                number = check.number(where, fund, key, minimum=minimum, strict=key == "prior_nav")
                if number is not None:
                    vendor[key] = fund[key]

        fx = fund.get("fx", {})
        fund_rates: dict[str, float] = {}
        if not isinstance(fx, dict):
            check.error(f"{where}.fx", f"expected an object of currency -> rate, got {describe(fx)}")
            fx = {}
        for ccy in fx:
            if not CURRENCY_PATTERN.fullmatch(ccy):
                check.error(f"{where}.fx.{ccy}", "expected a 3-letter currency code as key")
                continue
            rate = check.number(f"{where}.fx", fx, ccy, minimum=0, strict=True)
            if rate is not None:
                fund_rates[ccy] = rate

        holdings = fund.get("holdings")
        if not isinstance(holdings, list):
            check.error(f"{where}.holdings", f"expected a list (empty for an all-cash fund), got {describe(holdings)}")
            holdings = []
        rows: list[tuple[str, float, str]] = []
        seen_symbols: dict[str, int] = {}
        for k, holding in enumerate(holdings):
            plain = plain_holding(holding, valid_names)
            if plain is not None:
                symbol, shares, price, hccy = plain
                hccy = hccy or currency
            else:
                named = check.named_object(f"{where}.holdings[{k}]", holding, "symbol",
                                           "a symbol of letters, digits, '.', '_' or '-'",
                                           f"{where}.holdings[{k}] ({{name}})")
                if named is None:
                    continue
                symbol, hwhere = named
                for key in sorted(set(holding) - HOLDING_KEYS):
                    check.error(f"{hwhere}.{key}", f"unknown field (known: {', '.join(sorted(HOLDING_KEYS))})")
                shares = check.number(hwhere, holding, "shares", minimum=0, strict=False)
                price = check.number(hwhere, holding, "price", minimum=0, strict=True)
                hccy = currency
                if "currency" in holding:
                    hccy = check.name(hwhere, holding, "currency", CURRENCY_PATTERN, "a 3-letter currency code")
                fixed = holding.get("fixed", False)
                if type(fixed) is not bool:
                    check.error(f"{hwhere}.fixed", f"expected true or false, got {describe(fixed)}")
                    fixed = None
            if symbol is None or shares is None or price is None or hccy is None or currency is None:
                continue
            if plain is not None:
                fixed = False
            elif fixed is None:
                continue
            if symbol in seen_symbols:
                check.error(f"{where}.holdings[{k}] ({symbol}).symbol", f"{symbol} listed twice in this fund (first at holdings[{seen_symbols[symbol]}])")
                continue
            seen_symbols[symbol] = k
            if hccy != currency and hccy not in fund_rates:
                check.error(f"{where}.holdings[{k}] ({symbol}).currency", f"{hccy} has no FX rate: add \"{hccy}\" to the fund's \"fx\" map ({hccy}{currency}, {currency} per {hccy})")
                continue
            if symbol in close and close[symbol][0] != price:
                check.error(f"{where}.holdings[{k}] ({symbol}).price", f"previous close {price!r} disagrees with {close[symbol][0]!r} given by fund {close[symbol][1]}")
                continue
            if symbol in symbol_currency and symbol_currency[symbol][0] != hccy:
                check.error(f"{where}.holdings[{k}] ({symbol}).currency", f"{hccy} disagrees with {symbol_currency[symbol][0]} given by fund {symbol_currency[symbol][1]}")
                continue
            if symbol in fixed_of and fixed_of[symbol][0] != fixed:
                check.error(f"{where}.holdings[{k}] ({symbol}).fixed", f"{str(fixed).lower()} disagrees with "
                            f"{str(fixed_of[symbol][0]).lower()} given by fund {fixed_of[symbol][1]}")
                continue
            fixed_of.setdefault(symbol, (fixed, ticker or where))
            close.setdefault(symbol, (price, ticker or where))
            symbol_currency.setdefault(symbol, (hccy, ticker or where))
            rows.append((symbol, shares, hccy))

        if currency is not None:
            for ccy, rate in fund_rates.items():
                if ccy == currency:
                    continue
                pair = f"{ccy}{currency}"
                if pair in rates and rates[pair][0] != rate:
                    check.error(f"{where}.fx.{ccy}", f"rate {rate!r} for {pair} disagrees with {rates[pair][0]!r} given by fund {rates[pair][1]}")
                rates.setdefault(pair, (rate, ticker or where))
        if ticker is not None and unit is not None and cash is not None and currency is not None:
            info = {key: fund[key] for key in ("name", "as_of") if isinstance(fund.get(key), str)}
            info.update(vendor)
            fund_rows.append((ticker, currency, unit, cash, info, rows, PRICE_BASIS_WORDS.get(basis, PriceBasis.LAST)))

    for pair, (_, fund_name) in rates.items():
        if pair in close:
            check.error(f"fund {fund_name}.fx", f"FX pair {pair} is also a holding symbol; rename one of them")
    if check.errors:
        raise PcfError(source, check.errors)
    if version is None:
        version = hashlib.sha256(orjson.dumps(document)).hexdigest()[:12]
    fixed = frozenset(symbol for symbol, (is_fixed, _) in fixed_of.items() if is_fixed)
    return _layout(source, fund_rows, close, rates, version, fixed)


def _layout(source: str, fund_rows: list, close: dict, rates: dict, version: str,
            fixed: frozenset[str] = frozenset()) -> Universe:
    symbols = tuple(close) + tuple(rates)
    index = {symbol: i for i, symbol in enumerate(symbols)}
    market_symbols = tuple(row[0] for row in fund_rows if row[0] not in index)
    market_index = {symbol: len(symbols) + k for k, symbol in enumerate(market_symbols)}
    one = len(symbols) + len(market_symbols)
    offsets = np.zeros(len(fund_rows) + 1, dtype=np.int64)
    security: list[int] = []
    shares: list[float] = []
    fx: list[int] = []
    for f, (_, currency, _, _, _, rows, _) in enumerate(fund_rows):
        for symbol, count, hccy in rows:
            security.append(index[symbol])
            shares.append(count)
            fx.append(one if hccy == currency else index[f"{hccy}{currency}"])
        offsets[f + 1] = len(security)
    initial = np.array([close[s][0] for s in close] + [rates[p][0] for p in rates], dtype=np.float64)
    market = [index.get(row[0], market_index.get(row[0], -1)) for row in fund_rows]
    return Universe(
        source=source,
        funds=tuple(row[0] for row in fund_rows),
        fund_currency=tuple(row[1] for row in fund_rows),
        fund_offsets=offsets,
        holding_security=np.array(security, dtype=np.int32),
        holding_shares=np.array(shares, dtype=np.float64),
        holding_fx=np.array(fx, dtype=np.int32),
        fund_cash=np.array([row[3] for row in fund_rows], dtype=np.float64),
        fund_creation_unit=np.array([row[2] for row in fund_rows], dtype=np.float64),
        symbols=symbols,
        initial_prices=initial,
        fund_info=tuple(row[4] for row in fund_rows),
        fund_basis=np.array([row[6] for row in fund_rows], dtype=np.int64),
        market_symbols=market_symbols,
        fund_market=np.array(market, dtype=np.int64),
        version=version,
        fixed_symbols=fixed,
    )
