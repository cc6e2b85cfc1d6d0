"""Redis Cluster mode (``redis.cluster = true``): the same keys, fields and idempotent writes as
the single-node sink, on a Redis Cluster.

Key scheme: today's names, ``<prefix>:<FUND>`` and ``<prefix>:<FUND>:history`` (no hash tags),
so readers and tools use one scheme whatever the deployment. A fund's hash and stream usually
live in different slots, and nothing needs them together: each is written by a one-key script
of its own, which a cluster runs on the key's master --

- ``HISTORY_SCRIPT`` on the stream: ``XADD MAXLEN ~ n <boundary_ms>-0 fields...``; when Redis
  refuses the ID (the boundary's entry is there: a peer replica wrote it, or this instance
  before a lost reply), it answers the entry's ``iopv`` field, or 0 when the stream holds a
  later boundary and not this one.
- ``LATEST_SCRIPT`` on the hash: ``HSET`` only when the hash's ``ts`` is older than ours.

The topology comes from redis-py's ``RedisCluster`` (started from every seed node of
``redis.url``, so one dead seed cannot stop a start-up; it follows MOVED and failovers). The
commands themselves bypass redis-py's cluster pipeline: every fund's two commands are grouped by
the master of their slot, packed by hiredis in C and written to that node as one buffer, all
nodes concurrently. That avoids redis-py's known cluster-pipeline gaps -- its per-command Python
routing (~7,000 commands a US-scale cycle), EVALSHA's NOSCRIPT on a promoted replica surfacing as
a failed pipeline, and a timed-out pipeline's connection going back to the pool with unread
replies: here a NOSCRIPT reply is answered with EVAL of the same script on that node, and a
connection that fails in any way is disconnected before it is released.

Progress is kept per fund: what a node confirmed is never sent again. When a node fails
(connection refused during a failover, MOVED after one, CLUSTERDOWN, a timeout), the other
nodes' writes still complete; then the topology is refreshed and the error goes to the sink's
one reconnect loop, which backs off and retries only what is missing, in boundary order per
fund. A dead master so delays only its own slots' writes, by about the cluster's failover time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

import hiredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from iopv.adapters.redis.sink import RedisSink, _Chunk, field_args, stream_id
from iopv.config import RedisSettings, read_secret
from iopv.engine.publication import Publication

log = logging.getLogger(__name__)

#: KEYS[1] the history stream; ARGV: maxlen, entry ID, then the fields. 1: added; a string: the
#: boundary's entry was there, its ``iopv``; 0: refused, the stream holds a later entry only.
HISTORY_SCRIPT = """
local reply = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[2], unpack(ARGV, 3))
if type(reply) == 'table' and reply.err then
  if not string.find(reply.err, 'equal or smaller', 1, true) then return reply end
  local peer = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
  if #peer == 0 then return 0 end
  local fv = peer[1][2]
  for j = 1, #fv, 2 do
    if fv[j] == 'iopv' then return fv[j + 1] end
  end
  return ''
end
return 1
"""
#: KEYS[1] the latest-value hash; ARGV: our ``ts`` (JSON text), then the fields. HSET only when
#: the hash holds an older ``ts`` (decimal digits compared by length, then as text) or none.
LATEST_SCRIPT = """
local cur = redis.call('HGET', KEYS[1], 'ts')
local ts = ARGV[1]
if cur and (#cur > #ts or (#cur == #ts and cur >= ts)) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
HISTORY_SHA1 = hashlib.sha1(HISTORY_SCRIPT.encode()).hexdigest()
LATEST_SHA1 = hashlib.sha1(LATEST_SCRIPT.encode()).hexdigest()
_SCRIPTS = {HISTORY_SHA1: HISTORY_SCRIPT, LATEST_SHA1: LATEST_SCRIPT}

#: Errors that mean "this node cannot take the write now": retried after a topology refresh.
_NODE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.MovedError,
                redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError,
                redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError, OSError)


#: Most ms each node's batch waits for a replica's acknowledgement (``WAIT 1 <ms>``).
WAIT_REPLICA_MS = 50
_WAIT = object()


class NodeUnavailable(redis.exceptions.ConnectionError):
    """Some writes could not reach their slot's master; the rest were written."""


def cluster_client(settings: RedisSettings) -> RedisCluster:
    """A cluster client knowing every seed node of ``redis.url``."""
    from urllib.parse import urlsplit

    seeds = [urlsplit(url) for url in settings.seed_urls]
    first = seeds[0]
    options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2,
                               "require_full_coverage": False}
    password = read_secret(settings.password_file) if settings.password_file else first.password
    if password:
        options["password"] = password
    if first.username:
        options["username"] = first.username
    return RedisCluster(startup_nodes=[ClusterNode(s.hostname, s.port or 6379) for s in seeds], **options)


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

    @contextlib.asynccontextmanager
    async def connect(self):
        client = cluster_client(self.settings)
        try:
            await client.initialize()
            yield client
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1.0)

    async def on_connect(self, client: RedisCluster) -> None:
        """Nothing to load: a node that lacks a script answers NOSCRIPT and gets EVAL."""

    async def send(self, client: RedisCluster, batch: list[Publication]) -> None:
        live = {id(p) for p in batch}
        for key in [k for k in self._progress if k not in live]:
            del self._progress[key]
        prefix, maxlen = self.settings.key_prefix, self.settings.history_maxlen
        per_node: dict[str, tuple[ClusterNode, list[tuple]]] = {}
        manager = client.nodes_manager
        for publication in batch:
            entry = self._progress.get(id(publication))
            if entry is None:
                entry = self._progress[id(publication)] = (publication, bytearray(2 * len(publication.funds)))
            done = entry[1]
            entry_id = stream_id(publication.ts_ns)
            for i, (fund, record) in enumerate(zip(publication.funds, publication.records)):
                if done[2 * i] and done[2 * i + 1]:
                    continue
                fields = field_args(record)
                key = f"{prefix}:{fund}"
                if not done[2 * i]:
                    ts = fields[fields.index("ts") + 1] if "ts" in record else b"0"
                    self._route(manager, per_node, key, (publication, 2 * i),
                                ("EVALSHA", LATEST_SHA1, 1, key, ts, *fields))
                if not done[2 * i + 1]:
                    hkey = key + ":history"
                    self._route(manager, per_node, hkey, (publication, 2 * i + 1),
                                ("EVALSHA", HISTORY_SHA1, 1, hkey, maxlen, entry_id, *fields))
        state = self.pending_state
        if state is not None and self.state_key:
            self._route(manager, per_node, self.state_key, None, ("SET", self.state_key, state))
        for _, commands in per_node.values():
            # Replication is asynchronous: a master killed before its replica has a write loses it
            # in the failover. WAIT for one replica's acknowledgement (bounded) narrows that window.
            commands.append((_WAIT, ("WAIT", 1, WAIT_REPLICA_MS)))
        results = await asyncio.gather(*(self._send_node(node, commands) for node, commands in per_node.values()),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for r in failed:
            if not isinstance(r, _NODE_ERRORS):
                raise r
        if failed:
            self.node_failures += 1
            with contextlib.suppress(Exception):
                await manager.initialize()  # follow the failover: new masters, new slot map
            raise NodeUnavailable(f"{len(failed)} of {len(per_node)} node(s) failed: {failed[0]!r}")
        if state is not None and self.pending_state is state:
            self.pending_state = None
        for publication in batch:
            self._progress.pop(id(publication), None)

    @staticmethod
    def _route(manager, per_node: dict, key: str, target, command: tuple) -> None:
        node = manager.get_node_from_slot(key_slot(key.encode()))
        group = per_node.get(node.name)
        if group is None:
            group = per_node[node.name] = (node, [])
        group[1].append((target, command))

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
                self._written(target, command, reply)
            if noscript:  # a promoted replica or a restarted node: EVAL caches the script again
                retry = [(t, ("EVAL", _SCRIPTS[c[1]], *c[2:])) for t, c in noscript]
                await connection.send_packed_command(b"".join(hiredis.pack_command(c) for _, c in retry))
                for target, command in retry:
                    try:
                        reply = await connection.read_response()
                    except redis.exceptions.ResponseError as exc:
                        if isinstance(exc, _NODE_ERRORS):
                            raise
                        reply = exc
                    self._written(target, command, reply)
        except BaseException:
            # Never give a connection with unread replies back to the pool.
            with contextlib.suppress(Exception):
                await connection.disconnect()
            raise
        finally:
            node.release(connection)

    def _written(self, target, command: tuple, reply: Any) -> None:
        if target is _WAIT:
            if isinstance(reply, int) and reply < 1:
                self.unreplicated += 1
            return
        if target is None:  # the restart state
            if isinstance(reply, Exception):
                log.warning("redis: restart state not written: %s", reply)
            return
        publication, slot = target
        done = self._progress[id(publication)][1]
        if isinstance(reply, Exception):
            if str(reply).startswith("WRONGTYPE"):
                self.skipped_writes += 1
                log.warning("redis: write skipped at boundary %d, %s holds another type: %s",
                            publication.ts_ns, command[3], reply)
                done[slot] = 1
                return
            raise reply
        done[slot] = 1
        if slot % 2 and reply != 1:
            position = slot // 2
            peer = None if reply == 0 else reply
            self._refused(_Chunk(publication, 0, len(publication.funds), False, None), [(position, peer)])
