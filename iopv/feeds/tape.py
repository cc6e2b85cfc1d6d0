"""Tick tapes: JSON lines, one tick object (or an array of them) per line, in file order.

A tape is decoded in one pass into flat arrays, with the same per-tick checks as the live
intake; a line that is not JSON is kept as one rejected tick so counts match the live path.
Replay needs every tick's ``ts`` (there is no receive time to stand in), so a tick without one
is rejected as ``missing_ts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iopv.codec import decode_payload, decode_tick_full
from iopv.codes import MALFORMED_JSON


@dataclass(frozen=True, eq=False)
class Tape:
    """Decoded ticks in file order; ``line[i]`` is the 1-based line of tick i."""

    security: np.ndarray  # int64, -1 = unknown or rejected
    price: np.ndarray  # float64
    ts: np.ndarray  # int64
    code: np.ndarray  # int64 decoder verdicts (0 = well-formed), outcomes after replay
    line: np.ndarray  # int64
    bid: np.ndarray | None = None  # float64, NaN = side absent
    ask: np.ndarray | None = None  # float64
    status: np.ndarray | None = None  # int64 iopv.quality.STATUS_*

    def __post_init__(self) -> None:
        n = self.ts.size
        for name, value in (("bid", np.nan), ("ask", np.nan), ("status", 0)):
            if getattr(self, name) is None:
                dtype = np.int64 if name == "status" else np.float64
                object.__setattr__(self, name, np.full(n, value, dtype=dtype))

    def __len__(self) -> int:
        return int(self.ts.size)


def decode_tape(data: bytes, index: dict[str, int]) -> Tape:
    """Decode tape bytes (JSON lines) against a book's symbol index."""
    code: list[int] = []
    security: list[int] = []
    price: list[float] = []
    ts: list[int] = []
    line: list[int] = []
    bid: list[float] = []
    ask: list[float] = []
    status: list[int] = []
    nan = float("nan")
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        items, ok = decode_payload(raw)
        if not ok:
            code.append(MALFORMED_JSON)
            security.append(-1)
            price.append(0.0)
            ts.append(0)
            line.append(number)
            bid.append(nan)
            ask.append(nan)
            status.append(0)
            continue
        for item in items:
            c, s, p, b, a, st, t = decode_tick_full(item, None, None, index)
            code.append(c)
            security.append(s)
            price.append(p)
            ts.append(t)
            line.append(number)
            bid.append(b)
            ask.append(a)
            status.append(st)
    return Tape(
        security=np.array(security, dtype=np.int64),
        price=np.array(price, dtype=np.float64),
        ts=np.array(ts, dtype=np.int64),
        code=np.array(code, dtype=np.int64),
        line=np.array(line, dtype=np.int64),
        bid=np.array(bid, dtype=np.float64),
        ask=np.array(ask, dtype=np.float64),
        status=np.array(status, dtype=np.int64),
    )


def read_tape(path: str | Path, index: dict[str, int]) -> Tape:
    """Decode the tape file at ``path``."""
    return decode_tape(Path(path).read_bytes(), index)
