"""Basket file validation: every error names the file, the fund and the field; all at once."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iopv.core.universe import PcfError, build_universe, load_pcf
from iopv.engine.book import PriceBook
from iopv.engine.valuer import Valuer
from tests.support.reference import reference_value

REPO = Path(__file__).resolve().parents[2]

GOOD = [
    {"fund": "PWB", "creation_unit": 50000, "currency": "USD", "cash": 1234.56, "fx": {"EUR": 1.08},
     "holdings": [{"symbol": "AAPL", "shares": 1200, "price": 187.0},
                  {"symbol": "SAP", "shares": 300.5, "currency": "EUR", "price": 120.25}]},
    {"fund": "PWC", "creation_unit": 50000, "currency": "USD", "cash": -50.0,
     "holdings": [{"symbol": "AAPL", "shares": 10, "price": 187.0}]},
]


def load_doc(tmp_path: Path, doc, name: str = "basket.json") -> PcfError:
    """The PcfError ``load_pcf`` raises for ``doc`` written to a file (fails if none)."""
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=1))
    with pytest.raises(PcfError) as info:
        load_pcf(path)
    message = str(info.value)
    assert str(path) in message
    assert info.value.path == str(path)
    return info.value


def broken(edit) -> list:
    doc = copy.deepcopy(GOOD)
    edit(doc)
    return doc


def test_good_file_loads(tmp_path):
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD))
    universe = load_pcf(path)
    assert universe.funds == ("PWB", "PWC")
    assert set(universe.symbols) == {"AAPL", "SAP", "EURUSD"}
    values = Valuer(universe, 4).value(PriceBook(universe)).tolist()
    expected = reference_value(json.dumps(GOOD))
    assert [f"{v:.4f}" for v in values] == [expected["PWB"], expected["PWC"]]


@pytest.mark.parametrize("edit,fragments", [
    (lambda d: d[0].pop("creation_unit"), ["fund PWB (#0).creation_unit", "missing"]),
    (lambda d: d[0].pop("cash"), ["fund PWB (#0).cash", "missing"]),
    (lambda d: d[1].__setitem__("cash", "12"), ["fund PWC (#1).cash", "expected a number", "'12'"]),
    (lambda d: d[0].__setitem__("creation_unit", True), ["fund PWB (#0).creation_unit", "expected a number"]),
    (lambda d: d[0].__setitem__("creation_unit", 0), ["fund PWB (#0).creation_unit", "> 0"]),
    (lambda d: d[0].__setitem__("creation_unit", -50000), ["fund PWB (#0).creation_unit", "> 0"]),
    (lambda d: d[0]["holdings"][0].__setitem__("shares", -1), ["fund PWB (#0).holdings[0] (AAPL).shares", ">= 0"]),
    (lambda d: d[0]["holdings"][0].__setitem__("shares", "NaN"),
     ["fund PWB (#0).holdings[0] (AAPL).shares", "expected a number", "'NaN'"]),
    (lambda d: d[0]["holdings"][0].pop("shares"), ["fund PWB (#0).holdings[0] (AAPL).shares", "missing"]),
    (lambda d: d[0]["holdings"][1].__setitem__("price", 0), ["fund PWB (#0).holdings[1] (SAP).price", "> 0"]),
    (lambda d: d[0]["holdings"][1].__setitem__("price", None),
     ["fund PWB (#0).holdings[1] (SAP).price", "expected a number"]),
    (lambda d: d[0]["holdings"].append({"symbol": "AAPL", "shares": 5, "price": 187.0}),
     ["fund PWB (#0).holdings[2] (AAPL).symbol", "AAPL listed twice", "holdings[0]"]),
    (lambda d: d[0].pop("fx"), ["fund PWB (#0).holdings[1] (SAP).currency", "EUR has no FX rate"]),
    (lambda d: d[1]["holdings"].append({"symbol": "BMW", "shares": 5, "price": 80.0, "currency": "EUR"}),
     ["fund PWC (#1).holdings[1] (BMW).currency", "EUR has no FX rate"]),
    (lambda d: d.append(copy.deepcopy(d[1])), ["fund PWC (#2).fund", "duplicate fund", "#1"]),
    (lambda d: d[0].__setitem__("colour", "blue"), ["fund PWB (#0).colour", "unknown field"]),
    (lambda d: d[0]["holdings"][0].__setitem__("weight", 0.5),
     ["fund PWB (#0).holdings[0] (AAPL).weight", "unknown field"]),
    (lambda d: d[1]["holdings"][0].__setitem__("price", 188.0),
     ["fund PWC (#1).holdings[0] (AAPL).price", "disagrees", "187.0", "PWB"]),
    (lambda d: d[1].__setitem__("fx", {"EUR": 1.09}), ["fund PWC (#1).fx.EUR", "disagrees", "PWB"]),
    (lambda d: (d[0]["fx"].__setitem__("EUR", 0), d[0]["holdings"].pop()), ["fund PWB (#0).fx.EUR", "> 0"]),
    (lambda d: d[0].__setitem__("currency", "usd"), ["fund PWB (#0).currency", "3-letter currency"]),
    (lambda d: d[0].pop("fund"), ["fund #0.fund", "missing"]),
    (lambda d: d[0].__setitem__("fund", "has space"), ["fund #0.fund", "'has space'"]),
    (lambda d: d[0].__setitem__("holdings", {"AAPL": 1}), ["fund PWB (#0).holdings", "expected a list"]),
    (lambda d: d[0]["holdings"].append("AAPL"), ["fund PWB (#0).holdings[2]", "expected an object"]),
    (lambda d: d.append(42), ["fund #2", "expected an object"]),
])
def test_each_error_names_file_fund_and_field(tmp_path, edit, fragments):
    error = load_doc(tmp_path, broken(edit))
    assert len(error.errors) == 1, error.errors
    for fragment in fragments:
        assert fragment in error.errors[0]
        assert fragment in str(error)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_shares_and_cash(number):
    doc = broken(lambda d: (d[0]["holdings"][0].__setitem__("shares", number), d[1].__setitem__("cash", number)))
    with pytest.raises(PcfError) as info:
        build_universe(doc, source="mem.json")
    assert len(info.value.errors) == 2
    assert "fund PWB (#0).holdings[0] (AAPL).shares: expected a finite number" in info.value.errors[0]
    assert "fund PWC (#1).cash: expected a finite number" in info.value.errors[1]
    assert str(info.value).startswith("mem.json: 2 error(s)")


def test_overflowing_number_in_file_names_line_and_column(tmp_path):
    text = '[\n {"fund": "A", "creation_unit": 1, "currency": "USD",\n  "cash": 1e400, "holdings": []}\n]'
    error = load_doc(tmp_path, text)
    assert len(error.errors) == 1
    assert "line 3, column" in error.errors[0]


def test_malformed_json_names_line_and_column(tmp_path):
    text = '[\n {"fund": "A",\n  "cash": 1 "x": 2}\n]'
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
    error = load_doc(tmp_path, text)
    assert len(error.errors) == 1
    assert where in error.errors[0] and "malformed JSON" in error.errors[0]


def test_unreadable_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(PcfError) as info:
        load_pcf(missing)
    assert str(missing) in str(info.value) and "cannot read" in str(info.value)


@pytest.mark.parametrize("document,kind", [({"fund": "A"}, "dict"), ("funds", "str"), (None, "NoneType")])
def test_top_level_must_be_a_list(tmp_path, document, kind):
    error = load_doc(tmp_path, document if document != "funds" else '"funds"')
    assert error.errors == [f"top level: expected a JSON list of funds, got {kind}"]


def test_several_errors_reported_at_once(tmp_path):
    def edit(d):
        d[0]["creation_unit"] = 0
        d[0]["holdings"][1]["shares"] = -3
        d[1]["holdings"][0]["price"] = 190.0
        d[1]["extra"] = 1
        d.append({"fund": "PWD", "currency": "USD", "cash": 1, "holdings": []})
    error = load_doc(tmp_path, broken(edit))
    assert len(error.errors) == 5
    assert [e.split(":")[0] for e in error.errors] == [
        "fund PWB (#0).creation_unit", "fund PWB (#0).holdings[1] (SAP).shares", "fund PWC (#1).extra",
        "fund PWC (#1).holdings[0] (AAPL).price", "fund PWD (#2).creation_unit"]
    assert "5 error(s)" in str(error)


def test_all_cash_fund_values_to_cash_over_creation_unit():
    doc = [{"fund": "CASHF", "creation_unit": 40000, "currency": "USD", "cash": -6172837.5, "holdings": []}]
    universe = build_universe(doc)
    assert universe.holdings == 0
    values = Valuer(universe, 4).value(PriceBook(universe))
    assert reference_value(json.dumps(doc)) == {"CASHF": "-154.3209"}  # -154.3209375
    assert values.tolist() == [-154.3209]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOPV_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_check_pcf_cli_exit_codes(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken(lambda d: d[0].__setitem__("creation_unit", 0))))

    def check(*files):
        return subprocess.run([sys.executable, "-m", "iopv", "check-pcf", *map(str, files)],
                              capture_output=True, text=True, env=_env(), timeout=120)

    ok = check(good)
    assert ok.returncode == 0, ok.stderr
    assert f"{good}: ok: 2 funds, 3 holdings" in ok.stdout
    failed = check(good, bad)
    assert failed.returncode == 1
    assert f"{good}: ok" in failed.stdout
    assert str(bad) in failed.stderr and "fund PWB (#0).creation_unit" in failed.stderr
    missing = check(tmp_path / "missing.json")
    assert missing.returncode == 1


@pytest.mark.parametrize("name", ["PWB\n", "0\n", "AAPL\r", "A B", "A/B", "A#", "+X", ""])
def test_names_with_a_trailing_newline_or_topic_characters_are_rejected(name):
    """A name becomes an MQTT topic level and a Redis key; ``$`` in a regex would have let a
    trailing newline through (found by the hypothesis test in test_hostile_input.py)."""
    fund = {"fund": "OK", "creation_unit": 1, "currency": "USD", "cash": 0,
            "holdings": [{"symbol": name, "shares": 1, "price": 1.0}]}
    with pytest.raises(PcfError, match="holdings\\[0\\]"):
        build_universe([fund], source="names.json")
    with pytest.raises(PcfError, match="fund #0.fund"):
        build_universe([{**fund, "fund": name, "holdings": []}], source="names.json")


@pytest.mark.parametrize("field, value, valid", [
    ("shares", 0, True), ("shares", -0.0, True), ("shares", 2**53 + 1, True), ("shares", 1e300, True),
    ("shares", True, False), ("shares", -1, False), ("shares", "5", False), ("shares", None, False),
    ("price", 2**60, True), ("price", 1e-300, True), ("price", 0, False), ("price", -0.0, False),
    ("price", False, False), ("price", [1.0], False),
    ("currency", "USD", True), ("currency", "usd", False), ("currency", None, False),
    ("extra", 1, False),
])
def test_plain_and_checked_holding_paths_agree(field, value, valid):
    """The loader's fast path for plain holdings and its full checker accept exactly the same
    holdings, and a value stored is the number given."""
    holding = {"symbol": "AAA", "shares": 10, "price": 2.5, field: value}
    document = [{"fund": "F", "creation_unit": 1, "currency": "USD", "cash": 0, "holdings": [holding]}]
    if valid:
        universe = build_universe(document, source="edge.json")
        if field == "shares":
            assert universe.holding_shares[0] == float(value)
        if field == "price":
            assert universe.initial_prices[0] == float(value)
    else:
        with pytest.raises(PcfError, match=f"holdings\\[0\\].*{field}"):
            build_universe(document, source="edge.json")
