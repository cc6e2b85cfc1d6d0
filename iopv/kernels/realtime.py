"""Kernels of real-time mode: the slot -> holdings index, the incremental update of every fund's
running sums after a batch of ticks, values with error bounds from those sums, and which moved
funds are due for publication.

Same contract as ``iopv.kernels.valuation``: arrays and scalars in, ``out`` arrays written, no allocation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from iopv.core.constants import UNIT_ROUNDOFF, PriceBasis, TickOutcome
from iopv.kernels.valuation import side_prices_nb


@njit(cache=True)
def take_due_nb(dirty, last_publish_ns, now_ns, throttle_ns, start, out_funds):
    """Move the dirty funds whose throttle window has passed into ``out_funds`` (clearing their
    mark), at most ``out_funds.size`` of them, scanning round-robin from fund ``start`` so a
    capped step never starves the funds after it. Returns how many; funds still inside their
    window, or beyond that many, stay dirty. The caller stamps ``last_publish_ns`` of the funds
    it does publish."""
    n = 0
    n_funds = dirty.size
    for k in range(n_funds):
        if n == out_funds.size:
            break
        f = start + k
        if f >= n_funds:
            f -= n_funds
        if dirty[f] and now_ns - last_publish_ns[f] >= throttle_ns:
            dirty[f] = 0
            out_funds[n] = f
            n += 1
    return n


def slot_holding_index(holding_security: np.ndarray, holding_fx: np.ndarray, book_size: int,
                       one_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot -> holdings, as CSR over book slots: ``holdings[offsets[s]:offsets[s+1]]`` are the
    holdings whose term a change of slot ``s`` moves (as the security or as its FX rate). The
    fixed 1.0 slot moves nothing. Built with array operations, once per basket."""
    n = holding_security.size
    slots = np.concatenate([holding_security.astype(np.int64), holding_fx.astype(np.int64)])
    holdings = np.concatenate([np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32)])
    keep = slots != one_index
    slots, holdings = slots[keep], holdings[keep]
    order = np.argsort(slots, kind="stable")
    offsets = np.zeros(book_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(slots, minlength=book_size), out=offsets[1:])
    return offsets, holdings[order]


@njit(cache=True, inline="always")
def _terms(h, holding_security, holding_shares, holding_fx, mid, prices, bid, ask):
    """The holding's (value, bid, ask) terms at the book's prices, with the side fallbacks of the
    boundary's valuation (``side_prices_nb``)."""
    s = holding_security[h]
    x = holding_fx[h]
    q = holding_shares[h]
    b_s, a_s, m_s, _ = side_prices_nb(prices[s], bid[s], ask[s])
    b_x, a_x, m_x, _ = side_prices_nb(prices[x], bid[x], ask[x])
    if mid:
        vs = m_s
        vx = m_x
    else:
        vs = prices[s]
        vx = prices[x]
    return q * vs * vx, q * b_s * b_x, q * a_s * a_x


@njit(cache=True)
def revalue_terms_nb(fund_offsets, holding_security, holding_shares, holding_fx, fund_basis,
                     prices, bid, ask, terms, totals, gross, drift, fund_start, fund_stop):
    """Revaluation of funds ``fund_start:fund_stop``: their holdings' three terms recomputed
    from the book, their sums rebuilt, and their accumulated error bounds reset to that of one
    summation pass."""
    for f in range(fund_start, fund_stop):
        mid = fund_basis[f] == PriceBasis.MID
        t0 = t1 = t2 = 0.0
        g0 = g1 = g2 = 0.0
        for h in range(fund_offsets[f], fund_offsets[f + 1]):
            v, b, a = _terms(h, holding_security, holding_shares, holding_fx, mid, prices, bid, ask)
            terms[0, h] = v
            terms[1, h] = b
            terms[2, h] = a
            t0 += v
            t1 += b
            t2 += a
            g0 += abs(v)
            g1 += abs(b)
            g2 += abs(a)
        n = fund_offsets[f + 1] - fund_offsets[f]
        totals[0, f] = t0
        totals[1, f] = t1
        totals[2, f] = t2
        gross[0, f] = g0
        gross[1, f] = g1
        gross[2, f] = g2
        # A running sum of n terms: each addition rounds once, by at most u * |partial sum|.
        drift[0, f] = (n + 1) * UNIT_ROUNDOFF * g0
        drift[1, f] = (n + 1) * UNIT_ROUNDOFF * g1
        drift[2, f] = (n + 1) * UNIT_ROUNDOFF * g2


@njit(cache=True, inline="always")
def _move_term(side, h, f, new, terms, totals, gross, drift):
    """Replace holding ``h``'s term on ``side`` by ``new`` in fund ``f``'s running sums; the
    bound grows by the two roundings (the difference and the addition)."""
    d = new - terms[side, h]
    t = totals[side, f] + d
    drift[side, f] += UNIT_ROUNDOFF * (abs(d) + abs(t))
    totals[side, f] = t
    gross[side, f] += abs(new) - abs(terms[side, h])
    terms[side, h] = new


@njit(cache=True)
def update_terms_nb(tick_security, tick_code, count, slot_offsets, slot_holdings, holding_fund,
                    holding_security, holding_shares, holding_fx, fund_basis, prices, bid, ask,
                    terms, totals, gross, drift, slot_stamp, stamp, dirty):
    """Incremental update after a batch is applied: for every slot an accepted (or late) tick moved (once
    per slot per batch, via ``slot_stamp``), recompute the terms of the holdings that use it,
    add the differences to their funds' sums, grow the funds' error bounds by the roundings of
    those additions, and mark the funds dirty. Returns the number of holdings updated."""
    updated = 0
    for i in range(count):
        code = tick_code[i]
        if code != TickOutcome.ACCEPTED and code != TickOutcome.LATE:  # late ticks move the book too
            continue
        s = tick_security[i]
        if slot_stamp[s] == stamp:
            continue
        slot_stamp[s] = stamp
        for j in range(slot_offsets[s], slot_offsets[s + 1]):
            h = slot_holdings[j]
            f = holding_fund[h]
            v, b, a = _terms(h, holding_security, holding_shares, holding_fx, fund_basis[f] == PriceBasis.MID,
                             prices, bid, ask)
            _move_term(0, h, f, v, terms, totals, gross, drift)
            _move_term(1, h, f, b, terms, totals, gross, drift)
            _move_term(2, h, f, a, terms, totals, gross, drift)
            dirty[f] = 1
            updated += 1
    return updated


@njit(cache=True)
def values_of_nb(funds, n, totals, gross, drift, fund_cash, fund_creation_unit, out_value, out_error):
    """Per-share values of ``funds[:n]`` on every side from the running sums, each with a bound
    on its float error: the sums' accumulated rounding (``drift``), each stored term's own
    roundings (at most 5, two mids included, relative to the exact term: 6u of the gross covers
    them and the gross's own float error), adding the cash, and the division."""
    for k in range(n):
        f = funds[k]
        cash = fund_cash[f]
        unit = fund_creation_unit[f]
        for side in range(3):
            total = totals[side, f]
            value = (total + cash) / unit
            out_value[side, k] = value
            out_error[side, k] = ((drift[side, f] + 6.0 * UNIT_ROUNDOFF * gross[side, f] * 1.000001
                                   + 2.0 * UNIT_ROUNDOFF * (abs(total) + abs(cash))) / unit
                                  + 2.0 * UNIT_ROUNDOFF * abs(value))
