"""Tick outcome codes: one small int per tick, counted by reason.

Plain ints so numba folds them at compile time. ``ACCEPTED`` through ``OUT_OF_ORDER`` are
well-formed ticks (they move the replay clock), and so are ``SPIKE_HELD``, ``HALTED`` and
``STATUS``; ``REJECTIONS`` lists the rest. ``REASONS[code]`` is the name used in logs, metrics and docs.
"""

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
)
#: Codes that are rejections (malformed input); every other code is a well-formed tick.
REJECTIONS = frozenset({MALFORMED_JSON, NOT_AN_OBJECT, MISSING_SYMBOL, BAD_SYMBOL, MISSING_PRICE,
                        BAD_PRICE_TYPE, NON_FINITE_PRICE, NON_POSITIVE_PRICE, BAD_TS, MISSING_TS,
                        OVERSIZE_PAYLOAD, BAD_QUOTE, BAD_STATUS})
N_CODES = len(REASONS)


def counts_by_reason(counts) -> dict[str, int]:
    """``{reason: count}`` for a counts array indexed by code (zeros left out)."""
    return {REASONS[code]: int(n) for code, n in enumerate(counts) if n}
