"""Kernels of real-time mode: which funds a batch of ticks moved, and which are due.

Same contract as ``iopv.kernels``: arrays and scalars in, ``out`` arrays written, no allocation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from iopv.codes import ACCEPTED, STATUS


def slot_fund_index(fund_offsets: np.ndarray, holding_security: np.ndarray, holding_fx: np.ndarray,
                    fund_market: np.ndarray, book_size: int, one_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Security -> funds, as CSR over book slots: ``funds[offsets[s]:offsets[s+1]]`` are the funds
    whose value or published fields a change of slot ``s`` moves (holdings, FX rates, the fund's
    own market price). Built with array operations, once per basket."""
    n_funds = fund_offsets.size - 1
    fund_of = np.repeat(np.arange(n_funds, dtype=np.int64), np.diff(fund_offsets))
    own = fund_market >= 0
    slots = np.concatenate([holding_security.astype(np.int64), holding_fx.astype(np.int64),
                            fund_market[own].astype(np.int64)])
    funds = np.concatenate([fund_of, fund_of, np.flatnonzero(own).astype(np.int64)])
    keep = slots != one_index
    pairs = np.unique(slots[keep] * max(1, n_funds) + funds[keep])
    slot, fund = np.divmod(pairs, max(1, n_funds))
    offsets = np.zeros(book_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(slot, minlength=book_size), out=offsets[1:])
    return offsets, fund.astype(np.int64)


@njit(cache=True)
def mark_moved_nb(tick_security, tick_code, count, slot_offsets, slot_funds, dirty):
    """Mark dirty every fund of every slot that an accepted price (or a trading-status change)
    in this batch touched. Returns the number of funds newly marked."""
    marked = 0
    for i in range(count):
        code = tick_code[i]
        if code != ACCEPTED and code != STATUS:
            continue
        s = tick_security[i]
        for j in range(slot_offsets[s], slot_offsets[s + 1]):
            f = slot_funds[j]
            if dirty[f] == 0:
                dirty[f] = 1
                marked += 1
    return marked


@njit(cache=True)
def take_due_nb(dirty, last_publish_ns, now_ns, throttle_ns, out_funds):
    """Move the dirty funds whose throttle window has passed into ``out_funds`` (clearing their
    mark, stamping ``now_ns``). Returns how many; funds still inside their window stay dirty."""
    n = 0
    for f in range(dirty.size):
        if dirty[f] and now_ns - last_publish_ns[f] >= throttle_ns:
            dirty[f] = 0
            last_publish_ns[f] = now_ns
            out_funds[n] = f
            n += 1
    return n
