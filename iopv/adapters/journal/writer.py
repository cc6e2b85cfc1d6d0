"""The live journal writer: a bounded queue, one writer thread, write-ahead boundary markers.

The event loop only appends to a ``collections.deque`` (thread-safe appends and pops): every tick
message as the intake receives it (``tick``, ~0.1 us), and at each published boundary a marker
(``boundary``). The writer thread wakes every ``ops.journal_flush_ms`` and at once when a marker
is queued, packs what waits into records, compresses it into one block and ``os.write``\\ s it.
When a marker's block has been handed to the operating system, the thread tells the loop, which
then -- and only then -- offers that boundary's values to the sinks (write-ahead): a killed
process never leaves a published value the journal cannot reproduce. The clock never waits: a
marker not written within ``ops.journal_max_wait_ms`` releases its values anyway (logged,
counted in ``late_releases``). Once a second the file is also ``fdatasync``\\ ed, so a machine
crash loses at most about a second.

When more than ``ops.journal_queue_ticks`` messages wait (the disk cannot keep up), new tick
messages are dropped, counted (``dropped``), logged, and a DROP record marks the place; a file
``<journal>.incomplete`` next to the day's file flags the day. Markers and basket records are never
dropped. A failing disk (an ``OSError``) stops the journal, logged as an error, and releases every
held boundary: values keep flowing, the day is incomplete.

Files: ``<ops.journal_dir>/<instance>-<YYYY-MM-DD>.iopvj`` (UTC day). A process that starts on a
day whose file exists appends to it, after cutting off a torn last block (a crash mid-write). The
file rotates at the first published boundary of a new UTC day: the new file starts with the
session settings, the basket file and a checkpoint of the book at that boundary, so each day's file
replays on its own. Files older than ``ops.journal_retention_days`` are deleted at start and at
each rotation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import struct
import threading
import time
from collections import deque
from pathlib import Path

import orjson

from iopv.adapters.journal import format as fmt
from iopv.config import Settings
from iopv.core.constants import DAY_NS
from iopv.core.universe import Universe
from iopv.engine.journal_replay import publication_digest, recorded_settings

log = logging.getLogger(__name__)

SUFFIX = ".iopvj"
_TICK_HEAD = struct.Struct("<BIqBH")  # the record header and the tick header in one pack
_ROTATE = 0  # an internal queue item: close this file, start the next day's
_SYNC_EVERY_S = 1.0


def day_of(time_ns: int) -> str:
    return dt.datetime.fromtimestamp(time_ns // DAY_NS * 86_400, dt.UTC).strftime("%Y-%m-%d")


def journal_path(directory: str | os.PathLike, instance: str, time_ns: int) -> Path:
    """The day file of ``instance`` for the UTC day of ``time_ns``."""
    return Path(directory) / f"{instance}-{day_of(time_ns)}{SUFFIX}"


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
        self._queue: deque = deque()
        self._bound = ops.journal_queue_ticks
        self._drop_run = 0  # tick messages dropped since the last one queued
        self.dropped = 0
        self.late_releases = 0
        self.bytes_written = 0
        self.blocks = 0
        self.tick_records = 0
        self.failed: str | None = None
        self.path: Path | None = None
        self._day = -1  # the UTC day (number) of the file in use, as the loop thread sees it
        self._fd = -1
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self._held: deque = deque()  # (marker seq, release) waiting for their block
        self._basket: tuple[dict, bytes] | None = None  # the basket in use, for a rotation
        self._last_sync = 0.0

    # -- the event loop's side -------------------------------------------------------------

    def start(self, universe: Universe) -> None:
        """Open today's file (appending), queue the session and its basket, start the thread."""
        self._loop = asyncio.get_running_loop()
        now = time.time_ns()
        self._day = now // DAY_NS
        self._open(now)
        self._session("start", now)
        self.basket(universe, "start")
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()
        log.info("journal: recording to %s", self.path)

    def tick(self, payload, topic: str | None, recv_ts_ns: int) -> None:
        """A tick message as the intake received it (the hot path: one append)."""
        queue = self._queue
        if len(queue) < self._bound and not self._drop_run:
            queue.append((recv_ts_ns, topic, payload))
        else:
            self._overflow(payload, topic, recv_ts_ns)

    def _overflow(self, payload, topic: str | None, recv_ts_ns: int) -> None:
        queue = self._queue
        if len(queue) < self._bound:  # the writer caught up: mark the gap, then go on
            log.warning("journal: %d tick message(s) dropped (queue full); %d dropped today so far",
                        self._drop_run, self.dropped)
            queue.append((fmt.DROP, time.time_ns(), self._drop_run, None))
            self._drop_run = 0
            queue.append((recv_ts_ns, topic, payload))
            return
        if not self._drop_run:
            log.warning("journal: queue full (%d): dropping tick messages, the day is incomplete", self._bound)
        self._drop_run += 1
        self.dropped += 1

    def basket(self, universe: Universe, reason: str = "reload") -> None:
        """Queue the basket file now in use (at start, and at a swap: the record's place in the
        stream is where the engine swapped it). The file's bytes are read again and must hash to
        the universe's version; otherwise the record says so and the day is incomplete."""
        meta = {"version": universe.version, "source": universe.source, "reason": reason}
        try:
            data = Path(universe.source).read_bytes()
        except OSError as exc:
            data, meta["error"] = b"", f"cannot read: {exc.strerror or exc}"
        else:
            import hashlib

            if hashlib.sha256(data).hexdigest()[:12] != universe.version:
                data, meta["error"] = b"", "the file changed after it was loaded"
        if "error" in meta:
            log.error("journal: basket %s not recorded (%s): replays after this point will fail",
                      universe.source, meta["error"])
            self._flag_incomplete(f"basket {universe.source}: {meta['error']}")
        self._basket = (meta, data)
        self._queue.append((fmt.BASKET, time.time_ns(), _basket_body(meta, data), None))

    def restored(self, state: bytes, clock_ns: int) -> None:
        """Queue the restart state restored at start (``clock_ns``: the clock restore used)."""
        self._queue.append((fmt.RESTORE, clock_ns, bytes(state), None))

    def boundary(self, boundary_ns: int, publication, release, checkpoint: bytes) -> None:
        """Queue the marker of a published boundary; ``release()`` (which offers its values to
        the sinks) is called once the marker is handed to the OS, or after max_wait.
        ``checkpoint``: the book at this boundary (restart-state JSON), used if the day rotates."""
        if self.failed is not None or self._thread is None:
            release()
            return
        day = boundary_ns // DAY_NS
        if day != self._day:
            self._day = day
            self._queue.append((_ROTATE, boundary_ns, None, None))
            self._session("rotate", boundary_ns)
            meta, data = self._basket
            self._queue.append((fmt.BASKET, boundary_ns, _basket_body({**meta, "reason": "rotate"}, data), None))
            self._queue.append((fmt.CHECKPOINT, boundary_ns, checkpoint, None))
        self._seq += 1
        self._held.append((self._seq, release))
        self._queue.append((fmt.MARK, boundary_ns, publication, self._seq))
        self._wake.set()
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

    async def aclose(self) -> None:
        """Write what waits and an END record, stop the thread, release every held boundary."""
        if self._thread is None:
            return
        if self.failed is None:
            self._queue.append((fmt.END, time.time_ns(), b"", None))
        self._closing = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join, 2.0)
        self._release_all()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _session(self, reason: str, time_ns: int) -> None:
        body = orjson.dumps({"format": fmt.FORMAT_VERSION, "instance": self.instance, "reason": reason,
                             "pid": os.getpid(), "settings": recorded_settings(self.settings)})
        self._queue.append((fmt.SESSION, time_ns, body, None))

    # -- files -------------------------------------------------------------------------------

    def _open(self, time_ns: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = journal_path(self.directory, self.instance, time_ns)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as handle:
                end, damage = fmt.block_spans(handle.read(), str(path))
            if damage is not None:
                if end == 0:
                    os.close(fd)
                    raise OSError(f"{path}: exists and is not an IOPV journal: {damage}")
                log.warning("journal: %s; cutting the file at offset %d before appending (%d bytes)",
                            damage, end, size - end)
                os.ftruncate(fd, end)
                size = end
        if not size:
            os.write(fd, fmt.FILE_HEADER)
        self._fd, self.path = fd, path
        self._sweep(time_ns)

    def _sweep(self, time_ns: int) -> None:
        """Delete day files (and their flags) older than the retention."""
        if self.retention_days <= 0:
            return
        oldest = day_of(time_ns - self.retention_days * DAY_NS)
        prefix = f"{self.instance}-"
        for path in self.directory.glob(f"{prefix}*{SUFFIX}*"):
            day = path.name[len(prefix):len(prefix) + 10]
            if len(day) == 10 and day < oldest:
                try:
                    path.unlink()
                    log.info("journal: deleted %s (older than %d days)", path, self.retention_days)
                except OSError as exc:
                    log.warning("journal: cannot delete %s: %s", path, exc)

    def _flag_incomplete(self, reason: str) -> None:
        if self.path is None:
            return
        try:
            with open(f"{self.path}.incomplete", "a", encoding="utf-8") as handle:
                handle.write(f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {reason}\n")
        except OSError as exc:
            log.warning("journal: cannot flag %s incomplete: %s", self.path, exc)

    # -- the writer thread -----------------------------------------------------------------

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
                self._bound = 0  # every later tick message is dropped and counted
                log.exception("journal: writing %s failed; the journal is stopped and the day incomplete",
                              self.path)
                self._flag_incomplete(f"writer failed: {self.failed}")
                self._queue.clear()
                self._loop.call_soon_threadsafe(self._release_all)
                return
            if closing:
                return

    def _drain(self, compressor) -> None:
        queue = self._queue
        popleft = queue.popleft
        parts: list[bytes] = []
        append = parts.append
        size = 0
        confirm = 0
        pack = _TICK_HEAD.pack
        limit = self.max_payload_bytes
        for _ in range(len(queue)):
            item = popleft()
            if len(item) == 3:
                recv_ts_ns, topic, payload = item
                if type(payload) is bytes and topic is not None and len(payload) <= limit:
                    name = topic.encode("utf-8", "surrogatepass")
                    append(pack(fmt.TICK, 3 + len(name) + len(payload), recv_ts_ns, fmt.PAYLOAD_BYTES, len(name)))
                    append(name)
                    append(payload)
                    size += 16 + len(name) + len(payload)
                else:
                    if len(payload) > limit:
                        record = fmt.encode_oversize(recv_ts_ns, topic, len(payload))
                    else:
                        record = fmt.encode_tick(recv_ts_ns, topic, payload)
                    append(record)
                    size += len(record)
                self.tick_records += 1
                if size >= fmt.BLOCK_RAW_BYTES:
                    self._write(b"".join(parts), compressor)
                    parts.clear()
                    size = 0
                continue
            kind, time_ns, body, seq = item
            if kind == _ROTATE:
                if parts:
                    self._write(b"".join(parts), compressor)
                    parts.clear()
                    size = 0
                self._rotate(time_ns)
                continue
            if kind == fmt.MARK:
                body = fmt.MARK_BODY.pack(1, len(body.funds), self.tick_records, publication_digest(body.payloads))
                confirm = seq
            elif kind == fmt.SESSION:
                self.tick_records = 0
            elif kind == fmt.DROP:
                self._flag_incomplete(f"{body} tick message(s) dropped (queue full)")
                body = struct.pack("<Q", body)
            record = fmt.encode_record(kind, time_ns, body)
            append(record)
            size += len(record)
        if parts:
            self._write(b"".join(parts), compressor)
        if confirm:
            self._loop.call_soon_threadsafe(self._confirmed, confirm)
        now = time.monotonic()
        if now - self._last_sync >= _SYNC_EVERY_S:
            self._last_sync = now
            os.fdatasync(self._fd)

    def _write(self, raw: bytes, compressor) -> None:
        block = memoryview(fmt.encode_block(raw, compressor))
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


def _basket_body(meta: dict, data: bytes) -> bytes:
    header = orjson.dumps(meta)
    return struct.pack("<I", len(header)) + header + data
