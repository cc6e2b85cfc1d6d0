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

from iopv.book import PriceBook
from iopv.codes import REASONS
from iopv.feeds.tape import decode_tape
from iopv.pcf import build_universe, load_pcf
from iopv.replay import replay
from tests.generators import random_tape, random_universe
from tests.reference import OUTCOMES, reference_replay, reference_replay_full

REPO = Path(__file__).resolve().parent.parent
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
    assert set(reasons) == set(OUTCOMES) - {"non_finite_price"}
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
