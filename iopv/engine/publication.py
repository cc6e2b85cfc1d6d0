"""What one boundary publishes: a record per fund, encoded once, shared by every sink.

Every record starts with the contract fields ``fund``, ``ts``, ``iopv``; the extensions follow
(docs/methodology.md and README "Outputs"): ``iopv_bid``, ``iopv_ask``, ``coverage``, ``stale``,
``halted``, ``status``, ``flags``, ``basket``, and when known ``as_of``, the PCF's vendor fields
(``estimated_cash``, ``total_cash``, ``shares_outstanding``, ``prior_nav``) and the fund's own
``market_price`` with ``premium_bps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from iopv.core.constants import FUND_FLAG_WORDS, FUND_STATUS_WORDS, CountRow, RatioRow, Side
from iopv.core.universe import Universe
from iopv.engine.codec import encode_record

#: Decimals of the published coverage fraction and premium in basis points.
COVERAGE_DECIMALS = 4
PREMIUM_DECIMALS = 2

_FLAG_LISTS = [[name for bit, name in enumerate(FUND_FLAG_WORDS) if bits & (1 << bit)]
               for bits in range(1 << len(FUND_FLAG_WORDS))]


@dataclass(frozen=True, slots=True)
class Publication:
    """The values of every fund at one boundary. ``payloads[i]`` is the JSON of ``records[i]``."""

    ts_ns: int
    funds: tuple[str, ...]
    records: list[dict[str, Any]]
    payloads: list[bytes]
    #: False when the instance's book was not whole: every record is flagged ``recovering``.
    whole: bool = True


def static_fields(universe: Universe) -> list[dict[str, Any]]:
    """The per-fund fields that come from the basket file and do not change intraday."""
    out = []
    for f, info in enumerate(universe.fund_info):
        fields: dict[str, Any] = {"basket": universe.version}
        if "as_of" in info:
            fields["as_of"] = info["as_of"]
        fields["estimated_cash"] = float(universe.fund_cash[f])
        for key in ("total_cash", "shares_outstanding", "prior_nav"):
            if key in info:
                fields[key] = info[key]
        out.append(fields)
    return out


def build_publication(universe: Universe, ts_ns: int, values, *, static: list[dict] | None = None,
                      columns: np.ndarray | None = None, extra: dict[str, Any] | None = None,
                      whole: bool = True) -> Publication:
    """Records for every fund, in PCF order, and their JSON. ``values`` is a ``Frame`` (every
    field) or a plain array of rounded values (the contract fields only). With ``columns`` the
    Frame covers only those funds (column k is fund ``columns[k]``); ``extra`` fields are added
    to every record."""
    funds = universe.funds
    if isinstance(values, np.ndarray):
        records = [{"fund": fund, "ts": ts_ns, "iopv": value}
                   for fund, value in zip(funds, values.tolist())]
        return Publication(ts_ns, funds, records, [encode_record(r) for r in records])
    frame = values
    if static is None:
        static = static_fields(universe)
    if columns is not None:
        funds = tuple(funds[i] for i in columns.tolist())
        static = [static[i] for i in columns.tolist()]
    if extra:
        static = [{**fields, **extra} for fields in static]
    rounded = frame.rounded
    coverage = np.round(frame.ratio[RatioRow.COVERAGE], COVERAGE_DECIMALS).tolist()
    records = []
    for fund, value, bid, ask, cov, stale, halted, flags, status, market, fields in zip(
            funds, rounded[Side.VALUE].tolist(), rounded[Side.BID].tolist(),
            rounded[Side.ASK].tolist(), coverage, frame.count[CountRow.STALE_HOLDINGS].tolist(),
            frame.count[CountRow.HALTED_HOLDINGS].tolist(), frame.count[CountRow.FUND_FLAGS].tolist(),
            frame.count[CountRow.FUND_STATUS].tolist(), frame.market.tolist(), static):
        record = {"fund": fund, "ts": ts_ns, "iopv": value, "iopv_bid": bid, "iopv_ask": ask,
                  "coverage": cov, "stale": stale, "halted": halted,
                  "status": FUND_STATUS_WORDS[status], "flags": _FLAG_LISTS[flags]}
        record.update(fields)
        if not math.isnan(market):
            record["market_price"] = market
            if value != 0.0:
                record["premium_bps"] = round((market - value) / abs(value) * 1e4, PREMIUM_DECIMALS)
        records.append(record)
    return Publication(ts_ns, funds, records, [encode_record(r) for r in records], whole)
