"""Memory per holding and per security, and start-up time with a cold vs a cached JIT.

Memory (measured in a fresh child process, so nothing else of the benchmark is resident):

- array bytes: the Universe's arrays (CSR holdings and their packed copy, per-fund arrays,
  previous closes) plus the PriceBook (price and tick time per slot) plus the Valuer's outputs;
  ``valuation_bytes_per_holding`` is what one valuation streams per holding (the packed layout,
  ``Universe.packed``), ``plain_bytes_per_holding`` what the plain CSR arrays would (kept for
  the real-time index, replay's exact resolution and the benchmarks);
- RSS delta: resident memory after building the US-scale universe (direct arrays, the generator
  freed), book, valuer and engine, minus before; this adds the Python objects (symbol strings,
  the symbol -> slot dict, fund names) and allocator slack;
- peak RSS of loading the US-scale basket *file* with ``load_pcf`` (full mode), i.e. what the
  validated dict route costs at start-up.

Start-up: a child process with ``NUMBA_CACHE_DIR`` pointing at an empty directory (cold: every
kernel compiles) and then again at the same, now warm, directory (cached), timing imports,
universe load and ``Engine.warm_up()`` separately.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.common import REPO, Context, python_env, rss_bytes


def _arrays_of(*objects) -> list:
    """Every distinct NumPy array held as an attribute of ``objects`` (views counted once)."""
    import numpy as np
    seen: dict[int, object] = {}
    for obj in objects:
        for value in vars(obj).values():
            if dataclasses.is_dataclass(value) and not isinstance(value, type):  # Universe.packed
                seen.update((id(a), a) for a in _arrays_of(value))
                continue
            if isinstance(value, np.ndarray):
                base = value if value.base is None else value.base
                if isinstance(base, np.ndarray):
                    seen[id(base)] = base
    return list(seen.values())


def _array_bytes(universe, book, valuer) -> dict:
    """Array bytes by what they scale with: holdings, book slots, funds."""
    holding = slot = fund = other = 0
    n_symbols = len(universe.symbols)
    for array in _arrays_of(universe, book, valuer):
        length = array.shape[-1] if array.ndim else 0
        if length == universe.holdings:
            holding += array.nbytes
        elif length in (universe.book_size, n_symbols):
            slot += array.nbytes
        elif length in (len(universe.funds), len(universe.funds) + 1):
            fund += array.nbytes
        else:
            other += array.nbytes
    return {"holding_array_bytes": holding, "slot_array_bytes": slot, "fund_array_bytes": fund,
            "other_array_bytes": other}


def _release() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so RSS shows what is live
    (glibc keeps freed memory of the generator's temporaries otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def probe_memory() -> dict:
    """Child process: build the US-scale engine state and report its memory."""
    from bench import universes as U
    from bench.common import engine_settings
    from iopv.engine.cycle import Engine
    # Load the kernels first (numba/LLVM take tens of MB that do not scale with the universe).
    Engine(U.to_universe(U.generate(U.Spec("tiny", 10, 500, 400, seed=1))), engine_settings()).warm_up()
    _release()
    before = rss_bytes()
    universe = U.to_universe(U.generate(U.US_SPEC))
    engine = Engine(universe, engine_settings())
    engine.warm_up()
    _release()
    after = rss_bytes()
    out = _array_bytes(universe, engine.book, engine.valuer)
    n_slots = universe.book_size
    total = sum(v for k, v in out.items() if k.endswith("_array_bytes"))
    out.update({
        "holdings": universe.holdings, "book_slots": n_slots, "funds": len(universe.funds),
        "array_bytes_per_holding": out["holding_array_bytes"] / universe.holdings,
        "valuation_bytes_per_holding": universe.packed.bytes_per_holding,
        "plain_bytes_per_holding": (universe.holding_security.itemsize + universe.holding_shares.itemsize
                                    + universe.holding_fx.itemsize),
        "packed_shares_dtype": universe.packed.shares.dtype.name,
        "array_bytes_per_security": out["slot_array_bytes"] / n_slots,
        "array_bytes_per_fund": out["fund_array_bytes"] / len(universe.funds),
        "array_bytes_total": total,
        "rss_delta_bytes": after - before,
        "rss_delta_bytes_per_holding": (after - before) / universe.holdings,
        "python_objects_bytes_est": after - before - total,
    })
    return out


def probe_startup(pcf: str) -> dict:
    """Child process: time imports, basket load and kernel warm-up."""
    t0 = time.perf_counter()
    from bench.common import engine_settings
    from iopv.core.universe import load_pcf
    from iopv.engine.cycle import Engine
    t1 = time.perf_counter()
    universe = load_pcf(pcf)
    t2 = time.perf_counter()
    engine = Engine(universe, engine_settings())
    engine.warm_up()
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "load_pcf_s": t2 - t1, "warm_up_s": t3 - t2, "total_s": t3 - t0,
            "holdings": universe.holdings,
            "peak_rss_mb": peak_rss_bytes() / 1e6}


def peak_rss_bytes() -> int:
    """High-water RSS of this process image (``VmHWM``; ``ru_maxrss`` would report the forking
    parent's peak after ``fork`` + ``exec``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(args: list[str], env: dict | None = None, timeout_s: float = 300) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.memory", *args], capture_output=True,
                          env=env or python_env(), cwd=REPO, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"bench.memory {' '.join(args)} failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - started
    return out


def run(ctx: Context) -> dict:
    from bench import universes as U
    memory = _child(["--probe", "memory"])
    ctx.universe("us")  # full mode: writes the US basket file (ctx.us_pcf_path)
    demo_pcf = str(U.DEMO_PCF)
    if not U.DEMO_PCF.is_file():
        demo_pcf = os.path.join(ctx.tmpdir(), "demo-generated.json")
        with open(demo_pcf, "w") as handle:
            json.dump(U.to_document(U.generate(U.DEMO_SPEC)), handle)
    startup: dict = {"universe_file": demo_pcf}
    with tempfile.TemporaryDirectory(prefix="iopv-bench-numba-") as cache:
        env = python_env()
        env["NUMBA_CACHE_DIR"] = cache
        startup["demo_cold"] = _child(["--probe", "startup", "--pcf", demo_pcf], env=env)
        startup["demo_cached"] = _child(["--probe", "startup", "--pcf", demo_pcf], env=env)
        if ctx.us_pcf_path:
            startup["us_cached"] = _child(["--probe", "startup", "--pcf", ctx.us_pcf_path], env=env)
    startup["jit_compile_s"] = startup["demo_cold"]["warm_up_s"] - startup["demo_cached"]["warm_up_s"]
    return {"memory": memory, "startup": startup}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe", choices=("memory", "startup"), required=True)
    parser.add_argument("--pcf")
    args = parser.parse_args()
    out = probe_memory() if args.probe == "memory" else probe_startup(args.pcf)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
