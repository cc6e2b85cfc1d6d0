"""The intake's fast path (plain ``{symbol, price, ts}`` ticks staged without ``decode_tick_full``)
and its sparse staging give exactly the outcomes of the plain reference: every tick through
``decode_tick_full``, seven staged columns, one ``apply_book_nb`` call per flush."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iopv.core.universe import build_universe
from iopv.engine.book import PriceBook
from iopv.engine.intake import TickIntake
from tests.support.reference_intake import RECV_TS, ReferenceIntake

PCF = [
    {"fund": "A", "creation_unit": 1, "currency": "USD", "cash": 0, "fx": {"EUR": 1.5},
     "holdings": [{"symbol": "X", "shares": 1, "price": 10.0},
                  {"symbol": "Y", "shares": 2, "price": 5.0, "currency": "EUR"}]},
    {"fund": "B", "creation_unit": 2, "currency": "USD", "cash": 1, "price_basis": "mid",
     "holdings": [{"symbol": "X", "shares": 3, "price": 10.0}, {"symbol": "W", "shares": 1, "price": 2.5}]},
]
SYMBOLS = ["X", "Y", "W", "EURUSD", "A", "ZZZ"]
MAX_PAYLOAD = 400


def random_item(rng: random.Random, ts: int):
    """A tick, mostly plain and well formed, often hostile in one field."""
    tick = {"symbol": rng.choice(SYMBOLS), "price": round(rng.uniform(0.5, 20.0), 2), "ts": ts}
    roll = rng.random()
    if roll < 0.5:
        return tick
    mutation = rng.randrange(22)
    if mutation == 0:
        tick["price"] = rng.choice([7, 0, -3, 10**400, 2**70, True, False, "1.5", None, [1.0], 0.0, -1.5])
    elif mutation == 1:
        del tick["price"]
    elif mutation == 2:
        del tick["symbol"]
    elif mutation == 3:
        tick["symbol"] = rng.choice(["", 5, None, True, ["X"], "x"])
    elif mutation == 4:
        tick["ts"] = rng.choice([-1, 2**63 - 1, 2**63, 2**64, 1.5, True, "5", None, 0])
    elif mutation == 5:
        del tick["ts"]
    elif mutation == 6:
        tick["status"] = rng.choice(["halted", "trading", "bogus", 1, None, True])
        if rng.random() < 0.5:
            del tick["price"]
    elif mutation == 7:
        tick["bid"] = rng.choice([tick.get("price", 1.0) - 0.01, 0, -1, "1", None, 10**400, True, 1e308])
    elif mutation == 8:
        tick["ask"] = rng.choice([tick.get("price", 1.0) + 0.01, 0, None, 1e-300, False])
    elif mutation == 9:
        tick["bid"], tick["ask"] = tick["price"] - 0.02, tick["price"] + 0.02
    elif mutation == 10:
        tick["size"] = 100  # ignored, but not the plain three fields
    elif mutation == 11:
        return rng.choice([7, None, "X", [], [tick], 1.5, True])
    elif mutation == 12:
        return {"symbol": tick["symbol"], "price": tick["price"], "size": 5}  # three keys, no ts
    elif mutation == 13:
        return {"symbol": tick["symbol"], "ts": ts, "bid": 1.0}  # three keys, no price
    elif mutation == 14:
        tick["ts"] = max(0, ts - rng.randrange(1, 50))  # out of order
    elif mutation == 15:
        tick["price"] = round(tick["price"] * rng.choice([3.0, 0.2]), 2)  # a spike
    elif mutation == 16:
        return {"price": tick["price"], "ts": ts, "bid": None}
    elif mutation == 17:
        tick["price"] = rng.choice([1e-320, 1.7976931348623157e308, 5e-324])
    elif mutation == 18:
        tick["symbol"] = "\u00e9" + tick["symbol"]  # unknown, not ASCII
    elif mutation == 19:
        tick = {"ts": ts, "symbol": tick["symbol"], "price": tick["price"]}  # other key order
    elif mutation == 20:
        tick["price"] = float(rng.randrange(1, 30))  # a float that is integral
    else:
        tick["ts"] = ts  # equal ts: accepted
    return tick


def dumps(value) -> bytes:
    """JSON text; the standard library, as it writes integers beyond 64 bits (orjson refuses)."""
    return json.dumps(value, allow_nan=False).encode()


def random_message(rng: random.Random, ts: int) -> tuple[bytes, str | None]:
    topic = rng.choice(["ticks/X", "ticks/W", "ticks/_batch", "ticks/ZZZ", "other/X", "ticks/X/deep", None])
    roll = rng.random()
    if roll < 0.04:
        return rng.choice([b"{", b"", b"nul", b"[1,", b'{"symbol":"X","price":NaN,"ts":1}', b"\xff"]), topic
    if roll < 0.07:
        return b'{"symbol":"X","price":1e400,"ts":%d}' % ts, topic  # stdlib fallback: infinity
    if roll < 0.09:
        return dumps([{"symbol": "X", "price": 1.0, "ts": ts}] * 40), topic  # oversize
    if roll < 0.5:
        return dumps(random_item(rng, ts)), topic
    count = rng.randrange(0, 12)
    return dumps([random_item(rng, ts + i) for i in range(count)]), topic


def book_arrays(book: PriceBook) -> list[np.ndarray]:
    return [a.copy() for a in book.arrays()]


def assert_same(fast: TickIntake, reference: ReferenceIntake) -> None:
    assert fast.counts.tolist() == reference.counts.tolist()
    for got, want in zip(book_arrays(fast.book), book_arrays(reference.book)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("capacity", [1, 3, 7, 65_536])
def test_fast_path_matches_reference_on_seeded_mix(seed, capacity):
    rng = random.Random(seed * 1000 + capacity)
    spike_pct = rng.choice([0.0, 50.0])
    universe = build_universe(PCF)
    fast = TickIntake(PriceBook(universe), capacity=capacity, max_payload_bytes=MAX_PAYLOAD,
                      spike_pct=spike_pct)
    reference = ReferenceIntake(PriceBook(universe), capacity, spike_pct, max_payload=MAX_PAYLOAD)
    ts = 100
    for _ in range(400):
        payload, topic = random_message(rng, ts)
        ts += rng.randrange(0, 20)
        fast.decode(payload, topic, RECV_TS)
        reference.decode(payload, topic)
        assert fast.pending == len(reference.staged)  # flushed at the same points
        if rng.random() < 0.1:
            fast.flush()
            reference.flush()
            assert_same(fast, reference)
    fast.flush()
    reference.flush()
    assert_same(fast, reference)
    assert fast.received == len(reference.codes)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(SYMBOLS + ["", "_x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["symbol", "price", "ts", "bid", "ask", "status", "size"]), inner, max_size=4),
    max_leaves=8)
tick_like = st.fixed_dictionaries(
    {"symbol": st.sampled_from(SYMBOLS) | json_values,
     "price": st.floats(min_value=-5, max_value=50, allow_nan=False) | json_values,
     "ts": st.integers(min_value=-5, max_value=2**64) | json_values},
    optional={"bid": json_values, "ask": json_values, "status": st.sampled_from(["halted", "trading", "x"])})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(tick_like | json_values, max_size=6) | tick_like, max_size=8),
       st.sampled_from(["ticks/X", "ticks/_batch", None]), st.integers(min_value=1, max_value=5))
def test_fast_path_matches_reference_on_generated_values(messages, topic, capacity):
    universe = build_universe(PCF)
    fast = TickIntake(PriceBook(universe), capacity=capacity, max_payload_bytes=MAX_PAYLOAD)
    reference = ReferenceIntake(PriceBook(universe), capacity, 0.0, max_payload=MAX_PAYLOAD)
    for message in messages:
        payload = dumps(message)
        fast.decode(payload, topic, RECV_TS)
        reference.decode(payload, topic)
    fast.flush()
    reference.flush()
    assert_same(fast, reference)
