"""The installable artifact: a wheel built with ``python -m build`` installs into a clean venv and
runs ``iopv run --config FILE`` with no source tree anywhere near it, publishing values and the
fund directory to a real broker and Redis. Slow (a build and a venv install: a few minutes the
first time, less with pip's cache): ``make test-wheel`` or ``make test-slow``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import redis

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                              ".hypothesis", "tests", "bench", "*.nbi", "*.nbc")


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def test_wheel_installs_in_a_clean_venv_and_runs(tmp_path, mosquitto, redis_server):
    # Build from a copy, so the worktree gets no build/ or egg-info of this test's making.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=SKIP)
    run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", source, timeout=900)
    [wheel] = (tmp_path / "dist").glob("iopv-*.whl")
    shutil.rmtree(source)  # no source tree from here on

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, timeout=300)
    python, iopv = venv / "bin" / "python", venv / "bin" / "iopv"
    run(python, "-m", "pip", "install", "--quiet", wheel, timeout=1500)

    workdir = tmp_path / "run"
    workdir.mkdir()
    shutil.copy(ROOT / "config" / "pcf" / "demo.json", workdir / "baskets.json")
    tag = uuid.uuid4().hex[:8]
    (workdir / "engine.toml").write_text(f"""
[engine]
pcf_path = "baskets.json"
interval_s = 0.5
calendar = "always"
instance = "wheel{tag}"
[mqtt]
url = "{mosquitto.url}"
value_topic_prefix = "iopv{tag}"
[redis]
url = "{redis_server.url}"
key_prefix = "iopv{tag}"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOPV_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    where = run(python, "-c", "import iopv, iopv.schemas as s; print(iopv.__file__); "
                "print(sorted(s.SCHEMAS)); [s.load_schema(n) for n in s.SCHEMAS]; "
                "import importlib.resources as r; "
                "print(r.files('iopv.service').joinpath('static/board.html').is_file())",
                cwd=workdir, env=env).stdout.splitlines()
    assert where[0].startswith(str(venv)), f"iopv imported from {where[0]}, not the venv"
    assert "directory" in where[1] and where[2] == "True", "schemas and the board shipped as package data"

    process = subprocess.Popen([str(iopv), "--log-format", "json", "run", "--config", str(workdir / "engine.toml")],
                               cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        deadline = time.monotonic() + 180  # numba compiles the kernels on the first run
        while not (client.hget(f"iopv{tag}:PWB", "iopv") and client.hget(f"iopv{tag}:_directory:PWB", "status")):
            assert process.poll() is None, process.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "the installed engine never published"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        keys = client.keys(f"iopv{tag}:*")
        if keys:
            client.delete(*keys)
    assert process.returncode == 0, err[-4000:]
    records = [orjson.loads(line) for line in err.splitlines()]
    assert any(r["message"] == f"engine wheel{tag} stopped (exit 0)" for r in records)
