"""The operator's endpoints on the web server (``iopv.service.web``): ``/healthz``, ``/readyz``
and ``/metrics``.

- ``/healthz``: 200 while the process serves requests (liveness; restart it when this fails).
- ``/readyz``: 200 when every component is ready, otherwise 503. The JSON body lists every
  check either way: ``baskets_loaded`` (engine), ``ticks_connected`` and ``feed_not_silent``
  (tick feed), ``<sink>_connected`` per sink (``mqtt``, ``redis``, and ``mqtt_realtime`` when
  real-time values are on). ``book`` says whether the book is whole (``whole``, and the
  ``recovering`` reason while not): information, not a check -- a recovering instance publishes
  flagged values and must not be taken out (docs/scaling.md).
- ``/metrics``: Prometheus text format (``iopv.service.metrics``).

The checks and counters come from the components passed in (``iopv.service.components``).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from iopv.service.components import Components
from iopv.service.metrics import CONTENT_TYPE, Metrics


def add_routes(app: web.Application, components: Components, metrics: Metrics) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"alive"}', content_type="application/json")

    async def readyz(_request: web.Request) -> web.Response:
        ready, checks = components.readiness()
        body = {"ready": ready, "checks": checks, "book": components.book()}
        return web.Response(body=orjson.dumps(body), status=200 if ready else 503,
                            content_type="application/json")

    async def metrics_handler(_request: web.Request) -> web.Response:
        # Content-Type is given whole (it carries a version parameter aiohttp would not take apart).
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
