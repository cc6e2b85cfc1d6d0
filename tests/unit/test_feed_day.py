"""The feed's day (iopv.engine.day) driven through whole simulated sessions of the real NYSE
calendar: a half day closes at 13:00 New York, a regular day at 16:00; events come once each and
in order; summaries count what was published; basket swaps and restarts keep the directory
right. Also the [events] settings: defaults, environment overrides, rejections."""

from __future__ import annotations

import datetime as dt

import pytest

from iopv.config import ConfigError, load_settings
from iopv.core.calendar import SessionCalendar
from iopv.core.names import SESSION_EVENTS
from iopv.core.universe import build_universe
from iopv.engine.day import FeedDay, session_label
from iopv.engine.publication import Publication

NS = 1_000_000_000
MIN = 60 * NS


def utc(text: str) -> int:
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) * NS


def universe(funds=("AAA", "BBB", "CCC"), version=None):
    document = [{"fund": f, "creation_unit": 100, "currency": "USD", "cash": 10.0,
                 "holdings": [{"symbol": "X", "shares": 5, "price": 20.0}], **({"name": f"Fund {f}",
                 "prior_nav": 1.1, "shares_outstanding": 1000} if f == "AAA" else {})} for f in funds]
    return build_universe(document, source="test", version=version)


def publication(u, ts, *, flagged=()):
    records = [{"fund": f, "ts": ts, "iopv": 1.0 + (ts // MIN % 97) / 100 + i,
                "flags": ["stale"] if f in flagged else [], "basket": u.version} for i, f in enumerate(u.funds)]
    return Publication(ts, u.funds, records, [])


def feed(calendar="XNYS", interval_ns=MIN, **kw):
    options = {"instance": "i-1", "shard": "0/1", "interval_ns": interval_ns, "start_of_day_lead_ns": 30 * MIN,
               "end_of_day_delay_ns": 15 * MIN, "close_grace_ns": interval_ns + 2 * NS} | kw
    return FeedDay(SessionCalendar(calendar), **options)


def run(day: FeedDay, u, start_ns: int, end_ns: int, *, step_ns=MIN, flagged=lambda ts: (), messages=None,
        started=True):
    """Drive ``day`` as the service does: a cycle at each boundary (values only inside a session,
    as Engine.cycle), then the clock."""
    out = messages if messages is not None else []
    if not started:
        out += day.start(u, start_ns)
    for now in range(start_ns, end_ns, step_ns):
        if day.calendar.session_at(now) is not None:
            out += day.on_publication(publication(u, now, flagged=flagged(now)))
        out += day.advance(now + NS)
    return out


def events(messages):
    return [(m.key, m.record["ts"]) for m in messages if m.kind == "session" and m.record is not None]


@pytest.mark.parametrize("date,close_utc", [("2024-11-29", "2024-11-29T18:00"),   # Black Friday: 13:00 ET
                                            ("2024-12-24", "2024-12-24T18:00"),   # Christmas Eve: 13:00 ET
                                            ("2024-11-27", "2024-11-27T21:00")])  # a regular day: 16:00 ET
def test_a_day_of_the_nyse_calendar(date, close_utc):
    u = universe()
    day = feed()
    calendar = day.calendar
    opens, closes = calendar.sessions(utc(f"{date}T15:00"), utc(f"{date}T15:00"))
    assert closes[0] == utc(close_utc), "the calendar's own close"
    messages = run(day, u, utc(f"{date}T13:00"), utc(f"{date}T23:00"), started=False,
                   flagged=lambda ts: ("BBB",) if ts % (3 * MIN) == 0 else ())
    seen = events(messages)
    assert [e for e, _ in seen] == list(SESSION_EVENTS), "each event once, in order"
    times = dict(seen)
    assert times["start_of_day"] == utc(f"{date}T14:00")  # 30 min before the 9:30 ET open
    assert times["first_value"] == utc(f"{date}T14:30")
    assert times["close"] == utc(close_utc)
    assert times["end_of_day"] == utc(close_utc) + 15 * MIN
    assert calendar.session_at(utc(close_utc) + MIN) is None, "nothing is valued after the close"
    for m in messages:
        if m.record is not None and m.kind != "value":
            assert m.record["session"] == date and m.record["instance"] == "i-1"
    close = next(m.record for m in messages if m.kind == "session" and m.key == "close" and m.record)
    assert (close["open"], close["close"]) == (int(opens[0]), int(closes[0]))
    summaries = {m.key: m.record for m in messages if m.kind == "summary"}
    boundaries = (utc(close_utc) - utc(f"{date}T14:30")) // MIN + 1
    assert set(summaries) == set(u.funds)
    bbb = summaries["BBB"]
    assert bbb["published"] == boundaries and bbb["ts"] == utc(close_utc) and bbb["complete"]
    assert bbb["flagged"] == sum(1 for k in range(boundaries) if (utc(f"{date}T14:30") + k * MIN) % (3 * MIN) == 0)
    values = [publication(u, utc(f"{date}T14:30") + k * MIN).records[1]["iopv"] for k in range(boundaries)]
    assert (bbb["first"], bbb["high"], bbb["low"], bbb["last"]) == (values[0], max(values), min(values), values[-1])
    assert (bbb["first_ts"], bbb["last_ts"]) == (utc(f"{date}T14:30"), utc(close_utc))
    # summaries are out before the close event that announces them
    order = [(m.kind, m.key) for m in messages if m.record is not None]
    assert order.index(("summary", "AAA")) < order.index(("session", "close"))


def test_the_next_day_clears_yesterdays_later_events_and_relabels_the_directory():
    u = universe()
    day = feed()
    messages = run(day, u, utc("2024-11-29T13:00"), utc("2024-11-29T19:00"), started=False)
    messages = run(day, u, utc("2024-12-02T13:30"), utc("2024-12-02T14:31"))  # Monday morning
    cleared = [m.key for m in messages if m.kind == "session" and m.record is None]
    assert cleared == ["first_value", "close", "end_of_day"]
    assert [e for e, _ in events(messages)] == ["start_of_day", "first_value"]
    directory = [m.record for m in messages if m.kind == "directory"]
    assert len(directory) == 3 and {r["session"] for r in directory} == {"2024-12-02"}


def test_heartbeat_says_when_the_next_value_is_due():
    u = universe()
    day = feed()
    run(day, u, utc("2024-11-29T13:00"), utc("2024-11-29T15:00"), started=False)
    beat = day.heartbeat(utc("2024-11-29T15:00") + 20 * NS, utc("2024-11-29T15:00"), 5.0).record
    assert beat["state"] == "open" and beat["next_ts"] == utc("2024-11-29T15:01")
    assert beat["last_ts"] == utc("2024-11-29T15:00") and beat["session"] == "2024-11-29"
    run(day, u, utc("2024-11-29T15:00"), utc("2024-11-29T19:00"))
    beat = day.heartbeat(utc("2024-11-29T19:00"), utc("2024-11-29T18:00"), 5.0).record
    assert beat["state"] == "ended" and beat["session"] == "2024-12-02"  # the weekend: Monday is next
    assert beat["next_ts"] == utc("2024-12-02T14:30") and beat["last_ts"] == utc("2024-11-29T18:00")


def test_always_calendar_rolls_over_at_midnight_in_order():
    u = universe()
    day = feed("always", interval_ns=15 * NS)
    messages = run(day, u, utc("2024-12-06T23:58"), utc("2024-12-07T00:01"), step_ns=15 * NS, started=False)
    seen = events(messages)
    assert [e for e, _ in seen] == ["start_of_day", "first_value", "close", "end_of_day", "start_of_day",
                                    "first_value"]
    assert seen[2][1] == utc("2024-12-07T00:00") - 15 * NS, "the last boundary of the UTC day"
    assert seen[4][1] == seen[5][1] == utc("2024-12-07T00:00")
    assert session_label(day.calendar, utc("2024-12-07T00:00")) == "2024-12-07"


def test_a_restart_within_the_day_sends_no_event_twice():
    u = universe()
    first = feed()
    before = run(first, u, utc("2024-11-29T13:00"), utc("2024-11-29T15:00"), started=False)
    saved = {m.key: m.record for m in before if m.kind == "session" and m.record is not None}
    index = {m.key: m.record for m in before if m.kind == "directory"}
    second = feed()
    after = second.start(u, utc("2024-11-29T15:30"), index=index, saved=saved)
    after = run(second, u, utc("2024-11-29T15:30"), utc("2024-11-29T19:00"), messages=after)
    assert [e for e, _ in events(after)] == ["close", "end_of_day"]
    summary = next(m.record for m in after if m.kind == "summary" and m.key == "AAA")
    assert not summary["complete"] and summary["first_ts"] == utc("2024-11-29T15:30")


def test_a_swap_marks_removed_funds_and_clears_their_values():
    u = universe()
    day = feed()
    run(day, u, utc("2024-11-29T13:00"), utc("2024-11-29T15:00"), started=False)
    v2 = universe(("AAA", "CCC", "DDD"))
    swap = utc("2024-11-29T15:00")
    messages = day.on_swap(v2, swap)
    directory = {m.key: m.record for m in messages if m.kind == "directory"}
    assert directory["BBB"]["status"] == "removed" and directory["BBB"]["basket"] == v2.version
    assert directory["DDD"]["status"] == "active" and directory["AAA"]["basket"] == v2.version
    assert all(r["ts"] == swap for r in directory.values())
    assert [m.key for m in messages if m.kind == "value"] == ["BBB"]
    assert directory["AAA"]["name"] == "Fund AAA" and directory["AAA"]["holdings"] == 1
    after = run(day, v2, swap, utc("2024-11-29T19:00"))
    summaries = {m.key: m.record for m in after if m.kind == "summary"}
    assert summaries["BBB"]["last_ts"] == swap - MIN and summaries["DDD"]["first_ts"] == swap
    assert not summaries["DDD"]["complete"] and summaries["AAA"]["complete"]
    # next session: the removed fund's retained record is cleared, not repeated
    monday = run(day, v2, utc("2024-12-02T13:55"), utc("2024-12-02T14:05"))
    assert ("directory", "BBB", None) in monday


def test_start_marks_funds_a_new_basket_file_dropped():
    index = {"OLD": {"fund": "OLD", "status": "active", "session": "2024-11-29"},
             "GONE": {"fund": "GONE", "status": "removed", "session": "2024-11-27"},
             "OTHER": {"fund": "OTHER", "status": "active", "session": "2024-11-29"}}
    day = feed(owns=lambda fund: fund != "OTHER")
    messages = day.start(universe(), utc("2024-11-29T16:00"), index=index)
    directory = {m.key: m.record for m in messages if m.kind == "directory"}
    assert directory["OLD"]["status"] == "removed" and ("value", "OLD", None) in messages
    assert directory["GONE"] is None, "removed on an earlier day: cleared"
    assert "OTHER" not in directory, "another shard's fund is left alone"


@pytest.mark.parametrize("text,fragments", [
    ("[events]\nheartbeat_s = 0.01\n", ["events.heartbeat_s"]),
    ("[events]\nheartbeat_s = -1\n", ["events.heartbeat_s"]),
    ("[events]\nstart_of_day_lead_s = 50000\n", ["events.start_of_day_lead_s"]),
    ("[events]\nend_of_day_delay_s = nan\n", ["events.end_of_day_delay_s"]),
    ("[events]\nqos = 3\n", ["events.qos"]),
    ("[events]\nheartbeat = 5\n", ["events.heartbeat", "unknown key"]),
    ("[events]\nenabled = 'maybe'\n", ["events.enabled", "expected bool"]),
])
def test_events_settings_are_checked(tmp_path, text, fragments):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    for fragment in fragments:
        assert fragment in str(info.value)


def test_events_settings_defaults_and_environment(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    settings = load_settings(path, environ={"IOPV_EVENTS_HEARTBEAT_S": "2.5", "IOPV_EVENTS_ENABLED": "false"})
    assert settings.events.heartbeat_s == 2.5 and settings.events.enabled is False
    assert settings.events.start_of_day_lead_s == 1800.0 and settings.events.end_of_day_delay_s == 900.0
    with pytest.raises(ConfigError, match="IOPV_EVENTS_HEARTBEAT"):
        load_settings(path, environ={"IOPV_EVENTS_HEARTBEAT": "2"})
