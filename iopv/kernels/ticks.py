"""Numba kernels: apply ticks to the price book, in event time.

Contract as in ``iopv.kernels.valuation``: arrays and scalars in, ``@njit(cache=True)``, ``_nb``
suffix, outputs written into arrays the caller allocated, no allocation per tick, no logging.

The book rules (docs/methodology.md) are written once, in ``apply_tick_nb``: the price verdict,
unknown symbols, the out-of-order rule, trading status, halts, the spike filter, quotes. The live
intake (``apply_book_nb``, ``release_held_nb``) and the tape replay (``iopv.kernels.valuation.
replay_nb``) both apply ticks through it.

Event time (docs/methodology.md "Event time"). The intake's ``clock`` (``ClockCell`` entries) holds
the *horizon*, the boundary not yet cut, and the last boundary cut. A tick stamped at or before
the horizon is applied at once; one stamped after it waits in the *held set* (the same columns
as the staging batch) until the horizon reaches its stamp, so a boundary's book never holds a
tick stamped after it; one stamped more than ``ClockCell.MAX_LEAD`` ns after the horizon is refused
(``TickOutcome.FUTURE_TS``), which bounds how long a held tick waits; one that finds the held set full is
dropped (``TickOutcome.HELD_OVERFLOW``: the book is then not whole). An accepted tick stamped at or before
the last cut is ``TickOutcome.LATE``: it counts from the next boundary. Each tick's outcome is counted in
``counts`` here, once, when it is final (a held tick when it is released).
"""

from __future__ import annotations

import math

from numba import njit

from iopv.core.constants import (
    BookBit,
    ClockCell,
    TickFloatRow,
    TickIntRow,
    TickOutcome,
    TradingStatus,
)


@njit(cache=True, inline="always")
def is_status_only_nb(price, status):
    """A trading-status message: a status and no price (the decoder's NaN)."""
    return status != 0 and math.isnan(price)


@njit(cache=True, inline="always")
def price_verdict_nb(price, status):
    """``TickOutcome.ACCEPTED``, or why a well-decoded tick's price value is refused: not finite, or not > 0.
    A status message has no price to judge. The book's rules (order, halts, spikes) come after."""
    if is_status_only_nb(price, status):
        return TickOutcome.ACCEPTED
    if not math.isfinite(price):
        return TickOutcome.NON_FINITE_PRICE
    if price <= 0.0:
        return TickOutcome.NON_POSITIVE_PRICE
    return TickOutcome.ACCEPTED


@njit(cache=True)
def price_verdicts_nb(tick_price, tick_status, tick_code):
    """``price_verdict_nb`` of every tick the decoder accepted, written over its code (replay's
    view of a tape before any tick is applied). Returns how many stay ``TickOutcome.ACCEPTED``."""
    accepted = 0
    for i in range(tick_code.size):
        if tick_code[i] == TickOutcome.ACCEPTED:
            tick_code[i] = price_verdict_nb(tick_price[i], tick_status[i])
            accepted += tick_code[i] == TickOutcome.ACCEPTED
    return accepted


@njit(cache=True, inline="always")
def apply_tick_nb(security, price, bid_, ask_, status, ts, prices, bid, ask, last_ts, flags,
                  pending_price, pending_count, spike_frac, spike_confirm):
    """Outcome of one decoded tick with quote, trading status and spike filter (see
    docs/methodology.md); writes the book when the price is accepted."""
    verdict = price_verdict_nb(price, status)
    if verdict != TickOutcome.ACCEPTED:
        return verdict
    if security < 0:
        return TickOutcome.UNKNOWN_SYMBOL
    if ts < last_ts[security]:
        return TickOutcome.OUT_OF_ORDER
    if status == TradingStatus.HALT:
        flags[security] |= BookBit.HALTED
    elif status == TradingStatus.RESUME:
        flags[security] &= ~BookBit.HALTED
    if is_status_only_nb(price, status):
        return TickOutcome.TRADING_STATUS
    if flags[security] & BookBit.HALTED:
        return TickOutcome.HALTED_PRICE
    if spike_frac > 0.0:
        last = prices[security]
        if math.isfinite(last) and abs(price - last) > spike_frac * last:
            level = pending_price[security]
            if pending_count[security] > 0 and abs(price - level) <= spike_frac * level:
                pending_count[security] += 1
            else:
                pending_count[security] = 1
            pending_price[security] = price
            if pending_count[security] < spike_confirm:
                return TickOutcome.SPIKE_HELD
        pending_count[security] = 0
    prices[security] = price
    last_ts[security] = ts
    if not math.isnan(bid_):
        bid[security] = bid_
    if not math.isnan(ask_):
        ask[security] = ask_
    return TickOutcome.ACCEPTED


@njit(cache=True)
def apply_book_nb(tick_security, tick_price, tick_bid, tick_ask, tick_status, tick_ts, tick_code,
                  count, prices, bid, ask, last_ts, flags, pending_price, pending_count,
                  spike_frac, spike_confirm, clock, held_ints, held_floats, counts):
    """Apply ``count`` staged ticks in arrival order, in event time (module docstring).

    ``tick_code`` holds the decoder's verdict and receives the final outcome (``TickOutcome.WAITING_FOR_BOUNDARY`` for a
    tick moved to the held set ``held_ints``/``held_floats``, laid out as the staging rows);
    every final outcome is added to ``counts``. Returns the number of ticks that changed a price
    (``TickOutcome.ACCEPTED`` and ``TickOutcome.LATE``)."""
    horizon = clock[ClockCell.HORIZON]
    last_cut = clock[ClockCell.LAST_CUT]
    max_lead = clock[ClockCell.MAX_LEAD]
    held = clock[ClockCell.HELD_TICKS]
    capacity = held_ints.shape[1]
    accepted = 0
    for i in range(count):
        code = tick_code[i]
        if code == TickOutcome.ACCEPTED:
            security = tick_security[i]
            price = tick_price[i]
            status = tick_status[i]
            ts = tick_ts[i]
            code = price_verdict_nb(price, status)
            if code == TickOutcome.ACCEPTED and security < 0:
                code = TickOutcome.UNKNOWN_SYMBOL
            if code == TickOutcome.ACCEPTED and ts > horizon:
                if ts - horizon > max_lead:
                    code = TickOutcome.FUTURE_TS
                elif held < capacity:
                    held_ints[TickIntRow.SLOT, held] = security
                    held_ints[TickIntRow.TS, held] = ts
                    held_ints[TickIntRow.TRADING, held] = status
                    held_ints[TickIntRow.CODE, held] = TickOutcome.ACCEPTED
                    held_floats[TickFloatRow.PRICE, held] = price
                    held_floats[TickFloatRow.BID, held] = tick_bid[i]
                    held_floats[TickFloatRow.ASK, held] = tick_ask[i]
                    held += 1
                    code = TickOutcome.WAITING_FOR_BOUNDARY
                else:
                    code = TickOutcome.HELD_OVERFLOW
            elif code == TickOutcome.ACCEPTED:
                code = apply_tick_nb(security, price, tick_bid[i], tick_ask[i], status, ts, prices,
                                     bid, ask, last_ts, flags, pending_price, pending_count,
                                     spike_frac, spike_confirm)
                if code == TickOutcome.ACCEPTED and ts <= last_cut:
                    code = TickOutcome.LATE
            tick_code[i] = code
        if code != TickOutcome.WAITING_FOR_BOUNDARY:
            counts[code] += 1
        if code == TickOutcome.ACCEPTED or code == TickOutcome.LATE:
            accepted += 1
    clock[ClockCell.HELD_TICKS] = held
    return accepted


@njit(cache=True)
def release_held_nb(held_ints, held_floats, clock, prices, bid, ask, last_ts, flags, pending_price,
                    pending_count, spike_frac, spike_confirm, out_slot, out_code, counts):
    """Apply, in arrival order, every held tick stamped at or before the horizon (never late: it
    arrived before its boundary's cut) and keep the others, in order, at the front of the held
    set. Writes each released tick's slot and outcome into ``out_slot``/``out_code`` and adds the
    outcome to ``counts``. Returns the number released."""
    horizon = clock[ClockCell.HORIZON]
    held = clock[ClockCell.HELD_TICKS]
    kept = 0
    released = 0
    for i in range(held):
        ts = held_ints[TickIntRow.TS, i]
        if ts > horizon:
            if kept != i:
                for row in range(held_ints.shape[0]):
                    held_ints[row, kept] = held_ints[row, i]
                for row in range(held_floats.shape[0]):
                    held_floats[row, kept] = held_floats[row, i]
            kept += 1
            continue
        security = held_ints[TickIntRow.SLOT, i]
        code = apply_tick_nb(security, held_floats[TickFloatRow.PRICE, i], held_floats[TickFloatRow.BID, i],
                             held_floats[TickFloatRow.ASK, i], held_ints[TickIntRow.TRADING, i], ts, prices, bid, ask,
                             last_ts, flags, pending_price, pending_count, spike_frac, spike_confirm)
        counts[code] += 1
        out_slot[released] = security
        out_code[released] = code
        released += 1
    clock[ClockCell.HELD_TICKS] = kept
    return released


@njit(cache=True)
def remap_held_nb(held_ints, held, slot_map):
    """After a basket swap re-laid the book: each held tick's slot through ``slot_map`` (old slot
    -> new slot, -1 when the symbol left the baskets: the tick is then an unknown symbol)."""
    for i in range(held):
        old = held_ints[TickIntRow.SLOT, i]
        held_ints[TickIntRow.SLOT, i] = slot_map[old] if 0 <= old < slot_map.size else -1


@njit(cache=True)
def bucket_order_key_nb(tick_ts, tick_code, interval_ns, out_key):
    """The boundary each well-formed tick belongs to (the first boundary >= its ts), for a
    stable sort of a tape into event-time order; a tick the decoder rejected keeps the key of
    the tick before it (it stays where it is). Returns True when the keys already ascend."""
    ascending = True
    previous = -(2**63)
    for i in range(tick_ts.size):
        if tick_code[i] == TickOutcome.ACCEPTED:
            ts = tick_ts[i]
            key = -(-ts // interval_ns) * interval_ns
            if key < previous:
                ascending = False
            else:
                previous = key
            out_key[i] = key
        else:
            out_key[i] = previous
    return ascending
