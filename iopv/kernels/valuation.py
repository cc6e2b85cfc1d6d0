"""Numba kernels: value every fund, round for publication, replay a tape.

Contract (as in vectorbt's ``nb.py``): only NumPy arrays and numba-friendly scalars in; kernels
are pure ``@njit(cache=True)`` functions with a ``_nb`` suffix; they write into ``out`` arrays the
caller allocated, never allocate per tick, never log. Python crosses into them once per batch of
ticks and once per cycle.

Array layouts are described in ``iopv.core.universe`` (the universe, CSR by fund), ``iopv.core.packed``
(its packed copy, ``PackedHoldings``) and ``iopv.engine.book`` (prices and last tick times indexed by book slot).
``value_all_nb`` / ``replay_nb`` are the engine's valuation kernels (methodology:
docs/methodology.md; ticks are applied by ``iopv.kernels.ticks``); ``value_funds_nb`` is the
price-only valuation over the plain arrays (the book's fund-ticker seed, and the reference the
packed kernels are tested against; the benchmark's price-only packed kernel, ``value_packed_nb``,
lives in bench/packed_kernel.py).

Rules more than one kernel applies are written once, as helpers numba inlines: the book rules
(``iopv.kernels.ticks.apply_tick_nb``: live intake and replay), the side fallbacks (``side_prices_nb``: the
boundary valuation, the real-time kernels and, through ``slot_sides_nb``, the exact path in
``iopv.engine.valuer``) and the float error bound (``error_bound_nb``).

What bounds a pass over 2M holdings (measured, bench/README.md "Valuation"): not memory
bandwidth but the chain of dependent float additions of a running sum (one add latency per
holding), the loads per holding, and numba's negative-index fix-up on signed indices. Hence the
packed kernels index with unsigned integers and read the FX factor from a per-call table of a few
entries. Every fund's terms are still added one by one in holding order, so each value is
bit-identical to the plain kernels'.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

from iopv.core.constants import (
    DAY_NS,
    N_TERM_COLS,
    NEVER_TS,
    UNIT_ROUNDOFF,
    BookBit,
    CountRow,
    FundFlag,
    FundStatus,
    PriceBasis,
    RatioRow,
    Side,
    SlotBit,
    TermCol,
    TickOutcome,
)
from iopv.kernels.ticks import apply_tick_nb, price_verdict_nb

# --- the rules every kernel (and the exact path) shares, each written once -------------------------


@njit(cache=True, inline="always")
def side_prices_nb(last, bid, ask):
    """The prices a slot is valued at on each side, from its last price and quote (NaN = not
    quoted): ``(bid side, ask side, mid, a side missing)``. A missing bid or ask falls back to
    the last price on that side; the mid needs both sides, else it is the last price."""
    missing = math.isnan(bid) or math.isnan(ask)
    return (last if math.isnan(bid) else bid, last if math.isnan(ask) else ask,
            last if missing else 0.5 * (bid + ask), missing)


@njit(cache=True, inline="always")
def error_bound_nb(roundings, gross, unit, value):
    """Bound on the float64 error of ``value`` = (sum of terms + cash) / ``unit``: ``roundings``
    (a bound on the roundings in any term and in the running sum, the division included) times
    2u of ``gross`` (the sum of abs(term) and abs(cash)), and the rounding of the value itself."""
    return roundings * 2.0 * UNIT_ROUNDOFF * gross / unit + 2.0 * UNIT_ROUNDOFF * abs(value)


@njit(cache=True)
def slot_sides_nb(prices, bid, ask, slots, out_bid, out_ask, out_quoted):
    """``side_prices_nb`` of ``slots`` (for the exact path, ``iopv.engine.valuer``): each slot's
    bid-side and ask-side price, and whether both sides are quoted (its mid is then theirs)."""
    for k in range(slots.size):
        s = slots[k]
        out_bid[k], out_ask[k], _, missing = side_prices_nb(prices[s], bid[s], ask[s])
        out_quoted[k] = not missing


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
        out_error[f] = error_bound_nb(stop - start + 5, gross, unit, value)


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
def slot_terms_nb(prices, bid, ask, last_ts, flags, boundary_ns, session_open_ns, stale_after_ns,
                  out_rows, out_mid, out_bits):
    """Everything the holding pass needs of a slot, once per slot instead of once per holding:
    ``out_rows[s]`` = (last, bid or else last, ask or else last), packed so a holding costs one
    cache line; ``out_mid[s]`` = mid, or last while a side is unknown; ``out_bits[s]`` =
    ``SlotBit`` bits (sides: ``side_prices_nb``)."""
    for s in range(prices.size):
        p = prices[s]
        bid_side, ask_side, mid, missing = side_prices_nb(p, bid[s], ask[s])
        out_rows[s, TermCol.LAST] = p
        out_mid[s] = mid
        out_rows[s, TermCol.BID] = bid_side
        out_rows[s, TermCol.ASK] = ask_side
        bits = 0
        ticked = last_ts[s]
        if ticked >= session_open_ns:
            bits |= SlotBit.TICKED
        else:
            ticked = session_open_ns  # an untouched price ages from the session open
        if stale_after_ns > 0 and boundary_ns - ticked > stale_after_ns:
            bits |= SlotBit.STALE
        if flags[s] & BookBit.HALTED:
            bits |= SlotBit.HALTED
        if missing:
            bits |= SlotBit.QUOTE_MISSING
        out_bits[s] = bits


@njit(cache=True, inline="always")
def grade_fund_nb(seen, stale, halted, coverage, halted_share, market_halted, min_coverage, halted_weight):
    """(``FundFlag`` bits, ``FundStatus``) of one fund from its holdings' facts: ``seen`` (the
    ``SlotBit`` bits of its slots, FX included, or-ed), its stale and halted holding counts, its
    coverage and halted share of the gross value, and whether its own ticker is halted
    (docs/methodology.md: the flags and the status)."""
    fund_flags = 0
    if seen & SlotBit.QUOTE_MISSING:
        fund_flags |= FundFlag.SIDE_FALLBACK
    if stale:
        fund_flags |= FundFlag.STALE
    if halted:
        fund_flags |= FundFlag.HOLDING_HALTED
    if coverage < min_coverage:
        fund_flags |= FundFlag.LOW_COVERAGE
    if (halted and halted_share >= halted_weight) or market_halted:
        fund_flags |= FundFlag.FUND_HALTED
    if fund_flags & FundFlag.FUND_HALTED:
        return fund_flags, FundStatus.HALTED
    if fund_flags & (FundFlag.STALE | FundFlag.HOLDING_HALTED | FundFlag.LOW_COVERAGE):
        return fund_flags, FundStatus.DEGRADED
    return fund_flags, FundStatus.OK


@njit(cache=True)
def value_all_nb(fund_offsets, holding, shares, shift, fx_slots, fund_fx_offsets, fund_fx_codes,
                 fund_cash, fund_creation_unit, fund_basis, fund_market, slot_rows, slot_mid,
                 slot_bits, min_coverage, halted_weight, fund_list, out_value, out_error, out_ratio,
                 out_count):
    """One pass over the packed holdings (``iopv.core.packed.PackedHoldings``) of the funds in
    ``fund_list`` (after ``slot_terms_nb``): the value at last (or mid) prices, at bids and at
    asks, each with a float error bound (rows ``Side`` of ``out_value``/``out_error``), and the
    quality figures (``out_ratio`` rows ``RatioRow``, ``out_count`` rows ``CountRow``); column k
    describes fund ``fund_list[k]``.

    Every term shares x price x fx is >= 0 (shares >= 0 by the loader, prices > 0 by the book),
    so a side's gross magnitude -- the sum of abs(term) in holding order -- is bit for bit the
    side's own sum, and is not summed apart."""
    n_fx = fx_slots.size
    # Per FX code: last, bid, ask, mid (flat, 4 per code) and the slot bits; a few entries.
    fx_rows = np.empty(4 * n_fx)
    fx_bits = np.empty(n_fx, dtype=np.uint8)
    for c in range(n_fx):
        x = fx_slots[c]
        fx_rows[4 * c] = slot_rows[x, TermCol.LAST]
        fx_rows[4 * c + 1] = slot_rows[x, TermCol.BID]
        fx_rows[4 * c + 2] = slot_rows[x, TermCol.ASK]
        fx_rows[4 * c + 3] = slot_mid[x]
        fx_bits[c] = slot_bits[x]
    rows = slot_rows.reshape(slot_rows.size)  # flat: an index is s * N_TERM_COLS + column, no stride load
    bits_shift = uint64(shift)
    mask = (uint64(1) << bits_shift) - uint64(1)
    width = uint64(N_TERM_COLS)
    for k in range(fund_list.size):
        f = fund_list[k]
        mid = fund_basis[f] == PriceBasis.MID
        cash = fund_cash[f]
        total = 0.0
        total_bid = 0.0
        total_ask = 0.0
        covered = 0.0
        halted_gross = 0.0
        stale = 0
        halted = 0
        seen = 0
        start = fund_offsets[f]
        stop = fund_offsets[f + 1]
        for h in range(uint64(start), uint64(stop)):
            packed = holding[h]
            s = packed >> bits_shift
            row = s * width
            fx = (packed & mask) * uint64(4)
            count = shares[h]
            if mid:
                term = count * slot_mid[s] * fx_rows[fx + uint64(3)]
            else:
                term = count * rows[row + uint64(TermCol.LAST)] * fx_rows[fx]
            total += term
            total_bid += count * rows[row + uint64(TermCol.BID)] * fx_rows[fx + uint64(1)]
            total_ask += count * rows[row + uint64(TermCol.ASK)] * fx_rows[fx + uint64(2)]
            # Branch-free: these bits are data-dependent, mispredicted branches would cost more
            # than the arithmetic (the selects compile to blends).
            bits = slot_bits[s]
            seen |= bits
            covered += term if bits & SlotBit.TICKED else 0.0
            stale += (bits & SlotBit.STALE) >> 1
            is_halted = (bits & SlotBit.HALTED) >> 2
            halted += is_halted
            halted_gross += term if is_halted else 0.0
        for j in range(fund_fx_offsets[f], fund_fx_offsets[f + 1]):
            seen |= fx_bits[fund_fx_codes[j]]  # each FX slot of the fund once
        gross = total
        unit = fund_creation_unit[f]
        n = stop - start
        # Each term carries <= 5 roundings (two mids included), the running sum <= n more, the
        # division one: the bound below covers them with room to spare.
        value = (total + cash) / unit
        out_value[Side.VALUE, k] = value
        out_error[Side.VALUE, k] = error_bound_nb(n + 8, gross + abs(cash), unit, value)
        value = (total_bid + cash) / unit
        out_value[Side.BID, k] = value
        out_error[Side.BID, k] = error_bound_nb(n + 8, total_bid + abs(cash), unit, value)
        value = (total_ask + cash) / unit
        out_value[Side.ASK, k] = value
        out_error[Side.ASK, k] = error_bound_nb(n + 8, total_ask + abs(cash), unit, value)
        coverage = covered / gross if gross > 0.0 else 1.0
        halted_share = halted_gross / gross if gross > 0.0 else 0.0
        out_ratio[RatioRow.COVERAGE, k] = coverage
        out_ratio[RatioRow.HALTED_WEIGHT, k] = halted_share
        market = fund_market[f]
        fund_flags, fund_status = grade_fund_nb(seen, stale, halted, coverage, halted_share,
                                                market >= 0 and slot_bits[market] & SlotBit.HALTED != 0,
                                                min_coverage, halted_weight)
        out_count[CountRow.STALE_HOLDINGS, k] = stale
        out_count[CountRow.HALTED_HOLDINGS, k] = halted
        out_count[CountRow.FUND_FLAGS, k] = fund_flags
        out_count[CountRow.FUND_STATUS, k] = fund_status


@njit(cache=True)
def market_prices_nb(fund_market, prices, last_ts, out):
    """The fund's own last trade (its ticker's slot) when it ticked, else NaN."""
    for f in range(fund_market.size):
        slot = fund_market[f]
        out[f] = prices[slot] if slot >= 0 and last_ts[slot] != NEVER_TS else np.nan


@njit(cache=True)
def round_sides_nb(values, errors, decimals, out_rounded, out_near_tie):
    """``round_half_up_nb`` over every row (side) of 2-D values. Returns the number flagged."""
    flagged = 0
    for k in range(values.shape[0]):
        flagged += round_half_up_nb(values[k], errors[k], decimals, out_rounded[k], out_near_tie[k])
    return flagged


@njit(cache=True)
def session_at_nb(boundary_ns, session_close, cursor):
    """Index of the first session from ``cursor`` on (sorted, disjoint [open, close] pairs)
    that closes at or after ``boundary_ns``; ``session_close.size`` when none does."""
    k = cursor
    while k < session_close.size and session_close[k] < boundary_ns:
        k += 1
    return k


@njit(cache=True)
def replay_nb(ticks, start, next_boundary, interval_ns, book, basket, sessions, rules, scratch, out):
    """Run the replay event loop from tick ``start`` until the ticks end or the output rows are
    full. Before applying a well-formed tick with ts > the next boundary T, every boundary up to
    it is valued and rounded into the next row of ``out`` -- only boundaries inside a session when
    ``session_open`` is not empty (otherwise always open, each UTC day a session). Returns
    early, just after a row with a value near a rounding tie, so the caller can resolve it
    exactly against the book as it is at that boundary. Returns (next tick, rows, next boundary).

    The arguments come in groups (tuples), each in the order of the kernels it feeds:

    - ``ticks``: the tape's columns (security, price, bid, ask, status, ts, code), as
      ``apply_book_nb`` takes them; ``code`` receives every applied tick's outcome;
    - ``book``: the price book's arrays (``PriceBook.arrays``);
    - ``basket``: the universe and its packed holdings, as ``value_all_nb`` takes them
      (``iopv.engine.valuer.Valuer.basket``);
    - ``sessions``: (session_open, session_close), sorted [open, close] pairs in ns;
    - ``rules``: (spike_frac, spike_confirm, stale_after_ns, min_coverage, halted_weight, decimals);
    - ``scratch``: (slot_rows, slot_mid, slot_bits, fund_list), the valuation's work arrays;
    - ``out``: per row (boundary, value, error, rounded, near_tie, ratio, count, market), the
      ``out_*`` arrays of ``value_all_nb``, ``round_sides_nb`` and ``market_prices_nb``."""
    tick_security, tick_price, tick_bid, tick_ask, tick_status, tick_ts, tick_code = ticks
    prices, bid, ask, last_ts, flags, pending_price, pending_count = book
    (fund_offsets, holding, shares, shift, fx_slots, fund_fx_offsets, fund_fx_codes, fund_cash,
     fund_creation_unit, fund_basis, fund_market) = basket
    session_open, session_close = sessions
    spike_frac, spike_confirm, stale_after_ns, min_coverage, halted_weight, decimals = rules
    slot_rows, slot_mid, slot_bits, fund_list = scratch
    out_boundary, out_value, out_error, out_rounded, out_near_tie, out_ratio, out_count, out_market = out
    rows = 0
    capacity = out_boundary.size
    i = start
    n = tick_ts.size
    cursor = 0
    while i < n:
        if tick_code[i] != TickOutcome.ACCEPTED:
            i += 1
            continue
        price = tick_price[i]
        verdict = price_verdict_nb(price, tick_status[i])
        if verdict != TickOutcome.ACCEPTED:
            tick_code[i] = verdict
            i += 1
            continue
        ts = tick_ts[i]
        if ts > next_boundary:
            if rows == capacity:
                break
            opened = next_boundary - next_boundary % DAY_NS
            if session_open.size:
                cursor = session_at_nb(next_boundary, session_close, cursor)
                if cursor == session_open.size or session_open[cursor] > next_boundary:
                    next_boundary += interval_ns  # outside the session: nothing published
                    continue
                opened = session_open[cursor]
            out_boundary[rows] = next_boundary
            slot_terms_nb(prices, bid, ask, last_ts, flags, next_boundary, opened, stale_after_ns,
                          slot_rows, slot_mid, slot_bits)
            value_all_nb(fund_offsets, holding, shares, shift, fx_slots, fund_fx_offsets,
                         fund_fx_codes, fund_cash, fund_creation_unit, fund_basis, fund_market,
                         slot_rows, slot_mid, slot_bits, min_coverage, halted_weight, fund_list,
                         out_value[rows], out_error[rows], out_ratio[rows], out_count[rows])
            near = round_sides_nb(out_value[rows], out_error[rows], decimals, out_rounded[rows],
                                  out_near_tie[rows])
            market_prices_nb(fund_market, prices, last_ts, out_market[rows])
            rows += 1
            next_boundary += interval_ns
            if near:
                break
            continue
        tick_code[i] = apply_tick_nb(tick_security[i], price, tick_bid[i], tick_ask[i],
                                      tick_status[i], ts, prices, bid, ask, last_ts, flags,
                                      pending_price, pending_count, spike_frac, spike_confirm)
        i += 1
    return i, rows, next_boundary
