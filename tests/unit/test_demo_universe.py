"""The demo universe matches the prospectus facts it claims and the committed PCF file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from iopv.demo.universe import build_universe, dumps_universe, main

DEMO_PCF = Path(__file__).resolve().parents[2] / "config" / "pcf" / "demo.json"
SECTOR_TICKERS = ("SAER", "SBIO", "SBRD", "SCEL", "SFNB", "SHRD", "SISS", "SLSR", "SMED", "SNWK",
                  "SPHR", "SSMC", "SSFT", "STEL", "SWRL")


@pytest.fixture(scope="module")
def universe() -> list[dict]:
    return build_universe(2004)


@pytest.fixture(scope="module")
def funds(universe) -> dict[str, dict]:
    return {fund["fund"]: fund for fund in universe}


def _value(holdings: list[dict]) -> float:
    return sum(h["shares"] * h["price"] for h in holdings)


def test_28_funds_with_unique_tickers_and_names(universe, funds):
    assert len(universe) == 28
    assert len(funds) == 28
    assert len({fund["name"] for fund in universe}) == 28
    assert set(SECTOR_TICKERS) | {"DYNM", "DOTC", "GDRG", "HYDA", "VLTS", "WCLE", "ZRLC"} \
        | {"PWB", "PWV", "PWJ", "PWP", "PWT", "PWY"} == set(funds)
    assert funds["PWB"]["name"] == "PowerShares Dynamic Large Cap Growth Portfolio"
    assert funds["SAER"]["name"] == "PowerShares Dynamic Aerospace & Defense Portfolio"


@pytest.mark.parametrize("ticker,count", [("PWB", 50), ("PWV", 50), ("PWJ", 75), ("PWP", 75),
                                          ("PWT", 100), ("PWY", 100), ("HYDA", 50), ("VLTS", 50),
                                          ("ZRLC", 150), *((s, 30) for s in SECTOR_TICKERS)])
def test_holdings_counts_from_the_prospectus(funds, ticker, count):
    assert len(funds[ticker]["holdings"]) == count


@pytest.mark.parametrize("ticker,top,share", [("PWB", 15, 0.50), ("PWV", 15, 0.50),
                                              ("PWJ", 22, 0.70), ("PWP", 22, 0.70),
                                              ("PWT", 30, 0.70), ("PWY", 30, 0.70),
                                              *((s, 10, 0.50) for s in SECTOR_TICKERS)])
def test_top_tier_holds_its_share_of_basket_value(funds, ticker, top, share):
    holdings = funds[ticker]["holdings"]
    assert _value(holdings[:top]) / _value(holdings) == pytest.approx(share, abs=0.005)


def test_sector_funds_hold_about_5_and_2_5_percent_per_stock(funds):
    for ticker in SECTOR_TICKERS:
        holdings = funds[ticker]["holdings"]
        weights = [h["shares"] * h["price"] / _value(holdings) for h in holdings]
        assert all(w == pytest.approx(0.050, abs=0.001) for w in weights[:10]), ticker
        assert all(w == pytest.approx(0.025, abs=0.001) for w in weights[10:]), ticker


def test_weighting_schemes_of_the_other_funds(funds):
    def weights(ticker):
        holdings = funds[ticker]["holdings"]
        return [h["shares"] * h["price"] / _value(holdings) for h in holdings]

    assert max(weights("WCLE")) <= 0.03 + 0.0005  # 3% cap, plus whole-share rounding
    assert max(weights("GDRG")) <= 0.08 + 0.0005
    assert min(weights("GDRG")) < 0.01  # cap-weighted: a long tail of small names
    for ticker in ("VLTS", "ZRLC"):
        equal = 1 / len(weights(ticker))
        assert all(w == pytest.approx(equal, abs=0.0005) for w in weights(ticker))
    hyda = weights("HYDA")  # yield-weighted: yields of 2.5-7% give unequal weights
    assert max(hyda) / min(hyda) > 1.5 and hyda[0] > hyda[-1]


def test_each_fund_is_worth_10_dollars_per_share_at_previous_close(universe):
    for fund in universe:
        assert fund["creation_unit"] == 50_000 and fund["currency"] == "USD"
        per_share = (_value(fund["holdings"]) + fund["cash"]) / fund["creation_unit"]
        assert abs(per_share - 10.00) < 0.01, fund["fund"]
        assert abs(fund["cash"]) < 0.002 * 500_000, fund["fund"]  # cash only absorbs rounding
        assert round(fund["cash"], 2) == fund["cash"]


def test_symbols_prices_and_shares_are_well_formed(universe):
    close: dict[str, float] = {}
    for fund in universe:
        symbols = [h["symbol"] for h in fund["holdings"]]
        assert len(symbols) == len(set(symbols)), fund["fund"]
        for h in fund["holdings"]:
            assert re.fullmatch(r"[A-Z0-9]{3,5}", h["symbol"])
            assert isinstance(h["shares"], int) and h["shares"] >= 1
            assert 5.0 <= h["price"] <= 150.0 and round(h["price"], 2) == h["price"]
            assert close.setdefault(h["symbol"], h["price"]) == h["price"], h["symbol"]
    assert not set(close) & {fund["fund"] for fund in universe}  # no stock shadows a fund


def test_funds_overlap_only_where_real_universes_do(funds):
    def symbols(ticker):
        return {h["symbol"] for h in funds[ticker]["holdings"]}

    assert symbols("PWB") & symbols("ZRLC")  # both drawn from large caps
    assert symbols("DOTC") & set().union(*(symbols(s) for s in ("SSMC", "SSFT", "SBIO", "SNWK")))
    assert not symbols("PWB") & symbols("PWV")  # growth and value are disjoint
    assert not symbols("PWJ") & symbols("PWP")
    assert not symbols("PWB") & symbols("PWT")  # large and small caps are disjoint
    assert not symbols("GDRG") & symbols("WCLE")


def test_generator_is_deterministic_and_seeded():
    assert dumps_universe(build_universe(2004)) == dumps_universe(build_universe(2004))
    assert build_universe(2005) != build_universe(2004)


def test_committed_file_matches_the_generator(universe):
    text = DEMO_PCF.read_text(encoding="utf-8")
    assert json.loads(text) == universe
    assert text == dumps_universe(universe), "regenerate: python -m iopv.demo.universe --out " \
        "config/pcf/demo.json"


def test_main_writes_the_same_bytes(tmp_path):
    out = tmp_path / "nested" / "demo.json"
    assert main(["--out", str(out)]) == 0
    assert out.read_bytes() == DEMO_PCF.read_bytes()
    assert out.read_bytes().endswith(b"]\n")
