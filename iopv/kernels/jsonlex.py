"""The scanner's JSON lexer: whitespace, plain strings, tick keys, literals, exact numbers.

Inlined into the scanner's kernels (``iopv.kernels.scanner``); what each reads is the strict
common form its docstring lists. Also the scanner family's compile options: ``kernel`` and
``inline``, both without numba's reference counting (``NO_NRT``).

Contract (as ``iopv.kernels.valuation``): bytes and indices in, plain values out; nothing is
allocated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from iopv.core.constants import MAX_TS, TradingStatus


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


NO_NRT = _options_without_nrt()
kernel = njit(cache=True, **NO_NRT)
#: Small helpers are inlined by numba itself: a tick costs a dozen of their calls, and numba-level
#: inlining measured about a third faster than leaving them to LLVM. The object and number
#: parsers stay ordinary calls: inlined at every call site they cost ~6x the compile time
#: (25 s cold) for no measurable gain.
inline = njit(cache=True, inline="always", **NO_NRT)


# --- what the lexer tells the object reader -----------------------------------------------------
class FieldKindT(NamedTuple):
    """The kind of a tick object's field value."""

    ABSENT: int = 0
    NULL: int = 1
    STRING: int = 2
    NUMBER: int = 3
    BOOL: int = 4


FieldKind = FieldKindT()


class TickKeyT(NamedTuple):
    """The keys of a tick object the scanner reads (``key_nb``)."""

    SYMBOL: int = 0
    PRICE: int = 1
    TS: int = 2
    BID: int = 3
    ASK: int = 4
    SIZE: int = 5
    STATUS: int = 6


TickKey = TickKeyT()

_MAX_EXACT = 2**53
#: 10**0 .. 10**22, every one exact in binary64.
_POW10 = np.array([float(10**k) for k in range(23)])


# --- lexing ------------------------------------------------------------------------------------

@inline
def skip_ws_nb(buf, i, end, newlines):
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


@inline
def plain_string_nb(buf, i, end):
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


@inline
def key_nb(buf, i, length):
    """The ``TickKey`` of the key text buf[i:i+length], or -1 for any other key."""
    if length == 2:
        if buf[i] == 116 and buf[i + 1] == 115:  # ts
            return TickKey.TS
    elif length == 5:
        if (buf[i] == 112 and buf[i + 1] == 114 and buf[i + 2] == 105 and buf[i + 3] == 99
                and buf[i + 4] == 101):  # price
            return TickKey.PRICE
    elif length == 6:
        if buf[i] == 115:
            if (buf[i + 1] == 121 and buf[i + 2] == 109 and buf[i + 3] == 98 and buf[i + 4] == 111
                    and buf[i + 5] == 108):  # symbol
                return TickKey.SYMBOL
            if (buf[i + 1] == 116 and buf[i + 2] == 97 and buf[i + 3] == 116 and buf[i + 4] == 117
                    and buf[i + 5] == 115):  # status
                return TickKey.STATUS
    elif length == 3:
        if buf[i] == 98 and buf[i + 1] == 105 and buf[i + 2] == 100:  # bid
            return TickKey.BID
        if buf[i] == 97 and buf[i + 1] == 115 and buf[i + 2] == 107:  # ask
            return TickKey.ASK
    elif length == 4:
        if buf[i] == 115 and buf[i + 1] == 105 and buf[i + 2] == 122 and buf[i + 3] == 101:  # size
            return TickKey.SIZE
    return -1


@inline
def status_word_nb(buf, i, length):
    """``TradingStatus`` code of a status string (``TRADING_STATUS_WORDS``), -1 for any other word."""
    if length == 6:
        if (buf[i] == 104 and buf[i + 1] == 97 and buf[i + 2] == 108 and buf[i + 3] == 116
                and buf[i + 4] == 101 and buf[i + 5] == 100):  # halted
            return TradingStatus.HALT
    elif length == 7:
        if (buf[i] == 116 and buf[i + 1] == 114 and buf[i + 2] == 97 and buf[i + 3] == 100
                and buf[i + 4] == 105 and buf[i + 5] == 110 and buf[i + 6] == 103):  # trading
            return TradingStatus.RESUME
    return -1


@inline
def literal_nb(buf, i, end):
    """(index after, kind) of ``null``/``true``/``false`` at i; index -1 for anything else."""
    c = buf[i]
    if c == 110:
        if i + 4 <= end and buf[i + 1] == 117 and buf[i + 2] == 108 and buf[i + 3] == 108:
            return i + 4, FieldKind.NULL
    elif c == 116:
        if i + 4 <= end and buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101:
            return i + 4, FieldKind.BOOL
    elif c == 102:
        if (i + 5 <= end and buf[i + 1] == 97 and buf[i + 2] == 108 and buf[i + 3] == 115
                and buf[i + 4] == 101):
            return i + 5, FieldKind.BOOL
    return -1, FieldKind.NULL


@kernel
def number_nb(buf, i, end):
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


@kernel
def scalar_nb(buf, i, end):
    """Index after the string, number or literal at i; -1 for anything else."""
    c = buf[i]
    if c == 34:
        return plain_string_nb(buf, i + 1, end)
    if c == 45 or 48 <= c <= 57:
        return number_nb(buf, i, end)[0]
    return literal_nb(buf, i, end)[0]
