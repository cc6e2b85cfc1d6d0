"""Every code the engine shares between kernels and Python, in one module with distinct names.

Plain ints and bit flags so numba folds them at compile time (hftbacktest's ``types.py`` style).
A kernel that reads one of these is recompiled when this file changes: a cached kernel is keyed on
every package source its module imports, this one included (``iopv.kernels.cache``). Families:

- tick outcomes (no prefix): ``ACCEPTED`` .. ``BAD_STATUS``, one small int per tick, counted by
  reason; ``REASONS[code]`` is the name used in logs, metrics and docs.
- ``TRADING_*``: the trading status a tick carries (its ``status`` field).
- ``BOOK_*``: bits of the price book's per-slot ``flags``.
- ``FLAG_*``: a fund's published quality flags; ``FUND_*``: a fund's published status.
- ``SIDE_*`` / ``RATIO_*`` / ``COUNT_*``: rows of the valuation outputs.
- ``SLOTBIT_*`` / ``TERM_*``: the per-slot facts and price columns the holding pass reads.
- ``ROW_*``: rows of the staged tick arrays the scanner and decoder write.
- ``BASIS_*``: a fund's price basis.

docs/methodology.md defines what each published value means for a vendor.
"""

from __future__ import annotations

# --- time and numbers ------------------------------------------------------------------------------
#: Nanoseconds in a UTC day (an "always open" calendar's session, the restart state's day).
DAY_NS = 86_400 * 1_000_000_000
#: Tick time of a book slot that has not ticked (iopv.engine.book.NEVER).
NEVER_TS = -(2**63)
#: The largest tick time accepted (int64 ns).
MAX_TS = 2**63 - 1
#: float64 unit roundoff.
UNIT_ROUNDOFF = 2.0**-53

# --- tick outcomes ---------------------------------------------------------------------------------
# ``ACCEPTED`` through ``OUT_OF_ORDER`` are well-formed ticks (they move the replay clock), and so
# are ``SPIKE_HELD``, ``HALTED`` and ``STATUS``; ``REJECTIONS`` lists the rest.
ACCEPTED = 0
UNKNOWN_SYMBOL = 1  # well-formed, symbol not in any basket: ignored
OUT_OF_ORDER = 2  # well-formed, older than the symbol's last accepted tick: dropped
MALFORMED_JSON = 3
NOT_AN_OBJECT = 4
MISSING_SYMBOL = 5
BAD_SYMBOL = 6
MISSING_PRICE = 7
BAD_PRICE_TYPE = 8
NON_FINITE_PRICE = 9
NON_POSITIVE_PRICE = 10
BAD_TS = 11
MISSING_TS = 12
OVERSIZE_PAYLOAD = 13
# Methodology outcomes (docs/methodology.md). Well-formed ticks the book deliberately did not take
# as a price (they move the replay clock like out_of_order), then two more rejections.
SPIKE_HELD = 14  # moved beyond engine.spike_pct from the last accepted price: held until confirmed
HALTED = 15  # a price for a halted security: the last price is kept
STATUS = 16  # a trading-status message (halted / trading) without a price: applied
BAD_QUOTE = 17  # bid or ask not a finite number > 0, or bid > ask
BAD_STATUS = 18  # status not "halted" or "trading"
# Event-time outcomes (docs/methodology.md "Event time"): the book of boundary B holds every tick
# stamped at or before B that arrived by B's cut (B + engine.watermark_ms).
LATE = 19  # stamped at or before a boundary already cut: applied, so it counts from the next boundary
FUTURE_TS = 20  # stamped more than engine.max_lead_ms beyond the open boundary: rejected
HELD_OVERFLOW = 21  # stamped after the open boundary, and the held set was full: dropped (book not whole)
#: Transient code of a tick stamped after the open boundary, waiting in the held set for its own
#: boundary; never counted (the tick is counted under its final outcome when it is released).
HELD = 99

REASONS = (
    "accepted",
    "unknown_symbol",
    "out_of_order",
    "malformed_json",
    "not_an_object",
    "missing_symbol",
    "bad_symbol",
    "missing_price",
    "bad_price_type",
    "non_finite_price",
    "non_positive_price",
    "bad_ts",
    "missing_ts",
    "oversize_payload",
    "spike_held",
    "halted",
    "status",
    "bad_quote",
    "bad_status",
    "late",
    "future_ts",
    "held_overflow",
)
#: Codes that are rejections (malformed input); every other code is a well-formed tick.
REJECTIONS = frozenset({MALFORMED_JSON, NOT_AN_OBJECT, MISSING_SYMBOL, BAD_SYMBOL, MISSING_PRICE,
                        BAD_PRICE_TYPE, NON_FINITE_PRICE, NON_POSITIVE_PRICE, BAD_TS, MISSING_TS,
                        OVERSIZE_PAYLOAD, BAD_QUOTE, BAD_STATUS, FUTURE_TS})
N_CODES = len(REASONS)

# --- the intake's event-time clock (``TickIntake.clock``, an int64 array the kernels update) -----
CLOCK_HORIZON = 0  # the open boundary: ticks stamped after it are held (MAX_TS: nothing is held)
CLOCK_LAST_CUT = 1  # the last boundary cut: an accepted tick stamped at or before it is late
CLOCK_MAX_LEAD = 2  # ns beyond the horizon a tick may be stamped (engine.max_lead_ms)
CLOCK_HELD = 3  # ticks in the held set
N_CLOCK = 4


def counts_by_reason(counts) -> dict[str, int]:
    """``{reason: count}`` for a counts array indexed by code (zeros left out)."""
    return {REASONS[code]: int(n) for code, n in enumerate(counts) if n}


# --- book slot flags (PriceBook.flags): BOOK_* -------------------------------------------------------
BOOK_HALTED = 1 << 0  # the security is under a trading halt: its last price is kept

# --- trading status carried by a tick (decoded "status" field) ----------------------------------
TRADING_NONE = 0  # no status field
TRADING_HALT = 1  # "halted"
TRADING_RESUME = 2  # "trading"
TRADING_WORDS = {"halted": TRADING_HALT, "trading": TRADING_RESUME}

# --- per-fund quality flags (bit flags, published as "flags") ------------------------------------
FLAG_STALE = 1 << 0  # at least one holding's price is older than engine.stale_after_s
FLAG_HALTED = 1 << 1  # at least one holding is halted
FLAG_LOW_COVERAGE = 1 << 2  # coverage below engine.min_coverage
FLAG_FUND_HALTED = 1 << 3  # halted holdings weigh >= engine.halted_weight, or the fund's own ticker is halted
FLAG_SIDE_FALLBACK = 1 << 4  # a bid or ask was missing for some holding; its value price stood in
FLAG_RECOVERING = 1 << 5  # the instance's book may miss ticks (not whole): docs/scaling.md
FLAG_NAMES = ("stale", "halted", "low_coverage", "fund_halted", "side_fallback", "recovering")

# --- fund status (published as "status") -----------------------------------------------------
FUND_OK = 0
FUND_DEGRADED = 1
FUND_SUSPENDED = 2
FUND_STATUS_NAMES = ("ok", "degraded", "halted")

# --- rows of the valuation outputs --------------------------------------------------------------
SIDE_VALUE = 0  # last (or mid, per fund) prices
SIDE_BID = 1
SIDE_ASK = 2
N_SIDES = 3

RATIO_COVERAGE = 0  # fraction of the holdings' gross value priced by a tick this session
RATIO_HALTED = 1  # fraction of the holdings' gross value that is halted
N_RATIOS = 2

COUNT_STALE = 0  # holdings with a stale price
COUNT_HALTED = 1  # holdings halted
COUNT_FLAGS = 2  # the fund's flag bits
COUNT_STATUS = 3  # FUND_* code
N_COUNTS = 4

#: Price basis of a fund (PCF field "price_basis").
BASIS_LAST = 0
BASIS_MID = 1
BASES = {"last": BASIS_LAST, "mid": BASIS_MID}


# --- per-slot facts of one valuation (``slot_terms_nb``'s ``slot_bits``) ---------------------------
SLOTBIT_TICKED = 1 << 0  # ticked in the current session
SLOTBIT_STALE = 1 << 1  # older than the stale age at this boundary
SLOTBIT_HALTED = 1 << 2  # under a trading halt
SLOTBIT_QUOTE_MISSING = 1 << 3  # bid or ask not known: its side falls back

#: Columns of ``slot_rows``: last price, bid side, ask side (``slot_mid`` holds the mid apart:
#: few funds price at mid, and a narrower row keeps the table in cache).
TERM_LAST = 0
TERM_BID = 1
TERM_ASK = 2
N_TERM = 3

# --- rows of the staged tick arrays (scanner, decoder, intake, tapes) ------------------------------
ROW_SLOT = 0  # book slot, -1 = unknown symbol or rejected
ROW_TS = 1
ROW_CODE = 2  # decoder verdict (tick outcome)
ROW_STATUS = 3  # TRADING_*
ROW_LINE = 4  # tapes only: 1-based line of the tick
N_INT_ROWS = 4
N_TAPE_INT_ROWS = 5
ROW_PRICE = 0
ROW_BID = 1
ROW_ASK = 2
N_FLOAT_ROWS = 3
