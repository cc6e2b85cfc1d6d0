"""Live tick intake: decode MQTT payloads into a bounded staging batch, apply it in one kernel call.

The MQTT feed calls ``stage`` for every message and ``flush`` once per event-loop iteration (and
the clock calls ``flush`` before every valuation), so the Python/numba boundary is crossed once
per batch, not once per tick or per security. Every tick's outcome is counted by reason.

Ticks are staged in preallocated columns (``iopv.kernels.scanner`` rows: slot, ts, code, status;
price, bid, ask) that ``flush`` hands to ``apply_book_nb`` as they are. Two routes fill them:

- Every ``bytes`` payload -- a single tick object or an array of them -- goes first to the
  compiled scanner (``iopv.kernels.scanner.scan_payload_nb``), which reads the bytes and writes every
  tick's columns in one kernel call, symbols looked up in a compiled table of the book's index
  (rebuilt when a basket reload re-lays the book). The topic's symbol is worked out only when a
  tick has none. One call costs less than ``orjson.loads`` plus a few dict lookups, so even
  single-tick messages are faster this way (bench/ingest.py).
- A payload the scanner does not fully read (anything beyond plain tick objects with plain JSON
  numbers; see its docstring), or one that is not ``bytes``, is decoded in Python, whole, as
  before: orjson, then a fast path for a dict of exactly ``symbol`` (non-empty str), ``price``
  (float) and ``ts`` (int in range) that skips ``decode_tick_full``, which every other value
  goes through. These ticks are appended to three lists, the rare one that is not a plain
  accepted price (a rejection, a quote, a status) also records ``(position, code, bid, ask,
  status)`` in a side list; the lists are copied into the columns before the scanner writes
  after them, and at flush, so ticks are applied in arrival order.

``flush`` applies the columns in one ``iopv.kernels.ticks.apply_book_nb`` call, in event time
once the engine has called ``open``: a tick stamped after the open boundary waits in the held
set, and ``cut`` (the engine, at each boundary's cut) opens the next boundary and applies the
held ticks it covers (``iopv.kernels.ticks`` docstring; docs/methodology.md "Event time").

Either way the outcomes are those of ``decode_tick_full`` on the orjson value, flush points
included: tests/unit/test_intake_fast_path.py and tests/unit/test_tickscan.py check both routes against
a plain reference.
"""

from __future__ import annotations

import time

import numpy as np
import orjson

from iopv.core.constants import (
    MAX_TS,
    N_CLOCK,
    N_FLOAT_ROWS,
    N_INT_ROWS,
    N_OUTCOMES,
    NEVER_TS,
    REJECTIONS,
    ClockCell,
    TickFloatRow,
    TickIntRow,
    TickOutcome,
)
from iopv.engine.book import PriceBook
from iopv.engine.codec import decode_payload, decode_tick_full, topic_symbol
from iopv.kernels.scanner import PayloadScan, TopicSlot, resume_offset, scan_payload_nb
from iopv.kernels.symbols import symbol_table
from iopv.kernels.ticks import apply_book_nb, release_held_nb, remap_held_nb

_NAN = float("nan")
_UNSET = object()


class _Never:
    """No payload has this type (``TickIntake(scan=False)``)."""


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class TickIntake:
    """Decodes payloads into a bounded staging batch and applies it to a PriceBook."""

    def __init__(self, book: PriceBook, *, capacity: int = 65_536, topic_prefix: str = "ticks",
                 max_payload_bytes: int = 1 << 20, spike_pct: float = 0.0, spike_confirm_ticks: int = 3,
                 max_lead_ns: int = MAX_TS, scan: bool = True):
        """``scan=False`` decodes every payload in Python (the scanner's fallback route), for
        comparison: the outcomes are the same, only slower. (It ships because it is one
        attribute on the shipped route: bench ``ingest`` measures that route whole with it, and
        the tests check both routes agree.) Event time is off (every tick is
        applied as it arrives) until ``open`` gives the first boundary; ``max_lead_ns`` is then
        how far beyond the open boundary a tick may be stamped (``engine.max_lead_ms``)."""
        self.book = book
        self._scannable = bytes if scan else _Never  # payloads of this type go to the scanner
        self.spike_frac = spike_pct / 100.0
        self.spike_confirm = spike_confirm_ticks
        self.capacity = capacity
        self.topic_prefix = topic_prefix
        self.max_payload_bytes = max_payload_bytes
        self.counts = np.zeros(N_OUTCOMES, dtype=np.int64)
        self.messages = 0
        #: Oversize messages the feed skipped before they reached ``decode`` (never buffered).
        self.skipped_messages = 0
        self.last_accept_ns = 0  # receive time of the last flush that accepted a tick
        #: Called after every applied batch as hook(slots, outcome codes, count) (real-time mode);
        #: the arrays are the staging columns, valid during the call only.
        self.on_applied: list = []
        self._ints = np.zeros((N_INT_ROWS, capacity), dtype=np.int64)  # the staged columns
        self._floats = np.zeros((N_FLOAT_ROWS, capacity), dtype=np.float64)
        self._columns = (self._ints[TickIntRow.SLOT], self._floats[TickFloatRow.PRICE], self._floats[TickFloatRow.BID],
                         self._floats[TickFloatRow.ASK], self._ints[TickIntRow.TRADING], self._ints[TickIntRow.TS],
                         self._ints[TickIntRow.CODE])  # apply_book_nb's argument order
        self._filled = 0  # ticks in the columns
        #: The event-time clock the kernels read and update (``ClockCell``): horizon, last cut,
        #: max lead, held ticks. A horizon of MAX_TS holds nothing (arrival order, no cut yet).
        self.clock = np.array([MAX_TS, NEVER_TS, max_lead_ns, 0], dtype=np.int64)
        assert self.clock.size == N_CLOCK
        # The held set: ticks stamped after the horizon, in arrival order, laid out as the staging
        # columns; and where a release writes the slots and outcomes of the ticks it applied.
        self._held_ints = np.zeros((N_INT_ROWS, capacity), dtype=np.int64)
        self._held_floats = np.zeros((N_FLOAT_ROWS, capacity), dtype=np.float64)
        self._released = np.zeros((2, capacity), dtype=np.int64)
        # Ticks decoded in Python since the columns were last filled (staged after them).
        self._security: list[int] = []
        self._price: list[float] = []
        self._ts: list[int] = []
        #: (position in the lists, code, bid, ask, status) of those that are not plain accepted prices.
        self._extra: list[tuple[int, int, float, float, int]] = []
        self.warm_up()  # sets _index (the book index the symbol table is of) and _table

    def warm_up(self) -> None:
        """Load (or compile) the scanner and apply kernels and build the symbol table now, at
        start-up, not on the first message; stages nothing."""
        self._index = self.book.index
        self._table = symbol_table(self._index).table
        scan_payload_nb(b"[]", 0, self._table, self._ints, self._floats, 0, self.capacity,
                        TopicSlot.NO_SYMBOL, 0)
        self._apply(0)
        release_held_nb(self._held_ints, self._held_floats, self.clock, *self.book.arrays(),
                        self.spike_frac, self.spike_confirm, *self._released, self.counts)

    @property
    def pending(self) -> int:
        """Ticks staged, not applied yet."""
        return self._filled + len(self._ts)

    @property
    def held(self) -> int:
        """Ticks stamped after the open boundary, waiting for it (event time)."""
        return int(self.clock[ClockCell.HELD_TICKS])

    @property
    def horizon_ns(self) -> int:
        """The open boundary (MAX_TS before ``open``: event time off)."""
        return int(self.clock[ClockCell.HORIZON])

    @property
    def event_time(self) -> bool:
        return self.clock[ClockCell.HORIZON] != MAX_TS

    def open(self, horizon_ns: int) -> None:
        """Turn event time on: ticks stamped after ``horizon_ns`` (the first boundary) are held
        until their own boundary is open."""
        self.flush()
        self.clock[ClockCell.HORIZON] = horizon_ns

    def advance(self, boundary_ns: int) -> None:
        """Open ``boundary_ns`` if it is later than the open boundary (the clock skipped some):
        the held ticks stamped up to it are applied, before any tick staged since."""
        if self.clock[ClockCell.HORIZON] < boundary_ns:
            self.clock[ClockCell.HORIZON] = boundary_ns
            self._release()

    def cut(self, boundary_ns: int, next_boundary_ns: int) -> None:
        """``boundary_ns`` is cut (valued): a tick stamped at or before it is late from now on.
        ``next_boundary_ns`` opens: the held ticks stamped up to it are applied."""
        self.flush()
        if self.clock[ClockCell.HORIZON] != MAX_TS:
            self.clock[ClockCell.LAST_CUT] = max(self.clock[ClockCell.LAST_CUT], boundary_ns)
            self.clock[ClockCell.HORIZON] = max(self.clock[ClockCell.HORIZON], next_boundary_ns)
            self._release()

    def _release(self) -> None:
        if not self.clock[ClockCell.HELD_TICKS]:
            return
        slots, codes = self._released
        released = release_held_nb(self._held_ints, self._held_floats, self.clock, *self.book.arrays(),
                                   self.spike_frac, self.spike_confirm, slots, codes, self.counts)
        if released:
            self.last_accept_ns = time.time_ns()
            for hook in self.on_applied:
                hook(slots[:released], codes[:released], released)

    def remap_held(self, slot_map: np.ndarray) -> None:
        """After a basket swap re-laid the book: the held ticks' slots, old -> new (-1: gone)."""
        remap_held_nb(self._held_ints, int(self.clock[ClockCell.HELD_TICKS]), slot_map)

    def held_ticks(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the held set's (int rows, float rows), for a checkpoint."""
        n = int(self.clock[ClockCell.HELD_TICKS])
        return self._held_ints[:, :n].copy(), self._held_floats[:, :n].copy()

    def restore_held(self, ints: np.ndarray, floats: np.ndarray) -> None:
        """Put ticks back in the held set (a checkpoint's), after those already there."""
        n = int(self.clock[ClockCell.HELD_TICKS])
        count = min(ints.shape[1], self.capacity - n)
        self._held_ints[:, n:n + count] = ints[:, :count]
        self._held_floats[:, n:n + count] = floats[:, :count]
        self.clock[ClockCell.HELD_TICKS] = n + count

    def stage(self, payload: bytes, topic: str | None = None, recv_ts_ns: int | None = None) -> None:
        """Stage the ticks of one message (a JSON object or array) received at ``recv_ts_ns``
        (default: now). Never raises on bad input. Recording what was received (the audit
        journal) is the feed's business, before it calls this."""
        self.messages += 1
        if len(payload) > self.max_payload_bytes:
            self._stage_rejection(TickOutcome.OVERSIZE_PAYLOAD)
            return
        if type(payload) is self._scannable:  # the compiled scanner; most messages end here
            if self.book.index is not self._index:  # the first message, or a basket reload
                self._index = self.book.index
                self._table = symbol_table(self._index).table
            if self._ts:
                self._spill()
            if recv_ts_ns is None:
                recv_ts_ns = time.time_ns()
            filled = self._filled
            scanned = scan_payload_nb(payload, 0, self._table, self._ints, self._floats, filled,
                                      self.capacity - filled, TopicSlot.UNRESOLVED, recv_ts_ns)
            if scanned >= 0:
                self._filled = filled = filled + scanned
                if filled >= self.capacity:
                    self.flush()
                return
            if scanned != PayloadScan.FALLBACK and self._scan_on(payload, topic, recv_ts_ns, scanned):
                return
        self._decode_python(payload, topic, recv_ts_ns)

    #: The name the journal replay and the tests use: the same method.
    decode = stage

    def reject_oversize(self) -> None:
        """Count one message over ``max_payload_bytes`` that the MQTT feed skipped unread: an
        ``oversize_payload`` outcome, not a message decoded (``messages`` counts what ``decode``
        saw, which is what the journal records and a journal replay counts again)."""
        self.skipped_messages += 1
        self._stage_rejection(TickOutcome.OVERSIZE_PAYLOAD)

    def _scan_on(self, payload: bytes, topic: str | None, recv_ts_ns: int, scanned: int) -> bool:
        """Finish a scan that stopped short: work out the topic's symbol (PayloadScan.NEED_TOPIC) and
        scan again, or flush the full batch and resume; False if the payload falls back."""
        topic_slot = TopicSlot.UNRESOLVED
        start = 0
        while True:
            if scanned == PayloadScan.NEED_TOPIC:
                symbol = topic_symbol(topic, self.topic_prefix) if topic else None
                topic_slot = TopicSlot.NO_SYMBOL if symbol is None else self._index.get(symbol, -1)
            elif scanned == PayloadScan.FALLBACK:
                if start:  # the first call read the whole payload: the rest cannot fail
                    raise AssertionError("tick scanner: a payload it accepted failed on resume")
                return False
            else:  # the batch is full and more ticks follow, as the Python route would
                self._filled = self.capacity
                self.flush()
                start = resume_offset(scanned)
            filled = self._filled
            scanned = scan_payload_nb(payload, start, self._table, self._ints, self._floats, filled,
                                      self.capacity - filled, topic_slot, recv_ts_ns)
            if scanned >= 0:
                self._filled = filled + scanned
                if self._filled >= self.capacity:
                    self.flush()
                return True

    def _decode_python(self, payload, topic: str | None, recv_ts_ns: int | None) -> None:
        """Stage a message the scanner does not read: orjson, then the fast path or
        ``decode_tick_full``."""
        try:
            document = _loads(payload)
        except _JSONDecodeError:
            items, ok = decode_payload(payload)  # the standard library's second look (1e400)
            if not ok:
                self._stage_rejection(TickOutcome.MALFORMED_JSON)
                return
        else:
            if type(document) is dict and len(document) == 3:
                # A single plain tick: _stage_items' fast path, inlined on purpose (through
                # _stage_items((document,), ...) the Python route's single messages measured
                # 1.17 -> 1.5-1.65 us each); the rule is _stage_items', keep the two alike.
                price = document.get("price")
                ts = document.get("ts")
                symbol = document.get("symbol")
                if (type(price) is float and type(ts) is int and type(symbol) is str and symbol
                        and 0 <= ts <= MAX_TS):
                    self._security.append(self.book.index.get(symbol, -1))
                    self._price.append(price)
                    self._ts.append(ts)
                    if self.pending >= self.capacity:
                        self.flush()
                    return
            items = document if type(document) is list else [document]
        room = self.capacity - self.pending
        if len(items) <= room:
            self._stage_items(items, topic, recv_ts_ns)
            if len(items) == room:
                self.flush()
            return
        # More than the room left: stage it in slices, flushing whenever the batch is full.
        start = 0
        while start < len(items):
            room = self.capacity - self.pending
            self._stage_items(items[start:start + room], topic, recv_ts_ns)
            start += room
            if self.pending >= self.capacity:
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
            if code != TickOutcome.ACCEPTED or status or bid == bid or ask == ask:  # x == x: not NaN
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
        if self.pending >= self.capacity:
            self.flush()

    def _spill(self) -> None:
        """Copy the ticks decoded in Python into the columns, after those already there."""
        low = self._filled
        high = low + len(self._ts)
        security, price, bid, ask, status, ts, code = (column[low:high] for column in self._columns)
        security[:] = self._security
        price[:] = self._price
        ts[:] = self._ts
        code[:] = 0
        bid[:] = _NAN
        ask[:] = _NAN
        status[:] = 0
        if self._extra:
            position, extra_code, extra_bid, extra_ask, extra_status = zip(*self._extra)
            position = np.array(position, dtype=np.int64)
            code[position] = extra_code
            bid[position] = extra_bid
            ask[position] = extra_ask
            status[position] = extra_status
            self._extra.clear()
        self._security.clear()
        self._price.clear()
        self._ts.clear()
        self._filled = high

    def flush(self) -> int:
        """Apply every staged tick to the book in one kernel call; returns the number accepted."""
        if self._ts:
            self._spill()
        count = self._filled
        if not count:
            return 0
        accepted = self._apply(count)
        security, code = self._columns[0], self._columns[6]
        self._filled = 0
        if accepted:
            self.last_accept_ns = time.time_ns()
        for hook in self.on_applied:
            hook(security[:count], code[:count], count)
        return int(accepted)

    def _apply(self, count: int) -> int:
        return apply_book_nb(*self._columns, count, *self.book.arrays(), self.spike_frac, self.spike_confirm,
                             self.clock, self._held_ints, self._held_floats, self.counts)

    @property
    def received(self) -> int:
        return int(self.counts.sum())

    @property
    def accepted(self) -> int:
        return int(self.counts[TickOutcome.ACCEPTED])

    @property
    def late(self) -> int:
        return int(self.counts[TickOutcome.LATE])

    @property
    def rejected(self) -> int:
        return int(self.counts[sorted(REJECTIONS)].sum())
