"""Live tick intake: decode MQTT payloads into a bounded staging batch, apply it in one kernel call.

The MQTT feed calls ``decode`` for every message and ``flush`` once per event-loop iteration (and
the clock calls ``flush`` before every valuation), so the Python/numba boundary is crossed once
per batch, not once per tick or per security. Every tick's outcome is counted by reason.

The per-tick Python is the cost that matters here (the kernel is a fraction of it), so staging
is lean: every tick appends its slot, price and ts to three lists; the rare tick that is not a
plain accepted price (a rejection, a quote, a status) also records ``(position, code, bid, ask,
status)`` in a side list, scattered over default-filled arrays at flush. A common well-formed
tick -- a dict of exactly ``symbol`` (non-empty str), ``price`` (float) and ``ts`` (int in range)
-- skips ``decode_tick_full`` entirely; every other value goes through it, so outcomes are
identical (tests/test_intake_fast_path.py checks both paths against a plain reference).
"""

from __future__ import annotations

import time

import numpy as np
import orjson

from iopv.book import PriceBook
from iopv.codec import MAX_TS, decode_payload, decode_tick_full, topic_symbol
from iopv.codes import ACCEPTED, MALFORMED_JSON, N_CODES, OVERSIZE_PAYLOAD, REJECTIONS
from iopv.kernels import apply_book_nb

_NAN = float("nan")
_UNSET = object()
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class TickIntake:
    """Decodes payloads into a bounded staging batch and applies it to a PriceBook."""

    def __init__(self, book: PriceBook, *, capacity: int = 65_536, topic_prefix: str = "ticks",
                 max_payload_bytes: int = 1 << 20, spike_pct: float = 0.0, spike_confirm_ticks: int = 3):
        self.book = book
        self.spike_frac = spike_pct / 100.0
        self.spike_confirm = spike_confirm_ticks
        self.capacity = capacity
        self.topic_prefix = topic_prefix
        self.max_payload_bytes = max_payload_bytes
        self.counts = np.zeros(N_CODES, dtype=np.int64)
        self.messages = 0
        self.last_accept_ns = 0  # receive time of the last flush that accepted a tick
        #: Called after every applied batch as hook(slots, outcome codes, count) (real-time mode).
        self.on_applied: list = []
        self._security: list[int] = []
        self._price: list[float] = []
        self._ts: list[int] = []
        #: (position, code, bid, ask, status) of staged ticks that are not plain accepted prices.
        self._extra: list[tuple[int, int, float, float, int]] = []

    @property
    def pending(self) -> int:
        return len(self._ts)

    def decode(self, payload: bytes, topic: str | None = None, recv_ts_ns: int | None = None) -> None:
        """Stage the ticks of one message (a JSON object or array). Never raises on bad input."""
        self.messages += 1
        if len(payload) > self.max_payload_bytes:
            self._stage_rejection(OVERSIZE_PAYLOAD)
            return
        try:
            document = _loads(payload)
        except _JSONDecodeError:
            items, ok = decode_payload(payload)  # the standard library's second look (1e400)
            if not ok:
                self._stage_rejection(MALFORMED_JSON)
                return
        else:
            if type(document) is dict and len(document) == 3:
                # A single plain tick (most MQTT messages): _stage_items' fast path, inlined.
                price = document.get("price")
                ts = document.get("ts")
                symbol = document.get("symbol")
                if (type(price) is float and type(ts) is int and type(symbol) is str and symbol
                        and 0 <= ts <= MAX_TS):
                    self._security.append(self.book.index.get(symbol, -1))
                    self._price.append(price)
                    self._ts.append(ts)
                    if len(self._ts) >= self.capacity:
                        self.flush()
                    return
            items = document if type(document) is list else [document]
        room = self.capacity - len(self._ts)
        if len(items) <= room:
            self._stage_items(items, topic, recv_ts_ns)
            if len(items) == room:
                self.flush()
            return
        # More than the room left: stage it in slices, flushing whenever the batch is full.
        start = 0
        while start < len(items):
            room = self.capacity - len(self._ts)
            self._stage_items(items[start:start + room], topic, recv_ts_ns)
            start += room
            if len(self._ts) >= self.capacity:
                self.flush()

    def _stage_items(self, items: list, topic: str | None, recv_ts_ns: int | None) -> None:
        """Stage decoded JSON values; the caller guarantees they fit in the batch."""
        index = self.book.index
        index_get = index.get
        security_append = self._security.append
        price_append = self._price.append
        ts_append = self._ts.append
        default_symbol = _UNSET
        for item in items:
            if type(item) is dict and len(item) == 3:
                price = item.get("price")
                ts = item.get("ts")
                symbol = item.get("symbol")
                if (type(price) is float and type(ts) is int and type(symbol) is str and symbol
                        and 0 <= ts <= MAX_TS):
                    security_append(index_get(symbol, -1))
                    price_append(price)
                    ts_append(ts)
                    continue
            # Anything else: the full decoder, with the topic's symbol and the receive time.
            if default_symbol is _UNSET:
                default_symbol = topic_symbol(topic, self.topic_prefix) if topic else None
                if recv_ts_ns is None:
                    recv_ts_ns = time.time_ns()
            code, security, price, bid, ask, status, ts = decode_tick_full(
                item, default_symbol, recv_ts_ns, index)
            if code != ACCEPTED or status or bid == bid or ask == ask:  # x == x: not NaN
                self._extra.append((len(self._ts), code, bid, ask, status))
            security_append(security)
            price_append(price)
            ts_append(ts)

    def _stage_rejection(self, code: int) -> None:
        """Stage one message-level rejection (counted once per message)."""
        self._extra.append((len(self._ts), code, _NAN, _NAN, 0))
        self._security.append(-1)
        self._price.append(0.0)
        self._ts.append(0)
        if len(self._ts) >= self.capacity:
            self.flush()

    def flush(self) -> int:
        """Apply every staged tick to the book in one kernel call; returns the number accepted."""
        count = len(self._ts)
        if not count:
            return 0
        security = np.array(self._security, dtype=np.int64)
        price = np.array(self._price, dtype=np.float64)
        ts = np.array(self._ts, dtype=np.int64)
        code = np.zeros(count, dtype=np.int64)
        bid = np.full(count, _NAN)
        ask = np.full(count, _NAN)
        status = np.zeros(count, dtype=np.int64)
        if self._extra:
            position, extra_code, extra_bid, extra_ask, extra_status = zip(*self._extra)
            position = np.array(position, dtype=np.int64)
            code[position] = extra_code
            bid[position] = extra_bid
            ask[position] = extra_ask
            status[position] = extra_status
        accepted = apply_book_nb(security, price, bid, ask, status, ts, code, count,
                                 *self.book.arrays(), self.spike_frac, self.spike_confirm)
        self.counts += np.bincount(code, minlength=N_CODES)
        self._security.clear()
        self._price.clear()
        self._ts.clear()
        self._extra.clear()
        if accepted:
            self.last_accept_ns = time.time_ns()
        for hook in self.on_applied:
            hook(security, code, count)
        return int(accepted)

    @property
    def received(self) -> int:
        return int(self.counts.sum())

    @property
    def accepted(self) -> int:
        return int(self.counts[ACCEPTED])

    @property
    def rejected(self) -> int:
        return int(self.counts[sorted(REJECTIONS)].sum())
