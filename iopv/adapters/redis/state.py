"""The restart state in Redis: its key, and reading it back at start.

The Redis sink writes the snapshot (``iopv.engine.restart.snapshot``) with each publication;
this module says where it lives and loads it for ``iopv.engine.restart.restore``.
"""

from __future__ import annotations

import asyncio
import logging

import redis.exceptions

from iopv.adapters.redis.cluster import reader_client
from iopv.config import Settings

log = logging.getLogger(__name__)


def state_key(settings: Settings) -> str:
    """``<redis.key_prefix>:_state:<engine.instance>``: one restart state per instance."""
    return f"{settings.redis.key_prefix}:_state:{settings.engine.instance}"


async def load(settings: Settings, timeout_s: float = 2.0) -> bytes | None:
    """The saved snapshot, or None when there is none or Redis cannot be reached in time
    (the engine then starts from previous closes rather than wait: it is logged)."""
    client = reader_client(settings.redis, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return await asyncio.wait_for(client.get(state_key(settings)), timeout_s)
    except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
        log.warning("state: cannot read %s (%s): starting from previous closes", state_key(settings), exc)
        return None
    finally:
        await client.aclose()
