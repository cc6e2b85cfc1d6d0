"""Live tick intake: decode MQTT payloads into a bounded staging batch, apply it in one kernel call.

The MQTT reader calls ``decode`` for every message and ``flush`` when its queue runs dry (and
the clock calls ``flush`` before every valuation), so the Python/numba boundary is crossed once
per batch, not once per tick or per security. Every tick's outcome is counted by reason.
"""

from __future__ import annotations

import time

import numpy as np

from iopv.book import PriceBook
from iopv.codec import decode_payload, decode_tick_full, topic_symbol
from iopv.codes import ACCEPTED, MALFORMED_JSON, N_CODES, OVERSIZE_PAYLOAD, REJECTIONS
from iopv.kernels import apply_book_nb

_NAN = float("nan")


class TickIntake:
    """Decodes payloads into staging lists and applies them to a PriceBook in batches."""

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
        self._code: list[int] = []
        self._security: list[int] = []
        self._price: list[float] = []
        self._ts: list[int] = []
        self._bid: list[float] = []
        self._ask: list[float] = []
        self._status: list[int] = []

    @property
    def pending(self) -> int:
        return len(self._code)

    def decode(self, payload: bytes, topic: str | None = None, recv_ts_ns: int | None = None) -> None:
        """Stage the ticks of one message (a JSON object or array). Never raises on bad input."""
        self.messages += 1
        if recv_ts_ns is None:
            recv_ts_ns = time.time_ns()
        if len(payload) > self.max_payload_bytes:
            self._stage(OVERSIZE_PAYLOAD, -1, 0.0, _NAN, _NAN, 0, 0)
            return
        items, ok = decode_payload(payload)
        if not ok:
            self._stage(MALFORMED_JSON, -1, 0.0, _NAN, _NAN, 0, 0)
            return
        default_symbol = topic_symbol(topic, self.topic_prefix) if topic else None
        index = self.book.index
        for item in items:
            self._stage(*decode_tick_full(item, default_symbol, recv_ts_ns, index))

    def _stage(self, code: int, security: int, price: float, bid: float, ask: float, status: int,
               ts: int) -> None:
        self._code.append(code)
        self._security.append(security)
        self._price.append(price)
        self._bid.append(bid)
        self._ask.append(ask)
        self._status.append(status)
        self._ts.append(ts)
        if len(self._code) >= self.capacity:
            self.flush()

    def flush(self) -> int:
        """Apply every staged tick to the book in one kernel call; returns the number accepted."""
        if not self._code:
            return 0
        code = np.array(self._code, dtype=np.int64)
        accepted = apply_book_nb(np.array(self._security, dtype=np.int64),
                                 np.array(self._price, dtype=np.float64),
                                 np.array(self._bid, dtype=np.float64),
                                 np.array(self._ask, dtype=np.float64),
                                 np.array(self._status, dtype=np.int64),
                                 np.array(self._ts, dtype=np.int64), code, code.size,
                                 *self.book.arrays(), self.spike_frac, self.spike_confirm)
        self.counts += np.bincount(code, minlength=N_CODES)
        for staged in (self._code, self._security, self._price, self._bid, self._ask,
                       self._status, self._ts):
            staged.clear()
        if accepted:
            self.last_accept_ns = time.time_ns()
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
