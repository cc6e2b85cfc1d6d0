"""The JSON API and the push stream of the web server (``iopv.service.web``).

- ``GET /api/values``: the latest published record of every fund, a JSON list in basket order.
- ``GET /api/values/<FUND>``: that fund's latest record; 404 with ``{"error", "fund"}`` for a fund
  not in the baskets or not yet valued.
- ``GET /api/history/<FUND>?from=&to=``: the fund's records from the Redis history stream
  ``<redis.key_prefix>:<FUND>:history``, oldest first, by the records' ``ts`` (read by
  ``iopv.adapters.redis.history``, as ``iopv history`` reads it; ``from``/``to`` are ISO-8601,
  e.g. ``2026-11-30T14:30:00Z`` (no zone = UTC), or epoch milliseconds; both optional, both
  inclusive). A bad parameter is a 400 with ``{"error", "parameter"}`` naming it.
- ``GET /api/board``: the board's rows (``iopv.engine.view``): ``{"now_ns", "interval_s",
  "decimals", "names", "rows"}``.
- ``GET /api/stream``: Server-Sent Events. At every boundary one ``values`` event whose data is
  the JSON list of the records published (``id`` = the boundary in epoch ms); with ``?board=1``
  also a ``board`` event with the rows of those records. A comment line every
  ``KEEPALIVE_S`` keeps proxies from closing an idle stream. With ``?realtime=1`` (and
  ``realtime.enabled``) also a ``realtime`` event per real-time publication, its data the list of
  the real-time records published (README "Real-time values").

Records are exactly the published JSON records (README "Outputs"): the API serves what the
engine handed its sinks (latest values) and what the Redis sink wrote (history).

An event is encoded once (and its board rows computed once, ~10 ms at 3,500 funds) however many
subscribers it goes to. Each stream subscriber has a bounded queue (``STREAM_QUEUE_EVENTS``); a subscriber that falls
behind loses its oldest events, counted in ``ValuesHub.dropped``, and never slows the engine.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from iopv.adapters.redis import history
from iopv.config import Settings
from iopv.core.universe import Universe
from iopv.engine import view
from iopv.engine.publication import Publication

log = logging.getLogger(__name__)

#: Events a stream subscriber may have waiting; beyond it its oldest are dropped and counted.
STREAM_QUEUE_EVENTS = 64
#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE_S = 15.0


class BadParameter(ValueError):
    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def parse_time_ns(text: str, parameter: str) -> int:
    """``text`` (ISO-8601, naive = UTC, or epoch milliseconds) as epoch ns: the one parser of
    ``iopv history`` (``adapters.redis.history``), with the bad parameter named for a 400."""
    try:
        ns = history.parse_time_ns(text)
    except ValueError as exc:
        raise BadParameter(parameter, f"{parameter}: {exc}") from None
    if ns < 0:
        raise BadParameter(parameter, f"{parameter}: before the epoch: {text.strip()!r}")
    return ns


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error(status: int, message: str, **fields: Any) -> web.Response:
    return json_response({"error": message, **fields}, status)


class Event:
    """One publication on the stream, encoded once however many subscribers it goes to."""

    __slots__ = ("kind", "ts_ms", "records", "_text", "_board")

    def __init__(self, kind: bytes, ts_ns: int, records: list[dict[str, Any]]):
        self.kind = kind
        self.ts_ms = ts_ns // 1_000_000
        self.records = records
        self._text: bytes | None = None
        self._board: bytes | None = None

    def text(self) -> bytes:
        if self._text is None:
            self._text = b"id: %d\nevent: %s\ndata: %s\n\n" % (self.ts_ms, self.kind, orjson.dumps(self.records))
        return self._text

    def board_text(self, hub: ValuesHub) -> bytes:
        """The ``board`` event of a ``values`` event: its rows (computed for the first subscriber)."""
        if self._board is None:
            rows = {"now_ns": time.time_ns(), "interval_s": hub.interval_s, "rows": hub.rows(self.records)}
            self._board = b"id: %d\nevent: board\ndata: %s\n\n" % (self.ts_ms, orjson.dumps(rows))
        return self._board


class Subscriber:
    """One stream's bounded queue of events and its wake-up."""

    __slots__ = ("queue", "wakeup", "realtime")

    def __init__(self, *, realtime: bool = False):
        self.queue: collections.deque = collections.deque()
        self.wakeup = asyncio.Event()
        self.realtime = realtime  # also wants the real-time records

    def put(self, event) -> bool:
        """Queue ``event``; False when the oldest had to go to make room."""
        full = len(self.queue) >= STREAM_QUEUE_EVENTS
        if full:
            self.queue.popleft()
        self.queue.append(event)
        self.wakeup.set()
        return not full


class ValuesHub:
    """The latest record of every fund, and the stream subscribers; fed by the engine after every
    cycle (``on_publication``), which costs a dict update per fund and a queue put per subscriber."""

    def __init__(self, settings: Settings, universe: Callable[[], Universe]):
        self.settings = settings
        self.universe = universe
        self.interval_s = settings.engine.interval_s
        self.decimals = settings.engine.decimals
        self.latest: dict[str, dict[str, Any]] = {}
        self.subscribers: set[Subscriber] = set()
        self.dropped = 0
        self.events = 0
        self.redis = None  # the web server's client for history reads (set at its start)
        self._reference: tuple[Universe | None, dict[str, float]] = (None, {})  # per baskets in use
        self._known: tuple[Universe | None, frozenset[str]] = (None, frozenset())

    def known(self) -> frozenset[str]:
        """The funds of the baskets in use."""
        universe = self.universe()
        if self._known[0] is not universe:
            self._known = (universe, frozenset(universe.funds))
        return self._known[1]

    def reference(self) -> dict[str, float]:
        """Each fund's reference for the change column, recomputed when the baskets change."""
        universe = self.universe()
        if self._reference[0] is not universe:
            self._reference = (universe, view.reference_values(universe, self.decimals))
        return self._reference[1]

    def rows(self, records: list[dict[str, Any]], now_ns: int | None = None) -> list[dict[str, Any]]:
        now_ns = time.time_ns() if now_ns is None else now_ns
        reference = self.reference()
        return [view.row(r, now_ns=now_ns, interval_s=self.interval_s, reference=reference.get(r["fund"]),
                         decimals=self.decimals) for r in records]

    def board(self) -> dict[str, Any]:
        universe = self.universe()
        records = [self.latest[fund] for fund in universe.funds if fund in self.latest]
        now_ns = time.time_ns()
        return {"now_ns": now_ns, "interval_s": self.interval_s, "decimals": self.decimals,
                "names": {fund: info.get("name", "") for fund, info in zip(universe.funds, universe.fund_info)},
                "rows": self.rows(records, now_ns)}

    def on_publication(self, publication: Publication) -> None:
        for record in publication.records:
            self.latest[record["fund"]] = record
        if not self.subscribers:
            return
        self.events += 1
        event = Event(b"values", publication.ts_ns, publication.records)
        for subscriber in self.subscribers:
            if not subscriber.put(event):
                self.dropped += 1

    def on_realtime(self, publication: Publication) -> None:
        """A real-time publication: to the subscribers that asked for them."""
        event = Event(b"realtime", publication.ts_ns, publication.records)
        for subscriber in self.subscribers:
            if subscriber.realtime and not subscriber.put(event):
                self.dropped += 1

    def close(self) -> None:
        """End every stream (at shutdown)."""
        for subscriber in self.subscribers:
            subscriber.queue.append(None)
            subscriber.wakeup.set()

    # -- handlers --------------------------------------------------------------------------

    async def values(self, request: web.Request) -> web.Response:
        universe = self.universe()
        return json_response([self.latest[fund] for fund in universe.funds if fund in self.latest])

    async def value(self, request: web.Request) -> web.Response:
        fund = request.match_info["fund"]
        if fund not in self.known():
            return error(404, f"unknown fund {fund!r}", fund=fund)
        record = self.latest.get(fund)
        if record is None:
            return error(404, f"no value published yet for {fund!r}", fund=fund)
        return json_response(record)

    async def board_handler(self, request: web.Request) -> web.Response:
        return json_response(self.board())

    async def history(self, request: web.Request) -> web.Response:
        fund = request.match_info["fund"]
        bounds: dict[str, int | None] = {}
        try:
            for parameter in ("from", "to"):
                text = request.query.get(parameter, "")
                bounds[parameter] = parse_time_ns(text, parameter) if text else None
            if bounds["from"] is not None and bounds["to"] is not None and bounds["from"] > bounds["to"]:
                raise BadParameter("from", f"from ({request.query['from']}) is after to ({request.query['to']})")
        except BadParameter as exc:
            return error(400, str(exc), parameter=exc.parameter)
        if fund not in self.known():
            return error(404, f"unknown fund {fund!r}", fund=fund)
        redis = self.redis
        if redis is None:
            return error(503, "redis client not started")
        try:
            records = await history.read_history(redis, self.settings.redis.key_prefix, fund,
                                                 from_ns=bounds["from"], to_ns=bounds["to"])
        except history.UnknownFund:
            records = []  # in the baskets, not valued yet
        except (OSError, ConnectionError, TimeoutError) as exc:
            return error(503, f"redis unavailable: {type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - redis-py's errors: report, never crash the server
            return error(503, f"redis error: {exc}")
        return json_response(records)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        board = request.query.get("board", "") in ("1", "true", "yes")
        realtime = request.query.get("realtime", "") in ("1", "true", "yes")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        subscriber = Subscriber(realtime=realtime)
        queue = subscriber.queue
        self.subscribers.add(subscriber)
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                if not queue:
                    subscriber.wakeup.clear()
                    try:
                        await asyncio.wait_for(subscriber.wakeup.wait(), KEEPALIVE_S)
                    except TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                event = queue.popleft()
                if event is None:
                    break
                chunk = event.text()
                if board and event.kind == b"values":
                    chunk += event.board_text(self)
                await response.write(chunk)
        except ConnectionError:  # the subscriber went away
            pass
        finally:
            self.subscribers.discard(subscriber)
        return response
