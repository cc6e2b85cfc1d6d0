"""The audit journal's cost (docs/audit.md): what recording costs the live engine, what it costs
on disk, and how fast a journal replays.

- Over MQTT (the figures the issue sets a bound on): ``python -m iopv run`` on the demo universe,
  as in ``end_to_end``, fed single-tick QoS 0 messages by ``bench.loadgen`` offered flat out.
  Engines with the journal off and on run alternately in the same run on the same servers (quick:
  3 pairs of 1.5 s windows; full: 5 pairs of 4 s) and the medians are compared:
  ``mqtt_on_over_off``, the absorbed (sustained) rates (target >= 0.9). On this 2-core machine
  the generator and Mosquitto, not the engine, set the pace: every run delivers every message
  (``mqtt_delivered_min``), so that ratio says the journal costs no rate here, not how much
  headroom is left. The engine's own capacity is its event-loop thread's CPU time per message,
  read from ``/proc`` over the same windows: ``loop_capacity_on_over_off`` = CPU per message off /
  on (target >= 0.9); ``process_cpu_us_per_msg_*`` adds the writer thread (compression). Bytes
  on disk per tick message come from the "on" engines' journal files.
- In process: the live feed's path -- QoS 0 PUBLISH packets read in 32 KiB chunks by the feed's
  socket wrapper (``TickSocket``), staged by the intake and, journal on, recorded one read at a
  time -- plus ``Engine.cycle`` at every boundary, over N single-tick messages (demo universe,
  15 s boundaries), the journal off and on alternately (the real ``JournalWriter`` and its
  thread); then a journal is replayed (``iopv.engine.journal_replay``: every message through the
  intake again, a cycle at every marker) against plain tape replay of the same ticks
  (``iopv.engine.replay``: one compiled loop over decoded arrays). Journal replay is slower by
  design: it re-runs the live code path message by message, so it reproduces what the live engine
  did, not what a tape implies.
- ``write_ahead``: how long a boundary's values wait for their marker to be written (the writer
  thread wakes, compresses and writes the block, then tells the loop), 2,000 messages per boundary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import orjson

from bench import end_to_end as e2e
from bench.common import REPO, Context, python_env
from iopv.adapters.journal import JournalReader, events
from iopv.adapters.journal.writer import JournalWriter
from iopv.adapters.mqtt.feed import TickSocket
from iopv.adapters.mqtt.wire import encode_publish
from iopv.config import load_settings
from iopv.core.constants import DAY_NS
from iopv.core.universe import load_pcf
from iopv.engine import restart
from iopv.engine.cycle import Engine
from iopv.engine.journal_replay import JournalReplay
from iopv.engine.replay import replay_frames
from iopv.engine.tape import decode_tape
from iopv.testing import universes
from iopv.testing.servers import local_servers

INTERVAL_NS = 15_000_000_000
#: Today (UTC), 01:00: the journal file is today's, so no rotation splits the run.
SESSION_START_NS = time.time_ns() // DAY_NS * DAY_NS + 3_600_000_000_000


class JournaledEngine(e2e.EngineProcess):
    """``python -m iopv run`` with ``ops.journal_dir`` set (or not)."""

    def __init__(self, *args, journal_dir: str | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.journal_dir = journal_dir

    def start(self) -> None:
        import subprocess
        import threading

        env = python_env()
        if self.journal_dir:
            env["IOPV_OPS_JOURNAL_DIR"] = self.journal_dir
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env=env, cwd=REPO)
        self._reader = threading.Thread(target=self._read, name="engine-log", daemon=True)
        self._reader.start()


def mqtt_cost(ctx: Context) -> dict:
    # Offered flat out: the open-loop generator sends as fast as it and the broker go here (about
    # 200k msgs/s on 2 shared cores), so each engine absorbs what it can of the most it can be given.
    rate = 400_000
    duration_s = 1.5 if ctx.quick else 4.0
    order = ["off", "on"] * (3 if ctx.quick else 5)
    pcf, symbols_file, _ = e2e.write_inputs(ctx)
    runs = []
    with local_servers() as (mosquitto, redis_server):
        for i, mode in enumerate(order):
            journal_dir = os.path.join(ctx.tmpdir(), f"journal-{i}") if mode == "on" else None
            engine = JournaledEngine(pcf, mosquitto.url, redis_server.url, e2e.INTERVAL_S, journal_dir=journal_dir)
            engine.start()
            subscriber = None
            try:
                engine.wait_ready()
                subscriber = e2e.ProbeSubscriber("127.0.0.1", mosquitto.port)
                time.sleep(2 * e2e.INTERVAL_S)
                pid = engine.process.pid
                loop_before, process_before = cpu_seconds(pid, pid), cpu_seconds(pid)
                row, _ = e2e.measure_rate(engine, subscriber, mosquitto.port, symbols_file, rate, duration_s, 1,
                                          seed=ctx.seed + i, drain_max_s=3.0)
                received = max(1, row["received"])
                row["loop_cpu_us_per_msg"] = (cpu_seconds(pid, pid) - loop_before) / received * 1e6
                row["process_cpu_us_per_msg"] = (cpu_seconds(pid) - process_before) / received * 1e6
            finally:
                if subscriber:
                    subscriber.close()
                exit_code = engine.stop()
            row = {k: row[k] for k in ("offered_msgs_per_s", "achieved_offered_msgs_per_s", "sent", "received",
                                       "absorbed_msgs_per_s", "delivered_ratio", "loop_cpu_us_per_msg",
                                       "process_cpu_us_per_msg")}
            row.update(journal=mode, engine_exit_code=exit_code)
            if journal_dir:
                size = sum(p.stat().st_size for p in Path(journal_dir).glob("*.iopvj"))
                total = engine.total()  # every tick message the engine counted (probes included)
                row.update(journal_bytes=size, journal_bytes_per_tick=size / max(1, total))
            runs.append(row)
    def median(key: str, mode: str) -> float:
        return statistics.median(r[key] for r in runs if r["journal"] == mode)

    off, on = median("absorbed_msgs_per_s", "off"), median("absorbed_msgs_per_s", "on")
    loop_off, loop_on = median("loop_cpu_us_per_msg", "off"), median("loop_cpu_us_per_msg", "on")
    return {"offered_msgs_per_s": rate, "window_s": duration_s, "runs": runs,
            "mqtt_absorbed_off_msgs_per_s": off, "mqtt_absorbed_on_msgs_per_s": on,
            "mqtt_on_over_off": on / off if off else None,
            "mqtt_delivered_min": min(r["delivered_ratio"] for r in runs),
            "loop_cpu_us_per_msg_off": loop_off, "loop_cpu_us_per_msg_on": loop_on,
            "loop_capacity_on_over_off": loop_off / loop_on if loop_on else None,
            "process_cpu_us_per_msg_off": median("process_cpu_us_per_msg", "off"),
            "process_cpu_us_per_msg_on": median("process_cpu_us_per_msg", "on"),
            "mqtt_bytes_per_tick": statistics.median(r["journal_bytes_per_tick"] for r in runs if r["journal"] == "on")}


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU time (user + system) of a process, or of one of its threads (``tid``; the main
    thread's id is the pid), from ``/proc``."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    with open(path) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def _messages(universe, rng: np.random.Generator, n: int, span_s: float) -> tuple[list[tuple[str, bytes]], list[int]]:
    """Single-tick messages (topic, payload) over the universe's symbols, in time order."""
    n_slots = len(universe.symbols)
    slots = rng.integers(0, n_slots, n)
    prices = np.maximum(np.round(universe.initial_prices[slots] * (1 + rng.normal(0, 0.003, n)), 4), 0.01)
    ts = (SESSION_START_NS + 1 + np.sort(rng.integers(0, int(span_s * 1e9), n))).tolist()
    messages = [(f"ticks/{universe.symbols[s]}", b'{"symbol":"%s","price":%r,"ts":%d}' % (
                 universe.symbols[s].encode(), p, t)) for s, p, t in zip(slots.tolist(), prices.tolist(), ts)]
    return messages, ts


def in_process(ctx: Context) -> dict:
    n = 100_000 if ctx.quick else 1_000_000
    span_s = 300.0 if ctx.quick else 1_800.0
    pcf = str(universes.DEMO_PCF)
    universe = load_pcf(pcf)
    messages, ts = _messages(universe, ctx.rng(77), n, span_s)
    journal_dir = os.path.join(ctx.tmpdir(), "journal-in-process")
    # Boundaries come every few ms here (a day's 15 s apart in a second): values wait for their
    # marker however long the writer takes (max_wait 0), rather than warn of late releases.
    settings = load_settings(environ={}, overrides={
        "engine": {"pcf_path": pcf, "interval_s": INTERVAL_NS / 1e9, "calendar": "always", "instance": "bench"},
        "ops": {"journal_dir": journal_dir, "journal_max_wait_ms": 0}})

    # The live feed's path: the messages as QoS 0 PUBLISH packets, read in 32 KiB chunks by the
    # feed's socket wrapper, each read staged (and, journal on, recorded at once), a flush per read.
    intervals: list[tuple[int, bytes]] = []
    boundary = (ts[0] // INTERVAL_NS + 1) * INTERVAL_NS
    packets: list[bytes] = []
    for (topic, payload), t in zip(messages, ts):
        while t > boundary:
            intervals.append((boundary, b"".join(packets)))
            packets, boundary = [], boundary + INTERVAL_NS
        packets.append(encode_publish(topic, payload, qos=0, retain=False))
    intervals.append((boundary, b"".join(packets)))

    class Socket:  # one interval's bytes, as a socket delivers them
        def __init__(self, data: bytes):
            self.data, self.position = data, 0

        def recv(self, size: int) -> bytes:
            chunk = self.data[self.position:self.position + size]
            self.position += len(chunk)
            return chunk

    async def live(record: bool) -> tuple[float, Path | None]:
        engine = Engine(load_pcf(pcf), settings)
        intake = engine.intake
        writer = None
        stage = intake.stage  # as MqttTickFeed: the journal, when on, records each read at once
        if record:
            writer = JournalWriter(settings)
            # As the service's gate: the book's restart state is taken at every boundary.
            engine.gate = lambda b, p: writer.boundary(b, p, lambda: engine.offer(p), restart.snapshot(engine.book, b),
                                                       engine.intake.messages)
            writer.start(engine.universe)

        def on_publish(topic: bytes, payload: bytes, now: int) -> None:
            stage(payload, topic.decode("utf-8", "replace"), now)

        started = time.perf_counter()
        for boundary_ns, data in intervals:
            wrapped = TickSocket(Socket(data), on_publish, on_read=writer.publishes if writer else None)
            while True:
                try:
                    if not wrapped.recv(1):
                        break
                except BlockingIOError:  # one read per event-loop iteration, as live
                    wrapped.pending()
                    intake.flush()
                    await asyncio.sleep(0)
            intake.flush()
            engine.cycle(boundary_ns)
        elapsed = time.perf_counter() - started
        if writer:
            await writer.aclose()
            return elapsed, writer.path
        return elapsed, None

    off, on = [], []
    for _ in range(2 if ctx.quick else 3):  # alternating, medians
        off.append(asyncio.run(live(False))[0])
        shutil.rmtree(journal_dir, ignore_errors=True)
        elapsed, path = asyncio.run(live(True))
        on.append(elapsed)
    off_s, on_s = statistics.median(off), statistics.median(on)
    size = path.stat().st_size
    started = time.perf_counter()
    replay = JournalReplay(events(JournalReader(str(path))))
    boundaries = sum(1 for _ in replay)
    journal_replay_s = time.perf_counter() - started
    tape_bytes = b"\n".join(payload for _, payload in messages) + b"\n"
    warm = decode_tape(tape_bytes[:2000].rsplit(b"\n", 1)[0] + b"\n", universe.book_index())
    sum(1 for _ in replay_frames(universe, warm, interval_ns=INTERVAL_NS))  # kernels loaded before timing
    started = time.perf_counter()
    tape = decode_tape(tape_bytes, universe.book_index())
    tape_boundaries = sum(1 for _ in replay_frames(universe, tape, interval_ns=INTERVAL_NS))
    tape_replay_s = time.perf_counter() - started
    return {
        "ticks": n, "span_s": span_s, "boundaries": boundaries, "tape_boundaries": tape_boundaries,
        "live_off_ticks_per_s": n / off_s, "live_on_ticks_per_s": n / on_s, "live_on_over_off": off_s / on_s,
        "journal_bytes": size, "bytes_per_tick": size / n, "mb_per_million_ticks": size / n,
        "payload_bytes_per_tick": len(tape_bytes) / n,
        "journal_replay_ticks_per_s": n / journal_replay_s, "tape_replay_ticks_per_s": n / tape_replay_s,
        "replay_matched": replay.stats.matched, "replay_mismatched": replay.stats.mismatched,
    }


def marker_wait(ctx: Context) -> dict:
    """The write-ahead wait: from a boundary's marker being queued to its values being released
    (the writer thread wakes, compresses and writes the block, the loop is told), with 2,000
    single-tick messages recorded before each of 40 (quick: 20) boundaries and an idle loop."""
    boundaries = 20 if ctx.quick else 40
    pcf = str(universes.DEMO_PCF)
    settings = load_settings(environ={}, overrides={
        "engine": {"pcf_path": pcf, "instance": "bench-wait"},
        "ops": {"journal_dir": os.path.join(ctx.tmpdir(), "journal-wait")}})
    universe = load_pcf(pcf)
    messages, _ = _messages(universe, ctx.rng(78), 2_000, 1.0)
    engine = Engine(universe, settings)
    publication = engine.cycle(SESSION_START_NS)

    async def measure() -> list[float]:
        writer = JournalWriter(settings)
        writer.start(universe)
        waits: list[float] = []
        for k in range(boundaries):
            for topic, payload in messages:
                writer.tick(payload, topic, time.time_ns())
            released = asyncio.Event()
            started = time.perf_counter()
            writer.boundary(time.time_ns() // INTERVAL_NS * INTERVAL_NS, publication,
                            lambda: (waits.append(time.perf_counter() - started), released.set()), b"{}", k)
            await released.wait()
            await asyncio.sleep(0.01)
        await writer.aclose()
        return waits

    waits = np.array(asyncio.run(measure())) * 1e3
    return {"boundaries": boundaries, "messages_per_boundary": 2_000,
            "marker_wait_ms_p50": float(np.percentile(waits, 50)),
            "marker_wait_ms_p90": float(np.percentile(waits, 90)), "marker_wait_ms_max": float(waits.max())}


def run(ctx: Context) -> dict:
    out = {"in_process": in_process(ctx), "write_ahead": marker_wait(ctx)}
    out.update(mqtt_cost(ctx))
    return {"journal": out}


if __name__ == "__main__":  # pragma: no cover
    context = Context(quick=True)
    try:
        print(orjson.dumps(run(context), option=orjson.OPT_INDENT_2).decode())
    finally:
        context.close()
