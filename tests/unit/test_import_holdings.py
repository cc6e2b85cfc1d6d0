"""``iopv import-holdings`` on synthetic files in each issuer's layout (tests/data/holdings): the
basket loads with ``iopv check-pcf``, values per share like a creation-unit basket (exact
reference), reports every row it could not price, and names file and line for a bad row."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pytest

from iopv.cli import main
from tests.data.holdings.make_ssga import ROWS, write_ssga
from tests.support.live import exact

DATA = Path(__file__).resolve().parents[1] / "data" / "holdings"


def run(capsys, *args) -> tuple[int, str]:
    code = main(["import-holdings", *map(str, args)])
    return code, capsys.readouterr().err


def load(path: Path) -> dict:
    (fund,) = orjson.loads(path.read_bytes())
    return fund


def test_ishares_file_becomes_a_basket_check_pcf_accepts(tmp_path, capsys):
    out = tmp_path / "ixyz.json"
    code, err = run(capsys, "--format", "ishares", DATA / "ishares.csv", "--fund", "IXYZ", "--out", out)
    assert code == 0, err
    fund = load(out)
    assert (fund["fund"], fund["as_of"], fund["creation_unit"], fund["shares_outstanding"]) == \
        ("IXYZ", "2024-12-06", 1_000_000, 1_000_000)
    assert fund["name"] == "Synthetic Example Core ETF (not a real fund)"
    assert fund["holdings"] == [{"symbol": "AAPL", "shares": 175140, "price": 242.01},
                                {"symbol": "MSFT", "shares": 90020, "price": 443.57},
                                {"symbol": "BRKB", "shares": 12000, "price": 468.25},
                                {"symbol": "BF.B", "shares": 3460, "price": 43.1},
                                {"symbol": "ESZ4", "shares": 1000, "price": 6071.5}]  # 20 contracts x 50
    # money market 20,000 + cash 12,345.60 + futures margin 1,000 - the future's 6,071,500 of exposure
    assert fund["cash"] == -6_038_154.40
    report = orjson.loads((tmp_path / "ixyz.report.json").read_bytes())
    assert [(r["where"].rsplit(":", 1)[1], r["kind"]) for r in report["mapped"]] == \
        [("15", "money_market"), ("16", "cash"), ("17", "future")]
    assert report["excluded"] == [] and report["static"] == []
    assert "mapped: 1 cash row(s), 1 future row(s), 1 money_market row(s)" in err
    assert main(["check-pcf", str(out)]) == 0
    assert "ok: 1 funds, 5 holdings" in capsys.readouterr().out


def test_whole_fund_over_shares_outstanding_values_like_a_creation_unit(tmp_path, capsys):
    out = tmp_path / "whole.json"
    assert run(capsys, "--format", "ishares", DATA / "ishares.csv", "--fund", "IXYZ", "--out", out)[0] == 0
    whole = load(out)
    ratio = Decimal(50_000) / Decimal(whole["creation_unit"])
    unit = {**whole, "creation_unit": 50_000, "cash": float(Decimal(repr(whole["cash"])) * ratio),
            "holdings": [{**h, "shares": int(Decimal(h["shares"]) * ratio)} for h in whole["holdings"]]}
    rng = np.random.default_rng(5)
    for _ in range(20):
        prices = {h["symbol"]: Decimal(f"{rng.uniform(1, 900):.4f}") for h in whole["holdings"]}
        assert exact([whole], prices) == exact([unit], prices)
    # (175,140 x 242.01 + 90,020 x 443.57 + 12,000 x 468.25 + 3,460 x 43.10 + 33,345.60) / 1,000,000
    assert exact([whole], {})["IXYZ"] == "88.1173"
    # and the engine agrees, boundary by boundary, on a tape
    (tmp_path / "unit.json").write_bytes(orjson.dumps([unit]))
    tape = tmp_path / "tape.jsonl"
    tape.write_text("".join(f'{{"symbol": "{h["symbol"]}", "price": {100 + k * 7.31:.2f}, "ts": {k * 10**9}}}\n'
                            for k, h in enumerate(whole["holdings"] * 3)))
    outputs = []
    for pcf in (out, tmp_path / "unit.json"):
        assert main(["replay", "--pcf", str(pcf), "--tape", str(tape), "--interval", "2", "--calendar", "always"]) == 0
        outputs.append([orjson.loads(line)["iopv"] for line in capsys.readouterr().out.splitlines()])
    assert len(outputs[0]) == 8 and outputs[0] == outputs[1]


def test_a_row_with_no_ticker_is_kept_at_its_value_and_reported(tmp_path, capsys):
    out = tmp_path / "old.json"
    source = DATA / "ishares_old_unpriced.csv"
    code, err = run(capsys, "--format", "ishares", source, "--fund", "OLD", "--out", out)
    assert code == 0, err
    assert f"{source}:17: - 'PRIVATE PLACEMENT XYZ': no ticker: kept at its market value" in err
    report = orjson.loads((tmp_path / "old.report.json").read_bytes())
    assert [(r["line"], r["name"]) for r in report["static"]] == [(17, "PRIVATE PLACEMENT XYZ")]
    assert len(load(out)["holdings"]) == 5  # the older "Shares" header reads the same


@pytest.mark.parametrize("name, fund, as_of, cash", [("invesco.csv", "QXYZ", "2024-12-06", 1234.56),
                                                     ("invesco_old.csv", "PXYZ", "2004-07-30", 0.0)])
def test_invesco_layouts(tmp_path, capsys, name, fund, as_of, cash):
    out = tmp_path / "inv.json"
    code, err = run(capsys, "--format", "invesco", DATA / name, "--out", out)
    assert code == 2 and "give --shares-outstanding N" in err
    code, err = run(capsys, "--format", "invesco", DATA / name, "--out", out, "--shares-outstanding", "50,000")
    assert code == 0, err
    basket = load(out)
    assert (basket["fund"], basket["as_of"], basket["creation_unit"], basket["cash"]) == (fund, as_of, 50000, cash)
    prices = {h["symbol"]: h["price"] for h in basket["holdings"]}
    assert prices["AAPL"] == 242.01 and prices["MSFT"] == 443.57  # market value / shares, tickers unpadded


def test_ssga_needs_prices_from_a_file(tmp_path, capsys):
    xlsx = tmp_path / "ssga.xlsx"
    write_ssga(xlsx)
    out = tmp_path / "ssga.json"
    code, err = run(capsys, "--format", "ssga", xlsx, "--out", out, "--shares-outstanding", "50000")
    assert code == 2 and "3 row(s) cannot be put in the basket, 99.97% of the fund by weight" in err
    assert f"{xlsx}: sheet holdings, row 6: AAPL 'APPLE INC': no price: give it in --prices" in err
    code, err = run(capsys, "--format", "ssga", xlsx, "--out", out, "--shares-outstanding", "50000",
                    "--prices", DATA / "prices_ssga.csv")
    assert code == 0, err
    basket = load(out)
    assert (basket["fund"], basket["as_of"], basket["cash"]) == ("SXYZ", "2024-02-14", 1234.56)
    assert basket["holdings"][2] == {"symbol": "BRK.B", "shares": 350, "price": 468.25}
    # the same holdings as the Invesco file: the same basket, whatever the layout
    assert run(capsys, "--format", "invesco", DATA / "invesco.csv", "--out", tmp_path / "q.json",
               "--shares-outstanding", "50000")[0] == 0
    assert load(tmp_path / "q.json")["holdings"] == basket["holdings"]


def test_bad_rows_name_file_and_line(tmp_path, capsys):
    text = (DATA / "ishares.csv").read_text(encoding="utf-8-sig").splitlines(keepends=True)
    text[11] = text[11].replace('"90,020.00"', '"ninety"')
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(text), encoding="utf-8-sig")
    code, err = run(capsys, "--format", "ishares", bad, "--fund", "X", "--out", tmp_path / "x.json")
    assert code == 2 and f"{bad}:12: Quantity: expected a number, got 'ninety'" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    code, err = run(capsys, "--format", "ishares", DATA / "invesco.csv", "--fund", "X", "--out", tmp_path / "x.json")
    assert code == 2 and "is this an iShares holdings file?" in err
    code, err = run(capsys, "--format", "ssga", DATA / "ishares.csv", "--out", tmp_path / "x.json")
    assert code == 2 and "this is CSV text, not an XLSX workbook as --format ssga expects" in err
    rows = list(ROWS)
    rows[6] = ("MICROSOFT CORP", "MSFT", "594918104", "2588173", 46.6, "Information Technology", "lots", "USD")
    write_ssga(tmp_path / "bad.xlsx", rows)
    code, err = run(capsys, "--format", "ssga", tmp_path / "bad.xlsx", "--out", tmp_path / "x.json",
                    "--shares-outstanding", "1")
    assert code == 2 and "bad.xlsx: sheet holdings, row 7: Shares Held: expected a number, got 'lots'" in err
    prices = tmp_path / "p.csv"
    prices.write_text("symbol,close\nAAPL,0\n")
    code, err = run(capsys, "--format", "ssga", tmp_path / "bad.xlsx", "--out", tmp_path / "x.json",
                    "--shares-outstanding", "1", "--prices", prices)
    assert code == 2 and f"{prices}:2: close: expected a number > 0" in err


def test_foreign_holdings_are_priced_locally_with_the_files_rates(tmp_path, capsys):
    """iShares prints Price and Market Value in USD and FX Rate in local currency per USD: the
    local close is market value / quantity x FX Rate, and the rate seed is its inverse (from
    the JPY cash row's quantity / market value where there is one)."""
    out = tmp_path / "intl.json"
    code, err = run(capsys, "--format", "ishares", DATA / "ishares_intl.csv", "--fund", "IINT", "--out", out)
    assert code == 0, err
    basket = load(out)
    assert basket["fx"] == {"EUR": 1.05618926911703, "JPY": 0.00661113314822161}  # 1 / 0.9468, 1 / 151.26
    toyota = basket["holdings"][0]
    assert (toyota["symbol"], toyota["shares"], toyota["currency"]) == ("7203.T", 10000, "JPY")
    assert abs(Decimal(repr(toyota["price"])) - Decimal("2776.5")) < Decimal("0.001")  # 18.36 USD x 151.26
    assert basket["holdings"][3] == {"symbol": "AAPL", "shares": 100, "price": 242.01}
    assert basket["holdings"][4] == {"symbol": "JPY.CASH", "shares": 151260, "price": 1, "currency": "JPY",
                                     "fixed": True}  # moves with JPYUSD only, never stale
    assert main(["check-pcf", str(out)]) == 0
    capsys.readouterr()
    # at the file's prices the value is the market values over the shares outstanding
    total = Decimal("183558.11") + Decimal("87822.29") + Decimal("202820.03") + Decimal("24201.00") + Decimal(1000)
    assert exact([basket], {})["IINT"] == str((total / 500_000).quantize(Decimal("0.0001")))
    # --fx wins over the file
    code, err = run(capsys, "--format", "ishares", DATA / "ishares_intl.csv", "--fund", "IINT", "--out", out,
                    "--fx", "JPY=0.0066")
    assert code == 0, err
    assert load(out)["fx"]["JPY"] == 0.0066
    code, err = run(capsys, "--format", "ishares", DATA / "ishares_intl.csv", "--fund", "IINT", "--out", out,
                    "--fx", "JPY=-1")
    assert code == 2 and "--fx: expected CCY=RATE" in err
