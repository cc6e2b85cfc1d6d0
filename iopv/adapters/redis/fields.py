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


class FieldLists:
    """The field-name lists of one script call (``iopv.adapters.redis.scripts``): each distinct
    list of a record's field names (the fund left out, ``extra_names`` added) goes once into the
    arguments, as its length and its names (``args``), and every record refers to it by its
    index from 1 (``index``). Packing names once per call, not once per fund, is most of the
    client's saving: both Redis sinks build their arguments with it."""

    __slots__ = ("args", "extra_names", "lists")

    def __init__(self, extra_names: list[str]):
        self.extra_names = extra_names
        self.lists: dict[tuple[str, ...], int] = {}
        self.args: list[Any] = []

    def __len__(self) -> int:
        return len(self.lists)

    def index(self, record: dict[str, Any]) -> int:
        names = tuple(record)
        index = self.lists.get(names)
        if index is None:
            index = self.lists[names] = len(self.lists) + 1
            fields = [name for name in names if name != "fund"]
            fields += self.extra_names
            self.args.append(len(fields))
            self.args.extend(fields)
        return index


def reply_text(value: bytes | str) -> str:
    """A script reply's string (a key, an error, a peer's value) as text."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
