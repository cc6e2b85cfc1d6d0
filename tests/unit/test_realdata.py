"""The engine on real market data (tests/data/realdata, cut from shared/realdata: see its
README and cut.py): (a) the Dow Jones Industrial Average valued as a fund reproduces the
official close on every day the data mark, and the exact sum / divisor on every day; (b) a real
day's trades of AIG, BAC, IBM and SPY replayed, every boundary equal to the exact reference."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from itertools import groupby

import pytest

from iopv.core.constants import REASONS
from iopv.core.universe import build_universe
from iopv.engine.book import PriceBook
from iopv.engine.replay import replay, replay_frames
from iopv.engine.tape import decode_tape
from tests.support.realdata import djia_basket, djia_days, lean_closes, lean_trade_tape
from tests.support.reference import reference_replay_full, reference_value

S = 1_000_000_000


def engine_replay(pcf_text: str, lines: list[str], interval_ns: int, decimals: int):  # as test_replay_reference
    universe = build_universe(json.loads(pcf_text))
    book = PriceBook(universe)
    tape = decode_tape(("\n".join(lines) + "\n").encode(), book.index)
    rows = [(boundary, fund, value) for boundary, values in replay(universe, tape, interval_ns=interval_ns,
                                                                  decimals=decimals, book=book)
            for fund, value in zip(universe.funds, values.tolist())]
    return rows, Counter(REASONS[code] for code in tape.code.tolist())


def test_djia_as_a_fund_reproduces_the_official_closes():
    """Per run of days with the same members and divisor: a basket at the first day's closes,
    then each day's closes as ticks; the boundary after day k's ticks is day k's value."""
    days = djia_days()
    assert len(days) == 199
    checked = official = 0
    for _, run in groupby(days, key=lambda d: (d["divisor"], tuple(sorted(d["closes"])))):
        run = list(run)
        pcf = djia_basket(run[0]["divisor"], run[0]["closes"])
        lines = [json.dumps([{"symbol": s, "price": float(c), "ts": k * S + 1} for s, c in day["closes"].items()])
                 for k, day in enumerate(run)]
        rows, counts = engine_replay(pcf, lines, S, decimals=2)
        assert counts["accepted"] == 30 * len(run)
        assert [b for b, _, _ in rows] == [(k + 1) * S for k in range(len(run))]
        for day, (_, _, value) in zip(run, rows):
            exact = reference_value(djia_basket(day["divisor"], day["closes"]), decimals=2)["DJIA"]
            assert f"{value:.2f}" == exact, day["date"]  # sum / divisor, half-up, every day
            total = sum(map(Decimal, day["closes"].values()))
            assert Decimal(exact) == (total / Decimal(day["divisor"])).quantize(Decimal("0.01"), "ROUND_HALF_UP")
            if day["reproduces"]:
                assert Decimal(f"{value:.2f}") == Decimal(day["official"]), day["date"]
                official += 1
            else:  # a vendor close is off by a cent or more: the data say so, and it shows
                assert Decimal(f"{value:.2f}") != Decimal(day["official"]), day["date"]
            checked += 1
    assert (checked, official) == (199, 159)  # README: 150 + 9 days reproduce the official close


def test_real_trades_replayed_every_boundary_equals_the_exact_reference():
    closes = lean_closes()
    document = [
        {"fund": "RDAY", "creation_unit": 50000, "currency": "USD", "cash": 1234.56,
         "holdings": [{"symbol": "AIG", "shares": 1000, "price": float(closes["AIG"][0])},
                      {"symbol": "BAC", "shares": 5000, "price": float(closes["BAC"][0])},
                      {"symbol": "IBM", "shares": 200, "price": float(closes["IBM"][0])},
                      {"symbol": "SPY", "shares": 300, "price": float(closes["SPY"][0])}]},
        {"fund": "IBM1", "creation_unit": 1, "currency": "USD", "cash": 0,
         "holdings": [{"symbol": "IBM", "shares": 1, "price": float(closes["IBM"][0])}]},
        {"fund": "FIN3", "creation_unit": 3, "currency": "USD", "cash": -0.01,
         "holdings": [{"symbol": "AIG", "shares": 1, "price": float(closes["AIG"][0])},
                      {"symbol": "BAC", "shares": 7, "price": float(closes["BAC"][0])}]},
    ]
    pcf = json.dumps(document)
    lines = lean_trade_tape()
    assert len(lines) == 127_366
    interval_ns = 15 * S
    expected, expected_counts = reference_replay_full(pcf, lines, interval_ns, decimals=4)
    got, counts = engine_replay(pcf, lines, interval_ns, decimals=4)
    assert len(got) == len(expected) and len(expected) >= 3 * 1300
    assert [(b, f) for b, f, _ in got] == [(b, f) for b, f, _ in expected]
    for (boundary, fund, value), (_, _, text) in zip(got, expected):
        assert (f"{value:.4f}", value) == (text, float(text)), (boundary, fund)
    assert counts == expected_counts and counts["accepted"] + counts["out_of_order"] == len(lines)
    # the first trade is at 09:30:00.007 ET (13:30 UTC): first boundary 09:30:15; the last at 16:00:59.401
    assert got[0][0] == 1381152615 * S and got[-1][0] == 1381176060 * S
    ibm = [value for _, fund, value in got if fund == "IBM1"]
    assert min(ibm) > 181 and max(ibm) < 184  # IBM traded 181.xx-183.xx that day


def test_real_trades_with_the_nyse_calendar_publish_only_in_the_session():
    """The same day with ``engine.calendar = XNYS``: boundaries from the 09:30 open to the 16:00
    close only (not 16:00:15, though trades go on), each the value the always-open replay gives."""
    closes = lean_closes()
    document = [{"fund": "IBM1", "creation_unit": 1, "currency": "USD", "cash": 0,
                 "holdings": [{"symbol": "IBM", "shares": 1, "price": float(closes["IBM"][0])}]}]
    lines = lean_trade_tape()
    data = ("\n".join(lines) + "\n").encode()
    results = {}
    for calendar in ("always", "XNYS"):
        universe = build_universe(document)
        book = PriceBook(universe)
        tape = decode_tape(data, book.index)
        results[calendar] = {boundary: frame.rounded[0][0] for boundary, frame in replay_frames(
            universe, tape, interval_ns=15 * S, decimals=4, book=book, calendar=calendar)}
    session = results["XNYS"]
    open_ns, close_ns = 1381152600 * S, 1381176000 * S  # 09:30 and 16:00 ET, 2013-10-07
    assert min(session) == open_ns + 15 * S and max(session) == close_ns
    assert set(session) == {b for b in results["always"] if b <= close_ns}
    assert all(session[b] == results["always"][b] for b in session)
    assert f"{session[close_ns]:.4f}" == "182.0000"  # the last regular trade; the official close is 182.01


def test_fixtures_are_what_cut_py_makes_of_the_shared_data(tmp_path):
    """Provenance: where shared/realdata sits beside the repository (as in CI), cutting it again
    gives the committed fixtures byte for byte. The other tests never read shared/."""
    import importlib.util

    from tests.support.realdata import DATA

    source = DATA.parents[3] / "shared" / "realdata"
    if not (source / "djia" / "djia_member_closes.csv").is_file():
        pytest.skip(f"no shared data at {source}")
    spec = importlib.util.spec_from_file_location("cut", DATA / "cut.py")
    cut = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cut)
    cut.cut_trades(source, tmp_path)
    cut.cut_djia(source, tmp_path)
    for name in ("lean_trades_20131007.csv.gz", "lean_daily_closes.csv", "djia_closes.csv"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
