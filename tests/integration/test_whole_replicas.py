"""Two replicas of ``iopv run`` as real processes on one Mosquitto and one Redis (the smoke subset
of ``make test-cluster``): ticks stamped just before and just after the boundaries, some arriving
after their boundary but within the watermark. Fault-free, the replicas publish identical values
and report no divergence; one is then SIGKILLed and restarted with the same command line: its
values are flagged ``recovering`` until a state transfer from its whole peer, within 2
boundaries. Every history entry, and every MQTT value without ``recovering``, equals the exact
``Decimal`` value of the ticks stamped at or before its boundary."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import aiomqtt
import orjson
import pytest
import redis

from tests.support.live import ValueCollector, exact
from tests.support.processes import EngineProcess

ROOT = Path(__file__).resolve().parents[2]
SECOND = 1_000_000_000
MS = 1_000_000
WATERMARK_MS = 400  # ticks sent up to 121 ms late: room for a loaded machine


def basket() -> list[dict]:
    closes = {"AA": 10.0, "BB": 20.0, "CC": 30.0, "DD": 40.0}
    return [{"fund": f"W{k}", "creation_unit": 100, "currency": "USD", "cash": 12.5 * k,
             "holdings": [{"symbol": s, "shares": (k + 1) * (j + 1), "price": closes[s]}
                          for j, s in enumerate(symbols)]}
            for k, symbols in enumerate((("AA", "BB"), ("BB", "CC", "DD"), ("AA", "DD")))]


@pytest.mark.timeout(240)
def test_replicas_agree_to_the_digit_and_a_restarted_one_is_flagged_until_whole(tmp_path, mosquitto, redis_server):
    document = basket()
    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps(document))
    tag = uuid.uuid4().hex[:6]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOPV_")}
    env.update({"PYTHONPATH": str(ROOT), "IOPV_ENGINE_CALENDAR": "always",
                "IOPV_ENGINE_WATERMARK_MS": str(WATERMARK_MS), "IOPV_MQTT_TICK_TOPIC_PREFIX": f"t{tag}",
                "IOPV_MQTT_VALUE_TOPIC_PREFIX": f"v{tag}", "IOPV_REDIS_KEY_PREFIX": f"k{tag}",
                "IOPV_MQTT_RECONNECT_MIN_S": "0.1", "IOPV_MQTT_RECONNECT_MAX_S": "0.5",
                "IOPV_OPS_FEED_SILENCE_S": "0"})
    args = ["--pcf", str(pcf), "--interval", "1", "--mqtt-url", mosquitto.url, "--redis-url", redis_server.url]
    # "b" records the audit journal: its replay must reproduce every value, flags included.
    journal = tmp_path / "journal"
    replicas = {"a": EngineProcess("a", env, tmp_path, args),
                "b": EngineProcess("b", {**env, "IOPV_OPS_JOURNAL_DIR": str(journal)}, tmp_path, args)}
    host, port = "127.0.0.1", int(mosquitto.url.rsplit(":", 1)[1])
    collector = ValueCollector(host, port, f"v{tag}")
    collector.start()
    assert collector.subscribed.wait(10)
    tape: list[tuple[str, float, int]] = []
    prices = {"AA": 10.0, "BB": 20.0, "CC": 30.0, "DD": 40.0}
    try:
        for replica in replicas.values():
            replica.start()
        deadline = time.monotonic() + 60
        while not all(r.ticks_connected() for r in replicas.values()):
            assert time.monotonic() < deadline, "replicas did not start"
            time.sleep(0.1)

        async def publish(boundaries: int, restart_at: int | None) -> int:
            async with aiomqtt.Client(host, port, identifier=f"pub-{tag}") as client:
                start = (time.time_ns() // SECOND + 2) * SECOND
                for k in range(boundaries):
                    boundary = start + k * SECOND
                    for offset_ms, stamp_ms, symbol in ((-300, -300, "AA"), (15, 5, "BB"), (60, -20, "CC"),
                                                        (90, -1, "DD"), (120, 0, "AA")):
                        # Sent ``offset`` after the boundary, stamped ``stamp`` after it: a tick stamped
                        # before B sent after B is late by up to 121 ms, inside the watermark.
                        await asyncio.sleep(max(0.0, (boundary + offset_ms * MS - time.time_ns()) / 1e9))
                        prices[symbol] = round(prices[symbol] * (1.0007 if (k + len(symbol)) % 3 else 0.9995), 2)
                        ts = boundary + stamp_ms * MS
                        tape.append((symbol, prices[symbol], ts))
                        await client.publish(f"t{tag}/{symbol}", orjson.dumps(
                            {"symbol": symbol, "price": prices[symbol], "ts": ts}), qos=1)
                    if k == restart_at:
                        replicas["b"].kill()
                        await asyncio.sleep(1.0)
                        replicas["b"].start()
                return start

        start = asyncio.run(publish(14, restart_at=5))
        time.sleep(1.5)
        assert all(r.metric("iopv_replica_divergences") == 0 for r in replicas.values())
        late = sum(r.metric("iopv_ticks", '{outcome="late"}') for r in replicas.values())
        assert replicas["b"].metric("iopv_book_whole") == 1.0
        assert replicas["b"].metric("iopv_book_regained", '{how="transfer"}') == 1.0
        assert orjson.loads(replicas["b"].get("/readyz"))["book"] == {"whole": True, "recovering": None}
    finally:
        for replica in replicas.values():
            replica.stop()
        collector.stop_event.set()
        collector.join(5)

    assert collector.error is None, collector.error
    assert late == 0, "a tick arrived after its boundary's cut: the machine is too loaded for this test"
    # The exact value at each boundary: every symbol's latest tick stamped at or before it.
    def reference(boundary: int) -> dict[str, str]:
        latest: dict[str, tuple[int, float]] = {}
        for symbol, price, ts in tape:
            if ts <= boundary and (symbol not in latest or ts >= latest[symbol][0]):
                latest[symbol] = (ts, price)
        return exact(document, {s: Decimal(repr(p)) for s, (_, p) in latest.items()})

    funds = [f["fund"] for f in document]
    window = range(start, start + 14 * SECOND, SECOND)
    r = redis.Redis.from_url(redis_server.url)
    for fund in funds:
        entries = {int(e[0].split(b"-")[0]) * MS: e[1] for e in r.xrange(f"k{tag}:{fund}:history")}
        assert set(window) <= set(entries), f"{fund}: gap in the history"
        for boundary in window:
            fields = entries[boundary]
            assert f"{orjson.loads(fields[b'iopv']):.4f}" == reference(boundary)[fund], (fund, boundary)
            assert b"recovering" not in fields[b"flags"], (fund, boundary)  # the whole peer's value won
    # Every MQTT value without "recovering" is exact; the whole replicas' copies are identical.
    flagged = set()
    for (fund, ts), copies in collector.values.items():
        if ts not in window:
            continue
        for value, flags in copies:
            if "recovering" in flags:
                flagged.add(ts)
            else:
                assert f"{value:.4f}" == reference(ts)[fund], (fund, ts)
    # Before the restart, both replicas published every boundary, unflagged.
    for boundary in window[:5]:
        assert all(len(collector.values[(fund, boundary)]) == 2 for fund in funds), boundary
    # The restarted replica: not whole at start, whole again by a transfer from "a" within 2 boundaries.
    second = replicas["b"].log(1)
    assert "book not whole at start" in second and "state transfer from a" in second
    cycles_before_whole = second[:second.index("state transfer from a")].count("cycle ts=")
    assert cycles_before_whole <= 2, cycles_before_whole
    # Its values before the transfer are flagged (none when the transfer beat its first cut).
    assert len(flagged) <= 2 and all(ts > window[5] for ts in flagged), sorted(flagged)
    whole_states = [s.get("whole") for s in collector.statuses if s["instance"] == "b" and s["status"] == "online"]
    assert False in whole_states and whole_states[-1] is True
    # The journal of "b" (two processes, a SIGKILL between them, a restore, a health change and a
    # transfer) replays byte for byte: exit 0 means every boundary's digest matched.
    (day_file,) = journal.glob("b-*.iopvj")
    replayed = subprocess.run([sys.executable, "-m", "iopv", "replay", "--journal", str(day_file)],
                              capture_output=True, text=True, env=env, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    records = [orjson.loads(line) for line in replayed.stdout.splitlines()]
    assert any("recovering" in record["flags"] for record in records)
    assert {record["ts"] for record in records} >= set(window[:5])
