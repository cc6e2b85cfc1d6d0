"""Redis publisher: hash ``<prefix>:<FUND>`` (latest value) and capped stream
``<prefix>:<FUND>:history`` (one entry per boundary), one non-transactional pipeline per batch."""

from __future__ import annotations

import contextlib

import redis.asyncio as aioredis
import redis.exceptions

from iopv.backoff import Backoff
from iopv.codec import redis_fields
from iopv.config import RedisSettings
from iopv.publication import Publication
from iopv.sinks.base import QueuedSink


class RedisSink(QueuedSink):
    """Writes the latest value and appends to the history of every fund."""

    name = "redis"

    def __init__(self, settings: RedisSettings, *, max_queued: int):
        super().__init__(max_queued=max_queued,
                         backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s))
        self.settings = settings

    @contextlib.asynccontextmanager
    async def connect(self):
        client = aioredis.Redis.from_url(self.settings.url, socket_timeout=5,
                                         socket_connect_timeout=5, retry_on_timeout=False)
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
        await pipe.execute()
