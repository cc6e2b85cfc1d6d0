"""The packed holdings layout the valuation kernels stream: 8 bytes per holding at US scale.

Built from a universe's plain CSR arrays (``iopv.core.universe``) whenever a Universe is made; the plain
arrays stay for the modules that index them (real-time, replay's reference, the benches).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A share count is stored as float32 in the packed layout when float32 holds it exactly
#: (every whole count below 2**24 does).
SHARES_COMPACT = np.float32


@dataclass(frozen=True, eq=False)
class PackedHoldings:
    """The holdings as the valuation kernels stream them, in the same order as the plain arrays.

        holding[h]          book slot << shift | FX code (uint32; uint64 if a book is too large)
        shares[h]           float32 when every share count of the universe is exactly a float32,
                            else the float64 ``Universe.holding_shares`` itself (no copy)
        shift               bits of the FX code (0 when every holding is in its fund's currency)
        fx_slots[c]         book slot of FX code c (int64); code 0 is the 1.0 slot
        fund_fx_offsets[f] : fund_fx_offsets[f+1]   fund_fx_codes: the distinct FX codes of the
                            fund's holdings (a fund's quote flags need each FX slot once)

    Same holdings, same order, same values (a float32 that holds a share count exactly widens
    back to the same float64), so a kernel summing over this layout adds exactly the terms it
    would add over the plain arrays, in the same order: the sums are bit-identical."""

    holding: np.ndarray
    shares: np.ndarray
    shift: int
    fx_slots: np.ndarray
    fund_fx_offsets: np.ndarray
    fund_fx_codes: np.ndarray

    @property
    def bytes_per_holding(self) -> int:
        """What a valuation streams per holding (the kernels' offsets and tables aside)."""
        return self.holding.itemsize + self.shares.itemsize


def pack_holdings(fund_offsets: np.ndarray, holding_security: np.ndarray, holding_shares: np.ndarray,
                  holding_fx: np.ndarray, one_index: int) -> PackedHoldings:
    """The packed layout of CSR holdings (see ``PackedHoldings``); array operations only."""
    fx = np.asarray(holding_fx, dtype=np.int64)
    foreign = np.unique(fx[fx != one_index])
    fx_slots = np.concatenate([np.array([one_index], dtype=np.int64), foreign])
    code = np.searchsorted(foreign, fx) + 1  # foreign slots: 1, 2, ... in slot order
    code[fx == one_index] = 0
    shift = int(fx_slots.size - 1).bit_length()
    kind = packed_kind(one_index + 1, shift)
    holding = (np.asarray(holding_security).astype(kind) << kind(shift)) | code.astype(kind)
    with np.errstate(over="ignore"):  # a count beyond float32's range is simply not exact
        narrow = holding_shares.astype(SHARES_COMPACT)
    exact = np.array_equal(narrow.astype(np.float64), holding_shares)
    n_funds = fund_offsets.size - 1
    fund_of = np.repeat(np.arange(n_funds, dtype=np.int64), np.diff(fund_offsets))
    has_code = np.zeros((n_funds, fx_slots.size), dtype=np.bool_)
    has_code[fund_of, code] = True
    fund_fx_offsets = np.zeros(n_funds + 1, dtype=np.int64)
    np.cumsum(has_code.sum(axis=1), out=fund_fx_offsets[1:])
    return PackedHoldings(holding=holding, shares=narrow if exact else holding_shares, shift=shift,
                          fx_slots=fx_slots, fund_fx_offsets=fund_fx_offsets,
                          fund_fx_codes=np.nonzero(has_code)[1].astype(np.int64))


def packed_kind(book_size: int, shift: int) -> type:
    """uint32 when every book slot shifted left by ``shift`` bits, FX code included, fits in 32
    bits (2**28 slots with 16 FX codes), else uint64."""
    return np.uint32 if book_size << shift <= 2**32 else np.uint64
