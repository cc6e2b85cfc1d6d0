"""A sink is a bounded queue of publications plus one writer task that owns its connection.

The engine only ever calls ``offer``, which never blocks: a slow or absent server delays
neither the clock nor the other sinks. The writer drains everything waiting and sends it as one
batch; a batch that fails is put back at the front and retried after the reconnect backoff, so
nothing accepted is lost unless the queue bound is exceeded -- and then the oldest publication is
dropped and counted, never silently.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from iopv.adapters.backoff import Backoff
from iopv.engine.publication import Publication

log = logging.getLogger(__name__)


def _raise_if_cancel_lost() -> None:
    """Raise the cancellation a library swallowed. On Python 3.11, ``asyncio.wait_for`` (which
    redis-py wraps around every socket write) returns the inner result and drops a cancel that
    arrives as the inner task finishes (fixed in 3.12); the writer then went back to waiting for
    the next publication and never finished cancelling, hanging shutdown."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class QueuedSink:
    """Base class: subclasses implement ``connect`` (an async context manager) and ``send``,
    and may override ``on_connect`` (run after every successful connect)."""

    name = "sink"
    #: Re-send the last publication after a reconnect when nothing newer is queued, so a
    #: restarted server (which may have lost retained values) gets the latest values at once.
    republish_on_connect = False

    def __init__(self, *, max_queued: int, backoff: Backoff):
        self.max_queued = max_queued
        self.backoff = backoff
        self._queue: collections.deque[Publication] = collections.deque()
        self._wakeup = asyncio.Event()
        self._sending = 0  # publications taken off the queue and not yet sent
        self.connected = False
        self.dropped = 0
        self.published = 0  # publications fully sent
        self.reconnects = 0
        self.last_publish_ns = 0  # time the last batch finished sending
        self.last_ts_ns = 0  # boundary of the last publication sent
        self.republished = 0
        #: Called with each sent publication's latency (boundary -> sent), in seconds.
        self.on_sent: Callable[[float], None] | None = None
        self._last_sent: Publication | None = None
        #: Called (no arguments) after each (re)connect, e.g. to resend state the server lost.
        self.on_connected: list[Callable[[], None]] = []

    @property
    def queued(self) -> int:
        return len(self._queue)

    def offer(self, publication: Publication) -> None:
        """Queue a publication; never blocks. Drops (and counts) the oldest when full."""
        if len(self._queue) >= self.max_queued:
            self._queue.popleft()
            self.dropped += 1
            log.warning("%s: queue full (%d), dropped the oldest publication (%d dropped so far)",
                        self.name, self.max_queued, self.dropped)
        self._queue.append(publication)
        self._wakeup.set()

    def connect(self):  # pragma: no cover - abstract
        raise NotImplementedError

    async def on_connect(self, connection) -> None:
        """Hook after each (re)connect, before queued publications are sent."""

    async def send(self, connection, batch: list[Publication]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError))

    async def run(self) -> None:
        """The sink's one reconnect loop: connect, send batches as they come, back off on error."""
        while True:
            delay = self.backoff.next_delay_s()
            try:
                async with self.connect() as connection:
                    await self.on_connect(connection)
                    self.connected = True
                    self.backoff.reset()
                    log.info("%s: connected", self.name)
                    for callback in self.on_connected:
                        callback()
                    if self.republish_on_connect and not self._queue and self._last_sent is not None:
                        self._queue.append(self._last_sent)
                        self.republished += 1
                    await self._write_loop(connection)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                _raise_if_cancel_lost()
                if not self.is_connection_error(exc):
                    raise
                log.warning("%s: %s: %s; reconnecting in %.2f s (%d publications queued)",
                            self.name, type(exc).__name__, exc, delay, len(self._queue))
            finally:
                self.connected = False
            self.reconnects += 1
            await asyncio.sleep(delay)

    async def _write_loop(self, connection) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = list(self._queue)
            self._queue.clear()
            self._sending = len(batch)
            try:
                await self.send(connection, batch)
            except BaseException:
                self._sending = 0
                # Put the batch back in front of anything offered meanwhile, within the bound.
                room = max(0, self.max_queued - len(self._queue))
                keep = batch[len(batch) - room:] if room < len(batch) else batch
                self.dropped += len(batch) - len(keep)
                self._queue.extendleft(reversed(keep))
                raise
            self._sending = 0
            self.published += len(batch)
            self.last_publish_ns = now_ns = time.time_ns()
            self.last_ts_ns = batch[-1].ts_ns
            self._last_sent = batch[-1]
            if self.on_sent is not None:
                for publication in batch:
                    self.on_sent((now_ns - publication.ts_ns) / 1e9)
            _raise_if_cancel_lost()

    def stats(self) -> dict[str, float]:
        """The sink's counters for ``/metrics`` (``iopv.service.metrics``)."""
        return {"connected": float(self.connected), "reconnects": self.reconnects, "queued": len(self._queue),
                "max_queued": self.max_queued, "published": self.published, "dropped": self.dropped,
                "last_ts_ns": self.last_ts_ns}

    def ready(self) -> dict[str, bool]:
        """The sink's readiness checks for ``/readyz``: ``<name>_connected``."""
        return {f"{self.name.replace('-', '_')}_connected": self.connected}

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the queue is empty (or the timeout passes); True when empty."""
        deadline = time.monotonic() + timeout_s
        while (self._queue or self._sending) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not (self._queue or self._sending)
