"""redis-py client construction shared by the Redis sink and the restart state: TLS, password
file, and connections that pack commands with hiredis in C (redis.asyncio only ever packs in
Python, ~0.3 s per US-scale cycle of pipelines, whatever parser is installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import hiredis
import redis.asyncio as aioredis
import redis.exceptions

from iopv.config import RedisSettings

log = logging.getLogger(__name__)

#: Bound on closing the connection (redis-py waits up to its connect timeout, 5 s, for a socket
#: to close); past it the socket is dropped, so a stop or reconnect never hangs on a dead peer.
CLOSE_TIMEOUT_S = 1.0


class _HiredisPacking:
    """Connection mixin: pack commands with ``hiredis.pack_command`` (C) instead of Python."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py does: a first argument such as "CONFIG GET" is several words.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise redis.exceptions.DataError(str(exc)) from exc


class HiredisConnection(_HiredisPacking, aioredis.Connection):
    """A plain TCP connection packing with hiredis."""


class HiredisSSLConnection(_HiredisPacking, aioredis.SSLConnection):
    """A TLS connection packing with hiredis."""


def redis_client(settings: RedisSettings, **kwargs) -> aioredis.Redis:
    """A client for the configured server: URL credentials, password file and TLS files applied."""
    options = {"socket_timeout": 5, "socket_connect_timeout": 5, "retry_on_timeout": False,
               "connection_class": HiredisSSLConnection if settings.url.startswith("rediss://")
               else HiredisConnection, **kwargs}
    if settings.password_file:
        from iopv.config import read_secret
        options["password"] = read_secret(settings.password_file)
    if settings.url.startswith("rediss://"):
        options.update(ssl_ca_certs=settings.tls_ca_file or None,
                       ssl_certfile=settings.tls_cert_file or None,
                       ssl_keyfile=settings.tls_key_file or None)
    client = aioredis.Redis.from_url(settings.url, **options)
    if settings.url.startswith("rediss://") and "connection_class" not in kwargs:
        # from_url lets the URL's options win, and for rediss:// that includes redis-py's own
        # SSLConnection, which packs commands in Python: put the hiredis-packing class back.
        client.connection_pool.connection_class = HiredisSSLConnection
    return client


async def close_client(client: aioredis.Redis, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close ``client`` within ``timeout_s``; on timeout its sockets are dropped without waiting."""
    try:
        await asyncio.wait_for(client.aclose(), timeout_s)
    except (TimeoutError, OSError, redis.exceptions.RedisError) as exc:
        log.warning("redis: connection not closed cleanly (%s); dropping it", type(exc).__name__)
        with contextlib.suppress(Exception):
            await client.connection_pool.disconnect(inuse_connections=True)
