"""The restart state in Redis: its key, reading it back at start, and the replicas of a shard.

The Redis sink writes the snapshot (``iopv.engine.restart.snapshot``) with each publication;
this module says where it lives and loads it for ``iopv.engine.restart.restore``. Each instance
also registers its state key in its shard's replica registry, a hash
``<redis.key_prefix>:_replicas:<K/N>`` (field: instance, value: its state key), so a replica that
is not whole finds its peers' states for a state transfer (``peer_states``; docs/scaling.md). The
same hash holds ``_first_tick:<UTC day>``: when a replica of the shard first received a tick that
day (``mark_first_tick``), so a replica that starts later knows it missed ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.exceptions

from iopv.adapters.redis.cluster import reader_client
from iopv.config import Settings
from iopv.core import names

log = logging.getLogger(__name__)


def state_key(settings: Settings) -> str:
    """``<redis.key_prefix>:_state:<engine.instance>``: one restart state per instance."""
    return names.state_key(settings.redis.key_prefix, settings.engine.instance)


def registry_key(settings: Settings) -> str:
    """``<redis.key_prefix>:_replicas:<engine.shard>``: the instances of one shard, and their state keys."""
    return names.registry_key(settings.redis.key_prefix, settings.engine.shard)


@contextlib.asynccontextmanager
async def _using(settings: Settings, client, timeout_s: float):
    """``client`` when given (the caller keeps it, e.g. across the polls of a recovery), else a
    client of its own for this one call, closed after it."""
    if client is not None:
        yield client
        return
    own = reader_client(settings.redis, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        yield own
    finally:
        await own.aclose()


async def register(settings: Settings, timeout_s: float = 2.0, *, client=None) -> bool:
    """Add this instance to its shard's registry; False (logged) when Redis cannot be reached:
    its peers then find it once a later start registers it."""
    try:
        async with _using(settings, client, timeout_s) as redis_client:
            await asyncio.wait_for(redis_client.hset(registry_key(settings), settings.engine.instance,
                                                     state_key(settings)), timeout_s)
        return True
    except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
        log.warning("state: cannot register in %s (%s)", registry_key(settings), exc)
        return False


async def mark_first_tick(settings: Settings, day: int, recv_ns: int, timeout_s: float = 2.0, *,
                          client=None) -> None:
    """Record, unless a replica did already, when the shard's first tick of the day was received.
    Raises the client's error when Redis cannot be reached (the caller retries)."""
    async with _using(settings, client, timeout_s) as redis_client:
        await asyncio.wait_for(redis_client.hsetnx(registry_key(settings), names.first_tick_field(day), recv_ns),
                               timeout_s)


async def first_tick(settings: Settings, day: int, timeout_s: float = 2.0, *, client=None) -> int | None:
    """When the shard's first tick of the day was received (by any replica), or None."""
    async with _using(settings, client, timeout_s) as redis_client:
        value = await asyncio.wait_for(redis_client.hget(registry_key(settings), names.first_tick_field(day)),
                                       timeout_s)
    return int(value) if value is not None else None


async def peer_states(settings: Settings, timeout_s: float = 2.0, *, client=None) -> list[tuple[str, bytes]]:
    """(instance, saved state) of every other registered instance of this shard that has one.
    Raises the client's error when Redis cannot be reached (the caller retries)."""
    async with _using(settings, client, timeout_s) as redis_client:
        peers = await asyncio.wait_for(redis_client.hgetall(registry_key(settings)), timeout_s)
        own = settings.engine.instance.encode()
        out = []
        for instance, key in sorted(peers.items()):
            if instance == own or instance.startswith(b"_"):  # this instance, or a first-tick mark
                continue
            data = await asyncio.wait_for(redis_client.get(key), timeout_s)
            if data is not None:
                out.append((instance.decode(), data))
        return out


async def load(settings: Settings, timeout_s: float = 2.0) -> bytes | None:
    """The saved snapshot, or None when there is none or Redis cannot be reached in time
    (the engine then starts from previous closes rather than wait: it is logged)."""
    try:
        async with _using(settings, None, timeout_s) as redis_client:
            return await asyncio.wait_for(redis_client.get(state_key(settings)), timeout_s)
    except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
        log.warning("state: cannot read %s (%s): starting from previous closes", state_key(settings), exc)
        return None
