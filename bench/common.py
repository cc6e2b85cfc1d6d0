"""Shared helpers: run context (mode, seeds, cached universes), timing statistics, machine facts."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson

from bench import universes as U


def summarize_ns(samples_ns, scale: float = 1e-6, prefix: str = "", unit: str = "ms") -> dict:
    """p50/p90/p99/max/mean of nanosecond samples, in ``unit`` (ms by default)."""
    a = np.asarray(samples_ns, dtype=np.float64) * scale
    if a.size == 0:
        return {}
    return {f"{prefix}{unit}_p50": float(np.percentile(a, 50)),
            f"{prefix}{unit}_p90": float(np.percentile(a, 90)),
            f"{prefix}{unit}_p99": float(np.percentile(a, 99)),
            f"{prefix}{unit}_max": float(a.max()),
            f"{prefix}{unit}_mean": float(a.mean())}


def interleaved(functions: dict[str, Callable[[int], object]], runs: int, warmup: int) -> dict[str, np.ndarray]:
    """Time each function ``runs`` times, alternating between them call by call so machine noise
    (this is a shared 2-core box) hits every contender alike. ``fn(i)`` gets the run number."""
    for _ in range(warmup):
        for i, fn in enumerate(functions.values()):
            fn(i)
    samples = {name: np.empty(runs, dtype=np.int64) for name in functions}
    clock = time.perf_counter_ns
    for run in range(runs):
        for name, fn in functions.items():
            started = clock()
            fn(run)
            samples[name][run] = clock() - started
    return samples


def machine_info() -> dict:
    """What the numbers were measured on."""
    import numba
    info = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }
    for module in ("scipy", "pandas", "orjson", "aiomqtt", "redis", "hdrh", "matplotlib", "uvloop", "paho.mqtt"):
        try:
            mod = __import__(module, fromlist=["__version__"])
            info[module.replace(".", "_")] = getattr(mod, "__version__", "?")
        except ImportError:
            info[module.replace(".", "_")] = None
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
        info["cpu_model"] = model
    except OSError:
        info["cpu_model"] = None
    try:
        with open("/proc/meminfo") as handle:
            info["mem_total_gb"] = round(int(handle.readline().split()[1]) / 1e6, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    return info


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_env() -> dict:
    """This environment with the repository on PYTHONPATH (for child processes)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Context:
    """One benchmark run: mode, seeds and the universes built so far (shared between sections)."""

    quick: bool
    seed: int = 20_240_401
    _universes: dict = field(default_factory=dict)
    universe_rows: list = field(default_factory=list)
    us_pcf_path: str | None = None
    _tmpdir: str | None = None

    @property
    def seeds(self) -> dict:
        return {"base": self.seed, "demo": U.DEMO_SPEC.seed, "us": U.US_SPEC.seed, "global": U.GLOBAL_SPEC.seed}

    def rng(self, salt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])

    def universe(self, scale: str):
        """The universe of ``scale`` (demo, us, global), built once and kept."""
        if scale in self._universes:
            return self._universes[scale]
        row: dict = {"scale": scale}
        if scale == "demo":
            (universe, origin), row["load_s"] = U.timed(U.demo)
            row["route"] = f"build_universe ({origin})"
        else:
            spec = {"us": U.US_SPEC, "global": U.GLOBAL_SPEC}[scale]
            basket, row["generate_s"] = U.timed(U.generate, spec)
            universe, row["layout_direct_s"] = U.timed(U.to_universe, basket)
            row["route"] = "direct arrays"
            if scale == "us" and not self.quick:
                # The real path: a PCF document validated by build_universe, checked identical.
                document, row["render_document_s"] = U.timed(U.to_document, basket)
                loaded, row["build_universe_s"] = U.timed(U.build_universe, document, source="<us document>")
                differ = U.layout_differences(universe, loaded)
                if differ:
                    raise AssertionError(f"US scale: direct layout differs from build_universe on {differ}")
                row["build_universe_identical"] = True
                row["route"] = "PCF document -> build_universe (checked identical to direct arrays)"
                universe = loaded
                # Kept on disk for the start-up benchmark (a real basket file at US scale).
                self.us_pcf_path = os.path.join(self.tmpdir(), "us.json")
                with open(self.us_pcf_path, "wb") as handle:
                    handle.write(orjson.dumps(document))
                row["pcf_file_mb"] = round(os.path.getsize(self.us_pcf_path) / 1e6, 1)
                del document, loaded
            del basket
        row.update(U.describe(universe))
        self.universe_rows.append(row)
        self._universes[scale] = universe
        return universe

    def tmpdir(self) -> str:
        """A private scratch directory, removed at the end of the run."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="iopv-bench-")
        return self._tmpdir

    def close(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def drop(self, scale: str) -> None:
        self._universes.pop(scale, None)


def engine_settings(**sections):
    """Settings as the shipped ``config/default.toml`` gives them (calendar ``always``, ...),
    with ``sections`` overrides (``engine={"interval_s": 1.0}``); the environment is ignored."""
    from iopv.config import DEFAULT_CONFIG_PATH, load_settings
    return load_settings(DEFAULT_CONFIG_PATH, environ={}, overrides=sections)
