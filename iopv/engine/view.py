"""The columns a reader of the values sees, written once: the browser board (``/api/board``),
``iopv tail`` and the demo's terminal table all take their rows from ``row``.

A row is computed from one published record (README "Outputs"), the time now, the interval and
the fund's reference value:

- ``change`` / ``change_bps``: the value against the reference: the PCF's ``prior_nav`` when the
  record carries it, else the caller's reference (``reference_values``: the basket at its
  previous closes), else none.
- ``premium_bps``: the record's own (the fund's market price against its value), when its ticker
  has ticked; ``market_price`` alongside.
- ``age_s``: seconds since the record's ``ts``.
- ``alerts``: why the row stands out, in this order: ``halted`` (status halted, or any halted
  holding), ``degraded`` (status degraded), ``recovering`` (the publishing instance's book may
  miss ticks: docs/scaling.md), ``stale`` (any stale holding), ``late`` (no newer
  value for more than ``LATE_INTERVALS`` intervals: the engine or the feed to this reader stopped).
  ``late_after_ns`` is when a row that receives no newer value becomes ``late``, so a live view
  can mark it without asking again.
"""

from __future__ import annotations

import math
from typing import Any

from iopv.core.universe import Universe
from iopv.engine.book import PriceBook
from iopv.engine.valuer import Valuer

#: A value older than this many intervals (plus ``LATE_GRACE_S``) is late.
LATE_INTERVALS = 2
LATE_GRACE_S = 1.0
#: The alert names, in the order they are listed.
ALERTS = ("halted", "degraded", "recovering", "stale", "late")
#: The columns every view shows, in order, with their headings.
COLUMNS = (("fund", "fund"), ("iopv", "value"), ("change_bps", "chg bp"), ("premium_bps", "prem bp"),
           ("status", "status"), ("coverage", "coverage"), ("age_s", "age s"), ("alerts", "alerts"))


def reference_values(universe: Universe, decimals: int) -> dict[str, float]:
    """Each fund's reference for the change column: its ``prior_nav`` when the PCF gives one,
    else its basket valued at the previous closes (the PCF's prices), rounded like a value."""
    at_close = Valuer(universe, decimals).value(PriceBook(universe)).tolist()
    out = {}
    for fund, info, value in zip(universe.funds, universe.fund_info, at_close):
        out[fund] = float(info["prior_nav"]) if "prior_nav" in info else float(value)
    return out


def late_after_ns(ts_ns: int, interval_s: float) -> int:
    return ts_ns + int((LATE_INTERVALS * interval_s + LATE_GRACE_S) * 1e9)


def alerts(record: dict[str, Any], *, now_ns: int, interval_s: float) -> list[str]:
    """Why a record stands out (empty: it does not)."""
    out = []
    status = record.get("status", "ok")
    if status == "halted" or record.get("halted", 0) > 0:
        out.append("halted")
    if status == "degraded":
        out.append("degraded")
    if "recovering" in record.get("flags", ()):
        out.append("recovering")
    if record.get("stale", 0) > 0:
        out.append("stale")
    if now_ns > late_after_ns(int(record["ts"]), interval_s):
        out.append("late")
    return out


def row(record: dict[str, Any], *, now_ns: int, interval_s: float, reference: float | None = None,
        decimals: int = 4) -> dict[str, Any]:
    """The view of one record. ``reference`` is used when the record has no ``prior_nav``."""
    value = record["iopv"]
    base = record.get("prior_nav", reference)
    change = change_bps = None
    if base and value is not None and math.isfinite(base):
        change = round(value - base, decimals)
        change_bps = round((value / base - 1.0) * 1e4, 2)
    ts_ns = int(record["ts"])
    return {
        "fund": record["fund"],
        "ts": ts_ns,
        "iopv": value,
        "reference": base,
        "change": change,
        "change_bps": change_bps,
        "market_price": record.get("market_price"),
        "premium_bps": record.get("premium_bps"),
        "status": record.get("status"),
        "coverage": record.get("coverage"),
        "age_s": round(max(0, now_ns - ts_ns) / 1e9, 3),
        "late_after_ns": late_after_ns(ts_ns, interval_s),
        "alerts": alerts(record, now_ns=now_ns, interval_s=interval_s),
        "realtime": bool(record.get("realtime", False)),
    }


def cells(view: dict[str, Any], decimals: int = 4) -> list[str]:
    """A row as the text of each column of ``COLUMNS`` (the terminal views)."""

    def num(value, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    coverage = view["coverage"]
    return [view["fund"], num(view["iopv"], f".{decimals}f"), num(view["change_bps"], "+.1f"),
            num(view["premium_bps"], "+.1f"), view["status"] or "",
            "" if coverage is None else f"{coverage * 100:.1f}%", f"{view['age_s']:.1f}",
            " ".join(view["alerts"])]
