"""Kernel of the audit journal's writer: a batch of tick messages packed into records in one call.

Same contract as ``iopv.kernels.valuation``: arrays and scalars in, the ``out`` array written. The
record layout is the journal format's (``iopv.adapters.journal.format``, docs/audit.md): per
message a 16-byte head -- u8 kind, u32 body length, i64 receive time, u8 payload type, u16 topic
length, little-endian -- then the topic's bytes and the payload's.
"""

from __future__ import annotations

from numba import njit

#: Bytes of a tick record before its topic (record header and tick header).
TICK_HEAD_BYTES = 16


@njit(cache=True)
def pack_ticks_nb(kind, times, names, name_lengths, payloads, payload_lengths, out):
    """Write one TICK record (payload type 0, bytes) per message into ``out``; ``names`` and
    ``payloads`` are the topics' and payloads' bytes back to back (uint8). Returns bytes written.
    Byte loops rather than slice copies: a message is tens of bytes, a slice costs more."""
    position = 0
    name_at = 0
    payload_at = 0
    for k in range(times.size):
        name_length = name_lengths[k]
        payload_length = payload_lengths[k]
        body = 3 + name_length + payload_length
        out[position] = kind
        for b in range(4):
            out[position + 1 + b] = (body >> (8 * b)) & 0xFF
        t = times[k]
        for b in range(8):
            out[position + 5 + b] = (t >> (8 * b)) & 0xFF
        out[position + 13] = 0
        out[position + 14] = name_length & 0xFF
        out[position + 15] = (name_length >> 8) & 0xFF
        position += TICK_HEAD_BYTES
        for i in range(name_length):
            out[position + i] = names[name_at + i]
        position += name_length
        name_at += name_length
        for i in range(payload_length):
            out[position + i] = payloads[payload_at + i]
        position += payload_length
        payload_at += payload_length
    return position
