"""Exact reference for the IOPV contract (docs: /work/shared/DESIGN.md), the oracle of the tests.

Written from the contract alone -- it never imports ``iopv`` -- in plain Python: JSON parsed by
the standard library with every number kept as its exact decimal text (``Decimal``), time in
Python ints, values computed exactly and rounded ROUND_HALF_UP (half away from zero).

    iopv_f(T) = (sum_i shares_fi * price_i(T) * fx_i(T) + cash_f) / creation_unit_f

Tick outcomes use the reason names of the contract; when one tick has several faults, the first
check that fails names it, in this order: not an object, symbol, price (missing, type), ts
(missing, type/range), quote, price value (finite, > 0), unknown symbol, out of order. A price
is "not finite" when it cannot be held as a finite binary64 number (e.g. ``1e400``, ``10**400``).

Quotes and mid prices (docs/methodology.md rule 4): a tick may carry ``bid`` and/or ``ask``; each
present side must be a JSON number, finite, > 0, and bid <= ask when both are present, otherwise
the whole tick is ``bad_quote`` (a rejection: it neither moves the clock nor touches the book,
and it wins over unknown symbol / out of order). A side is "present" when its key carries a
non-null value (``null`` counts as absent, as a ``null`` price counts as missing). Only an
accepted tick updates the book, and only the sides it carries. ``iopv_bid`` / ``iopv_ask`` value
the basket (prices and FX rates) at bids / asks; a side not yet quoted uses the symbol's value
price. The value price is the last trade, or for a ``"price_basis": "mid"`` fund (bid + ask) / 2
wherever both sides are known. The docs leave open where ``bad_quote`` ranks against a bad price
value; the generators never combine the two.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact

from iopv.core.constants import MAX_TS

#: Exact arithmetic for the numerator (any rounding raises), 120 digits for the final division.
EXACT = Context(prec=200, traps=[Inexact])
DIVIDE = Context(prec=120)


def _no_constants(name: str):
    raise ValueError(f"not JSON: {name}")


class Fund:
    def __init__(self, doc: dict):
        self.name = doc["fund"]
        self.currency = doc["currency"]
        self.cash = doc["cash"]
        self.unit = doc["creation_unit"]
        self.mid = doc.get("price_basis", "last") == "mid"
        # (symbol, shares, symbol of the FX rate or None when in the fund currency)
        self.holdings = []
        for h in doc["holdings"]:
            ccy = h.get("currency", self.currency)
            pair = None if ccy == self.currency else ccy + self.currency
            self.holdings.append((h["symbol"], h["shares"], pair))


def parse_pcf(pcf_text: str) -> tuple[list[Fund], dict[str, Decimal]]:
    """(funds in file order, initial price of every book symbol: holdings and FX pairs)."""
    doc = json.loads(pcf_text, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constants)
    funds = [Fund(f) for f in doc]
    prices: dict[str, Decimal] = {}
    for f in doc:
        for h in f["holdings"]:
            prices[h["symbol"]] = h["price"]
        for ccy, rate in f.get("fx", {}).items():
            if ccy != f["currency"]:
                prices[ccy + f["currency"]] = rate
    return funds, prices


def exact_value(fund: Fund, prices: dict[str, Decimal]) -> Decimal:
    """The unrounded per-share value at ``prices`` (numerator exact, quotient to 120 digits)."""
    total = fund.cash
    for symbol, shares, pair in fund.holdings:
        fx = Decimal(1) if pair is None else prices[pair]
        total = EXACT.add(total, EXACT.multiply(EXACT.multiply(shares, prices[symbol]), fx))
    return DIVIDE.divide(total, fund.unit)


class Book:
    """Last trade and quote sides per book symbol (holdings and FX pairs)."""

    def __init__(self, prices: dict[str, Decimal]):
        self.last = prices
        self.bid: dict[str, Decimal] = {}
        self.ask: dict[str, Decimal] = {}

    def value_price(self, fund: Fund, symbol: str) -> Decimal:
        """Last trade; for a mid fund the mid wherever both sides are known (exact: /2 ends)."""
        if fund.mid and symbol in self.bid and symbol in self.ask:
            return EXACT.divide(EXACT.add(self.bid[symbol], self.ask[symbol]), 2)
        return self.last[symbol]

    def side_prices(self, fund: Fund, side: dict[str, Decimal] | None) -> dict[str, Decimal]:
        """Every symbol of ``fund`` priced on one side (None: the value side); a side not yet
        quoted falls back to the value price."""
        out = {}
        for symbol, _, pair in fund.holdings:
            for s in (symbol, pair) if pair is not None else (symbol,):
                if side is not None and s in side:
                    out[s] = side[s]
                else:
                    out[s] = self.value_price(fund, s)
        return out

    def sides(self, fund: Fund) -> tuple[Decimal, Decimal, Decimal]:
        """Unrounded (iopv, iopv_bid, iopv_ask)."""
        return (exact_value(fund, self.side_prices(fund, None)),
                exact_value(fund, self.side_prices(fund, self.bid)),
                exact_value(fund, self.side_prices(fund, self.ask)))

    def fallback(self, fund: Fund) -> bool:
        """Some holding (or its FX rate) lacks a bid or an ask: ``side_fallback``."""
        symbols = [s for symbol, _, pair in fund.holdings for s in (symbol, pair) if s is not None]
        return any(s not in self.bid or s not in self.ask for s in symbols)


def round_half_up(value: Decimal, decimals: int, rounding: str = ROUND_HALF_UP) -> str:
    """Fixed-point text, half away from zero; zero is published without a sign. (Tests pass
    another ``rounding`` only to find which values are exact ties.)"""
    rounded = value.quantize(Decimal(1).scaleb(-decimals), rounding=rounding, context=DIVIDE)
    if rounded == 0:
        rounded = abs(rounded)
    return f"{rounded:f}"


def reference_value(pcf_text: str, prices: dict[str, object] | None = None, decimals: int = 4) -> dict[str, str]:
    """{fund: published value} with the PCF's previous closes, overridden by ``prices``
    ({symbol: decimal text or number}; FX pairs are symbols too)."""
    funds, book = parse_pcf(pcf_text)
    for symbol, price in (prices or {}).items():
        book[symbol] = Decimal(str(price))
    return {f.name: round_half_up(exact_value(f, book), decimals) for f in funds}


def _finite_binary64(number) -> bool:
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _number(value) -> bool:
    """A JSON number (not a bool, string, container)."""
    return type(value) is int or type(value) is Decimal


def quote_sides(item: dict) -> dict[str, Decimal] | None:
    """{"bid"/"ask": value} of the sides the tick carries, or None when the quote is bad."""
    sides = {}
    for key in ("bid", "ask"):
        value = item.get(key)
        if value is None:
            continue
        if not _number(value) or not _finite_binary64(value) or value <= 0:
            return None
        sides[key] = Decimal(value)
    if len(sides) == 2 and sides["bid"] > sides["ask"]:
        return None
    return sides


def classify(item, known: set[str], last_ts: dict[str, int]) -> str:
    """Outcome of one decoded JSON value as a tick (does not change ``last_ts``)."""
    if type(item) is not dict:
        return "not_an_object"
    symbol = item.get("symbol")
    if symbol is None:
        return "missing_symbol"
    if type(symbol) is not str or symbol == "":
        return "bad_symbol"
    price = item.get("price")
    if price is None:
        return "missing_price"
    if type(price) is not int and type(price) is not Decimal:  # bool, str, list, dict
        return "bad_price_type"
    ts = item.get("ts")
    if ts is None:
        return "missing_ts"
    if type(ts) is not int or not 0 <= ts <= MAX_TS:  # bool, float (Decimal), str, out of range
        return "bad_ts"
    if quote_sides(item) is None:
        return "bad_quote"
    if not _finite_binary64(price):
        return "non_finite_price"
    if price <= 0:
        return "non_positive_price"
    if symbol not in known:
        return "unknown_symbol"
    if symbol in last_ts and ts < last_ts[symbol]:
        return "out_of_order"
    return "accepted"


WELL_FORMED = ("accepted", "unknown_symbol", "out_of_order")
#: Every outcome the contract names for a tape tick (``oversize_payload`` exists only live).
OUTCOMES = WELL_FORMED + ("malformed_json", "not_an_object", "missing_symbol", "bad_symbol",
                          "missing_price", "bad_price_type", "non_finite_price",
                          "non_positive_price", "bad_ts", "missing_ts", "bad_quote")


def decode_line(line: str) -> list | None:
    """The JSON values a tape line carries (an array's items), or None if it is not JSON."""
    try:
        doc = json.loads(line, parse_float=Decimal, parse_constant=_no_constants)
    except ValueError:  # JSONDecodeError is a ValueError
        return None
    return doc if type(doc) is list else [doc]


def reference_replay_sides(pcf_text: str, tape_lines: list[str], interval_ns: int, decimals: int = 4,
                           rounding: str = ROUND_HALF_UP, sides: bool = True):
    """(rows, outcome counts): rows are (boundary ts, fund, iopv, iopv_bid, iopv_ask, side
    fallback) in emission order, the three values as published fixed-point text (with
    ``sides=False`` only iopv is computed: bid and ask are None, fallback False)."""
    funds, prices = parse_pcf(pcf_text)
    book = Book(prices)
    known = set(prices)
    last_ts: dict[str, int] = {}
    counts: Counter[str] = Counter()
    rows: list[tuple[int, str, str, str, str, bool]] = []
    next_boundary = None

    def emit(boundary: int) -> None:
        for f in funds:
            if not sides:
                value = exact_value(f, book.side_prices(f, None))
                rows.append((boundary, f.name, round_half_up(value, decimals, rounding), None, None, False))
                continue
            value, bid, ask = (round_half_up(v, decimals, rounding) for v in book.sides(f))
            rows.append((boundary, f.name, value, bid, ask, book.fallback(f)))

    # Event time: each well-formed tick belongs to the first boundary at or after its ts; the
    # ticks are taken boundary by boundary, in file order within one (a stable sort).
    ticks = []
    for line in tape_lines:
        if not line.strip():
            continue
        items = decode_line(line)
        if items is None:
            counts["malformed_json"] += 1
            continue
        for item in items:
            outcome = classify(item, known, {})  # out_of_order is decided in event-time order below
            if outcome in WELL_FORMED:
                ticks.append((-(-item["ts"] // interval_ns) * interval_ns, len(ticks), item))
            else:
                counts[outcome] += 1
    for _, _, item in sorted(ticks, key=lambda t: t[:2]):
        outcome = classify(item, known, last_ts)
        counts[outcome] += 1
        if outcome not in WELL_FORMED:
            continue
        ts = item["ts"]
        if next_boundary is None:
            next_boundary = -(-ts // interval_ns) * interval_ns
        while ts > next_boundary:
            emit(next_boundary)
            next_boundary += interval_ns
        if outcome == "accepted":
            symbol = item["symbol"]
            book.last[symbol] = Decimal(item["price"])
            last_ts[symbol] = ts
            quote = quote_sides(item)
            if "bid" in quote:
                book.bid[symbol] = quote["bid"]
            if "ask" in quote:
                book.ask[symbol] = quote["ask"]
    if next_boundary is not None:
        emit(next_boundary)
    return rows, counts


def reference_replay_full(pcf_text: str, tape_lines: list[str], interval_ns: int, decimals: int = 4,
                          rounding: str = ROUND_HALF_UP):
    """(rows, outcome counts): rows are (boundary ts, fund, published value) in emission order."""
    rows, counts = reference_replay_sides(pcf_text, tape_lines, interval_ns, decimals, rounding, sides=False)
    return [row[:3] for row in rows], counts


def reference_replay(pcf_text: str, tape_lines: list[str], interval_ns: int,
                     decimals: int = 4) -> list[tuple[int, str, str]]:
    """Every (boundary ts, fund, published value as fixed-point text) the replay must emit."""
    return reference_replay_full(pcf_text, tape_lines, interval_ns, decimals)[0]
