"""``iopv tail``: a live terminal view of the published values, for any subscriber of the broker.

It subscribes to ``<mqtt.value_topic_prefix>/<FUND>`` (every fund, or those named; retained, so
the latest values show at once) and keeps the board's columns (``iopv.engine.view``) in a table
that is redrawn in place (``iopv.cli.display``). With ``--realtime`` it also subscribes to the
real-time values (``<realtime.topic_prefix>/<FUND>``): a fund's value, bid and ask and its time
follow the newest record of either kind, its status and coverage the last boundary's. With
``--json`` it prints every record as received, one per line, instead of the table.

The change column needs each fund's reference: a record's ``prior_nav`` when its basket file gives
one, else (``--pcf FILE``) the basket at its previous closes; without either it is blank.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from typing import Any, TextIO

import aiomqtt
import orjson

from iopv.adapters.mqtt.client import make_client
from iopv.cli.display import TableView, values_table
from iopv.config import Settings
from iopv.core import names
from iopv.core.universe import Universe
from iopv.engine import view

log = logging.getLogger(__name__)

#: Most redraws of the table per second (records may arrive by the thousand at a boundary).
REDRAW_PER_S = 4.0


class Tail:
    """Subscribes and keeps the latest record of each fund; renders them or prints them raw."""

    def __init__(self, settings: Settings, funds: list[str], *, realtime: bool = False, as_json: bool = False,
                 universe: Universe | None = None, stream: TextIO | None = None, force_terminal: bool | None = None):
        self.settings = settings
        self.funds = list(funds)
        self.realtime = realtime
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.boundary: dict[str, dict[str, Any]] = {}
        self.live: dict[str, dict[str, Any]] = {}
        self.order: list[str] = list(universe.funds) if universe is not None else list(funds)
        self.names = {f: i.get("name", "") for f, i in zip(universe.funds, universe.fund_info)} if universe else {}
        self.reference = view.reference_values(universe, settings.engine.decimals) if universe is not None else {}
        self.records = 0
        self.view = None if as_json else TableView(self.stream, force_terminal=force_terminal)

    def topics(self) -> list[str]:
        """The named funds' value topics, or every fund's; the real-time values' tree has the
        same ``<prefix>/<FUND>`` shape under its own prefix."""
        prefixes = [self.settings.mqtt.value_topic_prefix]
        if self.realtime:
            prefixes.append(self.settings.realtime.topic_prefix)
        if self.funds:
            return [names.value_topic(prefix, fund) for prefix in prefixes for fund in self.funds]
        return [names.topic_filters(prefix)["value"] for prefix in prefixes]

    def accept(self, topic: str, payload: bytes) -> bool:
        """Take one message; False when it is not a fund's record (a status message, junk)."""
        prefix, _, fund = topic.partition("/")
        if not fund or fund.startswith("_") or "/" in fund:
            return False
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("tail: %s: not JSON, skipped", topic)
            return False
        if not isinstance(record, dict) or "iopv" not in record or "ts" not in record:
            return False
        self.records += 1
        if self.as_json:
            self.stream.write(payload.decode("utf-8", "replace") + "\n")
            self.stream.flush()
            return True
        fund = record.get("fund", fund)
        (self.live if record.get("realtime") else self.boundary)[fund] = record
        if fund not in self.order:
            self.order.append(fund)
        return True

    def merged(self, fund: str) -> dict[str, Any] | None:
        """The fund's boundary record, its value fields from a newer real-time record if any."""
        base, live = self.boundary.get(fund), self.live.get(fund)
        if base is None or (live is not None and live["ts"] > base["ts"]):
            if live is None:
                return None
            return {**(base or {}), **live}
        return base

    def rows(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        now_ns = time.time_ns() if now_ns is None else now_ns
        out = []
        for fund in self.order:
            record = self.merged(fund)
            if record is not None and (not self.funds or fund in self.funds):
                out.append(view.row(record, now_ns=now_ns, interval_s=self.settings.engine.interval_s,
                                    reference=self.reference.get(fund), decimals=self.settings.engine.decimals))
        return out

    def render(self) -> None:
        if self.view is None:
            return
        source = self.settings.mqtt.url.rsplit("@", 1)[-1]
        caption = f"{self.records:,} records from {source}" + ("  (with real-time values)" if self.realtime else "")
        self.view.show(values_table(self.rows(), names=self.names, decimals=self.settings.engine.decimals,
                                    title=time.strftime("IOPV tail  %Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                    caption=caption))

    async def run(self, *, count: int | None = None, duration_s: float | None = None) -> int:
        """Until Ctrl-C, ``count`` records or ``duration_s`` seconds; reconnects when the broker goes."""
        client_settings = self.settings.mqtt
        deadline = None if duration_s is None else time.monotonic() + duration_s
        identifier = f"iopv-tail-{uuid.uuid4().hex[:8]}"
        next_draw = 0.0
        try:
            while True:
                try:
                    async with make_client(client_settings, identifier) as client:
                        for topic in self.topics():
                            await client.subscribe(topic, qos=1)
                        messages = aiter(client.messages)
                        while True:
                            timeout = 1.0 / REDRAW_PER_S
                            if deadline is not None:
                                timeout = min(timeout, deadline - time.monotonic())
                                if timeout <= 0:
                                    return 0
                            with contextlib.suppress(TimeoutError):
                                message = await asyncio.wait_for(anext(messages), timeout)
                                self.accept(message.topic.value, bytes(message.payload))
                                if count is not None and self.records >= count:
                                    return 0
                            if time.monotonic() >= next_draw:
                                self.render()
                                next_draw = time.monotonic() + 1.0 / REDRAW_PER_S
                except aiomqtt.MqttError as exc:
                    log.warning("tail: %s; reconnecting in 1 s", exc)
                    await asyncio.sleep(1.0)
        finally:
            self.render()
            if self.view is not None:
                self.view.close()
