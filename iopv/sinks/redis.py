"""Redis publisher: hash ``<prefix>:<FUND>`` (latest value) and capped stream
``<prefix>:<FUND>:history`` (one entry per boundary), one non-transactional pipeline per batch.

While Redis is away the queue holds up to ``redis.history_queue_cycles`` publications, which are
flushed in order on reconnect, so the history has no gap unless that bound is exceeded (the
oldest are then dropped, counted and logged). The engine's restart state (``iopv.persistence``)
rides in the same pipeline: only its latest snapshot is kept, so it never grows.
"""

from __future__ import annotations

import contextlib

import redis.asyncio as aioredis
import redis.exceptions

from iopv.backoff import Backoff
from iopv.codec import redis_fields
from iopv.config import RedisSettings
from iopv.publication import Publication
from iopv.sinks.base import QueuedSink


def redis_client(settings: RedisSettings, **kwargs) -> aioredis.Redis:
    """A client for the configured server: URL credentials, password file and TLS files applied."""
    options = {"socket_timeout": 5, "socket_connect_timeout": 5, "retry_on_timeout": False, **kwargs}
    if settings.password_file:
        from iopv.config import read_secret
        options["password"] = read_secret(settings.password_file)
    if settings.url.startswith("rediss://"):
        options.update(ssl_ca_certs=settings.tls_ca_file or None,
                       ssl_certfile=settings.tls_cert_file or None,
                       ssl_keyfile=settings.tls_key_file or None)
    return aioredis.Redis.from_url(settings.url, **options)


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

    @contextlib.asynccontextmanager
    async def connect(self):
        client = redis_client(self.settings)
        try:
            await client.ping()
            yield client
        finally:
            await client.aclose()

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                                redis.exceptions.BusyLoadingError)) or super().is_connection_error(exc)

    async def send(self, client: aioredis.Redis, batch: list[Publication]) -> None:
        prefix, maxlen = self.settings.key_prefix, self.settings.history_maxlen
        pipe = client.pipeline(transaction=False)
        for publication in batch:
            for fund, record in zip(publication.funds, publication.records):
                fields = redis_fields(record)
                key = f"{prefix}:{fund}"
                pipe.hset(key, mapping=fields)
                pipe.xadd(f"{key}:history", fields, maxlen=maxlen, approximate=True)
        state = self.pending_state
        if state is not None and self.state_key:
            pipe.set(self.state_key, state)
        await pipe.execute()
        if self.pending_state is state:
            self.pending_state = None
