"""Restart recovery: the session's last prices and tick times, saved to Redis every cycle and
restored at start, so a restarted engine publishes what it would have published without the restart.

The snapshot holds only symbols that ticked this session (the others still hold the basket
file's previous close). It is taken when the engine offers a publication -- after the ticks of
that boundary were applied -- and written in the Redis sink's pipeline for that publication, so
the saved state always matches a published value. Only the latest snapshot is kept (key
``<redis.key_prefix>:_state:<instance>``).

A snapshot is restored only on the same UTC day it was taken (one trading session): the next
session starts from the new basket file's previous closes. ``--clean-start`` (``ops.restore_state
= false``) skips restoring. Every symbol is looked up in the current book: unknown symbols and
invalid numbers are skipped and counted, never trusted.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import orjson

from iopv.book import NEVER, PriceBook
from iopv.config import Settings
from iopv.publication import Publication

log = logging.getLogger(__name__)

VERSION = 1
NS_PER_DAY = 86_400 * 1_000_000_000


def state_key(settings: Settings) -> str:
    return f"{settings.redis.key_prefix}:_state:{settings.engine.instance}"


def snapshot(book: PriceBook, boundary_ns: int) -> bytes:
    """The ticked symbols' prices and tick times as JSON (floats round-trip exactly)."""
    n = len(book.symbols)
    ticked = np.flatnonzero(book.last_ts[:n] != NEVER)
    return orjson.dumps({
        "version": VERSION,
        "ts": boundary_ns,
        "symbols": [book.symbols[i] for i in ticked.tolist()],
        "prices": book.prices[ticked].tolist(),
        "last_ts": book.last_ts[ticked].tolist(),
    })


def restore(book: PriceBook, data: bytes, now_ns: int | None = None) -> tuple[int, int]:
    """Apply a snapshot to ``book``; returns (symbols restored, entries skipped).

    Raises ValueError for a snapshot that is unreadable or from another session."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        state = orjson.loads(data)
        version, ts = state["version"], state["ts"]
        symbols, prices, stamps = state["symbols"], state["prices"], state["last_ts"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"unreadable state: {exc}") from None
    if version != VERSION or type(ts) is not int:
        raise ValueError(f"unsupported state version {version!r}")
    if ts // NS_PER_DAY != now_ns // NS_PER_DAY:
        raise ValueError("state is from another session (UTC day)")
    if not (isinstance(symbols, list) and isinstance(prices, list) and isinstance(stamps, list)
            and len(symbols) == len(prices) == len(stamps)):
        raise ValueError("state arrays malformed")
    restored = skipped = 0
    for symbol, price, stamp in zip(symbols, prices, stamps):
        slot = book.index.get(symbol) if type(symbol) is str else None
        if (slot is None or type(price) is not float or not math.isfinite(price) or price <= 0
                or type(stamp) is not int or stamp < 0):
            skipped += 1
            continue
        if stamp >= book.last_ts[slot]:  # never move a symbol backwards
            book.prices[slot] = price
            book.last_ts[slot] = stamp
            restored += 1
    return restored, skipped


class StateRecorder:
    """A sink that snapshots the book for every publication and hands it to the Redis sink."""

    name = "state"

    def __init__(self, book: PriceBook, redis_sink):
        self.book = book
        self.redis_sink = redis_sink
        self.snapshots = 0

    def offer(self, publication: Publication) -> None:
        self.redis_sink.pending_state = snapshot(self.book, publication.ts_ns)
        self.snapshots += 1


async def load(settings: Settings, timeout_s: float = 2.0) -> bytes | None:
    """The saved snapshot, or None when there is none or Redis cannot be reached in time
    (the engine then starts from previous closes rather than wait: it is logged)."""
    import asyncio

    import redis.exceptions

    from iopv.sinks.redis import redis_client

    client = redis_client(settings.redis, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return await asyncio.wait_for(client.get(state_key(settings)), timeout_s)
    except (redis.exceptions.RedisError, OSError, asyncio.TimeoutError) as exc:
        log.warning("state: cannot read %s (%s): starting from previous closes", state_key(settings), exc)
        return None
    finally:
        await client.aclose()
