"""Methodology constants: book and fund flags, status codes, output rows, trading-status values.

Plain ints and bit flags in one module so numba folds them at compile time (as ``iopv.codes``
does for tick outcomes). docs/methodology.md defines what each means for a vendor.
"""

from __future__ import annotations

import numpy as np

#: An "always open" calendar makes each UTC day a session (for coverage and staleness).
DAY_NS = 86_400 * 1_000_000_000
#: Tick time of a book slot that has not ticked (iopv.book.NEVER).
NEVER_TS = -(2**63)

# --- book slot flags (PriceBook.flags) -------------------------------------------------------
SLOT_HALTED = 1 << 0  # the security is under a trading halt: its last price is kept

# --- trading status carried by a tick (decoded "status" field) ----------------------------------
STATUS_NONE = 0  # no status field
STATUS_HALT = 1  # "halted"
STATUS_RESUME = 2  # "trading"
STATUS_WORDS = {"halted": STATUS_HALT, "trading": STATUS_RESUME}

# --- per-fund quality flags (bit flags, published as "flags") ------------------------------------
STALE = 1 << 0  # at least one holding's price is older than engine.stale_after_s
HALTED = 1 << 1  # at least one holding is halted
LOW_COVERAGE = 1 << 2  # coverage below engine.min_coverage
FUND_HALTED = 1 << 3  # halted holdings weigh >= engine.halted_weight, or the fund's own ticker is halted
SIDE_FALLBACK = 1 << 4  # a bid or ask was missing for some holding; its value price stood in
FLAG_NAMES = ("stale", "halted", "low_coverage", "fund_halted", "side_fallback")

# --- fund status (published as "status") -----------------------------------------------------
STATUS_OK = 0
STATUS_DEGRADED = 1
STATUS_SUSPENDED = 2
STATUS_NAMES = ("ok", "degraded", "halted")

# --- rows of the valuation outputs --------------------------------------------------------------
SIDE_VALUE = 0  # last (or mid, per fund) prices
SIDE_BID = 1
SIDE_ASK = 2
N_SIDES = 3
SIDE_NAMES = ("iopv", "iopv_bid", "iopv_ask")

RATIO_COVERAGE = 0  # fraction of the holdings' gross value priced by a tick this session
RATIO_HALTED = 1  # fraction of the holdings' gross value that is halted
N_RATIOS = 2

COUNT_STALE = 0  # holdings with a stale price
COUNT_HALTED = 1  # holdings halted
COUNT_FLAGS = 2  # the fund's flag bits
COUNT_STATUS = 3  # STATUS_* code
N_COUNTS = 4

#: Price basis of a fund (PCF field "price_basis").
BASIS_LAST = 0
BASIS_MID = 1
BASES = {"last": BASIS_LAST, "mid": BASIS_MID}


def flag_names(flags: int) -> list[str]:
    """The names of the bits set in ``flags``."""
    return [name for bit, name in enumerate(FLAG_NAMES) if flags & (1 << bit)]


def status_names(codes: np.ndarray) -> list[str]:
    """Status names for an array of STATUS_* codes."""
    return [STATUS_NAMES[c] for c in codes.tolist()]
