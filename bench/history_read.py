"""Reading a fund's history back from Redis (``iopv.adapters.redis.history``), against a
throwaway Redis holding a full stream (``redis.history_maxlen`` = 100,000 entries, 15 s apart,
IDs ``<boundary_ms>-0``, the fields a boundary writes):

- ``paged``: ``read_history`` -- XRANGE from ``<from_ms>`` in pages of 1,000, records decoded;
- ``one_xrange``: the obvious alternative, one ``XRANGE key - +`` of everything, decoded the same;
- ``one_day``: ``read_history`` with ``--from``/``--to`` one day apart (5,761 boundaries) in the
  middle of the stream: what a board's chart asks for;
- ``cli_csv`` / ``cli_json``: the whole ``iopv history`` process (start-up included) to /dev/null.

Medians of ``--rounds`` after a warm-up round, wall seconds.

    PYTHONPATH=. python -m bench.history_read [--entries 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import redis
import redis.asyncio as aioredis

from iopv.adapters.redis.history import decode_entry, read_history
from iopv.localservers.servers import local_servers

S = 1_000_000_000
BASE = 1_700_000_000 * S
STEP = 15 * S


def fill(url: str, entries: int) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for k in range(entries):
        ts = BASE + k * STEP
        pipe.xadd("iopv:PWB:history", {"ts": ts, "iopv": f"{10 + k % 997 / 1e4:.4f}", "iopv_bid": "10.0101",
                                       "iopv_ask": "10.015", "coverage": "0.9731", "stale": "0", "halted": "0",
                                       "status": "ok", "flags": "[]", "basket": "3f9a0c4b12de",
                                       "estimated_cash": "1234.56"}, id=f"{ts // 1_000_000}-0")
        if k % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history_read", description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with local_servers() as (_, redis_server):
        fill(redis_server.url, args.entries)
        times: dict[str, list[float]] = {}

        async def library_rounds():
            client = aioredis.Redis.from_url(redis_server.url)
            middle = BASE + args.entries // 2 * STEP
            calls = {
                "paged": lambda: read_history(client, "iopv", "PWB"),
                "one_xrange": lambda: _one_xrange(client),
                "one_day": lambda: read_history(client, "iopv", "PWB", from_ns=middle, to_ns=middle + 86_400 * S),
            }
            results = {name: await call() for name, call in calls.items()}  # warm-up and cross-check
            assert results["paged"] == results["one_xrange"] and len(results["paged"]) == args.entries
            for _ in range(args.rounds):
                for name, call in calls.items():
                    started = time.perf_counter()
                    await call()
                    times.setdefault(name, []).append(time.perf_counter() - started)
            await client.aclose()
            return len(results["one_day"])

        day = asyncio.run(library_rounds())
        for fmt in ("csv", "json"):
            command = [sys.executable, "-m", "iopv", "history", "PWB", "--redis-url", redis_server.url, "--format", fmt]
            for round_ in range(args.rounds + 1):
                started = time.perf_counter()
                subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                if round_:
                    times.setdefault(f"cli_{fmt}", []).append(time.perf_counter() - started)
    print(f"{args.entries} entries; one_day = {day} entries; medians of {args.rounds} rounds (max)")
    for name, values in times.items():
        print(f"  {name:11s} {statistics.median(values):7.3f} s  ({max(values):.3f})")


async def _one_xrange(client):
    return [decode_entry("PWB", fields) for _, fields in await client.xrange("iopv:PWB:history", "-", "+")]


if __name__ == "__main__":
    main()
