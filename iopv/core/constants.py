"""Every code the engine shares between kernels and Python, scoped by family.

Each family is one frozen namedtuple of plain ints (vectorbt's ``enums.py`` style): a kernel
reads ``TickOutcome.LATE`` or ``SlotBit.HALTED`` and numba folds it to the constant at compile
time, exactly as it folds a module-level int (tests/unit/test_constants.py compares the machine
code). The family says which array or field a code belongs to, so one word never names two
things: ``TickOutcome.HALTED_PRICE`` (a tick's outcome), ``TradingStatus.HALT`` (a tick's status
field), ``BookBit.HALTED`` (the price book), ``SlotBit.HALTED`` (one valuation's per-slot facts),
``FundFlag.HOLDING_HALTED`` and ``FundFlag.FUND_HALTED`` (published flags),
``FundStatus.HALTED`` (the published status) and ``CountRow.HALTED_HOLDINGS`` (a valuation
output row). A kernel that reads one of these is recompiled when this file changes: a cached
kernel is keyed on every package source its module imports, this one included
(``iopv.kernels.cache``). Families:

- ``TickOutcome``: one small int per tick, counted by reason; ``REASONS[code]`` is the word used in
  logs, metrics and docs (the published words never change with the code names).
- ``TradingStatus``: the trading status a tick carries (its ``status`` field).
- ``BookBit``: bits of the price book's per-slot ``flags``.
- ``FundFlag``: a fund's published quality flags; ``FundStatus``: a fund's published status.
- ``Side`` / ``RatioRow`` / ``CountRow``: rows of the valuation outputs.
- ``SlotBit`` / ``TermCol``: the per-slot facts and price columns the holding pass reads.
- ``TickIntRow`` / ``TickFloatRow``: rows of the staged tick arrays (scanner, decoder, intake, tapes).
- ``ClockCell``: cells of the intake's event-time clock array.
- ``PriceBasis``: a fund's price basis.
- ``*_WORDS``: the published (or parsed) word of each code of a family.

docs/methodology.md defines what each published value means for a vendor.
"""

from __future__ import annotations

from typing import NamedTuple

# --- time and numbers ------------------------------------------------------------------------------
#: Nanoseconds in a UTC day (an "always open" calendar's session, the restart state's day).
DAY_NS = 86_400 * 1_000_000_000
#: Tick time of a book slot that has not ticked (iopv.engine.book.NEVER).
NEVER_TS = -(2**63)
#: The largest tick time accepted (int64 ns).
MAX_TS = 2**63 - 1
#: Tick time of a book slot whose price is fixed (a holding ``"fixed": true``): newer than any
#: tick, so never stale and never moved (iopv.engine.book).
FIXED_TS = MAX_TS
#: float64 unit roundoff.
UNIT_ROUNDOFF = 2.0**-53


# --- tick outcomes ---------------------------------------------------------------------------------
class TickOutcomeT(NamedTuple):
    """A tick's outcome. ``ACCEPTED`` through ``OUT_OF_ORDER`` are well-formed ticks (they move the
    replay clock), and so are ``SPIKE_HELD``, ``HALTED_PRICE``, ``TRADING_STATUS`` and ``LATE``;
    ``REJECTIONS`` lists the rest."""

    ACCEPTED: int = 0
    UNKNOWN_SYMBOL: int = 1  # well-formed, symbol not in any basket: ignored
    OUT_OF_ORDER: int = 2  # well-formed, older than the symbol's last accepted tick: dropped
    MALFORMED_JSON: int = 3
    NOT_AN_OBJECT: int = 4
    MISSING_SYMBOL: int = 5
    BAD_SYMBOL: int = 6
    MISSING_PRICE: int = 7
    BAD_PRICE_TYPE: int = 8
    NON_FINITE_PRICE: int = 9
    NON_POSITIVE_PRICE: int = 10
    BAD_TS: int = 11
    MISSING_TS: int = 12
    OVERSIZE_PAYLOAD: int = 13
    # Methodology outcomes (docs/methodology.md). Well-formed ticks the book deliberately did not
    # take as a price (they move the replay clock like out_of_order), then two more rejections.
    SPIKE_HELD: int = 14  # beyond engine.spike_pct from the last accepted price: held until confirmed
    HALTED_PRICE: int = 15  # "halted": a price for a halted security, the last price is kept
    TRADING_STATUS: int = 16  # "status": a trading-status message (halted / trading) without a price
    BAD_QUOTE: int = 17  # bid or ask not a finite number > 0, or bid > ask
    BAD_TRADING_STATUS: int = 18  # "bad_status": status not "halted" or "trading"
    # Event-time outcomes (docs/methodology.md "Event time"): the book of boundary B holds every
    # tick stamped at or before B that arrived by B's cut (B + engine.watermark_ms).
    LATE: int = 19  # stamped at or before a boundary already cut: applied, counts from the next boundary
    FUTURE_TS: int = 20  # stamped more than engine.max_lead_ms beyond the open boundary: rejected
    HELD_OVERFLOW: int = 21  # stamped after the open boundary, and the held set was full: dropped
    #: Transient code of a tick stamped after the open boundary, waiting in the held set for its
    #: own boundary; never counted (the tick is counted under its final outcome when released).
    WAITING_FOR_BOUNDARY: int = 99


TickOutcome = TickOutcomeT()

#: The word of each counted outcome (index = code), as logs, metrics and docs spell it.
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
REJECTIONS = frozenset({
    TickOutcome.MALFORMED_JSON, TickOutcome.NOT_AN_OBJECT, TickOutcome.MISSING_SYMBOL,
    TickOutcome.BAD_SYMBOL, TickOutcome.MISSING_PRICE, TickOutcome.BAD_PRICE_TYPE,
    TickOutcome.NON_FINITE_PRICE, TickOutcome.NON_POSITIVE_PRICE, TickOutcome.BAD_TS,
    TickOutcome.MISSING_TS, TickOutcome.OVERSIZE_PAYLOAD, TickOutcome.BAD_QUOTE,
    TickOutcome.BAD_TRADING_STATUS, TickOutcome.FUTURE_TS})
#: Counted outcomes (the length of a counts array).
N_OUTCOMES = len(REASONS)


def counts_by_reason(counts) -> dict[str, int]:
    """``{reason: count}`` for a counts array indexed by code (zeros left out)."""
    return {REASONS[code]: int(n) for code, n in enumerate(counts) if n}


# --- the intake's event-time clock (``TickIntake.clock``, an int64 array the kernels update) -----
class ClockCellT(NamedTuple):
    HORIZON: int = 0  # the open boundary: ticks stamped after it are held (MAX_TS: nothing is held)
    LAST_CUT: int = 1  # the last boundary cut: an accepted tick stamped at or before it is late
    MAX_LEAD: int = 2  # ns beyond the horizon a tick may be stamped (engine.max_lead_ms)
    HELD_TICKS: int = 3  # ticks in the held set


ClockCell = ClockCellT()
N_CLOCK = len(ClockCell)


# --- book slot flags (PriceBook.flags) -------------------------------------------------------------
class BookBitT(NamedTuple):
    HALTED: int = 1 << 0  # the security is under a trading halt: its last price is kept


BookBit = BookBitT()


# --- trading status carried by a tick (its decoded "status" field) ---------------------------------
class TradingStatusT(NamedTuple):
    NONE: int = 0  # no status field
    HALT: int = 1  # "halted"
    RESUME: int = 2  # "trading"


TradingStatus = TradingStatusT()
TRADING_STATUS_WORDS = {"halted": TradingStatus.HALT, "trading": TradingStatus.RESUME}


# --- per-fund quality flags (bit flags, published as "flags") --------------------------------------
class FundFlagT(NamedTuple):
    STALE: int = 1 << 0  # "stale": a holding's price is older than engine.stale_after_s
    HOLDING_HALTED: int = 1 << 1  # "halted": at least one holding is halted
    LOW_COVERAGE: int = 1 << 2  # "low_coverage": coverage below engine.min_coverage
    FUND_HALTED: int = 1 << 3  # "fund_halted": halted weight >= engine.halted_weight, or the fund's ticker halted
    SIDE_FALLBACK: int = 1 << 4  # "side_fallback": a bid or ask was missing; the value price stood in
    RECOVERING: int = 1 << 5  # "recovering": the instance's book may miss ticks (not whole), docs/scaling.md


FundFlag = FundFlagT()
#: The published word of each flag bit, lowest bit first.
FUND_FLAG_WORDS = ("stale", "halted", "low_coverage", "fund_halted", "side_fallback", "recovering")


# --- fund status (published as "status") -----------------------------------------------------------
class FundStatusT(NamedTuple):
    OK: int = 0  # "ok"
    DEGRADED: int = 1  # "degraded"
    HALTED: int = 2  # "halted": FundFlag.FUND_HALTED is set (published "halted", hence the name)


FundStatus = FundStatusT()
#: The published word of each status (index = code).
FUND_STATUS_WORDS = ("ok", "degraded", "halted")


# --- rows of the valuation outputs -----------------------------------------------------------------
class SideT(NamedTuple):
    VALUE: int = 0  # last (or mid, per fund) prices
    BID: int = 1
    ASK: int = 2


Side = SideT()
N_SIDES = len(Side)


class RatioRowT(NamedTuple):
    COVERAGE: int = 0  # fraction of the holdings' gross value priced by a tick this session
    HALTED_WEIGHT: int = 1  # fraction of the holdings' gross value that is halted


RatioRow = RatioRowT()
N_RATIOS = len(RatioRow)


class CountRowT(NamedTuple):
    STALE_HOLDINGS: int = 0  # holdings with a stale price
    HALTED_HOLDINGS: int = 1  # holdings halted
    FUND_FLAGS: int = 2  # the fund's FundFlag bits
    FUND_STATUS: int = 3  # the fund's FundStatus code


CountRow = CountRowT()
N_COUNTS = len(CountRow)


# --- price basis of a fund (PCF field "price_basis") -----------------------------------------------
class PriceBasisT(NamedTuple):
    LAST: int = 0
    MID: int = 1


PriceBasis = PriceBasisT()
PRICE_BASIS_WORDS = {"last": PriceBasis.LAST, "mid": PriceBasis.MID}


# --- per-slot facts of one valuation (``slot_terms_nb``'s ``slot_bits``) ---------------------------
class SlotBitT(NamedTuple):
    TICKED: int = 1 << 0  # ticked in the current session
    STALE: int = 1 << 1  # older than the stale age at this boundary
    HALTED: int = 1 << 2  # under a trading halt
    QUOTE_MISSING: int = 1 << 3  # bid or ask not known: its side falls back


SlotBit = SlotBitT()


class TermColT(NamedTuple):
    """Columns of ``slot_rows``: last price, bid side, ask side (``slot_mid`` holds the mid apart:
    few funds price at mid, and a narrower row keeps the table in cache)."""

    LAST: int = 0
    BID: int = 1
    ASK: int = 2


TermCol = TermColT()
N_TERM_COLS = len(TermCol)


# --- rows of the staged tick arrays (scanner, decoder, intake, tapes) ------------------------------
class TickIntRowT(NamedTuple):
    """Rows of the staged ticks' int64 array."""

    SLOT: int = 0  # book slot, -1 = unknown symbol or rejected
    TS: int = 1
    CODE: int = 2  # decoder verdict (TickOutcome)
    TRADING: int = 3  # TradingStatus
    LINE: int = 4  # tapes only: 1-based line of the tick


TickIntRow = TickIntRowT()
N_INT_ROWS = 4  # live staging: every row but LINE
N_TAPE_INT_ROWS = len(TickIntRow)


class TickFloatRowT(NamedTuple):
    """Rows of the staged ticks' float64 array."""

    PRICE: int = 0
    BID: int = 1
    ASK: int = 2


TickFloatRow = TickFloatRowT()
N_FLOAT_ROWS = len(TickFloatRow)
