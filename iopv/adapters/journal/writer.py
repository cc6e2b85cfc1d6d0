"""The live journal writer: a bounded queue, one writer thread, write-ahead boundary markers.

The event loop's share is small. The MQTT feed hands over each socket read's QoS 0 PUBLISH
packets at once (``publishes``), recorded as received in one READ record (one copy of the bytes
read). Any other tick message the intake receives is appended to a list (``tick``),
packed into TICK records by one kernel call per batch (``iopv.kernels.journal``). The records go
into a buffer, which is handed to the writer thread as one queue item every
``ops.journal_flush_ms`` and at each published boundary, ending with that boundary's marker
(``boundary``). The thread compresses each item into one block and ``os.write`` them (both
release the GIL). When a marker's block has been handed to the operating system, the thread
tells the loop, which then -- and only then -- offers that boundary's values to the sinks
(write-ahead): a killed process never leaves a published value the journal cannot reproduce. The
clock never waits: a marker not written within ``ops.journal_max_wait_ms`` releases its values
anyway (logged, counted in ``late_releases``). Once a second the file is also synced
(``fdatasync``), so a machine crash loses at most about a second.

When more than ``ops.journal_queue_bytes`` wait (the disk cannot keep up), new tick messages
are dropped, counted (``dropped``), logged, and a DROP record marks the place; a file
``<journal>.incomplete`` next to the day's file flags the day. Markers and basket records are never
dropped. A failing disk (an ``OSError``) stops the journal, logged as an error, and releases every
held boundary: values keep flowing, the day is incomplete.

Files (``files``): one per instance and UTC day, appended to after a torn tail is cut. The file
rotates at the first published boundary of a new UTC day and starts with the session settings,
the basket file and a checkpoint of the book, so each day's file replays on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import struct
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import orjson

from iopv.adapters.journal import files
from iopv.adapters.journal import format as fmt
from iopv.adapters.journal.records import TickPacker, basket_body, read_body, read_span, session_body
from iopv.config import ConfigError, Settings
from iopv.core.constants import DAY_NS
from iopv.core.universe import Universe
from iopv.engine.journal_replay import publication_digest

log = logging.getLogger(__name__)

_ROTATE = object()  # an internal queue item: close this file, start the next day's
_SYNC_EVERY_S = 1.0
_CLOSE_WAIT_S = 10.0  # at stop, the most aclose waits for the writer thread
#: Messages at most this long are batched (the hot path); longer ones are packed at once.
_SMALL_PAYLOAD = 4096
_BATCH_ITEMS = 16_384


class JournalWriter:
    """Records a live session (see the module docstring). Loop-thread API: ``start``, ``tick``,
    ``basket``, ``restored``, ``boundary``, ``aclose``."""

    def __init__(self, settings: Settings, *, max_payload_bytes: int = 1 << 20):
        ops = settings.ops
        self.settings = settings
        self.directory = Path(ops.journal_dir)
        self.instance = settings.engine.instance
        self.retention_days = ops.journal_retention_days
        self.flush_s = ops.journal_flush_ms / 1e3
        self.max_wait_s = ops.journal_max_wait_ms / 1e3
        self.max_payload_bytes = max_payload_bytes
        self.bound_bytes = ops.journal_queue_bytes
        # The loop thread copies records into _buffer and hands it over (_handoff) as one item of
        # _queue: ([buffer], marker or None) or (_ROTATE, time). One buffer, not a list of parts:
        # the writer compresses it in one call, so it gives up and takes back the GIL once per
        # item, not once per part (each a hand-off the event loop pays for). _handed / _consumed
        # count raw bytes handed over / taken by the writer (each written by one thread only).
        self._buffer = bytearray()
        self._items: list = []  # (receive time, topic, payload) not yet packed
        self._packer = TickPacker()
        self._room = 0
        self._queue: deque = deque()
        self._handed = 0
        self._consumed = 0
        self._drop_run = 0  # tick messages dropped since the last one recorded
        self.dropped = 0
        self.late_releases = 0
        self.bytes_written = 0
        self.blocks = 0
        self.failed: str | None = None
        self.path: Path | None = None
        self._day = -1  # the UTC day (number) of the file in use, as the loop thread sees it
        self._fd = -1
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._seq = 0
        self._held: deque = deque()  # (marker seq, release) waiting for their block
        self._basket: tuple[dict, bytes] | None = None  # the basket in use, for a rotation
        self._last_sync = 0.0
        self._set_room()

    def stats(self) -> dict[str, float]:
        """Counters for ``/metrics`` (``iopv_journal_*``)."""
        return {"dropped": self.dropped, "late_releases": self.late_releases, "bytes_written": self.bytes_written,
                "queued_bytes": self._pending_bytes(), "failed": self.failed is not None}

    # -- the event loop's side -------------------------------------------------------------

    def start(self, universe: Universe, horizon_ns: int | None = None) -> None:
        """Open today's file (appending), record the session (``horizon_ns``: the boundary the
        engine opened) and its basket, start the thread."""
        self._loop = asyncio.get_running_loop()
        now = time.time_ns()
        self._day = now // DAY_NS
        try:
            self._open(now)
        except OSError as exc:
            raise ConfigError(f"ops.journal_dir: cannot open the journal in {self.directory}: {exc}") from None
        self._session("start", now, horizon_ns=horizon_ns)
        self.basket(universe, "start")
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()
        self._timer = self._loop.call_later(self.flush_s, self._periodic)
        log.info("journal: recording to %s", self.path)

    def tick(self, payload, topic: str | None, recv_ts_ns: int) -> None:
        """A tick message as the intake received it. The hot path is one list append; the list
        is packed into records by one kernel call per batch (``_pack``); a message too large for
        the batch, or a batch at its bound, goes the slow way."""
        items = self._items
        if len(items) < self._room and len(payload) <= _SMALL_PAYLOAD:
            items.append((recv_ts_ns, topic, payload))
        else:
            self._tick_slow(payload, topic, recv_ts_ns)

    def publishes(self, recv_ts_ns: int, buffer: bytes, rows: np.ndarray) -> None:
        """The QoS 0 PUBLISH packets of one socket read, all received at ``recv_ts_ns``: ``rows``
        holds each one's start, topic start, topic end and end offsets in ``buffer``
        (``TickSocket``; valid during the call only). They are recorded as they were received, in
        one READ record (``records.read_body``), copied once into the buffer. The intake stages
        these messages unrecorded (``TickIntake.stage``)."""
        if self._items:
            self._pack()  # the messages recorded one by one before this read stay ahead of it
        pending = self._pending_bytes()
        if pending + read_span(rows) > self.bound_bytes or self._thread is None or self.failed is not None:
            self._drop(len(rows), pending)
            return
        self._end_drop_run()
        body = read_body(buffer, rows)
        self._add(fmt.read_header(recv_ts_ns, len(body)))
        self._add(body)
        if len(self._buffer) >= fmt.BLOCK_RAW_BYTES:
            self._handoff()
        else:
            self._set_room()

    def _pack(self) -> None:
        """Pack the waiting tick messages into the buffer, in order."""
        if self._items:
            items, self._items = self._items, []
            self._add(self._packer.pack(items))

    def _add(self, part) -> None:
        self._buffer += memoryview(part)  # (a uint8 array would broadcast a numpy add)

    def _pending_bytes(self) -> int:
        return self._handed - self._consumed + len(self._buffer)

    def _set_room(self) -> None:
        """Messages the list may take before the slow path checks the bounds again."""
        free = self.bound_bytes - self._pending_bytes()
        self._room = 0 if self.failed is not None else max(0, min(_BATCH_ITEMS, free // (_SMALL_PAYLOAD + 64)))

    def _tick_slow(self, payload, topic: str | None, recv_ts_ns: int) -> None:
        self._pack()
        if len(self._buffer) >= fmt.BLOCK_RAW_BYTES:
            self._handoff()
        pending = self._pending_bytes()
        if pending >= self.bound_bytes or self._thread is None or self.failed is not None:
            self._drop(1, pending)
            return
        self._end_drop_run()
        if len(payload) > self.max_payload_bytes:
            self._add(fmt.encode_oversize(recv_ts_ns, topic, len(payload)))
        else:
            self._add(fmt.encode_tick(recv_ts_ns, topic, payload))
        self._set_room()

    def _drop(self, count: int, pending: int) -> None:
        """``count`` tick messages not recorded (the queue is full, or the journal stopped)."""
        if not self._drop_run:
            log.warning("journal: queue full (%d bytes waiting): dropping tick messages, the day is "
                        "incomplete", pending)
        self._drop_run += count
        self.dropped += count
        self._set_room()

    def _end_drop_run(self) -> None:
        """After dropped messages, the DROP record that marks the gap where it is."""
        if self._drop_run:
            log.warning("journal: %d tick message(s) dropped (queue full); %d dropped so far",
                        self._drop_run, self.dropped)
            self._add(fmt.encode_record(fmt.DROP, time.time_ns(), struct.pack("<Q", self._drop_run)))
            self._flag_incomplete(f"{self._drop_run} tick message(s) dropped (queue full)")
            self._drop_run = 0

    def _handoff(self, marker: tuple | None = None) -> None:
        """Hand the buffer (and the marker that ends it) to the writer thread."""
        self._pack()
        buffer = self._buffer
        self._buffer = bytearray()
        self._handed += len(buffer)
        self._queue.append(([buffer] if buffer else [], marker))
        self._set_room()
        self._wake.set()

    def _periodic(self) -> None:
        if self._buffer or self._items:
            self._handoff()
        else:
            self._set_room()
        if not self._closing:
            self._timer = self._loop.call_later(self.flush_s, self._periodic)

    def _record(self, kind: int, time_ns: int, body: bytes) -> None:
        self._pack()
        self._end_drop_run()
        self._add(fmt.encode_record(kind, time_ns, body))

    def basket(self, universe: Universe, reason: str = "reload") -> None:
        """Record the basket file now in use (at start, and at a swap: the record's place in the
        stream is where the engine swapped it). The file's bytes are read again and must hash to
        the universe's version; otherwise the record says so and the day is incomplete."""
        meta = {"version": universe.version, "source": universe.source, "reason": reason}
        try:
            data = Path(universe.source).read_bytes()
        except OSError as exc:
            data, meta["error"] = b"", f"cannot read: {exc.strerror or exc}"
        else:
            if hashlib.sha256(data).hexdigest()[:12] != universe.version:
                data, meta["error"] = b"", "the file changed after it was loaded"
        if "error" in meta:
            log.error("journal: basket %s not recorded (%s): replays after this point will fail",
                      universe.source, meta["error"])
            self._flag_incomplete(f"basket {universe.source}: {meta['error']}")
        self._basket = (meta, data)
        self._record(fmt.BASKET, time.time_ns(), basket_body(meta, data))

    def restored(self, state: bytes, clock_ns: int) -> None:
        """Record the restart state restored at start (``clock_ns``: the clock restore used)."""
        self._record(fmt.RESTORE, clock_ns, bytes(state))

    def health(self, event: str, detail: str, time_ns: int) -> None:
        """Record a change of the book's wholeness (``iopv.service.recovery``)."""
        self._record(fmt.HEALTH, time_ns, orjson.dumps({"event": event, "detail": detail}))

    def transferred(self, state: bytes, time_ns: int) -> None:
        """Record a whole peer's state merged into the book (state transfer)."""
        self._record(fmt.TRANSFER, time_ns, bytes(state))

    def boundary(self, boundary_ns: int, publication, release, checkpoint, messages: int) -> None:
        """Record the marker of a published boundary; ``release()`` (which offers its values to
        the sinks) is called once the marker is handed to the OS, or after max_wait.
        ``checkpoint()``: the book at this boundary (restart-state JSON), called if the day rotates;
        ``messages``: tick messages the intake received since start (a replay checks it)."""
        if self.failed is not None or self._thread is None:
            release()
            return
        day = boundary_ns // DAY_NS
        if day != self._day:
            self._day = day
            self._handoff()
            self._queue.append((_ROTATE, boundary_ns))
            # The new file's engine opens this boundary: the checkpoint is its book, held set
            # included, just before this boundary's values.
            self._session("rotate", boundary_ns, messages, horizon_ns=boundary_ns)
            meta, data = self._basket
            self._record(fmt.BASKET, boundary_ns, basket_body({**meta, "reason": "rotate"}, data))
            self._record(fmt.CHECKPOINT, boundary_ns, checkpoint() if callable(checkpoint) else checkpoint)
        self._seq += 1
        self._held.append((self._seq, release))
        self._handoff((self._seq, boundary_ns, publication, messages))
        if self.max_wait_s > 0:
            self._loop.call_later(self.max_wait_s, self._expire, self._seq)

    def _confirmed(self, seq: int) -> None:
        held = self._held
        while held and held[0][0] <= seq:
            held.popleft()[1]()

    def _expire(self, seq: int) -> None:
        if self._held and self._held[0][0] <= seq:
            late = sum(1 for s, _ in self._held if s <= seq)
            self.late_releases += late
            log.warning("journal: marker not written within %.0f ms: %d boundary value set(s) released "
                        "before their marker (%d so far)", self.max_wait_s * 1e3, late, self.late_releases)
            self._confirmed(seq)

    def _release_all(self) -> None:
        self._confirmed(self._seq)

    def _on_failed(self) -> None:
        """The writer thread stopped: count what waits as dropped, and every message after it."""
        self.dropped += len(self._items)
        self._items = []
        self._buffer = bytearray()
        self._room = 0
        self._release_all()

    async def aclose(self) -> None:
        """Write what waits and an END record, stop the thread, release every held boundary."""
        if self._thread is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        if self.failed is None:
            self._record(fmt.END, time.time_ns(), b"")
            self._handoff()
        self._closing = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join, _CLOSE_WAIT_S)
        self._release_all()
        if self._thread.is_alive():  # a slow disk: the thread closes the file when it is done
            log.warning("journal: still writing %d bytes after %.0f s at stop; the process may exit before "
                        "they are written (the day is then cut short, as by a kill)", self._pending_bytes(),
                        _CLOSE_WAIT_S)
        elif self._fd >= 0:  # the thread stopped on a failure
            os.close(self._fd)
            self._fd = -1

    def _session(self, reason: str, time_ns: int, messages_base: int = 0, horizon_ns: int | None = None) -> None:
        self._record(fmt.SESSION, time_ns, session_body(self.settings, reason, messages_base, horizon_ns))

    # -- files -------------------------------------------------------------------------------

    def _open(self, time_ns: int) -> None:
        self._fd, self.path = files.open_day_file(self.directory, self.instance, time_ns)
        files.sweep(self.directory, self.instance, self.retention_days, time_ns)

    def _flag_incomplete(self, reason: str) -> None:
        if self.path is not None:
            files.flag_incomplete(self.path, reason)

    # -- the writer thread: compression and writes release the GIL -------------------------

    def _run(self) -> None:
        compressor = fmt.new_compressor()
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            closing = self._closing
            try:
                self._drain(compressor)
            except Exception as exc:  # noqa: BLE001 -- a broken disk must not stop the engine
                self.failed = f"{type(exc).__name__}: {exc}"
                log.exception("journal: writing %s failed; the journal is stopped and the day incomplete",
                              self.path)
                self._flag_incomplete(f"writer failed: {self.failed}")
                self._queue.clear()
                self._loop.call_soon_threadsafe(self._on_failed)
                return
            if closing:  # the file is the thread's until here: never closed under a write
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                return

    def _drain(self, compressor) -> None:
        queue = self._queue
        confirm = 0
        while queue:
            parts, marker = queue.popleft()
            if parts is _ROTATE:
                self._rotate(marker)
                continue
            self._consumed += sum(map(len, parts))
            if marker is not None:
                seq, boundary_ns, publication, messages = marker
                body = fmt.MARK_BODY.pack(1, len(publication.funds), messages,
                                          publication_digest(publication.payloads))
                parts.append(fmt.encode_record(fmt.MARK, boundary_ns, body))
                confirm = seq
            if parts:
                self._write(parts, compressor)
        if confirm:
            self._loop.call_soon_threadsafe(self._confirmed, confirm)
        now = time.monotonic()
        if now - self._last_sync >= _SYNC_EVERY_S and self._fd >= 0:
            self._last_sync = now
            os.fdatasync(self._fd)

    def _write(self, parts: list, compressor) -> None:
        block = memoryview(fmt.encode_block(parts, compressor))
        while block:
            written = os.write(self._fd, block)
            block = block[written:]
            self.bytes_written += written
        self.blocks += 1

    def _rotate(self, time_ns: int) -> None:
        os.fdatasync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._open(time_ns)
        log.info("journal: new day, recording to %s", self.path)
