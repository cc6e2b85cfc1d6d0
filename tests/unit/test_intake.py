"""Live tick intake on hostile payloads: exact counts per reason, the book holds exactly the
accepted prices, and nothing ever raises."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iopv.core.constants import counts_by_reason
from iopv.core.universe import build_universe
from iopv.engine.book import NEVER, PriceBook
from iopv.engine.intake import TickIntake

PCF = [
    {"fund": "A", "creation_unit": 1, "currency": "USD", "cash": 0, "fx": {"EUR": 1.5},
     "holdings": [{"symbol": "X", "shares": 1, "price": 10.0},
                  {"symbol": "Y", "shares": 2, "price": 5.0, "currency": "EUR"}]},
    {"fund": "B", "creation_unit": 2, "currency": "USD", "cash": 1,
     "holdings": [{"symbol": "X", "shares": 3, "price": 10.0}, {"symbol": "W", "shares": 1, "price": 2.5}]},
]
CLOSE = {"X": 10.0, "Y": 5.0, "W": 2.5, "EURUSD": 1.5}


@pytest.fixture
def book() -> PriceBook:
    return PriceBook(build_universe(PCF))


def book_state(book: PriceBook) -> dict[str, tuple[float, int]]:
    return {s: (book.price_of(s), int(book.last_ts[book.index[s]])) for s in book.symbols}


def expect_book(book: PriceBook, ticked: dict[str, tuple[float, int]]) -> None:
    expected = {s: ticked.get(s, (CLOSE[s], NEVER)) for s in CLOSE}
    assert book_state(book) == expected
    assert book.prices[book.universe.one_index] == 1.0


def test_array_mixing_good_and_bad_ticks(book):
    intake = TickIntake(book)
    ticks = [
        {"symbol": "X", "price": 11.0, "ts": 100},
        {"symbol": "X", "price": "12", "ts": 101},
        {"symbol": "X", "price": True, "ts": 102},
        {"symbol": "X", "price": False, "ts": 102},
        {"symbol": "X", "price": None, "ts": 103},
        {"symbol": "X", "price": [1.0], "ts": 104},
        {"symbol": "X", "price": {"v": 1.0}, "ts": 104},
        {"symbol": "X", "ts": 105},
        {"price": 1.0, "ts": 106},
        {"symbol": 5, "price": 1.0, "ts": 107},
        {"symbol": "", "price": 1.0, "ts": 107},
        7, None, [], "X",
        {"symbol": "ZZZ", "price": 1.0, "ts": 108},
        {"symbol": "X", "price": 0, "ts": 109},
        {"symbol": "X", "price": -2.5, "ts": 110},
        {"symbol": "X", "price": 12.0, "ts": 99},
        {"symbol": "X", "price": 13.0, "ts": 1.5e2},
        {"symbol": "X", "price": 13.0, "ts": -1},
        {"symbol": "X", "price": 13.0, "ts": "100"},
        {"symbol": "X", "price": 13.0, "ts": 2**63},
        {"symbol": "EURUSD", "price": 1.25, "ts": 100, "bid": 1.2, "ask": 1.3, "size": 10},
        {"symbol": "W", "price": 3, "ts": 0},
    ]
    intake.decode(json.dumps(ticks).encode(), "ticks/_batch", recv_ts_ns=10**18)
    assert intake.pending == len(ticks)
    assert intake.flush() == 3
    assert counts_by_reason(intake.counts) == {
        "accepted": 3, "bad_price_type": 5, "missing_price": 2, "missing_symbol": 1, "bad_symbol": 2,
        "not_an_object": 4, "unknown_symbol": 1, "non_positive_price": 2, "out_of_order": 1, "bad_ts": 4}
    assert (intake.received, intake.accepted, intake.rejected) == (len(ticks), 3, len(ticks) - 5)
    expect_book(book, {"X": (11.0, 100), "EURUSD": (1.25, 100), "W": (3.0, 0)})


@pytest.mark.parametrize("payload", [
    b"not json", b'{"symbol": "X", "price": 1.5', b'{"symbol": "X", "price": NaN, "ts": 1}',
    b'{"symbol": "X", "price": Infinity, "ts": 1}', b"", b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000,
    b'[{"symbol": "X", "price": 11.0, "ts": 1},]', b"}{",
])
def test_malformed_payload_is_one_rejection(book, payload):
    intake = TickIntake(book)
    intake.decode(payload, "ticks/X", recv_ts_ns=1)
    intake.flush()
    assert counts_by_reason(intake.counts) == {"malformed_json": 1}
    expect_book(book, {})


@pytest.mark.parametrize("huge", ["1e400", "-1e400", "1" + "0" * 400])
def test_overflowing_price_is_non_finite_and_spares_the_rest(book, huge):
    intake = TickIntake(book)
    intake.decode(f'[{{"symbol": "X", "price": 11.0, "ts": 1}}, {{"symbol": "Y", "price": {huge}, "ts": 1}}]'.encode(),
                  "ticks/_batch", recv_ts_ns=1)
    intake.flush()
    assert counts_by_reason(intake.counts) == {"accepted": 1, "non_finite_price": 1}
    expect_book(book, {"X": (11.0, 1)})


def test_missing_ts_uses_receive_time(book):
    intake = TickIntake(book)
    intake.decode(b'{"symbol": "Y", "price": 6.0}', "ticks/Y", recv_ts_ns=5000)
    intake.decode(b'{"symbol": "Y", "price": 7.0, "ts": null}', "ticks/Y", recv_ts_ns=6000)
    intake.decode(b'{"symbol": "Y", "price": 8.0, "ts": 5999}', "ticks/Y", recv_ts_ns=9000)  # older
    intake.flush()
    assert counts_by_reason(intake.counts) == {"accepted": 2, "out_of_order": 1}
    expect_book(book, {"Y": (7.0, 6000)})


def test_topic_symbol_and_payload_symbol(book):
    intake = TickIntake(book)
    intake.decode(b'{"price": 15.0, "ts": 200}', "ticks/X", recv_ts_ns=1)  # topic names it
    intake.decode(b'{"symbol": "W", "price": 4.0, "ts": 200}', "ticks/X", recv_ts_ns=1)  # payload wins
    intake.decode(b'[{"price": 16.0, "ts": 201}, {"symbol": "Y", "price": 6.0, "ts": 201}]', "ticks/X", recv_ts_ns=1)
    intake.decode(b'{"price": 1.0, "ts": 300}', "ticks/_batch", recv_ts_ns=1)  # no symbol anywhere
    intake.decode(b'{"price": 1.0, "ts": 300}', "ticks/X/deeper", recv_ts_ns=1)
    intake.decode(b'{"price": 1.0, "ts": 300}', "quotes/X", recv_ts_ns=1)
    intake.decode(b'{"price": 1.0, "ts": 300}', "ticks/", recv_ts_ns=1)
    intake.decode(b'{"price": 1.0, "ts": 300}', None, recv_ts_ns=1)
    intake.decode(b'{"price": 17.0, "ts": 300}', "ticks/NOPE", recv_ts_ns=1)
    intake.flush()
    assert counts_by_reason(intake.counts) == {"accepted": 4, "missing_symbol": 5, "unknown_symbol": 1}
    expect_book(book, {"X": (16.0, 201), "W": (4.0, 200), "Y": (6.0, 201)})


def test_custom_topic_prefix(book):
    intake = TickIntake(book, topic_prefix="feed")
    intake.decode(b'{"price": 15.0, "ts": 1}', "feed/X", recv_ts_ns=1)
    intake.decode(b'{"price": 16.0, "ts": 2}', "ticks/X", recv_ts_ns=1)
    intake.flush()
    assert counts_by_reason(intake.counts) == {"accepted": 1, "missing_symbol": 1}
    expect_book(book, {"X": (15.0, 1)})


def test_oversize_payload_is_rejected_whole(book):
    intake = TickIntake(book, max_payload_bytes=200)
    good = [{"symbol": "X", "price": 11.0 + k, "ts": k} for k in range(10)]
    payload = json.dumps(good).encode()
    assert len(payload) > 200
    intake.decode(payload, "ticks/_batch", recv_ts_ns=1)
    small = json.dumps(good[:2]).encode()
    assert len(small) <= 200
    intake.decode(small, "ticks/_batch", recv_ts_ns=1)
    intake.flush()
    assert counts_by_reason(intake.counts) == {"oversize_payload": 1, "accepted": 2}
    expect_book(book, {"X": (12.0, 1)})


def test_capacity_overflow_flushes_mid_message_without_losing_ticks(book):
    intake = TickIntake(book, capacity=3)
    ticks = [{"symbol": "X", "price": 10.0 + k, "ts": 100 + k} for k in range(11)]
    ticks.insert(5, {"symbol": "X", "price": 99.0, "ts": 50})  # out of order, in the 2nd flush
    ticks.insert(8, {"symbol": "X", "price": "bad", "ts": 500})
    intake.decode(json.dumps(ticks).encode(), "ticks/_batch", recv_ts_ns=1)
    assert intake.pending == 1  # 13 ticks: flushed 4 times already, mid-message
    assert counts_by_reason(intake.counts) == {"accepted": 10, "out_of_order": 1, "bad_price_type": 1}
    expect_book(book, {"X": (19.0, 109)})
    intake.flush()
    assert intake.pending == 0
    assert counts_by_reason(intake.counts) == {"accepted": 11, "out_of_order": 1, "bad_price_type": 1}
    expect_book(book, {"X": (20.0, 110)})
    assert intake.messages == 1


def test_flush_with_nothing_staged(book):
    intake = TickIntake(book)
    assert intake.flush() == 0
    assert intake.received == 0
    expect_book(book, {})


def test_random_hostile_messages_match_a_plain_model(book):
    """Many random messages; the book equals a plain model of the contract applied tick by tick."""
    rng = random.Random(99)
    intake = TickIntake(book, capacity=17)
    model: dict[str, tuple[float, int]] = {}
    expected_total = 0
    symbols = ["X", "Y", "W", "EURUSD", "NOPE"]
    for _ in range(300):
        items = []
        for _ in range(rng.randint(1, 6)):
            tick = {"symbol": rng.choice(symbols),
                    "price": rng.choice([round(rng.uniform(0.1, 50), 3), 0, -1.0, "1", None]),
                    "ts": rng.choice([rng.randint(0, 500), rng.randint(0, 500), -5, 1.5])}
            if rng.random() < 0.1:
                del tick["ts"]
            items.append(tick)
        recv = rng.randint(0, 500)
        payload = json.dumps(items if len(items) > 1 or rng.random() < 0.5 else items[0]).encode()
        intake.decode(payload, "ticks/_batch", recv_ts_ns=recv)
        for tick in items:
            expected_total += 1
            price, ts = tick["price"], tick.get("ts", recv)
            ok = (type(price) in (int, float) and price > 0 and type(ts) is int and ts >= 0
                  and tick["symbol"] != "NOPE")
            if ok and ts >= model.get(tick["symbol"], (0.0, -1))[1]:
                model[tick["symbol"]] = (float(price), ts)
        if rng.random() < 0.3:
            intake.flush()
    intake.flush()
    assert intake.received == expected_total
    expect_book(book, model)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["X", "Y", "W", "EURUSD"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["symbol", "price", "ts", "bid", "x"]), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode())),
       topic=st.sampled_from([None, "ticks/X", "ticks/_batch", "ticks/", "other"]))
def test_decode_never_raises(book, payload, topic):
    intake = TickIntake(book, capacity=2, max_payload_bytes=256)
    intake.decode(payload, topic, recv_ts_ns=7)
    staged = intake.received + intake.pending
    intake.flush()
    assert intake.received == staged
    assert staged >= 1 or payload.strip().startswith(b"[")  # only an empty array stages nothing
    assert np.isfinite(book.prices).all() and (book.prices > 0).all()


def test_decode_is_stage_and_records_nothing(book):
    """The intake only stages: recording what was received (the audit journal) is the feed's
    (``MqttTickFeed(recorder=...)``; tests/unit/test_journal.py records through its socket path)."""
    intake = TickIntake(book)
    assert TickIntake.decode is TickIntake.stage and not hasattr(intake, "recorder")
    intake.decode(b'{"symbol": "X", "price": 10.5}', "ticks/X", 7)
    intake.stage(b"{not json", "ticks/Z")
    intake.flush()
    assert intake.messages == 2
    assert counts_by_reason(intake.counts) == {"accepted": 1, "malformed_json": 1}

