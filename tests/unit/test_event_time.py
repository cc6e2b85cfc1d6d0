"""Event-time boundaries (docs/methodology.md "Event time"): the value at boundary B is the book of
every tick stamped at or before B that arrived by B's cut, whatever the arrival order; late ticks
count from the next boundary; ticks stamped far ahead are refused; a full held set makes the book
not whole. Checked against the exact ``Decimal`` reference and against ``iopv replay``."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import numpy as np
import orjson
import pytest

from iopv.config import load_settings
from iopv.core.constants import REASONS, TickOutcome, counts_by_reason
from iopv.core.universe import build_universe
from iopv.engine.book import PriceBook
from iopv.engine.cycle import Engine
from iopv.engine.intake import TickIntake
from iopv.engine.replay import replay
from iopv.engine.tape import decode_tape
from tests.support.live import exact, make_basket

S = 1_000_000_000
MS = 1_000_000
B0 = 1_700_000_000 * S  # a boundary of every interval used here


def engine_for(document, *, interval_s=1.0, watermark_ms=50.0, max_lead_ms=60_000.0, capacity=65_536,
               **engine) -> Engine:
    settings = load_settings(environ={}, overrides={
        "engine": {"calendar": "always", "interval_s": interval_s, "watermark_ms": watermark_ms,
                   "max_lead_ms": max_lead_ms, **engine},
        "intake": {"batch_capacity": capacity}})
    return Engine(build_universe(document), settings)


def tick(symbol: str, price: float, ts: int) -> bytes:
    return orjson.dumps({"symbol": symbol, "price": price, "ts": ts})


def value_of(publication, fund: str) -> str:
    return f"{publication.records[publication.funds.index(fund)]['iopv']:.4f}"


def one_fund(symbols=("AAA", "BBB"), closes=(10.0, 20.0)) -> list[dict]:
    return [{"fund": "F", "creation_unit": 1, "currency": "USD", "cash": 0.0,
             "holdings": [{"symbol": s, "shares": 1, "price": p} for s, p in zip(symbols, closes)]}]


# --- the rules, one at a time ---------------------------------------------------------------------

def test_a_tick_stamped_after_the_boundary_waits_for_its_own_even_when_it_arrived_first():
    engine = engine_for(one_fund())
    engine.open(B0)
    engine.intake.decode(tick("AAA", 11.0, B0 + 10 * MS), "ticks/AAA", B0 + 11 * MS)  # after B0, arrived before the cut
    engine.intake.decode(tick("BBB", 21.0, B0 - 10 * MS), "ticks/BBB", B0 + 20 * MS)  # before B0, 20 ms late: in time
    first = engine.cycle(B0)
    assert value_of(first, "F") == "31.0000"  # AAA still at its close: its tick is B0+1's
    assert engine.intake.held == 0  # released at the cut into B0+1's book
    second = engine.cycle(B0 + S)
    assert value_of(second, "F") == "32.0000"
    assert counts_by_reason(engine.intake.counts) == {"accepted": 2}


def test_a_late_tick_counts_from_the_next_boundary_and_is_counted_late():
    engine = engine_for(one_fund())
    engine.open(B0)
    engine.cycle(B0)
    engine.intake.decode(tick("AAA", 12.0, B0 - 5 * MS), "ticks/AAA", B0 + 60 * MS)  # after B0's cut
    publication = engine.cycle(B0 + S)
    assert value_of(publication, "F") == "32.0000"  # not dropped: it is in B0+1
    assert engine.intake.counts[TickOutcome.LATE] == 1
    assert counts_by_reason(engine.intake.counts) == {"late": 1}
    # Still subject to the out-of-order rule: an older late tick does not move the price back.
    engine.intake.decode(tick("AAA", 9.0, B0 - 9 * MS), "ticks/AAA", B0 + S + 60 * MS)
    assert value_of(engine.cycle(B0 + 2 * S), "F") == "32.0000"
    assert counts_by_reason(engine.intake.counts) == {"late": 1, "out_of_order": 1}


def test_a_tick_stamped_absurdly_far_ahead_is_refused_and_never_held():
    engine = engine_for(one_fund(), max_lead_ms=5_000)
    engine.open(B0)
    engine.intake.decode(tick("AAA", 99.0, B0 + 3600 * S), "ticks/AAA", B0 + MS)  # an hour ahead
    engine.intake.decode(tick("AAA", 11.0, B0 + 4 * S), "ticks/AAA", B0 + MS)  # within the lead: held
    engine.intake.flush()
    assert engine.intake.held == 1
    assert engine.intake.counts[TickOutcome.FUTURE_TS] == 1
    assert REASONS[TickOutcome.FUTURE_TS] == "future_ts"
    values = [value_of(engine.cycle(B0 + k * S), "F") for k in range(6)]
    assert values == ["30.0000"] * 4 + ["31.0000"] * 2  # the held tick in its own boundary, B0+4
    assert engine.intake.held == 0
    assert engine.health.whole


def test_a_full_held_set_drops_counts_and_makes_the_book_not_whole_until_every_symbol_ticks():
    engine = engine_for(one_fund(), capacity=4)
    engine.open(B0)
    for k in range(6):  # 6 ticks for the next boundary; room for 4
        engine.intake.decode(tick("AAA", 11.0 + k, B0 + (k + 1) * MS), "ticks/AAA", B0 + (k + 1) * MS)
    first = engine.cycle(B0)
    assert engine.intake.counts[TickOutcome.HELD_OVERFLOW] == 2
    assert not engine.health.whole and engine.health.reason == "overflow"
    assert "recovering" in first.records[0]["flags"] and first.records[0]["status"] == "degraded"
    assert not first.whole
    # Whole again once every symbol of the baskets ticked after the gap.
    engine.intake.decode(tick("AAA", 20.0, B0 + S // 2), "ticks/AAA", B0 + S // 2)
    assert not engine.cycle(B0 + S).whole  # BBB has not ticked since
    engine.intake.decode(tick("BBB", 21.0, B0 + S + S // 2), "ticks/BBB", B0 + S + S // 2)
    third = engine.cycle(B0 + 2 * S)
    assert third.whole and "recovering" not in third.records[0]["flags"]
    assert engine.health.regained["fresh"] == 1


def test_out_of_order_halts_and_spikes_keep_their_meaning_in_event_time():
    engine = engine_for(one_fund(), spike_pct=10.0, spike_confirm_ticks=2)
    engine.open(B0)
    intake = engine.intake
    # B0+1's tick arrives first and waits; B0's older tick of the same symbol is then in time.
    intake.decode(tick("AAA", 10.5, B0 + 5 * MS), "ticks/AAA", B0 + 6 * MS)
    intake.decode(tick("AAA", 10.2, B0 - 5 * MS), "ticks/AAA", B0 + 7 * MS)
    # A halt of BBB stamped before B0 arrives in time; BBB's price after it is refused.
    intake.decode(orjson.dumps({"symbol": "BBB", "status": "halted", "ts": B0 - 2 * MS}), "ticks/BBB", B0 + 8 * MS)
    intake.decode(tick("BBB", 25.0, B0 - MS), "ticks/BBB", B0 + 9 * MS)
    first = engine.cycle(B0)
    assert value_of(first, "F") == "30.2000"
    assert first.records[0]["halted"] == 1
    second = engine.cycle(B0 + S)
    assert value_of(second, "F") == "30.5000"  # released at the cut, in its own boundary
    # A spike (> 10 %) is held back until confirmed by a second tick at the new level, in tick order.
    intake.decode(tick("AAA", 13.0, B0 + S + 100 * MS), "ticks/AAA", B0 + S + 101 * MS)
    assert value_of(engine.cycle(B0 + 2 * S), "F") == "30.5000"
    intake.decode(tick("AAA", 13.1, B0 + 2 * S + 100 * MS), "ticks/AAA", B0 + 2 * S + 101 * MS)
    assert value_of(engine.cycle(B0 + 3 * S), "F") == "33.1000"
    assert counts_by_reason(intake.counts) == {"accepted": 3, "halted": 1, "status": 1, "spike_held": 1}


def test_held_ticks_follow_a_basket_swap_and_ticks_of_a_dropped_symbol_become_unknown():
    from iopv.engine.reload import PreparedBasket

    engine = engine_for(one_fund(("AAA", "BBB", "CCC"), (10.0, 20.0, 30.0)))
    engine.open(B0)
    engine.intake.decode(tick("CCC", 31.0, B0 + MS), "ticks/CCC", B0 + MS)
    engine.intake.decode(tick("BBB", 21.0, B0 + MS), "ticks/BBB", B0 + MS)
    engine.intake.flush()
    assert engine.intake.held == 2
    new = build_universe(one_fund(("BBB", "AAA"), (20.0, 10.0)))  # CCC gone, slots re-laid
    engine.stage_basket(PreparedBasket(new, PriceBook.carry_over(engine.universe, new), None))
    assert value_of(engine.cycle(B0), "F") == "30.0000"
    assert value_of(engine.cycle(B0 + S), "F") == "31.0000"
    assert counts_by_reason(engine.intake.counts) == {"accepted": 1, "unknown_symbol": 1}


def test_an_engine_never_opened_applies_ticks_as_they_arrive():
    """Arrival order (journals recorded before event time replay so)."""
    engine = engine_for(one_fund())
    engine.intake.decode(tick("AAA", 11.0, B0 + 10 * MS), "ticks/AAA", B0 + 11 * MS)
    assert value_of(engine.cycle(B0), "F") == "31.0000"
    assert not engine.event_time


# --- seeded random tapes against the exact reference and iopv replay ------------------------------

def random_ticks(rng: random.Random, document: list[dict], n: int, boundaries: int, interval_ns: int,
                 watermark_ns: int, late: float = 0.0):
    """(symbol, price, ts, arrival) with stamps bunched around the boundaries and arrivals up to
    the watermark late (a ``late`` share of them after their boundary's cut)."""
    symbols = sorted({h["symbol"] for f in document for h in f["holdings"]} | {"EURUSD"})
    closes = {h["symbol"]: h["price"] for f in document for h in f["holdings"]}
    closes["EURUSD"] = 1.0812
    out = []
    for _ in range(n):
        k = rng.randrange(1, boundaries)
        offset = rng.choice((0, 1, MS, 10 * MS, rng.randrange(interval_ns // 2)))
        ts = B0 + k * interval_ns + rng.choice((-1, 1)) * offset
        symbol = rng.choice(symbols)
        places = 6 if symbol == "EURUSD" else 2
        price = round(closes[symbol] * (1 + rng.gauss(0, 0.01)), places)
        if rng.random() < late:
            arrival = -(-ts // interval_ns) * interval_ns + watermark_ns + rng.randrange(1, 5 * MS)
        else:
            arrival = ts + rng.randrange(0, watermark_ns)
        out.append((symbol, price, ts, arrival))
    out.sort(key=lambda t: t[3])
    return out


def live_values(document, ticks, interval_ns, watermark_ns, boundaries):
    """Feed the ticks to an engine in arrival order and cut each boundary at B + watermark."""
    engine = engine_for(document, interval_s=interval_ns / S, watermark_ms=watermark_ns / MS)
    engine.open(B0)
    values, position = {}, 0
    for k in range(boundaries + 1):
        boundary = B0 + k * interval_ns
        while position < len(ticks) and ticks[position][3] <= boundary + watermark_ns:
            symbol, price, ts, arrival = ticks[position]
            engine.intake.decode(tick(symbol, price, ts), f"ticks/{symbol}", arrival)
            position += 1
        publication = engine.cycle(boundary)
        values[boundary] = {fund: value_of(publication, fund) for fund in publication.funds}
    return values, engine


def reference_values(document, ticks, interval_ns, boundaries, *, cut_ns=None):
    """The exact value at each boundary of every symbol's latest tick stamped at or before it
    (ties: the later arrival); with ``cut_ns``, a tick counts from the first boundary whose cut
    it arrived by (a late tick from the next)."""
    out = {}
    for k in range(boundaries + 1):
        boundary = B0 + k * interval_ns
        latest: dict[str, tuple[int, int, float]] = {}
        for position, (symbol, price, ts, arrival) in enumerate(ticks):
            in_book = ts <= boundary and (cut_ns is None or arrival <= boundary + cut_ns)
            if in_book and (symbol not in latest or (ts, position) >= latest[symbol][:2]):
                latest[symbol] = (ts, position, price)
        out[boundary] = exact(document, {s: Decimal(repr(p)) for s, (_, _, p) in latest.items()})
    return out


@pytest.mark.parametrize("seed", range(6))
def test_live_cut_equals_the_exact_reference_and_replay_when_every_tick_is_in_time(seed):
    rng = random.Random(seed)
    document = make_basket(seed)
    interval_ns = (S, 15 * S, S // 4)[seed % 3]
    watermark_ns = (50 * MS, 20 * MS, 5 * MS)[seed % 3]
    ticks = random_ticks(rng, document, 400, 10, interval_ns, watermark_ns)
    live, engine = live_values(document, ticks, interval_ns, watermark_ns, 10)
    assert live == reference_values(document, ticks, interval_ns, 10)
    assert engine.intake.counts[TickOutcome.LATE] == 0
    # iopv replay of the same ticks, in arrival order (as a recorder writes them), digit for digit.
    universe = build_universe(document)
    tape_lines = b"\n".join(tick(s, p, ts) for s, p, ts, _ in ticks)
    tape = decode_tape(tape_lines, PriceBook(universe).index)
    for boundary, values in replay(universe, tape, interval_ns=interval_ns):
        if boundary in live:
            assert {f: f"{v:.4f}" for f, v in zip(universe.funds, values.tolist())} == live[boundary]


@pytest.mark.parametrize("seed", range(3))
def test_late_ticks_count_from_the_next_boundary(seed):
    rng = random.Random(100 + seed)
    document = make_basket(seed)
    interval_ns, watermark_ns = S, 30 * MS
    ticks = random_ticks(rng, document, 300, 8, interval_ns, watermark_ns, late=0.1)
    live, engine = live_values(document, ticks, interval_ns, watermark_ns, 8)
    assert live == reference_values(document, ticks, interval_ns, 8, cut_ns=watermark_ns)
    assert engine.intake.counts[TickOutcome.LATE] > 0


def test_replay_orders_a_tape_by_boundary_and_keeps_each_ticks_outcome_at_its_line():
    document = one_fund()
    universe = build_universe(document)
    lines = [json.dumps({"symbol": "AAA", "price": 11.0, "ts": B0 + 5 * MS}),  # B0+1's, first in the file
             json.dumps({"symbol": "AAA", "price": 10.5, "ts": B0 - 5 * MS}),  # B0's
             "not json",
             json.dumps({"symbol": "AAA", "price": 10.4, "ts": B0 - 6 * MS})]  # B0's, older: out of order
    tape = decode_tape("\n".join(lines).encode(), PriceBook(universe).index)
    got = [(b, f"{v[0]:.4f}") for b, v in replay(universe, tape, interval_ns=S)]
    assert got == [(B0, "30.5000"), (B0 + S, "31.0000")]
    assert [REASONS[c] for c in tape.code.tolist()] == ["accepted", "accepted", "malformed_json", "out_of_order"]
    assert np.array_equal(tape.line, [1, 2, 3, 4])


def test_intake_without_open_holds_nothing():
    intake = TickIntake(PriceBook(build_universe(one_fund())))
    intake.decode(tick("AAA", 11.0, B0 + 3600 * S), "ticks/AAA", B0)
    intake.flush()
    assert intake.held == 0 and intake.accepted == 1


def test_a_journal_replay_shows_the_boundarys_own_book_before_the_held_ticks_are_applied():
    """``iopv explain`` reads the engine a journal replay yields: its book must be the boundary's,
    without the ticks held for the next boundary (they are applied when the iteration goes on)."""
    import hashlib

    from iopv.engine.journal_replay import JournalReplay, publication_digest, recorded_settings

    settings = load_settings(environ={}, overrides={"engine": {"calendar": "always", "interval_s": 1.0}})
    raw = json.dumps(one_fund()).encode()
    meta = {"version": hashlib.sha256(raw).hexdigest()[:12], "source": "pcf.json", "reason": "start"}
    events = [("session", B0 - S, {"settings": recorded_settings(settings), "horizon_ns": B0}),
              ("basket", B0 - S, (meta, raw)),
              ("tick", B0 + MS, ("ticks/AAA", tick("AAA", 11.0, B0 + MS))),  # B0+1's, arrived before B0's cut
              ("tick", B0 + 2 * MS, ("ticks/BBB", tick("BBB", 21.0, B0 - MS))),
              ("mark", B0, (1, 1, 2, b"")),
              ("mark", B0 + S, (1, 1, 2, b""))]
    seen = []
    for replayed in JournalReplay(events):
        seen.append((value_of(replayed.publication, "F"), replayed.engine.book.price_of("AAA"),
                     publication_digest(replayed.publication.payloads) == replayed.recorded_digest))
    assert [s[:2] for s in seen] == [("31.0000", 10.0), ("32.0000", 11.0)]
