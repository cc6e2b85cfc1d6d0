"""Publication rounding on exact ties: half away from zero, whatever side the float lands on."""

from __future__ import annotations

import json
import math
import random
from decimal import ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from iopv.core.constants import UNIT_ROUNDOFF
from iopv.core.universe import build_universe
from iopv.engine.book import PriceBook
from iopv.engine.replay import replay
from iopv.engine.tape import decode_tape
from iopv.engine.valuer import Valuer
from iopv.kernels.valuation import round_half_up_nb
from tests.support.reference import reference_replay, reference_value


def half_up(value: Decimal | str | float, decimals: int) -> Decimal:
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return abs(rounded) if rounded == 0 else rounded


def fund_with_value(rng: random.Random, name: str, value: str, *, unit: int = 50000,
                    holdings: int = 8, fixed: dict[str, tuple[int, str]] | None = None) -> dict:
    """A fund whose exact value is ``value``: ``fixed`` holdings ({symbol: (shares, price)}),
    random holdings with float-unfriendly 4-decimal prices, cash in cents, the numerator's
    digits beyond the 4th decimal as the shares of a holding priced 1.0 (few significant
    digits, so every input survives float64 exactly as text), and the last holding's price set
    so the numerator is exact."""
    numerator = Decimal(value) * unit
    coarse = numerator.quantize(Decimal("0.0001"), rounding=ROUND_FLOOR)
    extra = numerator - coarse
    cash = Decimal(rng.randint(-9999, 9999)).scaleb(-2)
    rows = [(symbol, Decimal(shares), Decimal(price)) for symbol, (shares, price) in (fixed or {}).items()]
    rows += [(f"{name}H{k}", Decimal(rng.randint(1, 30)), Decimal(rng.randint(1, 10**8)).scaleb(-4))
             for k in range(holdings - 1)]
    if extra:
        rows.append((f"{name}X", extra, Decimal(1)))
    last = coarse + extra - cash - sum(n * p for _, n, p in rows)
    if last <= 0:  # negative targets: let the cash carry the sign
        cash += last - 1000
        last = Decimal(1000)
    rows.append((f"{name}LAST", Decimal(1), last))
    doc = {"fund": name, "creation_unit": unit, "currency": "USD", "cash": float(cash),
           "holdings": [{"symbol": s, "shares": float(n), "price": float(p)} for s, n, p in rows]}
    parsed = json.loads(json.dumps(doc), parse_float=Decimal)
    total = parsed["cash"] + sum(h["shares"] * h["price"] for h in parsed["holdings"])
    assert total / unit == Decimal(value), "construction: every input must be exact as JSON text"
    return doc


TARGETS = [
    ("123.45675", 4), ("-1.23455", 4), ("0.00005", 4), ("-0.00005", 4), ("987654.32105", 4),
    ("1.005", 2), ("2.675", 2), ("-0.125", 2), ("0.0000005", 6), ("42.4242425", 6),
]


@pytest.mark.parametrize("target,decimals", TARGETS)
def test_valuer_rounds_exact_ties_half_away_from_zero(target, decimals):
    rng = random.Random(target)
    doc = [fund_with_value(rng, f"T{k}", target) for k in range(12)]
    text = json.dumps(doc)
    universe = build_universe(json.loads(text))
    valuer = Valuer(universe, decimals)
    values = valuer.value(PriceBook(universe))
    expected = half_up(target, decimals)
    assert expected.copy_abs() > Decimal(target).copy_abs()  # a tie rounds away from zero
    assert reference_value(text, decimals=decimals) == {f["fund"]: f"{expected:f}" for f in doc}
    assert values.tolist() == [float(expected)] * len(doc)
    assert valuer.exact_resolved == len(doc)


def test_naive_float_rounding_gets_engineered_ties_wrong():
    """The float value alone lands below the tie for some of these funds, so the test above
    would fail without exact resolution."""
    rng = random.Random(7)
    doc = [fund_with_value(rng, f"T{k}", "123.45675") for k in range(40)]
    universe = build_universe(doc)
    valuer = Valuer(universe, 4)
    values = valuer.value(PriceBook(universe))
    naive = [half_up(Decimal(raw), 4) for raw in valuer.raw.tolist()]
    assert Decimal("123.4567") in naive and Decimal("123.4568") in naive
    assert values.tolist() == [123.4568] * 40


OFFSETS = ["1e-12", "-1e-12", "1e-15", "-1e-15", "1e-9", "-1e-9"]


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("tie", ["123.45675", "-1.23455"])
def test_values_just_off_a_tie(tie, offset):
    value = str(Decimal(tie) + Decimal(offset))
    rng = random.Random(value)
    doc = [fund_with_value(rng, f"T{k}", value) for k in range(6)]
    text = json.dumps(doc)
    universe = build_universe(json.loads(text))
    values = Valuer(universe, 4).value(PriceBook(universe))
    expected = half_up(value, 4)
    away_from_zero = (Decimal(offset) > 0) == (Decimal(tie) > 0)
    assert expected == (half_up(tie, 4) if away_from_zero
                        else Decimal(tie).quantize(Decimal("0.0001"), rounding=ROUND_DOWN))
    assert reference_value(text, decimals=4)["T0"] == f"{expected:f}"
    assert values.tolist() == [float(expected)] * len(doc)


def test_exact_resolved_counts_only_near_ties():
    rng = random.Random(11)
    doc = [fund_with_value(rng, "TIE", "123.45675"),
           fund_with_value(rng, "FAR", "123.45"),
           fund_with_value(rng, "MID", "-7.123449")]
    universe = build_universe(doc)
    valuer = Valuer(universe, 4)
    book = PriceBook(universe)
    assert valuer.value(book).tolist() == [123.4568, 123.45, -7.1234]
    assert valuer.near_tie.tolist() == [True, False, False]
    assert valuer.exact_resolved == 1
    valuer.value(book)
    assert valuer.exact_resolved == 2


def test_round_half_up_nb_flags_exactly_the_values_near_a_tie():
    rng = np.random.default_rng(5)
    decimals = 4
    scale = 10.0**decimals
    ties = (rng.integers(-10**7, 10**7, 400) + 0.5) / scale  # nearest doubles to k.5e-4
    ulps = rng.integers(-3, 4, 400)
    near = np.array([t + u * math.ulp(t) for t, u in zip(ties, ulps)])
    far = rng.uniform(-1000, 1000, 4000)
    values = np.concatenate([near, far])
    errors = np.abs(values) * 8 * UNIT_ROUNDOFF  # a few ulps, as value_funds_nb reports
    rounded = np.empty_like(values)
    flags = np.empty(values.size, dtype=np.bool_)
    flagged = round_half_up_nb(values, errors, decimals, rounded, flags)
    assert flagged == int(flags.sum())
    assert flags[:400].all()  # within their error of a tie: must be resolved exactly
    for value, error, flag, out in zip(values.tolist(), errors.tolist(), flags.tolist(), rounded.tolist()):
        exact = Decimal(value)
        distance = abs(abs(exact) * Decimal(scale) % 1 - Decimal("0.5")) / Decimal(scale)
        if distance <= Decimal(error):
            assert flag, value
        if not flag:
            assert out == float(half_up(exact, decimals)), value
        # Never flags a value far from any tie (that would only cost speed, but bounds the cost).
        if distance > Decimal(error) * 1000:
            assert not flag, value
    assert 400 <= flagged < 400 + 40


def test_round_half_up_nb_signs_and_zero():
    values = np.array([1.23456, -1.23456, 0.00004, -0.00004, -0.00006, 0.0])
    errors = np.full(values.size, 1e-18)
    rounded = np.empty_like(values)
    flags = np.empty(values.size, dtype=np.bool_)
    round_half_up_nb(values, errors, 4, rounded, flags)
    assert rounded.tolist() == [1.2346, -1.2346, 0.0, 0.0, -0.0001, 0.0]
    assert [math.copysign(1, v) for v in rounded[2:4]] == [1.0, 1.0]  # never publishes -0.0
    assert not flags.any()


def test_replay_resolves_ties_with_the_book_at_each_boundary(monkeypatch):
    """Ties at every boundary, each boundary published just before a tick that moves the price
    (in the same kernel call): resolution must use the prices as they were at the boundary."""
    rng = random.Random(3)
    fixed = {"S1": (3, "17.0007"), "MOVE": (1, "1000")}
    doc = [fund_with_value(rng, f"A{k}", "123.45675", fixed=fixed) for k in range(30)]
    doc.append(fund_with_value(rng, "B", "-1.23455", fixed={"S1": (7, "17.0007")}))
    text = json.dumps(doc)
    # MOVE up by 5 moves every A by 5 / 50000 = 0.0001: they stay on a tie. S1 re-ticks unchanged.
    lines = []
    for k, ts in enumerate((900, 1500, 2600, 3000, 3001)):
        lines.append(json.dumps({"symbol": "MOVE", "price": 1000 + 5 * k, "ts": ts}))
        lines.append(json.dumps({"symbol": "S1", "price": 17.0007, "ts": ts}))
    expected = reference_replay(text, lines, 1000, 4)
    # 1000: k=0; 2000: k=1 (k=2 arrives at 2600); 3000: k=3 (ts 3000 counts); 4000: k=4.
    assert sorted({(b, v) for b, f, v in expected if f.startswith("A")}) == [
        (1000, "123.4568"), (2000, "123.4569"), (3000, "123.4571"), (4000, "123.4572")]
    assert {v for _, f, v in expected if f == "B"} == {"-1.2346"}
    universe = build_universe(json.loads(text))

    def run() -> list:
        book = PriceBook(universe)
        tape = decode_tape("\n".join(lines).encode(), book.index)
        return [(b, f, v) for b, values in replay(universe, tape, interval_ns=1000, decimals=4, book=book)
                for f, v in zip(universe.funds, values.tolist())]

    assert run() == [(b, f, float(v)) for b, f, v in expected]
    # The ties are real: from the floats alone some of these values would round the wrong way.
    monkeypatch.setattr(Valuer, "resolve_near_ties", lambda self, *args: None)
    assert run() != [(b, f, float(v)) for b, f, v in expected]
