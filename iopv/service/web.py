"""The web server (``ops.http_port`` / ``--http-port``), on aiohttp and the engine's own event
loop: the operator's endpoints (``iopv.service.health``), the JSON API and push stream
(``iopv.service.api``), and the live board at ``/`` (``static/``: page, script, and the vendored
uPlot chart library).

It binds to ``ops.http_host`` (loopback by default): expose it through a reverse proxy or the
platform's ingress, not to the world. Requests are served between the engine's cycles, in the
same loop; every handler is short (a dict lookup, one Redis ``XRANGE``), and the stream's
subscribers read from bounded queues, so a slow browser never holds up a cycle.
"""

from __future__ import annotations

import logging
from importlib import resources

from aiohttp import web

from iopv.adapters.redis.client import close_client
from iopv.adapters.redis.cluster import reader_client
from iopv.config import Settings
from iopv.service import health
from iopv.service.api import ValuesHub
from iopv.service.components import Components
from iopv.service.metrics import Metrics

log = logging.getLogger(__name__)

#: Seconds open requests (the streams) get to finish at shutdown.
SHUTDOWN_TIMEOUT_S = 1.0
STATIC = resources.files("iopv.service") / "static"


class WebServer:
    """Serves one service's endpoints; ``port`` is the bound port after ``start`` (0 = any free)."""

    def __init__(self, settings: Settings, components: Components, metrics: Metrics, hub: ValuesHub,
                 host: str, port: int):
        self.settings = settings
        self.components = components
        self.hub = hub
        self.host = host
        self.port = port
        self.app = web.Application()
        health.add_routes(self.app, components, metrics)
        self.app.router.add_get("/api/values", hub.values)
        self.app.router.add_get("/api/values/{fund}", hub.value)
        self.app.router.add_get("/api/history/{fund}", hub.history)
        self.app.router.add_get("/api/board", hub.board_handler)
        self.app.router.add_get("/api/stream", hub.stream)
        self.app.router.add_get("/", self.index)
        self.app.router.add_static("/static/", str(STATIC), append_version=False)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def index(self, _request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / "board.html").read_bytes(), content_type="text/html")

    async def start(self) -> None:
        # One client for history reads, apart from the sink's writer connection.
        self.hub.redis = reader_client(self.settings.redis)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the real one when 0 was asked
        log.info("http: board %s; /api/... /healthz /readyz /metrics", self.url)

    async def close(self) -> None:
        self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.hub.redis is not None:
            await close_client(self.hub.redis)
            self.hub.redis = None
