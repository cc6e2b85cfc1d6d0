"""Tick tapes: JSON lines, one tick object (or an array of them) per line, in file order.

A tape is decoded in one pass into flat arrays, with the same per-tick checks as the live
intake; a line that is not JSON is kept as one rejected tick so counts match the live path.
Replay needs every tick's ``ts`` (there is no receive time to stand in), so a tick without one
is rejected as ``missing_ts``.

The pass is compiled (``iopv.kernels.scanner.scan_tape_nb``): it reads every line in the scanner's
strict common form (plain tick objects and plain JSON numbers) straight from the bytes into the
arrays. The lines it does not read -- malformed JSON, escapes, other keys, nested values, numbers
it cannot parse exactly -- it lists, and ``decode_tape`` decodes those in Python
(``decode_line``, the rules of ``decode_tape_python``) and puts their ticks in place, so the
result is identical to decoding every line in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iopv.core.constants import N_FLOAT_ROWS, N_TAPE_INT_ROWS, TickFloatRow, TickIntRow, TickOutcome
from iopv.engine.codec import decode_payload, decode_tick_full
from iopv.kernels.scanner import N_FALLBACK_COLS, N_TAPE_RESULT, FallbackCol, TapeResult, TapeState, scan_tape_nb
from iopv.kernels.symbols import symbol_table

_NAN = float("nan")


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
    status: np.ndarray | None = None  # int64 iopv.core.constants.TradingStatus

    def __post_init__(self) -> None:
        n = self.ts.size
        for name, value in (("bid", np.nan), ("ask", np.nan), ("status", 0)):
            if getattr(self, name) is None:
                dtype = np.int64 if name == "status" else np.float64
                object.__setattr__(self, name, np.full(n, value, dtype=dtype))

    def __len__(self) -> int:
        return int(self.ts.size)


def decode_line(raw: bytes, index: dict[str, int]) -> list[tuple[int, int, float, float, float, int, int]]:
    """``decode_tick_full``'s ``(code, slot, price, bid, ask, status, ts)`` for every tick of
    one tape line: none for a blank line, one ``malformed_json`` tick for a line that is not JSON."""
    if not raw.strip():
        return []
    items, ok = decode_payload(raw)
    if not ok:
        return [(TickOutcome.MALFORMED_JSON, -1, 0.0, _NAN, _NAN, 0, 0)]
    return [decode_tick_full(item, None, None, index) for item in items]


def _tape(columns: list[list], line: list[int]) -> Tape:
    code, security, price, bid, ask, status, ts = columns
    return Tape(security=np.array(security, dtype=np.int64), price=np.array(price, dtype=np.float64),
                ts=np.array(ts, dtype=np.int64), code=np.array(code, dtype=np.int64),
                line=np.array(line, dtype=np.int64), bid=np.array(bid, dtype=np.float64),
                ask=np.array(ask, dtype=np.float64), status=np.array(status, dtype=np.int64))


def decode_tape_python(data: bytes, index: dict[str, int]) -> Tape:
    """``decode_tape`` line by line in Python (the reference the compiled pass must equal).

    Ships because ``decode_tape`` takes this route for a tape given as text rather than bytes."""
    columns: list[list] = [[] for _ in range(7)]
    line: list[int] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        for tick in decode_line(raw, index):
            for column, value in zip(columns, tick):
                column.append(value)
            line.append(number)
    return _tape(columns, line)


def _grown(array: np.ndarray, used: int) -> np.ndarray:
    """``array`` with twice the columns, the first ``used`` kept."""
    bigger = np.empty((array.shape[0], 2 * array.shape[1]), dtype=array.dtype)
    bigger[:, :used] = array[:, :used]
    return bigger


def decode_tape(data: bytes, index: dict[str, int]) -> Tape:
    """Decode tape bytes (JSON lines) against a book's symbol index."""
    if type(data) is not bytes:
        return decode_tape_python(data, index)
    table = symbol_table(index).table
    capacity = data.count(b"\n") + 1  # a tick per line, as a rule; grown when not
    ints = np.empty((N_TAPE_INT_ROWS, capacity), dtype=np.int64)
    floats = np.empty((N_FLOAT_ROWS, capacity), dtype=np.float64)
    fallback = np.empty((64, N_FALLBACK_COLS), dtype=np.int64)
    result = np.zeros(N_TAPE_RESULT, dtype=np.int64)
    start = line = ticks = fallbacks = 0
    while True:
        scan_tape_nb(data, start, line, table, ints, floats, ticks, fallback, fallbacks, result)
        ticks, fallbacks = int(result[TapeResult.TICKS]), int(result[TapeResult.FALLBACKS])
        if result[TapeResult.STATE] == TapeState.DONE:
            break
        start, line = int(result[TapeResult.RESUME]), int(result[TapeResult.LINE])
        if result[TapeResult.STATE] == TapeState.MORE_TICKS:
            ints, floats = _grown(ints, ticks), _grown(floats, ticks)
        else:
            fallback = np.concatenate([fallback, np.empty_like(fallback)])
    # In decode_line's order, then the line.
    arrays = [ints[TickIntRow.CODE], ints[TickIntRow.SLOT], floats[TickFloatRow.PRICE],
              floats[TickFloatRow.BID], floats[TickFloatRow.ASK], ints[TickIntRow.TRADING],
              ints[TickIntRow.TS], ints[TickIntRow.LINE]]
    arrays = [a[:ticks] for a in arrays]
    if fallbacks:
        # Lines the scanner left to Python: decode them and insert their ticks where they belong.
        positions: list[int] = []
        columns: list[list] = [[] for _ in arrays]
        for row in fallback[:fallbacks].tolist():
            decoded = decode_line(data[row[FallbackCol.START]:row[FallbackCol.END]], index)
            positions.extend([row[FallbackCol.POSITION]] * len(decoded))
            for tick in decoded:
                for column, value in zip(columns, tick):
                    column.append(value)
            columns[-1].extend([row[FallbackCol.LINE]] * len(decoded))
        if positions:
            arrays = [np.insert(a, positions, np.array(values, dtype=a.dtype))
                      for a, values in zip(arrays, columns)]
    elif 2 * ticks < capacity:
        arrays = [a.copy() for a in arrays]  # do not keep a mostly empty buffer alive
    code, security, price, bid, ask, status, ts, line_of = arrays
    return Tape(security=security, price=price, ts=ts, code=code, line=line_of, bid=bid, ask=ask,
                status=status)


def read_tape(path: str | Path, index: dict[str, int]) -> Tape:
    """Decode the tape file at ``path``."""
    return decode_tape(Path(path).read_bytes(), index)
