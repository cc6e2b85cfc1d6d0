"""Redis side of the feed's reference data (``iopv.engine.day``): the writer, and the readers of
what it wrote (the service at start, ``iopv history --summary``, tests).

Keys (``iopv.core.names``): hash ``<prefix>:_directory:<FUND>`` (the fund's directory record)
and the index hash ``<prefix>:_directory`` (fund -> record JSON, read at start to find funds a
new basket file dropped); hash ``<prefix>:_session:<instance>`` (event -> record JSON, and
``session``: read at start so a restart within the day sends no event twice); stream
``<prefix>:_summary:<FUND>`` (one entry per session, ID ``<close ts ms>-0``, so a replica's or a
retry's second entry is refused, as for the history); hash ``<prefix>:_heartbeat:<instance>``.
Hash and entry fields are encoded as the values' are: strings as they are, anything else as its
JSON text. A cleared retained message is, in Redis: a session event's field deleted; a directory
record's index entry deleted (its hash keeps the ``removed`` record); nothing for a value.

The writer is a ``QueuedSink`` on a connection of its own: a few commands per boundary, one or
two per fund at start, on a basket swap, at the start of day and at the close, in
non-transactional pipelines of ``CHUNK_COMMANDS``. A refused summary entry (already written) is
not an error; any other command error is logged and counted (``failed_writes``), never fatal: the
values come first.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import orjson
import redis.exceptions

from iopv.adapters.backoff import Backoff
from iopv.adapters.queued import QueuedSink
from iopv.adapters.redis.client import close_client
from iopv.adapters.redis.cluster import reader_client
from iopv.adapters.redis.fields import field_args, stream_id
from iopv.config import RedisSettings
from iopv.core import names
from iopv.engine.day import OPTIONAL_FUND_FIELDS, Batch, Message

log = logging.getLogger(__name__)

#: Commands per pipeline.
CHUNK_COMMANDS = 512
#: Approximate cap of each fund's summary stream (one entry per session: about 40 years).
SUMMARY_MAXLEN = 10_000
#: Fields of these records stored (and read back) as plain strings.
STRING_FIELDS = frozenset({"status", "basket", "as_of", "instance", "session", "shard", "currency", "name",
                           "event", "calendar", "state", "reason"})
#: Every field a directory record may have, to delete those a newer record lacks.
DIRECTORY_FIELDS = ("status", "session", "ts", "instance", "shard", "currency", "creation_unit", "basket",
                    "holdings", "estimated_cash", *OPTIONAL_FUND_FIELDS)


def decode_fields(fields: dict[Any, Any], **first: Any) -> dict[str, Any]:
    """A hash's or entry's fields (bytes or str) as the record (``first`` fields put first)."""
    record: dict[str, Any] = dict(first)
    for name, value in fields.items():
        name = name.decode() if isinstance(name, bytes) else name
        text = value.decode() if isinstance(value, bytes) else value
        if name in STRING_FIELDS:
            record[name] = text
            continue
        try:
            record[name] = orjson.loads(text)
        except orjson.JSONDecodeError:
            record[name] = text
    return record


def commands_of(prefix: str, instance: str, message: Message) -> list[tuple]:
    """The Redis commands that store one message."""
    kind, key, record = message
    if kind == "directory":
        if record is None:
            return [("HDEL", names.directory_index_key(prefix), key)]
        hash_key = names.directory_key(prefix, key)
        out = [("HSET", hash_key, *field_args(record)),
               ("HSET", names.directory_index_key(prefix), key, orjson.dumps(record))]
        absent = [name for name in DIRECTORY_FIELDS if name not in record]
        if absent:
            out.append(("HDEL", hash_key, *absent))
        return out
    if kind == "session":
        session = names.session_key(prefix, instance)
        if record is None:
            return [("HDEL", session, key)]
        return [("HSET", session, key, orjson.dumps(record), "session", record["session"])]
    if kind == "summary":
        return [("XADD", names.summary_key(prefix, key), "MAXLEN", "~", SUMMARY_MAXLEN, stream_id(record["ts"]),
                 *field_args(record))]
    if kind == "heartbeat":
        return [("HSET", names.heartbeat_key(prefix, key), *field_args(record))]
    return []  # a cleared value: the directory says the fund was removed


@contextlib.asynccontextmanager
async def _connection(settings: RedisSettings):
    client = reader_client(settings, socket_timeout=5, socket_connect_timeout=5)
    try:
        await client.ping()
        yield client
    finally:
        await close_client(client)


class RedisEventSink(QueuedSink):
    """Writes the feed's reference data to Redis (module docstring)."""

    def __init__(self, settings: RedisSettings, *, instance: str, max_queued: int, name: str = "redis-events"):
        super().__init__(max_queued=max_queued, backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s))
        self.name = name
        self.settings = settings
        self.instance = instance
        self.failed_writes = 0
        self.refused_summaries = 0

    def connect(self):
        return _connection(self.settings)

    def is_connection_error(self, exc: BaseException) -> bool:
        # a cluster's failover (MOVED, CLUSTERDOWN) is a connection error here too: retried whole
        return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                                redis.exceptions.BusyLoadingError, redis.exceptions.ClusterError)) \
            or super().is_connection_error(exc)

    async def send(self, client, batch: list[Batch]) -> None:
        prefix = self.settings.key_prefix
        commands = [command for item in batch for message in item.messages
                    for command in commands_of(prefix, self.instance, message)]
        for start in range(0, len(commands), CHUNK_COMMANDS):
            chunk = commands[start:start + CHUNK_COMMANDS]
            pipe = client.pipeline(transaction=False)
            for command in chunk:
                pipe.execute_command(*command)
            replies = await pipe.execute(raise_on_error=False)
            for command, reply in zip(chunk, replies):
                if isinstance(reply, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
                    raise reply
                if isinstance(reply, redis.exceptions.ResponseError):
                    if command[0] == "XADD" and "equal or smaller" in str(reply):
                        self.refused_summaries += 1  # a replica (or a retry) wrote this session's summary
                        continue
                    self.failed_writes += 1
                    log.warning("%s: %s %s failed: %s (%d failed so far)", self.name, command[0], command[1],
                                reply, self.failed_writes)


# -- readers --------------------------------------------------------------------------------------

async def read_directory_index(client, prefix: str) -> dict[str, dict[str, Any]]:
    """fund -> its directory record, as stored (every shard's funds)."""
    raw = await client.hgetall(names.directory_index_key(prefix))
    return {(k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in raw.items()}


async def read_directory(client, prefix: str, fund: str) -> dict[str, Any] | None:
    """A fund's directory record from its hash, or None."""
    raw = await client.hgetall(names.directory_key(prefix, fund))
    return decode_fields(raw, fund=fund) if raw else None


async def read_session(client, prefix: str, instance: str) -> dict[str, dict[str, Any]]:
    """event -> record of ``instance``'s session events, as stored."""
    raw = await client.hgetall(names.session_key(prefix, instance))
    out = {}
    for name, value in raw.items():
        name = name.decode() if isinstance(name, bytes) else name
        if name in names.SESSION_EVENTS:
            out[name] = orjson.loads(value)
    return out


async def read_heartbeat(client, prefix: str, instance: str) -> dict[str, Any] | None:
    raw = await client.hgetall(names.heartbeat_key(prefix, instance))
    return decode_fields(raw) if raw else None


async def read_summaries(client, prefix: str, fund: str, *, from_ns: int | None = None,
                         to_ns: int | None = None) -> list[dict[str, Any]]:
    """A fund's daily summaries with ``from_ns <= ts <= to_ns`` (the close), oldest first."""
    start = "-" if from_ns is None else str(max(from_ns, 0) // 1_000_000)
    end = "+" if to_ns is None else str(to_ns // 1_000_000)
    entries = await client.xrange(names.summary_key(prefix, fund), min=start, max=end)
    out = []
    for _, fields in entries:
        record = decode_fields(fields, fund=fund)
        ts = record.get("ts")
        if isinstance(ts, int) and (from_ns is None or ts >= from_ns) and (to_ns is None or ts <= to_ns):
            out.append(record)
    return out
