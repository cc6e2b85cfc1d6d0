"""Redis publisher: hash ``<prefix>:<FUND>`` (latest value) and capped stream
``<prefix>:<FUND>:history`` (one entry per boundary), one non-transactional pipeline per batch.

While Redis is away the queue holds up to ``redis.history_queue_cycles`` publications, which are
flushed in order on reconnect, so the history has no gap unless that bound is exceeded (the
oldest are then dropped, counted and logged). The engine's restart state (``iopv.persistence``)
rides with the last chunk: only its latest snapshot is kept, so it never grows.

A publication is written in pipelines of ``CHUNK_FUNDS`` funds, yielding to the event loop
between them, so tick intake and the clock never wait for a whole US-scale cycle (7,000
commands); a chunk that fails is resumed from, not repeated, so each fund gets one history entry
per boundary. Commands are packed by hiredis in C: redis.asyncio only ever packs in Python
(~0.3 s per US-scale cycle), whatever parser is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import hiredis
import orjson
import redis.asyncio as aioredis
import redis.exceptions

from iopv.backoff import Backoff
from iopv.config import RedisSettings
from iopv.publication import Publication
from iopv.sinks.base import QueuedSink

log = logging.getLogger(__name__)

#: Funds per pipeline (2 commands each). Small enough that packing and parsing one chunk blocks
#: the loop for a few ms; large enough that the round trips between chunks cost little.
CHUNK_FUNDS = 64
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


def field_args(record: dict[str, Any]) -> list[Any]:
    """A record as flat Redis hash/stream field arguments ``[name, value, ...]``: the same fields
    (strings as they are, anything else as its JSON text; the fund is in the key), with JSON kept
    as bytes so nothing is decoded and re-encoded."""
    args: list[Any] = []
    append = args.append
    dumps = orjson.dumps
    for key, value in record.items():
        if key != "fund":
            append(key)
            append(value if type(value) is str else dumps(value))
    return args


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


class RedisSink(QueuedSink):
    """Writes the latest value and appends to the history of every fund."""

    name = "redis"

    def __init__(self, settings: RedisSettings, *, max_queued: int, state_key: str | None = None):
        super().__init__(max_queued=max_queued,
                         backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s))
        self.settings = settings
        self.state_key = state_key
        #: Latest engine state snapshot not yet written (set by ``iopv.persistence.StateRecorder``).
        self.pending_state: bytes | None = None
        #: (publication, funds already written) when a send failed part-way through it.
        self._resume: tuple[Publication, int] | None = None

    @contextlib.asynccontextmanager
    async def connect(self):
        client = redis_client(self.settings)
        try:
            await client.ping()
            yield client
        finally:
            await close_client(client)

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                                redis.exceptions.BusyLoadingError)) or super().is_connection_error(exc)

    async def send(self, client: aioredis.Redis, batch: list[Publication]) -> None:
        prefix, maxlen = self.settings.key_prefix, self.settings.history_maxlen
        last = len(batch) - 1
        # A failed batch comes back whole; the publications before the one it failed in were
        # written, and must not get a second history entry (nor set the hashes back).
        resume, first = self._resume, 0
        if resume is not None:
            first = next((p for p, publication in enumerate(batch) if publication is resume[0]), 0)
        for p, publication in enumerate(batch):
            if p < first:
                continue
            start = resume[1] if resume is not None and resume[0] is publication else 0
            funds, records = publication.funds, publication.records
            stop_at = len(funds)
            while True:
                end = min(start + CHUNK_FUNDS, stop_at)
                pipe = client.pipeline(transaction=False)
                for fund, record in zip(funds[start:end], records[start:end]):
                    fields = field_args(record)
                    key = f"{prefix}:{fund}"
                    pipe.execute_command("HSET", key, *fields)
                    pipe.execute_command("XADD", f"{key}:history", "MAXLEN", "~", maxlen, "*", *fields)
                state = self.pending_state
                final = p == last and end == stop_at
                if final and state is not None and self.state_key:
                    pipe.set(self.state_key, state)
                try:
                    await pipe.execute()
                except BaseException:
                    # Resume from this chunk: the ones before it must not get a second entry.
                    self._resume = (publication, start)
                    raise
                self._resume = None
                if final and self.pending_state is state:
                    self.pending_state = None
                if end == stop_at:
                    break
                start = end
                await asyncio.sleep(0)  # let ticks, the clock and the other sink in


async def close_client(client: aioredis.Redis, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close ``client`` within ``timeout_s``; on timeout its sockets are dropped without waiting."""
    try:
        await asyncio.wait_for(client.aclose(), timeout_s)
    except (asyncio.TimeoutError, OSError, redis.exceptions.RedisError) as exc:
        log.warning("redis: connection not closed cleanly (%s); dropping it", type(exc).__name__)
        with contextlib.suppress(Exception):
            await client.connection_pool.disconnect(inuse_connections=True)
