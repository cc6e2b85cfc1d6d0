"""Restart recovery: the session's last prices and tick times, saved to Redis every cycle and
restored at start, so a restarted engine publishes what it would have published without the restart.

The snapshot holds every per-slot array of the book (price, quote, tick time, halt flag, spike
filter state: ``book.ARRAYS``) for the slots that changed this session; the others still hold
the basket file's previous close. The Redis sink takes it when the engine offers it a publication
-- after the ticks of that boundary were applied -- and writes it with that publication's last
chunk, so the saved state always matches a published value (``iopv.adapters.redis.state`` reads
it back). Only the latest snapshot is kept (key ``<redis.key_prefix>:_state:<instance>``).

The snapshot also says whether the book was whole (``iopv.engine.health``) and which instance
took it, so a replica that is not whole can take a whole peer's book by *state transfer*
(``merge``: slot by slot, the newer tick wins; docs/scaling.md). A journal checkpoint also holds
the ticks waiting in the intake's held set (event time), so a day file replays on its own.

A snapshot is restored only on the same UTC day it was taken (one trading session): the next
session starts from the new basket file's previous closes. ``--clean-start`` (``ops.restore_state
= false``) skips restoring. Every symbol is looked up in the current book: unknown symbols and
invalid numbers are skipped and counted, never trusted.
"""

from __future__ import annotations

import math
import time

import numpy as np
import orjson

from iopv.core.constants import DAY_NS, FIXED_TS
from iopv.engine.book import ARRAYS, NEVER, PriceBook

VERSION = 1


def _slot_names(book: PriceBook) -> dict[int, str]:
    return {slot: symbol for symbol, slot in book.index.items()}


#: A held tick in a checkpoint: its columns (``TickIntRow`` of the staging arrays).
HELD_INT_ROWS = ("slot", "ts", "code", "status")
HELD_FLOAT_ROWS = ("price", "bid", "ask")


def snapshot(book: PriceBook, boundary_ns: int, *, health: dict | None = None, instance: str | None = None,
             held: tuple[np.ndarray, np.ndarray] | None = None) -> bytes:
    """Every per-slot array of the slots that changed this session, as JSON (floats round-trip
    exactly; NaN, e.g. a bid never quoted, is written as null); with ``health``
    (``BookHealth.state()``: ``whole``, ``recovering``, ``gap_end``), the ``instance`` that took
    it, and ``held`` ticks (``TickIntake.held_ticks``; slots written as symbols) when given."""
    names = _slot_names(book)
    # A halt or a held spike can come before any accepted price: those slots changed too.
    touched = (book.last_ts != NEVER) | (book.flags != 0) | (book.pending_count != 0)
    slots = [slot for slot in np.flatnonzero(touched).tolist() if slot in names]
    state = {
        "version": VERSION,
        "ts": boundary_ns,
        "symbols": [names[slot] for slot in slots],
        **{name: getattr(book, name)[slots].tolist() for name in ARRAYS},
    }
    if health is not None:
        state.update(health)
    if instance is not None:
        state["instance"] = instance
    if held is not None and held[0].shape[1]:
        ints, floats = held
        columns = {name: ints[k].tolist() for k, name in enumerate(HELD_INT_ROWS)}
        columns.update({name: floats[k].tolist() for k, name in enumerate(HELD_FLOAT_ROWS)})
        columns["slot"] = [names.get(slot) for slot in columns["slot"]]
        state["held"] = columns
    return orjson.dumps(state)


def held_arrays(book: PriceBook, data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """The held ticks of a checkpoint (``snapshot(held=...)``) as (int rows, float rows) over
    ``book``'s slots, or None."""
    held = orjson.loads(data).get("held")
    if not held:
        return None
    ints = np.array([[book.index.get(symbol, -1) if type(symbol) is str else -1 for symbol in held["slot"]],
                     held["ts"], held["code"], held["status"]], dtype=np.int64)
    floats = np.array([[math.nan if v is None else v for v in held[name]] for name in HELD_FLOAT_ROWS],
                      dtype=np.float64)
    return ints, floats


def state_info(data: bytes) -> dict:
    """``ts``, ``whole``, ``instance``, ``gap_end`` of a snapshot and ``last_tick`` (its newest
    tick time, None when nothing ticked), without its arrays (ValueError when unreadable). A
    snapshot written before the field existed is taken as not whole."""
    try:
        state = orjson.loads(data)
        ts = state["ts"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"unreadable state: {exc}") from None
    if state.get("version") != VERSION or type(ts) is not int:
        raise ValueError(f"unsupported state version {state.get('version')!r}")
    ticked = [t for t in state.get("last_ts") or () if type(t) is int and t not in (NEVER, FIXED_TS)]
    return {"ts": ts, "whole": state.get("whole") is True, "instance": state.get("instance"),
            "recovering": state.get("recovering"), "gap_end": state.get("gap_end"),
            "last_tick": max(ticked) if ticked else None}


def _valid(name: str, value) -> bool:
    if name == "prices":
        return type(value) is float and math.isfinite(value) and value > 0
    if name == "last_ts":
        return type(value) is int and (value >= 0 or value == NEVER)
    if value is None:  # NaN written as null
        return True
    return type(value) in (int, float)


def restore(book: PriceBook, data: bytes, now_ns: int | None = None, *, merge: bool = False) -> tuple[int, int]:
    """Apply a snapshot to ``book``; returns (symbols restored, entries skipped).

    Restore (at start): a symbol is taken unless the book already holds a newer tick of it.
    ``merge`` (state transfer from a whole peer): a symbol is taken when the peer's tick is newer
    than the book's, or as new (the same tick: the peer's halt and spike state are taken too,
    since the peer saw every message) -- never when the book's tick is newer.

    Raises ValueError for a snapshot that is unreadable or from another session."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    names = ARRAYS
    try:
        state = orjson.loads(data)
        version, ts, symbols = state["version"], state["ts"], state["symbols"]
        columns = {name: state[name] for name in names}
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"unreadable state: {exc}") from None
    if version != VERSION or type(ts) is not int:
        raise ValueError(f"unsupported state version {version!r}")
    if ts // DAY_NS != now_ns // DAY_NS:
        raise ValueError("state is from another session (UTC day)")
    if not (isinstance(symbols, list) and all(isinstance(c, list) and len(c) == len(symbols)
                                              for c in columns.values())):
        raise ValueError("state arrays malformed")
    restored = skipped = 0
    for k, symbol in enumerate(symbols):
        slot = book.index.get(symbol) if type(symbol) is str else None
        row = {name: columns[name][k] for name in names}
        if slot is None or not all(_valid(name, value) for name, value in row.items()):
            skipped += 1
            continue
        if row["last_ts"] < book.last_ts[slot]:  # never move a symbol backwards
            skipped += 1
            continue
        if merge and row["last_ts"] == book.last_ts[slot] and all(
                (math.isnan(getattr(book, name)[slot]) and value is None)
                or getattr(book, name)[slot] == value for name, value in row.items()):
            continue  # the same: nothing to take
        for name, value in row.items():
            getattr(book, name)[slot] = math.nan if value is None else value
        restored += 1
    return restored, skipped


def merge(book: PriceBook, data: bytes, now_ns: int | None = None) -> tuple[int, int]:
    """State transfer: take a whole peer's snapshot into ``book`` by tick time (``restore`` with
    ``merge``); returns (symbols taken, entries skipped)."""
    return restore(book, data, now_ns, merge=True)
