"""Holdings with a fixed price (``"fixed": true``): cash in a currency at close 1, as the importer
writes foreign cash (``EUR.CASH``). It moves with its FX rate only, never goes stale, counts as
priced, and a tick on its symbol does not move it."""

from __future__ import annotations

import orjson
import pytest

from iopv.config import load_settings
from iopv.core.universe import PcfError, build_universe
from iopv.engine.cycle import Engine

S = 1_000_000_000
B0 = 1_700_000_000 * S


def fund(fixed=True) -> dict:
    return {"fund": "G", "creation_unit": 10, "currency": "USD", "cash": 0.0, "fx": {"EUR": 1.10},
            "holdings": [{"symbol": "AAA", "shares": 10, "price": 20.0},
                         {"symbol": "EUR.CASH", "shares": 100, "price": 1, "currency": "EUR", "fixed": fixed}]}


def test_a_fixed_price_moves_with_its_rate_only_and_is_never_stale():
    settings = load_settings(environ={}, overrides={"engine": {"calendar": "always", "interval_s": 1.0,
                                                               "stale_after_s": 5.0}})
    engine = Engine(build_universe([fund()]), settings)
    engine.open(B0)
    tick = engine.intake.decode
    tick(orjson.dumps({"symbol": "AAA", "price": 21.0, "ts": B0 - 1}), "ticks/AAA", B0)
    tick(orjson.dumps({"symbol": "EUR.CASH", "price": 7.0, "ts": B0 - 1}), "ticks/EUR.CASH", B0)  # ignored
    tick(orjson.dumps({"symbol": "EURUSD", "price": 1.2, "ts": B0 - 1}), "ticks/EURUSD", B0)
    record = engine.cycle(B0).records[0]
    assert record["iopv"] == (10 * 21.0 + 100 * 1.2) / 10  # 33.0: the cash moved with EURUSD only
    assert record["coverage"] == 1.0 and record["stale"] == 0 and record["status"] == "ok"
    assert engine.book.price_of("EUR.CASH") == 1.0
    # An hour later nothing ticked: AAA (a holding) and EURUSD (its rate) are stale, the cash never is.
    later = engine.cycle(B0 + 3600 * S).records[0]
    assert later["stale"] == 1 and "stale" in later["flags"]
    assert engine.holding_status(B0 + 3600 * S) == {"never_ticked": 0, "stale": 2, "halted": 0}


def test_fixed_must_be_a_boolean_and_agree_across_funds():
    with pytest.raises(PcfError) as bad:
        build_universe([fund(fixed="yes")])
    assert "holdings[1] (EUR.CASH).fixed: expected true or false" in str(bad.value)
    other = fund(fixed=False)
    other["fund"] = "H"
    with pytest.raises(PcfError) as disagree:
        build_universe([fund(), other])
    assert "(EUR.CASH).fixed: false disagrees with true given by fund G" in str(disagree.value)
    assert build_universe([fund()]).fixed_symbols == frozenset({"EUR.CASH"})
    assert build_universe([fund(fixed=False)]).fixed_symbols == frozenset()
