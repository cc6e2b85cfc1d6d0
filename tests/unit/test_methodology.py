"""Methodology rules (docs/methodology.md): FX, exact rounding on every side, quality figures and
status, bid/ask/mid, spike filter, halts, sessions, basket reload, vendor fields.

Each test fails if its rule breaks. Replay and the live intake share the book rules, so most
rules are checked through ``replay_frames`` and one test checks live == replay.
"""

from __future__ import annotations

import asyncio
import json
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from iopv.config import EngineSettings, Settings
from iopv.core.constants import REASONS
from iopv.core.universe import PcfError, build_universe
from iopv.engine.cycle import Engine
from iopv.engine.publication import build_publication
from iopv.engine.reload import BasketReloader, prepare
from iopv.engine.replay import replay_frames
from iopv.engine.tape import decode_tape

S = 1_000_000_000


def fund(**kw):
    doc = {"fund": "F", "creation_unit": 1, "currency": "USD", "cash": 0,
           "holdings": [{"symbol": "A", "shares": 1, "price": 10.0}]}
    doc.update(kw)
    return doc


def run(doc, lines, interval_ns=S, **rules):
    """(records per boundary, outcome names) of a replay with the published fields."""
    universe = build_universe(json.loads(json.dumps(doc)))
    tape = decode_tape("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines).encode(),
                       universe.book_index())
    out = []
    for boundary, frame in replay_frames(universe, tape, interval_ns=interval_ns, **rules):
        out.append(build_publication(universe, boundary, frame).records)
    return out, [REASONS[c] for c in tape.code.tolist()]


def half_up(text: str, decimals: int = 4) -> float:
    return float(Decimal(text).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


# --- 1. FX -----------------------------------------------------------------------------------

EUR_FUND = [{"fund": "EUF", "creation_unit": 100, "currency": "EUR", "cash": 10,
             "fx": {"USD": 0.9, "GBP": 1.2},
             "holdings": [{"symbol": "SAP", "shares": 10, "price": 100.0},
                          {"symbol": "AAPL", "shares": 5, "price": 200.0, "currency": "USD"},
                          {"symbol": "SHEL", "shares": 20, "price": 30.0, "currency": "GBP"}]}]


def test_eur_fund_with_usd_and_gbp_holdings_converts_with_live_rates():
    lines = [{"symbol": "SAP", "price": 101, "ts": 1},
             {"symbol": "USDEUR", "price": 0.95, "ts": 2},  # EUR per USD
             {"symbol": "EURUSD", "price": 1.1, "ts": 2},  # not a pair of this fund: unknown
             {"symbol": "GBPEUR", "price": -1.2, "ts": 3},  # validated like a price: rejected
             {"symbol": "AAPL", "price": 210, "ts": 2 * S}]
    (first, second), reasons = run(EUR_FUND, lines)
    # (10*101 + 5*200*0.95 + 20*30*1.2 + 10) / 100
    assert first[0]["iopv"] == half_up("26.9")
    assert second[0]["iopv"] == half_up(str((Decimal(1010) + Decimal("5") * 210 * Decimal("0.95") + 720 + 10) / 100))
    assert reasons == ["accepted", "accepted", "unknown_symbol", "non_positive_price", "accepted"]


# --- 2. exact rounding on every side -----------------------------------------------------------

def test_engineered_ties_round_half_up_on_value_bid_ask_and_mid():
    # creation unit 2: every price p publishes p/2, an exact tie at 4 decimals for p = x.xxx1.
    doc = [fund(fund="L", creation_unit=2, holdings=[{"symbol": "A", "shares": 1, "price": 2.0001}]),
           fund(fund="M", creation_unit=2, price_basis="mid",
                holdings=[{"symbol": "B", "shares": 1, "price": 5.0}])]
    lines = [{"symbol": "A", "price": 2.4691, "bid": 2.4689, "ask": 2.4693, "ts": 1},
             {"symbol": "B", "price": 9.0, "bid": 2.4689, "ask": 2.4693, "ts": 1}]
    (rows,), _ = run(doc, lines, decimals=4)
    assert [rows[0][k] for k in ("iopv", "iopv_bid", "iopv_ask")] == [1.2346, 1.2345, 1.2347]
    assert rows[1]["iopv"] == 1.2346  # the mid 2.4691 / 2, a tie, not the last trade 9.0
    doc = [fund(fund=f"T{k}", creation_unit=20000, holdings=[{"symbol": "A", "shares": 1, "price": 1.0}])
           for k in range(3)]
    lines = [{"symbol": "A", "price": 1.0, "bid": 2.5, "ask": 2.7, "ts": 1}]  # 2.5/20000 = 0.000125
    (rows,), _ = run(doc, lines, decimals=4)
    assert {r["iopv_bid"] for r in rows} == {0.0001} and {r["iopv_ask"] for r in rows} == {0.0001}


# --- 3. quality figures and status --------------------------------------------------------------

QUALITY = [fund(fund="Q", cash=100, holdings=[{"symbol": "A", "shares": 3, "price": 10.0},
                                             {"symbol": "B", "shares": 1, "price": 70.0}])]


def test_coverage_stale_and_status():
    lines = [{"symbol": "A", "price": 10, "ts": 1},
             {"symbol": "A", "price": 10, "ts": 100 * S},
             {"symbol": "B", "price": 70, "ts": 100 * S + 1}]
    rows, _ = run(QUALITY, lines, interval_ns=50 * S, stale_after_ns=60 * S)
    by_ts = {r[0]["ts"]: r[0] for r in rows}
    # ts 50 s: A ticked (30 of 100 gross; cash is not basket value), B never ticked but the
    # session (the UTC day) opened 50 s ago: nothing stale yet.
    assert (by_ts[50 * S]["coverage"], by_ts[50 * S]["stale"], by_ts[50 * S]["status"]) == (0.3, 0, "ok")
    # ts 100 s: A ticked at 100 s; B's close is 100 s old > 60 s: stale -> degraded.
    assert (by_ts[100 * S]["stale"], by_ts[100 * S]["status"]) == (1, "degraded")
    assert by_ts[100 * S]["flags"] == ["stale", "side_fallback"]  # no quotes: bid/ask at last
    # ts 150 s: both ticked within 60 s, full coverage.
    assert (by_ts[150 * S]["coverage"], by_ts[150 * S]["stale"], by_ts[150 * S]["status"]) == (1.0, 0, "ok")


def test_low_coverage_degrades_when_configured():
    rows, _ = run(QUALITY, [{"symbol": "A", "price": 10, "ts": 1}], min_coverage=0.5)
    assert (rows[0][0]["status"], rows[0][0]["flags"]) == ("degraded", ["low_coverage", "side_fallback"])


# --- 4. bid / ask / mid ------------------------------------------------------------------------

def test_bid_ask_values_and_fallbacks():
    doc = [fund(holdings=[{"symbol": "A", "shares": 1, "price": 10.0},
                          {"symbol": "B", "shares": 2, "price": 20.0}])]
    lines = [{"symbol": "A", "price": 10.5, "bid": 10.4, "ask": 10.6, "ts": 1},
             {"symbol": "B", "price": 21, "bid": 20.9, "ts": 1},  # no ask: its last stands in
             {"symbol": "A", "price": 10.5, "bid": 10.7, "ask": 10.6, "ts": 2},  # crossed: rejected
             {"symbol": "A", "price": 10.5, "bid": "10", "ts": 2}]  # not a number: rejected
    (rows,), reasons = run(doc, lines)
    r = rows[0]
    assert (r["iopv"], r["iopv_bid"], r["iopv_ask"]) == (52.5, 52.2, 52.6)
    assert r["flags"] == ["side_fallback"]
    assert reasons[2:] == ["bad_quote", "bad_quote"]


def test_a_trade_without_quote_keeps_the_last_quote():
    lines = [{"symbol": "A", "price": 10, "bid": 9, "ask": 11, "ts": 1},
             {"symbol": "A", "price": 10.2, "ts": 2}]
    (rows,), _ = run([fund()], lines)
    assert (rows[0]["iopv"], rows[0]["iopv_bid"], rows[0]["iopv_ask"]) == (10.2, 9.0, 11.0)


# --- 5. spike filter ----------------------------------------------------------------------------

def test_spike_held_then_confirmed_and_off_by_default():
    lines = [{"symbol": "A", "price": 10.1, "ts": 1},
             {"symbol": "A", "price": 100, "ts": 2},  # a bad print: held
             {"symbol": "A", "price": 10.2, "ts": 3},  # back near the level: accepted, reset
             {"symbol": "A", "price": 15, "ts": 2 * S},  # a genuine gap: held ...
             {"symbol": "A", "price": 15.1, "ts": 2 * S + 1},  # ... held (2 of 3)
             {"symbol": "A", "price": 15.05, "ts": 2 * S + 2}]  # ... confirmed (3 of 3): accepted
    rows, reasons = run([fund()], lines, spike_pct=20, spike_confirm_ticks=3)
    assert [r[0]["iopv"] for r in rows] == [10.2, 10.2, 15.05]
    assert reasons == ["accepted", "spike_held", "accepted", "spike_held", "spike_held", "accepted"]
    rows, reasons = run([fund()], lines)
    assert set(reasons) == {"accepted"} and rows[-1][0]["iopv"] == 15.05


# --- 6. halts -----------------------------------------------------------------------------------

def test_halt_keeps_last_price_and_flags_until_resumed():
    doc = [fund(holdings=[{"symbol": "A", "shares": 1, "price": 10.0},
                          {"symbol": "B", "shares": 1, "price": 30.0}])]
    lines = [{"symbol": "A", "price": 11, "ts": 1},
             {"symbol": "A", "status": "halted", "ts": 2},
             {"symbol": "A", "price": 12, "ts": 3},  # halted: dropped, 11 is kept
             {"symbol": "B", "status": "halted", "ts": S + 1},  # 30 of 41 gross halted -> status halted
             {"symbol": "A", "price": 13, "status": "trading", "ts": 2 * S + 1},  # resumes with a price
             {"symbol": "B", "status": "paused", "ts": 2 * S + 2}]  # unknown status word: rejected
    rows, reasons = run(doc, lines)
    assert [(r[0]["iopv"], r[0]["halted"], r[0]["status"]) for r in rows] == [
        (41.0, 1, "degraded"), (41.0, 2, "halted"), (43.0, 1, "halted")]
    assert reasons == ["accepted", "status", "halted", "status", "accepted", "bad_status"]


def test_fund_ticker_halt_halts_the_fund():
    rows, _ = run([fund()], [{"symbol": "F", "status": "halted", "ts": 1}])
    assert rows[0][0]["status"] == "halted" and rows[0][0]["flags"] == ["fund_halted", "side_fallback"]


# --- 7. sessions ---------------------------------------------------------------------------------

def ns(text: str) -> int:
    import pandas as pd
    return pd.Timestamp(text, tz="America/New_York").value


def test_nyse_sessions_open_close_holiday_and_early_close():
    lines = [{"symbol": "A", "price": 11, "ts": ns("2024-11-27 09:00")},
             {"symbol": "A", "price": 12, "ts": ns("2024-11-27 15:59")},
             {"symbol": "A", "price": 13, "ts": ns("2024-11-28 12:00")},  # Thanksgiving
             {"symbol": "A", "price": 14, "ts": ns("2024-11-29 12:59")},
             {"symbol": "A", "price": 15, "ts": ns("2024-11-29 14:00")}]  # after the 13:00 early close
    rows, _ = run([fund()], lines, interval_ns=1800 * S, calendar="XNYS")
    published = [(r[0]["ts"], r[0]["iopv"]) for r in rows]
    assert published[0] == (ns("2024-11-27 09:30"), 11.0)  # at the open, first value
    assert published[13] == (ns("2024-11-27 16:00"), 12.0)  # the close
    assert published[14] == (ns("2024-11-29 09:30"), 13.0)  # no Thanksgiving; next open
    assert published[-1] == (ns("2024-11-29 13:00"), 14.0)  # early close; nothing after
    assert len(published) == 14 + 8


def test_value_at_the_open_comes_from_previous_closes():
    rows, _ = run([fund()], [{"symbol": "ZZZ", "price": 1, "ts": ns("2024-06-03 09:29:59")}],
                  interval_ns=60 * S, calendar="XNYS")
    assert (rows[0][0]["ts"], rows[0][0]["iopv"], rows[0][0]["coverage"]) == (ns("2024-06-03 09:30"), 10.0, 0.0)


# --- 8. basket changes while running --------------------------------------------------------------

def settings(path, **engine) -> Settings:
    return Settings(engine=EngineSettings(pcf_path=str(path), calendar="always", **engine))


def test_reload_swaps_atomically_and_keeps_live_prices(tmp_path):
    path = tmp_path / "pcf.json"
    doc = [fund(as_of="2024-06-03", holdings=[{"symbol": "A", "shares": 1, "price": 10.0},
                                               {"symbol": "B", "shares": 1, "price": 20.0}])]
    path.write_text(json.dumps(doc))
    engine = Engine(prepare(str(path), build_universe([fund()])).universe, settings(path))
    book = engine.book
    engine.intake.decode(b'[{"symbol": "A", "price": 11, "ts": 5}, {"symbol": "B", "price": 21, "ts": 5}]')
    assert engine.cycle(S).records[0]["iopv"] == 32.0
    # Corrected file: B's close changes (a new close: its session restarts), C added, A kept.
    doc[0]["holdings"] = [{"symbol": "A", "shares": 2, "price": 10.0}, {"symbol": "B", "shares": 1, "price": 19.0},
                          {"symbol": "C", "shares": 1, "price": 5.0}]
    doc[0]["as_of"] = "2024-06-04"
    path.write_text(json.dumps(doc))
    engine.intake.decode(b'{"symbol": "A", "price": 12, "ts": 6}')  # staged against the old layout
    engine.stage_basket(prepare(str(path), engine.universe))
    record = engine.cycle(2 * S).records[0]
    assert record["iopv"] == 2 * 12 + 19 + 5 and record["as_of"] == "2024-06-04"
    assert engine.book is book and book.price_of("A") == 12.0  # remapped in place
    assert record["basket"] == engine.universe.version


def test_bad_basket_file_keeps_the_old_one_and_says_why(tmp_path):
    path = tmp_path / "pcf.json"
    path.write_text(json.dumps([fund()]))
    engine = Engine(prepare(str(path), build_universe([fund()])).universe, settings(path))
    path.write_text(json.dumps([fund(creation_unit=0)]))
    with pytest.raises(PcfError, match=r"creation_unit: expected a number > 0"):
        prepare(str(path), engine.universe)

    async def main():
        reloader = BasketReloader(str(path), watch_s=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(reloader.run(engine, stop))
        reloader.request()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if reloader.failed:
                break
        stop.set()
        task.cancel()
        return reloader
    reloader = asyncio.run(main())
    assert reloader.failed == 1 and "creation_unit" in reloader.last_error
    assert engine._staged is None and engine.cycle(S).records[0]["iopv"] == 10.0


def test_file_watch_picks_up_a_new_file(tmp_path):
    path = tmp_path / "pcf.json"
    path.write_text(json.dumps([fund()]))
    engine = Engine(prepare(str(path), build_universe([fund()])).universe, settings(path))

    async def main():
        reloader = BasketReloader(str(path), watch_s=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(reloader.run(engine, stop))
        await asyncio.sleep(0.05)
        path.write_text(json.dumps([fund(cash=5)]))
        for _ in range(300):
            await asyncio.sleep(0.01)
            if engine._staged is not None:
                break
        stop.set()
        task.cancel()
    asyncio.run(main())
    assert engine.cycle(S).records[0]["iopv"] == 15.0


# --- 9. vendor fields ---------------------------------------------------------------------------

def test_vendor_fields_market_price_and_premium():
    doc = [fund(cash=1.5, total_cash=2.5, shares_outstanding=1000000, prior_nav=11.4, as_of="2024-06-03")]
    lines = [{"symbol": "F", "price": 11.6, "ts": 1}, {"symbol": "A", "price": 10, "ts": 1}]
    (rows,), reasons = run(doc, lines)
    r = rows[0]
    assert (r["estimated_cash"], r["total_cash"], r["shares_outstanding"], r["prior_nav"], r["as_of"]) == (
        1.5, 2.5, 1000000, 11.4, "2024-06-03")
    assert (r["iopv"], r["market_price"], r["premium_bps"]) == (11.5, 11.6, 86.96)
    assert reasons == ["accepted", "accepted"]
    (rows,), _ = run([fund()], [{"symbol": "A", "price": 10, "ts": 1}])
    assert "market_price" not in rows[0] and "premium_bps" not in rows[0]


def test_bad_vendor_fields_are_reported():
    with pytest.raises(PcfError) as err:
        build_universe([fund(prior_nav=0, shares_outstanding="1", price_basis="close")])
    text = str(err.value)
    assert "prior_nav" in text and "shares_outstanding" in text and "price_basis" in text


# --- live and replay share the rules -------------------------------------------------------------

def test_live_intake_and_replay_agree(tmp_path):
    lines = [{"symbol": "A", "price": 10.1, "bid": 10, "ask": 10.2, "ts": 1},
             {"symbol": "A", "price": 99, "ts": 2},
             {"symbol": "A", "status": "halted", "ts": 3},
             {"symbol": "A", "price": 11, "ts": 4},
             {"symbol": "F", "price": 10.3, "ts": 5}]
    (expected,), reasons = run([fund()], lines, spike_pct=50, stale_after_ns=60 * S)
    path = tmp_path / "p.json"
    path.write_text(json.dumps([fund()]))
    engine = Engine(build_universe([fund()]), settings(path, spike_pct=50))
    for line in lines:
        engine.intake.decode(json.dumps(line).encode(), recv_ts_ns=0)
    got = engine.cycle(S).records
    assert got == expected
    assert [REASONS[c] for c, n in enumerate(engine.intake.counts) for _ in range(n)] == sorted(
        reasons, key=REASONS.index)
    assert np.isfinite(engine.book.prices).all()
