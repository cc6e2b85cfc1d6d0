"""Kernels of the audit journal's writer: a batch of tick messages packed into records in one call.

Same contract as ``iopv.kernels.valuation``: arrays and scalars in, the ``out`` array written. The
record layout is the journal format's (``iopv.adapters.journal.format``, docs/audit.md): per
message a 16-byte head -- u8 kind, u32 body length, i64 receive time, u8 payload type, u16 topic
length, little-endian -- then the topic's bytes and the payload's. Two sources: messages gathered
one by one (``pack_ticks_nb``), and the QoS 0 PUBLISH packets of one socket read, packed straight
from the bytes the feed received (``pack_publishes_nb``).
"""

from __future__ import annotations

from numba import njit

#: Bytes of a tick record before its topic (record header and tick header).
TICK_HEAD_BYTES = 16
#: The topic length that means "no topic" (``format.NO_TOPIC``); a topic is at most one byte less.
_NO_TOPIC = 0xFFFF


@njit(cache=True, nogil=True)
def _put_tick(out, position, kind, t, names, name_at, name_length, payloads, payload_at, payload_length):
    """Write one TICK record (payload type 0, bytes) at ``out[position]``; returns the position
    after it. Byte loops: a message is tens of bytes, and numba's slice copies cost more."""
    body = 3 + name_length + payload_length
    out[position] = kind
    for b in range(4):
        out[position + 1 + b] = (body >> (8 * b)) & 0xFF
    for b in range(8):
        out[position + 5 + b] = (t >> (8 * b)) & 0xFF
    out[position + 13] = 0
    out[position + 14] = name_length & 0xFF
    out[position + 15] = (name_length >> 8) & 0xFF
    position += TICK_HEAD_BYTES
    for i in range(name_length):
        out[position + i] = names[name_at + i]
    position += name_length
    for i in range(payload_length):
        out[position + i] = payloads[payload_at + i]
    return position + payload_length


@njit(cache=True)
def pack_ticks_nb(kind, times, names, name_lengths, payloads, payload_lengths, out):
    """One TICK record per message into ``out``; ``names`` and ``payloads`` are the topics' and
    payloads' bytes back to back (uint8). Returns bytes written."""
    position = 0
    name_at = 0
    payload_at = 0
    for k in range(times.size):
        position = _put_tick(out, position, kind, times[k], names, name_at, name_lengths[k],
                             payloads, payload_at, payload_lengths[k])
        name_at += name_lengths[k]
        payload_at += payload_lengths[k]
    return position


@njit(cache=True, nogil=True)
def pack_publishes_nb(kind, t, buffer, rows, out):
    """One TICK record per MQTT PUBLISH packet of ``buffer`` (uint8, one socket read), all
    received at ``t``. ``rows`` (int64, one per packet, from ``iopv.kernels.mqtt.split_packets_nb``)
    holds its topic start, topic end (where the payload starts) and end offsets. Returns bytes
    written, or -1 -- nothing usable written -- if a topic is not ASCII or too long: the caller
    records those messages the slow way (an ASCII topic's bytes are the same however the intake
    decoded them; another's may not be). ``out`` holds at least ``TICK_HEAD_BYTES * len(rows) +
    buffer.size`` bytes."""
    for k in range(rows.shape[0]):
        if rows[k, 1] - rows[k, 0] >= _NO_TOPIC:
            return -1
        for i in range(rows[k, 0], rows[k, 1]):
            if buffer[i] >= 0x80:
                return -1
    position = 0
    for k in range(rows.shape[0]):
        topic_at = rows[k, 0]
        payload_at = rows[k, 1]
        position = _put_tick(out, position, kind, t, buffer, topic_at, payload_at - topic_at,
                             buffer, payload_at, rows[k, 2] - payload_at)
    return position
