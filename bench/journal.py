"""The audit journal's cost (docs/audit.md): what recording costs the live engine, what it costs
on disk, and how fast a journal replays.

- Over MQTT (the figures the issue sets a bound on): two ``python -m iopv run`` engines on the
  demo universe, as in ``end_to_end``, one with the journal off and one with it on, subscribed to
  the same Mosquitto at once (apart in Redis and on the value topics), fed single-tick QoS 0
  messages by ``bench.loadgen`` offered flat out (quick: 3 windows of 1.5 s; full: 5 of 4 s).
  Both get every window's messages, so each window gives a paired ratio and the generator's
  run-to-run swings cancel; the medians of the per-window ratios are reported.
  ``mqtt_on_over_off``: absorbed (sustained) rate on / off (target >= 0.9). On this 2-core
  machine the generator and Mosquitto, not the engines, set the pace when every message is
  delivered (``mqtt_delivered_min``): the ratio then says the journal costs no rate there, not how
  much headroom is left. The engine's own capacity is its event-loop thread's CPU time per
  message, read from ``/proc`` over the same windows: ``loop_capacity_on_over_off`` = CPU per
  message off / on (target >= 0.9); ``process_cpu_us_per_msg_*`` adds the writer thread
  (compression). Bytes on disk per tick message come from the "on" engine's journal file.
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
from bench import universes
from bench.common import Context
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
from iopv.localservers.servers import local_servers
from iopv.service.route import PublicationRoute

INTERVAL_NS = 15_000_000_000
#: Today (UTC), 01:00: the journal file is today's, so no rotation splits the run.
SESSION_START_NS = time.time_ns() // DAY_NS * DAY_NS + 3_600_000_000_000


def mqtt_cost(ctx: Context) -> dict:
    """Two engines, journal off and on, subscribed to the same broker at once: every window's
    messages reach both (same offered load, same machine state), so each window gives a paired
    ratio and the generator's run-to-run swings cancel out."""
    # Offered flat out: the open-loop generator sends as fast as it and the broker go here, so
    # both engines are given the most this machine can deliver.
    rate = 400_000
    duration_s = 1.5 if ctx.quick else 4.0
    windows = 3 if ctx.quick else 5
    pcf, symbols_file, _ = e2e.write_inputs(ctx)
    journal_dir = os.path.join(ctx.tmpdir(), "journal-mqtt")
    runs = []
    with local_servers() as (mosquitto, redis_server):
        engines = {}
        for mode in ("off", "on"):  # apart in Redis and on the value topics; the ticks are shared
            env = {"IOPV_ENGINE_INSTANCE": f"bench-{mode}", "IOPV_REDIS_KEY_PREFIX": f"iopv-{mode}",
                   "IOPV_MQTT_VALUE_TOPIC_PREFIX": f"iopv-{mode}"}
            if mode == "on":
                env["IOPV_OPS_JOURNAL_DIR"] = journal_dir
            engines[mode] = e2e.EngineProcess(pcf, mosquitto.url, redis_server.url, e2e.INTERVAL_S, env=env)
        try:
            for engine in engines.values():
                engine.start()
            for engine in engines.values():
                engine.wait_ready()
            time.sleep(2 * e2e.INTERVAL_S)
            for i in range(windows):
                before = {mode: (engine.total(), cpu_seconds(engine.process.pid, engine.process.pid),
                                 cpu_seconds(engine.process.pid)) for mode, engine in engines.items()}
                sent = e2e.run_loadgen(mosquitto.port, symbols_file, rate, duration_s, 1 + i * 1_000_000,
                                       seed=ctx.seed + i)
                _drain(engines.values(), sent["sent"], [b[0] for b in before.values()])
                row = {"window": i, "achieved_offered_msgs_per_s": sent["achieved_msgs_per_s"], "sent": sent["sent"]}
                for mode, engine in engines.items():
                    total, loop_cpu, process_cpu = before[mode]
                    taken = e2e.absorption(engine, total, sent, rate, duration_s)
                    received = max(1, taken["received"])
                    pid = engine.process.pid
                    row[mode] = {"received": taken["received"], "delivered_ratio": taken["delivered_ratio"],
                                 "absorbed_msgs_per_s": taken["absorbed_msgs_per_s"],
                                 "loop_cpu_us_per_msg": (cpu_seconds(pid, pid) - loop_cpu) / received * 1e6,
                                 "process_cpu_us_per_msg": (cpu_seconds(pid) - process_cpu) / received * 1e6}
                row["absorbed_on_over_off"] = row["on"]["absorbed_msgs_per_s"] / row["off"]["absorbed_msgs_per_s"]
                row["loop_capacity_on_over_off"] = row["off"]["loop_cpu_us_per_msg"] / row["on"]["loop_cpu_us_per_msg"]
                runs.append(row)
        finally:
            exit_codes = {mode: engine.stop() for mode, engine in engines.items()}
        on_total = engines["on"].total()
    size = sum(p.stat().st_size for p in Path(journal_dir).glob("*.iopvj"))

    def median(mode: str, key: str) -> float:
        return statistics.median(r[mode][key] for r in runs)

    return {"offered_msgs_per_s": rate, "window_s": duration_s, "runs": runs, "engine_exit_codes": exit_codes,
            "mqtt_absorbed_off_msgs_per_s": median("off", "absorbed_msgs_per_s"),
            "mqtt_absorbed_on_msgs_per_s": median("on", "absorbed_msgs_per_s"),
            "mqtt_on_over_off": statistics.median(r["absorbed_on_over_off"] for r in runs),
            "mqtt_delivered_min": min(min(r["off"]["delivered_ratio"], r["on"]["delivered_ratio"]) for r in runs),
            "loop_cpu_us_per_msg_off": median("off", "loop_cpu_us_per_msg"),
            "loop_cpu_us_per_msg_on": median("on", "loop_cpu_us_per_msg"),
            "loop_capacity_on_over_off": statistics.median(r["loop_capacity_on_over_off"] for r in runs),
            "process_cpu_us_per_msg_off": median("off", "process_cpu_us_per_msg"),
            "process_cpu_us_per_msg_on": median("on", "process_cpu_us_per_msg"),
            "mqtt_bytes_per_tick": size / max(1, on_total)}


def _drain(engines, sent: int, start_totals: list[int], max_s: float = 3.0) -> None:
    """Wait until every engine has counted the window's messages, or the counts stop moving for
    three boundaries, or ``max_s``."""
    deadline = time.monotonic() + max_s
    last = None
    stable_since = len(next(iter(engines)).cycles)
    while time.monotonic() < deadline:
        totals = [engine.total() - start for engine, start in zip(engines, start_totals)]
        if min(totals) >= sent:
            return
        cycles = len(next(iter(engines)).cycles)
        if totals != last:
            last, stable_since = totals, cycles
        elif cycles - stable_since >= 3:
            return
        time.sleep(0.05)


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
        writer = JournalWriter(settings) if record else None
        # As the service's route: the book's restart state is taken at every boundary.
        route = PublicationRoute([], journal=writer)
        engine = Engine(load_pcf(pcf), settings, publish=route.publish)
        route.snapshot = lambda b, held=False: restart.snapshot(engine.book, b)
        route.messages = lambda: engine.intake.messages
        intake = engine.intake
        stage = intake.stage  # as MqttTickFeed: the journal, when on, records each read at once
        if writer is not None:
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
