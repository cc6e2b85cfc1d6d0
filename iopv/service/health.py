"""The operator's HTTP endpoint (``ops.http_port`` / ``--http-port``): ``/healthz``, ``/readyz``
and ``/metrics``.

- ``/healthz``: 200 while the process serves requests (liveness; restart it when this fails).
- ``/readyz``: 200 when the baskets are loaded, the tick feed and both sinks are connected and
  the feed is not silent; otherwise 503. The JSON body lists every check either way.
- ``/metrics``: Prometheus text format (``iopv.service.metrics``).

A minimal HTTP/1.0 server on asyncio: GET only, one request per connection, bounded request
size, no dependency beyond the standard library. It binds to ``ops.http_host`` (loopback by
default): expose it through the platform's scrape path, not to the world.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import orjson

from iopv.service.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from iopv.service.live import Service

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_S = 5.0


def readiness(service: Service) -> tuple[bool, dict[str, bool]]:
    """(ready, every check by name)."""
    checks = {
        "baskets_loaded": len(service.universe.funds) > 0,
        "ticks_connected": service.feed.connected,
        "mqtt_connected": service.mqtt_sink.connected,
        "redis_connected": service.redis_sink.connected,
        "feed_not_silent": not service.feed.is_silent(time.time_ns()),
    }
    return all(checks.values()), checks


class HealthServer:
    """Serves the three endpoints of one service."""

    def __init__(self, service: Service, host: str, port: int):
        self.service = service
        self.host = host
        self.port = port
        self.requests = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]  # the real one when 0 was asked
        log.info("http: /healthz /readyz /metrics on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def respond(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "application/json", b'{"status":"alive"}'
        if path == "/readyz":
            ready, checks = readiness(self.service)
            body = orjson.dumps({"ready": ready, "checks": checks})
            return (200 if ready else 503), "application/json", body
        if path == "/metrics":
            return 200, CONTENT_TYPE, self.service.metrics.render()
        return 404, "text/plain", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            if len(head) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "GET":
                status, kind, body = 405, "text/plain", b"GET only\n"
            else:
                status, kind, body = self.respond(target.split("?", 1)[0])
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, UnicodeDecodeError):
            status, kind, body = 400, "text/plain", b"bad request\n"
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}[status]
        try:
            writer.write(f"HTTP/1.0 {status} {reason}\r\nContent-Type: {kind}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
