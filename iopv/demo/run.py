"""``iopv demo``: the engine on the demo universe with a live tick simulator, on real brokers.

Starts throwaway Mosquitto and Redis servers on free ports unless a URL was given (flag or
``IOPV_MQTT_URL`` / ``IOPV_REDIS_URL``), publishes random-walk ticks for every constituent over
MQTT, runs the full service against them with its web server (the board's URL is printed first;
``--http-port``, else a free port) and keeps a table of the values in place on the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from iopv.config import Settings
from iopv.core.universe import load_pcf
from iopv.demo.simulator import TickSimulator, publish_ticks
from iopv.engine import view
from iopv.localservers.servers import free_port, local_servers
from iopv.service.live import Service

log = logging.getLogger(__name__)


async def run_demo(settings: Settings, *, ticks_per_s: float, seed: int, duration_s: float | None,
                   display_factory: Callable[..., Any]) -> int:
    """The demo until stopped. ``display_factory`` builds the terminal table (the command line's
    ``iopv.cli.display.TerminalDisplay``: the demo sits below the command layer, so it is handed in)."""
    universe = load_pcf(settings.engine.pcf_path)
    names = {fund: info.get("name", "") for fund, info in zip(universe.funds, universe.fund_info)}
    n_securities = len(universe.symbols)
    simulator = TickSimulator(list(universe.symbols), universe.initial_prices[:n_securities].copy(),
                              seed=seed, ticks_per_s=ticks_per_s)
    service: Service | None = None

    def status() -> str:
        intake = service.engine.intake
        return (f"ticks sent {simulator.published_ticks:,}  received {intake.received:,}  "
                f"accepted {intake.accepted:,}  rejected {intake.rejected:,}  "
                f"symbols ticked {service.engine.book.ticked}/{n_securities}")

    if not settings.ops.http_port:  # the board always runs in the demo: on a free port unless one is given
        settings = dataclasses.replace(settings, ops=dataclasses.replace(settings.ops, http_port=free_port()))
    display = display_factory(names, view.reference_values(universe, settings.engine.decimals), status,
                              decimals=settings.engine.decimals, interval_s=settings.engine.interval_s)
    service = Service(settings, universe=universe, extra_sinks=[display])
    display.url = service.http.url
    print(f"IOPV board: {display.url}  (the table follows at the first boundary; Ctrl-C stops)", flush=True)
    stop = asyncio.Event()
    simulator_task = asyncio.create_task(
        publish_ticks(simulator, hostname=settings.mqtt.hostname, port=settings.mqtt.port,
                      topic_prefix=settings.mqtt.tick_topic_prefix, stop=stop,
                      username=settings.mqtt.username, password=settings.mqtt.password),
        name="demo.simulator")
    timer = None
    if duration_s is not None:
        timer = asyncio.get_running_loop().call_later(duration_s, service.request_stop)
    try:
        return await service.run()
    finally:
        if timer:
            timer.cancel()
        stop.set()
        display.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(simulator_task, 2.0)


def demo(settings: Settings, *, own_mqtt: bool, own_redis: bool, ticks_per_s: float, seed: int,
         duration_s: float | None, runner, display_factory: Callable[..., Any]) -> int:
    """Start servers as needed, then run the demo with ``runner`` (an asyncio runner function)."""
    with local_servers(mqtt=own_mqtt, redis=own_redis) as (mosquitto, redis_server):
        mqtt = settings.mqtt if mosquitto is None else dataclasses.replace(settings.mqtt, url=mosquitto.url)
        redis = settings.redis if redis_server is None else dataclasses.replace(settings.redis, url=redis_server.url)
        settings = dataclasses.replace(settings, mqtt=mqtt, redis=redis)
        if mosquitto or redis_server:
            log.info("demo: throwaway servers: %s %s (stopped on exit)",
                     mosquitto.url if mosquitto else "", redis_server.url if redis_server else "")
        return runner(run_demo(settings, ticks_per_s=ticks_per_s, seed=seed, duration_s=duration_s,
                               display_factory=display_factory))
