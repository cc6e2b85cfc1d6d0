"""``iopv run`` as a real process, for the tests that SIGKILL and restart replicas
(tests/integration/test_whole_replicas.py, tests/cluster/test_cluster_faults.py)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson

from iopv.localservers.servers import free_port

DIVERGENCE = re.compile(r"replica divergence: (\S+) at boundary (\d+)")


class EngineProcess:
    """One instance (``--instance name``) with its own web server; each ``start`` is a new
    incarnation with the same command line and a log of its own (``log_paths``)."""

    def __init__(self, name: str, env: dict, directory: Path, args: list[str]):
        self.name, self.env, self.directory, self.args = name, env, directory, args
        self.http_port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_paths: list[Path] = []

    def start(self) -> None:
        self.log_paths.append(self.directory / f"{self.name}-{len(self.log_paths)}.log")
        with open(self.log_paths[-1], "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "iopv", "run", *self.args, "--instance", self.name,
                 "--http-port", str(self.http_port)], env=self.env, stdout=log, stderr=log, start_new_session=True)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def get(self, path: str, timeout_s: float = 5) -> bytes:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout_s).read()

    def metric(self, name: str, labels: str = "") -> float:
        found = re.search(rf"^{name}(?:_total)?{re.escape(labels)} (\S+)$", self.get("/metrics").decode(), re.M)
        assert found, f"{self.name}: no metric {name}{labels}"
        return float(found.group(1))

    def ready(self) -> bool:
        """Serving HTTP (``/healthz``)."""
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=1).status == 200
        except OSError:
            return False

    def ticks_connected(self) -> bool:
        """Its tick feed is subscribed (``/readyz``'s ``ticks_connected``)."""
        try:
            return orjson.loads(self.get("/readyz", 1))["checks"]["ticks_connected"]
        except (OSError, KeyError, ValueError):
            return False

    def log(self, incarnation: int = -1) -> str:
        return self.log_paths[incarnation].read_text()

    def cycles_before_whole(self, incarnation: int) -> int | None:
        """Cycles an incarnation ran before its book was whole again (None: it never was)."""
        text = self.log(incarnation)
        at = text.find("book whole again")
        return None if at < 0 else text[:at].count("cycle ts=")

    def divergences_logged(self, incarnation: int | None = None) -> list[tuple[str, int]]:
        paths = self.log_paths if incarnation is None else [self.log_paths[incarnation]]
        return [(m.group(1), int(m.group(2))) for p in paths for m in DIVERGENCE.finditer(p.read_text())]
