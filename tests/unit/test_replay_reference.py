"""Replay (library and CLI) against the exact reference on seeded random universes and tapes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from decimal import ROUND_HALF_DOWN
from pathlib import Path

import pytest

from iopv.core.constants import REASONS, CountRow, FundFlag, Side
from iopv.core.universe import build_universe, load_pcf
from iopv.engine.book import PriceBook
from iopv.engine.replay import replay, replay_frames
from iopv.engine.tape import decode_tape
from tests.support.generators import QUOTE_HOSTILE_KINDS, random_tape, random_universe
from tests.support.reference import (
    OUTCOMES,
    reference_replay,
    reference_replay_full,
    reference_replay_sides,
)

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000_000


def engine_replay(pcf_text: str, lines: list[str], interval_ns: int, decimals: int):
    """(rows like the reference's, outcome counts by reason) from the library replay."""
    universe = build_universe(json.loads(pcf_text))
    book = PriceBook(universe)
    tape = decode_tape("\n".join(lines).encode(), book.index)
    rows = []
    for boundary, values in replay(universe, tape, interval_ns=interval_ns, decimals=decimals, book=book):
        assert len(values) == len(universe.funds)
        for fund, value in zip(universe.funds, values.tolist()):
            rows.append((boundary, fund, value))
    return rows, Counter(REASONS[code] for code in tape.code.tolist())


def assert_rows_match(got: list[tuple[int, str, float]], expected: list[tuple[int, str, str]], decimals: int):
    assert len(got) == len(expected)
    assert [(b, f) for b, f, _ in got] == [(b, f) for b, f, _ in expected]
    for (boundary, fund, value), (_, _, text) in zip(got, expected):
        # Same published digits, and the float is exactly the double nearest to them.
        assert (f"{value:.{decimals}f}", value) == (text, float(text)), (boundary, fund)


def case(seed: int):
    """A seeded universe and tape: small and medium sizes, 1 s / 15 s / 0.25 s, 2 / 4 / 6 decimals."""
    rng = random.Random(seed)
    n_funds = (1, 3, 8, 20)[seed % 4]
    interval_ns = (S, 15 * S, S // 4)[seed % 3]
    decimals = (2, 4, 6)[(seed // 3) % 3]
    doc = random_universe(rng, n_funds, max_holdings=60 if seed % 5 else 5)
    lines = random_tape(rng, doc, rng.choice((150, 600, 1500)), interval_ns=interval_ns,
                        boundaries=rng.randint(3, 25), huge_numbers="none")
    return json.dumps(doc), lines, interval_ns, decimals


@pytest.mark.parametrize("seed", range(30))
def test_replay_matches_reference(seed):
    pcf_text, lines, interval_ns, decimals = case(seed)
    expected, expected_counts = reference_replay_full(pcf_text, lines, interval_ns, decimals)
    got, counts = engine_replay(pcf_text, lines, interval_ns, decimals)
    assert_rows_match(got, expected, decimals)
    assert counts == expected_counts
    # The tape really exercised the clock and the hostile paths.
    assert len({b for b, _, _ in expected}) >= 3
    assert expected_counts["accepted"] > 0 and sum(expected_counts.values()) > expected_counts["accepted"]


@pytest.mark.parametrize("decimals", [0, 1, 8, 10])
def test_replay_extreme_decimals(decimals):
    """Beyond float64's reach (10 decimals of values up to ~1e7) the engine must still publish
    the double nearest to the exactly rounded value."""
    for seed in (1, 2, 5):
        pcf_text, lines, interval_ns, _ = case(seed)
        expected = reference_replay(pcf_text, lines, interval_ns, decimals)
        got, _ = engine_replay(pcf_text, lines, interval_ns, decimals)
        assert [(b, f) for b, f, _ in got] == [(b, f) for b, f, _ in expected]
        assert [v for _, _, v in got] == [float(text) for _, _, text in expected]


def test_random_cases_cover_exact_ties_and_every_reason():
    """Guards the generators: across the seeds the replay meets many exact rounding ties and
    every outcome the contract names for a tape (a JSON tape cannot carry a non-finite price
    other than as a huge number, left out here)."""
    ties = 0
    reasons: Counter[str] = Counter()
    for seed in range(0, 30, 3):
        pcf_text, lines, interval_ns, decimals = case(seed)
        up, counts = reference_replay_full(pcf_text, lines, interval_ns, decimals)
        down, _ = reference_replay_full(pcf_text, lines, interval_ns, decimals, rounding=ROUND_HALF_DOWN)
        ties += sum(a != b for a, b in zip(up, down))
        reasons += counts
    assert ties >= 20
    # Quote faults come with random_tape(quotes=...): test_quote_cases_cover_... below.
    assert set(reasons) == set(OUTCOMES) - {"non_finite_price", "bad_quote"}
    assert set(OUTCOMES) <= set(REASONS)  # the engine counts under the same names


@pytest.mark.parametrize("mode", ["alone", "anywhere"])
@pytest.mark.parametrize("seed", range(100, 104))
def test_huge_numbers_are_non_finite_prices(seed, mode):
    """Prices of 10**400, 1e400 and -1e400 are valid JSON: the tick is rejected as
    non_finite_price and the other ticks of its line survive."""
    rng = random.Random(seed)
    doc = random_universe(rng, 4)
    lines = random_tape(rng, doc, 2000, interval_ns=S, huge_numbers=mode)
    pcf_text = json.dumps(doc)
    expected, expected_counts = reference_replay_full(pcf_text, lines, S, 4)
    got, counts = engine_replay(pcf_text, lines, S, 4)
    assert expected_counts["non_finite_price"] > 0
    assert_rows_match(got, expected, 4)
    assert counts == expected_counts


# One fund, creation unit 1, cash 5: value = X + 2 * Y * EURUSD + 5 = 10 + 2 * 5 * 1.5 + 5 = 30.
HAND_PCF = json.dumps([{
    "fund": "A", "creation_unit": 1, "currency": "USD", "cash": 5, "fx": {"EUR": 1.5},
    "holdings": [{"symbol": "X", "shares": 1, "price": 10.0},
                 {"symbol": "Y", "shares": 2, "price": 5.0, "currency": "EUR"}]}])


GOOD = '{"symbol": "X", "price": 11.0, "ts": 1500}'
HUGE_PRICES = ["1" + "0" * 400, "1e400"]


@pytest.mark.parametrize("huge", HUGE_PRICES)
def test_huge_price_is_non_finite_not_malformed(huge):
    lines = [GOOD, f'{{"symbol": "X", "price": {huge}, "ts": 1600}}']
    _, expected_counts = reference_replay_full(HAND_PCF, lines, 1000, 4)
    _, counts = engine_replay(HAND_PCF, lines, 1000, 4)
    assert expected_counts == Counter(accepted=1, non_finite_price=1)
    assert counts == expected_counts


@pytest.mark.parametrize("huge", HUGE_PRICES)
def test_huge_price_in_array_keeps_the_other_ticks(huge):
    lines = [GOOD, f'[{{"symbol": "X", "price": 12.0, "ts": 1700}}, {{"symbol": "Y", "price": {huge}, "ts": 1700}}]']
    expected = reference_replay(HAND_PCF, lines, 1000, 4)
    got, _ = engine_replay(HAND_PCF, lines, 1000, 4)
    assert expected[-1][2] == "32.0000"  # X = 12 counts: 12 + 2 * 5 * 1.5 + 5
    assert_rows_match(got, expected, 4)


def test_replay_semantics_by_hand():
    lines = [
        '{"symbol": "X", "price": 11, "ts": 1500}',  # first well-formed tick: first boundary 2000
        '{"symbol": "X", "price": 12, "ts": 2000}',  # on the boundary: counts for 2000
        '{"symbol": "EURUSD", "price": 2, "ts": 2000}',
        '{"symbol": "X", "price": 13, "ts": 2001}',  # 2000 published (12 + 20 + 5) before this
        '{"symbol": "NOPE", "price": 1, "ts": 4500}',  # unknown symbol moves the clock: 3000, 4000
        '{"symbol": "X", "price": "14", "ts": 9000}',  # rejected: does not move the clock
        '{"symbol": "X", "price": 14, "ts": 1999}',  # older than X's last accepted tick: dropped
        '[{"symbol": "Y", "price": 6, "ts": 5000}, {"symbol": "Y", "price": 7, "ts": 5000}]',  # equal ts: latest wins
    ]
    expected = [(2000, "A", "37.0000"), (3000, "A", "38.0000"), (4000, "A", "38.0000"),
                (5000, "A", "46.0000")]
    assert reference_replay(HAND_PCF, lines, 1000, 4) == expected
    got, counts = engine_replay(HAND_PCF, lines, 1000, 4)
    assert_rows_match(got, expected, 4)
    assert counts == Counter(accepted=6, unknown_symbol=1, bad_price_type=1, out_of_order=1)


def test_previous_close_until_a_holding_ticks():
    lines = ['{"symbol": "NOPE", "price": 1, "ts": 3}']
    assert reference_replay(HAND_PCF, lines, 1000, 4) == [(1000, "A", "30.0000")]
    got, _ = engine_replay(HAND_PCF, lines, 1000, 4)
    assert got == [(1000, "A", 30.0)]


def test_first_boundary_from_first_well_formed_tick_and_no_output_without_one():
    lines = ['{"symbol": "X", "price": 0, "ts": 100}', 'garbage', '{"symbol": "X", "price": 12, "ts": 7000}']
    assert reference_replay(HAND_PCF, lines, 1000, 4) == [(7000, "A", "32.0000")]
    got, _ = engine_replay(HAND_PCF, lines, 1000, 4)
    assert got == [(7000, "A", 32.0)]
    assert reference_replay(HAND_PCF, lines[:2], 1000, 4) == []
    assert engine_replay(HAND_PCF, lines[:2], 1000, 4)[0] == []


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOPV_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_cli_replay_matches_reference(tmp_path):
    rng = random.Random(2024)
    doc = random_universe(rng, 6)
    lines = random_tape(rng, doc, 800, interval_ns=S // 4, boundaries=12, huge_numbers="none")
    pcf = tmp_path / "pcf.json"
    pcf.write_text(json.dumps(doc, indent=1))
    tape = tmp_path / "tape.jsonl"
    tape.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for decimals in (None, 6):
        command = [sys.executable, "-m", "iopv", "replay", "--pcf", str(pcf), "--tape", str(tape),
                   "--interval", "0.25"]
        if decimals is not None:
            command += ["--decimals", str(decimals)]
        result = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        d = decimals or 4  # the published default
        expected = reference_replay(pcf.read_text(), lines, S // 4, d)
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [set(r) >= {"fund", "ts", "iopv"} for r in records] == [True] * len(records)
        assert_rows_match([(r["ts"], r["fund"], r["iopv"]) for r in records], expected, d)
    assert load_pcf(pcf).funds == tuple(f["fund"] for f in doc)


# --- bid / ask / mid: iopv, iopv_bid and iopv_ask against the reference ----------------------------

def engine_replay_sides(pcf_text: str, lines: list[str], interval_ns: int, decimals: int):
    """(rows (boundary, fund, iopv, iopv_bid, iopv_ask, side_fallback), outcome counts) from
    ``replay_frames``."""
    universe = build_universe(json.loads(pcf_text))
    book = PriceBook(universe)
    tape = decode_tape("\n".join(lines).encode(), book.index)
    rows = []
    for boundary, frame in replay_frames(universe, tape, interval_ns=interval_ns, decimals=decimals, book=book):
        sides = [frame.rounded[side].tolist() for side in (Side.VALUE, Side.BID, Side.ASK)]
        flags = frame.count[CountRow.FUND_FLAGS].tolist()
        for k, fund in enumerate(universe.funds):
            fallback = bool(flags[k] & FundFlag.SIDE_FALLBACK)
            rows.append((boundary, fund, sides[0][k], sides[1][k], sides[2][k], fallback))
    return rows, Counter(REASONS[code] for code in tape.code.tolist())


def assert_side_rows_match(got, expected, decimals: int):
    assert [(b, f) for b, f, *_ in got] == [(b, f) for b, f, *_ in expected]
    for g, e in zip(got, expected):
        for name, value, text in zip(("iopv", "iopv_bid", "iopv_ask"), g[2:5], e[2:5]):
            # The float is exactly the double nearest to the published digits (and prints as them
            # where a double holds that many: a value of 2e10 at 6 decimals does not).
            assert value == float(text), (g[0], g[1], name)
            if len(text.replace("-", "").replace(".", "").lstrip("0")) <= 15:
                assert f"{value:.{decimals}f}" == text, (g[0], g[1], name)
        assert g[5] == e[5], (g[0], g[1], "side_fallback")


def quote_case(seed: int):
    """A seeded universe with mid-priced funds (MID2, MIDEUR always) and a tape whose ticks (FX
    rates included) carry independent quotes, one side or both, and hostile quotes."""
    rng = random.Random(seed)
    n_funds = (1, 3, 8, 20)[seed % 4]
    interval_ns = (S, 15 * S, S // 4)[seed % 3]
    decimals = (2, 4, 6)[(seed // 3) % 3]
    doc = random_universe(rng, n_funds, max_holdings=60 if seed % 5 else 5, mid=0.3)
    lines = random_tape(rng, doc, rng.choice((300, 800, 1500)), interval_ns=interval_ns,
                        boundaries=rng.randint(3, 25), huge_numbers="none",
                        quotes=rng.choice((0.3, 0.6, 0.9)))
    return json.dumps(doc), lines, interval_ns, decimals


QUOTE_SEEDS = range(500, 540)


@pytest.mark.parametrize("seed", QUOTE_SEEDS)
def test_replay_bid_ask_mid_match_reference(seed):
    pcf_text, lines, interval_ns, decimals = quote_case(seed)
    expected, expected_counts = reference_replay_sides(pcf_text, lines, interval_ns, decimals)
    got, counts = engine_replay_sides(pcf_text, lines, interval_ns, decimals)
    assert_side_rows_match(got, expected, decimals)
    assert counts == expected_counts
    assert len({row[0] for row in expected}) >= 3
    assert expected_counts["bad_quote"] > 0
    # The quotes moved the sides apart from the value somewhere.
    assert any(row[3] != row[2] or row[4] != row[2] for row in expected)


@pytest.mark.parametrize("decimals", [0, 1, 8])
def test_replay_bid_ask_mid_extreme_decimals(decimals):
    """Beyond float64's reach the three sides must still be the doubles nearest the exactly
    rounded values (seeds 559 and 606 reach 16-17 significant digits at 8 decimals)."""
    for seed in (501, 559, 606):
        pcf_text, lines, interval_ns, _ = quote_case(seed)
        expected, expected_counts = reference_replay_sides(pcf_text, lines, interval_ns, decimals)
        got, counts = engine_replay_sides(pcf_text, lines, interval_ns, decimals)
        assert [(b, f) for b, f, *_ in got] == [(b, f) for b, f, *_ in expected]
        assert [g[2:] for g in got] == [(float(e[2]), float(e[3]), float(e[4]), e[5]) for e in expected]
        assert counts == expected_counts


def test_quote_cases_cover_ties_on_every_side_mid_funds_and_quote_faults():
    """Guards the generators: across the quote seeds the reference meets exact ties on iopv,
    iopv_bid and iopv_ask (mid funds included), both fallback states, and every quote fault."""
    ties: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    fallback = set()
    kinds = set()
    for seed in QUOTE_SEEDS[::4]:
        pcf_text, lines, interval_ns, decimals = quote_case(seed)
        mid_funds = {f["fund"] for f in json.loads(pcf_text) if f.get("price_basis") == "mid"}
        up, counts = reference_replay_sides(pcf_text, lines, interval_ns, decimals)
        down, _ = reference_replay_sides(pcf_text, lines, interval_ns, decimals, rounding=ROUND_HALF_DOWN)
        for a, b in zip(up, down):
            for k, name in enumerate(("iopv", "iopv_bid", "iopv_ask"), start=2):
                if a[k] != b[k]:
                    ties[name] += 1
                    ties[name + " (mid fund)"] += a[1] in mid_funds
        fallback |= {row[5] for row in up}
        reasons += counts
        kinds |= {k for k in QUOTE_HOSTILE_KINDS if any(k in line for line in lines)}
    assert min(ties[name] for name in ("iopv", "iopv_bid", "iopv_ask")) >= 10, ties
    assert ties["iopv (mid fund)"] >= 3 and ties["iopv_bid (mid fund)"] + ties["iopv_ask (mid fund)"] >= 3, ties
    assert fallback == {True, False}
    assert reasons["bad_quote"] >= 20 and reasons["malformed_json"] > 0
    assert set(reasons) >= set(OUTCOMES) - {"non_finite_price"}


# Unit 2: one share of A (USD), one of E (EUR, rate EURUSD); L is priced at last, M at mid.
TIE_PCF = json.dumps([
    {"fund": "L", "creation_unit": 2, "currency": "USD", "cash": 0, "fx": {"EUR": 1.5},
     "holdings": [{"symbol": "A", "shares": 1, "price": 2.4691}]},
    {"fund": "M", "creation_unit": 2, "currency": "USD", "cash": 0, "price_basis": "mid",
     "holdings": [{"symbol": "A", "shares": 1, "price": 2.4691}]},
    {"fund": "X", "creation_unit": 2, "currency": "USD", "cash": 0, "fx": {"EUR": 1.5},
     "holdings": [{"symbol": "E", "shares": 1, "price": 1.0, "currency": "EUR"}]},
    {"fund": "XM", "creation_unit": 2, "currency": "USD", "cash": 0, "fx": {"EUR": 1.5}, "price_basis": "mid",
     "holdings": [{"symbol": "E", "shares": 1, "price": 1.0, "currency": "EUR"}]},
])


def test_engineered_ties_on_bid_ask_mid_and_fx_sides():
    lines = [
        # 1000: A bid/ask 2.4689 / 2.4693 -> L bid 1.23445, ask 1.23465 (ties), last 2.4690
        #       (1.2345, not a tie); M mid 2.4691 -> 1.23455 (tie). Only-bid E: X's ask falls back.
        '{"symbol": "A", "price": 2.4690, "bid": 2.4689, "ask": 2.4693, "ts": 1000}',
        '{"symbol": "EURUSD", "price": 1.5, "bid": 1.4999, "ts": 1000}',
        '{"symbol": "E", "price": 2.4691, "ts": 1000}',
        # 2000: a bad quote (crossed) changes nothing; a trade without quote keeps the quote;
        #       the FX ask arrives: X bid 2.4691 * 1.4999 / 2 = 1.85170... , ask at 1.5001.
        '{"symbol": "A", "price": 2.5, "bid": 2.6, "ask": 2.4, "ts": 1500}',
        '{"symbol": "A", "price": 2.4687, "ts": 1600}',
        '{"symbol": "EURUSD", "price": 1.5, "ask": 1.5001, "ts": 1700}',
        # 3000: E locked at 1.2345, FX bid/ask 1.4 / 1.8 (last 1.5): X and XM bid 0.86415 and
        #       ask 1.11105 (ties), X value 0.925875, XM mid 1.6: 0.9876; A only-ask update:
        #       bid stays 2.4689, ask 2.4695 -> 1.23475 (tie).
        '{"symbol": "E", "price": 1.2345, "bid": 1.2345, "ask": 1.2345, "ts": 2500}',
        '{"symbol": "EURUSD", "price": 1.5, "bid": 1.4, "ask": 1.8, "ts": 2500}',
        '{"symbol": "A", "price": 2.4687, "ask": 2.4695, "ts": 2600}',
        # 4000: FX last 1.4, bid/ask 1.3 / 1.5: X value and XM mid value 0.86415 (ties).
        '{"symbol": "EURUSD", "price": 1.4, "bid": 1.3, "ask": 1.5, "ts": 3500}',
    ]
    expected, counts = reference_replay_sides(TIE_PCF, lines, 1000, 4)
    down, _ = reference_replay_sides(TIE_PCF, lines, 1000, 4, rounding=ROUND_HALF_DOWN)
    by = {(row[0], row[1]): row[2:] for row in expected}
    assert by[1000, "L"] == ("1.2345", "1.2345", "1.2347", False)  # bid 1.23445, ask 1.23465
    assert by[1000, "M"] == ("1.2346", "1.2345", "1.2347", False)  # mid 1.23455
    assert by[1000, "X"][3] is True and by[1000, "X"][2] == by[1000, "X"][0]  # ask falls back
    assert by[2000, "L"] == ("1.2344", "1.2345", "1.2347", False)  # 1.23435 last: tie
    assert by[3000, "L"] == ("1.2344", "1.2345", "1.2348", False)  # ask 1.23475: tie
    assert by[3000, "M"] == ("1.2346", "1.2345", "1.2348", False)  # mid (2.4689+2.4695)/2 / 2 = 1.2346
    assert by[3000, "X"] == ("0.9259", "0.8642", "1.1111", False)
    assert by[3000, "XM"] == ("0.9876", "0.8642", "1.1111", False)
    assert by[4000, "X"] == ("0.8642", "0.8024", "0.9259", False)  # 0.802425, 0.925875
    assert by[4000, "XM"] == ("0.8642", "0.8024", "0.9259", False)
    assert counts == Counter(accepted=9, bad_quote=1)
    tied = {(a[0], a[1], k) for a, b in zip(expected, down) for k in (2, 3, 4) if a[k] != b[k]}
    # Exact ties (half-up and half-down disagree), by (boundary, fund, 2 iopv / 3 bid / 4 ask).
    assert tied == {(1000, "L", 3), (1000, "L", 4), (1000, "M", 2), (1000, "M", 3), (1000, "M", 4),
                    (2000, "L", 2), (2000, "L", 3), (2000, "L", 4), (2000, "M", 2), (2000, "M", 3),
                    (2000, "M", 4), (3000, "L", 2), (3000, "L", 3), (3000, "L", 4), (3000, "M", 3),
                    (3000, "M", 4), (3000, "X", 3), (3000, "X", 4), (3000, "XM", 3), (3000, "XM", 4),
                    (4000, "L", 2), (4000, "L", 3), (4000, "L", 4), (4000, "M", 3), (4000, "M", 4),
                    (4000, "X", 2), (4000, "XM", 2)}
    got, got_counts = engine_replay_sides(TIE_PCF, lines, 1000, 4)
    assert_side_rows_match(got, expected, 4)
    assert got_counts == counts


@pytest.mark.parametrize("lines", [
    ['{"symbol": "X", "price": 0, "ts": 100}'],
    ['{"symbol": "X", "price": -1e400, "ts": 100}', "garbage"],
    ['{"symbol": "X", "price": -10.5, "bid": 10.4, "ask": 10.6, "ts": 100}'],  # good quote, bad price
])
def test_outcomes_counted_when_no_tick_is_well_formed(lines):
    expected, expected_counts = reference_replay_sides(HAND_PCF, lines, 1000, 4)
    got, counts = engine_replay_sides(HAND_PCF, lines, 1000, 4)
    assert got == expected == []
    assert counts == expected_counts
    assert "accepted" not in counts
