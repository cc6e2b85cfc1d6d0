"""The FX seed rates of an imported basket: fund currency per unit of each holding currency
(the PCF's ``fx`` map), taken from the file itself (docs/importer.md, "FX rates").

In order: ``--fx CCY=RATE``; the currency's own cash row, whose quantity (local, whole units) over
its market value (fund currency, to the cent) gives the rate to 7+ digits, used when it rounds to
the row's printed ``FX Rate``; else the printed ``FX Rate`` inverted (iShares prints it local per
USD with 2 decimals: 1.36 for 1.3588 AUD, so a close derived through it is off by up to 0.4 %
against the local market until the rate ticks -- hence the cash row first)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import Context, Decimal

from iopv.tools.model import Instrument, Row

#: Digits of every derived number written to the basket: a float64 carries 15 exactly.
DIGITS = Context(prec=15)


def printed_half_unit(value: Decimal) -> Decimal:
    """Half a unit of the last printed digit: ``1.36`` -> 0.005."""
    return Decimal(5).scaleb(value.as_tuple().exponent - 1)


def file_rates(rows: Iterable[Row], fund_currency: str,
               overrides: Mapping[str, Decimal] | None = None) -> tuple[dict[str, Decimal], dict[str, str]]:
    """({currency: fund currency per unit}, {currency: where the rate came from}) for every
    non-fund currency the rows name and the file or ``overrides`` can price."""
    rows = list(rows)
    rates: dict[str, Decimal] = {}
    sources: dict[str, str] = {}
    for ccy, rate in (overrides or {}).items():
        rates[ccy] = rate
        sources[ccy] = "--fx"
    printed: dict[str, Counter] = {}
    for row in rows:
        if row.currency and row.currency != fund_currency and row.fx_rate and row.fx_rate > 0:
            printed.setdefault(row.currency, Counter())[row.fx_rate] += 1
    cash_rows: dict[str, Row] = {}
    for row in rows:
        if (row.kind == Instrument.CASH and row.currency and row.currency != fund_currency and row.quantity
                and row.market_value and row.quantity > 0 and row.market_value > 0):
            best = cash_rows.get(row.currency)
            if best is None or row.market_value > best.market_value:
                cash_rows[row.currency] = row
    for ccy in sorted(set(printed) | set(cash_rows)):
        if ccy in rates:
            continue
        shown = printed[ccy].most_common(1)[0][0] if ccy in printed else None
        cash = cash_rows.get(ccy)
        if cash is not None:
            local_per_fund = cash.quantity / cash.market_value
            # the quantity is rounded to a whole unit and the value to a cent
            slack = local_per_fund * (Decimal("0.5") / cash.quantity + Decimal("0.005") / cash.market_value)
            if shown is None or abs(local_per_fund - shown) <= printed_half_unit(shown) + slack:
                rates[ccy] = DIGITS.divide(cash.market_value, cash.quantity)
                sources[ccy] = f"cash row {cash.where} (quantity / market value)"
                continue
        if shown is not None:
            rates[ccy] = DIGITS.divide(1, shown)
            sources[ccy] = (f"printed FX Rate {shown} ({ccy} per {fund_currency}, "
                            f"+-{printed_half_unit(shown) / shown:.2%}: so are the local closes derived through it)")
    return rates, sources
