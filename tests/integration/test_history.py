"""``iopv history``: a fund's values read back from the Redis history the real service wrote,
equal field for field to what it published on MQTT at those boundaries; time bounds, both
entry-ID schemes, and clean errors for bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
from datetime import UTC, datetime

import orjson
import pytest
import redis.asyncio as aioredis

from iopv.adapters.redis.history import iter_history, parse_time_ns, read_history
from iopv.cli import main
from tests.support.published import capture_live_service


@pytest.fixture(scope="module")
def captured(tmp_path_factory, mosquitto, redis_server):
    return capture_live_service(tmp_path_factory.mktemp("history"), mosquitto, redis_server, boundaries=3)


@pytest.fixture
def history(captured, redis_server, monkeypatch, capsys):
    """``iopv history`` in-process against the captured run's keys: (exit code, stdout, stderr)."""
    monkeypatch.setenv("IOPV_REDIS_KEY_PREFIX", captured.settings.redis.key_prefix)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["history", *args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def mqtt_boundary_values(captured, fund: str) -> dict[int, dict]:
    prefix = captured.settings.mqtt.value_topic_prefix
    return {record["ts"]: record for topic, record in captured.on(prefix) if topic == f"{prefix}/{fund}"}


def test_csv_lists_every_boundary_with_the_published_values(captured, redis_server, history):
    code, out, err = history("F0", "--redis-url", redis_server.url)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    entries = captured.streams["F0"]
    assert len(rows) == len(entries) >= 3
    published = mqtt_boundary_values(captured, "F0")
    assert list(rows[0])[:4] == ["fund", "ts", "time", "iopv"]
    for row, (_, fields) in zip(rows, entries):
        ts = int(row["ts"])
        assert ts == int(fields["ts"]) and row["iopv"] == fields["iopv"]
        assert row["time"] == datetime.fromtimestamp(ts / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if ts in published:  # every boundary after the subscriber connected
            assert float(row["iopv"]) == published[ts]["iopv"]
            assert orjson.loads(row["flags"]) == published[ts]["flags"]
            assert row["status"] == published[ts]["status"] and row["basket"] == published[ts]["basket"]
    assert sum(int(row["ts"]) in published for row in rows) >= 2
    assert err.strip() == f"history: {len(rows)} value(s) of F0"


def test_json_between_bounds_equals_the_mqtt_records(captured, redis_server, history):
    published = mqtt_boundary_values(captured, "F0")
    stamps = [ts for ts in captured.boundaries if ts in published]
    first, second = stamps[-2], stamps[-1]  # after the ticks (market price) were applied
    iso = datetime.fromtimestamp(second // 10**9, UTC).isoformat().replace("+00:00", "Z")
    iso = iso[:-1] + f".{(second % 10**9) // 10**6:03d}Z"
    code, out, err = history("F0", "--redis-url", redis_server.url, "--format", "json",
                             "--from", str(first // 10**6), "--to", iso)
    assert code == 0, err
    records = [orjson.loads(line) for line in out.splitlines()]
    assert [r["ts"] for r in records] == [first, second]
    # Every field, same types; Redis adds the instance that wrote the entry (replicas).
    assert all(record.pop("instance") for record in records)
    assert records == [published[first], published[second]]
    assert records[0]["market_price"] == 12.34 and records[0]["as_of"] == "2024-12-06"


def test_settings_from_a_config_file(captured, redis_server, tmp_path, capsys):
    config = tmp_path / "reader.toml"
    config.write_text(f'[redis]\nurl = "{redis_server.url}"\nkey_prefix = "{captured.settings.redis.key_prefix}"\n')
    assert main(["history", "F1", "--config", str(config), "--format", "json", "--limit", "2"]) == 0
    records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ts"] for r in records] == [int(fields["ts"]) for _, fields in captured.streams["F1"][:2]]
    assert all(r["fund"] == "F1" for r in records)


def test_bad_input_is_one_clear_line(captured, redis_server, history):
    code, out, err = history("NOPE", "--redis-url", redis_server.url)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "fund NOPE: no history in Redis" in err and "Traceback" not in err
    code, _, err = history("F0", "--redis-url", redis_server.url, "--from", "yesterday")
    assert code == 2 and "'yesterday': expected ISO-8601" in err and err.count("\n") == 1
    code, _, err = history("F0", "--redis-url", redis_server.url, "--from", "2024-01-02", "--to", "2024-01-01")
    assert code == 2 and "is after --to" in err
    code, _, err = history("F0", "--redis-url", redis_server.url, "--limit", "0")
    assert code == 2 and "--limit: expected a number >= 1" in err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = history("F0", "--redis-url", f"redis://:secret@127.0.0.1:{port}/0")
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith(f"iopv history: Redis at redis://:***@127.0.0.1:{port}/0: ConnectionError")
    assert "secret" not in err and "Traceback" not in err


def test_time_parsing():
    assert parse_time_ns("1700000000123") == 1_700_000_000_123_000_000
    assert parse_time_ns("2023-11-14T22:13:20Z") == 1_700_000_000 * 10**9
    assert parse_time_ns("2023-11-14T22:13:20") == 1_700_000_000 * 10**9  # naive = UTC
    assert parse_time_ns("2023-11-14T17:13:20.5-05:00") == 1_700_000_000_500_000_000
    assert parse_time_ns("2023-11-15") == 1_700_006_400 * 10**9
    with pytest.raises(ValueError, match="expected ISO-8601"):
        parse_time_ns("14/11/2023")


@pytest.mark.parametrize("ids", ["boundary", "arrival"])
def test_time_bounds_hold_for_either_entry_id_scheme(redis_server, ids):
    """Entry IDs ``<boundary_ms>-0`` or arrival times (here up to an hour late, as after an
    outage): the same records, selected on their own ``ts``, across pages."""
    key_prefix = f"h{ids}"
    interval = 15 * 10**9
    base = 1_700_000_000 * 10**9
    stamps = [base + k * interval for k in range(10)]

    async def scenario():
        r = aioredis.Redis.from_url(redis_server.url)
        await r.delete(f"{key_prefix}:X:history")
        for k, ts in enumerate(stamps):
            entry_id = f"{ts // 10**6}-0" if ids == "boundary" else f"{ts // 10**6 + 3_600_000 + k}-0"
            await r.xadd(f"{key_prefix}:X:history", {"ts": str(ts), "iopv": orjson.dumps(10 + k / 4),
                                                     "status": "ok", "flags": "[]", "basket": "012345678901"},
                         id=entry_id)
        everything = await read_history(r, key_prefix, "X")
        paged = [rec async for rec in iter_history(r, key_prefix, "X", from_ns=stamps[2], to_ns=stamps[7],
                                                     page_entries=2)]
        limited = await read_history(r, key_prefix, "X", from_ns=stamps[2] - 1, limit=3)
        await r.aclose()
        return everything, paged, limited

    everything, paged, limited = asyncio.run(scenario())
    assert [rec["ts"] for rec in everything] == stamps
    assert everything[1] == {"fund": "X", "ts": stamps[1], "iopv": 10.25, "status": "ok", "flags": [],
                             "basket": "012345678901"}  # a digits-only basket version stays a string
    assert [rec["ts"] for rec in paged] == stamps[2:8]
    assert [rec["ts"] for rec in limited] == stamps[2:5]
