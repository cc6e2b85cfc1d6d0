"""Live tick intake: decode MQTT payloads into a bounded staging batch, apply it in one kernel call.

The MQTT reader calls ``decode`` for every message and ``flush`` when its queue runs dry (and
the clock calls ``flush`` before every valuation), so the Python/numba boundary is crossed once
per batch, not once per tick or per security. Every tick's outcome is counted by reason.
"""

from __future__ import annotations

import time

import numpy as np

from iopv.book import PriceBook
from iopv.codec import decode_payload, decode_tick, topic_symbol
from iopv.codes import ACCEPTED, FIRST_REJECT, MALFORMED_JSON, N_CODES, OVERSIZE_PAYLOAD
from iopv.kernels import apply_ticks_nb


class TickIntake:
    """Decodes payloads into staging lists and applies them to a PriceBook in batches."""

    def __init__(self, book: PriceBook, *, capacity: int = 65_536, topic_prefix: str = "ticks",
                 max_payload_bytes: int = 1 << 20):
        self.book = book
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

    @property
    def pending(self) -> int:
        return len(self._code)

    def decode(self, payload: bytes, topic: str | None = None, recv_ts_ns: int | None = None) -> None:
        """Stage the ticks of one message (a JSON object or array). Never raises on bad input."""
        self.messages += 1
        if recv_ts_ns is None:
            recv_ts_ns = time.time_ns()
        if len(payload) > self.max_payload_bytes:
            self._stage(OVERSIZE_PAYLOAD, -1, 0.0, 0)
            return
        items, ok = decode_payload(payload)
        if not ok:
            self._stage(MALFORMED_JSON, -1, 0.0, 0)
            return
        default_symbol = topic_symbol(topic, self.topic_prefix) if topic else None
        index = self.book.index
        for item in items:
            code, security, price, ts = decode_tick(item, default_symbol, recv_ts_ns, index)
            self._stage(code, security, price, ts)

    def _stage(self, code: int, security: int, price: float, ts: int) -> None:
        self._code.append(code)
        self._security.append(security)
        self._price.append(price)
        self._ts.append(ts)
        if len(self._code) >= self.capacity:
            self.flush()

    def flush(self) -> int:
        """Apply every staged tick to the book in one kernel call; returns the number accepted."""
        if not self._code:
            return 0
        code = np.array(self._code, dtype=np.int64)
        accepted = apply_ticks_nb(np.array(self._security, dtype=np.int64),
                                  np.array(self._price, dtype=np.float64),
                                  np.array(self._ts, dtype=np.int64), code, code.size,
                                  self.book.prices, self.book.last_ts)
        self.counts += np.bincount(code, minlength=N_CODES)
        self._code.clear()
        self._security.clear()
        self._price.clear()
        self._ts.clear()
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
        return int(self.counts[FIRST_REJECT:].sum())
