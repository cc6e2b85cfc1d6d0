"""The readers' columns (iopv.engine.view), the API's parameter parsing and history decoding,
and the terminal table: no servers."""

from __future__ import annotations

import io

import numpy as np
import pytest

from iopv.adapters.redis.history import decode_entry
from iopv.adapters.redis.sink import field_args
from iopv.cli.display import TableView, values_table
from iopv.core.universe import build_universe
from iopv.engine import view
from iopv.service.api import BadParameter, parse_time_ns

S = 1_000_000_000
TS = 1_700_000_010 * S


def record(**fields):
    base = {"fund": "F", "ts": TS, "iopv": 10.5, "iopv_bid": 10.49, "iopv_ask": 10.51, "coverage": 0.95,
            "stale": 0, "halted": 0, "status": "ok", "flags": [], "basket": "abc", "estimated_cash": 1.5}
    return {**base, **fields}


def test_change_is_against_prior_nav_when_the_record_has_it_else_the_reference():
    with_nav = view.row(record(prior_nav=10.0), now_ns=TS, interval_s=15, reference=20.0)
    assert with_nav["reference"] == 10.0 and with_nav["change"] == 0.5 and with_nav["change_bps"] == 500.0
    fallback = view.row(record(), now_ns=TS, interval_s=15, reference=10.5)
    assert fallback["change"] == 0.0 and fallback["change_bps"] == 0.0
    none = view.row(record(), now_ns=TS, interval_s=15)
    assert none["change"] is None and none["change_bps"] is None


def test_premium_and_market_price_come_from_the_record():
    row = view.row(record(market_price=10.6, premium_bps=95.24), now_ns=TS, interval_s=15)
    assert row["market_price"] == 10.6 and row["premium_bps"] == 95.24
    assert view.row(record(), now_ns=TS, interval_s=15)["premium_bps"] is None


@pytest.mark.parametrize(("fields", "age_s", "expected"), [
    ({}, 0, []),
    ({"status": "halted", "halted": 3}, 0, ["halted"]),
    ({"halted": 1}, 0, ["halted"]),
    ({"status": "degraded", "stale": 2}, 0, ["degraded", "stale"]),
    ({"status": "degraded", "flags": ["recovering"]}, 0, ["degraded", "recovering"]),
    ({}, 30.0, []),              # 2 intervals of 15 s + 1 s grace: not yet late
    ({}, 31.5, ["late"]),
    ({"stale": 1}, 100, ["stale", "late"]),
])
def test_alerts_name_why_a_row_stands_out(fields, age_s, expected):
    row = view.row(record(**fields), now_ns=TS + int(age_s * S), interval_s=15)
    assert row["alerts"] == expected
    assert row["age_s"] == pytest.approx(age_s)
    assert row["late_after_ns"] == TS + 31 * S


def test_reference_values_are_prior_nav_or_the_basket_at_previous_closes():
    universe = build_universe([
        {"fund": "A", "creation_unit": 100, "currency": "USD", "cash": 50.0, "prior_nav": 7.25,
         "holdings": [{"symbol": "X", "shares": 10, "price": 12.5}]},
        {"fund": "B", "creation_unit": 100, "currency": "USD", "cash": 50.0,
         "holdings": [{"symbol": "X", "shares": 10, "price": 12.5}, {"symbol": "Y", "shares": 3, "price": 1.25}]},
    ])
    assert view.reference_values(universe, 4) == {"A": 7.25, "B": 1.7875}  # (125 + 3.75 + 50) / 100


@pytest.mark.parametrize(("text", "ms"), [
    ("1700000000123", 1_700_000_000_123),
    ("2023-11-14T22:13:20Z", 1_700_000_000_000),
    ("2023-11-14T22:13:20.123+00:00", 1_700_000_000_123),
    ("2023-11-14T17:13:20-05:00", 1_700_000_000_000),
    ("2023-11-14T22:13:20", 1_700_000_000_000),  # no zone: UTC
    ("2023-11-14", 1_699_920_000_000),
])
def test_times_are_iso_8601_or_epoch_ms(text, ms):
    assert parse_time_ns(text, "from") == ms * 1_000_000


@pytest.mark.parametrize("text", ["yesterday", "17e11", "-5", "2023-13-01", "1969-12-31T00:00:00Z"])
def test_bad_times_name_the_parameter(text):
    with pytest.raises(BadParameter, match="^to: ") as info:
        parse_time_ns(text, "to")
    assert info.value.parameter == "to"


def test_a_history_entry_decodes_to_the_published_record():
    published = record(as_of="2024-01-02", basket="123456", prior_nav=10.0, market_price=10.6, premium_bps=95.24,
                       flags=["stale", "side_fallback"], status="degraded")
    args = field_args(published)  # exactly what the Redis sink writes
    fields = {str(k).encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in zip(args[::2], args[1::2])}
    decoded = decode_entry("F", fields)
    assert decoded == published and list(decoded) == list(published)


def test_the_terminal_table_shows_the_columns_and_marks_alerts():
    rows = [view.row(record(fund="AAA", iopv=10.1234), now_ns=TS, interval_s=15, reference=10.0),
            view.row(record(fund="BBB", iopv=9.5, status="halted", halted=2), now_ns=TS, interval_s=15)]
    out = io.StringIO()
    table_view = TableView(out, force_terminal=False)
    table_view.show(values_table(rows, names={"AAA": "Fund A"}, decimals=4, title="T", caption="C"))
    text = out.getvalue()
    assert "10.1234" in text and "+123.4" in text and "Fund A" in text
    line_b = next(line for line in text.splitlines() if "BBB" in line)
    assert "9.5000" in line_b and "halted" in line_b
    assert np.isclose(rows[0]["change_bps"], 123.4)


def test_on_a_terminal_the_table_is_redrawn_in_place_not_scrolled():
    out = io.StringIO()
    table_view = TableView(out, force_terminal=True)
    for value in (10.1234, 10.5678):
        rows = [view.row(record(fund="AAA", iopv=value), now_ns=TS, interval_s=15, reference=10.0)]
        table_view.show(values_table(rows, decimals=4, title="T"))
    table_view.close()
    text = out.getvalue()
    assert "10.1234" in text and "10.5678" in text
    # The second table replaces the first: the cursor goes back up over it and erases it (rich Live).
    after_first = text[text.index("10.1234"):]
    assert "\x1b[1A" in after_first and "\x1b[2K" in after_first
