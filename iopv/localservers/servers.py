"""Throwaway Redis and Mosquitto servers on free loopback ports (for the demo, the tests and the bench).

Nothing here touches a shared instance: each server gets a fresh port, a private directory,
no persistence, and is stopped (and its directory removed) on exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/opt/homebrew/sbin")
INSTALL_HINT = {
    "redis-server": "install Redis (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)",
    "mosquitto": "install Mosquitto (Debian/Ubuntu: apt-get install mosquitto; macOS: brew install mosquitto)",
}


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server did not start."""


def find_binary(name: str) -> str:
    """Path of a server binary on PATH or in the usual sbin directories."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in SEARCH_DIRS if os.access(Path(d) / name, os.X_OK)), None)
    if not found:
        raise ServerUnavailable(f"{name} not found: {INSTALL_HINT.get(name, 'install it')}")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: on Linux, ask for SIGTERM when the parent dies, so a throwaway
    server never outlives a demo or test run that was killed outright (no ``finally`` runs then).
    Linux ties this to the *thread* that started the server: a server started from a worker
    thread stops when that thread ends (asyncio.to_thread's pool lives as long as its loop)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def wait_for_port(port: int, process: subprocess.Popen, log_path: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"server exited with {process.returncode}: {_tail(log_path)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    process.kill()
    raise ServerUnavailable(f"server did not listen on port {port} within {timeout_s} s: {_tail(log_path)}")


def _tail(path: Path) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-5:])
    except OSError:
        return "(no log)"


class LocalServer:
    """One server process on a free port, in its own directory; ``url`` is
    ``<scheme>://127.0.0.1:<port><path>``, with the TLS scheme when ``tls``."""

    #: (plain scheme, TLS scheme, path) of ``url``.
    URL = ("tcp", "tls", "")

    def __init__(self, name: str, directory: Path, *, tls: object = None):
        self.name = name
        self.directory = directory
        self.tls = tls
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        plain, secure, path = self.URL
        return f"{secure if self.tls else plain}://127.0.0.1:{self.port}{path}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def command(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self, port: int | None = None) -> LocalServer:
        """Start (or restart, on the same port by default) and wait until it listens."""
        self.port = port or self.port or free_port()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), cwd=self.directory, stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)
        log.close()
        wait_for_port(self.port, self.process, self.log_path)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RedisServer(LocalServer):
    """``persistent`` keeps an append-only file across restarts (fault-injection tests);
    ``tls`` = (cert, key, ca) serves TLS only (plain TCP off, ``url`` is ``rediss://``), with
    ``tls_auth_clients`` = ``no``, ``optional`` or ``yes`` (client certificate required, checked
    against ca); ``extra_args`` are more ``--option value`` pairs (e.g. ACL users)."""

    URL = ("redis", "rediss", "/0")

    def __init__(self, directory: Path, *, persistent: bool = False, tls: tuple[str, str, str] | None = None,
                 tls_auth_clients: str = "optional", extra_args: tuple[str, ...] = ()):
        super().__init__("redis", directory, tls=tls)
        self.persistent = persistent
        self.tls_auth_clients = tls_auth_clients
        self.extra_args = extra_args

    def command(self) -> list[str]:
        port = ["--port", str(self.port)]
        if self.tls:
            cert, key, ca = self.tls
            port = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert,
                    "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", self.tls_auth_clients]
        return [find_binary("redis-server"), *port, "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes" if self.persistent else "no",
                "--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "yes",
                *self.extra_args]


class MosquittoServer(LocalServer):
    """``listener_config`` replaces the default anonymous access (e.g. a password file, an ACL
    file, TLS certificates: lines that belong to the listener)."""

    URL = ("mqtt", "mqtts", "")

    def __init__(self, directory: Path, *, listener_config: str = "allow_anonymous true\n", tls: bool = False):
        super().__init__("mosquitto", directory, tls=tls)
        self.listener_config = listener_config

    def command(self) -> list[str]:
        config = self.directory / "mosquitto.conf"
        config.write_text(
            "per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"{self.listener_config}"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"user {getpass.getuser()}\n"
            "max_queued_messages 100000\n")
        return [find_binary("mosquitto"), "-c", str(config)]


@contextlib.contextmanager
def local_servers(*, redis: bool = True,
                  mqtt: bool = True) -> Iterator[tuple[MosquittoServer | None, RedisServer | None]]:
    """Start the requested throwaway servers; stop them and remove their files on exit."""
    directory = Path(tempfile.mkdtemp(prefix="iopv-servers-"))
    started: list[LocalServer] = []
    try:
        mosquitto = MosquittoServer(directory).start() if mqtt else None
        if mosquitto:
            started.append(mosquitto)
        redis_server = RedisServer(directory).start() if redis else None
        if redis_server:
            started.append(redis_server)
        yield mosquitto, redis_server
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
