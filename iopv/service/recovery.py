"""Keeping the book whole: the start decision, the feed's gaps, and state transfer from a peer.

``iopv.engine.health.BookHealth`` holds whether the book is whole; this module feeds it the
service's events and makes a book whole again (docs/scaling.md "Whole books"):

- At start (``start``), before the feed subscribes: the book is whole only for the session's
  first process -- no state of this session was restored, no peer of the shard has published in
  this session, and the calendar is not inside a session (an exchange calendar: started before
  the open; ``always``: the UTC day is the session, so the first replicas of the day are whole).
  Otherwise it is not whole, reason ``restart``.
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
import logging
import time
from collections.abc import Callable

import redis.exceptions

from iopv.adapters.redis import state as redis_state
from iopv.config import Settings
from iopv.engine import restart
from iopv.engine.cycle import Engine

log = logging.getLogger(__name__)

#: How often a book that is not whole looks for a peer's state (bounded by the interval).
POLL_MIN_S = 0.05
POLL_MAX_S = 0.5


class Recovery:
    """The service's side of ``BookHealth``: start decision, feed events, state transfer."""

    def __init__(self, settings: Settings, engine: Engine, *, journal=None,
                 after_merge: Callable[[], None] | None = None):
        self.settings = settings
        self.engine = engine
        self.health = engine.health
        self.journal = journal
        self.after_merge = after_merge  # e.g. the real-time sums follow the book
        self.transfers = 0
        self.transfer_errors = 0
        self.poll_s = min(max(settings.engine.interval_s / 5, POLL_MIN_S), POLL_MAX_S)
        self._last_error_log = 0.0

    # -- events ------------------------------------------------------------------------------

    def _record(self, event: str, detail: str, time_ns: int) -> None:
        if self.journal is not None:
            self.journal.health(event, detail, time_ns)

    def lost(self, reason: str, time_ns: int | None = None) -> None:
        """The book may miss ticks from now until the feed is subscribed again (a gap already
        open keeps its reason)."""
        time_ns = time.time_ns() if time_ns is None else time_ns
        if not self.health.whole and self.health.gap_end_ns is None:
            return
        self._record("lost", reason, time_ns)
        self.health.lost(reason, time_ns)

    def resumed(self, time_ns: int | None = None) -> None:
        """The feed is subscribed: ticks stamped from now on reach the book."""
        time_ns = time.time_ns() if time_ns is None else time_ns
        if self.health.whole or self.health.gap_end_ns is not None:
            return
        self._record("resumed", "", time_ns)
        self.health.resumed(time_ns)

    def disconnected(self, time_ns: int | None = None) -> None:
        self.lost("disconnected", time_ns)

    async def start(self, *, restored: bool, now_ns: int | None = None) -> bool:
        """Register in the shard's registry and decide whether the book is whole from the start
        (module docstring); returns it. ``restored``: a state of this session was restored."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        await redis_state.register(self.settings)
        session = self.engine.calendar.session_at(now_ns)
        reason = ""
        if restored:
            reason = "restarted: the state saved before was restored"
        elif session is not None and not self.engine.calendar.always:
            reason = "started after the session's open"
        elif session is not None:
            try:
                peers = await redis_state.peer_states(self.settings)
            except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
                peers = []
                reason = f"cannot read the peers' states ({exc})"
            for instance, data in peers:
                try:
                    info = restart.state_info(data)
                except ValueError:
                    continue
                if info["ts"] >= session[0]:
                    reason = f"peer {instance} has published in this session"
                    break
        if reason:
            log.info("book not whole at start: %s", reason)
            self.lost("restart", now_ns)
        else:
            log.info("book whole from the start: first instance of the shard in this session")
        return self.health.whole

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
        self.transfers += 1
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
            states = await redis_state.peer_states(self.settings)
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            self.transfer_errors += 1
            now = time.monotonic()
            if now - self._last_error_log > 10:
                self._last_error_log = now
                log.warning("state transfer: cannot read the peers' states (%s); retrying", exc)
            return False
        chosen = self.pick(states)  # after the await: the gap may have changed meanwhile
        if chosen is None:
            return False
        self.transfer(chosen[0], chosen[1])
        return True

    async def run(self) -> None:
        """Look for a whole peer's state while the book is not whole (a task of the service)."""
        while True:
            await asyncio.sleep(self.poll_s)
            await self.step()
