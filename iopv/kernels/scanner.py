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

Symbols are looked up in a ``SymbolTable`` (``iopv.kernels.symbols``), built once per book index.

Contract (as ``iopv.kernels.valuation``): arrays and scalars in, kernels write into arrays the caller
allocated and return a count; nothing is allocated, and the kernels are compiled without NRT
(see ``iopv.kernels.jsonlex.kernel``), so an allocation would not even compile. Staged ticks are columns of two 2-D
arrays: ``ints[TickIntRow.SLOT | TS | CODE | TRADING (| LINE)]`` and
``floats[TickFloatRow.PRICE | BID | ASK]``, column k = tick k. Helpers are inlined into the two
kernels (``inline``); one object's fields travel as a tuple, never through an array.

The lexer is ``iopv.kernels.jsonlex`` and the symbol table ``iopv.kernels.symbols``; their helpers
are inlined here (a cached kernel follows every package module its module imports,
``iopv.kernels.cache``, so an edit there recompiles these).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from iopv.core.constants import TickFloatRow, TickIntRow, TickOutcome, TradingStatus
from iopv.kernels.jsonlex import (
    FieldKind,
    TickKey,
    inline,
    kernel,
    key_nb,
    literal_nb,
    number_nb,
    plain_string_nb,
    scalar_nb,
    skip_ws_nb,
    status_word_nb,
)
from iopv.kernels.symbols import MAX_SYMBOL_BYTES, lookup_nb


# --- scan_payload_nb: its default_slot argument and its return value ----------------------------
class TopicSlotT(NamedTuple):
    """``scan_payload_nb``'s ``default_slot`` when it is not a book slot (-1: an unknown symbol)."""

    NO_SYMBOL: int = -2  # the topic names no symbol
    UNRESOLVED: int = -3  # not worked out yet: a tick without symbol asks for it


TopicSlot = TopicSlotT()


class PayloadScanT(NamedTuple):
    """``scan_payload_nb``'s return value when it is not a count. A value r >= 0: done, r ticks
    written. r <= -3: the limit was reached and the rest of the array is valid; resume from
    byte offset -3 - r once there is room (``resume_offset``)."""

    FALLBACK: int = -1  # not all in the strict form, nothing written counts: decode it in Python
    NEED_TOPIC: int = -2  # a tick has no symbol: call again with the topic's default_slot


PayloadScan = PayloadScanT()


# --- scan_tape_nb: its result array -------------------------------------------------------------
class TapeResultT(NamedTuple):
    """Cells of ``scan_tape_nb``'s result array."""

    STATE: int = 0  # TapeState
    RESUME: int = 1  # byte offset to call again from (TapeState.MORE_*)
    LINE: int = 2  # lines consumed before RESUME
    TICKS: int = 3  # ticks written in total
    FALLBACKS: int = 4  # fallback lines recorded in total


TapeResult = TapeResultT()
N_TAPE_RESULT = len(TapeResult)


class TapeStateT(NamedTuple):
    DONE: int = 0  # every line read
    MORE_TICKS: int = 1  # out of tick columns: grow them and resume at TapeResult.RESUME
    MORE_FALLBACKS: int = 2  # out of fallback rows: grow them and resume


TapeState = TapeStateT()


class FallbackColT(NamedTuple):
    """Columns of a tape's fallback rows: the line's byte range, its number, the tick position
    where its ticks (decoded in Python) go."""

    START: int = 0
    END: int = 1
    LINE: int = 2
    POSITION: int = 3


FallbackCol = FallbackColT()
N_FALLBACK_COLS = len(FallbackCol)

_NAN = np.nan


# --- one tick object -------------------------------------------------------------------------

@kernel
def _object_nb(buf, i, end, newlines, has_default, has_recv_ts, recv_ts):
    """The tick object whose '{' is just before i: (index after its '}' or -1 to fall back,
    code, price, bid, ask, status, ts, symbol start, symbol length) -- ``decode_tick_full``'s
    verdict and values, its checks in its order. Symbol start -1: the object has no ``symbol``
    (the tick takes the topic's, when there is one)."""
    sym_kind = FieldKind.ABSENT
    sym_start = 0
    sym_length = 0
    status_kind = FieldKind.ABSENT
    status_word = TradingStatus.NONE
    price_kind = FieldKind.ABSENT
    price_exact = False
    price_value = 0.0
    ts_kind = FieldKind.ABSENT
    ts_value = -1
    bid_kind = FieldKind.ABSENT
    bid_exact = False
    bid_value = 0.0
    ask_kind = FieldKind.ABSENT
    ask_exact = False
    ask_value = 0.0
    i = skip_ws_nb(buf, i, end, newlines)
    if i >= end:
        return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
    if buf[i] == 125:
        i += 1
    else:
        while True:
            if buf[i] != 34:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            j = plain_string_nb(buf, i + 1, end)
            if j < 0:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            key = key_nb(buf, i + 1, j - i - 2)
            if key < 0:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            i = skip_ws_nb(buf, j, end, newlines)
            if i >= end or buf[i] != 58:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            i = skip_ws_nb(buf, i + 1, end, newlines)
            if i >= end:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            c = buf[i]
            if c == 34:
                kind = FieldKind.STRING
                j = plain_string_nb(buf, i + 1, end)
                if key == TickKey.SYMBOL:
                    sym_start = i + 1
                    sym_length = j - i - 2
                elif key == TickKey.STATUS and j >= 0:
                    status_word = status_word_nb(buf, i + 1, j - i - 2)
            elif c == 45 or 48 <= c <= 57:
                kind = FieldKind.NUMBER
                j, integer, exact, value, ts = number_nb(buf, i, end)
                if key == TickKey.PRICE:
                    price_exact = exact
                    price_value = value
                elif key == TickKey.TS:
                    ts_value = ts
                elif key == TickKey.BID:
                    bid_exact = exact
                    bid_value = value
                elif key == TickKey.ASK:
                    ask_exact = exact
                    ask_value = value
            else:
                j, kind = literal_nb(buf, i, end)  # anything else (nested values...): -1
            if j < 0:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            if key == TickKey.SYMBOL:
                sym_kind = kind
            elif key == TickKey.PRICE:
                price_kind = kind
            elif key == TickKey.TS:
                ts_kind = kind
            elif key == TickKey.BID:
                bid_kind = kind
            elif key == TickKey.ASK:
                ask_kind = kind
            elif key == TickKey.STATUS:
                status_kind = kind
            i = skip_ws_nb(buf, j, end, newlines)
            if i >= end:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            c = buf[i]
            if c == 44:
                i = skip_ws_nb(buf, i + 1, end, newlines)
                if i >= end:
                    return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
                continue
            if c == 125:
                i += 1
                break
            return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
    # The verdict, in decode_tick_full's order.
    code = TickOutcome.ACCEPTED
    if sym_kind == FieldKind.ABSENT:
        sym_start = -1
        if not has_default:
            code = TickOutcome.MISSING_SYMBOL
    elif sym_kind == FieldKind.NULL:
        code = TickOutcome.MISSING_SYMBOL
    elif sym_kind != FieldKind.STRING or sym_length == 0:
        code = TickOutcome.BAD_SYMBOL
    status = TradingStatus.NONE
    price = _NAN
    if code == TickOutcome.ACCEPTED:
        if status_kind == FieldKind.STRING:
            status = status_word
        elif status_kind == FieldKind.NUMBER or status_kind == FieldKind.BOOL:
            status = -1
        if price_kind == FieldKind.ABSENT or price_kind == FieldKind.NULL:
            if status == TradingStatus.NONE or price_kind == FieldKind.NULL:
                code = TickOutcome.MISSING_PRICE
        elif price_kind == FieldKind.NUMBER:
            if not price_exact:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            price = price_value
        else:
            code = TickOutcome.BAD_PRICE_TYPE
    ts = 0
    if code == TickOutcome.ACCEPTED:
        if ts_kind == FieldKind.ABSENT or ts_kind == FieldKind.NULL:
            if has_recv_ts:
                ts = recv_ts
            else:
                code = TickOutcome.MISSING_TS
        elif ts_kind == FieldKind.NUMBER and ts_value >= 0:
            ts = ts_value
        else:
            code = TickOutcome.BAD_TS
    if code == TickOutcome.ACCEPTED and status < 0:
        code = TickOutcome.BAD_TRADING_STATUS
    bid = _NAN
    ask = _NAN
    if code == TickOutcome.ACCEPTED and (bid_kind != FieldKind.ABSENT or ask_kind != FieldKind.ABSENT):
        bad = False
        if bid_kind == FieldKind.NUMBER:
            if not bid_exact:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            bid = bid_value
            bad = not bid > 0.0
        elif bid_kind != FieldKind.ABSENT and bid_kind != FieldKind.NULL:
            bad = True
        if ask_kind == FieldKind.NUMBER:
            if not ask_exact:
                return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0
            ask = ask_value
            bad = bad or not ask > 0.0
        elif ask_kind != FieldKind.ABSENT and ask_kind != FieldKind.NULL:
            bad = True
        if bad or bid > ask:
            code = TickOutcome.BAD_QUOTE
    if code != TickOutcome.ACCEPTED:
        return i, code, _NAN, _NAN, _NAN, 0, 0, sym_start, 0
    if sym_length > MAX_SYMBOL_BYTES:
        return -1, 0, _NAN, _NAN, _NAN, 0, 0, 0, 0  # longer than any book name: Python's lookup
    return i, code, price, bid, ask, status, ts, sym_start, sym_length


@inline
def _element_nb(buf, i, end, newlines, has_default, has_recv_ts, recv_ts):
    """One array element at i: ``_object_nb``'s tuple; a scalar is ``not_an_object``."""
    if buf[i] == 123:
        return _object_nb(buf, i + 1, end, newlines, has_default, has_recv_ts, recv_ts)
    return (scalar_nb(buf, i, end), TickOutcome.NOT_AN_OBJECT, _NAN, _NAN, _NAN, 0, 0, 0, 0)


@inline
def _stage_nb(buf, code, price, bid, ask, status, ts, sym_start, sym_length, default_slot,
              table, ints, floats, k):
    """Write one tick into column k, its symbol looked up (a rejected tick: slot -1)."""
    slot = -1
    if code == TickOutcome.ACCEPTED:
        if sym_start < 0:
            slot = default_slot
        else:
            slot = lookup_nb(buf, sym_start, sym_length, table)
    ints[TickIntRow.SLOT, k] = slot
    ints[TickIntRow.TS, k] = ts
    ints[TickIntRow.CODE, k] = code
    ints[TickIntRow.TRADING, k] = status
    floats[TickFloatRow.PRICE, k] = price
    floats[TickFloatRow.BID, k] = bid
    floats[TickFloatRow.ASK, k] = ask


@inline
def _after_element_nb(buf, i, end, newlines):
    """What follows an array element ending at i: (start of the next element, False) after a
    comma, (index after the ``]``, True) at the array's end, (-1, False) for anything else."""
    i = skip_ws_nb(buf, i, end, newlines)
    if i < end:
        c = buf[i]
        if c == 44:
            return skip_ws_nb(buf, i + 1, end, newlines), False
        if c == 93:
            return i + 1, True
    return -1, False


# --- payloads and tapes ------------------------------------------------------------------------

def resume_offset(scanned: int) -> int:
    """The byte offset a ``scan_payload_nb`` return value <= -3 says to resume from."""
    return -3 - scanned


@kernel
def scan_payload_nb(buf, start, table, ints, floats, at, limit, default_slot, recv_ts):
    """Stage the ticks of one live payload (an object or an array of them) into columns
    ``at .. at + limit - 1`` (limit >= 1). ``default_slot``: the slot of the topic's symbol
    (``TopicSlot.NO_SYMBOL`` when it names none, ``TopicSlot.UNRESOLVED`` to be asked only if a tick
    lacks a symbol); ``recv_ts`` stands in for a missing ``ts``.

    Returns the number of ticks written, or PayloadScan.FALLBACK / PayloadScan.NEED_TOPIC (nothing written
    counts), or, when ``limit`` ticks were written and the rest of the array is valid, a value
    r <= -3: call again with ``start = resume_offset(r)`` once the caller has made room. Ticks
    past the limit are read but not written, so the whole payload is checked before the caller
    commits any; a resumed call (``start`` > 0) trusts that check and stops at its limit, so a
    payload spread over many small batches is read twice, not once per batch."""
    end = len(buf)
    if at < 0 or limit < 1 or at + limit > ints.shape[1] or floats.shape[1] < ints.shape[1]:
        return PayloadScan.FALLBACK  # not room the caller has: never write out of bounds
    has_default = default_slot != TopicSlot.NO_SYMBOL
    single = False  # the payload is one object, not an array
    n = 0
    more = False
    resume_at = 0
    i = start
    if start == 0:
        i = skip_ws_nb(buf, 0, end, True)
        if i >= end:
            return PayloadScan.FALLBACK
        c = buf[i]
        if c == 91:
            i = skip_ws_nb(buf, i + 1, end, True)
            if i < end and buf[i] == 93:  # an empty array
                return 0 if skip_ws_nb(buf, i + 1, end, True) == end else PayloadScan.FALLBACK
        elif c == 123:
            single = True  # read as the one element of an array, without the brackets
        else:
            return PayloadScan.FALLBACK
    element = start == 0  # a resumed scan starts right after an element
    while True:
        if element:
            if i >= end:
                return PayloadScan.FALLBACK
            i, code, price, bid, ask, status, ts, sym_start, sym_length = _element_nb(
                buf, i, end, True, has_default, True, recv_ts)
            if i < 0:
                return PayloadScan.FALLBACK
            if sym_start < 0 and default_slot == TopicSlot.UNRESOLVED:
                return PayloadScan.NEED_TOPIC
            if n < limit:
                _stage_nb(buf, code, price, bid, ask, status, ts, sym_start, sym_length,
                          default_slot, table, ints, floats, at + n)
                n += 1
                if n == limit:
                    resume_at = i
                    if start > 0:  # resumed: the first call read the rest already, stop here
                        j = skip_ws_nb(buf, i, end, True)
                        return n if j < end and buf[j] == 93 else -3 - resume_at
            else:
                more = True
            if single:
                break
        element = True
        i, closed = _after_element_nb(buf, i, end, True)
        if i < 0:
            return PayloadScan.FALLBACK
        if closed:
            break
    if skip_ws_nb(buf, i, end, True) != end:
        return PayloadScan.FALLBACK
    if more:
        return -3 - resume_at
    return n


@inline
def _line_end_nb(buf, i, end):
    while i < end and buf[i] != 10 and buf[i] != 13:
        i += 1
    return i


@kernel
def _tape_line_nb(buf, j, end, table, ints, floats, n, line):
    """The ticks of one tape line whose value starts at j, into columns n..: (index of the
    line break or the end, columns used up to); index -1: not the strict form, -2: out of
    columns (nothing of the line counts in either case). No topic, no receive time."""
    limit = ints.shape[1]
    first = n
    array = buf[j] == 91
    if array:
        j = skip_ws_nb(buf, j + 1, end, False)
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
        ints[TickIntRow.LINE, n] = line
        n += 1
        if not array:
            break
        j, closed = _after_element_nb(buf, j, end, False)
        if j < 0:
            return -1, first
        if closed:
            break
    j = skip_ws_nb(buf, j, end, False)
    if j < end and buf[j] != 10 and buf[j] != 13:
        return -1, first
    return j, n


@kernel
def scan_tape_nb(buf, start, line, table, ints, floats, at, fallback, fallback_at,
                 result):
    """Stage the ticks of a JSON-lines tape from byte ``start`` (after ``line`` lines) into
    columns ``at ..`` (``ints`` has TickIntRow.LINE); lines split as ``bytes.splitlines`` does (LF,
    CR, CRLF), blank lines skipped. A line not in the strict form gets a ``fallback`` row
    (FallbackCol) instead of ticks, for the caller to decode in Python. Sets ``result`` (TapeResult):
    TapeState.DONE, or TapeState.MORE_TICKS / TapeState.MORE_FALLBACKS to grow that array and call again
    from TapeResult.RESUME with TapeResult.LINE, TapeResult.TICKS, TapeResult.FALLBACKS."""
    end = len(buf)
    n = at
    f = fallback_at
    i = start
    while i < end:
        j = skip_ws_nb(buf, i, end, False)
        if j < end and buf[j] != 10 and buf[j] != 13:
            j, used = _tape_line_nb(buf, j, end, table, ints, floats, n, line + 1)
            if j == -1 and f < fallback.shape[0]:
                j = _line_end_nb(buf, i, end)
                fallback[f, FallbackCol.START] = i
                fallback[f, FallbackCol.END] = j
                fallback[f, FallbackCol.LINE] = line + 1
                fallback[f, FallbackCol.POSITION] = n
                f += 1
            elif j < 0:
                result[TapeResult.STATE] = TapeState.MORE_TICKS if j == -2 else TapeState.MORE_FALLBACKS
                result[TapeResult.RESUME] = i
                result[TapeResult.LINE] = line
                result[TapeResult.TICKS] = n
                result[TapeResult.FALLBACKS] = f
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
    result[TapeResult.STATE] = TapeState.DONE
    result[TapeResult.RESUME] = end
    result[TapeResult.LINE] = line
    result[TapeResult.TICKS] = n
    result[TapeResult.FALLBACKS] = f
