"""The straightforward tick intake the engine's must match outcome for outcome: every payload
decoded in Python (orjson, the standard library for 1e400, then ``decode_tick_full``), staged as
seven columns, applied ``capacity`` ticks at a time in one ``apply_book_nb`` call. Shared by
tests/unit/test_intake_fast_path.py and tests/unit/test_tickscan.py."""

from __future__ import annotations

import math

import numpy as np

from iopv.core.constants import MAX_TS, N_FLOAT_ROWS, N_INT_ROWS, N_OUTCOMES, NEVER_TS, TickOutcome
from iopv.engine.book import PriceBook
from iopv.engine.codec import decode_payload, decode_tick_full, topic_symbol
from iopv.kernels.ticks import apply_book_nb

#: The receive time both intakes are given (and ticks without a ts take).
RECV_TS = 1_000_000


class ReferenceIntake:
    """Plain Python intake over ``book``; ``codes`` keeps every tick's final outcome, in order."""

    def __init__(self, book: PriceBook, capacity: int, spike_pct: float = 0.0, *, max_payload: int):
        self.book, self.capacity, self.spike_frac = book, capacity, spike_pct / 100.0
        self.max_payload = max_payload
        self.counts = np.zeros(N_OUTCOMES, dtype=np.int64)
        self.staged: list[tuple] = []
        self.codes: list[int] = []

    def decode(self, payload: bytes, topic: str | None) -> None:
        nan = math.nan
        if len(payload) > self.max_payload:
            return self._stage((TickOutcome.OVERSIZE_PAYLOAD, -1, 0.0, nan, nan, 0, 0))
        items, ok = decode_payload(payload)
        if not ok:
            return self._stage((TickOutcome.MALFORMED_JSON, -1, 0.0, nan, nan, 0, 0))
        default = topic_symbol(topic, "ticks") if topic else None
        for item in items:
            self._stage(decode_tick_full(item, default, RECV_TS, self.book.index))

    def _stage(self, row: tuple) -> None:
        self.staged.append(row)
        if len(self.staged) >= self.capacity:
            self.flush()

    def columns(self) -> list[np.ndarray]:
        """(slot, price, bid, ask, status, ts, code) of the staged ticks."""
        code, security, price, bid, ask, status, ts = zip(*self.staged) if self.staged else [()] * 7
        return [np.array(security, dtype=np.int64), np.array(price, dtype=np.float64),
                np.array(bid, dtype=np.float64), np.array(ask, dtype=np.float64),
                np.array(status, dtype=np.int64), np.array(ts, dtype=np.int64),
                np.array(code, dtype=np.int64)]

    def flush(self) -> None:
        if not self.staged:
            return
        security, price, bid, ask, status, ts, code = self.columns()
        apply_book_nb(security, price, bid, ask, status, ts, code, code.size, *self.book.arrays(),
                      self.spike_frac, 3, *arrival_clock(), self.counts)
        self.codes.extend(code.tolist())
        self.staged.clear()


def arrival_clock(capacity: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The event-time arguments of ``apply_book_nb`` for arrival order (nothing held, no cut):
    (clock, held int rows, held float rows)."""
    clock = np.array([MAX_TS, NEVER_TS, MAX_TS, 0], dtype=np.int64)
    return clock, np.zeros((N_INT_ROWS, capacity), dtype=np.int64), np.zeros((N_FLOAT_ROWS, capacity))
