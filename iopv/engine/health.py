"""Whether this instance's book is whole: holds every tick it should, or may miss some.

A book is *whole* when every tick stamped this session that the engine should have applied
reached it. It is not whole (its values carry the ``recovering`` flag, status ``degraded``;
docs/scaling.md) from one of these events until it is whole again:

- ``restart``: the process started after the session's first ticks (the service decides at its
  first subscription: ``iopv.service.recovery``);
- ``disconnected``: the tick connection dropped; ticks published meanwhile are lost to it;
- ``overflow``: the intake dropped ticks (the held set was full: ``held_overflow``).

The *gap* ends when the feed is subscribed again (``resumed``): every tick stamped from then on
reaches the book. The book is whole again by either route:

- ``transfer``: a whole peer's book of a boundary at or after the gap's end was merged in by tick
  time (``iopv.engine.restart.merge``), so every symbol holds its latest tick of that boundary;
- ``fresh``: every symbol of the baskets has ticked at or after the gap's end (checked by the
  engine before each valuation), so the book is fresh on its own.

Every change is an event the audit journal records (the service calls these methods, the journal
replay calls them again at the same place in the tick stream), so a replayed value carries the
same flag as the live one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

#: Why a book is not whole (``BookHealth.reason``), in the order of the ``iopv_book_recovering``
#: metric's ``reason`` label.
RECOVERING_REASONS = ("restart", "disconnected", "overflow")
#: How a book became whole again (counted in ``BookHealth.regained``): a peer's state, every
#: symbol ticked since the gap, or confirmed as the session's first start (no tick of the session
#: was received by any replica of the shard before this one subscribed).
REGAINED_BY = ("transfer", "fresh", "first")


class BookHealth:
    """Whole or recovering (and why), the end of the current gap, and counters."""

    def __init__(self):
        self.whole = True
        self.reason = ""  # one of RECOVERING_REASONS while not whole
        #: Ticks stamped at or after this time reach the book (the gap ended); None while the gap
        #: lasts (not subscribed yet) or when whole.
        self.gap_end_ns: int | None = None
        self.lost_count = {reason: 0 for reason in RECOVERING_REASONS}
        self.regained = {how: 0 for how in REGAINED_BY}
        #: Called with (event, detail) after every change (the journal, the status).
        self.on_change: list[Callable[[str, str], None]] = []

    def state(self) -> dict:
        """What a snapshot and the status carry."""
        return {"whole": self.whole, "recovering": self.reason or None, "gap_end": self.gap_end_ns}

    def set_state(self, state: dict) -> None:
        """Take a checkpoint's state (journal replay across a day file's rotation)."""
        self.whole = bool(state.get("whole", True))
        self.reason = state.get("recovering") or ""
        gap_end = state.get("gap_end")
        self.gap_end_ns = gap_end if type(gap_end) is int else None

    def lost(self, reason: str, time_ns: int, *, announce: bool = True) -> None:
        """The book may miss ticks from ``time_ns`` on; the gap lasts until ``resumed``
        (``announce``: log it as a warning; a first start, not yet checked, is only logged at info)."""
        if reason not in RECOVERING_REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        was_whole = self.whole
        self.whole = False
        self.reason = reason
        self.gap_end_ns = None
        self.lost_count[reason] += 1
        if was_whole:
            log.log(logging.WARNING if announce else logging.INFO,
                    "book not whole (%s): values are flagged recovering until it is whole again", reason)
        self._changed("lost", reason)

    def resumed(self, time_ns: int) -> None:
        """Ticks stamped at or after ``time_ns`` reach the book (the feed is subscribed)."""
        if self.whole or self.gap_end_ns is not None:
            return
        self.gap_end_ns = time_ns
        self._changed("resumed", str(time_ns))

    def regain(self, how: str, time_ns: int) -> None:
        """The book is whole again (``how`` in REGAINED_BY)."""
        if self.whole:
            return
        self.whole = True
        log.info("book whole again by %s after %s", how, self.reason)
        self.reason = ""
        self.gap_end_ns = None
        self.regained[how] += 1
        self._changed("regained", how)

    def check_fresh(self, last_ts: np.ndarray, boundary_ns: int) -> bool:
        """Whole again when every symbol (``last_ts``: the book's tick times of the baskets'
        symbols) ticked at or after the gap's end; True when the book is whole."""
        if self.whole:
            return True
        if self.gap_end_ns is not None and bool((last_ts >= self.gap_end_ns).all()):
            self.regain("fresh", boundary_ns)
        return self.whole

    def _changed(self, event: str, detail: str) -> None:
        for callback in self.on_change:
            callback(event, detail)
