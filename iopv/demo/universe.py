"""Deterministic demo universe: the 28 funds of the PowerShares trust as a PCF JSON file.

Run ``python -m iopv.demo.universe --out config/pcf/demo.json [--seed 2004]``.

Source: the July 2004 Form N-1A amendment of the PowerShares Exchange-Traded Fund Trust
(the filing's text as the project received it, ``seed/002_04d57dcc30487bb1.txt`` of the shared
material, not part of this repository; offsets are character positions in it).

Taken from the filing
- 28 funds in the trust, 26 in this prospectus plus Dynamic Market and Dynamic OTC [3417, 459639].
- Fund names as the filing spells them [459639]; the clean-energy fund is "Wilder Alternative
  Power Technologies" and tracks the WilderHill Clean Energy Index [365243].
- Style funds PWB/PWV 50 stocks, 15 in the top market-cap quintile sharing 50% and 35 sharing
  50% [9396, 11209]; PWJ/PWP 75 stocks, 22 sharing 70% and 53 sharing 30% [36061, 37866];
  PWT/PWY 100 stocks, 30 sharing 70% and 70 sharing 30% [63698, 65513]. Growth and value are
  disjoint sets of 100 (large), 300 (mid) and 400 (small) stocks out of universes of 250, 750 and
  1,000 [10695, 10991, 37650, 65294].
- Fifteen sector funds of 30 stocks: 10 larger at 5.0% each, 20 smaller at 2.5% each
  [93737, 93924, 94389].
- Dividend Achievers: 50 highest yielders, weighted by yield [336758, 337913]. Value Line: 50
  stocks, equal weight [355422]. Zacks: 150 of the 1,000 largest, equal weight [390659, 391003].
- USX China Index: modified market-cap weight, prices in U.S. dollars [317462, 323154].
- Clean Energy Index: modified equal dollar weight, no stock above 3% [368146, 368184].
- Creation Unit of 50,000 Shares [470667]; Shares first offered at $10.00 [406941].

Inferred (the filing gives no figure)
- Holdings counts: Golden Dragon China 40, WilderHill Clean Energy 40, Dynamic Market 100,
  Dynamic OTC 100 (the last two in the Intellidex two-tier pattern: 30 larger stocks sharing 50%,
  70 smaller sharing 50%). Golden Dragon's modification is an 8% cap per stock.
- One Creation Unit is worth $500,000 at the previous close (50,000 x $10.00), so every fund
  starts at exactly $10.00 per share; the cash component absorbs whole-share rounding.
- ``as_of`` is 2004-07-30, a business day shortly after the filing date.

Synthetic
- Fund tickers other than PWB, PWV, PWJ, PWP, PWT and PWY (blank in the filing).
- Every constituent symbol and previous close: the filing names no stocks. Symbols are drawn
  once per pool (large, mid, small, one per sector, China, clean energy, Nasdaq) so funds that
  share a real universe share names, and each symbol has one price in the whole file.
Holdings are listed tier by tier (largest weight tier first), so "the first 15 holdings of PWB"
are its top tier.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

CREATION_UNIT = 50_000
START_PRICE_CENTS = 1_000  # $10.00 offering price [406941]
UNIT_VALUE_CENTS = CREATION_UNIT * START_PRICE_CENTS
AS_OF = "2004-07-30"
CURRENCY = "USD"

# (pool, size, median previous close in USD). Pools are listed in market-cap order; the real
# universe sizes are used where the filing gives them so overlap between funds is realistic.
_POOLS: tuple[tuple[str, int, float], ...] = (
    ("large", 250, 48.0), ("mid", 750, 30.0), ("small", 1000, 18.0),
    ("china", 40, 14.0), ("clean", 40, 12.0), ("nasdaq", 150, 22.0),
)
_SECTOR_POOL_SIZE = 60  # synthetic: the filing does not size the sector universes
_SECTOR_MEDIAN_PRICE = 28.0
_PRICE_SIGMA = 0.6  # log-normal spread: most closes land between $5 and $150
_PRICE_MIN, _PRICE_MAX = 5.0, 150.0
_STYLE_SPLIT = {"large": (100, 100), "mid": (300, 300), "small": (400, 400)}  # growth, value
# Sectors the Dynamic OTC fund also draws from: these industries list mostly on Nasdaq.
_NASDAQ_SECTORS = ("SBIO", "SHRD", "SISS", "SNWK", "SSMC", "SSFT", "SWRL")

_SECTORS = (
    ("SAER", "Aerospace & Defense"), ("SBIO", "Biotechnology & Genome"),
    ("SBRD", "Brand Name Products"), ("SCEL", "Consumer Electronics"),
    ("SFNB", "Food & Beverage"), ("SHRD", "Hardware"),
    ("SISS", "Internet Software & Services"), ("SLSR", "Leisure and Entertainment"),
    ("SMED", "Media"), ("SNWK", "Networking"), ("SPHR", "Pharmaceuticals"),
    ("SSMC", "Semiconductors"), ("SSFT", "Software"), ("STEL", "Telecommunications Services"),
    ("SWRL", "Wireless"),
)

# Fund specs in the trust's own order [459639]. A spec is (kind, args):
#   tiers: ((sub-pool, count, total weight), ...) each tier equally weighted inside itself
#   equal / yield: (sub-pools, count); mcap / mequal: (sub-pool, count, cap per stock)
_FUNDS: tuple[tuple[str, str, str, tuple], ...] = (
    ("DYNM", "PowerShares Dynamic Market Portfolio", "tiers",
     (("large", 30, 0.5), ("mid", 70, 0.5))),
    ("DOTC", "PowerShares Dynamic OTC Portfolio", "tiers",
     (("otc:top", 30, 0.5), ("otc:rest", 70, 0.5))),
    ("PWB", "PowerShares Dynamic Large Cap Growth Portfolio", "tiers",
     (("large_growth:top", 15, 0.5), ("large_growth:rest", 35, 0.5))),
    ("PWV", "PowerShares Dynamic Large Cap Value Portfolio", "tiers",
     (("large_value:top", 15, 0.5), ("large_value:rest", 35, 0.5))),
    ("PWJ", "PowerShares Dynamic Mid Cap Growth Portfolio", "tiers",
     (("mid_growth:top", 22, 0.7), ("mid_growth:rest", 53, 0.3))),
    ("PWP", "PowerShares Dynamic Mid Cap Value Portfolio", "tiers",
     (("mid_value:top", 22, 0.7), ("mid_value:rest", 53, 0.3))),
    ("PWT", "PowerShares Dynamic Small Cap Growth Portfolio", "tiers",
     (("small_growth:top", 30, 0.7), ("small_growth:rest", 70, 0.3))),
    ("PWY", "PowerShares Dynamic Small Cap Value Portfolio", "tiers",
     (("small_value:top", 30, 0.7), ("small_value:rest", 70, 0.3))),
    *((code, f"PowerShares Dynamic {sector} Portfolio", "tiers",
       ((f"{code}:top", 10, 0.5), (f"{code}:rest", 20, 0.5))) for code, sector in _SECTORS),
    ("GDRG", "PowerShares Halter Golden Dragon China Portfolio", "mcap", ("china", 40, 0.08)),
    ("HYDA", "PowerShares High Yield Equity Dividend Achievers Portfolio", "yield",
     (("large_value", "mid_value"), 50)),
    ("VLTS", "PowerShares Value Line #1 Timeliness and Safety Portfolio", "equal",
     (("large", "mid", "small"), 50)),
    ("WCLE", "PowerShares Wilder Alternative Power Technologies Portfolio", "mequal",
     ("clean", 40, 0.03)),
    ("ZRLC", "PowerShares Zacks Rank Large Cap Portfolio", "equal", (("large", "mid"), 150)),
)


def _make_symbols(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    """Draw `count` new 3-5 letter symbols not in `taken` (which is updated)."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    out: list[str] = []
    while len(out) < count:
        length = int(rng.choice((3, 4, 5), p=(0.3, 0.55, 0.15)))
        symbol = "".join(rng.choice(letters, size=length))
        if symbol not in taken:
            taken.add(symbol)
            out.append(symbol)
    return out


def _build_pools(rng: np.random.Generator) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Symbol pools (each in market-cap order) and the one previous close of every symbol."""
    taken = {ticker for ticker, *_ in _FUNDS}  # a stock must never shadow a fund ticker
    pools: dict[str, list[str]] = {}
    prices: dict[str, float] = {}
    specs = [*_POOLS, *((code, _SECTOR_POOL_SIZE, _SECTOR_MEDIAN_PRICE) for code, _ in _SECTORS)]
    for name, size, median in specs:
        symbols = _make_symbols(rng, size, taken)
        closes = np.exp(rng.normal(np.log(median), _PRICE_SIGMA, size))
        # Redraw outliers rather than clip them, which would pile prices up at the bounds.
        while (bad := (closes < _PRICE_MIN) | (closes > _PRICE_MAX)).any():
            closes[bad] = np.exp(rng.normal(np.log(median), _PRICE_SIGMA, int(bad.sum())))
        closes = np.round(closes, 2)
        prices.update(zip(symbols, closes.tolist()))
        pools[name] = symbols
    # Growth and value are disjoint subsets of each size universe [10991, 37650, 65294].
    for size_name, (n_growth, n_value) in _STYLE_SPLIT.items():
        universe = pools[size_name]
        order = rng.permutation(len(universe))
        for style, picks in (("growth", order[:n_growth]),
                             ("value", order[n_growth:n_growth + n_value])):
            pools[f"{size_name}_{style}"] = [universe[i] for i in np.sort(picks)]
    otc = [s for code in _NASDAQ_SECTORS for s in pools[code]] + pools["nasdaq"]
    pools["otc"] = [otc[i] for i in rng.permutation(len(otc))]
    return pools, prices


def _sub_pool(pools: dict[str, list[str]], key: str) -> list[str]:
    """`name` is the whole pool; `name:top` its top market-cap quintile; `name:rest` the others."""
    name, _, part = key.partition(":")
    pool = pools[name]
    cut = len(pool) // 5
    return {"": pool, "top": pool[:cut], "rest": pool[cut:]}[part]


def _pick(rng: np.random.Generator, candidates: list[str], count: int) -> list[str]:
    """`count` distinct candidates, kept in market-cap (pool) order."""
    return [candidates[i] for i in np.sort(rng.choice(len(candidates), count, replace=False))]


def _cap_weights(weights: np.ndarray, cap: float) -> np.ndarray:
    """Normalise, clip every weight at `cap` and hand the excess to the uncapped names."""
    w = weights / weights.sum()
    for _ in range(len(w)):
        over = w > cap
        if not over.any():
            break
        excess = float((w[over] - cap).sum())
        w[over] = cap
        free = w < cap
        w[free] += excess * w[free] / w[free].sum()
    return w


def _select(rng: np.random.Generator, pools: dict[str, list[str]], kind: str,
            args: tuple) -> tuple[list[str], np.ndarray]:
    """Constituents and target weights (summing to 1) of one fund."""
    if kind == "tiers":
        symbols: list[str] = []
        weights: list[float] = []
        for key, count, tier_weight in args:
            symbols += _pick(rng, _sub_pool(pools, key), count)
            weights += [tier_weight / count] * count
        return symbols, np.array(weights)
    if kind in ("equal", "yield"):
        keys, count = args
        symbols = _pick(rng, [s for key in keys for s in _sub_pool(pools, key)], count)
        if kind == "equal":
            return symbols, np.full(count, 1.0 / count)
        raw = rng.uniform(0.025, 0.07, count)  # indicated dividend yields
    else:  # mcap, mequal
        key, count, cap = args
        symbols = _pick(rng, _sub_pool(pools, key), count)
        scatter = rng.lognormal(0.0, 1.0, count) if kind == "mcap" else rng.uniform(0.7, 1.3, count)
        raw = _cap_weights(scatter, cap)
    order = np.argsort(-raw, kind="stable")  # list the heaviest first, as index providers do
    return [symbols[i] for i in order], raw[order] / raw.sum()


def build_universe(seed: int = 2004) -> list[dict]:
    """Return the demo universe: one PCF dict per fund, identical for identical seeds."""
    rng = np.random.default_rng(seed)
    pools, prices = _build_pools(rng)
    universe = []
    for ticker, name, kind, args in _FUNDS:
        symbols, weights = _select(rng, pools, kind, args)
        if len(set(symbols)) != len(symbols):
            raise AssertionError(f"{ticker}: a symbol was drawn twice")
        price = np.array([prices[s] for s in symbols])
        shares = np.maximum(1, np.rint(weights * (UNIT_VALUE_CENTS / 100) / price)).astype(np.int64)
        # Sum in integer cents so the cash component is exact, not a float residue.
        value_cents = int((shares * np.rint(price * 100).astype(np.int64)).sum())
        universe.append({
            "fund": ticker,
            "name": name,
            "creation_unit": CREATION_UNIT,
            "currency": CURRENCY,
            "cash": (UNIT_VALUE_CENTS - value_cents) / 100,
            "as_of": AS_OF,
            "holdings": [{"symbol": s, "shares": int(n), "price": prices[s]}
                         for s, n in zip(symbols, shares)],
        })
    return universe


def dumps_universe(universe: list[dict]) -> str:
    """Serialise as JSON with one holding per line: readable, diff-friendly, byte-stable."""
    lines = ["["]
    for i, fund in enumerate(universe):
        header = {k: v for k, v in fund.items() if k != "holdings"}
        lines.append(" " + json.dumps(header)[:-1] + ', "holdings": [')
        rows = [json.dumps(h) for h in fund["holdings"]]
        lines += [f"  {row}," for row in rows[:-1]] + [f"  {rows[-1]}"]
        lines.append(" ]}" + ("," if i < len(universe) - 1 else ""))
    lines.append("]")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: write the demo universe to --out."""
    parser = argparse.ArgumentParser(prog="python -m iopv.demo.universe",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="PCF JSON file to write")
    parser.add_argument("--seed", type=int, default=2004, help="random seed (default 2004)")
    args = parser.parse_args(argv)
    universe = build_universe(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps_universe(universe), encoding="utf-8")
    n_symbols = len({h["symbol"] for fund in universe for h in fund["holdings"]})
    print(f"wrote {len(universe)} funds, {n_symbols} symbols to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
