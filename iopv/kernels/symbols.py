"""The compiled symbol -> book slot table the scanner looks symbols up in.

``symbol_table`` builds a ``SymbolTable`` once per book index (it caches by the index object; a
basket reload gives the book a new one): open addressing, linear probing, at most half full,
one row per name holding its bytes as int64 words and ``slot << 8 | length``, so a lookup
(``lookup_nb``, inlined into the scanner) is one row read and a few word compares.
"""

from __future__ import annotations

import numpy as np

from iopv.kernels.jsonlex import inline, kernel

#: Longest symbol the table holds (``iopv.core.universe.NAME_PATTERN`` allows 32 characters);
#: a longer one falls back.
MAX_SYMBOL_BYTES = 32
# Odd multipliers of the symbol hash (int64 arithmetic wraps).
_MIX = (-7046029254386353131, -4658895280553007687, 7640891576956012809, -3335678366873096957)


@inline
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


@inline
def _mix_nb(w0, w1, w2, w3, length):
    """The hash of a symbol's words; bits 32.. pick its bucket."""
    h = w0 * _MIX[0] ^ w1 * _MIX[1] ^ w2 * _MIX[2] ^ w3 * _MIX[3] ^ length
    h ^= h >> 29
    return h * _MIX[0]


@kernel
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


@inline
def lookup_nb(buf, start, length, table):
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


@kernel
def lookup_name_nb(name, table):
    """Book slot of the symbol ``name`` (bytes, 1..32); -1 when the table does not hold it."""
    return lookup_nb(name, 0, len(name), table)


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
