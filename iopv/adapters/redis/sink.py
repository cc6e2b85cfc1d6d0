"""Redis publisher: hash ``<prefix>:<FUND>`` (latest value) and capped stream
``<prefix>:<FUND>:history`` (one entry per boundary), a whole cycle in a handful of commands.

``redis.write_mode = "script"`` (default): a publication is written in chunks of
``SCRIPT_CHUNK_FUNDS`` funds, each one ``EVALSHA`` of ``WRITE_SCRIPT``. It gets every key in
KEYS (per fund its hash and its stream) and the values in ARGV (the field names once per chunk),
and runs per fund ``HSET key f v ...`` (only when the hash's ``ts`` is older: a replica that
lags never moves it back) and ``XADD key:history MAXLEN ~ <history_maxlen> <boundary_ms>-0 f v
...`` with exactly the arguments ``field_args`` gives pipeline mode, so the data are the same
byte for byte. The entry ID is the boundary's, which Redis accepts once per stream: a second
writer of the boundary (a peer replica, or this one after a lost reply) is refused, and the
script answers the entry's ``iopv`` so the sink can count a peer write and compare it with its
own at the published digit (a replica divergence). At US scale (3,500 funds) that is 7 commands
instead of 7,000: redis-py's per-command Python work was most of the cycle. The next chunk's
arguments are built while the server runs the current one. The script is loaded with ``EVAL`` on
connect, which also checks that the user may run it (a missing ACL rule fails at start, naming
the fix), and again whenever the server answers NOSCRIPT (restart, failover, SCRIPT FLUSH). A
script blocks other clients of the server while it runs, a few ms per chunk. (Redis Cluster:
``iopv.adapters.redis.cluster``.)

``redis.write_mode = "pipeline"``: pipelines of ``CHUNK_FUNDS`` funds (2 commands each), for
servers where scripting is not allowed. Same keys, fields, order and error handling; the history
entries are just as idempotent (a refused ID is read back with XRANGE), but the hash is
last-writer-wins (no conditional write without a script).

In both modes a key of the wrong type (``WRONGTYPE``: someone else wrote it) does not stop the
other funds: that write is skipped, logged and counted (``RedisSink.skipped_writes``). Any other
error stops the chunk at the fund it hit and is raised naming the key (a lost connection:
reconnect and resume; anything else fails the sink task, as it always did). The retry starts at
the first fund not written -- in pipeline mode the commands after the failed one ran too, but
such errors (OOM, READONLY, ...) fail them all -- and publications written before it in the
same batch are not written again, so each fund gets one history entry per boundary. The one
exception: a connection lost after the server ran a chunk and before its reply arrived; that
chunk is sent again, and its history entries are refused (counted as peer writes, equal values),
so the history still holds one entry per boundary. Between chunks the writer yields to the event loop,
so tick intake, the clock and the MQTT sink never wait for a whole cycle.

While Redis is away the queue holds up to ``redis.history_queue_cycles`` publications, which are
flushed in order on reconnect, so the history has no gap unless that bound is exceeded (the
oldest are then dropped, counted and logged). The engine's restart state (``iopv.engine.restart``)
rides with the last chunk: only its latest snapshot is kept, so it never grows.

Commands are packed by hiredis in C (``iopv.adapters.redis.client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import orjson
import redis.asyncio as aioredis
import redis.exceptions

from iopv.adapters.backoff import Backoff
from iopv.adapters.queued import QueuedSink
from iopv.adapters.redis.client import close_client, redis_client
from iopv.adapters.redis.fields import FieldLists, field_args, field_values, reply_text, stream_id
from iopv.adapters.redis.scripts import KEPT, KEPT_FLAGGED, SUPERSEDED, WRITE_SCRIPT, WRITE_SCRIPT_SHA1
from iopv.config import RedisSettings
from iopv.core import names
from iopv.engine.publication import Publication

log = logging.getLogger(__name__)

#: Funds per pipeline (2 commands each), pipeline mode. Small enough that packing and parsing
#: one chunk blocks the loop for a few ms; large enough that the round trips between chunks cost little.
CHUNK_FUNDS = 64
#: Funds per script call, script mode. Building one chunk's arguments blocks the event loop, and
#: the script blocks the server, for a few ms each (bench/cycle.py); US scale is 7 calls.
SCRIPT_CHUNK_FUNDS = 500



class _Chunk(NamedTuple):
    """Funds ``start:end`` of ``publication``; ``final``: the batch's last chunk, which carries
    ``state``, the engine state snapshot pending when it was made."""

    publication: Publication
    start: int
    end: int
    final: bool
    state: bytes | None


#: What writing one chunk did: funds written (from its start), the error that stopped it (None:
#: the whole chunk is written), the writes skipped as (key, error), and the history entries
#: refused because the boundary's entry was there already, as (fund's index in the chunk, the
#: ``iopv`` field of the entry found -- None when the stream holds a later entry and not this one).
ChunkResult = tuple[int, Exception | None, list[tuple[str, str]], list[tuple[int, bytes | None]]]


class RedisSink(QueuedSink):
    """Writes the latest value and appends to the history of every fund."""

    name = "redis"

    def stats(self) -> dict[str, float]:
        """The queued sink's counters plus ``skipped_writes`` (WRONGTYPE keys) and the replica
        counters: ``peer_writes``, ``divergences``, ``late_writes``, ``superseded``."""
        return {**super().stats(), "skipped_writes": self.skipped_writes, "peer_writes": self.peer_writes,
                "divergences": self.divergences, "late_writes": self.late_writes, "superseded": self.superseded}

    def __init__(self, settings: RedisSettings, *, max_queued: int, state_key: str | None = None,
                 instance: str | None = None):
        super().__init__(max_queued=max_queued,
                         backoff=Backoff(settings.reconnect_min_s, settings.reconnect_max_s))
        self.settings = settings
        #: Where the restart state offered with each publication is written (None: not written).
        self.state_key = state_key
        #: Latest restart state not yet written (given to ``offer``, written with the last chunk).
        self.pending_state: bytes | None = None
        #: Restart states offered since start.
        self.snapshots = 0
        #: Writes skipped because their key held another type (WRONGTYPE), since start.
        self.skipped_writes = 0
        #: History entries refused because the boundary's entry was there: written by a peer
        #: replica (or by this instance before a lost reply or a restart), since start.
        self.peer_writes = 0
        #: Of those, entries whose ``iopv`` differs from ours at the published digit.
        self.divergences = 0
        #: Entries refused because the stream already holds a later boundary (and not this one).
        self.late_writes = 0
        #: Flagged (recovering) history entries of a peer this instance's whole values replaced.
        self.superseded = 0
        #: (fund, boundary ns, our iopv text, the peer's) of the last divergence.
        self.last_divergence: tuple[str, int, str, str] | None = None
        #: Called (no arguments) after a chunk that found a divergence (e.g. to publish the status).
        self.on_divergence: list[Callable[[], None]] = []
        #: (publication, funds already written) when a send failed part-way through it.
        self._resume: tuple[Publication, int] | None = None
        self._keys_of: tuple[tuple[str, ...], list[str]] | None = None  # (funds, their keys)
        #: ``instance``: written as a field ``instance`` with every hash and history entry, so a
        #: reader sees which replica wrote a boundary (None: no such field).
        self.instance = instance
        self._extra_args: list[Any] = ["instance", instance] if instance else []
        self._extra_names: list[str] = ["instance"] if instance else []
        self._extra_values: list[Any] = [instance] if instance else []

    def offer(self, publication: Publication, state: bytes | None = None) -> None:
        """Queue a publication, with ``state``: the restart state as of its boundary (taken by the
        caller when the boundary was valued, so it matches the values it is written with; only
        the latest is kept, written with the last chunk of its publication)."""
        if state is not None and self.state_key:
            self.pending_state = state
            self.snapshots += 1
        super().offer(publication)

    @contextlib.asynccontextmanager
    async def connect(self):
        """A connected client for one session of the writer task, closed when it ends."""
        client = self._new_client()
        try:
            await self._ready(client)
            yield client
        finally:
            await self._close(client)

    def _new_client(self) -> aioredis.Redis:
        return redis_client(self.settings)

    async def _ready(self, client: aioredis.Redis) -> None:
        await client.ping()

    async def _close(self, client: aioredis.Redis) -> None:
        await close_client(client)

    async def on_connect(self, client: aioredis.Redis) -> None:
        if self.settings.write_mode != "script":
            return
        # Load the script (a run with no funds) and find out now whether this user may run it.
        try:
            await client.execute_command("EVAL", WRITE_SCRIPT, 0, self.settings.history_maxlen, 0, "0-1", 0)
        except redis.exceptions.ResponseError as exc:
            if not (isinstance(exc, redis.exceptions.NoPermissionError) or "unknown command" in str(exc)):
                raise
            raise type(exc)(f"{exc} -- redis.write_mode = \"script\" needs EVAL and EVALSHA "
                            "(see config/security/redis-users.acl); where scripting is not "
                            "allowed, set redis.write_mode = \"pipeline\"") from exc

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                                redis.exceptions.BusyLoadingError)) or super().is_connection_error(exc)

    async def send(self, client: aioredis.Redis, batch: list[Publication]) -> None:
        if self.settings.write_mode == "script":
            await self._send_scripts(client, self._chunks(batch, SCRIPT_CHUNK_FUNDS))
        else:
            await self._send_pipelines(client, self._chunks(batch, CHUNK_FUNDS))

    def _chunks(self, batch: list[Publication], chunk_funds: int) -> Iterator[_Chunk]:
        """The chunks of ``batch`` in order, from where a failed send left off: a failed batch
        comes back whole, and the publications before the one it failed in were written."""
        resume, last = self._resume, len(batch) - 1
        first = 0
        if resume is not None:
            first = next((p for p, publication in enumerate(batch) if publication is resume[0]), 0)
        for p in range(first, len(batch)):
            publication = batch[p]
            start = resume[1] if resume is not None and resume[0] is publication else 0
            stop_at = len(publication.funds)
            while True:
                end = min(start + chunk_funds, stop_at)
                final = p == last and end == stop_at
                yield _Chunk(publication, start, end, final, self.pending_state if final else None)
                if end == stop_at:
                    break
                start = end

    def _chunk_written(self, chunk: _Chunk, result: ChunkResult) -> None:
        """Account for a chunk's reply; raises the error that stopped it, if any."""
        done, error, skipped, refused = result
        if refused:
            self._refused(chunk.publication, chunk.start, refused)
        if skipped:
            self.skipped_writes += len(skipped)
            key, message = skipped[0]
            log.warning("redis: %d write(s) skipped at boundary %d, their keys hold another type "
                        "(%d since start); first: %s: %s", len(skipped), chunk.publication.ts_ns,
                        self.skipped_writes, key, message)
        if error is not None:
            # Stopped at fund ``start + done``: resume there (its HSET, if it was written, is
            # idempotent; its XADD, the last write of a fund, was not written).
            self._resume = (chunk.publication, chunk.start + done)
            raise error
        self._resume = None
        if chunk.final and self.pending_state is chunk.state:
            self.pending_state = None

    def _refused(self, publication: Publication, start: int, refused: list[tuple[int, bytes | None, int]]) -> None:
        """Account for history entries Redis refused: the boundary was written already. A
        flagged entry ours superseded is counted apart; otherwise, when both values are whole,
        compare the entry found with ours at the published digit (the ``iopv`` field's JSON text)."""
        diverged = 0
        superseded = 0
        for position, peer, code in refused:
            i = start + position
            if peer is None or peer is False:
                self.late_writes += 1
                log.warning("redis: history of %s already holds a boundary after %d: this entry is not written",
                            publication.funds[i], publication.ts_ns)
                continue
            if code == SUPERSEDED:
                superseded += 1
                continue
            self.peer_writes += 1
            if code == KEPT_FLAGGED or not publication.whole:
                continue  # a flagged value on either side: expected to differ, no alarm
            ours = orjson.dumps(publication.records[i].get("iopv"))
            if peer != ours:
                diverged += 1
                self.divergences += 1
                self.last_divergence = (publication.funds[i], publication.ts_ns, ours.decode(), reply_text(peer))
                log.warning("replica divergence: %s at boundary %d: ours %s, peer's %s (%d since start)",
                            publication.funds[i], publication.ts_ns, ours.decode(), reply_text(peer), self.divergences)
        if superseded:
            self.superseded += superseded
            log.info("redis: %d flagged (recovering) history entries of boundary %d superseded by this "
                     "whole instance's values (%d since start)", superseded, publication.ts_ns, self.superseded)
        if diverged:
            for callback in self.on_divergence:
                callback()

    async def _send_scripts(self, client: aioredis.Redis, chunks: Iterator[_Chunk]) -> None:
        """One script call per chunk, on one connection. The next chunk's arguments are built
        while the server runs the current one; it is sent once the current reply is checked."""
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            chunk = next(chunks, None)
            args = self._script_args(chunk) if chunk is not None else []
            while chunk is not None:
                following, following_args, build_error = next(chunks, None), [], None
                try:
                    await connection.send_packed_command(connection.pack_command("EVALSHA", WRITE_SCRIPT_SHA1, *args))
                    if following is not None:
                        try:
                            following_args = self._script_args(following)
                        except Exception as exc:  # noqa: BLE001 - raised once this chunk's reply is in
                            build_error = exc
                    try:
                        reply = await connection.read_response()
                    except redis.exceptions.NoScriptError:
                        # The server lost its scripts (restart, failover, SCRIPT FLUSH); nothing
                        # of the chunk ran. EVAL runs it and caches the script again.
                        await connection.send_packed_command(connection.pack_command("EVAL", WRITE_SCRIPT, *args))
                        reply = await connection.read_response()
                except BaseException:
                    # Resume from this chunk: the ones before it must not get a second entry.
                    self._resume = (chunk.publication, chunk.start)
                    raise
                self._chunk_written(chunk, _script_result(args, reply))
                if build_error is not None:
                    self._resume = (following.publication, following.start)
                    raise build_error
                chunk, args = following, following_args
                if chunk is not None:
                    await asyncio.sleep(0)  # let ticks, the clock and the other sink in
        finally:
            await pool.release(connection)

    def _script_args(self, chunk: _Chunk) -> list[Any]:
        """``numkeys, *KEYS, *ARGV`` of ``WRITE_SCRIPT`` for ``chunk``."""
        publication = chunk.publication
        state = chunk.state if self.state_key else None
        keys = self._keys(publication.funds)[2 * chunk.start:2 * chunk.end]
        lists = FieldLists(self._extra_names)
        values: list[Any] = []
        add_value, add_values, index_of = values.append, values.extend, lists.index
        for record in publication.records[chunk.start:chunk.end]:
            add_value(index_of(record))
            add_values(field_values(record))
            add_values(self._extra_values)
        if state is not None:
            keys.append(self.state_key)
            add_value(state)
        return [len(keys), *keys, self.settings.history_maxlen, 0 if state is None else 1,
                stream_id(publication.ts_ns), len(lists), *lists.args, *values]

    def _keys(self, funds: tuple[str, ...]) -> list[str]:
        """Hash and stream key of every fund in ``funds``, made once per universe."""
        if self._keys_of is None or self._keys_of[0] is not funds:
            prefix, keys = self.settings.key_prefix, []
            for fund in funds:
                keys += (names.value_key(prefix, fund), names.history_key(prefix, fund))
            self._keys_of = (funds, keys)
        return self._keys_of[1]

    async def _send_pipelines(self, client: aioredis.Redis, chunks: Iterator[_Chunk]) -> None:
        """One pipeline per chunk, 2 commands a fund."""
        for i, chunk in enumerate(chunks):
            if i:
                await asyncio.sleep(0)  # let ticks, the clock and the other sink in
            try:
                result = await self._pipeline(client, chunk)
            except BaseException:
                self._resume = (chunk.publication, chunk.start)
                raise
            self._chunk_written(chunk, result)

    async def _pipeline(self, client: aioredis.Redis, chunk: _Chunk) -> ChunkResult:
        """``chunk`` as HSET + XADD per fund (and SET of the state) in one non-transactional
        pipeline; its replies read as the script's are."""
        prefix, maxlen = self.settings.key_prefix, self.settings.history_maxlen
        funds = chunk.publication.funds
        entry_id = stream_id(chunk.publication.ts_ns)
        pipe = client.pipeline(transaction=False)
        for fund, record in zip(funds[chunk.start:chunk.end], chunk.publication.records[chunk.start:chunk.end]):
            fields = field_args(record) + self._extra_args
            pipe.execute_command("HSET", names.value_key(prefix, fund), *fields)
            pipe.execute_command("XADD", names.history_key(prefix, fund), "MAXLEN", "~", maxlen, entry_id, *fields)
        if chunk.state is not None and self.state_key:
            pipe.set(self.state_key, chunk.state)
        replies = await pipe.execute(raise_on_error=False)
        skipped: list[tuple[str, str]] = []
        refused: list[tuple[int, bytes | None, int]] = []
        for i, reply in enumerate(replies):
            if not isinstance(reply, Exception):
                continue
            if i % 2 and i < 2 * (chunk.end - chunk.start) and "equal or smaller" in str(reply):
                refused.append((i // 2, None, KEPT))
                continue
            if i < 2 * (chunk.end - chunk.start):
                key = (names.history_key if i % 2 else names.value_key)(prefix, funds[chunk.start + i // 2])
            else:
                key = self.state_key
            if str(reply).startswith("WRONGTYPE "):
                skipped.append((key, str(reply)))
                continue
            # Resume at this fund. Unlike the script, the pipeline ran the commands after it
            # too; but an error that is not about one key (OOM, READONLY...) fails them all.
            reply.args = (f"{key}: {reply.args[0] if reply.args else reply}", *reply.args[1:])
            return i // 2, reply, skipped, await self._peer_values(client, chunk, refused)
        return chunk.end - chunk.start, None, skipped, await self._peer_values(client, chunk, refused)

    async def _peer_values(self, client: aioredis.Redis, chunk: _Chunk,
                           refused: list[tuple[int, bytes | None, int]]) -> list[tuple[int, bytes | None, int]]:
        """Pipeline mode: the ``iopv`` of each refused boundary's entry, read back (XRANGE); no
        scripting, so a flagged entry is never superseded (``KEPT`` or ``KEPT_FLAGGED``)."""
        if not refused:
            return refused
        prefix, entry_id = self.settings.key_prefix, stream_id(chunk.publication.ts_ns)
        pipe = client.pipeline(transaction=False)
        for position, _, _ in refused:
            pipe.execute_command("XRANGE", names.history_key(prefix, chunk.publication.funds[chunk.start + position]),
                                 entry_id, entry_id)
        found = []
        for (position, _, _), entries in zip(refused, await pipe.execute()):
            fields = entries[0][1] if entries else None
            flagged = fields is not None and b'"recovering"' in fields.get(b"flags", b"")
            found.append((position, None if fields is None else fields.get(b"iopv", b""),
                          KEPT_FLAGGED if flagged else KEPT))
        return found


def _script_result(args: list[Any], reply: list[Any]) -> ChunkResult:
    """``WRITE_SCRIPT``'s reply for the call with ``args``, keys named (KEYS are ``args[1:]``)."""
    done, stopped_at, error, skipped_flat, refused_flat = reply[0], reply[1], reply[2], reply[3], reply[4]
    skipped = [(args[skipped_flat[i]], reply_text(skipped_flat[i + 1])) for i in range(0, len(skipped_flat), 2)]
    refused = [(refused_flat[i] - 1, refused_flat[i + 1], refused_flat[i + 2]) for i in range(0, len(refused_flat), 3)]
    if stopped_at:
        return done, redis.exceptions.ResponseError(f"{args[stopped_at]}: {reply_text(error)}"), skipped, refused
    return done, None, skipped, refused
