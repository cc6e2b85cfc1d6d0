"""Keeping the book whole: the start decision, the feed's gaps, and state transfer from a peer.

``iopv.engine.health.BookHealth`` holds whether the book is whole; this module feeds it the
service's events and makes a book whole again (docs/scaling.md "Whole books"):

- At start (``start``) the book is not whole (reason ``restart``) until it is known to be: it is
  whole only when the process subscribed before the session's first tick. It cannot be when a
  state of this session was restored (a restart), when an exchange calendar's session is open,
  or when a peer of the shard has published values of this session's ticks. Otherwise, once
  subscribed, it checks the shard's *first-tick mark* (``_first_tick:<UTC day>`` in the
  registry, set by the first replica to receive a tick that day): none, or one at or after its
  own subscription, and the book is whole (``first``) -- a fraction of a second after
  subscribing, before its first cut in practice, so replicas started together before the ticks
  flow neither wait nor flag. A mark before its subscription means a peer received ticks it
  cannot have: it stays not whole.
- The feed's disconnect makes it not whole (``disconnected``); each subscription ends the gap
  (``resumed``): ticks stamped from then on reach the book.
- While it is not whole and the gap has ended, ``run`` polls the shard's replica registry for a
  whole peer's saved state of a boundary at or after the gap's end (and not after the open
  boundary), and merges it by tick time (``iopv.engine.restart.merge``): the book is then whole.
  The engine's own check (every symbol ticked since the gap) is the other way back.

Every event that changes the book or its health is recorded in the audit journal, at its place in
the tick stream, so a journal replay flags the same values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import redis.exceptions

from iopv.adapters.redis import state as redis_state
from iopv.adapters.redis.cluster import reader_client
from iopv.config import Settings
from iopv.core.constants import DAY_NS
from iopv.engine import restart
from iopv.engine.cycle import Engine

log = logging.getLogger(__name__)

#: How often a book that is not whole looks for a peer's state (bounded by the interval).
POLL_MIN_S = 0.05
POLL_MAX_S = 0.5
#: Time a Redis call of the recovery may take before it is retried at the next poll.
REDIS_TIMEOUT_S = 2.0


class Recovery:
    """The service's side of ``BookHealth``: start decision, feed events, state transfer."""

    def __init__(self, settings: Settings, engine: Engine, *, journal=None,
                 after_merge: Callable[[], None] | None = None, first_message_ns: Callable[[], int] = lambda: 0):
        """``after_merge()`` follows every change of the book's state (the real-time sums);
        ``first_message_ns()`` is when the feed received its first message (0: none yet)."""
        self.settings = settings
        self.engine = engine
        self.health = engine.health
        self.journal = journal
        self.after_merge = after_merge  # e.g. the real-time sums follow the book
        self.redis_errors = 0  # Redis calls that failed (each retried at the next poll)
        self._redis = None  # one client for every poll, made on first use, dropped after an error
        self.poll_s = min(max(settings.engine.interval_s / 5, POLL_MIN_S), POLL_MAX_S)
        self._last_error_log = 0.0
        #: A first start whose book is whole unless the first-tick mark says otherwise.
        self._first_start = False
        self.first_message_ns = first_message_ns
        self._marked_day: int | None = None  # the UTC day whose first-tick mark this instance set
        self.restored_symbols = 0
        #: Time a peer's first-tick mark may take to reach Redis (its write follows its first
        #: message by one poll at most): the check waits this long after subscribing.
        self.mark_settle_s = max(settings.engine.watermark_ms / 1e3, 2 * self.poll_s)

    # -- events ------------------------------------------------------------------------------

    def _record(self, event: str, detail: str, time_ns: int) -> None:
        if self.journal is not None:
            self.journal.health(event, detail, time_ns)

    def lost(self, reason: str, time_ns: int | None = None, *, announce: bool = True) -> None:
        """The book may miss ticks from now until the feed is subscribed again (a gap already
        open keeps its reason)."""
        time_ns = time.time_ns() if time_ns is None else time_ns
        if not self.health.whole and self.health.gap_end_ns is None:
            return
        self._record("lost", reason, time_ns)
        self.health.lost(reason, time_ns, announce=announce)

    def resumed(self, time_ns: int | None = None) -> None:
        """The feed is subscribed: ticks stamped from now on reach the book."""
        time_ns = time.time_ns() if time_ns is None else time_ns
        if self.health.whole or self.health.gap_end_ns is not None:
            return
        self._record("resumed", "", time_ns)
        self.health.resumed(time_ns)

    def disconnected(self, time_ns: int | None = None) -> None:
        self.lost("disconnected", time_ns)

    async def restore(self) -> bool:
        """Restore the session's last prices from this instance's saved state in Redis (unless
        ``ops.restore_state`` is off); True when a state of this session was restored."""
        if not self.settings.ops.restore_state:
            log.info("state: clean start (previous closes)")
            return False
        data = await redis_state.load(self.settings)
        if data is None:
            return False
        clock_ns = time.time_ns()
        try:
            self.restored_symbols, skipped = restart.restore(self.engine.book, data, clock_ns)
        except ValueError as exc:
            log.info("state: not restored: %s", exc)
            return False
        if self.journal is not None:
            self.journal.restored(data, clock_ns)
        log.info("state: restored %d symbols (%d entries skipped)", self.restored_symbols, skipped)
        if self.after_merge is not None:  # e.g. the real-time running sums follow the book
            self.after_merge()
        return True

    async def start(self, *, restored: bool, now_ns: int | None = None) -> bool:
        """Register in the shard's registry and decide whether the book is whole from the start
        (module docstring); returns it. ``restored``: a state of this session was restored."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        if not await redis_state.register(self.settings, client=self._client()):
            await self.aclose()
        session = self.engine.calendar.session_at(now_ns)
        reason = ""
        if restored:
            reason = "restarted: the state saved before was restored"
        elif session is not None and not self.engine.calendar.always:
            reason = "started after the session's open"
        elif session is not None:
            try:
                peers = await redis_state.peer_states(self.settings, client=self._client())
            except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
                await self.aclose()
                peers = []
                reason = f"cannot read the peers' states ({exc})"
            for instance, data in peers:
                try:
                    info = restart.state_info(data)
                except ValueError:
                    continue
                # A peer that published this session's ticks: we cannot have them all (a peer
                # that published previous closes only has nothing we lack).
                if info["ts"] >= session[0] and info["last_tick"] is not None and info["last_tick"] >= session[0]:
                    reason = f"peer {instance} has published ticks of this session"
                    break
        self.lost("restart", now_ns, announce=bool(reason))  # until known to be whole
        if reason:
            log.info("book not whole at start: %s", reason)
        else:
            self._first_start = True
            log.info("first start of the shard in this session: the book is whole once subscribed, "
                     "unless a peer received ticks before")
        return not reason

    async def _check_first_start(self) -> None:
        """A first start, subscribed: whole unless the shard's first tick of the day was received
        (by a peer) before this instance subscribed."""
        gap_end = self.health.gap_end_ns
        if not self._first_start or gap_end is None:
            return
        if self.health.whole:
            self._first_start = False
            return
        if time.time_ns() - gap_end < self.mark_settle_s * 1e9:
            return
        try:
            mark = await redis_state.first_tick(self.settings, gap_end // DAY_NS, client=self._client())
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            await self._failed(f"cannot read the first-tick mark ({exc})")
            return
        self._first_start = False
        if self.health.whole or self.health.gap_end_ns != gap_end:
            return
        if mark is not None and mark < gap_end:
            log.warning("book not whole: a replica of the shard received ticks %.3f s before this one "
                        "subscribed", (gap_end - mark) / 1e9)
            return
        self._record("regained", "first", time.time_ns())
        self.health.regain("first", time.time_ns())

    async def _mark_first_tick(self) -> None:
        """Set the shard's first-tick mark of the day (once per day; a replica did already: kept)."""
        first = self.first_message_ns()
        if not first:
            return
        day = time.time_ns() // DAY_NS
        if self._marked_day == day:
            return
        try:
            await redis_state.mark_first_tick(self.settings, day, first if first // DAY_NS == day else time.time_ns(),
                                              client=self._client())
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            await self._failed(f"cannot set the first-tick mark ({exc})")
            return
        self._marked_day = day

    def _client(self):
        if self._redis is None:
            self._redis = reader_client(self.settings.redis, socket_timeout=REDIS_TIMEOUT_S,
                                        socket_connect_timeout=REDIS_TIMEOUT_S)
        return self._redis

    async def aclose(self) -> None:
        """Close the polls' Redis client (at shutdown)."""
        client, self._redis = self._redis, None
        if client is not None:  # bounded: a shutdown never waits on it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1.0)

    async def _failed(self, message: str) -> None:
        """A Redis call failed: count it, log it at most every 10 s, and drop the client (the
        next poll connects again: after a failover, say)."""
        self.redis_errors += 1
        await self.aclose()
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("recovery: %s; retrying", message)

    # -- state transfer ----------------------------------------------------------------------

    def pick(self, states: list[tuple[str, bytes]]) -> tuple[str, bytes, int] | None:
        """The newest whole peer state usable now: its boundary at or after the gap's end (every
        later tick reaches us) and not after our open boundary (nothing it holds is in our
        future); (instance, data, boundary) or None."""
        gap_end = self.health.gap_end_ns
        if self.health.whole or gap_end is None:
            return None
        horizon = self.engine.intake.horizon_ns
        best = None
        for instance, data in states:
            try:
                info = restart.state_info(data)
            except ValueError:
                continue
            if info["whole"] and gap_end <= info["ts"] <= horizon and (best is None or info["ts"] > best[2]):
                best = (instance, data, info["ts"])
        return best

    def transfer(self, instance: str, data: bytes, time_ns: int | None = None) -> int:
        """Merge a whole peer's state into the book; the book is then whole. Returns symbols taken."""
        time_ns = time.time_ns() if time_ns is None else time_ns
        self.engine.intake.flush()  # ticks received before the transfer are applied before it
        if self.journal is not None:
            self.journal.transferred(data, time_ns)
        taken, _skipped = restart.merge(self.engine.book, data, time_ns)
        self.health.regain("transfer", time_ns)
        log.info("book whole again: state transfer from %s (%d symbols taken)", instance, taken)
        if self.after_merge is not None:
            self.after_merge()
        return taken

    async def step(self) -> bool:
        """One look for a peer's state; True when a transfer made the book whole."""
        health = self.health
        if health.whole or health.gap_end_ns is None:
            return False
        try:
            states = await redis_state.peer_states(self.settings, client=self._client())
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            await self._failed(f"state transfer: cannot read the peers' states ({exc})")
            return False
        chosen = self.pick(states)  # after the await: the gap may have changed meanwhile
        if chosen is None:
            return False
        self.transfer(chosen[0], chosen[1])
        return True

    async def run(self) -> None:
        """Set the first-tick mark; confirm a first start; look for a whole peer's state while
        the book is not whole (a task of the service)."""
        while True:
            await asyncio.sleep(self.poll_s)
            await self._mark_first_tick()
            await self._check_first_start()
            await self.step()
