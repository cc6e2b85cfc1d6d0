"""Numba kernels: apply ticks, value every fund, round for publication, replay a tape.

Contract (as in vectorbt's ``nb.py``): only NumPy arrays and numba-friendly scalars in; kernels
are pure ``@njit(cache=True)`` functions with a ``_nb`` suffix; they write into ``out`` arrays the
caller allocated, never allocate per tick, never log. Python crosses into them once per batch of
ticks and once per cycle.

Array layouts are described in ``iopv.pcf`` (the universe, CSR by fund) and ``iopv.book`` (prices
and last tick times indexed by book slot).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from iopv.codes import ACCEPTED, NON_FINITE_PRICE, NON_POSITIVE_PRICE, OUT_OF_ORDER, UNKNOWN_SYMBOL

#: float64 unit roundoff.
UNIT_ROUNDOFF = 2.0**-53


@njit(cache=True, inline="always")
def _apply_one_nb(security, price, ts, prices, last_ts):
    """Outcome of one decoded tick against the book (writes the book when accepted)."""
    if not math.isfinite(price):
        return NON_FINITE_PRICE
    if price <= 0.0:
        return NON_POSITIVE_PRICE
    if security < 0:
        return UNKNOWN_SYMBOL
    if ts < last_ts[security]:
        return OUT_OF_ORDER
    prices[security] = price
    last_ts[security] = ts
    return ACCEPTED


@njit(cache=True)
def apply_ticks_nb(tick_security, tick_price, tick_ts, tick_code, count, prices, last_ts):
    """Apply ``count`` staged ticks in order; latest wins. ``tick_code`` holds the decoder's
    verdict (0 = well-formed) and receives the final outcome. Returns the number accepted."""
    accepted = 0
    for i in range(count):
        if tick_code[i] != ACCEPTED:
            continue
        code = _apply_one_nb(tick_security[i], tick_price[i], tick_ts[i], prices, last_ts)
        tick_code[i] = code
        if code == ACCEPTED:
            accepted += 1
    return accepted


@njit(cache=True)
def value_funds_nb(fund_offsets, holding_security, holding_shares, holding_fx, fund_cash,
                   fund_creation_unit, prices, out_value, out_error):
    """Per-share value of every fund: (sum shares * price * fx + cash) / creation unit.

    ``out_error`` receives a bound on the float64 rounding error of each value (from the gross
    magnitude of the terms), which publication rounding uses to find values too close to a tie
    to round from the float."""
    for f in range(fund_offsets.size - 1):
        total = 0.0
        gross = abs(fund_cash[f])
        start = fund_offsets[f]
        stop = fund_offsets[f + 1]
        for h in range(start, stop):
            term = holding_shares[h] * prices[holding_security[h]] * prices[holding_fx[h]]
            total += term
            gross += abs(term)
        unit = fund_creation_unit[f]
        value = (total + fund_cash[f]) / unit
        out_value[f] = value
        # Each term carries <= 3 roundings, the running sum <= n more, the division one.
        out_error[f] = (stop - start + 5) * 2.0 * UNIT_ROUNDOFF * gross / unit + 2.0 * UNIT_ROUNDOFF * abs(value)


@njit(cache=True)
def round_half_up_nb(values, errors, decimals, out_rounded, out_near_tie):
    """Round half away from zero to ``decimals``; flag values whose float error could cross a
    rounding tie (the caller resolves those exactly). Returns the number flagged."""
    scale = 10.0**decimals
    flagged = 0
    for f in range(values.size):
        value = values[f]
        magnitude = abs(value) * scale
        floor = math.floor(magnitude)
        fraction = magnitude - floor
        tolerance = errors[f] * scale * 2.0 + 4.0 * UNIT_ROUNDOFF * magnitude
        near = abs(fraction - 0.5) <= tolerance
        out_near_tie[f] = near
        if near:
            flagged += 1
        rounded = floor + 1.0 if fraction >= 0.5 else floor
        out_rounded[f] = math.copysign(rounded / scale, value) if rounded != 0.0 else 0.0
    return flagged


@njit(cache=True)
def replay_nb(tick_security, tick_price, tick_ts, tick_code, start, next_boundary, interval_ns,
              prices, last_ts, fund_offsets, holding_security, holding_shares, holding_fx, fund_cash,
              fund_creation_unit, decimals, out_boundary, out_value, out_error, out_rounded,
              out_near_tie):
    """Run the replay event loop from tick ``start`` until the ticks end or ``out_boundary`` is
    full. Before applying a well-formed tick with ts > the next boundary T, every boundary up to
    it is valued and rounded into the ``out_*`` rows. Returns early, just after a row with a
    value near a rounding tie, so the caller can resolve it exactly against the book as it is at
    that boundary. Returns (next tick, rows written, next boundary)."""
    rows = 0
    capacity = out_boundary.size
    i = start
    n = tick_ts.size
    while i < n:
        if tick_code[i] != ACCEPTED:
            i += 1
            continue
        price = tick_price[i]
        if not math.isfinite(price):
            tick_code[i] = NON_FINITE_PRICE
            i += 1
            continue
        if price <= 0.0:
            tick_code[i] = NON_POSITIVE_PRICE
            i += 1
            continue
        ts = tick_ts[i]
        if ts > next_boundary:
            if rows == capacity:
                break
            out_boundary[rows] = next_boundary
            value_funds_nb(fund_offsets, holding_security, holding_shares, holding_fx, fund_cash,
                           fund_creation_unit, prices, out_value[rows], out_error[rows])
            near = round_half_up_nb(out_value[rows], out_error[rows], decimals, out_rounded[rows],
                                    out_near_tie[rows])
            rows += 1
            next_boundary += interval_ns
            if near:
                break
            continue
        tick_code[i] = _apply_one_nb(tick_security[i], price, ts, prices, last_ts)
        i += 1
    return i, rows, next_boundary
