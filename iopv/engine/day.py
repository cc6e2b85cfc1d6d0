"""The feed's day, in plain Python with no network: fund directory, session events, daily summary
and heartbeat records (README "Outputs"; docs/subscribers.md explains every field).

``FeedDay`` is a state machine driven by three calls -- ``on_swap`` (a basket swapped in),
``on_publication`` (a boundary's values reached the sinks) and ``advance`` (the clock moved) --
each returning the ``Message``s to publish. A message is a kind (``directory``, ``session``,
``summary``, ``heartbeat``, or ``value`` for clearing a removed fund's retained value), a key
(fund, event or instance) and a record (None = clear the retained message). Topics and keys are
made from them by ``iopv.core.names`` in the adapters.

A day follows the calendar's sessions (``engine.calendar``; ``always``: UTC days):

- ``start_of_day``: ``events.start_of_day_lead_s`` before the open, or at start when the engine
  starts later; the baskets are loaded and the directory is published again with the session's
  date. The previous day's later events are cleared, so every retained session message belongs
  to the day it names. ``ts``: the first boundary at or after that moment.
- ``first_value``: the first boundary published in the session (``ts``: that boundary).
- ``close``: the boundary at the session's close (``ts`` = the close: 16:00 New York, 13:00 on
  a half day) once its values are out; if it never comes (a stalled machine, ``always``, whose
  closing boundary is the next day's first), the last boundary published, once the close is
  past by ``close_grace_ns``. The daily summaries go out just before it.
- ``end_of_day``: ``events.end_of_day_delay_s`` after the close (``ts``: the first boundary at
  or after it); nothing more is published for the session.

A value that reaches the sinks in a later session ends the day on the spot (close, end of day)
and starts the next one, so the events always come in order. Every record carries ``session``
(the session's date in the exchange's time zone) and the ``instance``; a subscriber compares
``session`` with today's ``start_of_day``'s and never takes yesterday's record for today's.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from iopv.core.calendar import SessionCalendar
from iopv.core.constants import DAY_NS
from iopv.core.names import SESSION_EVENTS
from iopv.core.universe import Universe
from iopv.engine.clock import boundary_at_or_after
from iopv.engine.publication import Publication

#: Phases of a day, in order (the heartbeat's ``state``); ``idle``: no day started yet.
IDLE, STARTED, OPEN, CLOSED, ENDED = "idle", "started", "open", "closed", "ended"
_PHASE_OF_EVENT = {"start_of_day": STARTED, "first_value": OPEN, "close": CLOSED, "end_of_day": ENDED}
_ORDER = {IDLE: 0, STARTED: 1, OPEN: 2, CLOSED: 3, ENDED: 4}
#: Directory fields passed through from the basket file when it has them.
OPTIONAL_FUND_FIELDS = ("name", "as_of", "shares_outstanding", "prior_nav", "total_cash")


class Message(NamedTuple):
    """One retained message: ``kind`` and ``key`` name its topic and key (``iopv.core.names``);
    ``record`` None clears it."""

    kind: str
    key: str
    record: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Batch:
    """The messages made at one moment (``ts_ns``: when), handed to the sinks as one."""

    ts_ns: int
    messages: tuple[Message, ...]


class Session(NamedTuple):
    """A trading session: its date (exchange time zone) and open/close (int ns, UTC)."""

    label: str
    open_ns: int
    close_ns: int


@functools.lru_cache(maxsize=8)
def _zone(calendar_name: str):
    import exchange_calendars

    return exchange_calendars.get_calendar(calendar_name).tz


def session_label(calendar: SessionCalendar, open_ns: int) -> str:
    """The session's date: its open's date in the exchange's time zone (UTC for ``always``)."""
    moment = dt.datetime.fromtimestamp(open_ns / 1e9, tz=dt.UTC)
    if not calendar.always:
        moment = moment.astimezone(_zone(calendar.name))
    return moment.date().isoformat()


def sessions_around(calendar: SessionCalendar, now_ns: int) -> list[Session]:
    """The sessions from about two days before ``now_ns`` to ten days after, in order."""
    if calendar.always:
        today = now_ns - now_ns % DAY_NS
        days = [today + k * DAY_NS for k in range(-2, 11)]
        return [Session(session_label(calendar, d), d, d + DAY_NS) for d in days]
    opens, closes = calendar.sessions(now_ns - 2 * DAY_NS, now_ns + 10 * DAY_NS)
    return [Session(session_label(calendar, o), o, c) for o, c in zip(opens.tolist(), closes.tolist())]


def session_of(calendar: SessionCalendar, ts_ns: int) -> Session | None:
    """The session the engine values boundary ``ts_ns`` in (``SessionCalendar.session_at``)."""
    found = calendar.session_at(ts_ns)
    return None if found is None else Session(session_label(calendar, found[0]), *found)


def directory_record(universe: Universe, f: int, **common: Any) -> dict[str, Any]:
    """Fund ``f`` of ``universe`` as an ``active`` directory record (``common``: session, ts, instance, shard)."""
    info = universe.fund_info[f]
    record: dict[str, Any] = {"fund": universe.funds[f], "status": "active", **common,
                              "currency": universe.fund_currency[f],
                              "creation_unit": float(universe.fund_creation_unit[f]),
                              "basket": universe.version,
                              "holdings": int(universe.fund_offsets[f + 1] - universe.fund_offsets[f]),
                              "estimated_cash": float(universe.fund_cash[f])}
    for key in OPTIONAL_FUND_FIELDS:
        if key in info:
            record[key] = info[key]
    return record


class SummaryBook:
    """Each fund's first, high, low and last value of the session, boundaries published and flagged.

    Kept as arrays in the order of the publications' funds (one numpy pass per boundary, not a
    Python step per fund); a basket swap re-lays them out by ticker."""

    def __init__(self) -> None:
        self.funds: tuple[str, ...] = ()
        self.first = self.high = self.low = self.last = np.empty(0)
        self.first_ts = self.last_ts = self.published = self.flagged = np.empty(0, dtype=np.int64)
        self.basket = ""  # the basket version of the last boundary counted
        self.gone: dict[str, dict[str, Any]] = {}  # funds a swap removed mid-session: their summaries

    def _layout(self, funds: tuple[str, ...]) -> None:
        old = {fund: i for i, fund in enumerate(self.funds)}
        n = len(funds)
        arrays = {"first": np.full(n, np.nan), "high": np.full(n, -np.inf), "low": np.full(n, np.inf),
                  "last": np.full(n, np.nan), "first_ts": np.zeros(n, np.int64), "last_ts": np.zeros(n, np.int64),
                  "published": np.zeros(n, np.int64), "flagged": np.zeros(n, np.int64)}
        for i, fund in enumerate(funds):
            j = old.get(fund)
            if j is not None:
                for name, array in arrays.items():
                    array[i] = getattr(self, name)[j]
        kept = set(funds)
        for fund, j in old.items():
            if fund not in kept and self.published[j] > 0:
                self.gone[fund] = self._summary_of(j)
        for name, array in arrays.items():
            setattr(self, name, array)
        self.funds = funds

    def add(self, publication: Publication) -> None:
        """Count one published boundary."""
        if publication.funds is not self.funds and publication.funds != self.funds:
            self._layout(publication.funds)
        records = publication.records
        n = len(records)
        values = np.fromiter((r["iopv"] for r in records), dtype=np.float64, count=n)
        flagged = np.fromiter((bool(r.get("flags")) for r in records), dtype=bool, count=n)
        fresh = self.published == 0
        self.first[fresh] = values[fresh]
        self.first_ts[fresh] = publication.ts_ns
        np.maximum(self.high, values, out=self.high)
        np.minimum(self.low, values, out=self.low)
        self.last[:] = values
        self.last_ts[:] = publication.ts_ns
        self.published += 1
        self.flagged += flagged
        if n:
            self.basket = records[0].get("basket", "")

    def _summary_of(self, i: int) -> dict[str, Any]:
        out = {"fund": self.funds[i], "first": float(self.first[i]), "first_ts": int(self.first_ts[i]),
               "high": float(self.high[i]), "low": float(self.low[i]), "last": float(self.last[i]),
               "last_ts": int(self.last_ts[i]), "published": int(self.published[i]),
               "flagged": int(self.flagged[i])}
        if self.basket:
            out["basket"] = self.basket
        return out

    def summaries(self) -> list[dict[str, Any]]:
        """Every fund published at least once this session (funds removed mid-session included)."""
        out = [self._summary_of(i) for i in np.flatnonzero(self.published > 0).tolist()]
        return out + [s for fund, s in self.gone.items() if fund not in self.funds]


class Day:
    """One session being disseminated: its phase, its events so far, its summaries."""

    def __init__(self, session: Session):
        self.session = session
        self.phase = IDLE
        self.events: dict[str, dict[str, Any]] = {}
        self.summary = SummaryBook()
        self.first_published_ns = 0  # the first boundary this process published in the session
        self.last_published_ns = 0


class FeedDay:
    """The directory, session events and summaries of one instance (module docstring)."""

    def __init__(self, calendar: SessionCalendar, *, instance: str, shard: str, interval_ns: int,
                 start_of_day_lead_ns: int, end_of_day_delay_ns: int, close_grace_ns: int,
                 owns: Callable[[str], bool] = lambda fund: True):
        self.calendar = calendar
        self.instance = instance
        self.shard = shard
        self.interval_ns = interval_ns
        self.lead_ns = start_of_day_lead_ns
        self.eod_ns = end_of_day_delay_ns
        self.close_grace_ns = close_grace_ns
        self.owns = owns
        self.universe: Universe | None = None
        self.day: Day | None = None
        self.ended_label = ""  # the last day ended, never started again
        #: fund -> the directory record published for it (active or removed), this instance's funds.
        self.directory: dict[str, dict[str, Any]] = {}

    # -- the calendar ---------------------------------------------------------------------------

    def _next_session(self, now_ns: int) -> Session | None:
        """The first session still to close at ``now_ns`` that is not the day already ended."""
        for session in sessions_around(self.calendar, now_ns):
            if session.close_ns >= now_ns and session.label > self.ended_label:
                return session
        return None

    def label_now(self, now_ns: int) -> str:
        """The session date records carry now: the day's, else the next session's."""
        if self.day is not None and self.day.phase != ENDED:
            return self.day.session.label
        session = self._next_session(now_ns)
        return session.label if session else ""

    def _common(self, label: str, ts_ns: int) -> dict[str, Any]:
        return {"session": label, "ts": ts_ns, "instance": self.instance, "shard": self.shard}

    # -- directory ------------------------------------------------------------------------------

    def _directory_messages(self, label: str, ts_ns: int) -> list[Message]:
        """Every fund's directory record for ``label``; funds listed before (``self.directory``)
        and no longer in the baskets: ``removed`` (their retained value cleared); funds removed
        on an earlier session: their retained record cleared."""
        universe = self.universe
        previous = dict(self.directory)
        out: list[Message] = []
        current = set(universe.funds)
        common = self._common(label, ts_ns)
        for f, fund in enumerate(universe.funds):
            record = self.directory[fund] = directory_record(universe, f, **common)
            out.append(Message("directory", fund, record))
        for fund, old in sorted(previous.items()):
            if fund in current or not self.owns(fund):
                continue
            if old.get("status") == "removed" and old.get("session", "") < label:
                self.directory.pop(fund, None)
                out.append(Message("directory", fund, None))  # removed on an earlier day: gone
                continue
            if old.get("status") == "removed":
                self.directory[fund] = old
                out.append(Message("directory", fund, old))
                continue
            record = self.directory[fund] = {"fund": fund, "status": "removed", **common,
                                             "basket": universe.version}
            out += [Message("directory", fund, record), Message("value", fund, None)]
        return out

    def start(self, universe: Universe, now_ns: int, *, index: dict[str, dict] | None = None,
              saved: dict[str, dict] | None = None) -> list[Message]:
        """At start: ``index`` is the directory as stored (fund -> record: funds a restart with a
        new basket file dropped are marked removed); ``saved`` this instance's session events as
        stored (event -> record: a restart within a day resumes it, sending none twice)."""
        self.universe = universe
        saved = saved or {}
        start = saved.get("start_of_day")
        if start is not None:
            session = next((s for s in sessions_around(self.calendar, now_ns) if s.label == start.get("session")), None)
            ended = "end_of_day" in saved and saved["end_of_day"].get("session") == start.get("session")
            if session is not None and not ended and now_ns <= session.close_ns + self.eod_ns:
                day = self.day = Day(session)
                for event in SESSION_EVENTS:
                    if event in saved and saved[event].get("session") == session.label:
                        day.events[event] = saved[event]
                        day.phase = _PHASE_OF_EVENT[event]
            elif ended:
                self.ended_label = start.get("session", "")
        # The stored directory's funds of this shard: those the baskets no longer hold get removed.
        self.directory = {fund: record for fund, record in (index or {}).items() if self.owns(fund)}
        out = self.advance(now_ns)
        if not any(m.kind == "directory" for m in out):  # no day started now: the directory alone
            out = self._directory_messages(self.label_now(now_ns), boundary_at_or_after(now_ns, self.interval_ns)) + out
        return out

    def on_swap(self, universe: Universe, boundary_ns: int) -> list[Message]:
        """A basket swapped in at ``boundary_ns``: every fund's record again, removed funds marked."""
        self.universe = universe
        return self._directory_messages(self.label_now(boundary_ns), boundary_ns)

    # -- session events -------------------------------------------------------------------------

    def _event(self, event: str, ts_ns: int) -> Message:
        day = self.day
        session = day.session
        record = {"event": event, **self._common(session.label, ts_ns), "calendar": self.calendar.name,
                  "open": session.open_ns, "close": session.close_ns,
                  "basket": self.universe.version if self.universe else "",
                  "funds": len(self.universe.funds) if self.universe else 0}
        day.events[event] = record
        day.phase = _PHASE_OF_EVENT[event]
        return Message("session", event, record)

    def _start_day(self, session: Session, ts_ns: int) -> list[Message]:
        self.day = Day(session)
        out = [Message("session", event, None) for event in SESSION_EVENTS[1:]]  # yesterday's, cleared
        out += self._directory_messages(session.label, ts_ns)
        out.append(self._event("start_of_day", ts_ns))
        return out

    def _close_day(self, ts_ns: int) -> list[Message]:
        day = self.day
        session = day.session
        common = self._common(session.label, ts_ns)
        first_boundary = boundary_at_or_after(session.open_ns, self.interval_ns)
        out = []
        for summary in day.summary.summaries():
            fund = summary.pop("fund")
            # complete: counted from the session's first boundary (not a late start or a new fund)
            record = {"fund": fund, **common, **summary, "complete": summary["first_ts"] <= first_boundary}
            out.append(Message("summary", fund, record))
        out.append(self._event("close", ts_ns))
        return out

    def _end_day(self, ts_ns: int) -> list[Message]:
        message = self._event("end_of_day", ts_ns)
        self.ended_label = self.day.session.label
        return [message]

    def advance(self, now_ns: int) -> list[Message]:
        """Events due by the clock at ``now_ns``: start of day, a close whose boundary never came,
        end of day."""
        out: list[Message] = []
        while True:
            day = self.day
            if day is not None and day.phase in (STARTED, OPEN):
                if now_ns < day.session.close_ns + self.close_grace_ns:
                    break
                out += self._close_day(day.last_published_ns or day.session.close_ns)
            elif day is not None and day.phase == CLOSED:
                due = day.session.close_ns + self.eod_ns
                if now_ns < due:
                    break
                out += self._end_day(boundary_at_or_after(due, self.interval_ns))
            else:
                session = self._next_session(now_ns)
                if session is None or now_ns < session.open_ns - self.lead_ns:
                    break
                # ts: the boundary the day started at (the timer wakes a little after it)
                ts = max(boundary_at_or_after(session.open_ns - self.lead_ns, self.interval_ns),
                         now_ns // self.interval_ns * self.interval_ns)
                out += self._start_day(session, ts)
        return out

    def on_publication(self, publication: Publication) -> list[Message]:
        """A boundary's values reached the sinks: first value, summaries, the close."""
        ts = publication.ts_ns
        out: list[Message] = []
        day = self.day
        if day is None or not (day.session.open_ns <= ts <= day.session.close_ns) or (
                ts == day.session.close_ns and self.calendar.always):
            session = session_of(self.calendar, ts)
            if session is None or (day is not None and session.label < day.session.label):
                return out  # outside any session, or a late boundary of an earlier day
            if day is None or session.label != day.session.label:
                if day is not None and day.phase in (STARTED, OPEN):
                    out += self._close_day(day.last_published_ns or day.session.close_ns)
                if day is not None and day.phase == CLOSED:
                    out += self._end_day(ts)
                out += self._start_day(session, ts)
                day = self.day
        if day.phase not in (STARTED, OPEN):
            return out  # the day was closed already (a boundary released after the grace)
        if day.phase == STARTED:
            out.append(self._event("first_value", ts))
        if not day.first_published_ns:
            day.first_published_ns = ts
        day.last_published_ns = ts
        day.summary.add(publication)
        if ts >= day.session.close_ns and not self.calendar.always:
            out += self._close_day(ts)
        return out

    # -- heartbeat ------------------------------------------------------------------------------

    def next_value_ns(self, now_ns: int) -> int | None:
        """The next boundary at which this instance will publish values, per the calendar."""
        after = (now_ns // self.interval_ns + 1) * self.interval_ns
        for session in sessions_around(self.calendar, now_ns):
            start = max(after, boundary_at_or_after(session.open_ns, self.interval_ns))
            if start <= session.close_ns:
                return start
        return None

    def heartbeat(self, now_ns: int, last_ts_ns: int, period_s: float) -> Message:
        """The retained heartbeat: alive at ``now_ns``; ``last_ts``: the last boundary published
        (0 = none since start); ``next_ts``: the next one due (0 = none in the calendar's range)."""
        day = self.day
        record = {"instance": self.instance, "ts": now_ns, "shard": self.shard,
                  "session": self.label_now(now_ns), "state": day.phase if day else IDLE,
                  "last_ts": last_ts_ns,
                  "next_ts": self.next_value_ns(now_ns) or 0,
                  "interval_s": self.interval_ns / 1e9, "period_s": period_s}
        return Message("heartbeat", self.instance, record)
