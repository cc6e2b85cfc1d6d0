"""The compiled tick scanner (iopv.kernels.scanner) against the plain Python decoder, on valid and
hostile payload text: the same staged columns, outcome counts and book state for every input
(the scanner's own ticks and its fallbacks alike), exact float parsing, the symbol table on
adversarial names, a basket reload, and tapes."""

from __future__ import annotations

import json
import random
import struct
from decimal import Decimal

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iopv.core.constants import (
    N_FLOAT_ROWS,
    N_INT_ROWS,
    N_OUTCOMES,
    TickFloatRow,
    TickIntRow,
    counts_by_reason,
)
from iopv.core.universe import build_universe
from iopv.engine.book import PriceBook
from iopv.engine.codec import decode_payload, decode_tick_full, topic_symbol
from iopv.engine.intake import TickIntake
from iopv.engine.tape import decode_tape, decode_tape_python
from iopv.kernels.scanner import PayloadScan, TopicSlot, scan_payload_nb
from iopv.kernels.symbols import MAX_SYMBOL_BYTES, SymbolTable, symbol_table
from tests.support.reference_intake import RECV_TS, ReferenceIntake

PCF = [
    {"fund": "A", "creation_unit": 1, "currency": "USD", "cash": 0, "fx": {"EUR": 1.5},
     "holdings": [{"symbol": "X", "shares": 1, "price": 10.0},
                  {"symbol": "Y", "shares": 2, "price": 5.0, "currency": "EUR"}]},
    {"fund": "B", "creation_unit": 2, "currency": "USD", "cash": 1, "price_basis": "mid",
     "holdings": [{"symbol": "X", "shares": 3, "price": 10.0}, {"symbol": "W", "shares": 1, "price": 2.5},
                  {"symbol": "LONGER.SYMBOL-NAME_9", "shares": 1, "price": 3.0}]},
]
MAX_PAYLOAD = 600
SYMBOLS = ["X", "Y", "W", "EURUSD", "A", "B", "LONGER.SYMBOL-NAME_9", "ZZZ", "X" * 33]


def staged_columns(intake: TickIntake) -> list[np.ndarray]:
    """The intake's staged (slot, price, bid, ask, status, ts, code) columns."""
    intake._spill()  # noqa: SLF001 -- the ticks decoded in Python go after the scanned ones
    return [column[:intake.pending].copy() for column in intake._columns]  # noqa: SLF001


def assert_same_state(intake: TickIntake, reference: ReferenceIntake) -> None:
    for got, want in zip(staged_columns(intake), reference.columns()):
        np.testing.assert_array_equal(got, want)
    assert intake.counts.tolist() == reference.counts.tolist()
    for got, want in zip(intake.book.arrays(), reference.book.arrays()):
        np.testing.assert_array_equal(got, want)


def pair(capacity: int = 65_536, spike_pct: float = 0.0) -> tuple[TickIntake, ReferenceIntake]:
    universe = build_universe(PCF)
    intake = TickIntake(PriceBook(universe), capacity=capacity, max_payload_bytes=MAX_PAYLOAD,
                        spike_pct=spike_pct)
    return intake, ReferenceIntake(PriceBook(universe), capacity, spike_pct, max_payload=MAX_PAYLOAD)


def scan(payload: bytes, book: PriceBook, topic_slot: int = TopicSlot.NO_SYMBOL) -> tuple[int, list[np.ndarray]]:
    """scan_payload_nb on its own: (its return value, the columns it wrote)."""
    ints = np.full((N_INT_ROWS, 64), -7, dtype=np.int64)
    floats = np.full((N_FLOAT_ROWS, 64), -7.0)
    scanned = scan_payload_nb(payload, 0, symbol_table(book.index).table, ints, floats, 0, 64,
                              topic_slot, RECV_TS)
    n = max(scanned, 0)
    I, F = TickIntRow, TickFloatRow
    return scanned, [ints[I.SLOT, :n], floats[F.PRICE, :n], floats[F.BID, :n], floats[F.ASK, :n],
                     ints[I.TRADING, :n], ints[I.TS, :n], ints[I.CODE, :n]]


# --- payload text: valid, hostile, and everything between -------------------------------------

#: JSON whitespace, mostly none (characters JSON does not allow come in as payload noise).
WHITESPACE = st.sampled_from([""] * 8 + [" ", " ", "  ", "\t", "\n", "\r\n", " \r "])
NUMBERS = st.sampled_from([
    "0", "-0", "0.0", "-0.0", "7", "-3", "1e400", "-1e400", "1e-400", "1E5", "1.5e+3", "2.5E-3",
    "0e999", "01", "-01", "1.", ".5", "1e", "+1", "1.5.2", "0x10", "NaN", "Infinity", "-Infinity",
    "9007199254740992", "9007199254740993", "9223372036854775807", "9223372036854775808",
    "18446744073709551616", "1" + "0" * 30, "1" * 400, "187.12", "187.120000000000000000001",
    "0.30000000000000004", "4.9e-324", "1.7976931348623157e308", "123456789012345678",
    "1700000000123456789", "1e22", "1e23", "9.999999999999999e22", "5e-22", "5e-23",
])
DECIMALS = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
    st.sampled_from(["", "", "-"]),
    st.integers(0, 10**20).map(str),
    st.sampled_from(["", ""]) | st.text("0123456789", min_size=1, max_size=12).map(lambda f: "." + f),
    st.sampled_from(["", "", ""]) | st.integers(-40, 40).map(lambda e: f"e{e}"))
STRINGS = st.sampled_from([
    '"X"', '"Y"', '"W"', '"EURUSD"', '"LONGER.SYMBOL-NAME_9"', '"ZZZ"', '""', '"\\u0058"', '"X\\n"',
    '"\u00e9X"', '"halted"', '"trading"', '"bogus"', '"Halted"', '"x\ty"', '"X\x00"', '"' + "X" * 33 + '"',
    '"' + "X" * 32 + '"', '"A"', '"B"', '"a\\"b"', '"\\/"',
]) | st.text(max_size=3).map(json.dumps)
LITERALS = st.sampled_from(["true", "false", "null", "nul", "True", "[]", "[1.5]", "{}", '{"a": 1}'])
VALUES = st.one_of(NUMBERS, DECIMALS, STRINGS, LITERALS)
KEYS = st.sampled_from(['"symbol"', '"price"', '"ts"', '"bid"', '"ask"', '"size"', '"status"', '"x"',
                        '"pr\\u0069ce"', '"Price"', '""', '"ts "'])
GOOD = {
    '"symbol"': st.sampled_from(['"X"', '"Y"', '"W"', '"EURUSD"', '"ZZZ"', '"LONGER.SYMBOL-NAME_9"']),
    '"price"': st.sampled_from(["11.5", "10", "9.99", "12.25", "0.5", "1e1", "1.05E1", "0", "-2.5"])
    | st.floats(0.01, 1e6).map(lambda x: repr(round(x, 4))),
    '"ts"': st.integers(0, 2**63 - 1).map(str) | st.sampled_from(["100", "150", "100"]),
    '"bid"': st.sampled_from(["9.5", "11", "null"]),
    '"ask"': st.sampled_from(["11.5", "12", "null"]),
    '"size"': st.sampled_from(["100", "0", "1e400", '"lots"', "null"]),
    '"status"': st.sampled_from(['"halted"', '"trading"', "null"]),
}


@st.composite
def tick_objects(draw) -> str:
    """The text of a tick object: mostly plain and valid, often with one or two hostile edits
    (missing, repeated, extra or escaped keys, odd values, odd whitespace)."""
    keys = ['"symbol"', '"price"', '"ts"']
    keys += draw(st.lists(st.sampled_from(['"bid"', '"ask"', '"size"', '"status"']), max_size=2, unique=True))
    pairs = [(k, draw(GOOD[k])) for k in draw(st.permutations(keys))]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        edit = draw(st.integers(0, 4))
        if edit == 0 and pairs:
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        elif edit == 1 and pairs:  # a repeated key: the last one wins
            key = draw(st.sampled_from([k for k, _ in pairs]))
            pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(GOOD.get(key, VALUES) | VALUES)))
        elif edit == 2 and pairs:
            k = draw(st.integers(0, len(pairs) - 1))
            pairs[k] = (pairs[k][0], draw(VALUES))
        elif edit == 3:
            pairs.append((draw(KEYS), draw(VALUES)))
    ws = [draw(WHITESPACE) for _ in range(4)]
    body = f"{ws[0]},{ws[1]}".join(f"{k}{ws[2]}:{ws[3]}{v}" for k, v in pairs)
    return "{" + ws[1] + body + ws[2] + "}"


@st.composite
def payloads(draw) -> bytes:
    elements = draw(st.lists(st.one_of(tick_objects(), tick_objects(), tick_objects(), VALUES),
                             min_size=0, max_size=6))
    shape = draw(st.integers(0, 9))
    ws = draw(WHITESPACE)
    if shape == 0 and elements:
        text = elements[0]
    elif shape == 1:
        text = draw(tick_objects())
    else:
        text = "[" + ws + ("," + ws).join(elements) + ws + "]"
    noise = draw(st.integers(0, 29))
    if noise == 0:
        text = text + ","
    elif noise == 1:
        text = text[:-1]
    elif noise == 2:
        text = "\ufeff" + text
    elif noise == 3:
        text = text.replace(",", ",,", 1)
    elif noise == 4:
        text = text + "x"
    elif noise == 5:  # a character that is not JSON whitespace
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\x0c", "\x0b", "\u00a0", "\x00"])) + text[at:]
    return (draw(WHITESPACE) + text + draw(WHITESPACE)).encode()


TOPICS = st.sampled_from([None, "ticks/X", "ticks/W", "ticks/ZZZ", "ticks/_batch", "other/X", "ticks/"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(payloads(), TOPICS), min_size=1, max_size=8), st.integers(1, 6),
       st.sampled_from([0.0, 50.0]))
def test_scanner_and_fallback_match_python(messages, capacity, spike_pct):
    """Same staged columns after every message (flush points included), same counts and book."""
    intake, reference = pair(capacity, spike_pct)
    for payload, topic in messages:
        intake.decode(payload, topic, RECV_TS)
        reference.decode(payload, topic)
        assert intake.pending == len(reference.staged)
        for got, want in zip(staged_columns(intake), reference.columns()):
            np.testing.assert_array_equal(got, want)
    intake.flush()
    reference.flush()
    assert_same_state(intake, reference)


@settings(max_examples=300, deadline=None)
@given(st.lists(tick_objects(), min_size=1, max_size=5), TOPICS)
def test_scanned_columns_equal_decode_tick_full(objects, topic):
    """The kernel alone: when it reads a payload, its columns are decode_tick_full's values."""
    book = PriceBook(build_universe(PCF))
    payload = ("[" + ",".join(objects) + "]").encode()
    symbol = topic_symbol(topic, "ticks") if topic else None
    slot = TopicSlot.NO_SYMBOL if symbol is None else book.index.get(symbol, -1)
    scanned, columns = scan(payload, book, slot)
    items, ok = decode_payload(payload)
    if scanned == PayloadScan.FALLBACK:
        return
    assert ok and scanned == len(items)
    rows = [decode_tick_full(item, symbol, RECV_TS, book.index) for item in items]
    code, security, price, bid, ask, status, ts = zip(*rows)
    for got, want in zip(columns, (security, price, bid, ask, status, ts, code)):
        np.testing.assert_array_equal(got, np.array(want, dtype=got.dtype))


PLAIN = [
    b'{"symbol":"X","price":11.5,"ts":100}',
    b'[{"symbol":"X","price":11.5,"ts":100},{"symbol":"Y","price":6,"ts":1700000000123456789}]',
    b' [ { "ts" : 5 , "price" : 1E1 , "symbol" : "W" } ] ',
    b'[{"symbol":"X","price":11.5,"ts":100,"bid":11.4,"ask":11.6,"size":300}]',
    b'[{"symbol":"X","status":"halted","ts":100},{"symbol":"X","price":"12","ts":1},7,null,"X"]',
    b'[{"symbol":"X","price":11.5,"price":12.5,"ts":100,"ts":99}]',
    b'[{"symbol":"NOPE","price":1.5,"ts":1},{"symbol":"X","price":-1.5,"ts":1},{"symbol":"X","price":0,"ts":1}]',
    b'[{"price":1.5,"ts":1}]',
    b'[{"symbol":null,"price":1.5,"ts":1},{"symbol":"","price":1.5,"ts":1},{"symbol":5,"price":1.5}]',
    b'[{"symbol":"X","price":1.5,"ts":-1},{"symbol":"X","price":1.5,"ts":1.0},{"symbol":"X","price":1.5,"ts":9223372036854775808}]',
    b'[{"symbol":"X","price":1.5,"ts":1,"bid":2,"ask":1},{"symbol":"X","price":1.5,"ts":1,"bid":"1"}]',
    b'[]',
]
HOSTILE = [
    b'{"symbol":"X","price":NaN,"ts":1}', b'[{"symbol":"X","price":1e400,"ts":1}]',
    b'[{"symbol":"X","price":11.5,"ts":1},]', b'[{"symbol":"X","price":11.5,"ts":1,"venue":"N"}]',
    b'[{"symbol":"\\u0058","price":11.5,"ts":1}]', b'[{"symbol":"X","price":-0.0,"ts":1}]',
    b'[{"symbol":"X","price":0.1000000000000000055511151231257827,"ts":1}]', b'\xef\xbb\xbf[]',
    b'[{"symbol":"X","price":[1.5],"ts":1}]', b'[[{"symbol":"X","price":1.5,"ts":1}]]', b'',
    b'[{"symbol":"\xc3\xa9","price":1.5,"ts":1}]', b'{"symbol":"X","price":1.5,"ts":1}\n{}',
]


@pytest.mark.parametrize("payload", PLAIN)
def test_plain_payloads_are_scanned(payload):
    """The common forms never fall back (else the compiled path would be idle)."""
    scanned, _ = scan(payload, PriceBook(build_universe(PCF)))
    assert scanned >= 0


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_payloads_fall_back_and_match(payload):
    scanned, _ = scan(payload, PriceBook(build_universe(PCF)))
    assert scanned == PayloadScan.FALLBACK
    intake, reference = pair()
    intake.decode(payload, "ticks/X", RECV_TS)
    reference.decode(payload, "ticks/X")
    intake.flush()
    reference.flush()
    assert_same_state(intake, reference)


def test_topic_symbol_is_asked_for_only_when_a_tick_lacks_one():
    intake, reference = pair()
    for payload, topic in [(b'{"price": 15.0, "ts": 200}', "ticks/X"),
                           (b'[{"price": 16.0, "ts": 201}, {"symbol": "Y", "price": 6.0, "ts": 201}]', "ticks/W"),
                           (b'{"symbol": "W", "price": 4.0, "ts": 200}', "ticks/X"),
                           (b'{"symbol": null, "price": 4.0, "ts": 200}', "ticks/X"),
                           (b'{"price": 17.0, "ts": 300}', "ticks/NOPE"),
                           (b'{"price": 1.0, "ts": 300}', "ticks/_batch"),
                           (b'{"price": 1.0, "ts": 300}', None)]:
        intake.decode(payload, topic, RECV_TS)
        reference.decode(payload, topic)
    intake.flush()
    reference.flush()
    assert_same_state(intake, reference)
    assert counts_by_reason(intake.counts) == {"accepted": 3, "out_of_order": 1, "missing_symbol": 3,
                                               "unknown_symbol": 1}


@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 64])
def test_batches_longer_than_the_room_flush_where_python_does(capacity):
    rng = random.Random(capacity)
    intake, reference = pair(capacity)
    for k in range(40):
        ticks = [{"symbol": rng.choice(SYMBOLS[:6]), "price": round(rng.uniform(1, 20), 2), "ts": 100 + k}
                 for _ in range(rng.randint(0, 13))]
        payload = orjson.dumps(ticks if rng.random() < 0.9 else ticks[:1])
        intake.decode(payload, "ticks/_batch", RECV_TS)
        reference.decode(payload, "ticks/_batch")
        assert intake.pending == len(reference.staged)
    intake.flush()
    reference.flush()
    assert_same_state(intake, reference)


def test_python_route_and_scanner_interleave_in_order():
    """Ticks decoded in Python (a fallback) and scanned ones are applied in arrival order."""
    intake, reference = pair()
    messages = [b'[{"symbol":"X","price":11.0,"ts":5}]', b'{"symbol":"X","price":12.0,"ts":6,"venue":"N"}',
                b'{"symbol":"X","price":13.0,"ts":4}', bytearray(b'{"symbol":"X","price":14.0,"ts":7}'),
                b'[{"symbol":"X","price":15.0,"ts":7}]']
    for payload in messages:
        intake.decode(payload, None, RECV_TS)
        reference.decode(bytes(payload), None)
    intake.flush()
    reference.flush()
    assert_same_state(intake, reference)
    assert counts_by_reason(intake.counts) == {"accepted": 4, "out_of_order": 1}
    assert intake.book.price_of("X") == 15.0


# --- exact numbers ------------------------------------------------------------------------------

def same_double(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


def exact_path_expected(text: str) -> bool:
    """The scanner must take a number whose digits (leading zeros dropped) fit 2**53 and whose
    decimal exponent is within +-22 (and that is not a negative zero)."""
    sign, digits, exponent = Decimal(text).as_tuple()
    mantissa = int("".join(map(str, digits)))
    if mantissa == 0:
        return not sign
    return mantissa <= 2**53 and -22 <= exponent <= 22


def scanned_price(text: str) -> float | None:
    book = PriceBook(build_universe(PCF))
    scanned, columns = scan(b'[{"symbol":"X","price":%s,"ts":1}]' % text.encode(), book)
    return None if scanned == PayloadScan.FALLBACK else float(columns[1][0])


decimal_texts = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{frac}{exp}",
    st.sampled_from(["", "-"]),
    st.sampled_from(["0"]) | st.integers(1, 10**19).map(str),
    st.sampled_from([""]) | st.text("0123456789", min_size=1, max_size=20).map(lambda f: "." + f),
    st.sampled_from([""]) | st.builds(lambda e, s, n: f"{e}{s}{n}", st.sampled_from("eE"),
                                       st.sampled_from(["", "+", "-"]), st.integers(0, 40)))


@settings(max_examples=3000, deadline=None)
@given(decimal_texts)
def test_prices_parse_exactly_as_python_and_orjson(text):
    value = scanned_price(text)
    if exact_path_expected(text):
        assert value is not None, text
    if value is not None:
        assert same_double(value, float(text)), text
        assert same_double(value, float(orjson.loads(text))), text


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=1e-300, max_value=1e300))
def test_shortest_reprs_of_doubles_round_trip(x):
    text = repr(x)
    value = scanned_price(text)
    if value is not None:
        assert same_double(value, x)
    if exact_path_expected(text):
        assert value is not None


def test_fast_path_boundaries():
    for text in ["9007199254740992", "9007199254740993", "1e22", "1e23", "123e-22", "1.23e-20",
                 "0.0000000000000000000001", "4503599627370497.5", "0e500", "0.0"]:
        value = scanned_price(text)
        assert (value is not None) == exact_path_expected(text), text
        if value is not None:
            assert same_double(value, float(text))


@pytest.mark.parametrize("text,code", [("9223372036854775807", "accepted"), ("9223372036854775808", "bad_ts"),
                                       ("0", "accepted"), ("-1", "bad_ts"), ("1.0", "bad_ts"), ("1e3", "bad_ts"),
                                       ("99999999999999999999999", "bad_ts"), ("-99999999999999999999", "bad_ts")])
def test_ts_needs_no_fallback(text, code):
    book = PriceBook(build_universe(PCF))
    payload = b'[{"symbol":"X","price":1.5,"ts":%s}]' % text.encode()
    scanned, columns = scan(payload, book)
    assert scanned == 1
    intake = TickIntake(book)
    intake.decode(payload, None, RECV_TS)
    intake.flush()
    assert counts_by_reason(intake.counts) == {code: 1}


# --- the symbol table ---------------------------------------------------------------------------

def adversarial_names(rng: random.Random) -> list[str]:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_"
    names = {"A", "AA", "AAA", "A" * 8, "A" * 9, "A" * 16, "A" * 17, "A" * 24, "A" * 25, "A" * 32,
             "AB", "BA", "A.B", "A-B", "A_B", "X" * 7 + "Y", "X" * 8 + "Y", "X" * 15 + "Y", "X" * 31 + "Y"}
    base = "".join(rng.choice(alphabet) for _ in range(32))
    names.update(base[:k] for k in range(1, 33))  # every prefix of one name
    for _ in range(300):
        names.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 32))))
    return sorted(names)


@pytest.mark.parametrize("seed", range(3))
def test_symbol_table_finds_every_name_and_nothing_else(seed):
    rng = random.Random(seed)
    names = adversarial_names(rng)
    rng.shuffle(names)
    index = {name: rng.randrange(10**6) for name in names}
    table = SymbolTable(index)
    assert table.table.shape[0] >= 2 * len(index)
    for name, slot in index.items():
        assert table.slot_of(name) == slot, name
    for _ in range(2000):
        probe = "".join(rng.choice("ABXY.-_0") for _ in range(rng.randint(1, 34)))
        assert table.slot_of(probe) == index.get(probe, -1), probe


def test_symbol_table_under_collisions():
    """Many names in a small table: long probe runs, wrap-around, same-length neighbours."""
    for n in (1, 3, 4, 7, 60):
        names = [f"S{k:03d}" for k in range(n)] + [f"S{k:03d}x" for k in range(n)]
        index = {name: k for k, name in enumerate(names)}
        table = SymbolTable(index)
        assert [table.slot_of(name) for name in names] == list(range(2 * n))
        assert table.slot_of("S") == table.slot_of(f"S{n:03d}") == table.slot_of("S000xx") == -1


def test_symbol_table_leaves_out_what_the_scanner_never_looks_up():
    index = {"é": 1, "": 2, "X" * (MAX_SYMBOL_BYTES + 1): 3, "X" * MAX_SYMBOL_BYTES: 4, "A\x00": 5, "A": 6}
    table = SymbolTable(index)
    assert [table.slot_of(name) for name in index] == [-1, -1, -1, 4, 5, 6]
    assert SymbolTable({}).slot_of("A") == -1
    with pytest.raises(ValueError):
        SymbolTable({"A": -1})


def test_long_and_non_ascii_symbols_fall_back_to_python():
    """A symbol the table cannot hold is looked up by Python: still accepted when known."""
    long_name = "Q" * 40
    index = {"X": 0, long_name: 1, "\u00e9": 2}
    table = symbol_table(index)
    ints = np.zeros((N_INT_ROWS, 4), dtype=np.int64)
    floats = np.zeros((N_FLOAT_ROWS, 4))
    for name in (long_name, "\u00e9"):
        payload = orjson.dumps([{"symbol": name, "price": 1.5, "ts": 1}])
        scanned = scan_payload_nb(payload, 0, table.table, ints, floats, 0, 4, TopicSlot.NO_SYMBOL, 1)
        assert scanned == PayloadScan.FALLBACK


def test_basket_reload_rebuilds_the_table():
    """After remap the same payload reaches the symbol's new slot (and a dropped one is unknown)."""
    book = PriceBook(build_universe(PCF))
    intake = TickIntake(book)
    intake.decode(b'[{"symbol":"W","price":3.0,"ts":10},{"symbol":"X","price":11.0,"ts":10}]', None, RECV_TS)
    intake.flush()
    old_slot = book.index["W"]
    reloaded = [PCF[1] | {"holdings": [{"symbol": "NEW", "shares": 1, "price": 1.0}] + PCF[1]["holdings"][1:]},
                PCF[0]]
    book.remap(build_universe(reloaded))
    assert book.index["W"] != old_slot
    intake.decode(b'[{"symbol":"W","price":4.0,"ts":11},{"symbol":"NEW","price":2.0,"ts":11},'
                  b'{"symbol":"Y","price":6.0,"ts":11}]', None, RECV_TS)
    intake.decode(b'{"price":5.0,"ts":12}', "ticks/NEW", RECV_TS)
    intake.flush()
    assert (book.price_of("W"), book.price_of("NEW"), book.price_of("Y"), book.price_of("X")) == (4.0, 5.0, 6.0, 11.0)
    assert counts_by_reason(intake.counts) == {"accepted": 6}
    book.remap(build_universe(PCF))  # NEW leaves the basket
    intake.decode(b'[{"symbol":"NEW","price":2.5,"ts":13}]', None, RECV_TS)
    intake.flush()
    assert counts_by_reason(intake.counts) == {"accepted": 6, "unknown_symbol": 1}


# --- tapes --------------------------------------------------------------------------------------

def same_tape(got, want) -> None:
    for field in ("security", "price", "ts", "code", "line", "bid", "ask", "status"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.dtype == b.dtype, field
        np.testing.assert_array_equal(a, b, err_msg=field)


LINE_BREAKS = st.sampled_from(["\n", "\n", "\r\n", "\r", "\n\n", "\n \t\n", "\n\x0b\n"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(payloads(), LINE_BREAKS), max_size=12), st.booleans())
def test_tape_equals_python_line_by_line(lines, final_break):
    book = PriceBook(build_universe(PCF))
    text = b"".join(payload.replace(b"\n", b" ").replace(b"\r", b" ") + brk.encode() for payload, brk in lines)
    if not final_break:
        text = text.rstrip(b"\r\n")
    same_tape(decode_tape(text, book.index), decode_tape_python(text, book.index))


def test_tape_grows_its_arrays():
    """Lines of many ticks (more ticks than lines) and more fallback lines than the first guess."""
    book = PriceBook(build_universe(PCF))
    rng = random.Random(5)
    lines = []
    for k in range(400):
        if k % 3 == 0:
            lines.append('{"symbol": "X", "price": 1.5, "ts": %d, "venue": "N"}' % k)  # falls back
        else:
            lines.append(json.dumps([{"symbol": rng.choice(SYMBOLS), "price": rng.choice([1.5, 2, -1, "x"]), "ts": k}
                                     for _ in range(rng.randint(0, 9))]))
    data = "\n".join(lines).encode()
    tape = decode_tape(data, book.index)
    same_tape(tape, decode_tape_python(data, book.index))
    assert len(tape) > len(lines)


def test_tape_of_plain_lines_needs_no_python():
    book = PriceBook(build_universe(PCF))
    data = b'{"symbol":"X","price":1.5,"ts":1}\r\n\n  \n[{"symbol":"Y","price":2,"ts":2}]\n{"ts":3}'
    tape = decode_tape(data, book.index)
    same_tape(tape, decode_tape_python(data, book.index))
    assert tape.line.tolist() == [1, 4, 5]
    assert counts_by_reason(np.bincount(tape.code, minlength=N_OUTCOMES)) == {"accepted": 2, "missing_symbol": 1}
