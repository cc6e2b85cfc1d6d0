"""Dissemination boundaries and the wall-clock BoundaryClock (driven by a fake time source)."""

from __future__ import annotations

import asyncio
import time

import pytest

from iopv.engine.clock import BoundaryClock, boundary_after, boundary_at_or_after

S = 1_000_000_000
I15 = 15 * S
T0 = 1_700_000_010 * S  # a multiple of 15 s (1_700_000_010 = 15 * 113_333_334)


@pytest.mark.parametrize("ts,at_or_after,after", [
    (T0, T0, T0 + I15),
    (T0 + 1, T0 + I15, T0 + I15),
    (T0 - 1, T0, T0),
    (T0 + I15 - 1, T0 + I15, T0 + I15),
    (0, 0, I15),
    (1, I15, I15),
])
def test_boundaries_15s(ts, at_or_after, after):
    assert T0 % I15 == 0
    assert boundary_at_or_after(ts, I15) == at_or_after
    assert boundary_after(ts, I15) == after


def test_boundaries_are_multiples_and_tight():
    for interval in (S // 4, S, I15, 7):
        for ts in range(T0 - 3 * interval, T0 + 3 * interval, max(1, interval // 5)):
            up = boundary_at_or_after(ts, interval)
            nxt = boundary_after(ts, interval)
            assert up % interval == 0 and nxt % interval == 0
            assert ts <= up < ts + interval
            assert ts < nxt <= ts + interval
            assert nxt == (up if up > ts else up + interval)


def test_boundary_arithmetic_is_exact_for_large_ns():
    ts = 2**62 + 12_345  # beyond float64's integer precision
    b = boundary_at_or_after(ts, I15)
    assert type(b) is int and b % I15 == 0 and 0 <= b - ts < I15


class FakeTime:
    """Returns the given times in order, then the last one forever."""

    def __init__(self, times):
        self.times = list(times)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def collect(clock: BoundaryClock, count: int, timeout_s: float = 5.0) -> list[tuple[int, int, int]]:
    """(boundary, missed, lateness) for the first ``count`` boundaries."""

    async def run():
        stop = asyncio.Event()
        out = []
        async for boundary in clock.boundaries(stop):
            out.append((boundary, clock.missed, clock.lateness_ns))
            if len(out) == count:
                stop.set()
        return out

    return asyncio.run(asyncio.wait_for(run(), timeout_s))


def test_clock_jumps_count_missed_and_yield_only_the_latest():
    t = T0 + S // 2  # first target: T0 + 1 s
    now = FakeTime([
        t,  # start
        T0 + S + 200,  # just after T0+1s: on time
        T0 + 4 * S + 700,  # slept through T0+2s and T0+3s: yield T0+4s only
        T0 + 5 * S,  # exactly on T0+5s
        T0 + 12 * S + 5,  # 6 more missed (6..11), yield T0+12s
    ])
    started = time.monotonic()
    got = collect(BoundaryClock(S, now_ns=now), 4)
    assert time.monotonic() - started < 2.0  # never waited for real
    assert got == [
        (T0 + S, 0, 200),
        (T0 + 4 * S, 2, 700),
        (T0 + 5 * S, 2, 0),
        (T0 + 12 * S, 8, 5),
    ]


def test_clock_waits_until_the_boundary():
    # Twice the time source says "1 ms early": the clock sleeps ~1 ms and asks again.
    now = FakeTime([T0 + 10, T0 + S - 1_000_000, T0 + S - 1_000_000, T0 + S + 3, T0 + 2 * S])
    got = collect(BoundaryClock(S, now_ns=now), 2)
    assert got == [(T0 + S, 0, 3), (T0 + 2 * S, 0, 0)]
    assert now.calls >= 5


def test_stop_ends_a_wait_promptly():
    clock = BoundaryClock(3600 * S, now_ns=lambda: T0 + 1)  # next boundary an hour away

    async def run():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return [b async for b in clock.boundaries(stop)]

    started = time.monotonic()
    assert asyncio.run(asyncio.wait_for(run(), 5)) == []
    assert time.monotonic() - started < 2.0
    assert clock.missed == 0
