"""How a published record is stored in Redis, both ways: ``field_args`` / ``field_values`` write
it (strings as they are, every other value as its JSON text; the fund is in the key),
``decode_entry`` reads a hash or stream entry back into the record published on MQTT, and
``stream_id`` is a boundary's history entry ID. The sinks write with these and every reader
(``iopv history``, the web API) reads with them, so the encoding is written once.
"""

from __future__ import annotations

from typing import Any

import orjson

#: Fields the sink stores as plain strings (not JSON text).
STRING_FIELDS = frozenset({"status", "basket", "as_of", "reason", "instance"})


def stream_id(boundary_ns: int) -> str:
    """The history entry ID of a boundary, ``<boundary_ms>-0``: Redis accepts it once per stream,
    which makes the write idempotent across replicas and retries."""
    return f"{boundary_ns // 1_000_000}-0"


def field_args(record: dict[str, Any]) -> list[Any]:
    """A record as flat Redis hash/stream field arguments ``[name, value, ...]``: the same fields
    (strings as they are, anything else as its JSON text; the fund is in the key), with JSON kept
    as bytes so nothing is decoded and re-encoded."""
    args: list[Any] = []
    append = args.append
    dumps = orjson.dumps
    for key, value in record.items():
        if key != "fund":
            append(key)
            append(value if type(value) is str else dumps(value))
    return args


def field_values(record: dict[str, Any]) -> list[Any]:
    """The values of ``field_args(record)`` alone, in the same order and encoding."""
    dumps = orjson.dumps
    return [value if type(value) is str else dumps(value) for key, value in record.items() if key != "fund"]


def decode_entry(fund: str, fields: dict[Any, Any]) -> dict[str, Any]:
    """One stream entry's fields (bytes or str) as the published record, ``fund`` first."""
    record: dict[str, Any] = {"fund": fund}
    for name, value in fields.items():
        name = name.decode() if isinstance(name, bytes) else name
        if name in STRING_FIELDS:
            record[name] = value.decode() if isinstance(value, bytes) else value
            continue
        try:
            record[name] = orjson.loads(value)
        except orjson.JSONDecodeError:  # a field a newer writer stores as a plain string
            record[name] = value.decode() if isinstance(value, bytes) else value
    return record
