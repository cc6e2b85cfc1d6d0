"""Seeded random basket files and tick tapes (valid and hostile) for the reference tests.

Every number is written as short decimal text (at most 15 significant digits), so the JSON a
test hands to the engine and to the reference carries exactly the same values.
"""

from __future__ import annotations

import json
import random
import string

#: Tue 2023-11-14 15:00:00 UTC (10:00 in New York): inside an exchange session, so tapes value
#: the same under an always-open calendar and a trading-hours one.
BASE_TS_NS = 1_699_974_000_000_000_000
#: USD-based rates the generated FX pairs are seeded from (pair text keeps 4-6 decimals).
FX_CURRENCIES = ("EUR", "GBP", "JPY")
USD_PER = {"USD": 1.0, "EUR": 1.0842, "GBP": 1.2671, "JPY": 0.006712}


def _decimal(rng: random.Random, low: float, high: float, places: int) -> float:
    """A float whose repr is a decimal with at most ``places`` decimals."""
    return float(f"{rng.uniform(low, high):.{places}f}")


def _symbols(rng: random.Random, n: int) -> list[str]:
    # 2-5 characters: never six letters, so no symbol can be mistaken for an FX pair.
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(2, 4)))
                  + rng.choice(string.digits + string.ascii_uppercase))
    return sorted(names)


def fx_rate(rng: random.Random, ccy: str, fund_ccy: str) -> float:
    rate = USD_PER[ccy] / USD_PER[fund_ccy] * rng.uniform(0.97, 1.03)
    places = 6 if rate < 0.1 else rng.randint(4, 6)
    return float(f"{rate:.{places}f}")


def random_universe(rng: random.Random, n_funds: int, *, max_holdings: int = 60,
                    n_symbols: int | None = None, mid: float = 0.0) -> list[dict]:
    """A valid PCF document: ``n_funds`` random funds plus, always, an all-cash fund, an FX fund
    in EUR, and tie-prone funds (integer shares, cent prices, creation units 2, 200, 20000)
    whose values land exactly on rounding ties for 2, 4 or 6 decimals about half the time.

    ``mid`` > 0: each fund is valued at mid prices (``"price_basis": "mid"``) with that
    probability (some others say ``"last"`` explicitly), and two more tie-prone funds, ``MID2``
    (USD) and ``MIDEUR`` (EUR, FX holdings), always are. 0 keeps the documents (and the random
    stream) of the seeds other tests depend on."""
    n_symbols = n_symbols or max(8, min(400, n_funds * max_holdings // 2))
    symbols = _symbols(rng, n_symbols)
    currency = {s: ("USD" if rng.random() < 0.8 else rng.choice(FX_CURRENCIES)) for s in symbols}
    close = {}
    for s in symbols:
        if currency[s] == "JPY":
            close[s] = _decimal(rng, 100, 40000, rng.randint(2, 3))
        else:
            close[s] = _decimal(rng, 0.5, 900, rng.randint(2, 4))
    rates: dict[tuple[str, str], float] = {}

    def rate(ccy: str, fund_ccy: str) -> float:
        if (ccy, fund_ccy) not in rates:
            rates[ccy, fund_ccy] = fx_rate(rng, ccy, fund_ccy)
        return rates[ccy, fund_ccy]

    def fund(name: str, fund_ccy: str, chosen: list[str], *, unit: float, integer_shares: bool,
             cash: float) -> dict:
        holdings = []
        for s in chosen:
            if integer_shares or rng.random() < 0.8:
                shares: float = rng.randint(0, 5000)
            else:
                shares = _decimal(rng, 0, 5000, rng.randint(1, 4))
            holding = {"symbol": s, "shares": shares, "price": close[s]}
            if currency[s] != fund_ccy or rng.random() < 0.1:
                holding["currency"] = currency[s]
            holdings.append(holding)
        doc = {"fund": name, "creation_unit": unit, "currency": fund_ccy, "cash": cash,
               "holdings": holdings}
        needed = sorted({currency[s] for s in chosen} - {fund_ccy})
        if needed or rng.random() < 0.2:
            doc["fx"] = {ccy: rate(ccy, fund_ccy) for ccy in needed}
        return doc

    funds = []
    for k in range(n_funds):
        chosen = rng.sample(symbols, rng.randint(0, min(max_holdings, len(symbols))))
        unit = rng.choice((50000, 50000, 50000, 25000, 100000, 1, 3))
        cash = _decimal(rng, -20000, 60000, 2)
        funds.append(fund(f"F{k:03d}", "USD", chosen, unit=unit, integer_shares=False, cash=cash))
    funds.append({"fund": "CASH", "creation_unit": 50000, "currency": "USD",
                  "cash": _decimal(rng, -5e6, 5e6, 2), "holdings": []})
    chosen = rng.sample(symbols, min(len(symbols), rng.randint(1, 12)))
    funds.append(fund("EURF", "EUR", chosen, unit=50000, integer_shares=False,
                      cash=_decimal(rng, -500, 500, 2)))
    usd_cent = [s for s in symbols if currency[s] == "USD" and round(close[s], 2) == close[s]]
    for unit in (2, 200, 20000):
        chosen = rng.sample(usd_cent, min(len(usd_cent), rng.randint(1, 6)))
        funds.append(fund(f"TIE{unit}", "USD", chosen, unit=unit, integer_shares=True,
                          cash=_decimal(rng, -100, 100, 2)))
    if mid > 0:
        for f in funds:
            roll = rng.random()
            if roll < mid:
                f["price_basis"] = "mid"
            elif roll < mid + 0.1:
                f["price_basis"] = "last"
        chosen = rng.sample(usd_cent, min(len(usd_cent), rng.randint(1, 4)))
        funds.append(dict(fund("MID2", "USD", chosen, unit=2, integer_shares=True,
                               cash=_decimal(rng, -100, 100, 2)), price_basis="mid"))
        foreign = [s for s in symbols if currency[s] != "EUR"]
        chosen = rng.sample(foreign, min(len(foreign), rng.randint(1, 4)))
        funds.append(dict(fund("MIDEUR", "EUR", chosen, unit=200, integer_shares=True,
                               cash=_decimal(rng, -100, 100, 2)), price_basis="mid"))
    rng.shuffle(funds)
    return funds


def book_symbols(doc: list[dict]) -> tuple[list[str], list[str]]:
    """(holding symbols, FX pair symbols) of a PCF document."""
    holdings = sorted({h["symbol"] for f in doc for h in f["holdings"]})
    pairs = sorted({ccy + f["currency"] for f in doc for ccy in f.get("fx", {}) if ccy != f["currency"]})
    return holdings, pairs


def _price_text(rng: random.Random, last: float, places: int) -> float:
    move = last * (1 + rng.gauss(0, 0.003))
    return max(float(f"{move:.{places}f}"), 10.0**-places)


HOSTILE_KINDS = (
    "malformed", "nan_literal", "price_string", "price_bool", "price_zero", "price_negative",
    "missing_price", "price_null", "missing_symbol", "symbol_number", "symbol_empty", "unknown",
    "ts_float", "ts_string", "ts_negative", "ts_bool", "ts_too_big", "ts_missing", "nested_price",
    "list_price", "scalar", "empty_array", "blank", "nested_array", "out_of_order",
)
#: Hostile quotes (``random_tape(quotes=...)``): bad_quote, except NaN literals (malformed JSON)
#: and ``quote_null`` (a null side is absent: the tick is good).
QUOTE_HOSTILE_KINDS = (
    "quote_crossed", "quote_zero", "quote_negative", "quote_string", "quote_bool", "quote_container",
    "quote_nan_literal", "quote_huge", "quote_unknown_symbol", "quote_out_of_order", "quote_null",
)


def random_tape(rng: random.Random, universe_doc: list[dict], n_ticks: int, *,
                interval_ns: int = 15_000_000_000, boundaries: int = 8, hostile: float = 0.15,
                batch: float = 0.1, huge_numbers: str = "alone", quotes: float = 0.0) -> list[str]:
    """JSON lines: price and FX ticks on a jittered clock spanning about ``boundaries`` intervals,
    array lines, and a fraction ``hostile`` of bad lines of every kind in ``HOSTILE_KINDS``.

    ``huge_numbers``: "none", "alone" (10**400 / 1e400 prices, each on a line of its own) or
    "anywhere" (inside array lines with good ticks as well).

    ``quotes`` > 0: that share of good ticks (FX rates included) carries an independent quote in
    the price's decimals -- both sides (bid <= ask, the trade usually inside, sometimes just
    outside; sometimes locked bid = ask), or only a bid, or only an ask -- and hostile lines
    draw from ``QUOTE_HOSTILE_KINDS`` as well. 0 keeps the tapes of the seeds other tests use."""
    holdings, pairs = book_symbols(universe_doc)
    known = holdings + pairs
    last_price: dict[str, float] = {}
    places: dict[str, int] = {}
    for f in universe_doc:
        for h in f["holdings"]:
            last_price[h["symbol"]] = h["price"]
            # Ticks keep the close's decimals (2-4), so tie-prone funds stay tie-prone.
            places[h["symbol"]] = max(2, len(repr(h["price"]).partition(".")[2]))
        for ccy, r in f.get("fx", {}).items():
            if ccy != f["currency"]:
                last_price[ccy + f["currency"]] = r
                places[ccy + f["currency"]] = 6
    accepted_ts: dict[str, int] = {}
    mean_gap = max(1, interval_ns * boundaries // max(1, n_ticks))
    clock = BASE_TS_NS + rng.randrange(interval_ns)

    def advance() -> int:
        nonlocal clock
        roll = rng.random()
        if roll < 0.01:  # a silence of several intervals
            clock += rng.randint(2, 4) * interval_ns + rng.randrange(interval_ns)
        elif roll < 0.04:  # exactly on a boundary
            clock = -(-clock // interval_ns) * interval_ns
        elif roll < 0.1:  # same ts as the previous tick
            pass
        else:
            clock += int(rng.expovariate(1 / mean_gap)) + rng.choice((0, 1_000_000, 1))
        return clock

    def good() -> dict:
        symbol = rng.choice(pairs) if pairs and rng.random() < 0.15 else rng.choice(known or ["NONE"])
        ts = advance()
        if rng.random() < 0.05:  # jitter backwards: out of order if the symbol ticked later
            ts = max(0, ts - rng.randint(1, 3) * mean_gap)
        price = _price_text(rng, last_price.get(symbol, 10.0), places.get(symbol, 2))
        last_price[symbol] = price
        tick = {"symbol": symbol, "price": price, "ts": ts}
        if quotes and rng.random() < quotes:
            tick.update(quote(price, places.get(symbol, 2)))
            if rng.random() < 0.2:
                tick["size"] = rng.randint(1, 900)
        elif rng.random() < 0.1:
            tick.update(bid=price, ask=price, size=rng.randint(1, 900))
        if ts >= accepted_ts.get(symbol, -1):
            accepted_ts[symbol] = ts
        return tick

    def quote(price: float, places: int) -> dict:
        tick = 10.0**-places
        centre = price + rng.randint(-2, 2) * tick if rng.random() < 0.2 else price
        bid = max(float(f"{centre - rng.randint(0, 6) * tick:.{places}f}"), tick)
        ask = max(float(f"{centre + rng.randint(0, 6) * tick:.{places}f}"), bid)
        roll = rng.random()
        if roll < 0.6:
            return {"bid": bid, "ask": ask}
        return {"bid": bid} if roll < 0.8 else {"ask": ask}

    def bad_quote(kind: str, symbol: str, ts: int, price: float) -> object:
        side = rng.choice(("bid", "ask"))
        other = "ask" if side == "bid" else "bid"
        tick: dict = {"symbol": symbol, "price": price, "ts": ts}
        if rng.random() < 0.5:  # the other side valid (or absent)
            tick[other] = price
        if kind == "quote_crossed":
            tick.update(bid=price + rng.choice((0.01, 1.0)), ask=price)
        elif kind == "quote_zero":
            tick[side] = rng.choice((0, 0.0, -0.0))
        elif kind == "quote_negative":
            tick[side] = -price
        elif kind == "quote_string":
            tick[side] = str(price)
        elif kind == "quote_bool":
            tick[side] = rng.random() < 0.5
        elif kind == "quote_container":
            tick[side] = rng.choice(([price], {"value": price}))
        elif kind == "quote_null":
            tick[side] = None
        elif kind in ("quote_nan_literal", "quote_huge"):
            literal = rng.choice(("NaN", "Infinity", "-Infinity") if kind == "quote_nan_literal"
                                 else ("1" + "0" * 400, "1e400", "-1e400"))
            tick[side] = "__QUOTE__"
            return "#" + json.dumps(tick).replace('"__QUOTE__"', literal)
        elif kind == "quote_unknown_symbol":  # a bad quote wins: rejected, the clock stays
            tick.update(symbol=rng.choice(("ZZZZZZZ", "NOPE.X")), ts=advance(), bid=price + 1, ask=price)
        elif kind == "quote_out_of_order":
            stale = _stale(symbol, price)
            tick.update(symbol=stale["symbol"], ts=max(0, stale["ts"]), bid=-price)
        return tick

    def huge() -> str:
        symbol = rng.choice(known or ["NONE"])
        number = rng.choice(("1" + "0" * 400, "1e400", "-1e400"))
        return f'{{"symbol": {json.dumps(symbol)}, "price": {number}, "ts": {advance()}}}'

    def bad() -> object:
        """A hostile tick (a dict, or raw JSON text marked with a leading '#')."""
        kind = rng.choice(HOSTILE_KINDS + QUOTE_HOSTILE_KINDS if quotes else HOSTILE_KINDS)
        symbol = rng.choice(known or ["NONE"])
        ts = clock + rng.randint(0, 1000)
        price = _price_text(rng, last_price.get(symbol, 10.0), 2)
        if kind in QUOTE_HOSTILE_KINDS:
            return bad_quote(kind, symbol, ts, price)
        return {
            "malformed": lambda: "#" + rng.choice(('{"symbol": "X", "price": 1.5', "not json", '{"symbol": "A",}',
                                                    "{'symbol': 'A'}", '[{"symbol": "A"}', "}{")),
            "nan_literal": lambda: "#" + (f'{{"symbol": "{symbol}", '
                                          f'"price": {rng.choice(("NaN", "Infinity", "-Infinity"))}, "ts": {ts}}}'),
            "price_string": lambda: {"symbol": symbol, "price": "12.3", "ts": ts},
            "price_bool": lambda: {"symbol": symbol, "price": rng.random() < 0.5, "ts": ts},
            "price_zero": lambda: {"symbol": symbol, "price": rng.choice((0, 0.0, -0.0)), "ts": ts},
            "price_negative": lambda: {"symbol": symbol, "price": -price, "ts": ts},
            "missing_price": lambda: {"symbol": symbol, "ts": ts},
            "price_null": lambda: {"symbol": symbol, "price": None, "ts": ts},
            "missing_symbol": lambda: {"price": price, "ts": ts},
            "symbol_number": lambda: {"symbol": rng.choice((42, 1.5, True)), "price": price, "ts": ts},
            "symbol_empty": lambda: {"symbol": "", "price": price, "ts": ts},
            "unknown": lambda: {"symbol": rng.choice(("ZZZZZZZ", "aapl", "NOPE.X", "ÄÖÜ")), "price": price,
                                "ts": advance()},
            "ts_float": lambda: {"symbol": symbol, "price": price, "ts": float(ts)},
            "ts_string": lambda: {"symbol": symbol, "price": price, "ts": str(ts)},
            "ts_negative": lambda: {"symbol": symbol, "price": price, "ts": -ts},
            "ts_bool": lambda: {"symbol": symbol, "price": price, "ts": True},
            "ts_too_big": lambda: {"symbol": symbol, "price": price, "ts": rng.choice((2**63, 2**64 + 1))},
            "ts_missing": lambda: {"symbol": symbol, "price": price},
            "nested_price": lambda: {"symbol": symbol, "price": {"value": price}, "ts": ts},
            "list_price": lambda: {"symbol": symbol, "price": [price], "ts": ts},
            "scalar": lambda: "#" + rng.choice(("42", "null", '"AAPL"', "true", "12.5")),
            "empty_array": lambda: "#[]",
            "blank": lambda: "#" + rng.choice(("", "   ", "\t")),
            "nested_array": lambda: "#" + json.dumps([[{"symbol": symbol, "price": price, "ts": ts}]]),
            "out_of_order": lambda: _stale(symbol, price),
        }[kind]()

    def _stale(symbol: str, price: float) -> dict:
        seen = [s for s in accepted_ts if accepted_ts[s] > 0]
        if not seen:
            return {"symbol": symbol, "price": price, "ts": -1}
        s = rng.choice(seen)
        return {"symbol": s, "price": price, "ts": accepted_ts[s] - rng.randint(1, 10**9)}

    def text(item: object) -> str:
        if isinstance(item, str) and item.startswith("#"):
            return item[1:]
        return json.dumps(item, ensure_ascii=rng.random() < 0.5)

    lines: list[str] = []
    emitted = 0
    while emitted < n_ticks:
        roll = rng.random()
        if huge_numbers != "none" and roll < 0.01:
            lines.append(huge())
            emitted += 1
        elif roll < hostile:
            lines.append(text(bad()))
            emitted += 1
        elif roll < hostile + batch:
            items = []
            for _ in range(rng.randint(1, 8)):
                r = rng.random()
                if r < 0.25:
                    item = bad()
                    if isinstance(item, str):  # raw text cannot sit inside an array
                        item = {"symbol": 7, "price": 1.0, "ts": clock}
                    items.append(json.dumps(item))
                elif r < 0.3 and huge_numbers == "anywhere":
                    items.append(huge())
                else:
                    items.append(json.dumps(good()))
            lines.append("[" + ", ".join(items) + "]")
            emitted += len(items)
        else:
            lines.append(text(good()))
            emitted += 1
    return lines
