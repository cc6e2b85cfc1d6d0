"""End to end over a real Mosquitto and Redis: offered tick rate vs what the engine absorbs, and
tick -> published value latency.

Set-up: throwaway servers (``iopv.localservers.servers.local_servers``); the engine runs as its own process
(``python -m iopv run``, the real CLI, uvloop included) on the demo universe plus one probe fund
(``PROBE-FUND``: one share of ``PROBE.X``, creation unit 1, no cash, so its published value *is*
the last probe price); the load generator (``bench.loadgen``, raw-socket MQTT, open loop) is a
third process; this process only reads the engine's log and a probe subscriber (paho, thread).

- Absorbed rate: the engine logs cumulative tick counts at every boundary (``cycle ... ticks={..}``,
  interval 0.25 s here for resolution). During each offered-rate window the absorbed rate is the
  slope of those counts (first 0.5 s skipped); after the window, the counts must reach the number
  sent (delivered ratio). A rate is *sustained* when >= 99.9% is delivered, the slope is >= 97% of
  the achieved offered rate, and the backlog at the last in-window boundary is <= 0.25 s of load.
- Latency: each probe tick k is sent at its scheduled time t_k (also its ``ts``); its latency is
  the receive time, at the probe subscriber, of the first ``iopv/PROBE-FUND`` publication whose
  value names k or a later probe, minus t_k, in an HDR histogram (us). It therefore includes the
  wait for the next boundary (uniform over one interval) plus the engine's own delay, and any
  generator lateness (open loop: no coordinated omission). The engine's part is reported apart:
  publication receive time minus its boundary, and how many probes missed their first boundary.
- Ceilings (``bench.ceilings``), measured in this process without the engine: aiomqtt's receive
  loop alone, the real ``MqttTickFeed`` + ``TickIntake``, and an aiomqtt publisher.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
from hdrh.histogram import HdrHistogram

from bench import loadgen, universes
from bench.ceilings import ceilings
from bench.common import REPO, Context, python_env
from iopv.engine.clock import boundary_at_or_after
from iopv.localservers.servers import local_servers

PROBE_FUND = "PROBE-FUND"
PROBE_SYMBOL = "PROBE.X"
INTERVAL_S = 0.25
PROBES_PER_S = 500
CYCLE_LINE = re.compile(r"cycle ts=(\d+) funds=\d+ took=([\d.]+)ms after-cut=([-\d.]+)ms ticks=(\{.*\})")
#: The engine's watermark here (set explicitly): a boundary B is cut at B + this.
WATERMARK_MS = 50.0


class EngineProcess:
    """``python -m iopv run`` as a child process, its cycle log lines parsed as they come."""

    def __init__(self, pcf: str, mqtt_url: str, redis_url: str, interval_s: float, env: dict | None = None):
        self.command = [sys.executable, "-m", "iopv", "--log-level", "INFO", "run", "--pcf", pcf,
                        "--mqtt-url", mqtt_url, "--redis-url", redis_url, "--interval", str(interval_s)]
        self.env = env or {}  # extra environment (IOPV_* settings)
        self.cycles: list[tuple[int, float, float, int]] = []  # (boundary, took_ms, late_ms, total)
        self.tail: list[str] = []
        self.warnings: list[str] = []
        self.subscribed = threading.Event()
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env={**python_env(), **self.env}, cwd=REPO)
        self._reader = threading.Thread(target=self._read, name="engine-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.tail = (self.tail + [line])[-30:]
            match = CYCLE_LINE.search(line)
            if match:
                counts = ast.literal_eval(match.group(4))
                self.cycles.append((int(match.group(1)), float(match.group(2)), float(match.group(3)),
                                    sum(counts.values())))
            elif "subscribed to" in line:
                self.subscribed.set()
            elif " WARNING " in line or " ERROR " in line:
                self.warnings.append(line[:300])

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("engine exited early:\n" + "\n".join(self.tail))
            if self.subscribed.is_set() and self.cycles:
                return
            time.sleep(0.05)
        raise RuntimeError("engine not ready in time:\n" + "\n".join(self.tail))

    def total(self) -> int:
        return self.cycles[-1][3] if self.cycles else 0

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader:
            self._reader.join(2)
        return self.process.returncode if self.process else 0


class ProbeSubscriber:
    """Receives every publication of the probe fund, stamped with its arrival time."""

    def __init__(self, host: str, port: int):
        import paho.mqtt.client as mqtt
        self.records: list[tuple[int, int, int]] = []  # (recv_ns, boundary_ns, probe k)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-probe-sub")
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=60)
        self.client.subscribe(f"iopv/{PROBE_FUND}", qos=1)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        now = time.time_ns()
        record = orjson.loads(message.payload)
        self.records.append((now, int(record["ts"]), loadgen.probe_k_of_value(record["iopv"])))

    def latest_k(self) -> int:
        return self.records[-1][2] if self.records else -1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_inputs(ctx: Context) -> tuple[str, str, list[str]]:
    """The engine's basket file (demo + probe fund) and the generator's symbol file."""
    universe = ctx.universe("demo")
    document = orjson.loads(Path(universes.DEMO_PCF).read_bytes()) if universes.DEMO_PCF.is_file() \
        else universes.to_document(universes.generate(universes.DEMO_SPEC))
    document.append({"fund": PROBE_FUND, "name": "latency probe", "creation_unit": 1, "currency": "USD",
                     "cash": 0, "holdings": [{"symbol": PROBE_SYMBOL, "shares": 1, "price": loadgen.PROBE_BASE_PRICE}]})
    pcf = os.path.join(ctx.tmpdir(), "e2e-pcf.json")
    Path(pcf).write_bytes(orjson.dumps(document))
    n = len(universe.symbols)
    pairs = [[s, float(p)] for s, p in zip(universe.symbols, universe.initial_prices[:n].tolist())]
    symbols = os.path.join(ctx.tmpdir(), "e2e-symbols.json")
    Path(symbols).write_bytes(orjson.dumps(pairs))
    return pcf, symbols, list(universe.symbols)


def run_loadgen(port: int, symbols_file: str, rate: float, duration_s: float, probe_k0: int, seed: int) -> dict:
    probe_every = max(1, int(rate // PROBES_PER_S))
    command = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--rate", str(rate),
               "--duration", str(duration_s), "--symbols", symbols_file, "--probe-every", str(probe_every),
               "--probe-symbol", PROBE_SYMBOL, "--probe-k0", str(probe_k0), "--seed", str(seed)]
    done = subprocess.run(command, capture_output=True, env=python_env(), cwd=REPO, timeout=duration_s + 60)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return orjson.loads(done.stdout)


def latency_stats(sent: dict, publications: list[tuple[int, int, int]], interval_ns: int) -> dict:
    """HDR percentiles of probe -> publication latency for one window."""
    ks, send_ns = loadgen.probe_schedule(sent)
    histogram = HdrHistogram(1, 120_000_000, 3)  # 1 us .. 120 s
    engine_part = HdrHistogram(1, 120_000_000, 3)
    missed = 0
    unreflected = 0
    j = 0
    running_k, running_recv, running_boundary = -1, 0, 0
    pubs = sorted(publications)
    seen_boundaries = set()
    for i in range(ks.size):
        while running_k < ks[i] and j < len(pubs):
            running_recv, running_boundary, k_pub = pubs[j]
            running_k = max(running_k, k_pub)
            j += 1
        if running_k < ks[i]:
            unreflected += 1
            continue
        histogram.record_value(max(1, (running_recv - int(send_ns[i])) // 1_000))
        if running_boundary > boundary_at_or_after(int(send_ns[i]), interval_ns):
            missed += 1
        if running_boundary not in seen_boundaries:
            seen_boundaries.add(running_boundary)
            engine_part.record_value(max(1, (running_recv - running_boundary) // 1_000))
    reflected = int(ks.size - unreflected)
    out = {"probes": int(ks.size), "unreflected": unreflected,
           "missed_first_boundary_ratio": missed / reflected if reflected else None}
    if reflected:
        out.update({f"tick_to_publish_us_{name}": float(histogram.get_value_at_percentile(q))
                    for name, q in (("p50", 50), ("p99", 99), ("p999", 99.9))})
        out["tick_to_publish_us_max"] = float(histogram.get_max_value())
        out.update({f"boundary_to_publish_us_{name}": float(engine_part.get_value_at_percentile(q))
                    for name, q in (("p50", 50), ("p99", 99))})
        out["boundary_to_publish_us_max"] = float(engine_part.get_max_value())
    return out


def measure_rate(engine: EngineProcess, subscriber: ProbeSubscriber, port: int, symbols_file: str,
                 rate: float, duration_s: float, probe_k0: int, seed: int, drain_max_s: float) -> tuple[dict, int]:
    start_total = engine.total()
    start_pubs = len(subscriber.records)
    sent = run_loadgen(port, symbols_file, rate, duration_s, probe_k0, seed)
    target = start_total + sent["sent"]
    last_k = probe_k0 + sent["probes"] - 1
    # Drain: until every message is counted and the last probe is published, or the counts stop
    # moving for 3 boundaries, or drain_max_s.
    deadline = time.monotonic() + drain_max_s
    stable_since = (len(engine.cycles), engine.total())
    while time.monotonic() < deadline:
        if engine.total() >= target and subscriber.latest_k() >= last_k:
            break
        n, total = len(engine.cycles), engine.total()
        if total != stable_since[1]:
            stable_since = (n, total)
        elif n - stable_since[0] >= 3:
            break
        time.sleep(0.05)
    row = absorption(engine, start_total, sent, rate, duration_s)
    row.update(latency_stats(sent, subscriber.records[start_pubs:], int(INTERVAL_S * 1e9)))
    in_window = [(took, late) for b, took, late, _ in engine.cycles if sent["t0_ns"] <= b <= sent["end_ns"]]
    if in_window:
        row["engine_cycle_ms_max"] = max(t for t, _ in in_window)
        row["engine_late_ms_max"] = max(l for _, l in in_window)
    return row, last_k + 1


def absorption(engine: EngineProcess, start_total: int, sent: dict, rate: float, duration_s: float) -> dict:
    """What ``engine`` took of one generator window (``sent``): tick messages received, the share
    delivered, and the absorbed rate -- messages counted per second between the engine's first
    boundary 0.5 s into the window and its last one in it -- with the backlog at that boundary."""
    received = engine.total() - start_total
    t0, t_end = sent["t0_ns"], sent["end_ns"]
    window = [(b, total - start_total) for b, _, _, total in engine.cycles if t0 + 500_000_000 <= b <= t_end]
    if len(window) >= 2:
        absorbed = (window[-1][1] - window[0][1]) / ((window[-1][0] - window[0][0]) / 1e9)
        sent_by_last = min(sent["sent"], (window[-1][0] - t0) / 1e9 * rate)
        backlog = max(0.0, sent_by_last - window[-1][1])
    else:
        absorbed, backlog = received / max(1e-9, duration_s), 0.0
    delivered = received / sent["sent"] if sent["sent"] else 0.0
    achieved = sent["achieved_msgs_per_s"]
    return {
        "offered_msgs_per_s": rate,
        "achieved_offered_msgs_per_s": achieved,
        "generator_max_lag_ms": sent["max_lag_ms"],
        "sent": sent["sent"],
        "received": received,
        "delivered_ratio": delivered,
        "absorbed_msgs_per_s": absorbed,
        "backlog_at_end_msgs": backlog,
        "sustained": bool(delivered >= 0.999 and absorbed >= 0.97 * min(rate, achieved)
                          and backlog <= 0.25 * rate),
        "boundaries_in_window": len(window),
        "drained": bool(received >= sent["sent"]),
    }


def run(ctx: Context) -> dict:
    rates = [5_000, 50_000] if ctx.quick else [5_000, 10_000, 20_000, 50_000]
    duration_s = 2.0 if ctx.quick else 5.0
    drain_max_s = 3.0 if ctx.quick else 12.0
    latency_rate = 5_000
    pcf, symbols_file, _ = write_inputs(ctx)
    rows = []
    with local_servers() as (mosquitto, redis_server):
        engine = EngineProcess(pcf, mosquitto.url, redis_server.url, INTERVAL_S,
                               env={"IOPV_ENGINE_WATERMARK_MS": str(WATERMARK_MS)})
        engine.start()
        subscriber = None
        try:
            engine.wait_ready()
            subscriber = ProbeSubscriber("127.0.0.1", mosquitto.port)
            time.sleep(2 * INTERVAL_S)
            k = 1
            for i, rate in enumerate(rates):
                row, k = measure_rate(engine, subscriber, mosquitto.port, symbols_file, rate, duration_s,
                                      k, seed=ctx.seed + i, drain_max_s=drain_max_s)
                rows.append(row)
        finally:
            if subscriber:
                subscriber.close()
            exit_code = engine.stop()
        ceiling = ceilings(mosquitto, symbols_file, ctx.universe("demo"), quick=ctx.quick)
    sustained = [r["offered_msgs_per_s"] for r in rows if r["sustained"]]
    at = next(r for r in rows if r["offered_msgs_per_s"] == latency_rate)
    out = {
        "interval_s": INTERVAL_S,
        "window_s": duration_s,
        "universe": "demo + probe fund",
        "sustained_msgs_per_s": max(sustained) if sustained else 0,
        "max_absorbed_msgs_per_s": max(r["absorbed_msgs_per_s"] for r in rows),
        "latency_at_msgs_per_s": latency_rate,
        "tick_to_publish_us": {q: at.get(f"tick_to_publish_us_{q}") for q in ("p50", "p99", "p999", "max")},
        "watermark_ms": WATERMARK_MS,
        "boundary_to_publish_us": {q: at.get(f"boundary_to_publish_us_{q}") for q in ("p50", "p99", "max")},
        # The same from the cut (B + watermark), where the engine starts valuing B.
        "cut_to_publish_us": {q: (None if at.get(f"boundary_to_publish_us_{q}") is None
                                  else at[f"boundary_to_publish_us_{q}"] - WATERMARK_MS * 1e3)
                              for q in ("p50", "p99", "max")},
        "missed_first_boundary_ratio": at.get("missed_first_boundary_ratio"),
        "rates": rows,
        "ceilings": ceiling,
        "engine_exit_code": exit_code,
        "engine_warnings": engine.warnings[:10],
    }
    return {"end_to_end": out}
