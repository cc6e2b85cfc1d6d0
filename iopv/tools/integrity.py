"""Checks that a holdings file is whole before it becomes a basket (docs/importer.md,
"Integrity checks"): the weights add up to about 100 %, the market values to the fund the
largest holding's weight implies, the holdings count matches the file's own where it states
one, and ``--allow-unpriced`` leaves out no more than ``UNPRICED_LIMIT`` of the fund."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from iopv.tools.fxrates import printed_half_unit
from iopv.tools.model import Holdings, HoldingsError, Row

#: Percentage points the weights may miss 100 by, beyond their printed rounding: exports that
#: leave out the cash and derivative lines (EEM 2022: 99.29 %) and fees accrued.
WEIGHT_TOLERANCE_PCT = Decimal("1.0")
#: Relative gap allowed between the rows' market values and the fund value implied by the
#: largest holding's weight (market value x 100 / weight), beyond that weight's rounding.
VALUE_TOLERANCE = Decimal("0.01")
#: The most of the fund (by weight, else by market value) ``--allow-unpriced`` may leave out.
UNPRICED_LIMIT = Decimal("0.01")


def check_complete(holdings: Holdings) -> dict[str, Any]:
    """Facts for the report; raises ``HoldingsError`` when the file is cut short (or its
    weights or count are not those of a whole fund), saying what is missing."""
    rows = holdings.rows
    if not rows:
        raise HoldingsError(f"{holdings.path}: no holdings rows (the table is empty: file cut short?)")
    facts: dict[str, Any] = {"rows": len(rows), "table_ended": holdings.ended}
    last = rows[-1]
    tail = f"the last row read is {last.where} ({last.ticker or last.name!r}), then {holdings.ended}"
    weighted = [r for r in rows if r.weight is not None]
    if weighted:
        printed = sum((r.weight for r in weighted if not r.weight_below), Decimal(0))
        below = sum((r.weight for r in weighted if r.weight_below), Decimal(0))
        half = Counter(printed_half_unit(r.weight) for r in weighted if not r.weight_below).most_common(1)
        unit = 2 * half[0][0] if half else Decimal(0)
        # rounding errors of n printed weights: sd unit * sqrt(n / 12); allow four of them
        spread = unit * Decimal(4 * math.sqrt(len(weighted) / 12))
        low, high = printed - spread - WEIGHT_TOLERANCE_PCT, printed + below + spread + WEIGHT_TOLERANCE_PCT
        facts["weights_pct"] = {"printed_sum": str(printed), "below_bounds_sum": str(below),
                                "accepted": [str(low.quantize(Decimal('0.01'))), str(high.quantize(Decimal('0.01')))]}
        if high < 100:
            raise HoldingsError(
                f"{holdings.path}: file cut short? its {len(rows)} rows carry {printed}% of the fund by their weights "
                f"(expected 100% within {WEIGHT_TOLERANCE_PCT + spread:.2f} points): "
                f"about {100 - printed - below:.2f}% "
                f"of the holdings are missing; {tail}")
        if low > 100:
            raise HoldingsError(f"{holdings.path}: the weights sum to {printed}%, above 100% by more than "
                                f"{WEIGHT_TOLERANCE_PCT + spread:.2f} points: rows repeated, or another column "
                                "read as weight?")
    valued = [r for r in weighted if r.market_value is not None and not r.weight_below and r.weight > 0]
    if valued and all(r.market_value is not None for r in rows):
        big = max(valued, key=lambda r: r.weight)
        implied = big.market_value * 100 / big.weight
        total = sum((r.market_value for r in rows), Decimal(0))
        ratio = total / implied
        slack = VALUE_TOLERANCE + printed_half_unit(big.weight) / big.weight
        facts["value_vs_weights"] = {"market_value_sum": str(total), "implied_by": big.where,
                                     "implied_total": str(implied.quantize(Decimal(1))), "ratio": f"{ratio:.6f}"}
        if abs(ratio - 1) > slack:
            raise HoldingsError(
                f"{holdings.path}: file cut short? the rows' market values sum to {total:,.2f}, {ratio:.2%} of the "
                f"{implied:,.0f} that {big.where} ({big.ticker or big.name}: {big.market_value:,.2f} at {big.weight}%) "
                f"implies: about {1 - ratio:.2%} of the fund is missing; {tail}")
    if holdings.stated_count is not None:
        counted = sum(1 for r in rows if r.kind in holdings.stated_count_kinds or not holdings.stated_count_kinds)
        facts["holdings_count"] = {"stated": holdings.stated_count, "read": counted}
        if counted != holdings.stated_count:
            raise HoldingsError(f"{holdings.path}: the file states {holdings.stated_count} securities but has "
                                f"{counted} rows of them: {holdings.stated_count - counted} missing "
                                f"(file cut short?); {tail}")
    return facts


def left_out_share(rows: Iterable[Row], left_out: Iterable[str]) -> tuple[Decimal, str]:
    """(share of the fund in the rows ``left_out`` (their ``where``), basis: "weight" or
    "market value"); 1 when neither is known for them."""
    rows = list(rows)
    gone = set(left_out)
    if not gone:
        return Decimal(0), "weight"
    out = [r for r in rows if r.where in gone]
    if all(r.weight is not None for r in rows):
        total = sum((abs(r.weight) for r in rows), Decimal(0))
        return (sum((abs(r.weight) for r in out), Decimal(0)) / total if total else Decimal(1)), "weight"
    if all(r.market_value is not None for r in rows):
        total = sum((abs(r.market_value) for r in rows), Decimal(0))
        return (sum((abs(r.market_value) for r in out), Decimal(0)) / total if total else Decimal(1)), "market value"
    return Decimal(1), "unknown"
