"""Seeded synthetic universes for the benchmarks: demo (28 funds), US scale, global scale.

A universe is generated once as plain arrays (a ``Basket``), then either

- rendered as a PCF document (a list of fund dicts, exactly what a basket file holds) and loaded
  with ``iopv.core.universe.build_universe`` -- the real path, validation included; or
- laid out directly as an ``iopv.core.universe.Universe`` with the same book order ``build_universe`` uses
  (securities by first appearance, then FX pairs by first appearance), which takes a second
  instead of minutes and gigabytes at 10 million holdings.

The benchmark loads the demo and (in full mode) the US-scale document through ``build_universe``
and checks that the direct layout is array-for-array identical, so the direct route used at
global scale is the same universe the engine would have loaded.

What the generator models: heavy-tailed basket sizes (a log-normal truncated to 20..4,000,
scaled so the total hits the target), popularity-weighted constituents (a power law over a
security ranking, so large caps sit in hundreds of funds), whole-share quantities, prices on a
cent grid, 2-decimal cash, creation units of 25k/50k/100k shares, and a fifth of the funds
holding foreign listings (EUR, JPY, GBP, CHF, CAD, HKD, AUD) with PCF FX rates; a few funds are
denominated in EUR, so USD listings need a USDEUR rate there.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iopv.core.universe import Universe, build_universe, load_pcf

DEMO_PCF = Path(__file__).resolve().parents[1] / "config" / "pcf" / "demo.json"

#: USD per unit of each currency (previous-close FX fixings; synthetic but plausible).
USD_PER = {"USD": 1.0, "EUR": 1.0842, "JPY": 0.006712, "GBP": 1.2718, "CHF": 1.1342,
           "CAD": 0.7321, "HKD": 0.12807, "AUD": 0.6612}
CURRENCIES = tuple(USD_PER)
#: Listing suffix of a foreign security (makes symbols look like what a vendor sends).
SUFFIX = {"USD": "", "EUR": ".DE", "JPY": ".T", "GBP": ".L", "CHF": ".SW", "CAD": ".TO",
          "HKD": ".HK", "AUD": ".AX"}
FOREIGN_WEIGHTS = np.array([0.30, 0.22, 0.18, 0.08, 0.08, 0.08, 0.06])  # EUR..AUD


@dataclass(frozen=True)
class Spec:
    """Size and seed of one synthetic universe."""

    name: str
    funds: int
    target_holdings: int
    securities: int
    seed: int
    min_basket: int = 20
    max_basket: int = 4_000
    basket_sigma: float = 1.3  # log-normal spread of basket sizes (heavy right tail)
    foreign_securities: float = 0.25  # share of the securities listed outside the US
    international_funds: float = 0.20  # share of the funds that may hold foreign listings
    eur_funds: float = 0.03  # share of the funds denominated in EUR (all international)
    popularity_exponent: float = 1.1  # power law over the security ranking


DEMO_SPEC = Spec("demo", funds=28, target_holdings=1_430, securities=1_300, seed=2004,
                 min_basket=30, max_basket=150)
US_SPEC = Spec("us", funds=3_500, target_holdings=2_000_000, securities=50_000, seed=20_240_401)
GLOBAL_SPEC = Spec("global", funds=10_000, target_holdings=10_000_000, securities=200_000,
                   seed=20_240_402)


@dataclass(frozen=True, eq=False)
class Basket:
    """A generated universe before layout: generator security ids, not book slots."""

    spec: Spec
    fund_names: list[str]
    fund_currency: np.ndarray  # int8 index into CURRENCIES
    fund_creation_unit: np.ndarray  # float64
    fund_cash: np.ndarray  # float64
    fund_offsets: np.ndarray  # int64[F+1]
    holding_security: np.ndarray  # int64 generator id
    holding_shares: np.ndarray  # float64 (whole shares)
    security_names: list[str]
    security_currency: np.ndarray  # int8
    security_price: np.ndarray  # float64, local currency, cent grid

    @property
    def holdings(self) -> int:
        return int(self.holding_security.size)


def _letter_codes(rng: np.random.Generator, count: int, length: int) -> list[str]:
    """``count`` distinct upper-case codes of ``length`` letters, in random order."""
    space = 26**length
    picks = rng.choice(space, size=count, replace=False)
    letters = np.empty((count, length), dtype=np.uint8)
    for position in range(length - 1, -1, -1):
        letters[:, position] = picks % 26 + ord("A")
        picks //= 26
    return [row.tobytes().decode() for row in letters]


def _basket_sizes(rng: np.random.Generator, spec: Spec) -> np.ndarray:
    """Truncated log-normal sizes whose sum is within 0.1% of ``spec.target_holdings``."""
    z = rng.standard_normal(spec.funds)
    low, high = np.log(spec.min_basket), np.log(spec.max_basket)

    def sizes(mu: float) -> np.ndarray:
        return np.clip(np.rint(np.exp(mu + spec.basket_sigma * z)), spec.min_basket, spec.max_basket).astype(np.int64)

    for _ in range(60):  # bisection on the log-median
        mid = (low + high) / 2
        total = sizes(mid).sum()
        if abs(total - spec.target_holdings) <= spec.target_holdings * 1e-3:
            break
        low, high = (mid, high) if total < spec.target_holdings else (low, mid)
    return sizes(mid)


def _distinct_popular(rng: np.random.Generator, pool: np.ndarray, k: int, exponent: float) -> np.ndarray:
    """``k`` distinct members of ``pool`` (ordered by popularity), drawn by a power law over rank."""
    n = pool.size
    k = min(k, n)
    chosen = np.empty(0, dtype=np.int64)
    want = k
    while chosen.size < k:
        u = rng.random(int(want * 1.4) + 16)
        # Inverse CDF of a continuous power law ~ (r + 1)^-exponent on [0, n).
        a = 1.0 - exponent
        ranks = ((1.0 + u * ((n + 1.0) ** a - 1.0)) ** (1.0 / a) - 1.0).astype(np.int64)
        chosen = np.unique(np.concatenate([chosen, np.minimum(ranks, n - 1)]))
        want = 2 * want
    return pool[rng.permutation(chosen)[:k]]


def generate(spec: Spec) -> Basket:
    """The seeded universe of ``spec`` as arrays (deterministic for a given spec)."""
    rng = np.random.default_rng(spec.seed)
    s, f = spec.securities, spec.funds
    foreign = rng.random(s) < spec.foreign_securities
    security_currency = np.zeros(s, dtype=np.int8)
    security_currency[foreign] = 1 + rng.choice(len(FOREIGN_WEIGHTS), size=int(foreign.sum()), p=FOREIGN_WEIGHTS)
    usd_per = np.array([USD_PER[c] for c in CURRENCIES])
    usd_price = np.clip(np.exp(rng.normal(np.log(35.0), 0.9, s)), 1.0, 2_000.0)
    local = usd_price / usd_per[security_currency]
    decimals = np.where(security_currency == CURRENCIES.index("JPY"), 0, 2)
    security_price = np.maximum(np.round(local * 10.0**decimals) / 10.0**decimals, 0.01)
    codes = _letter_codes(rng, s, 4 if s <= 26**4 // 2 else 5)
    security_names = [code + SUFFIX[CURRENCIES[c]] for code, c in zip(codes, security_currency.tolist())]

    international = rng.random(f) < spec.international_funds
    fund_currency = np.zeros(f, dtype=np.int8)
    eur_share = spec.eur_funds / max(spec.international_funds, 1e-9)
    fund_currency[international & (rng.random(f) < eur_share)] = CURRENCIES.index("EUR")
    fund_creation_unit = rng.choice([25_000.0, 50_000.0, 100_000.0], size=f, p=[0.2, 0.6, 0.2])
    sizes = _basket_sizes(rng, spec)
    offsets = np.zeros(f + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    # Popularity rank is a random permutation of the securities; domestic funds draw from the
    # US listings only, international ones from everything.
    ranking = rng.permutation(s)
    domestic_pool = ranking[security_currency[ranking] == 0]
    holding_security = np.empty(int(offsets[-1]), dtype=np.int64)
    holding_shares = np.empty(int(offsets[-1]), dtype=np.float64)
    fund_cash = np.empty(f, dtype=np.float64)
    nav_per_share_usd = np.exp(rng.normal(np.log(30.0), 0.5, f))
    for fund in range(f):
        start, stop = offsets[fund], offsets[fund + 1]
        pool = ranking if international[fund] else domestic_pool
        members = _distinct_popular(rng, pool, int(stop - start), spec.popularity_exponent)
        holding_security[start:stop] = members
        weights = np.exp(rng.normal(0.0, 1.0, members.size))
        weights /= weights.sum()
        fund_usd = usd_per[fund_currency[fund]]
        unit_value = nav_per_share_usd[fund] * fund_creation_unit[fund] / fund_usd  # fund currency
        member_value = security_price[members] * usd_per[security_currency[members]] / fund_usd
        holding_shares[start:stop] = np.maximum(np.rint(weights * unit_value / member_value), 1.0)
        fund_cash[fund] = round(unit_value * rng.uniform(-0.002, 0.01), 2)
    fund_names = [f"ETF{i:05d}" for i in range(f)]
    return Basket(spec, fund_names, fund_currency, fund_creation_unit, fund_cash, offsets,
                  holding_security, holding_shares, security_names, security_currency, security_price)


def fx_rate(holding_ccy: int, fund_ccy: int) -> float:
    """The PCF rate of ``<holding><fund>`` (fund currency per unit of holding currency)."""
    return float(f"{USD_PER[CURRENCIES[holding_ccy]] / USD_PER[CURRENCIES[fund_ccy]]:.6g}")


def _fund_fx_currencies(basket: Basket) -> list[list[int]]:
    """Per fund, the sorted foreign currencies its holdings need a rate for."""
    fund_of = np.repeat(np.arange(basket.spec.funds), np.diff(basket.fund_offsets))
    hccy = basket.security_currency[basket.holding_security].astype(np.int64)
    fccy = basket.fund_currency[fund_of].astype(np.int64)
    foreign = hccy != fccy
    pairs = np.unique(fund_of[foreign] * len(CURRENCIES) + hccy[foreign])
    out: list[list[int]] = [[] for _ in range(basket.spec.funds)]
    for key in pairs.tolist():
        out[key // len(CURRENCIES)].append(key % len(CURRENCIES))
    return out


def to_document(basket: Basket) -> list[dict]:
    """The basket as a PCF document (what ``config/pcf/*.json`` holds)."""
    fx_needed = _fund_fx_currencies(basket)
    names = basket.security_names
    price = basket.security_price.tolist()
    ccy = [CURRENCIES[c] for c in basket.security_currency.tolist()]
    security = basket.holding_security.tolist()
    shares = basket.holding_shares.astype(np.int64).tolist()
    offsets = basket.fund_offsets.tolist()
    document = []
    for f, name in enumerate(basket.fund_names):
        fund_ccy = CURRENCIES[basket.fund_currency[f]]
        holdings = []
        for h in range(offsets[f], offsets[f + 1]):
            s = security[h]
            row = {"symbol": names[s], "shares": shares[h], "price": price[s]}
            if ccy[s] != fund_ccy:
                row["currency"] = ccy[s]
            holdings.append(row)
        fund = {"fund": name, "creation_unit": int(basket.fund_creation_unit[f]), "currency": fund_ccy,
                "cash": float(basket.fund_cash[f]), "holdings": holdings}
        if fx_needed[f]:
            fund["fx"] = {CURRENCIES[c]: fx_rate(c, int(basket.fund_currency[f])) for c in fx_needed[f]}
        document.append(fund)
    return document


def to_universe(basket: Basket, source: str | None = None) -> Universe:
    """The basket laid out directly, in the book order ``build_universe`` produces: securities
    by first appearance, FX pairs by first appearance, one market slot per fund ticker (no fund
    ticker is a holding here), then the slot fixed at 1.0. ``check_direct_layout`` verifies this
    against ``build_universe`` on every run, so a layout change in ``iopv.core.universe`` fails loudly."""
    spec = basket.spec
    raw = basket.holding_security
    first_seen = np.unique(raw, return_index=True)
    securities_in_order = first_seen[0][np.argsort(first_seen[1], kind="stable")]
    slot_of = np.full(spec.securities, -1, dtype=np.int64)
    slot_of[securities_in_order] = np.arange(securities_in_order.size)
    n_sec = securities_in_order.size

    fx_needed = _fund_fx_currencies(basket)
    pair_slot: dict[tuple[int, int], int] = {}
    pair_names: list[str] = []
    pair_rates: list[float] = []
    for f, needed in enumerate(fx_needed):
        fccy = int(basket.fund_currency[f])
        for c in needed:
            if (c, fccy) not in pair_slot:
                pair_slot[(c, fccy)] = n_sec + len(pair_names)
                pair_names.append(f"{CURRENCIES[c]}{CURRENCIES[fccy]}")
                pair_rates.append(fx_rate(c, fccy))
    n_symbols = n_sec + len(pair_names)
    n_funds = spec.funds
    one = n_symbols + n_funds
    # FX slot per (holding currency, fund currency); the 1.0 slot where they agree.
    table = np.full((len(CURRENCIES), len(CURRENCIES)), -1, dtype=np.int64)
    for c in range(len(CURRENCIES)):
        table[c, c] = one
    for (c, fccy), slot in pair_slot.items():
        table[c, fccy] = slot
    fund_of = np.repeat(np.arange(n_funds), np.diff(basket.fund_offsets))
    holding_fx = table[basket.security_currency[raw], basket.fund_currency[fund_of]]
    assert (holding_fx >= 0).all()
    names = basket.security_names
    fields = {
        "source": source or f"<synthetic {spec.name}, seed {spec.seed}>",
        "funds": tuple(basket.fund_names),
        "fund_currency": tuple(CURRENCIES[c] for c in basket.fund_currency.tolist()),
        "fund_offsets": basket.fund_offsets.astype(np.int64),
        "holding_security": slot_of[raw].astype(np.int32),
        "holding_shares": basket.holding_shares.copy(),
        "holding_fx": holding_fx.astype(np.int32),
        "fund_cash": basket.fund_cash.copy(),
        "fund_creation_unit": basket.fund_creation_unit.copy(),
        "symbols": tuple(names[i] for i in securities_in_order.tolist()) + tuple(pair_names),
        "initial_prices": np.concatenate([basket.security_price[securities_in_order],
                                          np.array(pair_rates, dtype=np.float64)]),
        "market_symbols": tuple(basket.fund_names),
        "fund_market": np.arange(n_symbols, n_symbols + n_funds, dtype=np.int64),
    }
    known = {f.name for f in dataclasses.fields(Universe)}
    universe = Universe(**{k: v for k, v in fields.items() if k in known})
    if universe.one_index != one:
        raise AssertionError(f"direct layout: iopv.core.universe puts the 1.0 slot at {universe.one_index}, "
                             f"expected {one}: bench/universes.py needs updating")
    return universe


#: Fields that may differ between the two routes without changing what the kernels compute.
_NOT_COMPARED = {"source", "version", "fund_info"}


def layout_differences(a, b) -> list[str]:
    """Names of the fields on which two universes differ (empty: identical); a field that is
    itself a dataclass (``Universe.packed``) is compared field by field, named ``packed.<field>``."""
    differ = []
    for f in dataclasses.fields(a):
        if f.name in _NOT_COMPARED:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x) and type(x) is type(y):
            differ += [f"{f.name}.{name}" for name in layout_differences(x, y)]
            continue
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            same = (x is not None and y is not None and x.shape == y.shape and x.dtype == y.dtype
                    and np.array_equal(x, y))
        else:
            same = x == y
        if not same:
            differ.append(f.name)
    return differ


def same_layout(a: Universe, b: Universe) -> bool:
    """True when two universes have identical arrays, names and book order."""
    return not layout_differences(a, b)


CHECK_SPEC = Spec("check", funds=300, target_holdings=60_000, securities=8_000, seed=7)


def check_direct_layout(spec: Spec = CHECK_SPEC) -> dict:
    """Build ``spec`` both ways (document -> build_universe, and direct) and compare."""
    basket = generate(spec)
    started = time.perf_counter()
    loaded = build_universe(to_document(basket), source="<check>")
    elapsed = time.perf_counter() - started
    differ = layout_differences(to_universe(basket), loaded)
    if differ:
        raise AssertionError(f"direct layout differs from build_universe on {differ}: "
                             "bench/universes.py needs updating to iopv.core.universe's layout")
    return {"check_funds": spec.funds, "check_holdings": basket.holdings, "identical": True,
            "check_build_universe_s": elapsed}


def demo() -> tuple[Universe, str]:
    """The demo universe: ``config/pcf/demo.json`` when present, else a generated look-alike."""
    if DEMO_PCF.is_file():
        return load_pcf(DEMO_PCF), str(DEMO_PCF)
    basket = generate(DEMO_SPEC)
    return build_universe(to_document(basket), source="<generated demo>"), "generated (demo.json missing)"


def describe(universe: Universe) -> dict:
    """Size figures of a universe (for the results file)."""
    n_pairs = sum(1 for s in universe.symbols if len(s) == 6 and s.isalpha() and s.isupper()
                  and s[:3] in USD_PER and s[3:] in USD_PER)
    sizes = np.diff(universe.fund_offsets)
    foreign = int(np.count_nonzero(universe.holding_fx != universe.one_index))
    return {
        "funds": len(universe.funds),
        "holdings": universe.holdings,
        "securities": len(universe.symbols) - n_pairs,
        "fx_pairs": n_pairs,
        "book_slots": universe.book_size,
        "foreign_holdings": foreign,
        "basket_min": int(sizes.min()) if sizes.size else 0,
        "basket_p50": int(np.median(sizes)) if sizes.size else 0,
        "basket_p99": int(np.percentile(sizes, 99)) if sizes.size else 0,
        "basket_max": int(sizes.max()) if sizes.size else 0,
    }


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started
