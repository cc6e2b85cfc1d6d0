"""What the event loop encodes for the journal writer: tick messages and socket reads into
record bytes (the layouts are ``format``'s, docs/audit.md). No state beyond a topic cache; the
writer (``writer``) owns the buffer, its bounds and the thread.

- ``TickPacker``: messages collected one by one (``decode``'s recorder: QoS 1/2 messages paho
  delivers, any non-MQTT caller) into TICK records, one kernel call per batch
  (``iopv.kernels.journal.pack_ticks_nb``);
- ``read_body``: the QoS 0 PUBLISH packets of one socket read (the live feed's messages) as the
  body of one READ record, exactly as received;
- ``basket_body``, ``session_body``: the bodies of BASKET and SESSION records.
"""

from __future__ import annotations

import operator
import os
import struct

import numpy as np
import orjson

from iopv.adapters.journal import format as fmt
from iopv.config import Settings
from iopv.engine.journal_replay import recorded_settings
from iopv.kernels.journal import TICK_HEAD_BYTES, pack_ticks_nb
from iopv.kernels.mqtt import TICK_END, TICK_START

_TOPIC_CACHE = 1 << 16
_TIME, _TOPIC, _PAYLOAD = (operator.itemgetter(k) for k in range(3))


class _TopicBytes(dict):
    """topic -> its UTF-8 bytes, filled on a miss; cleared when large (hostile topics)."""

    def __missing__(self, topic: str) -> bytes:
        if len(self) >= _TOPIC_CACHE:
            self.clear()
        name = self[topic] = topic.encode("utf-8", "surrogatepass")[:fmt.NO_TOPIC - 1]
        return name


class TickPacker:
    """Packs batches of ``(receive time, topic, payload)`` into TICK records."""

    def __init__(self):
        self._topics = _TopicBytes()
        empty_bytes, empty_ints = np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
        pack_ticks_nb(fmt.TICK, empty_ints, empty_bytes, empty_ints, empty_bytes, empty_ints, empty_bytes)

    def pack(self, items: list[tuple[int, str | None, object]]):
        """The records of ``items`` (non-empty), in order: a uint8 array, or bytes."""
        n = len(items)
        try:
            # A topic None fails in the cache (None.encode), a text payload in the join; a
            # bytearray payload joins and is recorded as bytes (the intake reads both alike).
            names = list(map(self._topics.__getitem__, map(_TOPIC, items)))
            payloads = list(map(_PAYLOAD, items))
            payload_bytes = b"".join(payloads)
        except (AttributeError, TypeError):  # rare: no topic, text payloads
            return b"".join(fmt.encode_tick(recv_ts_ns, topic, payload) for recv_ts_ns, topic, payload in items)
        name_lengths = np.fromiter(map(len, names), dtype=np.int64, count=n)
        payload_lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
        out = np.empty(TICK_HEAD_BYTES * n + int(name_lengths.sum()) + len(payload_bytes), dtype=np.uint8)
        pack_ticks_nb(fmt.TICK, np.fromiter(map(_TIME, items), dtype=np.int64, count=n),
                      np.frombuffer(b"".join(names), dtype=np.uint8), name_lengths,
                      np.frombuffer(payload_bytes, dtype=np.uint8), payload_lengths, out)
        return out


def read_span(rows: np.ndarray) -> int:
    """The bytes of a read's packets, first start to last end (at least their READ body)."""
    return int(rows[-1, TICK_END]) - int(rows[0, TICK_START])


def read_body(buffer: bytes, rows: np.ndarray):
    """The READ body of one socket read: its PUBLISH packets (``rows``: start, topic start, topic
    end, end in ``buffer``), as received. When they lie back to back (the norm) a view of the
    bytes read; else the packets joined without what lay between them."""
    starts, ends = rows[:, TICK_START], rows[:, TICK_END]
    if len(rows) == 1 or (starts[1:] == ends[:-1]).all():
        return memoryview(buffer)[int(starts[0]):int(ends[-1])]
    return b"".join(buffer[start:end] for start, end in zip(starts.tolist(), ends.tolist()))


def basket_body(meta: dict, data: bytes) -> bytes:
    """A BASKET record's body: u32 length and JSON of ``meta``, then the basket file's bytes."""
    header = orjson.dumps(meta)
    return struct.pack("<I", len(header)) + header + data


def session_body(settings: Settings, reason: str, messages_base: int, horizon_ns: int | None = None) -> bytes:
    """A SESSION record's body: the format, this process, the settings that shape a value, and
    the boundary the engine opened (event time; absent: ticks applied in arrival order)."""
    body = {"format": fmt.FORMAT_VERSION, "instance": settings.engine.instance, "reason": reason,
            "pid": os.getpid(), "messages_base": messages_base, "settings": recorded_settings(settings)}
    if horizon_ns is not None:
        body["horizon_ns"] = horizon_ns
    return orjson.dumps(body)
