"""Redis Cluster mode (``redis.cluster = true``): the same keys, fields and idempotent writes as
the single-node sink, on a Redis Cluster.

Key scheme: today's names, ``<prefix>:<FUND>`` and ``<prefix>:<FUND>:history`` (no hash tags),
so readers and tools use one scheme whatever the deployment. A fund's hash and stream usually
live in different slots, often on different nodes, and nothing needs them together: each is one
independent write --

- the stream: ``XADD MAXLEN ~ n <boundary_ms>-0 fields...``; when Redis refuses the ID (the
  boundary's entry is there: a peer replica wrote it, or this instance before a lost reply), the
  entry's ``iopv`` is read back for the divergence check, or none when the stream holds a later
  boundary and not this one;
- the hash: ``HSET`` only when the hash's ``ts`` is older than ours.

Writes are grouped by the master of their key's slot and each node gets one ``NODE_SCRIPT`` call
per 500 writes of a publication: a script flagged ``allow-cross-slot-keys`` (Redis >= 7.0), which
may touch keys of several slots as long as this node serves them all. At US scale that is ~5
calls per node instead of 7,000 commands, and the replies are read by redis-py in ~15 calls in
all. The topology comes from redis-py's ``RedisCluster`` (started from every seed node of
``redis.url``, so one dead seed cannot stop a start-up); the calls themselves bypass redis-py's
cluster pipeline and its known gaps -- per-command Python routing, EVALSHA's NOSCRIPT on a
promoted replica surfacing as a failed pipeline, and a timed-out pipeline's connection going back
to the pool with unread replies: here NOSCRIPT is answered with EVAL of the same script on that
node, and a connection that fails in any way is disconnected before it is released.

Progress is kept per write: what a node confirmed is never sent again. When a node fails
(connection refused during a failover, MOVED after one, CLUSTERDOWN, a timeout), the other
nodes' writes still complete; then the slot map is refreshed and the error goes to the sink's one
reconnect loop, which backs off and retries only what is missing, in boundary order per key. A
dead master so delays only its own slots' writes, by about the cluster's failover time. Each
node's batch ends with ``WAIT 1 <WAIT_REPLICA_MS>``: replication is asynchronous, and a write no
replica acknowledged can be lost with its master (counted: ``unreplicated``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import hiredis
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from iopv.adapters.redis.client import redis_client
from iopv.adapters.redis.fields import FieldLists, field_values, reply_text, stream_id
from iopv.adapters.redis.scripts import NODE_SCRIPT, NODE_SHA1
from iopv.adapters.redis.sink import RedisSink
from iopv.config import RedisSettings, read_secret
from iopv.core import names
from iopv.engine.publication import Publication

log = logging.getLogger(__name__)

#: Writes per script call (a call blocks its node for about a ms per 500).
NODE_CHUNK = 500

#: Errors that mean "this node cannot take the write now": retried after a topology refresh.
_NODE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.MovedError,
                redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError,
                redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError, OSError)


#: A node that answers nothing this long is failed for this attempt (the connection is dropped).
SOCKET_TIMEOUT_S = 5.0
#: Most ms each node's batch waits for a replica's acknowledgement (``WAIT 1 <ms>``).
WAIT_REPLICA_MS = 50
_WAIT = object()


#: What a write inside the node script answers when the node cannot take it now (a failover, a
#: slot moving, the cluster down): retried after a topology refresh, like a connection error.
_NODE_SIGNS = ("non local key", "cluster is down", "CLUSTERDOWN", "READONLY", "TRYAGAIN", "MOVED", "ASK ",
               "LOADING", "MASTERDOWN")


class NodeUnavailable(redis.exceptions.ConnectionError):
    """Some writes could not reach their slot's master; the rest were written."""


def cluster_client(settings: RedisSettings) -> RedisCluster:
    """A cluster client knowing every seed node of ``redis.url``."""
    from urllib.parse import urlsplit

    seeds = [urlsplit(url) for url in settings.seed_urls]
    first = seeds[0]
    options: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": 2,
                               "require_full_coverage": False}
    password = read_secret(settings.password_file) if settings.password_file else first.password
    if password:
        options["password"] = password
    if first.username:
        options["username"] = first.username
    return RedisCluster(startup_nodes=[ClusterNode(s.hostname, s.port or 6379) for s in seeds], **options)


def reader_client(settings: RedisSettings, **options: Any) -> aioredis.Redis | RedisCluster:
    """A client for reads of single keys (the restart state, ``iopv history``, the web API's
    history): a cluster client in cluster mode (``redis.url`` is then a list of seed nodes), else
    ``redis_client(settings, **options)``."""
    return cluster_client(settings) if settings.cluster else redis_client(settings, **options)


class ClusterRedisSink(RedisSink):
    """``RedisSink`` on a Redis Cluster: per-node grouped one-key scripts (see the module docstring)."""

    name = "redis"

    def __init__(self, settings: RedisSettings, **kwargs):
        super().__init__(settings, **kwargs)
        #: id(publication) -> (publication, per fund: 0 to write, 1 written); the state write's key: -1.
        self._progress: dict[int, tuple[Publication, bytearray]] = {}
        #: Node batches no replica acknowledged within ``WAIT_REPLICA_MS``, since start.
        self.unreplicated = 0
        #: Node failures ridden through (a node refused or dropped writes), since start.
        self.node_failures = 0
        #: (funds, nodes manager, {node name: (node, [(write index, key)])}): which master takes
        #: each write, worked out once per universe and slot map (~9 ms of lookups at US scale).
        self._layout: tuple[tuple[str, ...], Any, dict[str, tuple[ClusterNode, list]]] | None = None

    def _new_client(self) -> RedisCluster:
        return cluster_client(self.settings)

    async def _ready(self, client: RedisCluster) -> None:
        await client.initialize()

    async def _close(self, client: RedisCluster) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.aclose(), 1.0)

    async def on_connect(self, client: RedisCluster) -> None:
        """Nothing to load: a node that lacks a script answers NOSCRIPT and gets EVAL."""

    async def send(self, client: RedisCluster, batch: list[Publication]) -> None:
        live = {id(p) for p in batch}
        for key in [k for k in self._progress if k not in live]:
            del self._progress[key]
        per_node: dict[str, tuple[ClusterNode, list[tuple]]] = {}
        manager = client.nodes_manager
        prefix = self.settings.key_prefix
        for publication in batch:
            entry = self._progress.get(id(publication))
            if entry is None:
                entry = self._progress[id(publication)] = (publication, bytearray(2 * len(publication.funds)))
            done = entry[1]
            partly_written = 1 in done  # a retry: only what is missing
            values: list = [None] * len(publication.funds)  # each fund's field values, encoded once
            for name, (node, writes) in self._layout_of(manager, publication.funds, prefix).items():
                if partly_written:
                    writes = [write for write in writes if not done[write[0]]]
                    if not writes:
                        continue
                commands = per_node.setdefault(name, (node, []))[1]
                for start in range(0, len(writes), NODE_CHUNK):
                    part = writes[start:start + NODE_CHUNK]
                    commands.append(((publication, part), (publication, part, values)))
        state = self.pending_state
        if state is not None and self.state_key:
            node = manager.get_node_from_slot(key_slot(self.state_key.encode()))
            per_node.setdefault(node.name, (node, []))[1].append((None, ("SET", self.state_key, state)))
        for _, commands in per_node.values():
            commands.append((_WAIT, ("WAIT", 1, WAIT_REPLICA_MS)))
        # Each node's calls are built (arguments encoded) just before they are sent, node after
        # node, so one node runs its scripts while the next one's arguments are built.
        tasks = []
        for node, commands in per_node.values():
            built = [(target, self._node_args(*command) if target is not None and target is not _WAIT else command)
                     for target, command in commands]
            tasks.append(asyncio.ensure_future(self._send_node(node, built)))
            await asyncio.sleep(0)  # let it write; let ticks and the clock in
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for r in failed:
            if not isinstance(r, _NODE_ERRORS):
                raise r
        if failed:
            self.node_failures += 1
            self._layout = None  # the slot map is about to change
            with contextlib.suppress(Exception):
                await manager.initialize()  # follow the failover: new masters, new slot map
            raise NodeUnavailable(f"{len(failed)} of {len(per_node)} node(s) failed: {failed[0]!r}")
        if state is not None and self.pending_state is state:
            self.pending_state = None
        for publication in batch:
            self._progress.pop(id(publication), None)

    def _layout_of(self, manager, funds: tuple[str, ...], prefix: str) -> dict[str, tuple[ClusterNode, list]]:
        """Every write of a publication of ``funds`` (index ``2 * fund`` the hash, ``+ 1`` the
        stream) grouped by the master of its key's slot, in fund order: kept while the funds and
        the slot map (``manager``, re-read after a node failure) stay the same."""
        layout = self._layout
        if layout is not None and layout[0] is funds and layout[1] is manager:
            return layout[2]
        groups: dict[str, tuple[ClusterNode, list]] = {}
        for i, fund in enumerate(funds):
            for w, key in ((2 * i, names.value_key(prefix, fund)), (2 * i + 1, names.history_key(prefix, fund))):
                node = manager.get_node_from_slot(key_slot(key.encode()))
                group = groups.get(node.name)
                if group is None:
                    group = groups[node.name] = (node, [])
                group[1].append((w, key))
        self._layout = (funds, manager, groups)
        return groups

    def _node_args(self, publication: Publication, writes: list[tuple[int, str]], encoded: list) -> tuple:
        """``EVALSHA NODE_SHA1 numkeys *KEYS *ARGV`` for ``writes`` of ``publication``."""
        lists = FieldLists(self._extra_names)
        values: list[Any] = []
        keys = []
        records = publication.records
        for w, key in writes:
            record = records[w // 2]
            keys.append(key)
            values.append("x" if w % 2 else "h")
            values.append(lists.index(record))
            fund_values = encoded[w // 2]
            if fund_values is None:
                fund_values = encoded[w // 2] = field_values(record) + self._extra_values
            values.extend(fund_values)
        return ("EVALSHA", NODE_SHA1, 0, self.settings.history_maxlen, stream_id(publication.ts_ns),
                len(keys), *keys, len(lists), *lists.args, *values)

    async def _send_node(self, node: ClusterNode, commands: list[tuple]) -> None:
        """Write ``commands`` to ``node`` as one buffer, read every reply, mark what was written."""
        connection = node.acquire_connection()
        try:
            await connection.send_packed_command(b"".join(hiredis.pack_command(c) for _, c in commands))
            noscript: list[tuple] = []
            for target, command in commands:
                try:
                    reply = await connection.read_response()
                except redis.exceptions.NoScriptError:
                    noscript.append((target, command))
                    continue
                except redis.exceptions.ResponseError as exc:
                    if isinstance(exc, _NODE_ERRORS):
                        raise
                    reply = exc
                self._written(target, reply)
            if noscript:  # a promoted replica or a restarted node: EVAL caches the script again
                retry = [(t, ("EVAL", NODE_SCRIPT, *c[2:])) for t, c in noscript]
                await connection.send_packed_command(b"".join(hiredis.pack_command(c) for _, c in retry))
                for target, _command in retry:
                    try:
                        reply = await connection.read_response()
                    except redis.exceptions.ResponseError as exc:
                        if isinstance(exc, _NODE_ERRORS):
                            raise
                        reply = exc
                    self._written(target, reply)
        except BaseException:
            # Never give a connection with unread replies back to the pool.
            with contextlib.suppress(Exception):
                await connection.disconnect()
            raise
        finally:
            node.release(connection)

    def _written(self, target, reply: Any) -> None:
        if target is _WAIT:
            if isinstance(reply, int) and reply < 1:
                self.unreplicated += 1
            return
        if target is None:  # the restart state
            if isinstance(reply, Exception):
                log.warning("redis: restart state not written: %s", reply)
            return
        if isinstance(reply, Exception):
            raise reply
        publication, writes = target
        done = self._progress[id(publication)][1]
        written, refused_flat, skipped_flat, stopped_at, error = reply
        for w, _ in writes[:written]:
            done[w] = 1
        if skipped_flat:
            self.skipped_writes += len(skipped_flat) // 2
            log.warning("redis: %d write(s) skipped at boundary %d, their keys hold another type; first: %s: %s",
                        len(skipped_flat) // 2, publication.ts_ns, writes[skipped_flat[0] - 1][1],
                        reply_text(skipped_flat[1]))
        if refused_flat:
            refused = [(writes[refused_flat[j] - 1][0] // 2, refused_flat[j + 1], refused_flat[j + 2])
                       for j in range(0, len(refused_flat), 3)]
            self._refused(publication, 0, refused)
        if stopped_at:
            message = f"{writes[stopped_at - 1][1]}: {reply_text(error)}"
            if any(sign in message for sign in _NODE_SIGNS):
                raise NodeUnavailable(message)  # the slot moved (a failover): refresh and retry
            raise redis.exceptions.ResponseError(message)
