"""Real-time mode's incremental update: running sums moved tick by tick must publish exactly what
a full valuation of the book publishes at that instant (every side, ties included), whatever
the batch boundaries, quotes, FX ticks, mid-priced funds, hostile lines, step caps and basket
swaps; and the error bound that guards the rounding must really bound the error."""

from __future__ import annotations

import json
import random
import time
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import orjson
import pytest

from iopv.config import load_settings
from iopv.core.constants import Side
from iopv.core.universe import build_universe
from iopv.engine.cycle import Engine
from iopv.engine.realtime import RealtimePublisher
from iopv.engine.reload import prepare
from iopv.kernels.realtime import slot_holding_index
from tests.support.generators import random_tape, random_universe
from tests.support.live import CollectingSink as Collector


def make(document, *, decimals: int = 4, **options):
    settings = load_settings(environ={}, overrides={"engine": {"calendar": "always", "decimals": decimals}})
    engine = Engine(build_universe(document), settings)
    sink = Collector()
    publisher = RealtimePublisher(engine, sink, throttle_ms=0.0, **options)
    engine.intake.on_applied.append(publisher.on_applied)
    return engine, publisher, sink


def first_symbol(document) -> str:
    return next(f["holdings"][0]["symbol"] for f in document if f["holdings"])


def full_sides(engine, funds: list[int]) -> np.ndarray:
    """What a boundary would publish for ``funds`` now: rounded iopv, bid, ask (3 x n)."""
    frame = engine.valuer.frame(engine.book, 0, 0, funds=np.array(funds, dtype=np.int64))
    return frame.rounded


def published_sides(publication) -> np.ndarray:
    return np.array([[r["iopv"] for r in publication.records], [r["iopv_bid"] for r in publication.records],
                     [r["iopv_ask"] for r in publication.records]])


def test_slot_holding_index_lists_every_holding_a_slot_moves():
    document = random_universe(random.Random(3), 6, mid=0.3)
    u = build_universe(document)
    offsets, holdings = slot_holding_index(u.holding_security, u.holding_fx, u.book_size, u.one_index)
    for slot in range(u.book_size):
        expected = sorted(set(np.flatnonzero(u.holding_security == slot).tolist())
                          | set(np.flatnonzero(u.holding_fx == slot).tolist())) if slot != u.one_index else []
        assert sorted(holdings[offsets[slot]:offsets[slot + 1]].tolist()) == expected, f"slot {slot}"


@pytest.mark.parametrize("seed", range(12))
def test_every_published_value_equals_a_full_valuation_at_that_instant(seed):
    rng = random.Random(1000 + seed)
    decimals = rng.choice((2, 4, 6))
    document = random_universe(rng, rng.randint(3, 12), mid=0.3 if seed % 2 else 0.0)
    lines = random_tape(rng, document, 800, quotes=0.3 if seed % 3 else 0.0)
    engine, publisher, sink = make(document, decimals=decimals)
    checked = 0
    i = 0
    while i < len(lines):
        n = rng.randint(1, 40)
        for line in lines[i:i + n]:
            engine.intake.decode(line.encode())
        i += n
        before = len(sink.publications)
        engine.intake.flush()
        for publication in sink.publications[before:]:
            funds = [engine.universe.funds.index(f) for f in publication.funds]
            expected = full_sides(engine, funds)
            got = published_sides(publication)
            assert np.array_equal(got, expected), f"seed {seed} at line {i}: {got} != {expected}"
            checked += len(funds)
    assert checked > 50


def test_exact_ties_round_half_up_after_incremental_updates():
    # 1 share over a creation unit of 2: a price with an odd last cent-of-a-cent lands the value
    # exactly on a tie at 4 decimals (10.0001 / 2 = 5.00005 -> 5.0001), which float may miss.
    document = [{"fund": "TIE", "creation_unit": 2, "currency": "USD", "cash": 0.0,
                 "holdings": [{"symbol": "A", "shares": 1, "price": 10.0}, {"symbol": "B", "shares": 1, "price": 3.0}]}]
    engine, publisher, sink = make(document)
    now = time.time_ns()
    expected = {}
    for k, (a, b) in enumerate([(10.0001, 3.0), (2.0003, 3.0), (2.0003, 0.1002), (7.0105, 0.1002)]):
        engine.intake.decode(orjson.dumps([{"symbol": "A", "price": a, "ts": now + 2 * k},
                                           {"symbol": "B", "price": b, "ts": now + 2 * k + 1}]))
        engine.intake.flush()
        expected[k] = round_half_up((Decimal(repr(a)) + Decimal(repr(b))) / 2, 4)
        assert sink.publications[-1].records[0]["iopv"] == float(expected[k]), k
    assert publisher.exact_resolved >= 4


def round_half_up(value: Decimal, decimals: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def test_the_error_bound_bounds_the_drift_of_long_incremental_runs():
    rng = random.Random(77)
    document = random_universe(rng, 8, mid=0.5)
    engine, publisher, sink = make(document)
    lines = random_tape(rng, document, 5000, hostile=0.0, quotes=0.4)
    for k in range(0, len(lines), 25):
        for line in lines[k:k + 25]:
            engine.intake.decode(line.encode())
        engine.intake.flush()
    totals, drift = publisher.totals.copy(), publisher.drift.copy()
    gross = publisher.gross.copy()
    publisher.revalue()  # the sums rebuilt from scratch in one pass
    deviation = np.abs(totals - publisher.totals)
    # The incremental sums and a fresh pass differ by less than both their bounds together.
    assert np.all(deviation <= drift + publisher.drift + 12 * 2.0**-53 * gross)
    assert np.all(publisher.drift <= drift), "a revaluation resets the accumulated bound"


def test_a_step_cap_defers_funds_without_losing_any_and_publishes_the_latest():
    document = random_universe(random.Random(5), 10)
    engine, publisher, sink = make(document, max_funds_per_step=2)
    symbol = first_symbol(document)
    holders = {f["fund"] for f in document if any(h["symbol"] == symbol for h in f["holdings"])}
    # Move every fund: one tick per holding symbol of every fund.
    symbols = sorted({h["symbol"] for f in document for h in f["holdings"]})
    now = time.time_ns()
    engine.intake.decode(orjson.dumps([{"symbol": s, "price": 10.0 + k / 100, "ts": now + k}
                                       for k, s in enumerate(symbols)]))
    engine.intake.flush()
    moved = {f["fund"] for f in document if f["holdings"]}
    assert len(sink.publications) == 1 and len(sink.publications[0].funds) == 2
    engine.intake.decode(orjson.dumps({"symbol": symbol, "price": 12345.67, "ts": now + 10_000}))
    engine.intake.flush()
    while publisher.dirty.any():
        assert publisher.step() <= 2
    seen = [fund for p in sink.publications for fund in p.funds]
    assert set(seen) == moved
    last = {}
    for p in sink.publications:
        for fund, record in zip(p.funds, p.records):
            last[fund] = record
    funds = [engine.universe.funds.index(f) for f in sorted(last)]
    expected = full_sides(engine, funds)
    assert [last[f]["iopv"] for f in sorted(last)] == expected[Side.VALUE].tolist()
    assert holders <= set(last)


def test_records_are_lean_and_named():
    document = random_universe(random.Random(8), 3)
    engine, publisher, sink = make(document)
    symbol = first_symbol(document)
    engine.intake.decode(orjson.dumps({"symbol": symbol, "price": 42.5, "ts": time.time_ns()}))
    engine.intake.flush()
    record = sink.publications[0].records[0]
    assert list(record) == ["fund", "ts", "iopv", "iopv_bid", "iopv_ask", "basket", "realtime"]
    assert orjson.loads(sink.publications[0].payloads[0]) == record
    assert record["basket"] == engine.universe.version and record["realtime"] is True


def test_a_basket_swap_rebuilds_the_sums_for_the_new_layout(tmp_path):
    rng = random.Random(21)
    document = random_universe(rng, 5)
    engine, publisher, sink = make(document)
    symbol = first_symbol(document)
    engine.intake.decode(orjson.dumps({"symbol": symbol, "price": 77.7, "ts": time.time_ns()}))
    engine.intake.flush()
    # The new basket drops a fund and doubles every share count of the others.
    new_doc = json.loads(json.dumps(document[1:]))
    for fund in new_doc:
        for h in fund["holdings"]:
            h["shares"] *= 2
    path = tmp_path / "new.json"
    path.write_text(json.dumps(new_doc))
    engine.swap_basket(prepare(str(path), engine.universe))
    other = next(h["symbol"] for f in new_doc for h in f["holdings"])
    engine.intake.decode(orjson.dumps({"symbol": other, "price": 33.3, "ts": time.time_ns()}))
    engine.intake.flush()
    publication = sink.publications[-1]
    assert publisher.universe is engine.universe
    funds = [engine.universe.funds.index(f) for f in publication.funds]
    assert np.array_equal(published_sides(publication), full_sides(engine, funds))
    # The carried-over price of the first symbol is in the new sums too.
    assert all(r["basket"] == engine.universe.version for r in publication.records)


def test_sides_follow_quotes_and_fall_back_to_last():
    document = random_universe(random.Random(4), 2)
    engine, publisher, sink = make(document)
    fund = next(f for f in document if f["holdings"] and f["currency"] == "USD")
    h = fund["holdings"][0]
    now = time.time_ns()
    engine.intake.decode(orjson.dumps({"symbol": h["symbol"], "price": 50.0, "bid": 49.0, "ask": 51.0, "ts": now}))
    engine.intake.flush()
    record = next(r for r in sink.publications[-1].records if r["fund"] == fund["fund"])
    f = engine.universe.funds.index(fund["fund"])
    expected = full_sides(engine, [f])[:, 0]
    assert [record["iopv"], record["iopv_bid"], record["iopv_ask"]] == expected.tolist()
    assert record["iopv_bid"] < record["iopv"] < record["iopv_ask"]
    assert expected[Side.BID] < expected[Side.ASK]


def test_rolling_revaluation_rebuilds_every_fund_in_slices_within_its_period(monkeypatch):
    import iopv.engine.realtime as realtime
    monkeypatch.setattr(realtime, "ROLL_HOLDINGS", 7)  # force many slices on a small universe
    rng = random.Random(31)
    document = random_universe(rng, 10)
    engine, publisher, sink = make(document, revalue_s=1.0)
    u = engine.universe
    t0 = publisher._round_start_ns
    publisher.drift[:] = 1.0  # a marker: a rebuilt fund gets its one-pass bound back
    publisher._roll(t0 + 500_000_000)
    assert publisher.drift.max() == 1.0, "the round that revalue() completed waits a period"
    publisher._roll(t0 + 1_000_000_000)  # a new round begins, with nothing due yet
    assert publisher.drift.max() == 1.0 and publisher._round_fund == 0
    publisher._roll(t0 + 1_050_000_000)  # 5% of the period: a first slice
    rebuilt = publisher.drift[0] != 1.0
    assert rebuilt.any() and not rebuilt.all()
    assert u.fund_offsets[np.flatnonzero(rebuilt).max() + 1] <= max(7, u.fund_offsets[1])
    calls = 0
    while publisher._round_fund < len(u.funds):
        publisher._roll(t0 + 2_100_000_000)  # past the round's end: everything is due
        calls += 1
    assert calls > 1 and np.all(publisher.drift[0] != 1.0)
    assert publisher.revaluations == 2
    # The rebuilt sums are a fresh pass over the book.
    totals = publisher.totals.copy()
    publisher.revalue()
    assert np.array_equal(totals, publisher.totals)


def test_capped_steps_go_round_robin_so_no_fund_starves():
    # Every fund re-moved before each step, no throttle, 2 funds per step: a scan from fund 0
    # would publish funds 0 and 1 forever.
    document = random_universe(random.Random(12), 6)
    engine, publisher, sink = make(document, max_funds_per_step=2)
    with_holdings = {f["fund"] for f in document if f["holdings"]}
    symbols = sorted({h["symbol"] for f in document for h in f["holdings"]})
    now = time.time_ns()
    for k in range(len(document)):
        engine.intake.decode(orjson.dumps([{"symbol": s, "price": 10.0 + k + j / 100, "ts": now + k * 1000 + j}
                                           for j, s in enumerate(symbols)]))
        engine.intake.flush()
    published = {fund for p in sink.publications for fund in p.funds}
    assert published == with_holdings


def test_an_unchanged_rounded_value_is_not_republished_and_keeps_its_window_open():
    document = [{"fund": "ONE", "creation_unit": 100, "currency": "USD", "cash": 0.0,
                 "holdings": [{"symbol": "A", "shares": 1, "price": 10.0}]}]
    engine, publisher, sink = make(document, decimals=2)
    publisher.throttle_ns = 10**12  # a very long window: only an unchanged value leaves it open
    now = time.time_ns()
    engine.intake.decode(orjson.dumps({"symbol": "A", "price": 20.0, "ts": now}))
    engine.intake.flush()
    assert [r["iopv"] for r in sink.publications[-1].records] == [0.2]
    stamped = int(publisher.last_publish_ns[0])
    # 20.4 / 100 = 0.204 -> 0.20 on every side: valued, unchanged, not published.
    engine.intake.decode(orjson.dumps({"symbol": "A", "price": 20.4, "ts": now + 1}))
    engine.intake.flush()
    publisher.step(now_ns=stamped + 10**12)  # the window has passed: valued now
    assert len(sink.publications) == 1 and publisher.unchanged == 1
    assert int(publisher.last_publish_ns[0]) == stamped
    assert not publisher.dirty.any()


def test_resend_all_publishes_every_fund_published_before_again_in_capped_steps():
    document = random_universe(random.Random(14), 8)
    engine, publisher, sink = make(document, max_funds_per_step=3)
    publisher.resend_all()
    assert sink.publications == [] and not publisher.dirty.any(), "nothing published yet: nothing to resend"
    symbols = sorted({h["symbol"] for f in document for h in f["holdings"]})[:4]
    now = time.time_ns()
    engine.intake.decode(orjson.dumps([{"symbol": s, "price": 5.0 + k, "ts": now + k} for k, s in enumerate(symbols)]))
    engine.intake.flush()
    while publisher.dirty.any():
        publisher.step()
    before = sorted(fund for p in sink.publications for fund in p.funds)
    assert before and len(before) < len(engine.universe.funds)
    count = len(sink.publications)
    publisher.resend_all()  # as on a reconnect
    while publisher.dirty.any():
        publisher.step()
    again = [p for p in sink.publications[count:]]
    assert sorted(fund for p in again for fund in p.funds) == before
    assert all(len(p.funds) <= 3 for p in again)
    funds = [engine.universe.funds.index(f) for p in again for f in p.funds]
    got = np.array([r["iopv"] for p in again for r in p.records])
    assert np.array_equal(got, full_sides(engine, funds)[Side.VALUE])
