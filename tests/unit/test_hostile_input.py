"""Hostile input, property-based (hypothesis): the tick decoder and the basket loader never raise
past their boundary, every rejected tick is counted with a reason, oversize payloads are refused,
and no name that could inject an MQTT topic level or wildcard survives to become a topic or key."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iopv.core.constants import REASONS, TickOutcome
from iopv.core.universe import NAME_PATTERN, PcfError, build_universe, load_pcf
from iopv.engine.book import PriceBook
from iopv.engine.intake import TickIntake

BASKET = [{"fund": "AAA", "creation_unit": 100, "currency": "USD", "cash": 10.0,
           "holdings": [{"symbol": "X", "shares": 10, "price": 5.0}]}]
UNSAFE = "#+/ \t\r\n\x00\x7f"

json_leaf = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
json_key = st.sampled_from(["symbol", "price", "ts", "bid", "ask", "size", "status", "x"]) | st.text(max_size=4)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(json_key, inner, max_size=5), max_leaves=20)
tick_like = st.fixed_dictionaries({}, optional={
    "symbol": st.sampled_from(["X", "Y", "", "X/Y", "#", "+", "a b", "\x00"]) | json_leaf,
    "price": json_leaf, "ts": json_leaf, "bid": json_leaf, "ask": json_leaf})


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    path = tmp_path_factory.mktemp("pcf") / "pcf.json"
    path.write_bytes(orjson.dumps(BASKET))
    return load_pcf(path)


def messages_counted(intake: TickIntake) -> int:
    intake.flush()
    return int(intake.counts.sum())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=200), topic=st.text(max_size=20))
def test_arbitrary_bytes_never_raise_and_are_counted(universe, payload, topic):
    intake = TickIntake(PriceBook(universe))
    intake.decode(payload, topic, time.time_ns())
    assert messages_counted(intake) >= 1 or payload.strip().startswith(b"[")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(tick_like | json_value, max_size=6), topic_level=st.text(max_size=6))
def test_json_ticks_each_get_exactly_one_outcome(universe, items, topic_level):
    intake = TickIntake(PriceBook(universe))
    intake.decode(orjson.dumps(items), f"ticks/{topic_level}", time.time_ns())
    assert messages_counted(intake) == len(items), "every item is counted once, with a reason"
    assert len(intake.counts) == len(REASONS)


def test_oversize_payload_is_refused_and_counted(universe):
    intake = TickIntake(PriceBook(universe), max_payload_bytes=1024)
    intake.decode(b"[" + b'{"symbol":"X","price":1.0},' * 100 + b'{"symbol":"X","price":1.0}]')
    intake.flush()
    assert intake.counts[TickOutcome.OVERSIZE_PAYLOAD] == 1 and intake.accepted == 0


@pytest.mark.parametrize("symbol", ["X/Y", "#", "+", "X Y", "X\n", "iopv/AAA", "X\x00"])
def test_topic_injecting_symbols_are_only_ever_unknown(universe, symbol):
    """A tick can only address a slot of the book, whose names passed NAME_PATTERN."""
    book = PriceBook(universe)
    intake = TickIntake(book)
    intake.decode(orjson.dumps({"symbol": symbol, "price": 1.0, "ts": 1}), f"ticks/{symbol}")
    intake.flush()
    assert intake.counts[TickOutcome.UNKNOWN_SYMBOL] == 1
    assert all(NAME_PATTERN.match(name) for name in book.index)


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=1, max_size=10).filter(lambda n: any(c in n for c in UNSAFE)))
def test_pcf_rejects_unsafe_fund_and_symbol_names(name):
    for document in ([{**BASKET[0], "fund": name}],
                     [{**BASKET[0], "holdings": [{"symbol": name, "shares": 1, "price": 1.0}]}]):
        with pytest.raises(PcfError):
            build_universe(document)


@settings(max_examples=300, deadline=None)
@given(document=json_value | st.lists(st.fixed_dictionaries({}, optional={
    "fund": json_leaf | st.just("AAA"), "creation_unit": json_leaf, "currency": json_leaf | st.just("USD"),
    "cash": json_leaf, "fx": json_value, "holdings": st.lists(json_value | tick_like, max_size=3)}), max_size=3))
def test_pcf_loader_raises_only_pcf_error(document):
    try:
        universe = build_universe(document)
    except PcfError:
        return
    assert all(NAME_PATTERN.match(f) for f in universe.funds)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_pcf_file_bytes_raise_only_pcf_error(tmp_path, data):
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    try:
        load_pcf(path)
    except PcfError:
        pass
