"""Explain one fund's value at one boundary, holding by holding, in exact decimal arithmetic.

Given the engine right after a boundary's cycle (a journal replay stops there), ``explain``
lists every holding's shares, the price the valuation used -- its tick time and where it came from
(a tick this process or the restored state saw, or the basket file's previous close), the bid and
ask when the fund is valued at mid -- the FX rate and its time, the contribution shares x price x
rate, and the stale / halted flags; then the cash, the exact decimal sum, the value per share, its
rounding to the published digit (half away from zero) and the value the engine published, which
must be equal. Prices are the decimals of the float64 values' shortest text, as the valuation's
exact tie resolution (``iopv.engine.valuer``) reads them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

from iopv.core.constants import FIXED_TS, PriceBasis, Side, SlotBit
from iopv.engine.book import NEVER
from iopv.engine.cycle import Engine
from iopv.engine.publication import Publication
from iopv.engine.valuer import exact_value, round_half_up


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def iso_ns(ts_ns: int) -> str:
    stamp = dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts_ns % 1_000_000_000:09d}Z"


def _price(engine: Engine, slot: int, mid: bool) -> dict:
    """The price a slot contributes at the value side, with its provenance."""
    book = engine.book
    last, bid, ask = float(book.prices[slot]), float(book.bid[slot]), float(book.ask[slot])
    ticked = int(book.last_ts[slot])
    quoted = not (np.isnan(bid) or np.isnan(ask))
    if mid and quoted:
        used, basis = (_dec(bid) + _dec(ask)) / 2, "mid"
    else:
        used, basis = _dec(last), "last"
    source = "previous_close" if ticked == NEVER else "fixed" if ticked == FIXED_TS else "tick"
    out = {"price": used, "basis": basis, "source": source, "tick_ts": ticked if source == "tick" else None,
           "last": last}
    if mid:
        out["bid"] = None if np.isnan(bid) else bid
        out["ask"] = None if np.isnan(ask) else ask
    return out


def explain(engine: Engine, fund: str, publication: Publication) -> dict:
    """The explanation of ``fund`` at ``publication``'s boundary; ``engine`` must stand right
    after that boundary's cycle. Raises KeyError for a fund not in the basket."""
    u = engine.universe
    f = u.funds.index(fund) if fund in u.funds else None
    if f is None:
        raise KeyError(fund)
    record = publication.records[f]
    decimals = engine.valuer.decimals
    mid = bool(u.fund_basis[f] == PriceBasis.MID)
    bits = engine.valuer.slot_bits
    one = u.one_index
    holdings = []
    with localcontext() as ctx:
        ctx.prec = 400  # products and sums of float decimals stay exact
        total = _dec(u.fund_cash[f])
        for h in range(int(u.fund_offsets[f]), int(u.fund_offsets[f + 1])):
            slot = int(u.holding_security[h])
            fx_slot = int(u.holding_fx[h])
            shares = _dec(u.holding_shares[h])
            price = _price(engine, slot, mid)
            row = {"symbol": engine.book.symbols[slot], "shares": shares, **price,
                   "stale": bool(bits[slot] & SlotBit.STALE), "halted": bool(bits[slot] & SlotBit.HALTED)}
            rate = Decimal(1)
            if fx_slot != one:
                fx = _price(engine, fx_slot, mid)
                rate = fx["price"]
                row["fx"] = {"pair": engine.book.symbols[fx_slot], "rate": rate, "source": fx["source"],
                             "tick_ts": fx["tick_ts"], "stale": bool(bits[fx_slot] & SlotBit.STALE)}
            row["contribution"] = shares * price["price"] * rate
            total += row["contribution"]
            holdings.append(row)
        unit = _dec(u.fund_creation_unit[f])
        exact = Fraction(total) / Fraction(unit)
        ctx.prec = 40
        per_share = Decimal(exact.numerator) / Decimal(exact.denominator)
    rounded = round_half_up(exact, decimals)
    engine_exact = exact_value(u, (engine.book.prices, engine.book.bid, engine.book.ask), f, Side.VALUE)
    return {
        "fund": fund, "boundary_ns": publication.ts_ns, "boundary": iso_ns(publication.ts_ns),
        "basket": u.version, "price_basis": "mid" if mid else "last", "currency": u.fund_currency[f],
        "holdings": holdings, "cash": _dec(u.fund_cash[f]), "sum": total, "creation_unit": unit,
        "per_share": per_share, "per_share_exact": exact == Fraction(per_share),
        "decimals": decimals, "rounded": f"{rounded:.{decimals}f}", "published": record["iopv"],
        "equal": rounded == record["iopv"] and exact == engine_exact,
        "record": record,
    }


def to_json(explanation: dict) -> dict:
    """The explanation with decimals as strings (exact) for JSON."""
    def convert(value):
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value
    return convert(explanation)


def to_text(e: dict) -> str:
    """A readable table of the explanation."""
    lines = [f"{e['fund']} at {e['boundary']} (ts {e['boundary_ns']}), basket {e['basket']}, "
             f"price basis {e['price_basis']}", ""]
    header = f"{'symbol':<12} {'shares':>14} {'price used':>18} {'source':<15} {'tick time':<31} " \
             f"{'fx rate':>12} {'contribution':>28} flags"
    lines.append(header)
    for h in e["holdings"]:
        when = iso_ns(h["tick_ts"]) if h["tick_ts"] is not None else "-"
        fx = h.get("fx")
        flags = ",".join(name for name in ("stale", "halted") if h[name]) or "-"
        lines.append(f"{h['symbol']:<12} {h['shares']!s:>14} {h['price']!s:>18} {h['source']:<15} {when:<31} "
                     f"{(str(fx['rate']) if fx else '1'):>12} {h['contribution']!s:>28} {flags}")
        if "bid" in h:
            lines.append(f"{'':<12} {'':>14} bid {h['bid']} ask {h['ask']} last {h['last']} ({h['basis']})")
        if fx:
            fx_when = iso_ns(fx["tick_ts"]) if fx["tick_ts"] is not None else "-"
            lines.append(f"{'':<12} {'':>14} fx {fx['pair']} = {fx['rate']} from {fx['source']} at {fx_when}")
    lines += ["", f"cash {e['cash']}", f"sum (exact) {e['sum']}", f"creation unit {e['creation_unit']}",
              f"per share {e['per_share']}{'' if e['per_share_exact'] else '...'}",
              f"rounded to {e['decimals']} decimals, half away from zero: {e['rounded']}",
              f"published: {e['published']}  ({'EQUAL' if e['equal'] else 'DIFFERENT'})"]
    return "\n".join(lines)
