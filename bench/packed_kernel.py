"""The benchmark's price-only packed valuation kernel, ``value_packed_nb`` (bench/README.md "Valuation").

Not shipped: the engine values with ``iopv.kernels.valuation.value_all_nb`` (flags, sides,
coverage); this kernel is the figure issue #4 named against scipy's CSR product, and the tests
check it is bit-identical to ``value_funds_nb``. It reads ``PackedHoldings``
(``iopv.core.packed``) with unsigned indices and runs two funds side by side: the chain of
dependent float additions, not memory bandwidth, bounds a pass over 2M holdings.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from iopv.kernels.valuation import error_bound_nb


@njit(cache=True, inline="always")
def _packed_term_nb(holding, shares, prices, fx_value, h, shift, mask):
    """shares x price x fx of packed holding ``h`` (unsigned indices: no negative-index fix-up)."""
    packed = holding[h]
    return shares[h] * prices[packed >> shift] * fx_value[packed & mask]


@njit(cache=True, inline="always")
def _finish_fund_nb(f, total, fund_offsets, fund_cash, fund_creation_unit, out_value, out_error):
    """Value and error bound of fund ``f`` from the sum of its terms (``value_funds_nb``'s
    bound; every term is >= 0, so the sum is also the gross magnitude of the terms)."""
    unit = fund_creation_unit[f]
    cash = fund_cash[f]
    value = (total + cash) / unit
    out_value[f] = value
    n = fund_offsets[f + 1] - fund_offsets[f]
    out_error[f] = error_bound_nb(n + 5, total + abs(cash), unit, value)


@njit(cache=True)
def _finish_lane_nb(f, stop_fund, h, total, fund_offsets, holding, shares, prices, fx_value, shift,
                    mask, fund_cash, fund_creation_unit, out_value, out_error):
    """Funds ``f`` .. ``stop_fund - 1`` one after the other, fund ``f`` resumed at holding ``h``
    with ``total`` summed so far."""
    while f < stop_fund:
        stop = uint64(fund_offsets[f + 1])
        for k in range(h, stop):
            total += _packed_term_nb(holding, shares, prices, fx_value, k, shift, mask)
        _finish_fund_nb(f, total, fund_offsets, fund_cash, fund_creation_unit, out_value, out_error)
        total = 0.0
        h = stop
        f += 1


@njit(cache=True)
def value_packed_nb(fund_offsets, holding, shares, shift, fx_slots, fund_cash, fund_creation_unit,
                    prices, out_value, out_error):
    """``value_funds_nb`` over ``PackedHoldings`` (``holding``, ``shares``, ``shift``,
    ``fx_slots``): bit-identical values, in ~40% of the time at US scale.

    A fund's sum is a chain of dependent additions (one add latency per holding), so the funds
    are split in two lanes at the middle holding and the lanes advance together, holding by
    holding: two independent chains overlap. Each fund's own terms are still added in order.

    Requires shares >= 0 and prices > 0 (the loader's and the book's rules): the error bound
    takes the sum of the terms as their gross magnitude. Returns the number of prices that are
    not > 0 (0 from any book the engine keeps). Counting them is one sequential read of the
    prices, which brings them into cache before they are gathered: ~10% faster when they were
    not (measured on the benchmark's books after a cache flush; no change when they were)."""
    not_positive = 0
    for s in range(prices.size):
        not_positive += not prices[s] > 0.0
    n_fx = fx_slots.size
    fx_value = np.empty(n_fx)  # one per FX code, per call: a few entries, always in L1
    for c in range(n_fx):
        fx_value[c] = prices[fx_slots[c]]
    bits = uint64(shift)
    mask = (uint64(1) << bits) - uint64(1)
    n_funds = fund_offsets.size - 1
    middle = min(np.searchsorted(fund_offsets, fund_offsets[n_funds] // 2), n_funds)
    # Lane a: funds [0, middle); lane b: funds [middle, n_funds). fa/fb: current fund, ha/hb: next
    # holding, sa/sb: end of the current fund, ta/tb: its sum so far.
    fa = 0
    fb = middle
    ha = uint64(fund_offsets[fa])
    hb = uint64(fund_offsets[fb])
    sa = uint64(fund_offsets[fa + 1]) if fa < middle else ha
    sb = uint64(fund_offsets[fb + 1]) if fb < n_funds else hb
    ta = 0.0
    tb = 0.0
    while fa < middle and fb < n_funds:
        steps = min(sa - ha, sb - hb)
        for j in range(steps):
            ta += _packed_term_nb(holding, shares, prices, fx_value, ha + j, bits, mask)
            tb += _packed_term_nb(holding, shares, prices, fx_value, hb + j, bits, mask)
        ha += steps
        hb += steps
        if ha == sa:
            _finish_fund_nb(fa, ta, fund_offsets, fund_cash, fund_creation_unit, out_value, out_error)
            ta = 0.0
            fa += 1
            if fa < middle:
                sa = uint64(fund_offsets[fa + 1])
        if hb == sb:
            _finish_fund_nb(fb, tb, fund_offsets, fund_cash, fund_creation_unit, out_value, out_error)
            tb = 0.0
            fb += 1
            if fb < n_funds:
                sb = uint64(fund_offsets[fb + 1])
    # One lane is done: the other finishes alone.
    _finish_lane_nb(fa, middle, ha, ta, fund_offsets, holding, shares, prices, fx_value, bits, mask,
                    fund_cash, fund_creation_unit, out_value, out_error)
    _finish_lane_nb(fb, n_funds, hb, tb, fund_offsets, holding, shares, prices, fx_value, bits, mask,
                    fund_cash, fund_creation_unit, out_value, out_error)
    return not_positive
