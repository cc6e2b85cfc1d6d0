"""Compiled tick scanner: raw payload bytes -> staged tick columns, no Python object per tick.

``scan_payload_nb`` reads one MQTT payload (a tick object, or an array of them) and
``scan_tape_nb`` a whole tape (JSON lines), straight from the bytes, and write each tick's book
slot, price, bid, ask, status, ts and decoder verdict (``iopv.core.constants``) into arrays the caller
allocated -- exactly the values ``iopv.engine.codec.decode_tick_full`` returns for the same tick.

What they read (the strict common form):
- objects whose keys are among ``symbol``, ``price``, ``ts``, ``bid``, ``ask``, ``size`` and
  ``status``, each written without escapes; a repeated key: the last one wins (as orjson and
  the standard library do); ``size`` is checked for JSON syntax only and ignored, as in Python;
- values that are strings of printable ASCII without escapes, ``null``, ``true``, ``false`` or
  numbers in plain JSON syntax (no nested arrays or objects);
- in an array, a string, number or literal instead of an object (``not_an_object``);
- JSON whitespace (space, tab, CR, LF) anywhere JSON allows it (in a tape: space and tab).

Numbers are parsed exactly: an integer mantissa of at most 2**53 (leading zeros of a fraction
are not digits) times 10**e with |e| <= 22 is one IEEE multiply or divide of two exact doubles,
so correctly rounded (Clinger's fast path) -- the double orjson and ``float()`` produce. A price,
bid or ask outside that (more digits, larger exponents, ``1e400``), a negative zero, a symbol
the table cannot hold (over 32 bytes), and anything else the scanner does not read (malformed
JSON, escapes, other keys, nested values, non-ASCII text, ``NaN``, a BOM) makes it give up on
the whole message -- or, in a tape, on that line -- and the caller decodes it in Python as
before. So the outcome of every input is Python's; the scanner only gets there sooner. A ``ts``
needs no fallback: an integer literal in 0..2**63-1 is a valid ts and every other number is
``bad_ts``, whatever its digits.

Symbols are looked up in a ``SymbolTable`` built once per book index (``symbol_table`` caches
it by the index object; a basket reload gives the book a new one): open addressing, linear
probing, at most half full, one row per name holding its bytes as int64 words and
``slot << 8 | length``, so a lookup is one row read and a few word compares.

Contract (as ``iopv.kernels.valuation``): arrays and scalars in, kernels write into arrays the caller
allocated and return a count; nothing is allocated, and the kernels are compiled without NRT
(see ``_kernel``), so an allocation would not even compile. Staged ticks are columns of two 2-D
arrays: ``ints[ROW_SLOT | ROW_TS | ROW_CODE | ROW_STATUS (| ROW_LINE)]`` and
``floats[ROW_PRICE | ROW_BID | ROW_ASK]``, column k = tick k. Helpers are inlined into the two
kernels (``_inline``); one object's fields travel as a tuple, never through an array.

The lexer, the symbol table and the kernels share one module, longer than the house few hundred
lines: they are one unit. (Splitting it would no longer leave stale kernels in numba's cache: the
cache follows every package module a kernel module imports, ``iopv.kernels.cache``.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from iopv.core.constants import (
    ACCEPTED,
    BAD_PRICE_TYPE,
    BAD_QUOTE,
    BAD_STATUS,
    BAD_SYMBOL,
    BAD_TS,
    MAX_TS,
    MISSING_PRICE,
    MISSING_SYMBOL,
    MISSING_TS,
    NOT_AN_OBJECT,
    ROW_ASK,
    ROW_BID,
    ROW_CODE,
    ROW_LINE,
    ROW_PRICE,
    ROW_SLOT,
    ROW_STATUS,
    ROW_TS,
    TRADING_HALT,
    TRADING_NONE,
    TRADING_RESUME,
)


#: The scanner's kernels are compiled without numba's reference counting (NRT, the ``_nrt``
#: option): they allocate nothing, and with NRT every helper that takes the payload or an array
#: pays atomic reference-count updates on each call, roughly 30% of the scan time when measured
#: (numba 0.68). Without NRT an allocation fails to compile, which keeps them honest.
def _options_without_nrt() -> dict:
    """``{"_nrt": False}`` when this numba accepts the (private) option, else ``{}``: a numba
    that dropped it still compiles the scanner, reference counting included."""
    try:
        njit(_nrt=False)(lambda: 0)()
        return {"_nrt": False}
    except Exception:  # noqa: BLE001 -- any rejection of the option means "not supported"
        return {}


_NO_NRT = _options_without_nrt()
_kernel = njit(cache=True, **_NO_NRT)
#: Small helpers are inlined by numba itself: a tick costs a dozen of their calls, and numba-level
#: inlining measured about a third faster than leaving them to LLVM. The object and number
#: parsers stay ordinary calls: inlined at every call site they cost ~6x the compile time
#: (25 s cold) for no measurable gain.
_inline = njit(cache=True, inline="always", **_NO_NRT)


# --- scan_payload_nb: its default_slot argument and its return value ----------------------------
NO_TOPIC_SYMBOL = -2  # default_slot when the topic names no symbol (-1: names an unknown one)
TOPIC_UNRESOLVED = -3  # default_slot not worked out yet: a tick without symbol asks for it
SCAN_FALLBACK = -1  # not all in the strict form, nothing written counts: decode it in Python
SCAN_NEED_TOPIC = -2  # a tick has no symbol: call again with the topic's default_slot
# A return value r >= 0: done, r ticks written. r <= -3: the limit was reached and the rest of
# the array is valid; resume from byte offset -3 - r once there is room (``resume_offset``).

# --- scan_tape_nb: its result array -------------------------------------------------------------
R_STATUS = 0  # SCAN_*
R_RESUME = 1  # byte offset to call again from (SCAN_MORE_*)
R_LINE = 2  # lines consumed before R_RESUME
R_TICKS = 3  # ticks written in total
R_FALLBACKS = 4  # fallback lines recorded in total
N_RESULT = 5

SCAN_DONE = 0  # every line read
SCAN_MORE_TICKS = 1  # out of tick columns: grow them and resume at R_RESUME
SCAN_MORE_FALLBACKS = 2  # out of fallback rows: grow them and resume

# Columns of a tape's fallback rows: the line's byte range, its number, the tick position where
# its ticks (decoded in Python) go.
FB_START = 0
FB_END = 1
FB_LINE = 2
FB_POSITION = 3
N_FB = 4

# --- value kinds of an object's fields -----------------------------------------------------------
_ABSENT = 0
_NULL = 1
_STRING = 2
_NUMBER = 3
_BOOL = 4

_KEY_SYMBOL = 0
_KEY_PRICE = 1
_KEY_TS = 2
_KEY_BID = 3
_KEY_ASK = 4
_KEY_SIZE = 5
_KEY_STATUS = 6

_MAX_EXACT = 2**53
_NAN = np.nan
#: 10**0 .. 10**22, every one exact in binary64.
_POW10 = np.array([float(10**k) for k in range(23)])
#: Longest symbol the table holds (NAME_PATTERN allows 32 characters); a longer one falls back.
MAX_SYMBOL_BYTES = 32
# Odd multipliers of the symbol hash (int64 arithmetic wraps).
_MIX = (-7046029254386353131, -4658895280553007687, 7640891576956012809, -3335678366873096957)


# --- lexing ------------------------------------------------------------------------------------

@_inline
def _skip_ws_nb(buf, i, end, newlines):
    """First index >= i that is not JSON whitespace (CR and LF count only when ``newlines``)."""
    while i < end:
        c = buf[i]
        if c == 32 or c == 9:
            i += 1
        elif newlines and (c == 10 or c == 13):
            i += 1
        else:
            break
    return i


@_inline
def _plain_string_nb(buf, i, end):
    """Index after the closing quote of a string whose text starts at i, or -1 unless every
    byte is printable ASCII other than a backslash."""
    while i < end:
        c = buf[i]
        if c == 34:
            return i + 1
        if c < 32 or c > 126 or c == 92:
            return -1
        i += 1
    return -1


@_inline
def _key_nb(buf, i, length):
    """The _KEY_* of the key text buf[i:i+length], or -1 for any other key."""
    if length == 2:
        if buf[i] == 116 and buf[i + 1] == 115:  # ts
            return _KEY_TS
    elif length == 5:
        if (buf[i] == 112 and buf[i + 1] == 114 and buf[i + 2] == 105 and buf[i + 3] == 99
                and buf[i + 4] == 101):  # price
            return _KEY_PRICE
    elif length == 6:
        if buf[i] == 115:
            if (buf[i + 1] == 121 and buf[i + 2] == 109 and buf[i + 3] == 98 and buf[i + 4] == 111
                    and buf[i + 5] == 108):  # symbol
                return _KEY_SYMBOL
            if (buf[i + 1] == 116 and buf[i + 2] == 97 and buf[i + 3] == 116 and buf[i + 4] == 117
                    and buf[i + 5] == 115):  # status
                return _KEY_STATUS
    elif length == 3:
        if buf[i] == 98 and buf[i + 1] == 105 and buf[i + 2] == 100:  # bid
            return _KEY_BID
        if buf[i] == 97 and buf[i + 1] == 115 and buf[i + 2] == 107:  # ask
            return _KEY_ASK
    elif length == 4:
        if buf[i] == 115 and buf[i + 1] == 105 and buf[i + 2] == 122 and buf[i + 3] == 101:  # size
            return _KEY_SIZE
    return -1


@_inline
def _status_word_nb(buf, i, length):
    """STATUS_* of a status string (``TRADING_WORDS``), -1 for any other word."""
    if length == 6:
        if (buf[i] == 104 and buf[i + 1] == 97 and buf[i + 2] == 108 and buf[i + 3] == 116
                and buf[i + 4] == 101 and buf[i + 5] == 100):  # halted
            return TRADING_HALT
    elif length == 7:
        if (buf[i] == 116 and buf[i + 1] == 114 and buf[i + 2] == 97 and buf[i + 3] == 100
                and buf[i + 4] == 105 and buf[i + 5] == 110 and buf[i + 6] == 103):  # trading
            return TRADING_RESUME
    return -1


@_inline
def _literal_nb(buf, i, end):
    """(index after, kind) of ``null``/``true``/``false`` at i; index -1 for anything else."""
    c = buf[i]
    if c == 110:
        if i + 4 <= end and buf[i + 1] == 117 and buf[i + 2] == 108 and buf[i + 3] == 108:
            return i + 4, _NULL
    elif c == 116:
        if i + 4 <= end and buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101:
            return i + 4, _BOOL
    elif c == 102:
        if (i + 5 <= end and buf[i + 1] == 97 and buf[i + 2] == 108 and buf[i + 3] == 115
                and buf[i + 4] == 101):
            return i + 5, _BOOL
    return -1, _NULL


@_kernel
def _number_nb(buf, i, end):
    """A JSON number at i: (index after or -1, integer literal?, exact?, value, ts value).

    -1 when the text is not a JSON number, or is a negative zero (left to Python). ``exact``:
    ``value`` is the correctly rounded double (Clinger's fast path); ``ts value`` >= 0 is the
    literal's value when it is an integer literal in 0..2**63-1, else -1. The caller checks
    what follows the number (a digit after a leading 0, a second '.', ... are not JSON)."""
    negative = False
    if buf[i] == 45:
        negative = True
        i += 1
        if i >= end:
            return -1, False, False, 0.0, -1
    c = buf[i]
    w = 0  # the significant digits, while they fit below 2**63
    digits = 0
    big = False  # more digits than w holds
    if c == 48:
        i += 1
    elif 49 <= c <= 57:
        while i < end:
            c = buf[i]
            if c < 48 or c > 57:
                break
            d = c - 48
            if not big and (digits < 18 or (digits == 18 and w <= (MAX_TS - d) // 10)):
                w = w * 10 + d
                digits += 1
            else:
                big = True
            i += 1
    else:
        return -1, False, False, 0.0, -1
    integer = True
    exponent = 0
    if i < end and buf[i] == 46:
        integer = False
        i += 1
        if i >= end or buf[i] < 48 or buf[i] > 57:
            return -1, False, False, 0.0, -1
        while i < end:
            c = buf[i]
            if c < 48 or c > 57:
                break
            d = c - 48
            if not big:
                if w == 0 and d == 0:
                    exponent -= 1  # a leading zero of the fraction: not a significant digit
                elif digits < 18 or (digits == 18 and w <= (MAX_TS - d) // 10):
                    w = w * 10 + d
                    digits += 1
                    exponent -= 1
                else:
                    big = True
            i += 1
    if i < end and (buf[i] == 101 or buf[i] == 69):
        integer = False
        i += 1
        negative_exponent = False
        if i < end and (buf[i] == 43 or buf[i] == 45):
            negative_exponent = buf[i] == 45
            i += 1
        if i >= end or buf[i] < 48 or buf[i] > 57:
            return -1, False, False, 0.0, -1
        e = 0
        while i < end:
            c = buf[i]
            if c < 48 or c > 57:
                break
            if e < 100_000:
                e = e * 10 + (c - 48)
            i += 1
        exponent += -e if negative_exponent else e
    if negative and w == 0 and not big:
        return -1, False, False, 0.0, -1
    exact = False
    value = 0.0
    if not big:
        if w == 0:
            exact = True
        elif w <= _MAX_EXACT and -22 <= exponent <= 22:
            exact = True
            if exponent >= 0:
                value = float(w) * _POW10[exponent]
            else:
                value = float(w) / _POW10[-exponent]
        if negative:
            value = -value
    ts = w if integer and not negative and not big else -1
    return i, integer, exact, value, ts


@_kernel
def _scalar_nb(buf, i, end):
    """Index after the string, number or literal at i; -1 for anything else."""
    c = buf[i]
    if c == 34:
        return _plain_string_nb(buf, i + 1, end)
    if c == 45 or 48 <= c <= 57:
        return _number_nb(buf, i, end)[0]
    return _literal_nb(buf, i, end)[0]


# --- symbol table ------------------------------------------------------------------------------

@_inline
def _symbol_nb(buf, start, length):
    """(bucket hash, words): the bytes of a symbol of at most 32 bytes as four little-endian
    int64 words, zero-padded, and their hash."""
    w0 = 0
    w1 = 0
    w2 = 0
    w3 = 0
    for p in range(length):
        c = np.int64(buf[start + p]) << ((p & 7) * 8)
        if p < 8:
            w0 |= c
        elif p < 16:
            w1 |= c
        elif p < 24:
            w2 |= c
        else:
            w3 |= c
    return _mix_nb(w0, w1, w2, w3, length), w0, w1, w2, w3


@_inline
def _mix_nb(w0, w1, w2, w3, length):
    """The hash of a symbol's words; bits 32.. pick its bucket."""
    h = w0 * _MIX[0] ^ w1 * _MIX[1] ^ w2 * _MIX[2] ^ w3 * _MIX[3] ^ length
    h ^= h >> 29
    return h * _MIX[0]


@_kernel
def build_table_nb(words, lengths, slots, table):
    """Insert names (``words[e]``: their bytes as int64 words; ``lengths``, book ``slots``)
    into ``table`` (power-of-two rows of ``width`` words + one ``slot << 8 | length`` column,
    -1 = empty) by linear probing."""
    mask = table.shape[0] - 1
    width = table.shape[1] - 1
    for e in range(lengths.size):
        w0 = words[e, 0]
        w1 = words[e, 1] if width > 1 else 0
        w2 = words[e, 2] if width > 2 else 0
        w3 = words[e, 3] if width > 3 else 0
        k = (_mix_nb(w0, w1, w2, w3, lengths[e]) >> 32) & mask
        while table[k, width] >= 0:
            k = (k + 1) & mask
        for q in range(width):
            table[k, q] = words[e, q]
        table[k, width] = (slots[e] << 8) | lengths[e]


@_inline
def _lookup_nb(buf, start, length, table):
    """Book slot of the symbol buf[start:start+length] (1..32 bytes); -1 when unknown."""
    width = table.shape[1] - 1
    if length > 8 * width:
        return -1  # longer than every name in the table
    h, w0, w1, w2, w3 = _symbol_nb(buf, start, length)
    mask = table.shape[0] - 1
    k = (h >> 32) & mask
    while True:
        meta = table[k, width]
        if meta < 0:
            return -1
        if (meta & 255) == length and table[k, 0] == w0 and (
                width < 2 or (table[k, 1] == w1 and (
                    width < 3 or (table[k, 2] == w2 and (width < 4 or table[k, 3] == w3))))):
            return meta >> 8
        k = (k + 1) & mask


@_kernel
def lookup_name_nb(name, table):
    """Book slot of the symbol ``name`` (bytes, 1..32); -1 when the table does not hold it."""
    return _lookup_nb(name, 0, len(name), table)


class SymbolTable:
    """The compiled symbol -> book slot lookup of one book index (built once per layout).

    Open addressing, linear probing, at most half full; a row holds a name's bytes as int64
    words and ``slot << 8 | length``, so a lookup reads one row (one cache line or two) and
    compares words, not bytes. Names that are not ASCII or longer than ``MAX_SYMBOL_BYTES``
    are left out: the scanner hands such symbols to Python."""

    def __init__(self, index: dict[str, int]):
        self.index = index  # the dict it was built from (identity tells a stale table)
        self.entries = len(index)
        names = list(index)
        slots = np.fromiter(index.values(), dtype=np.int64, count=len(names))
        if slots.size and not (0 <= slots.min() and slots.max() < 2**55):
            raise ValueError("a book index maps symbols to slots 0 .. 2**55 - 1")
        joined = "".join(names)
        if joined.isascii() and "\0" not in joined:  # every book: one vectorized pass
            encoded = np.array(names, dtype=bytes)  # fixed width, NUL-padded
            lengths = np.char.str_len(encoded).astype(np.int64)
            keep = (lengths > 0) & (lengths <= MAX_SYMBOL_BYTES)
            if not keep.all():
                encoded, lengths, slots = encoded[keep], lengths[keep], slots[keep]
        else:
            keys = [k for k, name in enumerate(names)
                    if name.isascii() and 0 < len(name) <= MAX_SYMBOL_BYTES]
            encoded = np.array([names[k].encode("ascii") for k in keys], dtype=bytes)
            lengths = np.array([len(names[k]) for k in keys], dtype=np.int64)
            slots = slots[keys]
        width = (int(lengths.max(initial=1)) + 7) // 8
        words = encoded.astype(f"S{8 * width}").view("<i8").reshape(lengths.size, width)
        size = 8
        while size < 2 * lengths.size:
            size *= 2
        self.table = np.full((size, width + 1), -1, dtype=np.int64)
        build_table_nb(np.ascontiguousarray(words, dtype=np.int64), lengths, slots, self.table)

    def slot_of(self, name: str) -> int:
        """Book slot of ``name`` as the scanner finds it (-1: unknown, or left out)."""
        if not (name.isascii() and 0 < len(name) <= MAX_SYMBOL_BYTES):
            return -1
        return int(lookup_name_nb(name.encode("ascii"), self.table))


_TABLES: list[SymbolTable] = []  # the last few built, newest first


def symbol_table(index: dict[str, int]) -> SymbolTable:
    """The ``SymbolTable`` of ``index``, built once per index object: a ``PriceBook`` gets a new
    index dict when a basket reload re-lays it and never edits one in place."""
    for table in _TABLES:
        if table.index is index and table.entries == len(index):
            return table
    table = SymbolTable(index)
    _TABLES.insert(0, table)
    del _TABLES[4:]
    return table


# --- one tick object -------------------------------------------------------------------------

@_kernel
def _object_nb(buf, i, end, newlines, has_default, has_recv_ts, recv_ts):
    """The tick object whose '{' is just before i: (index after its '}' or -1 to fall back,
    code, price, bid, ask, status, ts, symbol start, symbol length) -- ``decode_tick_full``'s
    verdict and values, its checks in its order. Symbol start -1: the object has no ``symbol``
    (the tick takes the topic's, when there is one)."""
    sym_kind = _ABSENT
    sym_start = 0
    sym_length = 0
    status_kind = _ABSENT
    status_word = TRADING_NONE
    price_kind = _ABSENT
    price_exact = False
    price_value = 0.0
    ts_kind = _ABSENT
    ts_value = -1
    bid_kind = _ABSENT
    bid_exact = False
    bid_value = 0.0
    ask_kind = _ABSENT
    ask_exact = False
    ask_value = 0.0
    i = _skip_ws_nb(buf, i, end, newlines)
    if i >= end:
        return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
    if buf[i] == 125:
        i += 1
    else:
        while True:
            if buf[i] != 34:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            j = _plain_string_nb(buf, i + 1, end)
            if j < 0:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            key = _key_nb(buf, i + 1, j - i - 2)
            if key < 0:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            i = _skip_ws_nb(buf, j, end, newlines)
            if i >= end or buf[i] != 58:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            i = _skip_ws_nb(buf, i + 1, end, newlines)
            if i >= end:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            c = buf[i]
            if c == 34:
                kind = _STRING
                j = _plain_string_nb(buf, i + 1, end)
                if key == _KEY_SYMBOL:
                    sym_start = i + 1
                    sym_length = j - i - 2
                elif key == _KEY_STATUS and j >= 0:
                    status_word = _status_word_nb(buf, i + 1, j - i - 2)
            elif c == 45 or 48 <= c <= 57:
                kind = _NUMBER
                j, integer, exact, value, ts = _number_nb(buf, i, end)
                if key == _KEY_PRICE:
                    price_exact = exact
                    price_value = value
                elif key == _KEY_TS:
                    ts_value = ts
                elif key == _KEY_BID:
                    bid_exact = exact
                    bid_value = value
                elif key == _KEY_ASK:
                    ask_exact = exact
                    ask_value = value
            else:
                j, kind = _literal_nb(buf, i, end)  # anything else (nested values...): -1
            if j < 0:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            if key == _KEY_SYMBOL:
                sym_kind = kind
            elif key == _KEY_PRICE:
                price_kind = kind
            elif key == _KEY_TS:
                ts_kind = kind
            elif key == _KEY_BID:
                bid_kind = kind
            elif key == _KEY_ASK:
                ask_kind = kind
            elif key == _KEY_STATUS:
                status_kind = kind
            i = _skip_ws_nb(buf, j, end, newlines)
            if i >= end:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            c = buf[i]
            if c == 44:
                i = _skip_ws_nb(buf, i + 1, end, newlines)
                if i >= end:
                    return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
                continue
            if c == 125:
                i += 1
                break
            return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
    # The verdict, in decode_tick_full's order.
    code = ACCEPTED
    if sym_kind == _ABSENT:
        sym_start = -1
        if not has_default:
            code = MISSING_SYMBOL
    elif sym_kind == _NULL:
        code = MISSING_SYMBOL
    elif sym_kind != _STRING or sym_length == 0:
        code = BAD_SYMBOL
    status = TRADING_NONE
    price = _NAN
    if code == ACCEPTED:
        if status_kind == _STRING:
            status = status_word
        elif status_kind == _NUMBER or status_kind == _BOOL:
            status = -1
        if price_kind == _ABSENT or price_kind == _NULL:
            if status == TRADING_NONE or price_kind == _NULL:
                code = MISSING_PRICE
        elif price_kind == _NUMBER:
            if not price_exact:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            price = price_value
        else:
            code = BAD_PRICE_TYPE
    ts = 0
    if code == ACCEPTED:
        if ts_kind == _ABSENT or ts_kind == _NULL:
            if has_recv_ts:
                ts = recv_ts
            else:
                code = MISSING_TS
        elif ts_kind == _NUMBER and ts_value >= 0:
            ts = ts_value
        else:
            code = BAD_TS
    if code == ACCEPTED and status < 0:
        code = BAD_STATUS
    bid = _NAN
    ask = _NAN
    if code == ACCEPTED and (bid_kind != _ABSENT or ask_kind != _ABSENT):
        bad = False
        if bid_kind == _NUMBER:
            if not bid_exact:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            bid = bid_value
            bad = not bid > 0.0
        elif bid_kind != _ABSENT and bid_kind != _NULL:
            bad = True
        if ask_kind == _NUMBER:
            if not ask_exact:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            ask = ask_value
            bad = bad or not ask > 0.0
        elif ask_kind != _ABSENT and ask_kind != _NULL:
            bad = True
        if bad or bid > ask:
            code = BAD_QUOTE
    if code != ACCEPTED:
        return i, code, _NAN, _NAN, _NAN, 0, 0, sym_start, 0
    if sym_length > MAX_SYMBOL_BYTES:
        return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0  # longer than any book name: Python's lookup
    return i, code, price, bid, ask, status, ts, sym_start, sym_length


@_inline
def _element_nb(buf, i, end, newlines, has_default, has_recv_ts, recv_ts):
    """One array element at i: ``_object_nb``'s tuple; a scalar is ``not_an_object``."""
    if buf[i] == 123:
        return _object_nb(buf, i + 1, end, newlines, has_default, has_recv_ts, recv_ts)
    return (_scalar_nb(buf, i, end), NOT_AN_OBJECT, _NAN, _NAN, _NAN, 0, 0, 0, 0)


@_inline
def _stage_nb(buf, code, price, bid, ask, status, ts, sym_start, sym_length, default_slot,
              table, ints, floats, k):
    """Write one tick into column k, its symbol looked up (a rejected tick: slot -1)."""
    slot = -1
    if code == ACCEPTED:
        if sym_start < 0:
            slot = default_slot
        else:
            slot = _lookup_nb(buf, sym_start, sym_length, table)
    ints[ROW_SLOT, k] = slot
    ints[ROW_TS, k] = ts
    ints[ROW_CODE, k] = code
    ints[ROW_STATUS, k] = status
    floats[ROW_PRICE, k] = price
    floats[ROW_BID, k] = bid
    floats[ROW_ASK, k] = ask


# --- payloads and tapes ------------------------------------------------------------------------

def resume_offset(scanned: int) -> int:
    """The byte offset a ``scan_payload_nb`` return value <= -3 says to resume from."""
    return -3 - scanned


@_kernel
def scan_payload_nb(buf, start, table, ints, floats, at, limit, default_slot, recv_ts):
    """Stage the ticks of one live payload (an object or an array of them) into columns
    ``at .. at + limit - 1`` (limit >= 1). ``default_slot``: the slot of the topic's symbol
    (``NO_TOPIC_SYMBOL`` when it names none, ``TOPIC_UNRESOLVED`` to be asked only if a tick
    lacks a symbol); ``recv_ts`` stands in for a missing ``ts``.

    Returns the number of ticks written, or SCAN_FALLBACK / SCAN_NEED_TOPIC (nothing written
    counts), or, when ``limit`` ticks were written and the rest of the array is valid, a value
    r <= -3: call again with ``start = resume_offset(r)`` once the caller has made room. Ticks
    past the limit are read but not written, so the whole payload is checked before the caller
    commits any; a resumed call (``start`` > 0) trusts that check and stops at its limit, so a
    payload spread over many small batches is read twice, not once per batch."""
    end = len(buf)
    if at < 0 or limit < 1 or at + limit > ints.shape[1] or floats.shape[1] < ints.shape[1]:
        return SCAN_FALLBACK  # not room the caller has: never write out of bounds
    has_default = default_slot != NO_TOPIC_SYMBOL
    single = False  # the payload is one object, not an array
    n = 0
    more = False
    resume_at = 0
    i = start
    if start == 0:
        i = _skip_ws_nb(buf, 0, end, True)
        if i >= end:
            return SCAN_FALLBACK
        c = buf[i]
        if c == 91:
            i = _skip_ws_nb(buf, i + 1, end, True)
            if i < end and buf[i] == 93:  # an empty array
                return 0 if _skip_ws_nb(buf, i + 1, end, True) == end else SCAN_FALLBACK
        elif c == 123:
            single = True  # read as the one element of an array, without the brackets
        else:
            return SCAN_FALLBACK
    element = start == 0  # a resumed scan starts right after an element
    while True:
        if element:
            if i >= end:
                return SCAN_FALLBACK
            i, code, price, bid, ask, status, ts, sym_start, sym_length = _element_nb(
                buf, i, end, True, has_default, True, recv_ts)
            if i < 0:
                return SCAN_FALLBACK
            if sym_start < 0 and default_slot == TOPIC_UNRESOLVED:
                return SCAN_NEED_TOPIC
            if n < limit:
                _stage_nb(buf, code, price, bid, ask, status, ts, sym_start, sym_length,
                          default_slot, table, ints, floats, at + n)
                n += 1
                if n == limit:
                    resume_at = i
                    if start > 0:  # resumed: the first call read the rest already, stop here
                        j = _skip_ws_nb(buf, i, end, True)
                        return n if j < end and buf[j] == 93 else -3 - resume_at
            else:
                more = True
            if single:
                break
        element = True
        i = _skip_ws_nb(buf, i, end, True)
        if i >= end:
            return SCAN_FALLBACK
        c = buf[i]
        if c == 44:
            i = _skip_ws_nb(buf, i + 1, end, True)
            continue
        if c == 93:
            i += 1
            break
        return SCAN_FALLBACK
    if _skip_ws_nb(buf, i, end, True) != end:
        return SCAN_FALLBACK
    if more:
        return -3 - resume_at
    return n


@_inline
def _line_end_nb(buf, i, end):
    while i < end and buf[i] != 10 and buf[i] != 13:
        i += 1
    return i


@_kernel
def _tape_line_nb(buf, j, end, table, ints, floats, n, line):
    """The ticks of one tape line whose value starts at j, into columns n..: (index of the
    line break or the end, columns used up to); index -1: not the strict form, -2: out of
    columns (nothing of the line counts in either case). No topic, no receive time."""
    limit = ints.shape[1]
    first = n
    array = buf[j] == 91
    if array:
        j = _skip_ws_nb(buf, j + 1, end, False)
        if j < end and buf[j] == 93:
            j += 1
            array = False
    while True:
        if j >= end:
            return -1, first
        if n >= limit:
            return -2, first
        j, code, price, bid, ask, status, ts, sym_start, sym_length = _element_nb(
            buf, j, end, False, False, False, 0)
        if j < 0:
            return -1, first
        _stage_nb(buf, code, price, bid, ask, status, ts, sym_start, sym_length,
                  -1, table, ints, floats, n)
        ints[ROW_LINE, n] = line
        n += 1
        if not array:
            break
        j = _skip_ws_nb(buf, j, end, False)
        if j >= end:
            return -1, first
        c = buf[j]
        if c == 44:
            j = _skip_ws_nb(buf, j + 1, end, False)
            continue
        if c == 93:
            j += 1
            break
        return -1, first
    j = _skip_ws_nb(buf, j, end, False)
    if j < end and buf[j] != 10 and buf[j] != 13:
        return -1, first
    return j, n


@_kernel
def scan_tape_nb(buf, start, line, table, ints, floats, at, fallback, fallback_at,
                 result):
    """Stage the ticks of a JSON-lines tape from byte ``start`` (after ``line`` lines) into
    columns ``at ..`` (``ints`` has ROW_LINE); lines split as ``bytes.splitlines`` does (LF,
    CR, CRLF), blank lines skipped. A line not in the strict form gets a ``fallback`` row
    (FB_*) instead of ticks, for the caller to decode in Python. Sets ``result`` (R_*):
    SCAN_DONE, or SCAN_MORE_TICKS / SCAN_MORE_FALLBACKS to grow that array and call again
    from R_RESUME with R_LINE, R_TICKS, R_FALLBACKS."""
    end = len(buf)
    n = at
    f = fallback_at
    i = start
    while i < end:
        j = _skip_ws_nb(buf, i, end, False)
        if j < end and buf[j] != 10 and buf[j] != 13:
            j, used = _tape_line_nb(buf, j, end, table, ints, floats, n, line + 1)
            if j == -1 and f < fallback.shape[0]:
                j = _line_end_nb(buf, i, end)
                fallback[f, FB_START] = i
                fallback[f, FB_END] = j
                fallback[f, FB_LINE] = line + 1
                fallback[f, FB_POSITION] = n
                f += 1
            elif j < 0:
                result[R_STATUS] = SCAN_MORE_TICKS if j == -2 else SCAN_MORE_FALLBACKS
                result[R_RESUME] = i
                result[R_LINE] = line
                result[R_TICKS] = n
                result[R_FALLBACKS] = f
                return
            else:
                n = used
        line += 1
        i = j
        if i < end:
            if buf[i] == 13 and i + 1 < end and buf[i + 1] == 10:
                i += 2
            else:
                i += 1
    result[R_STATUS] = SCAN_DONE
    result[R_RESUME] = end
    result[R_LINE] = line
    result[R_TICKS] = n
    result[R_FALLBACKS] = f
