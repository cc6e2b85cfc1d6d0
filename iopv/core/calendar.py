"""Trading sessions: when values are disseminated.

``engine.calendar`` names either ``always`` (every boundary is inside the session; the demo and
the tests) or an exchange calendar of the maintained ``exchange_calendars`` library (``XNYS`` =
NYSE: 9:30 to 16:00 America/New_York, its holidays and early closes). A boundary T is inside a
session when open <= T <= close, so the value at the open (from previous closes) and the closing
value are both published. Sessions are handed to the kernels as two sorted int64 arrays of
open/close times (ns, UTC); empty arrays mean always open.
"""

from __future__ import annotations

import functools

import numpy as np

from iopv.core.constants import DAY_NS

ALWAYS = "always"
_EMPTY = np.empty(0, dtype=np.int64)


class CalendarError(ValueError):
    """An unknown calendar name, or the calendar library is missing."""


@functools.lru_cache(maxsize=8)
def _exchange_calendar(name: str):
    try:
        import exchange_calendars
    except ImportError:  # pragma: no cover - it is a dependency
        raise CalendarError(f"engine.calendar: {name!r} needs the exchange_calendars package") from None
    try:
        return exchange_calendars.get_calendar(name)
    except Exception as exc:  # the library raises its own InvalidCalendarName
        raise CalendarError(f"engine.calendar: unknown calendar {name!r} "
                            f"(use 'always' or an exchange_calendars code such as XNYS): {exc}") from None


class SessionCalendar:
    """Session open/close times of one calendar ("always" or an exchange code)."""

    def __init__(self, name: str = ALWAYS):
        self.name = name
        self.always = name == ALWAYS
        self._cal = None if self.always else _exchange_calendar(name)

    def sessions(self, start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(opens, closes) of every session that overlaps [start_ns, end_ns]; empty arrays when
        always open."""
        if self.always:
            return _EMPTY, _EMPTY
        import pandas as pd

        cal = self._cal
        first = pd.Timestamp(max(start_ns - DAY_NS, 0), unit="ns", tz="UTC").normalize().tz_localize(None)
        last = pd.Timestamp(end_ns + DAY_NS, unit="ns", tz="UTC").normalize().tz_localize(None)
        first = max(first, cal.first_session)
        last = min(last, cal.last_session)
        if first > last:
            return _EMPTY.copy(), _EMPTY.copy()
        schedule = cal.schedule.loc[first:last]
        opens = schedule["open"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        closes = schedule["close"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        keep = (closes >= start_ns) & (opens <= end_ns)
        return np.ascontiguousarray(opens[keep]), np.ascontiguousarray(closes[keep])

    def session_at(self, ts_ns: int) -> tuple[int, int] | None:
        """(open, close) of the session containing ``ts_ns`` (open <= ts <= close), or None.
        Always open: the UTC day of ``ts_ns``."""
        if self.always:
            start = ts_ns - ts_ns % DAY_NS
            return start, start + DAY_NS
        opens, closes = self.sessions(ts_ns, ts_ns)
        inside = np.flatnonzero((opens <= ts_ns) & (ts_ns <= closes))
        if inside.size == 0:
            return None
        return int(opens[inside[0]]), int(closes[inside[0]])
